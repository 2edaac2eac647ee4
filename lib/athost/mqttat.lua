-- An MQTT session through the module's AT commands (Luat AT+M*: references
-- 000, 001, 003): connect right after CONNECT OK, subscribe, publish with
-- the quoting rules or AT+MPUBEX, PUBACK at QoS 1, direct or cached
-- delivery, ASCII or HEX, and recovery after CLOSED and +PDP DEACT.
--
--   local s = mqttat.new(m, { host = h, port = 1883, tls = true,
--                              client_id = c, username = u, password = p })
--   s:connect()
--   s:subscribe("/pk/dn/user/get", 0)
--   s:publish("/pk/dn/user/update", "hello", 1)
--   s:listen(30000, function(msg) print(msg.topic, msg.payload) end)
local athost = require("athost")
local at = require("athost.at")

local M = {}
local S = {}
S.__index = S

local function list(v)
  if type(v) == "table" and v.count == nil then return v end
  return { v }
end

local function concat(...)
  local out = {}
  for i = 1, select("#", ...) do
    for _, v in ipairs(list((select(i, ...)))) do out[#out + 1] = v end
  end
  return out
end

function M.new(m, o)
  local p = m.profile.mqtt
  if not p then
    error(m.profile.name .. " has no MQTT AT commands in its profile", 2)
  end
  local self = setmetatable({
    m = m, port = m.port, p = p, o = o,
    mode = o.mode or "ascii", delivery = o.delivery or "direct",
    keepalive = tonumber(o.keepalive) or 60,
    queue = {}, subs = {}, handlers = {}, lost = nil, connected = false,
    stats = { published = 0, received = 0, recovered = 0 },
  }, S)
  self.handlers[#self.handlers + 1] = self.port:on(p.message, function(mt)
    self:push(mt[1], mt.payload)
  end)
  self.handlers[#self.handlers + 1] = self.port:on(p.cached, function(mt)
    self.queue[#self.queue + 1] = { slot = tonumber(mt[1]) }
  end)
  self.handlers[#self.handlers + 1] = self.port:on(p.closed, function()
    self.lost = self.lost or p.closed
  end)
  self.handlers[#self.handlers + 1] = self.port:on(p.pdp_deact, function()
    self.lost = p.pdp_deact
  end)
  return self
end

function S:push(topic, payload)
  if self.mode == "hex" then
    payload = athost.unhex(payload) or payload
  end
  self.queue[#self.queue + 1] = { topic = topic, payload = payload }
end

local function fail(what, err)
  error(what .. ": " .. tostring(err), 0)
end

-- MCONFIG, (SSL)MIPSTART, CONNECT OK, MCONNECT at once, CONNACK OK.
function S:connect()
  local o, p, m = self.o, self.p, self.m
  -- An AT string cannot carry these; name the field, never its value
  -- (the password is a secret, and at.q would print it escaped).
  for _, f in ipairs({ "client_id", "username", "password" }) do
    if tostring(o[f] or ""):find('["\r\n]') then
      fail("AT+MCONFIG", f .. " contains a double quote or a line end")
    end
  end
  m:must(string.format(p.msgset, self.delivery == "cached" and 1 or 0))
  m:must(string.format(p.mode, self.mode == "hex" and 1 or 0))
  m:must(string.format(p.config, at.q(o.client_id), at.q(o.username or ""),
    at.q(o.password or "")))
  local start = string.format(o.tls and p.start_tls or p.start, at.q(o.host),
    tonumber(o.port))
  local name = at.name(start)
  local r, err = m:cmd(start)
  if not r then fail("connecting to " .. o.host, err) end
  r, err = self.port:expect(p.connect_ok, { abort = p.connect_fail,
    timeout = m:wait_ms("connect") })
  if not r then
    fail(string.format("connecting to %s:%s", o.host, o.port),
      (err:gsub("^EABORT: .- aborted on ", "")) .. " after " .. name)
  end
  -- The server drops a link that does not send CONNECT soon (003).
  r, err = m:cmd(string.format(p.connect, o.clean == false and 0 or 1,
    self.keepalive))
  if not r then fail("MQTT connect", err) end
  r, err = self.port:expect(p.connack_ok, { abort = p.connack_fail,
    timeout = m:wait_ms("connack") })
  if not r then
    fail("MQTT connect: the broker refused",
      (err:gsub("^EABORT: .- aborted on ", "")))
  end
  self.connected, self.lost = true, nil
  return true
end

-- Waits for the URC that completes a request (SUBACK, PUBACK), or the
-- lost link that aborts it. CLOSED or +PDP DEACT that came with the
-- command's answer went to their handlers (the wait had not begun): let
-- them run, then fail at once as on an abort.
function S:await(pat, abort, what)
  local p = self.p
  athost.sleep(0)
  if self.lost then
    return nil, "EABORT: the link was lost (" .. self.lost .. ")", "EABORT"
  end
  return self.port:expect(pat, { abort = concat(abort, p.closed, p.pdp_deact),
    timeout = self.m:wait_ms(what) })
end

-- The link loss a request failed on (CLOSED or +PDP DEACT, which recover
-- handles differently), or nil when it failed for another reason.
function S:loss(err, code)
  local p = self.p
  if self.lost then return self.lost end
  if code == "EABORT" and err:find(p.pdp_deact, 1, true) then return p.pdp_deact end
  if (code == "EABORT" and err:find(p.closed, 1, true)) or code == "EOF" then
    return p.closed
  end
end

-- One subscribe attempt; returns true or nil, err, code.
function S:subscribe_once(topic, qos)
  local m, p = self.m, self.p
  local r, err, code = m:cmd(string.format(p.sub, at.q(topic), qos), { reply = false })
  if not r then return nil, err, code end
  r, err, code = self:await(p.suback, p.suback_fail or "ERROR", "suback")
  if not r then return nil, (err:gsub("^EABORT: .- aborted on ", "")), code end
  return true
end

-- Subscribes; after a lost link it recovers and tries once more.
function S:subscribe(topic, qos)
  qos = qos or 0
  if self.lost then self:recover() end
  local ok, err, code = self:subscribe_once(topic, qos)
  local lost = not ok and self:loss(err, code)
  if lost then
    self.lost = lost
    self:recover()
    ok, err = self:subscribe_once(topic, qos)
  end
  if not ok then fail("subscribing to " .. topic, err) end
  self.subs[topic] = qos
  return true
end

function S:unsubscribe(topic)
  local m, p = self.m, self.p
  local r, err = m:cmd(string.format(p.unsub, at.q(topic)), { reply = false })
  if not r then fail("unsubscribing from " .. topic, err) end
  r, err = self.port:expect(p.unsuback, { timeout = m:wait_ms("suback") })
  if not r then fail("unsubscribing from " .. topic, err) end
  self.subs[topic] = nil
  return true
end

-- One publish attempt; returns true or nil, err, code.
function S:publish_once(topic, payload, qos, retain)
  local m, p = self.m, self.p
  local r, err, code
  local body = self.mode == "hex" and at.hex(payload) or at.mpub_escape(payload)
  if (self.mode ~= "hex" and at.binary(payload)) or #body > m.profile.limits.mpub then
    r, err, code = m:cmd(string.format(p.pubex, at.q(topic), qos, retain and 1 or 0,
      #payload), { prompt = ">", data = payload, reply = false })
  else
    r, err, code = m:cmd(string.format(p.pub, at.q(topic), qos, retain and 1 or 0,
      at.q(body)), { reply = false })
  end
  if not r then return nil, err, code end
  if qos > 0 then
    -- QoS 1: wait for PUBACK before the next publish (000).
    r, err, code = self:await(p.puback, nil, "puback")
    if not r then return nil, err, code end
  end
  self.stats.published = self.stats.published + 1
  return true
end

-- Publishes; after a lost link it recovers and tries once more.
function S:publish(topic, payload, qos, retain)
  qos = tonumber(qos) or 0
  if self.lost then self:recover() end
  local ok, err, code = self:publish_once(topic, payload, qos, retain)
  if ok then return true end
  local lost = self:loss(err, code)
  if lost then
    self.lost = lost
    self:recover()
    ok, err = self:publish_once(topic, payload, qos, retain)
    if ok then return true end
  end
  fail("publishing to " .. topic, err)
end

-- +MQTTSTATU: 0 offline, 1 online, 2 TCP only.
function S:status()
  local p = self.p
  local r, err = self.m:cmd(p.status, { reply = p.status_reply })
  if not r then return nil, err end
  return tonumber(r[1])
end

-- Reconnects after CLOSED (003: status, MIPCLOSE, from MCONFIG/MIPSTART)
-- or +PDP DEACT (CIPSHUT, bearer again), with a bounded backoff.
function S:recover()
  local why = self.lost or "link lost"
  local m, p = self.m, self.p
  local tries = tonumber(self.o.retries) or 5
  local delay = tonumber(self.o.backoff_ms) or 1000
  athost.log("link lost (" .. why .. "): reconnecting")
  local last
  for i = 1, tries do
    self.status_before = self:status()
    m:cmd(p.close)                   -- its ERROR means already closed
    if why == p.pdp_deact then
      m:cmd(m.profile.shut, { final = m.profile.shut_ok })
      local ok, err = pcall(function()
        m:network()
        m:bearer(self.o.apn)
      end)
      if not ok then last = err end
    end
    local ok, err = pcall(self.connect, self)
    if ok then
      for topic, qos in pairs(self.subs) do
        local sok, serr = self:subscribe_once(topic, qos)
        if not sok then
          ok, err = false, "subscribing to " .. topic .. ": " .. tostring(serr)
          break
        end
      end
    end
    if ok then
      self.stats.recovered = self.stats.recovered + 1
      athost.log(string.format("reconnected (attempt %d)", i))
      return true
    end
    last = err
    if i < tries then
      athost.sleep(delay)
      delay = math.min(delay * 2, 30000)
    end
  end
  fail(string.format("reconnecting after %s (%d attempts)", why, tries), last)
end

-- Reads the cached messages (AT+MQTTMSGGET prints every full slot and
-- frees them). A command keeps only its first reply's payload, so the
-- messages are taken as URCs while it runs; the slots queued so far are
-- all read by it.
function S:fetch()
  local p = self.p
  for i = #self.queue, 1, -1 do
    if self.queue[i].slot then table.remove(self.queue, i) end
  end
  local id = self.port:on(p.cached_message, function(mt)
    self:push(mt[1], mt.payload)
  end)
  local r, err = self.m:cmd(p.msgget, { reply = false })
  self.port:off(id)
  if not r then fail("reading cached messages", err) end
end

-- Delivers queued and arriving messages to fn for up to ms, or until fn
-- returns false. Returns how many were delivered.
function S:listen(ms, fn)
  local p = self.p
  local deadline = athost.now() + ms
  local n = 0
  while true do
    -- URC handlers woken by the bytes that ended the last command run
    -- first: what they queue (a message, a lost link) is not waited for.
    athost.sleep(0)
    while #self.queue > 0 do
      local msg = table.remove(self.queue, 1)
      if msg.slot then
        self:fetch()
      else
        n = n + 1
        self.stats.received = self.stats.received + 1
        if fn(msg) == false then return n end
      end
    end
    if self.lost then self:recover() end
    local left = deadline - athost.now()
    if left <= 0 then return n end
    local alts = self.delivery == "cached" and p.cached or p.message
    local mt, err, code = self.port:expect(alts, {
      abort = concat(p.closed, p.pdp_deact), timeout = math.ceil(left) })
    if mt then
      if mt.payload then self:push(mt[1], mt.payload)
      else self.queue[#self.queue + 1] = { slot = tonumber(mt[1]) } end
    elseif code == "EABORT" then
      self.lost = err:find(p.pdp_deact, 1, true) and p.pdp_deact or p.closed
    elseif code ~= "ETIMEDOUT" then
      fail("waiting for messages", err)
    end
  end
end

function S:disconnect()
  local p = self.p
  self.m:cmd(p.disconnect)
  self.m:cmd(p.close)
  for _, id in ipairs(self.handlers) do self.port:off(id) end
  self.handlers = {}
  self.connected = false
end

return M
