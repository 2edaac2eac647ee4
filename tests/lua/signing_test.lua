-- Cloud signing against the known-answer vectors of PROTOCOLS.md, and the
-- AT quoting rules the flows depend on.
local t = require("t")
local athost = require("athost")
local aliyun = require("athost.aliyun")
local huawei = require("athost.huawei")
local at = require("athost.at")
local session = require("athost.session")
local flow = require("athost.flow")

t.test("Aliyun registration sign (HmacMD5), the corrected reference 000 value", function()
  t.eq(aliyun.register_sign("b1KCi45LcCP", "VWII9fiYWKiwraBk", "862991419835241",
    "123456", "hmacmd5"), "3244ed830ec941672cbb5f60d6077f58", "sign")
  t.ok(aliyun.register_sign("b1KCi45LcCP", "VWII9fiYWKiwraBk", "862991419835241",
    "123456") ~= "1770d38260cc980dbc4337ed7fe1e8de", "the printed wrong sign is not reproduced")
end)

t.test("Aliyun registration sign for k1hipglLdjU, and its 120-byte body", function()
  local sign = aliyun.register_sign("k1hipglLdjU", "8LQwOYSZMwp3DFBd",
    "868488076506128", "123456", "HmacMD5")
  t.eq(sign, "20558baadb2a0b04847767980f0ee67b", "sign")
  local body = session.form({ { "productKey", "k1hipglLdjU" }, { "deviceName", "868488076506128" },
    { "random", "123456" }, { "sign", sign }, { "signMethod", "HmacMD5" } })
  t.eq(#body, 120, "body length")
end)

t.test("Aliyun device auth signs and the 112-byte body of reference 000", function()
  local sign = aliyun.device_sign("mRMyB50qafv74A5FofvhxZ2h9iTL9wX7", "862991419835241",
    "862991419835241", "b1KCi45LcCP")
  t.eq(sign, "70e7bb641d7566ad26a305dd20e8e261", "sign")
  local body = session.form({ { "productKey", "b1KCi45LcCP" }, { "sign", sign },
    { "clientId", "862991419835241" }, { "deviceName", "862991419835241" } })
  t.eq(#body, 112, "body length")
  t.eq(aliyun.device_sign("fef32adf6dad46c2c7cbf335d3a7b021", "868488076506128",
    "868488076506128", "k1hipglLdjU"), "0f655b12adf519b9a7a2b0a990f398b6", "second vector")
end)

t.test("Aliyun MQTT direct connection (official HmacSHA1 example)", function()
  local cid, user, pass = aliyun.direct("pk", "device", "secret",
    { client_id = "12345", timestamp = "789", sign_method = "hmacsha1", securemode = 3 })
  t.eq(pass:upper(), "FAFD82A3D602B37FB0FA8B7892F24A477F851A14", "password")
  t.eq(user, "device&pk", "username")
  t.eq(cid, "12345|securemode=3,signmethod=hmacsha1,timestamp=789|", "client id")
end)

t.test("sign methods accept Aliyun's spellings and reject others", function()
  t.eq(aliyun.method("HmacSHA256").reg, "HmacSHA256", "registration spelling")
  t.eq(aliyun.method("hmacsha1").auth, "hmacsha1", "auth spelling")
  t.raises(function() aliyun.method("hmacmd4") end, "hmacmd4")
end)

t.test("Huawei password: HMAC-SHA256 keyed by the UTC hour", function()
  t.eq(huawei.password("12345678", "2025041401"),
    "c75150e6cb841417396819e4d2ee4358a416344a03a083e3a8567074ddec820a", "password")
  t.eq(huawei.client_id("8598553f", "2019071115"), "8598553f_0_0_2019071115", "client id")
  t.eq(huawei.hour(0), "1970010100", "hour of the epoch is UTC")
  t.eq(huawei.topics("d1", "legacy").up, "/huawei/v1/devices/d1/data/json", "legacy up")
  t.eq(huawei.topics("d1").down, "$oc/devices/d1/sys/commands/#", "iotda down")
end)

t.test("AT+MPUB escapes round-trip every byte that needs one", function()
  local s = 'say "hi"\r\n\\ ok'
  local e = at.mpub_escape(s)
  t.eq(e, 'say \\22hi\\22\\0D\\0A\\5C ok', "escaped")
  t.eq(at.mpub_unescape(e), s, "round trip")
  t.ok(at.binary("a\0b"), "NUL is binary")
  t.ok(not at.binary("plain text, 123"), "text is not")
  t.raises(function() at.q('a"b') end, "cannot quote")
  t.eq(at.q("x y"), '"x y"', "quoted")
end)

t.test("reply parameters keep quoted commas", function()
  t.deepeq(at.params('"LTE","CS_PS",3'), { "LTE", "CS_PS", "3" }, "params")
  t.deepeq(at.params('1,"a,b", c '), { "1", "a,b", "c" }, "params")
  t.eq(at.name("AT+CGATT?"), "AT+CGATT", "name")
  t.eq(at.name('AT+SSLMIPSTART="h",1'), "AT+SSLMIPSTART", "name")
end)

t.test("flow parameters: required, defaults, typos", function()
  local spec = { a = flow.REQUIRED, b = "2", c = false }
  local p = flow.params({ a = "1" }, spec, "usage")
  t.eq(p.a, "1", "a") t.eq(p.b, "2", "default") t.eq(p.c, nil, "optional")
  t.raises(function() flow.params({}, spec, "usage: x") end, "missing parameter a")
  t.raises(function() flow.params({ a = "1", d = "4" }, spec, "usage") end, "unknown parameter d")
end)

t.test("the device secret is stored for its owner only and read back", function()
  local dir = t.tmpdir() .. "/state"
  local path = aliyun.save_secret(dir, "pk1", "dev/1", "s3cr3t-value")
  t.eq(aliyun.load_secret(dir, "pk1", "dev/1"), "s3cr3t-value", "read back")
  t.eq(aliyun.load_secret(dir, "pk1", "other"), nil, "another device has none")
  local mode = io.popen("stat -c %a " .. path):read("l")
  t.eq(mode, "600", "file mode")
  t.eq(io.popen("stat -c %a " .. dir):read("l"), "700", "directory mode")
end)

t.run()
