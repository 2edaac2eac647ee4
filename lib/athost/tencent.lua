-- Tencent Cloud IoT Explorer / IoT Hub (CLOUDS.md 1): the MQTT key-auth
-- credentials, dynamic registration (product secret -> device PSK, the
-- reply AES-decrypted), and the data-template topics and JSON envelope.
local athost = require("athost")
local session = require("athost.session")

local M = {}

-- The docs' fixed sdkappid; the C SDK sends 21010406 and both appear in
-- the field (CLOUDS.md, "uncertain"): the flow takes it as a parameter.
M.SDKAPPID = "12010126"
-- What the SDK sends as the expiry when it has no clock (LONG_MAX).
M.NO_EXPIRY = "9223372036854775807"
M.REGISTER_URL = "https://ap-guangzhou.gateway.tencentdevices.com/register/dev"

local METHODS = { hmacsha1 = "sha1", hmacsha256 = "sha256" }

function M.method(name)
  local alg = METHODS[(name or "hmacsha256"):lower()]
  if not alg then
    error(string.format("sign_method %q: use hmacsha1 or hmacsha256", tostring(name)), 0)
  end
  return alg, (name or "hmacsha256"):lower()
end

function M.mqtt_host(pid, region)
  if region and region ~= "" and region ~= "ap-guangzhou" then
    return string.format("%s.%s.iotcloud.tencentdevices.com", pid, region)
  end
  return pid .. ".iotcloud.tencentdevices.com"
end

-- username = <clientId>;<sdkappid>;<connid>;<expiry>, clientId = pid..dn.
function M.username(pid, dn, sdkappid, connid, expiry)
  return string.format("%s%s;%s;%s;%s", pid, dn, sdkappid or M.SDKAPPID, connid,
    tostring(expiry))
end

-- password = lowercase hex(HMAC(base64decode(psk), username)) ";hmacsha1|256".
function M.password(psk, username, method)
  local alg, name = M.method(method)
  local key, err = athost.unbase64(psk)
  if not key then error("device_psk is not base64: " .. err, 0) end
  return athost.hmac(alg, key, username) .. ";" .. name
end

-- Five alphanumerics, as the SDK's connid.
function M.connid()
  local abc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
  return (athost.random(5):gsub(".", function(c)
    local i = c:byte() % #abc + 1
    return abc:sub(i, i)
  end))
end

-- client id, username, password. o: product_id, device_name, device_psk,
-- sdkappid, connid, expiry (absolute Unix seconds), sign_method.
function M.credentials(o)
  local user = M.username(o.product_id, o.device_name, o.sdkappid,
    o.connid or M.connid(), o.expiry or M.NO_EXPIRY)
  return o.product_id .. o.device_name, user,
    M.password(o.device_psk, user, o.sign_method)
end

-- ---- dynamic registration (legacy API, /register/dev) ---------------------

-- base64 of the 40-character lowercase hex of HMAC-SHA1(productSecret as
-- ASCII, "deviceName=..&nonce=..&productId=..&timestamp=..").
function M.register_sign(product_secret, pid, dn, nonce, timestamp)
  return athost.base64(athost.hmac("sha1", product_secret, string.format(
    "deviceName=%s&nonce=%s&productId=%s&timestamp=%s", dn, nonce, pid, timestamp)))
end

-- The request body in the SDK's field order, numbers unquoted.
function M.register_body(product_secret, pid, dn, nonce, timestamp)
  local q = function(s) return athost.json.encode(tostring(s)) end
  return string.format('{"deviceName":%s,"nonce":%d,"productId":%s,"timestamp":%d,'
    .. '"signature":%s}', q(dn), nonce, q(pid), timestamp,
    q(M.register_sign(product_secret, pid, dn, nonce, timestamp)))
end

-- The reply's payload: base64 of AES-128-CBC, key = the first 16 chars of
-- the product secret, IV 16 x '0', zero padding, `len` plaintext bytes.
-- Returns the decoded plaintext table.
function M.decrypt(product_secret, payload, len)
  local ct, err = athost.unbase64(payload)
  if not ct then error("registration: the payload is not base64: " .. err, 0) end
  local pt
  pt, err = athost.cipher("aes-128-cbc", "decrypt", product_secret:sub(1, 16),
    string.rep("0", 16), ct)
  if not pt then error("registration: cannot decrypt the payload: " .. err, 0) end
  len = math.tointeger(len)
  if len and len >= 0 and len <= #pt then
    pt = pt:sub(1, len)
  else
    pt = pt:gsub("%z+$", "")
  end
  local ok, v = pcall(athost.json.decode, pt)
  if not ok or type(v) ~= "table" then
    error("registration: the decrypted payload is not JSON (wrong product secret?)", 0)
  end
  return v
end

-- Registers dn with the product secret through the module's HTTP commands;
-- returns the device PSK. o: product_id, device_name, product_secret, url,
-- content_type, nonce, timestamp.
function M.register(m, o)
  if #o.product_secret < 16 then
    error("product_secret: Tencent's are at least 16 characters (the AES key is the first 16)", 0)
  end
  local nonce = o.nonce or (string.unpack("<I4", athost.random(4)) % 2147483647)
  local ts = o.timestamp or os.time()
  local url = o.url or M.REGISTER_URL
  local status, body = session.http(m, "POST", url,
    M.register_body(o.product_secret, o.product_id, o.device_name, nonce, ts),
    o.content_type or "application/json; charset=UTF-8")
  if status ~= 200 then
    error(string.format("registration: HTTP %d from %s: %s", status, url, body:sub(1, 200)), 0)
  end
  local reply = session.json(body, "registration")
  local code = math.tointeger(reply.code) or reply.code
  if code ~= 0 then
    error(string.format("registration refused: code %s %s", tostring(code),
      tostring(reply.message or "")), 0)
  end
  if type(reply.payload) ~= "string" then error("registration: the reply has no payload", 0) end
  local p = M.decrypt(o.product_secret, reply.payload, reply.len)
  if type(p.psk) == "string" and p.psk ~= "" then
    athost.secret(p.psk)
    return p.psk
  end
  if p.clientCert then athost.secret(p.clientKey or "") end
  error(string.format("registration: encryptionType %s is not key auth (the product "
    .. "uses certificates; give a key-auth product)", tostring(p.encryptionType)), 0)
end

-- ---- dynamic registration, signed-header API (/device/register) ----------
-- Only the signature: the reply format of this API is not published
-- (CLOUDS.md), so the flow uses the legacy API.
function M.header_sign(product_secret, host, path, timestamp, nonce, body)
  return athost.base64(athost.hmac("sha1", product_secret, string.format(
    "POST\n%s\n%s\n\nhmacsha1\n%s\n%s\n%s", host, path, timestamp, nonce,
    athost.digest("sha1", body)), "raw"))
end

-- ---- data template --------------------------------------------------------

function M.topics(pid, dn)
  local tail = "/" .. pid .. "/" .. dn
  return { up = "$thing/up/property" .. tail, down = "$thing/down/property" .. tail }
end

-- {"method":"report","clientToken":..,"params":{..}}; params is a JSON
-- object text, kept as the user wrote it.
function M.report(token, params)
  return string.format('{"method":"report","clientToken":%s,"params":%s}',
    athost.json.encode(token), params)
end

function M.control_reply(token, code, status)
  return string.format('{"method":"control_reply","clientToken":%s,"code":%d,"status":%s}',
    athost.json.encode(token), code, athost.json.encode(status))
end

return M
