-- The MQTT connection behind a virtual modem's MQTT AT commands: a real
-- TCP (and TLS) connection through athost ports, an mqtt311 client
-- session, keepalive pings. Model-independent: the Air720's AT+M*
-- commands and the ME3630's AT+CLOUD* commands both drive one of these.
--
--   local l = mqttlink.open{ host = "127.0.0.1", port = 1883,
--     tls = nil or {verify=, ca=, cert=, key=, hostname=},
--     timeout = ms, on = function(link, ev) ... end }
--   -- ev.type "open" | "fail" {message}: the transport
--   l:connect{client_id=, username=, password=, keepalive=, clean=, will=}
--   -- ev.type "connack" {rc}, "message" {topic, payload, qos, retain, id},
--   --   "puback" {id}, "suback" {id, granted}, "unsuback" {id},
--   --   "closed" {message}: the transport was lost (not after l:close())
--   l:subscribe(topic, qos), l:unsubscribe(topic), l:publish(t, p, q, r),
--   l:disconnect(), l:close()
--
-- Session calls return the packet id (or true), or nil, message when the
-- session refuses (an invalid topic, not connected). l.state is
-- "connecting", "open" or "closed"; l.session.state is the MQTT state.
local athost = require("athost")
local mqtt = require("athost.mqtt311")
local outq = require("athost.sim.outq")

local M = {}
local Link = {}
Link.__index = Link

function Link:emit(ev)
  if self.on then self.on(self, ev) end
end

local function stop_timers(self)
  if self.timer then self.timer:stop() self.timer = nil end
  if self.ticker then self.ticker:stop() self.ticker = nil end
end

-- Ends the link from this side: no event.
function Link:close()
  if self.state == "closed" then return end
  self.state = "closed"
  stop_timers(self)
  if self.out then self.out:close() end
  local c = self.port or self.pending
  if c and not c.closed then c:close() end
end

-- The transport is gone (peer, network, keepalive): "closed" event.
function Link:lose(why)
  if self.state == "closed" then return end
  self:close()
  self.why = why
  self:emit { type = "closed", message = why }
end

local function fail(self, why)
  if self.state ~= "connecting" then return end
  self:close()
  self.why = why
  self:emit { type = "fail", message = why }
end

local function session_events(self, events)
  for _, ev in ipairs(events) do
    if self.state ~= "open" then return end
    if ev.type == "error" or ev.type == "timeout" then
      self:lose(ev.message)
      return
    end
    self:emit(ev)
  end
end

local RECV_OPTS = { timeout = 0 }

local function reader(self, c)
  while self.state == "open" do
    local data, err = c:recv(65536, RECV_OPTS)
    if self.state ~= "open" then return end
    if not data then return self:lose(err) end
    session_events(self, self.session:input(data))
  end
end

local function connect(self)
  local o = self.o
  local c, err = athost.connect(o.host, o.port)
  if self.state ~= "connecting" then
    if c then c:close() end
    return
  end
  if not c then return fail(self, err) end
  c:set { transcript = false }   -- the model's network, not the dialogue
  if o.tls then
    if not c.tls then
      c:close()
      return fail(self, "ENOTSUP: this host has no port:tls")
    end
    self.pending = c
    local ok, terr = c:tls(o.tls)
    self.pending = nil
    if self.state ~= "connecting" then
      if not c.closed then c:close() end
      return
    end
    if not ok then
      if not c.closed then c:close() end
      return fail(self, terr)
    end
    if type(ok) == "userdata" then c = ok end
  end
  self.port, self.out, self.state = c, outq.new(c), "open"
  stop_timers(self)
  self.session = mqtt.session {
    send = function(bytes) self.out:write(bytes) end,
    now = athost.now,
  }
  self.ticker = athost.timer(1000, function()
    if self.state == "open" then session_events(self, self.session:tick()) end
  end, 1000)
  self:emit { type = "open" }
  reader(self, c)
end

function M.open(o)
  local self = setmetatable({ o = o, on = o.on, state = "connecting" }, Link)
  self.timer = athost.timer(o.timeout or 15000, function()
    fail(self, "ETIMEDOUT: no connection to " .. o.host .. ":" .. o.port)
  end)
  athost.spawn(connect, self)
  return self
end

-- Runs a session call; misuse (bad topic, wrong state) becomes nil, msg.
local function call(self, f, ...)
  if self.state ~= "open" then return nil, "link is " .. self.state end
  local ok, v = pcall(f, self.session, ...)
  if not ok then return nil, tostring(v) end
  return v == nil and true or v
end

function Link:connect(opts) return call(self, self.session.connect, opts) end
function Link:subscribe(topic, qos) return call(self, self.session.subscribe, topic, qos) end
function Link:unsubscribe(topic) return call(self, self.session.unsubscribe, topic) end

function Link:publish(topic, payload, qos, retain)
  return call(self, self.session.publish, topic, payload, qos, retain)
end

function Link:disconnect() return call(self, self.session.disconnect) end

-- The MQTT side is up (CONNACK accepted, not disconnected).
function Link:connected()
  return self.state == "open" and self.session.state == "connected"
end

return M
