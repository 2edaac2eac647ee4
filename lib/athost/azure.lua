-- Azure IoT Hub and the Device Provisioning Service (DPS) over MQTT
-- (CLOUDS.md section 4): shared access signatures, the user names, the
-- key a group enrollment derives for one device, the topics, and reading
-- DPS replies.
local athost = require("athost")

local M = {}

M.HUB_API = "2021-04-12"       -- learn.microsoft.com iot-mqtt-connect-to-iot-hub
M.DPS_API = "2019-03-31"       -- learn.microsoft.com iot-dps-mqtt-support
M.DPS_HOST = "global.azure-devices-provisioning.net"

-- Percent-encoding with nothing but the unreserved characters kept, hex
-- in upper case (Python's quote(s, safe='')); lower = true writes the hex
-- in lower case, as azure-sdk-for-c does for the DPS resource.
function M.quote(s, lower)
  local fmt = lower and "%%%02x" or "%%%02X"
  return (tostring(s):gsub("[^%w%-%._~]", function(c)
    return string.format(fmt, c:byte())
  end))
end

-- base64(HMAC-SHA256(key = base64decode(key), msg = text)).
function M.sign(key_b64, text)
  local key = athost.unbase64(key_b64)
  if not key or key == "" then
    error("the key is not base64 (as the portal shows it)", 0)
  end
  return athost.base64(athost.hmac("sha256", key, text, "raw"))
end

-- "SharedAccessSignature sr=<sr>&sig=<quote(sig)>&se=<se>[&skn=<name>]"
-- where sr = quote(resource) and sig signs sr .. "\n" .. se: the encoded
-- resource, byte for byte what follows "sr=". o: skn (a policy name),
-- lower (lower-case hex in sr). Returns the token and the signature.
function M.sas(resource, key_b64, se, o)
  o = o or {}
  se = string.format("%d", se)
  local sr = M.quote(resource, o.lower)
  local sig = M.sign(key_b64, sr .. "\n" .. se)
  local token = string.format("SharedAccessSignature sr=%s&sig=%s&se=%s", sr,
    M.quote(sig), se)
  if o.skn then token = token .. "&skn=" .. o.skn end
  return token, sig
end

-- A group enrollment's key for one device:
-- base64(HMAC-SHA256(key = base64decode(group key), msg = registration id)).
function M.derive_key(group_key_b64, registration_id)
  return M.sign(group_key_b64, registration_id)
end

-- IoT Hub: client id, user name, password for deviceId on hub_host
-- (<hub>.azure-devices.net), the token valid until se.
function M.hub_credentials(hub_host, device_id, key_b64, se, api)
  return device_id,
    string.format("%s/%s/?api-version=%s", hub_host, device_id, api or M.HUB_API),
    (M.sas(hub_host .. "/devices/" .. device_id, key_b64, se))
end

-- DPS: client id, user name (no "?" before api-version), password signed
-- with the device's key, skn=registration. lower: the resource's hex in
-- lower case (either works when the signed text matches).
function M.dps_credentials(id_scope, registration_id, key_b64, se, api, lower)
  return registration_id,
    string.format("%s/registrations/%s/api-version=%s", id_scope, registration_id,
      api or M.DPS_API),
    (M.sas(id_scope .. "/registrations/" .. registration_id, key_b64, se,
      { skn = "registration", lower = lower }))
end

-- Device-to-cloud and cloud-to-device topics of deviceId. properties: a
-- list of { name, value } appended to the events topic URL-encoded.
function M.topics(device_id, properties)
  local tail = {}
  for _, kv in ipairs(properties or {}) do
    tail[#tail + 1] = M.quote(kv[1]) .. "=" .. M.quote(kv[2])
  end
  return {
    events = "devices/" .. device_id .. "/messages/events/" .. table.concat(tail, "&"),
    c2d = "devices/" .. device_id .. "/messages/devicebound/#",
    c2d_prefix = "devices/" .. device_id .. "/messages/devicebound/",
    methods = "$iothub/methods/POST/#",
  }
end

-- The properties in a cloud-to-device topic's tail ("k1=v1&k2=v2",
-- URL-encoded), as a table.
function M.c2d_properties(topic, device_id)
  local prefix = "devices/" .. device_id .. "/messages/devicebound/"
  if topic:sub(1, #prefix) ~= prefix then return nil end
  local out = {}
  for k, v in topic:sub(#prefix + 1):gmatch("([^&=]+)=?([^&]*)") do
    local function dec(s) return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end)) end
    out[dec(k)] = dec(v)
  end
  return out
end

-- A direct method request: name and rid of "$iothub/methods/POST/<name>/?$rid=<rid>".
function M.method_request(topic)
  return topic:match("^%$iothub/methods/POST/([^/]+)/%?%$rid=(.+)$")
end

function M.method_response(status, rid)
  return string.format("$iothub/methods/res/%d/?$rid=%s", status, rid)
end

-- DPS topics.
M.DPS_REPLIES = "$dps/registrations/res/#"

function M.dps_register_topic(rid)
  return "$dps/registrations/PUT/iotdps-register/?$rid=" .. rid
end

function M.dps_status_topic(rid, operation_id)
  return string.format("$dps/registrations/GET/iotdps-get-operationstatus/?$rid=%s&operationId=%s",
    rid, operation_id)
end

-- A DPS reply topic "$dps/registrations/res/<status>/?$rid=<rid>[&retry-after=<s>]":
-- status (number), rid, retry-after seconds (or nil); nil when it is not one.
function M.dps_reply(topic)
  local status, query = topic:match("^%$dps/registrations/res/(%d+)/%?(.*)$")
  if not status then return nil end
  local q = {}
  for k, v in query:gmatch("([^&=]+)=([^&]*)") do q[k] = v end
  return tonumber(status), q["$rid"], tonumber(q["retry-after"])
end

-- The DPS registration on a connected session s: subscribe to the
-- replies, PUT the registration, then poll the operation's status after
-- each retry-after until DPS says "assigned". Returns the
-- registrationState (assignedHub, deviceId); raises with DPS's status,
-- errorCode and message. o: payload (a table sent as "payload"),
-- retry_after (seconds when DPS names none), polls (at most), timeout
-- (ms for each reply), log(s).
function M.provision(s, registration_id, o)
  o = o or {}
  local log = o.log or function() end
  s:subscribe(M.DPS_REPLIES, 1)
  local rid = 0
  local function ask(topic, body)
    rid = rid + 1
    local want = tostring(rid)
    s:publish(topic(want), body, 1)
    local got
    s:listen(o.timeout or 30000, function(msg)
      local status, r, retry = M.dps_reply(msg.topic)
      if status and r == want then
        got = { status = status, retry = retry, payload = msg.payload }
        return false
      end
    end)
    if not got then
      error(string.format("DPS: no reply to request %s within %d s", want,
        (o.timeout or 30000) // 1000), 0)
    end
    local ok, v = pcall(athost.json.decode, got.payload)
    got.body = ok and type(v) == "table" and v or {}
    if got.status >= 300 then
      local b = got.body
      error(string.format("DPS answered %d: errorCode %s: %s", got.status,
        tostring(math.tointeger(b.errorCode) or b.errorCode),
        tostring(b.message or got.payload:sub(1, 160))), 0)
    end
    return got
  end
  local body = { registrationId = registration_id, payload = o.payload }
  local got = ask(M.dps_register_topic, athost.json.encode(body))
  for _ = 1, o.polls or 20 do
    local b = got.body
    if b.status == "assigned" and type(b.registrationState) == "table" then
      local st = b.registrationState
      if type(st.assignedHub) ~= "string" or type(st.deviceId) ~= "string" then
        error("DPS: assigned, but the reply names no assignedHub/deviceId", 0)
      end
      return st
    end
    if b.status ~= "assigning" and b.status ~= "unassigned" then
      local st = type(b.registrationState) == "table" and b.registrationState or {}
      error(string.format("DPS: registration %s (%s)", tostring(b.status),
        tostring(st.errorMessage or st.substatus or "no reason given")), 0)
    end
    if type(b.operationId) ~= "string" then
      error("DPS: the reply has no operationId to poll", 0)
    end
    local wait = got.retry or o.retry_after or 3
    log(string.format("%s, asking again in %d s", b.status, wait))
    athost.sleep(wait * 1000)
    got = ask(function(r) return M.dps_status_topic(r, b.operationId) end, "")
  end
  error(string.format("DPS: still not assigned after %d polls", o.polls or 20), 0)
end

return M
