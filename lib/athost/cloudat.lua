-- The ME3630's own Aliyun commands (reference 002): AT+CLOUDAUTH,
-- AT+CLOUDCONN, AT+CLOUDSUB, AT+CLOUDPUB, +CLOUDPUBLISH. The same session
-- interface as athost.mqttat, so a flow's tail does not care which.
local athost = require("athost")

local M = {}
local S = {}
S.__index = S

function M.new(m, o)
  local c = m.profile.cloud
  if not c then error(m.profile.name .. " has no cloud commands", 2) end
  local self = setmetatable({ m = m, port = m.port, c = c, o = o, queue = {},
    subs = {}, stats = { published = 0, received = 0, recovered = 0 } }, S)
  self.urc = self.port:on(c.message, function(mt)
    self.queue[#self.queue + 1] = { topic = mt[2], payload = mt.payload }
  end)
  return self
end

local function fail(what, err)
  error(what .. ": " .. tostring(err), 0)
end

local function check(self, what, s, limit)
  if #s > limit then
    fail(what, string.format("%d bytes, the %s takes at most %d", #s,
      self.m.profile.name, limit))
  end
  if s:find("[\r\n]") then fail(what, "a line end cannot cross AT+CLOUDPUB") end
end

-- AT+CLOUDAUTH (+ALIAUTH: OK), then AT+CLOUDCONN.
function S:connect()
  local o, c, m = self.o, self.c, self.m
  local r, err = m:cmd(string.format(c.auth, o.product_key, o.device_name,
    o.device_secret), { reply = false })
  if not r then fail("device auth", err) end
  r, err = self.port:expect(c.auth_ok, { abort = c.auth_fail,
    timeout = m:wait_ms("auth") })
  if not r then
    fail("device auth refused", (err:gsub("^EABORT: .- aborted on ", "")))
  end
  r, err = m:cmd(c.conn)
  if not r then fail("MQTT connect", err) end
  return true
end

function S:subscribe(topic, qos)
  local c = self.c
  check(self, "topic " .. topic, topic, self.m.profile.limits.topic)
  local r, err = self.m:cmd(string.format(c.sub, topic, qos or 0),
    { reply = false })
  if not r then fail("subscribing to " .. topic, err) end
  r, err = self.port:expect(c.suback, { abort = c.suback_fail,
    timeout = self.m:timeout("AT+CLOUDSUB") })
  if not r then fail("subscribing to " .. topic, err) end
  self.subs[topic] = qos or 0
  return true
end

function S:publish(topic, payload, qos)
  check(self, "publishing to " .. topic, payload, self.m.profile.limits.payload)
  local r, err = self.m:cmd(string.format(self.c.pub, topic, tonumber(qos) or 0,
    payload), { reply = false })
  if not r then fail("publishing to " .. topic, err) end
  self.stats.published = self.stats.published + 1
  return true
end

function S:listen(ms, fn)
  local deadline = athost.now() + ms
  local n = 0
  while true do
    while #self.queue > 0 do
      n = n + 1
      self.stats.received = self.stats.received + 1
      if fn(table.remove(self.queue, 1)) == false then return n end
    end
    local left = deadline - athost.now()
    if left <= 0 then return n end
    local mt, err, code = self.port:expect(self.c.message,
      { timeout = math.ceil(left) })
    if mt then
      self.queue[#self.queue + 1] = { topic = mt[2], payload = mt.payload }
    elseif code ~= "ETIMEDOUT" then
      fail("waiting for messages", err)
    end
  end
end

function S:disconnect()
  self.m:cmd(self.c.disconn)
  self.port:off(self.urc)
end

return M
