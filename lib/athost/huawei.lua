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

-- A property report in IoTDA's envelope: text is a JSON object of
-- properties ({"temperature":25}), sent as
-- {"services":[{"service_id":<service_id>,"properties":<text>}]}, or a
-- whole report ({"services":[...]}), sent as it is. The user's text is
-- kept byte for byte; anything else raises (the legacy topics take raw
-- text).
function M.report(text, service_id)
  local ok, v = pcall(athost.json.decode, text)
  if not ok or type(v) ~= "table" or text:match("^%s*%[") then
    error("IoTDA reports properties: publish= must be a JSON object of properties "
      .. "({\"temperature\":25}) or a {\"services\":[...]} report (topics=legacy sends "
      .. "raw text)", 0)
  end
  if v.services ~= nil then return text end
  return '{"services":[{"service_id":' .. athost.json.encode(service_id)
    .. ',"properties":' .. text .. '}]}'
end

-- The request id of a command request topic
-- $oc/devices/<id>/sys/commands/request_id=<rid>, or nil (a response
-- topic, or another one).
function M.command_request(topic, device_id)
  local prefix = "$oc/devices/" .. device_id .. "/sys/commands/request_id="
  if topic:sub(1, #prefix) ~= prefix then return nil end
  return topic:sub(#prefix + 1)
end

function M.command_response_topic(device_id, request_id)
  return "$oc/devices/" .. device_id .. "/sys/commands/response/request_id=" .. request_id
end

-- The response body: result_code 0 is success.
function M.command_response(result_code, paras, response_name)
  return athost.json.encode({ result_code = result_code or 0,
    response_name = response_name or "COMMAND_RESPONSE", paras = paras or { result = "success" } })
end

return M
