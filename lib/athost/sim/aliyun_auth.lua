-- A local stand-in for Alibaba Cloud IoT's device auth service
-- (iot-auth.<region>.aliyuncs.com), for tests and demos: dynamic
-- registration (one secret per product) and device auth (iotId/iotToken),
-- exactly as ../../../PROTOCOLS.md describes them, over plain HTTP.
--
--   local auth = require("athost.sim.aliyun_auth").new {
--     products = { b1KCi45LcCP = "VWII9fiYWKiwraBk" },   -- productKey -> secret
--     broker = { host = "127.0.0.1", port = 1883 },      -- resources=mqtt
--     on_credentials = function(username, password) return true end,
--     state = "auth.json",                               -- optional
--   }
--   local port = auth:listen("127.0.0.1", 0)
--
-- POST /auth/register/device  productKey, deviceName, random, sign,
--   signMethod: creates the device with a fresh deviceSecret, or answers
--   with the secret it already has while the device never authenticated.
-- POST /auth/devicename  productKey, deviceName, clientId, sign, optional
--   signmethod (default hmacmd5), timestamp, resources=mqtt, version:
--   issues an iotId (fixed per device) and a fresh iotToken, and marks the
--   device active, after on_credentials(iotId, iotToken) has made the MQTT
--   broker accept them. An active device can no longer register.
--
-- Signs are checked with HmacMD5, HmacSHA1 or HmacSHA256 (the method's
-- name in any case), the hex in any case. Replies are HTTP 200 with a JSON
-- body whose `code` says what happened (M.CODES); the JSON keys come out
-- sorted, which is the order the real service prints them in.
local athost = require("athost")
local http = require("athost.http11")

local M = {}

-- The service's answers. The codes follow the style of the real service
-- (200 success, 460 for a bad request, 6xxx for device and product
-- states); 6289 for an already active device is what athost's flows
-- expect. They are this simulator's choice: the vendor does not publish a
-- complete list.
M.CODES = {
  ok = { 200, "success" },
  param = { 460, "param error" },                -- ": <what>" appended
  sign = { 6205, "sign check error" },
  product = { 6250, "product not found" },
  device = { 6100, "device not found" },
  active = { 6289, "device already active" },
  internal = { 500, "internal error" },          -- on_credentials failed
}

local METHODS = { hmacmd5 = "md5", hmacsha1 = "sha1", hmacsha256 = "sha256" }

local Auth = {}
Auth.__index = Auth

---------------------------------------------------------------------------
-- Helpers
---------------------------------------------------------------------------

