-- A local stand-in for Tencent IoT's dynamic registration
-- (gateway.tencentdevices.com POST /register/dev, CLOUDS.md 1), for tests
-- and demos. It checks the request as the cloud does, written here from
-- CLOUDS.md and not from lib/athost/tencent.lua, so a mistake in the
-- device side cannot be mirrored:
--   signature = base64(lowercase hex(HMAC-SHA1(productSecret,
--     "deviceName=<dn>&nonce=<n>&productId=<pid>&timestamp=<ts>")))
-- and answers {"code":0,"message":"success","len":n,"payload":b64,
-- "requestId":..} with payload = AES-128-CBC(key = the secret's first 16
-- chars, IV 16 x "0") of {"encryptionType":2,"psk":"<psk>"}, zero-padded.
--
--   local reg = require("athost.sim.tencent_dynreg").new {
--     products = { L4WG9V9M2M = "XoezQjzzMedF4lAr2CqCkVYK" },
--     devices = { { "L4WG9V9M2M", "TEST2", "MLvMHde65nKPk0Lx+ZThaA==" } },
--   }
--   local port = reg:listen("127.0.0.1", 0)
--
-- A device listed in `devices` gets the PSK given there (created in the
-- console); another one of a known product is created with a random PSK
-- (the product's auto-create option). The failure codes are this
-- simulator's choice (M.CODES): Tencent does not publish a list.
local athost = require("athost")
local http = require("athost.http11")
local aliyun_auth = require("athost.sim.aliyun_auth")

local M = {}

M.CODES = {
  ok = { 0, "success" },
  param = { 1001, "param error" },
  product = { 1002, "product not found" },
  sign = { 1003, "signature check failed" },
  expired = { 1004, "timestamp expired" },
}

local Reg = {}
Reg.__index = Reg

function M.new(opts)
  local self = setmetatable({ products = {}, devices = {}, log = opts.log,
    served = 0, window = opts.window or 600, now = opts.now or os.time }, Reg)
  for pid, secret in pairs(opts.products or {}) do self.products[pid] = athost.secret(secret) end
  for _, d in ipairs(opts.devices or {}) do
    self.devices[d[1] .. "/" .. d[2]] = athost.secret(d[3])
  end
  return self
end

local function reply(which, extra)
  local c = M.CODES[which]
  local body = { code = c[1], message = c[2], requestId = athost.random(8, "hex") }
  for k, v in pairs(extra or {}) do body[k] = v end
  return aliyun_auth.json(body)
end

function Reg:register(body)
  local ok, r = pcall(athost.json.decode, body)
  if not ok or type(r) ~= "table" then return reply("param") end
  local pid, dn, sig = r.productId, r.deviceName, r.signature
  local nonce, ts = math.tointeger(r.nonce), math.tointeger(r.timestamp)
  if type(pid) ~= "string" or type(dn) ~= "string" or type(sig) ~= "string"
      or not nonce or not ts then
    return reply("param")
  end
  local secret = self.products[pid]
  if not secret then return reply("product") end
  local text = string.format("deviceName=%s&nonce=%d&productId=%s&timestamp=%d", dn, nonce, pid, ts)
  if athost.base64(athost.hmac("sha1", secret, text)) ~= sig then return reply("sign") end
  if math.abs(self.now() - ts) > self.window then return reply("expired") end
  local key = pid .. "/" .. dn
  local psk = self.devices[key]
  if not psk then
    psk = athost.secret(athost.base64(athost.random(16)))
    self.devices[key] = psk
  end
  local plain = '{"encryptionType":2,"psk":"' .. psk .. '"}'
  local padded = plain .. string.rep("\0", (16 - #plain % 16) % 16)
  local ct = assert(athost.cipher("aes-128-cbc", "encrypt", secret:sub(1, 16),
    string.rep("0", 16), padded))
  return reply("ok", { len = #plain, payload = athost.base64(ct) })
end

function Reg:handle(req)
  local hdr = { ["Content-Type"] = "application/json;charset=utf-8" }
  if req.path ~= "/register/dev" then return 404, hdr, '{"code":404,"message":"not found"}' end
  if req.method ~= "POST" then return 405, hdr, '{"code":405,"message":"method not allowed"}' end
  local body = self:register(req.body or "")
  self.served = self.served + 1
  if self.log then self.log("POST /register/dev -> " .. body:match('"code":(%-?%d+)')) end
  return 200, hdr, body
end

function Reg:listen(host, port, opts)
  local l, err, code = athost.listen(host or "127.0.0.1", port or 0)
  if not l then return nil, err, code end
  self.listener = l
  self.task = athost.spawn(http.serve, l, function(req) return self:handle(req) end, opts)
  return l.port
end

return M
