-- A local stand-in for ThingsBoard's device self-provisioning over MQTT
-- (CLOUDS.md 5), for tests and demos: a client of the local mosquitto
-- subscribed to /provision/request that answers on /provision/response.
--
--   local p = require("athost.sim.tb_provision").new {
--     host = "127.0.0.1", port = 1883,
--     profiles = { { "provisionKey", "provisionSecret" } },
--     acl = "DIR/acl", broker_pid = 1234,    -- the broker that grants tokens
--     log = function(line) end,
--   }
--   p:run()    -- serves until the process ends
--
-- A request with a known key and its secret gets a fresh 20-character
-- access token: {"status":"SUCCESS","credentialsType":"ACCESS_TOKEN",
-- "credentialsValue":"<token>"}, answered only once the broker grants the
-- token its topics (an ACL entry, SIGHUP, then a message that reaches a
-- client of that token). Refusals (M.REFUSALS, this simulator's
-- wording: ThingsBoard publishes no list): an unknown key or a wrong
-- secret, and a device name provisioned before.
local athost = require("athost")
local mqttlink = require("athost.sim.mqttlink")
local aliyun_auth = require("athost.sim.aliyun_auth")

local M = {}

M.REFUSALS = {
  not_found = { "NOT_FOUND", "Provision data was not found!" },
  exists = { "FAILURE", "Device with this name already exists" },
  param = { "FAILURE", "Bad provision request" },
}

local P = {}
P.__index = P

function M.new(o)
  local self = setmetatable({ o = o, profiles = {}, names = {}, log = o.log or function() end }, P)
  for _, kv in ipairs(o.profiles or {}) do self.profiles[kv[1]] = athost.secret(kv[2]) end
  return self
end

-- An MQTT client whose events queue up; wait(type, ms) takes the first
-- event of that type, or nil, why when the link fails or ms pass.
local function client(o, username, on_message)
  local c = { events = {} }
  c.link = mqttlink.open { host = o.host, port = o.port, timeout = 10000,
    on = function(l, ev)
      if ev.type == "open" then
        l:connect { client_id = "tb-" .. athost.random(4, "hex"), username = username,
          keepalive = 60, clean = true }
      elseif ev.type == "message" and on_message then
        athost.spawn(on_message, ev)
      else
        c.events[#c.events + 1] = ev
      end
    end }
  function c.wait(kind, ms)
    local deadline = athost.now() + ms
    while true do
      for i, ev in ipairs(c.events) do
        if ev.type == kind then
          table.remove(c.events, i)
          return ev
        end
        if ev.type == "fail" or ev.type == "closed" then return nil, ev.message end
      end
      if athost.now() > deadline then return nil, "ETIMEDOUT: no " .. kind end
      athost.sleep(10)
    end
  end
  local ack, err = c.wait("connack", 10000)
  if not ack or ack.rc ~= 0 then
    c.link:close()
    return nil, err or ("CONNACK " .. tostring(ack.rc))
  end
  return c
end

-- Grants token the device topics and waits until the broker applies it:
-- mosquitto grants every subscription and applies its ACL when it
-- delivers, so the proof is a message on v1/devices/me/ that reaches a
-- client subscribed as the token.
function P:grant(token)
  local f = assert(io.open(self.o.acl, "ab"))
  f:write("\nuser ", token, "\ntopic readwrite v1/devices/me/#\n")
  f:close()
  assert(os.execute("kill -HUP " .. math.tointeger(self.o.broker_pid)))
  local probe = "v1/devices/me/attributes/probe-" .. athost.random(4, "hex")
  local c, err = client(self.o, token)
  if not c then return nil, "the token cannot connect: " .. tostring(err) end
  c.link:subscribe(probe, 0)
  local ok = c.wait("suback", 5000)
  local deadline = athost.now() + 10000
  while ok and athost.now() < deadline do
    self.main.link:publish(probe, "granted?", 0)
    if c.wait("message", 200) then
      c.link:close()
      return true
    end
  end
  c.link:close()
  return nil, "the broker did not grant the token within 10 s"
end

function P:answer(payload)
  local ok, r = pcall(athost.json.decode, payload)
  local function refuse(which)
    local w = M.REFUSALS[which]
    return aliyun_auth.json { status = w[1], errorMsg = w[2] }, w[1]
  end
  if not ok or type(r) ~= "table" or type(r.provisionDeviceKey) ~= "string"
      or type(r.provisionDeviceSecret) ~= "string" then
    return refuse("param")
  end
  local secret = self.profiles[r.provisionDeviceKey]
  if not secret or secret ~= r.provisionDeviceSecret then return refuse("not_found") end
  local name = type(r.deviceName) == "string" and r.deviceName or aliyun_auth.alnum(12)
  if self.names[name] then return refuse("exists") end
  local token = athost.secret(aliyun_auth.alnum(20))
  local granted, why = self:grant(token)
  if not granted then error(why, 0) end
  self.names[name] = token
  return aliyun_auth.json { status = "SUCCESS", credentialsType = "ACCESS_TOKEN",
    credentialsValue = token }, "SUCCESS"
end

function P:run()
  local main
  main = assert(client(self.o, self.o.username, function(ev)
    if ev.topic ~= "/provision/request" then return end
    local body, status = self:answer(ev.payload)
    main.link:publish("/provision/response", body, 1)
    self.log("provision request -> " .. status)
  end))
  self.main = main
  main.link:subscribe("/provision/request", 1)
  assert(main.wait("suback", 5000))
  self.log("subscribed to /provision/request")
  while true do
    local _, why = main.wait("never", 3600 * 1000)
    if why and not why:find("ETIMEDOUT", 1, true) then error("broker link lost: " .. why, 0) end
  end
end

return M
