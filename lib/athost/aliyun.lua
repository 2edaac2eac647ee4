-- Alibaba Cloud IoT (Aliyun) signing and device provisioning
-- (PROTOCOLS.md, reference 000): dynamic registration with a product
-- secret, device auth for iotId/iotToken, MQTT direct-connection
-- credentials, and the device secret kept between runs.
local athost = require("athost")
local session = require("athost.session")

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

-- ---- the device secret between runs ---------------------------------------

-- The directory the device secret is kept in: dir if given, else
-- $XDG_STATE_HOME/athost or ~/.local/state/athost. Without HOME there is no
-- private default: a shared place such as /tmp would let anyone who can
-- write there read or plant the secret, so the caller must name one.
function M.state_dir(dir)
  if dir and dir ~= "" then return dir end
  local base = os.getenv("XDG_STATE_HOME")
  if not base or base == "" then
    local home = os.getenv("HOME")
    if not home or home == "" then
      error("no state directory for the device secret: neither XDG_STATE_HOME "
        .. "nor HOME is set (give state_dir=DIR)", 0)
    end
    base = home .. "/.local/state"
  end
  return base .. "/athost"
end

-- Refuses a state directory someone else could read or plant a secret in:
-- it must be a directory of the user's own, writable by no one else.
-- Returns dir, or nil when it does not exist.
local function check_dir(dir)
  local st = athost.stat(dir)
  if not st then return nil end
  if st.type ~= "dir" then
    error(string.format("state directory %s is not a directory", dir), 0)
  end
  if not st.mine then
    error(string.format("state directory %s belongs to uid %d, not to this "
      .. "user (uid %d): refusing to keep a device secret there", dir, st.uid,
      athost.uid()), 0)
  end
  if st.mode & 18 ~= 0 then   -- 0022: group or others may write
    error(string.format("state directory %s is writable by %s (mode %04o): "
      .. "refusing to keep a device secret there (chmod 700 it)", dir,
      st.mode & 16 ~= 0 and (st.mode & 2 ~= 0 and "group and others" or "group")
        or "others", st.mode), 0)
  end
  return dir
end

local function secret_path(dir, pk, dn)
  return string.format("%s/aliyun-%s-%s.json", dir, pk:gsub("[^%w_-]", "_"),
    dn:gsub("[^%w_-]", "_"))
end

-- The stored device secret of pk/dn, or nil.
function M.load_secret(dir, pk, dn)
  if not check_dir(dir) then return nil end
  local f = io.open(secret_path(dir, pk, dn), "rb")
  if not f then return nil end
  local ok, v = pcall(athost.json.decode, f:read("a"))
  f:close()
  if ok and type(v) == "table" and type(v.device_secret) == "string" then
    athost.secret(v.device_secret)
    return v.device_secret
  end
  return nil
end

local function sh_quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

-- Stores the device secret, readable by its owner only (0600 in a 0700
-- directory). athost.write_private writes a new file of a fresh name
-- (O_EXCL: nothing planted is opened), fsyncs it and renames it over the
-- old one, so the file is never partly written nor briefly readable.
function M.save_secret(dir, pk, dn, ds)
  if not athost.stat(dir) then
    assert(os.execute("mkdir -p -m 700 " .. sh_quote(dir)),
      "cannot make the state directory " .. dir)
  end
  check_dir(dir)
  local path = secret_path(dir, pk, dn)
  return assert(athost.write_private(path, athost.json.encode({
    product_key = pk, device_name = dn, device_secret = ds }) .. "\n"))
end

return M
