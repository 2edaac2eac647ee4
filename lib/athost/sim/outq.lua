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
--   q:pace(5)      -- one byte every 5 ms from now on; q:pace(false) undoes
--   q:clear()      -- drop what is queued and not yet sent (a reboot)
local athost = require("athost")

local M = {}
local Q = {}
Q.__index = Q

function M.new(port)
  return setmetatable({ port = port, q = {}, busy = false, epoch = 0 }, Q)
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

local function drain(self)
  while #self.q > 0 and not self.dead do
    local s = table.concat(self.q)
    self.q = {}
    local epoch = self.epoch
    if self.delay then
      for i = 1, #s do
        if self.epoch ~= epoch or not send(self, s:sub(i, i)) then break end
        athost.sleep(self.delay)
      end
    else
      send(self, s)
    end
  end
  self.busy = false
end

function Q:write(s)
  if self.dead or s == "" then return end
  self.q[#self.q + 1] = s
  if not self.busy then
    self.busy = true
    athost.spawn(drain, self)
  end
end

-- ms between bytes, or false/nil for whole writes.
function Q:pace(ms)
  self.delay = ms and ms > 0 and ms or nil
end

function Q:clear()
  self.q = {}
  self.epoch = self.epoch + 1
end

function Q:close()
  self:clear()
  self.dead = true
end

return M
