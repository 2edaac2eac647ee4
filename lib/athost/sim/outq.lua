-- Ordered writes to one port from many flows.
--
-- port:send() waits while the port drains and raises when a second flow
-- sends meanwhile; a virtual modem writes from its command flow, its
-- network flows and its timers. An outq takes bytes from any of them at
-- once and a flow of its own (started when bytes are queued, ended when
-- the queue is empty) sends them in order.
--
--   local q = outq.new(port)
--   q:write("\r\nOK\r\n")
--   q:write("\r\nOK\r\n", 150)   -- sent 150 ms after what is queued before it
--   q:pace(5)      -- one byte every 5 ms from now on; q:pace(false) undoes
--   q:split(fn)    -- writes of fn() bytes each (fn() >= 1), 1 ms apart so
--                  -- the reader gets them apart; q:split(false) undoes
--   q:clear()      -- drop what is queued and not yet sent (a reboot)
--   q:hold()       -- writes that would go to the port at once collect...
--   q:release()    -- ...until this sends them as one write
local athost = require("athost")


local M = {}
local Q = {}
Q.__index = Q

function M.new(port)
  -- (port.send looked up once: a port's fields are a C lookup each.)
  return setmetatable({ port = port, send = port.send, q = {}, busy = false,
    epoch = 0 }, Q)
end

-- Sends s; false once the port is gone (the queue stops for good).
local function send(self, s)
  local port = self.port
  if self.dead or port.closed then
    self.dead = true
    return false
  end
  local ok, sent, err = pcall(port.send, port, s)
  if not ok or not sent then
    self.dead, self.err = true, ok and err or sent
    return false
  end
  return true
end

-- Sends s whole, byte by byte (pace) or in chunks (split); stops when the
-- queue was cleared meanwhile (epoch changed).
local function out(self, s, epoch)
  if self.delay then
    for i = 1, #s do
      if self.epoch ~= epoch or not send(self, s:sub(i, i)) then return end
      athost.sleep(self.delay)
    end
  elseif self.chunk then
    -- A pty hands a write to the other side asynchronously: with no
    -- pause the pieces would merge again before the reader polls. 1 ms
    -- (the shortest sleep) is enough for the reader to get each piece in
    -- a read of its own; 1-7 bytes a millisecond is about the line rate
    -- of a module at 115200 baud.
    local i = 1
    while i <= #s do
      if self.epoch ~= epoch then return end
      local n = math.max(1, math.floor(self.chunk()))
      if not send(self, s:sub(i, i + n - 1)) then return end
      i = i + n
      if i <= #s then athost.sleep(1) end
    end
  else
    send(self, s)
  end
end

local function drain(self)
  while #self.q > 0 and not self.dead do
    local epoch = self.epoch
    local first = self.q[1]
    if first.wait then
      athost.sleep(first.wait)
      first.wait = nil
    end
    if self.epoch == epoch and not self.dead then
      -- Everything up to the next item that waits goes out as one write.
      local parts, n = {}, 0
      while self.q[n + 1] and (n == 0 or not self.q[n + 1].wait) do
        n = n + 1
        parts[n] = self.q[n].s
      end
      self.q = table.move(self.q, n + 1, #self.q, 1, {})
      out(self, table.concat(parts), epoch)
    end
  end
  self.busy = false
end

local NOWAIT = { wait = false }

-- Sends s at once, in order after what the port still holds, with no
-- flow of its own. (A closed port raises: the queue is dead then too.)
local function direct(self, s)
  local ok, sent, err = pcall(self.send, self.port, s, NOWAIT)
  if not ok or not sent then self.dead, self.err = true, ok and err or sent end
end

-- What hold() collected goes out (it would have gone out at once).
local function unhold(self)
  local h = self.held
  if h and h ~= "" then
    self.held = ""
    if not self.dead then direct(self, h) end
  end
end

-- Queues s; wait (ms, optional) is how long after what is queued before
-- it s goes out.
function Q:write(s, wait)
  if self.dead or s == "" then return end
  if not self.busy and not (wait and wait > 0) and not self.delay and not self.chunk then
    -- Nothing queued, nothing to wait for: to the port at once, in order
    -- after what it still holds, with no flow of its own (a virtual modem
    -- writes a reply or two for each command; a flow each was most of
    -- what it cost). While held, the same bytes collect for one write
    -- (a write to a pty costs more than the bytes in it).
    if self.held then
      self.held = self.held .. s
      return
    end
    return direct(self, s)
  end
  unhold(self)
  if self.dead then return end
  self.q[#self.q + 1] = { s = s, wait = wait and wait > 0 and wait or nil }
  if not self.busy then
    self.busy = true
    athost.spawn(drain, self)
  end
end

-- write("\r\n" .. line .. "\r\n"), the framed line made straight onto
-- what is held when it would collect there (one string made, not two).
function Q:write_line(line)
  if not M.add_held(self, line, true) then
    return self:write("\r\n" .. line .. "\r\n")
  end
end

-- What write does while held with nothing queued, paced or split: s
-- (framed: as a line, CR LF before and after, in one join) added to the
-- held bytes; true then, false when write must take it. A function, not
-- a method: the virtual modem's answers call it for every line.
function M.add_held(q, s, framed)
  local held = q.held
  if held and not q.busy and not q.dead and not q.delay and not q.chunk then
    q.held = framed and held .. "\r\n" .. s .. "\r\n" or held .. s
    return true
  end
  return false
end

-- Writes that would go out at once collect from now on; release() sends
-- them as one write and ends the hold. A virtual modem holds while it
-- answers a command and releases before it waits for anything: the
-- answer's lines go out in one write instead of one each, with the same
-- bytes in the same order. (Held bytes count as sent: clear() keeps them.)
function Q:hold()
  self.held = self.held or ""
end

function Q:release()
  -- (unhold() and the end of the hold in one: once per command.)
  local h = self.held
  self.held = nil
  if h and h ~= "" and not self.dead then direct(self, h) end
end

M.release = Q.release   -- (for a caller that releases once per command)

-- ms between bytes, or false/nil for whole writes.
function Q:pace(ms)
  unhold(self)
  self.delay = ms and ms > 0 and ms or nil
end

-- fn() gives the size of each write, or false/nil for whole writes.
function Q:split(fn)
  unhold(self)
  self.chunk = fn or nil
end

function Q:clear()
  unhold(self)
  self.q = {}
  self.epoch = self.epoch + 1
end

function Q:close()
  self:clear()
  self.dead = true
end

return M