-- JSON with sorted keys and no escaped '/', so replies read like the real
-- service's (reference/000 prints them byte for byte).
local ESCAPES = { ['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n",
  ["\r"] = "\\r", ["\t"] = "\\t" }

local function json_string(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    return ESCAPES[c] or string.format("\\u%04x", c:byte())
  end) .. '"'
end

local function json(v)
  local t = type(v)
  if t == "string" then return json_string(v) end
  if t == "number" or t == "boolean" then return tostring(v) end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = k end
  table.sort(keys)
  local out = {}
  for _, k in ipairs(keys) do out[#out + 1] = json_string(k) .. ":" .. json(v[k]) end
  return "{" .. table.concat(out, ",") .. "}"
end
M.json = json

local ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

-- n characters from [A-Za-z0-9], uniformly, from the CSPRNG.
local function alnum(n)
  local out = {}
  while #out < n do
    for b in athost.random(n):gmatch(".") do
      local v = b:byte()
      if v < 248 and #out < n then
        local i = v % 62 + 1
        out[#out + 1] = ALNUM:sub(i, i)
      end
    end
  end
  return table.concat(out)
end
M.alnum = alnum

-- The HMAC name (md5, sha1, sha256) for a signMethod value, or nil.
function M.method(name)
  return METHODS[(name or "hmacmd5"):lower()]
end

-- hex(HMAC(key, name1..value1..name2..value2...)) over the given names in
-- the order given, skipping names whose value is nil.
function M.sign(method, key, params, names)
  local text = {}
  for _, n in ipairs(names) do
    if params[n] ~= nil then text[#text + 1] = n .. params[n] end
  end
  return athost.hmac(M.method(method) or method, key, table.concat(text))
end

-- MQTT direct connection (PROTOCOLS.md): the clientId, username and
-- password a device whose secret is known connects with. opts: client_id
-- (default dn), signmethod (default hmacsha1), timestamp, securemode
-- (default 3, plain TCP).
function M.direct_credentials(pk, dn, secret, opts)
  opts = opts or {}
  local cid = opts.client_id or dn
  local method = (opts.signmethod or "hmacsha1"):lower()
  if not M.method(method) then
    error("aliyun_auth: unknown signmethod " .. method, 2)
  end
  local ext = "securemode=" .. (opts.securemode or 3) .. ",signmethod=" .. method
  if opts.timestamp then ext = ext .. ",timestamp=" .. opts.timestamp end
  return {
    client_id = cid .. "|" .. ext .. "|",
    username = dn .. "&" .. pk,
    password = athost.secret(M.sign(method, secret, { clientId = cid,
      deviceName = dn, productKey = pk, timestamp = opts.timestamp },
      { "clientId", "deviceName", "productKey", "timestamp" })),
  }
end

local function quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
M.quote = quote

-- Runs a shell command without stalling the other flows: its output and
-- then its exit status come back over a pty, which a port waits on.
-- Returns true, or nil, "<what>: <output>", code (ETIMEDOUT after
-- opts.timeout ms, default 20000; EFAIL for a non-zero exit).
function M.shell(cmd, opts)
  local timeout = opts and opts.timeout or 20000
  local p, path = athost.pty { name = "shell" }
  if not p then return nil, path, "EIO" end
  local marker = "ATHOST_SHELL_DONE_" .. athost.random(4, "hex")
  local ok = os.execute("( ( " .. cmd .. " ) ; echo " .. marker .. " $? ) <"
    .. "/dev/null >" .. quote(path) .. " 2>&1 &")
  if not ok then
    p:close()
    return nil, "EIO: cannot start " .. cmd, "EIO"
  end
  local out = {}
  local deadline = athost.now() + timeout
  while true do
    local left = math.floor(deadline - athost.now())
    local line, err, code
    if left > 0 then
      line, err, code = p:readline { timeout = left }
    else
      err, code = "ETIMEDOUT: " .. cmd .. " did not finish", "ETIMEDOUT"
    end
    if not line then
      p:close()
      return nil, err, code
    end
    local rc = line:match("^" .. marker .. " (%d+)$")
    if rc then
      p:close()
      if rc == "0" then return true end
      return nil, "EFAIL: " .. cmd .. " exited with " .. rc .. ": "
        .. table.concat(out, " | "), "EFAIL"
    end
    if #out < 20 then out[#out + 1] = line end
  end
end

---------------------------------------------------------------------------
-- Devices and state
---------------------------------------------------------------------------

local function key(pk, dn) return pk .. "/" .. dn end

-- Creates the service. opts: products (productKey -> productSecret),
-- devices (list of {productKey, deviceName, deviceSecret, active}) to
-- seed, broker {host, port} for resources=mqtt, on_credentials(user,
-- password) -> true | nil, why (may wait: it runs in the request's flow),
-- state (a JSON file the devices are loaded from and saved to), region
-- (for the default broker host).
function M.new(opts)
  opts = opts or {}
  local self = setmetatable({
    products = {}, devices = {}, broker = opts.broker,
    on_credentials = opts.on_credentials, state = opts.state,
    region = opts.region or "cn-shanghai", log = opts.log,
  }, Auth)
  for pk, secret in pairs(opts.products or {}) do
    self.products[pk] = athost.secret(secret)
  end
  if self.state then
    local f = io.open(self.state, "rb")
    if f then
      local s = f:read("a")
      f:close()
      local ok, st = pcall(athost.json.decode, s)
      if not ok or type(st) ~= "table" then
        error("aliyun_auth: state file " .. self.state .. " is not JSON", 2)
      end
      for _, d in pairs(st.devices or {}) do
        self:add_device(d.productKey, d.deviceName, d.deviceSecret, d, true)
      end
    end
  end
  for _, d in ipairs(opts.devices or {}) do
    self:add_device(d.productKey or d[1], d.deviceName or d[2],
      d.deviceSecret or d[3], d)
  end
  return self
end

function Auth:save()
  if not self.state then return end
  -- It holds device secrets: private, and replaced atomically.
  assert(athost.write_private(self.state, json { devices = self.devices } .. "\n"))
end

-- Adds (or replaces) a device whose secret is known, as the console does.
-- d.active marks it as having authenticated already; d.iotId keeps its id.
function Auth:add_device(pk, dn, secret, d, nosave)
  assert(type(pk) == "string" and type(dn) == "string"
    and type(secret) == "string", "add_device(pk, dn, secret)")
  d = d or {}
  self.devices[key(pk, dn)] = {
    productKey = pk, deviceName = dn, deviceSecret = athost.secret(secret),
    active = d.active and true or false,
    iotId = d.iotId or alnum(20) .. "00" .. athost.random(3, "hex") .. "00",
  }
  if not nosave then self:save() end
  return self:device(pk, dn)
end

-- A copy of the device's record, or nil: productKey, deviceName,
-- deviceSecret, active, iotId, iotToken (the last issued).
function Auth:device(pk, dn)
  local d = self.devices[key(pk, dn)]
  if not d then return nil end
  local c = {}
  for k, v in pairs(d) do c[k] = v end
  return c
end

-- Marks a device active (it connected), or not (reset in the console).
function Auth:activate(pk, dn, active)
  local d = assert(self.devices[key(pk, dn)], "no such device")
  d.active = active ~= false
  self:save()
end

---------------------------------------------------------------------------
-- The two calls
---------------------------------------------------------------------------

local function reply(which, data, detail)
  local c = M.CODES[which]
  local body = { code = c[1], message = detail and c[2] .. ": " .. detail or c[2] }
  if data then body.data = data end
  return json(body)
end

-- The form, or nil, why: required names present and non-empty, no name
-- repeated.
local function params(req, required)
  if not req.form then return nil, "body is not application/x-www-form-urlencoded" end
  local _, list = http.form_decode(req.body)
  local seen = {}
  for _, kv in ipairs(list) do
    if seen[kv[1]] then return nil, kv[1] .. " given twice" end
    seen[kv[1]] = true
  end
  for _, n in ipairs(required) do
    if (req.form[n] or "") == "" then return nil, n .. " missing" end
  end
  return req.form
end

-- The sign method, case-insensitive, from either spelling of its name.
local function sign_method(f)
  local m = f.signMethod or f.signmethod or f.SignMethod or "hmacmd5"
  return M.method(m) and m:lower() or nil, m
end

function Auth:register(req)
  local f, why = params(req, { "productKey", "deviceName", "random", "sign" })
  if not f then return reply("param", nil, why) end
  local method, given = sign_method(f)
  if not method then return reply("param", nil, "signMethod " .. given) end
  local secret = self.products[f.productKey]
  if not secret then return reply("product") end
  local want = M.sign(method, secret, f, { "deviceName", "productKey", "random" })
  if want ~= f.sign:lower() then return reply("sign") end
  local d = self.devices[key(f.productKey, f.deviceName)]
  if d and d.active then return reply("active") end
  if not d then
    self:add_device(f.productKey, f.deviceName, alnum(32))
    d = self.devices[key(f.productKey, f.deviceName)]
  end
  return reply("ok", { productKey = d.productKey, deviceName = d.deviceName,
    deviceSecret = d.deviceSecret })
end

function Auth:auth(req)
  local f, why = params(req, { "productKey", "deviceName", "clientId", "sign" })
  if not f then return reply("param", nil, why) end
  if #f.clientId > 64 then return reply("param", nil, "clientId longer than 64") end
  local method, given = sign_method(f)
  if not method then return reply("param", nil, "signmethod " .. given) end
  local d = self.devices[key(f.productKey, f.deviceName)]
  if not d then
    return reply(self.products[f.productKey] and "device" or "product")
  end
  local want = M.sign(method, d.deviceSecret, f,
    { "clientId", "deviceName", "productKey", "timestamp" })
  if want ~= f.sign:lower() then return reply("sign") end
  local token = athost.secret(athost.random(16, "hex"))
  if self.on_credentials then
    local ok, err = self.on_credentials(d.iotId, token)
    if not ok then
      if self.log then self.log("on_credentials failed: " .. tostring(err)) end
      return reply("internal", nil, "credentials not accepted by the broker")
    end
  end
  d.iotToken, d.active = token, true
  self:save()
  local data = { iotId = d.iotId, iotToken = token }
  if (f.resources or ""):lower():find("mqtt", 1, true) then
    local b = self.broker or {}
    data.resources = { mqtt = {
      host = b.host or (f.productKey .. ".iot-as-mqtt." .. self.region
        .. ".aliyuncs.com"),
      port = b.port or 1883 } }
  end
  return reply("ok", data)
end

-- The HTTP handler: status, headers, body.
function Auth:handle(req)
  local routes = { ["/auth/register/device"] = self.register,
    ["/auth/devicename"] = self.auth }
  local fn = routes[req.path]
  local hdr = { ["Content-Type"] = "application/json;charset=utf-8" }
  if not fn then return 404, hdr, json { code = 404, message = "not found" } end
  if req.method ~= "POST" then
    hdr.Allow = "POST"
    return 405, hdr, json { code = 405, message = "method not allowed" }
  end
  local body = fn(self, req)
  if self.log then self.log(req.method .. " " .. req.path .. " -> " .. body) end
  return 200, hdr, body
end

-- Serves on host:port (0 picks a free one) in a flow of its own; returns
-- the port number. opts go to http.serve.
function Auth:listen(host, port, opts)
  local l, err, code = athost.listen(host or "127.0.0.1", port or 0)
  if not l then return nil, err, code end
  self.listener = l
  self.task = athost.spawn(http.serve, l, function(req) return self:handle(req) end,
    opts)
  return l.port
end

-- Stops serving (requests in progress finish).
function Auth:close()
  if self.listener and not self.listener.closed then
    self.listener:close()
    self.task:join()
  end
end

return M
