-- Huawei Cloud IoTDA MQTT credentials and topics (PROTOCOLS.md,
-- reference 001).
local athost = require("athost")

local M = {}

-- The UTC hour stamp, YYYYMMDDHH, of time t (default now).
function M.hour(t)
  return os.date("!%Y%m%d%H", t)
end

-- clientId <deviceId>_0_<t>_<YYYYMMDDHH>: 0 = identified by device id;
-- t = 0 no timestamp check, 1 checked.
function M.client_id(device_id, hour, check)
  return string.format("%s_0_%d_%s", device_id, check and 1 or 0, hour)
end

-- password = hex(HMAC-SHA256(key = hour, msg = secret)): the key is the
-- timestamp, the message is the secret.
function M.password(secret, hour)
  return athost.hmac("sha256", hour, secret)
end

function M.credentials(device_id, secret, t)
  local hour = M.hour(t)
  return M.client_id(device_id, hour), device_id, M.password(secret, hour)
end

-- Topics: IoTDA ($oc/devices/...) or the legacy ones of reference 001.
function M.topics(device_id, style)
  if style == "legacy" then
    return {
      up = "/huawei/v1/devices/" .. device_id .. "/data/json",
      down = "/huawei/v1/devices/" .. device_id .. "/command/json",
    }
  end
  local base = "$oc/devices/" .. device_id .. "/sys/"
  return {
    up = base .. "properties/report",
    down = base .. "commands/#",
    messages_up = base .. "messages/up",
    messages_down = base .. "messages/down",
  }
end

return M
