-- A cloud service that answers over MQTT, as a client of the local
-- broker: AWS fleet provisioning and Azure DPS (lib/athost/sim/aws_fleet.lua,
-- azure_dps.lua) are this with their own handlers. Each request is
-- handled in a flow of its own, so one that waits (openssl minting a
-- certificate) does not hold up the others.
--
--   local r = responder.start { host = "127.0.0.1", port = 1883,
--     username = u, password = p, client_id = "aws-fleet",
--     topics = { "$aws/certificates/create/json", ... },
--     handle = function(r, topic, payload) r:reply(t, body) end,
--     log = function(s) ... end }
--   r:ready(ms)     -- true once every subscription is acknowledged
local athost = require("athost")
local mqttlink = require("athost.sim.mqttlink")

local M = {}
local R = {}
R.__index = R

function M.start(o)
  local self = setmetatable({ o = o, pending = {}, acked = 0, failed = nil }, R)
  local function log(s) if o.log then o.log(s) end end
  self.log = log
  self.link = mqttlink.open { host = o.host or "127.0.0.1", port = o.port or 1883,
    timeout = 10000, on = function(l, ev)
      if ev.type == "open" then
        l:connect { client_id = o.client_id, username = o.username,
          password = o.password, keepalive = 60, clean = true }
      elseif ev.type == "connack" then
        if ev.rc ~= 0 then
          self.failed = "the broker refused the responder (CONNACK " .. ev.rc .. ")"
          return
        end
        for _, topic in ipairs(o.topics) do l:subscribe(topic, 1) end
      elseif ev.type == "suback" then
        self.acked = self.acked + 1
      elseif ev.type == "message" then
        athost.spawn(function()
          local ok, err = pcall(o.handle, self, ev.topic, ev.payload)
          if not ok then log("handling " .. ev.topic .. ": " .. tostring(err)) end
        end)
      elseif ev.type == "fail" or ev.type == "closed" then
        self.failed = "the link to the broker: " .. tostring(ev.message)
      end
    end }
  return self
end

-- Waits until every subscription is acknowledged: true, or nil, why.
function R:ready(ms)
  local deadline = athost.now() + (ms or 10000)
  while self.acked < #self.o.topics do
    if self.failed then return nil, self.failed end
    if athost.now() > deadline then return nil, "no SUBACK from the broker" end
    athost.sleep(20)
  end
  return true
end

-- Publishes a reply at QoS 1.
function R:reply(topic, body)
  self.log(topic .. " <- " .. body:sub(1, 160))
  local ok, err = self.link:publish(topic, body, 1, false)
  if not ok then self.log("publishing to " .. topic .. ": " .. tostring(err)) end
end

-- Runs until the link ends.
function R:run()
  while not self.failed do athost.sleep(200) end
  return nil, self.failed
end

return M
