-- ThingsBoard's device MQTT API (CLOUDS.md 5): topics, the device
-- self-provisioning request and the two spellings of its reply.
local athost = require("athost")

local M = {}

M.TELEMETRY = "v1/devices/me/telemetry"
M.ATTRIBUTES = "v1/devices/me/attributes"
M.RPC_REQUEST = "v1/devices/me/rpc/request/+"
M.PROVISION_USER = "provision"
M.PROVISION_REQUEST = "/provision/request"
M.PROVISION_RESPONSE = "/provision/response"

-- The request id of an RPC request topic, or nil.
function M.rpc_id(topic)
  return topic:match("^v1/devices/me/rpc/request/([^/]+)$")
end

function M.rpc_response(id)
  return "v1/devices/me/rpc/response/" .. id
end

-- {"deviceName":..,"provisionDeviceKey":..,"provisionDeviceSecret":..}
-- (deviceName optional), fields in the docs' order.
function M.provision_request(key, secret, device_name)
  local e = athost.json.encode
  return string.format('{%s"provisionDeviceKey":%s,"provisionDeviceSecret":%s}',
    device_name and ('"deviceName":' .. e(device_name) .. ",") or "", e(key), e(secret))
end

-- The access token of a provisioning reply, or nil, what the reply said.
-- Both spellings: {"status":"SUCCESS","credentialsType":"ACCESS_TOKEN",
-- "credentialsValue":".."} and the older {"provisionDeviceStatus":
-- "SUCCESS",..,"accessToken":".."}; any other status is a refusal.
function M.provision_token(body)
  local ok, r = pcall(athost.json.decode, body)
  if not ok or type(r) ~= "table" then
    return nil, string.format("the reply is not JSON: %q", body:sub(1, 120))
  end
  local status = r.status or r.provisionDeviceStatus
  local token = r.credentialsValue or r.accessToken
  if status ~= "SUCCESS" then
    local said = { "status " .. tostring(status) }
    for _, k in ipairs({ "errorMsg", "message", "msg" }) do
      if r[k] then said[#said + 1] = tostring(r[k]) end
    end
    return nil, table.concat(said, ": ")
  end
  if r.credentialsType and r.credentialsType ~= "ACCESS_TOKEN" then
    return nil, "credentialsType " .. tostring(r.credentialsType)
      .. " (only ACCESS_TOKEN is asked for)"
  end
  if type(token) ~= "string" or token == "" then
    return nil, "SUCCESS without an access token"
  end
  return token
end

return M
