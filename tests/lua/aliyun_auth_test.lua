local t = require("t")
local athost = require("athost")
local http = require("athost.http11")
local aliyun_auth = require("athost.sim.aliyun_auth")

-- The vectors of PROTOCOLS.md ("checked") and reference/000.
local PK1, PS1, DN1 = "b1KCi45LcCP", "VWII9fiYWKiwraBk", "862991419835241"
local DS1 = "mRMyB50qafv74A5FofvhxZ2h9iTL9wX7"
local PK2, PS2, DN2 = "k1hipglLdjU", "8LQwOYSZMwp3DFBd", "868488076506128"
local DS2 = "fef32adf6dad46c2c7cbf335d3a7b021"
local REG1 = "productKey=b1KCi45LcCP&deviceName=862991419835241&random=123456"
  .. "&sign=3244ed830ec941672cbb5f60d6077f58&signMethod=HmacMD5"
local REG2 = "productKey=k1hipglLdjU&deviceName=868488076506128&random=123456"
  .. "&sign=20558baadb2a0b04847767980f0ee67b&signMethod=HmacMD5"
local AUTH1 = "productKey=b1KCi45LcCP&sign=70e7bb641d7566ad26a305dd20e8e261"
  .. "&clientId=862991419835241&deviceName=862991419835241"
local AUTH2 = "productKey=k1hipglLdjU&sign=0f655b12adf519b9a7a2b0a990f398b6"
  .. "&clientId=868488076506128&deviceName=868488076506128"
local FORM = "application/x-www-form-urlencoded"

-- A service on a free port; returns it and a post(path, body[, ctype])
-- that returns the decoded JSON reply and the raw body.
local function service(opts)
  opts = opts or {}
  opts.products = opts.products or { [PK1] = PS1, [PK2] = PS2 }
  local auth = aliyun_auth.new(opts)
  local port = assert(auth:listen("127.0.0.1", 0))
  local function post(path, body, ctype)
    local r = assert(http.request { method = "POST",
      url = "http://127.0.0.1:" .. port .. path, body = body, timeout = 5000,
      headers = { ["Content-Type"] = ctype or FORM } })
    t.eq(r.status, 200, "HTTP status of " .. path)
    return athost.json.decode(r.body), r.body
  end
  return auth, post, port
end

local function register_body(pk, dn, secret, method, random)
  random = random or athost.random(6, "hex")
  local sign = aliyun_auth.sign(method, secret, { deviceName = dn,
    productKey = pk, random = random }, { "deviceName", "productKey", "random" })
  return http.form_encode { { "productKey", pk }, { "deviceName", dn },
    { "random", random }, { "sign", sign }, { "signMethod", method } }
end

