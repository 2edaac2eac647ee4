-- A local stand-in for the Azure IoT Hub Device Provisioning Service over
-- MQTT (CLOUDS.md section 4; az_iot_provisioning_client.c), answering on
-- the local broker what DPS answers a device:
--
--   $dps/registrations/PUT/iotdps-register/?$rid=<rid>  {"registrationId":..}
--     -> $dps/registrations/res/202/?$rid=<rid>&retry-after=<s>
--        {"operationId":..,"status":"assigning"}
--   $dps/registrations/GET/iotdps-get-operationstatus/?$rid=<rid>&operationId=<op>
--     -> 202 "assigning" (polls times), then 200 {"operationId":..,
--        "status":"assigned","registrationState":{"registrationId":..,
--        "assignedHub":<hub>,"deviceId":<registrationId>,"status":"assigned",..}}
--
-- A registration id in deny is refused: 401 {"errorCode":401002,
-- "trackingId":..,"message":..}; an unknown operation is 404. The
-- broker's password file is what checks the device's SAS token (the
-- test enrolls it); this answers as the service does once the
-- connection is accepted.
--
--   local d = require("athost.sim.azure_dps").new { hub = "h.azure-devices.net",
--     polls = 1, retry_after = 1, deny = { ["sn-9"] = true }, state = FILE, log = fn }
--   d:start { host, port, username, password }
local athost = require("athost")
local responder = require("athost.sim.responder")

local M = {}
local D = {}
D.__index = D

function M.new(o)
  return setmetatable({ o = o, ops = {}, devices = {}, log = o.log or function() end }, D)
end

function D:save()
  if not self.o.state then return end
  assert(athost.write_private(self.o.state, athost.json.encode({
    devices = self.devices }) .. "\n"))
end

local function uuid()
  local h = athost.random(16, "hex")
  return string.format("%s-%s-%s-%s-%s", h:sub(1, 8), h:sub(9, 12), h:sub(13, 16),
    h:sub(17, 20), h:sub(21, 32))
end

local function res(r, status, rid, body, retry)
  r:reply(string.format("$dps/registrations/res/%d/?$rid=%s%s", status, rid,
    retry and "&retry-after=" .. retry or ""), athost.json.encode(body))
end

local function query(topic)
  local q = {}
  for k, v in (topic:match("%?(.*)$") or ""):gmatch("([^&=]+)=([^&]*)") do q[k] = v end
  return q
end

function D:register(r, rid, payload)
  local ok, v = pcall(athost.json.decode, payload)
  if not ok or type(v) ~= "table" or type(v.registrationId) ~= "string" then
    return res(r, 400, rid, { errorCode = 400004, trackingId = uuid(),
      message = "Bad request: the body has no registrationId" })
  end
  local reg = v.registrationId
  if (self.o.deny or {})[reg] then
    return res(r, 401, rid, { errorCode = 401002, trackingId = uuid(),
      message = "The device " .. reg .. " is not authorized: its enrollment is disabled" })
  end
  local op = "4." .. athost.random(8, "hex") .. "." .. uuid()
  self.ops[op] = { registrationId = reg, polls = self.o.polls or 1 }
  res(r, 202, rid, { operationId = op, status = "assigning" }, self.o.retry_after or 1)
end

function D:status(r, rid, op_id)
  local op = self.ops[op_id or ""]
  if not op then
    return res(r, 404, rid, { errorCode = 404002, trackingId = uuid(),
      message = "Operation " .. tostring(op_id) .. " not found" })
  end
  if op.polls > 0 then
    op.polls = op.polls - 1
    return res(r, 202, rid, { operationId = op_id, status = "assigning" },
      self.o.retry_after or 1)
  end
  local reg = op.registrationId
  local state = { registrationId = reg, assignedHub = self.o.hub, deviceId = reg,
    status = "assigned", substatus = "initialAssignment",
    createdDateTimeUtc = os.date("!%Y-%m-%dT%H:%M:%SZ"), etag = '"' .. athost.random(4, "hex") .. '"' }
  self.devices[reg] = { assignedHub = self.o.hub, deviceId = reg,
    registrations = ((self.devices[reg] or {}).registrations or 0) + 1 }
  self:save()
  res(r, 200, rid, { operationId = op_id, status = "assigned", registrationState = state })
end

function D:start(b)
  return responder.start { host = b.host, port = b.port, username = b.username,
    password = b.password, client_id = "azure-dps-" .. athost.random(3, "hex"),
    log = self.o.log,
    topics = { "$dps/registrations/PUT/#", "$dps/registrations/GET/#" },
    handle = function(r, topic, payload)
      local q = query(topic)
      local rid = q["$rid"] or ""
      if topic:find("^%$dps/registrations/PUT/iotdps%-register/") then
        return self:register(r, rid, payload)
      elseif topic:find("^%$dps/registrations/GET/iotdps%-get%-operationstatus/") then
        return self:status(r, rid, q.operationId)
      end
      res(r, 404, rid, { errorCode = 404001, trackingId = uuid(), message = "no such operation " .. topic })
    end }
end

return M
