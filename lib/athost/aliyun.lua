-- Alibaba Cloud IoT (Aliyun) signing and device provisioning
-- (PROTOCOLS.md, reference 000): dynamic registration with a product
-- secret, device auth for iotId/iotToken, MQTT direct-connection
-- credentials, and the device secret kept between runs.
local athost = require("athost")
local session = require("athost.session")
local state = require("athost.state")

local M = {}

-- sign_method parameter -> the spelling each endpoint uses.
local methods = {
  hmacmd5 = { reg = "HmacMD5", auth = "hmacmd5", alg = "md5" },
  hmacsha1 = { reg = "HmacSHA1", auth = "hmacsha1", alg = "sha1" },
  hmacsha256 = { reg = "HmacSHA256", auth = "hmacsha256", alg = "sha256" },
}

function M.method(name)
  local m = methods[(name or "hmacmd5"):lower()]
  if not m then
    error(string.format("sign_method %q: use hmacmd5, hmacsha1 or hmacsha256",
      tostring(name)), 0)
  end
  return m
end

-- Dynamic registration sign: key productSecret,
-- msg "deviceName"..dn.."productKey"..pk.."random"..r.
function M.register_sign(pk, ps, dn, random, method)
  return athost.hmac(M.method(method).alg, ps,
    "deviceName" .. dn .. "productKey" .. pk .. "random" .. random)
end

-- Device sign (auth and direct MQTT): key deviceSecret, the params sorted
-- by name, timestamp only when sent.
function M.device_sign(ds, cid, dn, pk, ts, method)
  local msg = "clientId" .. cid .. "deviceName" .. dn .. "productKey" .. pk
  if ts then msg = msg .. "timestamp" .. ts end
  return athost.hmac(M.method(method).alg, ds, msg)
end

-- MQTT direct connection: client id, user name, password.
function M.direct(pk, dn, ds, o)
  o = o or {}
  local cid = o.client_id or dn
  local method = M.method(o.sign_method).auth
  local extra = string.format("securemode=%d,signmethod=%s", o.securemode or 2,
    method)
  if o.timestamp then extra = extra .. ",timestamp=" .. o.timestamp end
  return cid .. "|" .. extra .. "|", dn .. "&" .. pk,
    M.device_sign(ds, cid, dn, pk, o.timestamp, o.sign_method)
end

function M.auth_url(region, path, base)
  return (base or string.format("https://iot-auth.%s.aliyuncs.com", region)) .. path
end

function M.mqtt_host(pk, region)
  return string.format("%s.iot-as-mqtt.%s.aliyuncs.com", pk, region)
end

-- The secrets in a reply (deviceSecret, iotToken), masked from the moment
-- the flow has read them, before the transcript writes the reply.
local function mask(body)
  local ok, v = pcall(athost.json.decode, body)
  local data = ok and type(v) == "table" and v.data
  if type(data) ~= "table" then return end
  for _, k in ipairs({ "deviceSecret", "iotToken" }) do
    if type(data[k]) == "string" and data[k] ~= "" then athost.secret(data[k]) end
  end
end

-- POSTs a form through the module and decodes the JSON reply; raises
-- with Aliyun's code and message unless it is 200.
local function call(m, url, form, what)
  local status, body = session.http(m, "POST", url, form,
    "application/x-www-form-urlencoded", { seen = mask })
  if status ~= 200 then
    error(string.format("%s: HTTP %d from %s: %s", what, status, url,
      body:sub(1, 200)), 0)
  end
  local reply = session.json(body, what)
  if reply.code ~= 200 then
    -- cjson decodes every number as a float: 6289 would print as 6289.0.
    local code = math.tointeger(reply.code) or reply.code
    error(string.format("%s refused: code %s %s", what, tostring(code),
      tostring(reply.message or "")), 0)
  end
  return reply.data or {}
end

-- Registers dn under pk with the product secret; returns the device secret.
function M.register(m, o)
  local method = M.method(o.sign_method)
  local random = athost.random(8, "hex")
  local sign = M.register_sign(o.product_key, o.product_secret, o.device_name,
    random, o.sign_method)
  local form = session.form({
    { "productKey", o.product_key }, { "deviceName", o.device_name },
    { "random", random }, { "sign", sign }, { "signMethod", method.reg },
  })
  local data = call(m, M.auth_url(o.region, "/auth/register/device", o.auth_base),
    form, "registration")
  if type(data.deviceSecret) ~= "string" or data.deviceSecret == "" then
    error("registration: the reply has no deviceSecret", 0)
  end
  athost.secret(data.deviceSecret)
  return data.deviceSecret
end

-- Device auth: returns iotId, iotToken and the MQTT host and port when the
-- reply names them (resources=mqtt).
function M.auth(m, o)
  local method = M.method(o.sign_method)
  local cid = o.client_id or o.device_name
  local ts = o.timestamp and tostring(o.timestamp) or nil
  local sign = M.device_sign(o.device_secret, cid, o.device_name, o.product_key,
    ts, o.sign_method)
  local fields = {
    { "productKey", o.product_key }, { "sign", sign }, { "clientId", cid },
    { "deviceName", o.device_name }, { "signmethod", method.auth },
  }
  if ts then fields[#fields + 1] = { "timestamp", ts } end
  fields[#fields + 1] = { "resources", "mqtt" }
  local data = call(m, M.auth_url(o.region, "/auth/devicename", o.auth_base),
    session.form(fields), "device auth")
  if not data.iotId or not data.iotToken then
    error("device auth: the reply has no iotId/iotToken", 0)
  end
  athost.secret(data.iotToken)
  local mqtt = data.resources and data.resources.mqtt or {}
  return data.iotId, data.iotToken, mqtt.host, tonumber(mqtt.port)
end

-- ---- the device secret between runs (athost.state) ------------------------

M.state_dir = state.dir

-- The stored device secret of pk/dn, or nil.
function M.load_secret(dir, pk, dn)
  local v = state.load(dir, "aliyun", pk, dn)
  if v and type(v.device_secret) == "string" then
    athost.secret(v.device_secret)
    return v.device_secret
  end
  return nil
end

-- Stores the device secret (0600, atomically: athost.state.save).
function M.save_secret(dir, pk, dn, ds)
  return state.save(dir, { product_key = pk, device_name = dn, device_secret = ds },
    "aliyun", pk, dn)
end

return M