local function auth_body(pk, dn, secret, o)
  o = o or {}
  local p = { clientId = o.client_id or dn, deviceName = dn, productKey = pk,
    timestamp = o.timestamp }
  local sign = o.sign or aliyun_auth.sign(o.method or "hmacmd5", secret, p,
    { "clientId", "deviceName", "productKey", "timestamp" })
  local f = { { "productKey", pk }, { "sign", sign }, { "clientId", p.clientId },
    { "deviceName", dn } }
  if o.method then f[#f + 1] = { "signmethod", o.method } end
  if o.timestamp and not o.unsigned_timestamp then f[#f + 1] = { "timestamp", o.timestamp } end
  if o.unsigned_timestamp then f[#f + 1] = { "timestamp", o.unsigned_timestamp } end
  if o.resources then f[#f + 1] = { "resources", o.resources } end
  return http.form_encode(f)
end

t.test("registration: the checked b1KCi45LcCP vector gets a deviceSecret", function()
  local auth, post = service()
  t.eq(#REG1, 120, "body length")
  local j, raw = post("/auth/register/device", REG1)
  t.eq(j.code, 200, "code")
  t.eq(j.message, "success", "message")
  t.eq(j.data.productKey, PK1, "productKey")
  t.eq(j.data.deviceName, DN1, "deviceName")
  t.match(j.data.deviceSecret, "^" .. string.rep("[%w]", 32) .. "$", "deviceSecret")
  -- 149 bytes, keys in the order reference/000 prints them.
  t.eq(raw, '{"code":200,"data":{"deviceName":"862991419835241","deviceSecret":"'
    .. j.data.deviceSecret .. '","productKey":"b1KCi45LcCP"},"message":"success"}',
    "reply text")
  t.eq(#raw, 149, "reply length as +HTTPACTION announces it")
  t.eq(auth:device(PK1, DN1).deviceSecret, j.data.deviceSecret, "stored")
  t.eq(auth:device(PK1, DN1).active, false, "not active yet")
  auth:close()
end)

t.test("registration: the checked k1hipglLdjU vector (120 bytes)", function()
  local auth, post = service()
  t.eq(#REG2, 120, "body length")
  local j = post("/auth/register/device", REG2)
  t.eq(j.code, 200, "code")
  t.eq(j.data.deviceName, DN2, "deviceName")
  t.eq(#j.data.deviceSecret, 32, "secret length")
  auth:close()
end)

t.test("registration: reference/000's miscomputed sign is refused", function()
  local auth, post = service()
  local body = REG1:gsub("3244ed830ec941672cbb5f60d6077f58",
    "1770d38260cc980dbc4337ed7fe1e8de")
  local j = post("/auth/register/device", body)
  t.eq(j.code, 6205, "code")
  t.eq(j.message, "sign check error", "message")
  t.eq(j.data, nil, "no data")
  t.eq(auth:device(PK1, DN1), nil, "no device created")
  auth:close()
end)

t.test("registration: HmacSHA1, HmacSHA256, any case of name and hex", function()
  local auth, post = service()
  for i, m in ipairs { "HmacSHA1", "HmacSHA256", "hmacsha256", "HMACMD5" } do
    local j = post("/auth/register/device", register_body(PK1, "dev" .. i, PS1, m))
    t.eq(j.code, 200, m)
  end
  local body = register_body(PK1, "upper", PS1, "HmacSHA1")
  body = body:gsub("sign=(%x+)", function(h) return "sign=" .. h:upper() end)
  t.eq(post("/auth/register/device", body).code, 200, "upper-case hex")
  -- A sign made with another method than the one named is wrong.
  body = register_body(PK1, "mixed", PS1, "HmacSHA1"):gsub("HmacSHA1", "HmacSHA256")
  t.eq(post("/auth/register/device", body).code, 6205, "method mismatch")
  auth:close()
end)

t.test("registration: wrong secret, unknown product, bad requests", function()
  local auth, post = service()
  local j = post("/auth/register/device", register_body(PK1, "d", "wrong", "HmacMD5"))
  t.eq(j.code, 6205, "wrong product secret")
  j = post("/auth/register/device", register_body("nope", "d", PS1, "HmacMD5"))
  t.deepeq(j, { code = 6250, message = "product not found" }, "unknown product")
  j = post("/auth/register/device", "productKey=" .. PK1 .. "&deviceName=d&random=1")
  t.deepeq(j, { code = 460, message = "param error: sign missing" }, "missing sign")
  j = post("/auth/register/device", register_body(PK1, "d", PS1, "HmacSHA512"))
  t.eq(j.code, 460, "unknown method")
  j = post("/auth/register/device", register_body(PK1, "d", PS1, "HmacMD5")
    .. "&deviceName=other")
  t.deepeq(j, { code = 460, message = "param error: deviceName given twice" },
    "repeated parameter")
  j = post("/auth/register/device", register_body(PK1, "d", PS1, "HmacMD5"),
    "text/plain")
  t.eq(j.code, 460, "not a form")
  t.eq(auth:device(PK1, "d"), nil, "nothing created")
  auth:close()
end)

t.test("device auth: the checked vectors (112 bytes) with seeded secrets", function()
  local auth, post = service()
  auth:add_device(PK1, DN1, DS1)
  auth:add_device(PK2, DN2, DS2)
  t.eq(#AUTH1, 112, "body length")
  local j, raw = post("/auth/devicename", AUTH1)
  t.eq(j.code, 200, "code")
  t.eq(j.message, "success", "message")
  local d = auth:device(PK1, DN1)
  t.eq(j.data.iotId, d.iotId, "iotId")
  t.match(j.data.iotToken, "^" .. string.rep("%x", 32) .. "$", "iotToken")
  t.eq(j.data.resources, nil, "no resources unless asked")
  t.match(raw, '^{"code":200,"data":{"iotId":"[^"]+","iotToken":"%x+"},"message":"success"}$',
    "reply text")
  t.eq(d.active, true, "active after auth")
  j = post("/auth/devicename", AUTH2)
  t.eq(j.code, 200, "second vector")
  local j2 = post("/auth/devicename", AUTH2)
  t.eq(j2.data.iotId, j.data.iotId, "iotId is the device's")
  t.ok(j2.data.iotToken ~= j.data.iotToken, "a fresh token each time")
  auth:close()
end)

t.test("device auth: wrong signs, unknown devices, long clientId", function()
  local auth, post = service()
  auth:add_device(PK1, DN1, DS1)
  local j = post("/auth/devicename", (AUTH1:gsub("70e7bb64", "70e7bb65")))
  t.deepeq(j, { code = 6205, message = "sign check error" }, "one digit off")
  j = post("/auth/devicename", auth_body(PK1, DN1, "mRMyB50qafv74A 5FofvhxZ2h9iTL9wX7"))
  t.eq(j.code, 6205, "the secret with reference/000's stray space")
  j = post("/auth/devicename", auth_body(PK1, "ghost", DS1))
  t.deepeq(j, { code = 6100, message = "device not found" }, "unknown device")
  j = post("/auth/devicename", auth_body("nope", "ghost", DS1))
  t.eq(j.code, 6250, "unknown product")
  j = post("/auth/devicename", auth_body(PK1, DN1, DS1,
    { client_id = string.rep("c", 65) }))
  t.eq(j.code, 460, "clientId over 64")
  t.eq(auth:device(PK1, DN1).active, false, "still not active")
  auth:close()
end)

t.test("device auth: signmethod, timestamp only when sent, resources=mqtt", function()
  local auth, post = service { broker = { host = "127.0.0.1", port = 18830 } }
  auth:add_device(PK1, DN1, DS1)
  for _, m in ipairs { "hmacsha1", "hmacsha256", "HmacSHA256", "hmacmd5" } do
    t.eq(post("/auth/devicename", auth_body(PK1, DN1, DS1, { method = m })).code,
      200, m)
  end
  local j = post("/auth/devicename", auth_body(PK1, DN1, DS1,
    { method = "hmacsha1", timestamp = "1700000000000", resources = "mqtt" }))
  t.eq(j.code, 200, "with timestamp")
  t.deepeq(j.data.resources, { mqtt = { host = "127.0.0.1", port = 18830 } },
    "resources")
  j = post("/auth/devicename", auth_body(PK1, DN1, DS1,
    { unsigned_timestamp = "1700000000000" }))
  t.eq(j.code, 6205, "a timestamp that was sent but not signed")
  j = post("/auth/devicename", auth_body(PK1, DN1, DS1, { method = "hmacsha384", sign = "00" }))
  t.eq(j.code, 460, "unknown signmethod")
  auth:close()
end)

t.test("re-registration: same secret until active, then refused", function()
  local auth, post = service()
  local j = post("/auth/register/device", register_body(PK1, "fresh", PS1, "HmacSHA256"))
  t.eq(j.code, 200, "first")
  local secret = j.data.deviceSecret
  j = post("/auth/register/device", register_body(PK1, "fresh", PS1, "HmacMD5"))
  t.eq(j.data.deviceSecret, secret, "same secret while never connected")
  t.eq(post("/auth/devicename", auth_body(PK1, "fresh", secret)).code, 200, "auth")
  j = post("/auth/register/device", register_body(PK1, "fresh", PS1, "HmacMD5"))
  t.deepeq(j, { code = 6289, message = "device already active" }, "refused")
  -- A console reset allows it again.
  auth:activate(PK1, "fresh", false)
  t.eq(post("/auth/register/device", register_body(PK1, "fresh", PS1, "HmacMD5")).code,
    200, "after reset")
  auth:close()
end)

t.test("on_credentials sees iotId/iotToken before the device does", function()
  local seen, fail = {}, false
  local auth, post = service { on_credentials = function(user, pass)
    athost.sleep(1)             -- it may wait: it runs in the request's flow
    seen[#seen + 1] = { user, pass }
    if fail then return nil, "broker says no" end
    return true
  end }
  auth:add_device(PK1, DN1, DS1)
  local j = post("/auth/devicename", AUTH1)
  t.eq(j.code, 200, "code")
  t.deepeq(seen, { { j.data.iotId, j.data.iotToken } }, "hook arguments")
  fail = true
  j = post("/auth/devicename", AUTH1)
  t.eq(j.code, 500, "hook failure")
  t.match(j.message, "^internal error", "message")
  t.eq(#seen, 2, "called again")
  auth:close()
end)

t.test("HTTP: unknown path 404, GET 405", function()
  local auth, _, port = service()
  local base = "http://127.0.0.1:" .. port
  local r = assert(http.request { url = base .. "/auth/nothing", timeout = 3000 })
  t.eq(r.status, 404, "unknown path")
  r = assert(http.request { url = base .. "/auth/devicename", timeout = 3000 })
  t.eq(r.status, 405, "GET")
  t.eq(r.headers.allow, "POST", "Allow")
  auth:close()
end)

t.test("state file: devices and activation survive a restart", function()
  local dir = t.tmpdir()
  local state = dir .. "/auth.json"
  local auth, post = service { state = state }
  local j = post("/auth/register/device", register_body(PK1, "kept", PS1, "HmacMD5"))
  local secret = j.data.deviceSecret
  t.eq(post("/auth/devicename", auth_body(PK1, "kept", secret)).code, 200, "auth")
  auth:close()
  local auth2, post2 = service { state = state }
  local d = auth2:device(PK1, "kept")
  t.eq(d and d.deviceSecret, secret, "secret kept")
  t.eq(d.active, true, "activation kept")
  t.eq(post2("/auth/register/device", register_body(PK1, "kept", PS1, "HmacMD5")).code,
    6289, "still refused")
  t.eq(post2("/auth/devicename", auth_body(PK1, "kept", secret)).code, 200,
    "still authenticates")
  auth2:close()
  os.execute("rm -rf '" .. dir .. "'")
end)

t.test("direct connection credentials: the official example", function()
  local c = aliyun_auth.direct_credentials("pk", "device", "secret",
    { client_id = "12345", timestamp = "789" })
  t.eq(c.password:upper(), "FAFD82A3D602B37FB0FA8B7892F24A477F851A14", "password")
  t.eq(c.username, "device&pk", "username")
  t.eq(c.client_id, "12345|securemode=3,signmethod=hmacsha1,timestamp=789|", "clientId")
  c = aliyun_auth.direct_credentials(PK1, DN1, DS1, { signmethod = "hmacmd5" })
  t.eq(c.password, "70e7bb641d7566ad26a305dd20e8e261", "same text as device auth")
  t.eq(c.client_id, DN1 .. "|securemode=3,signmethod=hmacmd5|", "default clientId")
end)

t.test("shell: runs a command without stalling the flows", function()
  local ticks = 0
  local tm = athost.timer(5, function() ticks = ticks + 1 end, 5)
  t.ok(aliyun_auth.shell("sleep 0.2; echo hi"), "exit 0")
  tm:stop()
  t.ok(ticks >= 5, "timers ran meanwhile (" .. ticks .. ")")
  local ok, err, code = aliyun_auth.shell("echo oops; exit 3")
  t.eq(ok, nil, "failure")
  t.eq(code, "EFAIL", "code")
  t.match(err, "exited with 3: oops", "message")
  t.fails("ETIMEDOUT", aliyun_auth.shell("sleep 2", { timeout = 100 }))
end)

-- The program: starts, prints its port, serves, keeps secrets out of its
-- transcript.
t.test("scripts/sim/aliyun-auth.lua serves and masks secrets", function()
  local bin = os.getenv("ATHOST_BIN") or "./athost"
  local dir = t.tmpdir()
  local p, slave = assert(athost.pty { name = "auth-script" })
  local cmd = string.format("ATHOST_PATH=%q %s -l %s/tr.log scripts/sim/aliyun-auth.lua"
    .. " port=0 products=%s:%s state=%s/state.json >%s 2>&1 </dev/null & echo $! >%s/pid",
    os.getenv("ATHOST_PATH") or "", bin, dir, PK1, PS1, dir, slave, dir)
  t.ok(os.execute(cmd), "started")
  local pid = t.slurp(dir .. "/pid"):match("%d+")
  local ok, err = pcall(function()
    local m = assert(p:expect("^listening on 127%.0%.0%.1:(%d+)", { timeout = 5000 }))
    local port = tonumber(m[1])
    local r = assert(http.request { method = "POST", body = REG1, timeout = 5000,
      url = "http://127.0.0.1:" .. port .. "/auth/register/device",
      headers = { ["Content-Type"] = FORM } })
    local j = athost.json.decode(r.body)
    t.eq(j.code, 200, "registered")
    local secret = j.data.deviceSecret
    os.execute("kill " .. pid)
    assert(p:expect("^athost: canceled", { timeout = 5000 }))
    local tr = t.ok(t.slurp(dir .. "/tr.log"), "transcript")
    t.match(tr, '"deviceSecret":"%*%*%*"', "secret masked in the transcript")
    t.nomatch(tr, secret, "transcript")
    t.nomatch(tr, PS1, "transcript")
    local st = athost.json.decode(t.slurp(dir .. "/state.json"))
    t.eq(st.devices[PK1 .. "/" .. DN1].deviceSecret, secret, "state file")
  end)
  os.execute("kill " .. pid .. " 2>/dev/null")
  p:close()
  os.execute("rm -rf '" .. dir .. "'")
  if not ok then error(err, 0) end
end)

t.run()
