local t = require("t")
local athost = require("athost")

-- Known answers: PROTOCOLS.md "checked" vectors, RFC 2104 (MD5), RFC 2202
-- (SHA-1), RFC 4231 (SHA-256/512), FIPS 180 "abc", RFC 4648 base64.

local function bytes(b, n) return string.rep(string.char(b), n) end

local function here()
  local dir = (arg and arg[0] or ""):match("^(.*)/[^/]*$")
  return dir and dir .. "/" or "./"
end

local function fixture(name)
  local s = t.slurp(here() .. "../fixtures/" .. name)
    or t.slurp("tests/fixtures/" .. name)
  return t.ok(s, "fixture " .. name)
end

local in_tmpdir = require("cli").in_tmpdir

local function sh(cmd)
  t.ok(os.execute(cmd .. " >/dev/null 2>&1"), "command " .. cmd)
end

-- Aliyun dynamic registration: key = productSecret, HmacMD5.
t.test("aliyun registration signs", function()
  t.eq(athost.hmac("HmacMD5", "VWII9fiYWKiwraBk",
      "deviceName862991419835241productKeyb1KCi45LcCPrandom123456"),
    "3244ed830ec941672cbb5f60d6077f58", "sign b1KCi45LcCP")
  local body = "deviceName868488076506128productKeyk1hipglLdjUrandom123456"
  t.eq(athost.hmac("hmacmd5", "8LQwOYSZMwp3DFBd", body),
    "20558baadb2a0b04847767980f0ee67b", "sign k1hipglLdjU")
  t.eq(athost.hmac("md5", "8LQwOYSZMwp3DFBd", body),
    "20558baadb2a0b04847767980f0ee67b", "plain algorithm name")
  t.eq(athost.hmac("MD5", "8LQwOYSZMwp3DFBd", body),
    "20558baadb2a0b04847767980f0ee67b", "upper-case algorithm name")
end)

-- Aliyun device auth (iotId / iotToken): key = deviceSecret.
t.test("aliyun device-auth signs", function()
  t.eq(athost.hmac("hmacmd5", "mRMyB50qafv74A5FofvhxZ2h9iTL9wX7",
      "clientId862991419835241deviceName862991419835241productKeyb1KCi45LcCP"),
    "70e7bb641d7566ad26a305dd20e8e261", "sign b1KCi45LcCP")
  t.eq(athost.hmac("hmacmd5", "fef32adf6dad46c2c7cbf335d3a7b021",
      "clientId868488076506128deviceName868488076506128productKeyk1hipglLdjU"),
    "0f655b12adf519b9a7a2b0a990f398b6", "sign k1hipglLdjU")
end)

t.test("aliyun mqtt direct-connection password (official example)", function()
  local published = "FAFD82A3D602B37FB0FA8B7892F24A477F851A14"
  local msg = "clientId" .. "12345" .. "deviceName" .. "device"
    .. "productKey" .. "pk" .. "timestamp" .. "789"
  local got = athost.hmac("HmacSHA1", "secret", msg)
  t.eq(got, published:lower(), "password")
  t.eq(got:upper(), published, "password, upper case")
  t.eq(athost.hmac("hmacsha1", "secret", msg), got, "hmacsha1 spelling")
end)

-- Huawei IoTDA: the key is the timestamp, the message is the secret.
t.test("huawei iotda password (official example)", function()
  t.eq(athost.hmac("sha256", "2025041401", "12345678"),
    "c75150e6cb841417396819e4d2ee4358a416344a03a083e3a8567074ddec820a",
    "password")
  t.eq(athost.hmac("hmacsha256", "2025041401", "12345678"),
    athost.hmac("HMACSHA256", "2025041401", "12345678"), "spellings")
end)

t.test("hmac-md5 rfc 2104", function()
  t.eq(athost.hmac("md5", bytes(0x0b, 16), "Hi There"),
    "9294727a3638bb1c13f48ef8158bfc9d", "test 1")
  t.eq(athost.hmac("md5", "Jefe", "what do ya want for nothing?"),
    "750c783e6ab0b503eaa86e310a5db738", "test 2")
  t.eq(athost.hmac("md5", bytes(0xaa, 16), bytes(0xdd, 50)),
    "56be34521d144c88dbb8c733f0e8b3f6", "test 3")
end)

t.test("hmac-sha1 rfc 2202", function()
  t.eq(athost.hmac("sha1", bytes(0x0b, 20), "Hi There"),
    "b617318655057264e28bc0b6fb378c8ef146be00", "test 1")
  t.eq(athost.hmac("sha1", "Jefe", "what do ya want for nothing?"),
    "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79", "test 2")
end)

t.test("hmac-sha256 and sha512 rfc 4231", function()
  t.eq(athost.hmac("sha256", bytes(0x0b, 20), "Hi There"),
    "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
    "sha256 test 1")
  t.eq(athost.hmac("sha256", "Jefe", "what do ya want for nothing?"),
    "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
    "sha256 test 2")
  t.eq(athost.hmac("sha256", bytes(0xaa, 131),
      "Test Using Larger Than Block-Size Key - Hash Key First"),
    "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
    "sha256 test 6, key longer than a block")
  t.eq(athost.hmac("sha512", bytes(0x0b, 20), "Hi There"),
    "87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cde"
    .. "daa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854",
    "sha512 test 1")
end)

-- Values from a reference HMAC (Python, ipad/opad written out).
t.test("hmac keys and messages holding NUL bytes", function()
  t.eq(athost.hmac("md5", "\0key\0", "m\0sg"),
    "47482855e877e0c1cf922f70ff025473", "md5")
  t.eq(athost.hmac("sha1", "\0key\0", "m\0sg"),
    "80caa7ce4c014d15e7ba1e34cdb5e52f11014a07", "sha1")
  t.eq(athost.hmac("sha256", "\0key\0", "m\0sg"),
    "2c5ebb9790431dc1422e7a20b979a54b3486da9d92294b91b91c62bf4f9203da", "sha256")
  t.eq(athost.hmac("sha256", "\0abc", "x"),
    "ddd809f52d5b98ca15c43d6f9eebef6d36812699cbcbc8ea210e64165869c2be",
    "key starting with NUL is not cut")
  t.eq(athost.hmac("sha256", "", "x"),
    "4cbc96099a6467ce002461f10549b4898265ebe6188b45efacc44293516e62c4",
    "empty key")
  t.eq(athost.hmac("sha256", "", ""),
    "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad",
    "empty key and message")
end)

t.test("raw output lengths match hex output", function()
  for alg, n in pairs({ md5 = 16, sha1 = 20, sha256 = 32, sha512 = 64 }) do
    local raw = athost.hmac(alg, "k", "m", "raw")
    t.eq(#raw, n, alg .. " raw hmac length")
    t.eq(athost.hex(raw), athost.hmac(alg, "k", "m"), alg .. " raw vs hex")
    t.eq(athost.hmac(alg, "k", "m", "hex"), athost.hmac(alg, "k", "m"),
      alg .. " explicit hex")
    local d = athost.digest(alg, "abc", "raw")
    t.eq(#d, n, alg .. " raw digest length")
    t.eq(athost.hex(d), athost.digest(alg, "abc"), alg .. " digest raw vs hex")
  end
end)

t.test("digest known answers", function()
  t.eq(athost.digest("md5", "abc"), "900150983cd24fb0d6963f7d28e17f72", "md5")
  t.eq(athost.digest("sha1", "abc"),
    "a9993e364706816aba3e25717850c26c9cd0d89d", "sha1")
  t.eq(athost.digest("SHA256", "abc"),
    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
    "sha256")
  t.eq(athost.digest("sha512", "abc"),
    "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
    .. "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
    "sha512")
  t.eq(athost.digest("sha256", ""),
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "sha256 of nothing")
  t.eq(athost.digest("md5", "\0"), "93b885adfe0da089cdf634904fd59f71",
    "md5 of NUL")
  t.eq(athost.digest("sha1", "\0"), "5ba93c9db0cff93f52b521d7420e43f6eda2784f",
    "sha1 of NUL")
  t.eq(athost.digest("sha256", "\0"),
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "sha256 of NUL")
end)

t.test("misuse of hmac and digest raises", function()
  t.raises(function() athost.hmac("md4", "k", "m") end,
    "bad argument #1 to 'hmac' (unknown algorithm 'md4'; "
    .. "use md5, sha1, sha256 or sha512)")
  t.raises(function() athost.hmac("hmacmd4", "k", "m") end,
    "unknown algorithm 'hmacmd4'")
  t.raises(function() athost.hmac("hmac", "k", "m") end, "unknown algorithm")
  t.raises(function() athost.hmac(nil, "k", "m") end, "bad argument #1 to 'hmac'")
  t.raises(function() athost.hmac("sha1", nil, "m") end,
    "bad argument #2 to 'hmac' (string expected, got nil)")
  t.raises(function() athost.hmac("sha1", "k", {}) end, "bad argument #3 to 'hmac'")
  t.raises(function() athost.hmac("sha1", "k", "m", "base64") end,
    "bad argument #4 to 'hmac'")
  t.raises(function() athost.digest("sha3", "m") end,
    "bad argument #1 to 'digest' (unknown algorithm 'sha3'")
  t.raises(function() athost.digest("hmacsha1", "m") end,
    "unknown algorithm 'hmacsha1'", "hmac spelling is not a digest")
  t.raises(function() athost.digest("sha1") end, "bad argument #2 to 'digest'")
end)

t.test("random lengths and forms", function()
  t.eq(athost.random(0), "", "random(0)")
  t.eq(#athost.random(1), 1, "random(1)")
  t.eq(#athost.random(16), 16, "random(16)")
  t.eq(#athost.random(1024 * 1024), 1024 * 1024, "random(1 MiB)")
  local h = athost.random(16, "hex")
  t.eq(#h, 32, "random(16, 'hex') length")
  t.match(h, "^[0-9a-f]+$", "random hex")
  t.eq(athost.random(0, "hex"), "", "random(0, 'hex')")
  t.ok(athost.random(16) ~= athost.random(16), "two random(16) differ")
  t.ok(athost.random(16, "hex") ~= athost.random(16, "hex"),
    "two random(16, 'hex') differ")
end)

t.test("random misuse raises", function()
  t.raises(function() athost.random(-1) end, "bad argument #1 to 'random'")
  t.raises(function() athost.random(1024 * 1024 + 1) end,
    "bad argument #1 to 'random'")
  t.raises(function() athost.random(1.5) end, "bad argument #1 to 'random'")
  t.raises(function() athost.random("many") end, "bad argument #1 to 'random'")
  t.raises(function() athost.random() end, "bad argument #1 to 'random'")
  t.raises(function() athost.random(4, "base64") end,
    "bad argument #2 to 'random'")
end)

t.test("hex and unhex", function()
  t.eq(athost.hex(""), "", "hex of nothing")
  t.eq(athost.hex("\0\1\127\128\255"), "00017f80ff", "hex with NUL")
  t.eq(athost.hex("abc"), "616263", "hex abc")
  t.eq(athost.unhex("00017F80ff"), "\0\1\127\128\255", "mixed case")
  t.eq(athost.unhex(""), "", "unhex of nothing")
  for n = 0, 40 do
    local r = athost.random(n)
    t.eq(athost.unhex(athost.hex(r)), r, "round trip of " .. n .. " bytes")
    t.eq(athost.unhex(athost.hex(r):upper()), r, "upper-case round trip")
  end
  local all = {}
  for b = 0, 255 do all[#all + 1] = string.char(b) end
  all = table.concat(all)
  t.eq(athost.unhex(athost.hex(all)), all, "every byte value")
  t.raises(function() athost.hex(nil) end, "bad argument #1 to 'hex'")
  t.raises(function() athost.unhex({}) end, "bad argument #1 to 'unhex'")
end)

t.test("unhex of text that is not hex fails with EINVAL", function()
  t.match(t.fails("EINVAL", athost.unhex("abc")), "^EINVAL: not hex: ",
    "odd length")
  t.match(t.fails("EINVAL", athost.unhex("zz")), "^EINVAL: not hex: ",
    "non-hex characters")
  t.fails("EINVAL", athost.unhex("0g"))
  t.fails("EINVAL", athost.unhex("00 11"))
  t.fails("EINVAL", athost.unhex("00\0"))
  t.fails("EINVAL", athost.unhex("0x00"))
end)

t.test("base64 rfc 4648 vectors and round trips", function()
  local vectors = { [""] = "", f = "Zg==", fo = "Zm8=", foo = "Zm9v",
    foob = "Zm9vYg==", fooba = "Zm9vYmE=", foobar = "Zm9vYmFy" }
  for plain, coded in pairs(vectors) do
    t.eq(athost.base64(plain), coded, "base64 " .. plain)
    t.eq(athost.unbase64(coded), plain, "unbase64 " .. coded)
  end
  t.eq(athost.base64("\0"), "AA==", "NUL")
  t.eq(athost.base64("\0\0\0"), "AAAA", "three NULs")
  t.eq(athost.base64("\251\255"), "+/8=", "standard alphabet")
  t.eq(athost.unbase64("AA=="), "\0", "decoded NUL")
  for n = 0, 66 do
    local r = athost.random(n)
    local coded = athost.base64(r)
    t.eq(#coded, (n + 2) // 3 * 4, "length for " .. n .. " bytes")
    t.nomatch(coded, "\n", "no line breaks")
    t.eq(athost.unbase64(coded), r, "round trip of " .. n .. " bytes")
  end
end)

t.test("unbase64 tolerates missing padding and white space", function()
  t.eq(athost.unbase64("Zm9vYg"), "foob", "no padding")
  t.eq(athost.unbase64("Zm9vYmE"), "fooba", "no padding, one short")
  t.eq(athost.unbase64("Zm9v\r\nYmFy\n"), "foobar", "CRLF and LF")
  t.eq(athost.unbase64("  Zm9v\tYg = =\n"), "foob", "spaces and tabs")
  t.eq(athost.unbase64(""), "", "nothing")
  t.eq(athost.unbase64("\n"), "", "only white space")
end)

t.test("unbase64 of invalid text fails with EINVAL", function()
  t.match(t.fails("EINVAL", athost.unbase64("Zm9v!")), "^EINVAL: not base64",
    "bad character")
  t.fails("EINVAL", athost.unbase64("Z"))
  t.fails("EINVAL", athost.unbase64("Zm9vY"))
  t.fails("EINVAL", athost.unbase64("Zg==Zg=="))
  t.fails("EINVAL", athost.unbase64("Zg="))
  t.fails("EINVAL", athost.unbase64("===="))
  t.fails("EINVAL", athost.unbase64("Zm9v\0"))
  t.fails("EINVAL", athost.unbase64("Zm9v-_"))
  t.raises(function() athost.unbase64() end, "bad argument #1 to 'unbase64'")
end)

-- NIST SP 800-38A F.2.1/F.2.2 and F.2.5 (AES-128-CBC, AES-256-CBC), and
-- the checked Tencent dynamic-registration payload of CLOUDS.md 1.
local NIST_IV = athost.unhex("000102030405060708090a0b0c0d0e0f")
local NIST_PT = athost.unhex("6bc1bee22e409f96e93d7e117393172a"
  .. "ae2d8a571e03ac9c9eb76fac45af8e51")

t.test("cipher aes-128-cbc and aes-256-cbc: NIST SP 800-38A", function()
  local k128 = athost.unhex("2b7e151628aed2a6abf7158809cf4f3c")
  local ct = athost.cipher("aes-128-cbc", "encrypt", k128, NIST_IV, NIST_PT)
  t.eq(athost.hex(ct), "7649abac8119b246cee98e9b12e9197d"
    .. "5086cb9b507219ee95db113a917678b2", "F.2.1 encrypt")
  t.eq(athost.cipher("AES-128-CBC", "decrypt", k128, NIST_IV, ct), NIST_PT, "F.2.2 decrypt")
  local k256 = athost.unhex("603deb1015ca71be2b73aef0857d7781"
    .. "1f352c073b6108d72d9810a30914dff4")
  t.eq(athost.hex(athost.cipher("aes-256-cbc", "encrypt", k256, NIST_IV,
    NIST_PT:sub(1, 16))), "f58c4c04d6e5f1ba779eabfb5f7bfbd6", "F.2.5 first block")
  t.eq(athost.cipher("aes-128-cbc", "encrypt", k128, NIST_IV, ""), "", "no blocks")
end)

t.test("cipher decrypts the checked Tencent registration payload", function()
  local ct = athost.unbase64("sf1gANtJCT/PRC4ZHOypfkLnO53otVR/oBAnD3vXhS2m8XkbQ08b"
    .. "TCD+I1Tz5Jjo7vhAnC6QE3RgWWZGg6pWGg==")
  local pt = athost.cipher("aes-128-cbc", "decrypt", "XoezQjzzMedF4lAr",
    string.rep("0", 16), ct)
  t.eq(#pt, 64, "four blocks")
  t.eq(pt:sub(1, 53), '{"encryptionType":2,"psk":"MLvMHde65nKPk0Lx+ZThaA=="}', "plaintext")
  t.eq(pt:sub(54), string.rep("\0", 11), "zero padding")
end)

t.test("cipher: data that is not whole blocks fails, misuse raises", function()
  local k = string.rep("k", 16)
  t.match(t.fails("EINVAL", athost.cipher("aes-128-cbc", "decrypt", k, NIST_IV, "abc")),
    "^EINVAL: AES%-128%-CBC: 3 bytes are not whole 16%-byte blocks", "3 bytes")
  t.raises(function() athost.cipher("aes-128-ecb", "decrypt", k, NIST_IV, "") end,
    "unknown cipher 'aes-128-ecb'")
  t.raises(function() athost.cipher("aes-128-cbc", "decrypt", "short", NIST_IV, "") end,
    "needs a 16-byte key, not 5")
  t.raises(function() athost.cipher("aes-128-cbc", "decrypt", k, "iv", "") end,
    "the IV must be 16 bytes")
  t.raises(function() athost.cipher("aes-128-cbc", "both", k, NIST_IV, "") end,
    "bad argument #2 to 'cipher'")
end)

t.test("x509 of the huawei ca certificate (reference/001)", function()
  local text = fixture("huawei-ca-2016.pem")
  local c = t.ok(athost.x509(text), "parsed")
  t.deepeq(c, {
    subject = "CN=IOT, OU=CN, O=Huawei, L=SZ, ST=GD, C=CN",
    issuer = "CN=IOT, OU=CN, O=Huawei, L=SZ, ST=GD, C=CN",
    not_before = "2016-05-04T12:17:27Z",
    not_after = "2026-05-02T12:17:27Z",
    expired = true,
    not_yet_valid = false,
    self_signed = true,
    is_ca = true,
    serial = "af7b9cd4baec746f",
    fingerprint =
      "c6dff2932443de50c23b63c6de98312326c428691901f822ffbe57df80505907",
    pem = text:gsub("\n$", ""),
    count = 1,
  }, "huawei ca")
  -- reference/001 writes it with AT+FSWRITE="server.crt",0,1402,15
  t.eq(#c.pem, 1402, "pem length")
  local body = c.pem:match("%-\n(.*)\n%-")
  t.eq(athost.digest("sha256", athost.unbase64(body)), c.fingerprint,
    "fingerprint is sha256 of the DER")
end)

t.test("x509 finds the certificate inside other text", function()
  local text = fixture("huawei-ca-2016.pem")
  local c = t.ok(athost.x509("AT+FSWRITE\r\n> " .. text:gsub("\n", "\r\n")
    .. "OK\r\n"), "parsed")
  t.eq(c.not_after, "2026-05-02T12:17:27Z", "not_after")
  t.match(c.pem, "^%-%-%-%-%-BEGIN CERTIFICATE%-%-%-%-%-\r\n", "pem start")
  t.match(c.pem, "\r\n%-%-%-%-%-END CERTIFICATE%-%-%-%-%-$", "pem end")
end)

t.test("x509 of certificates generated now", function()
  in_tmpdir(function(dir)
    sh("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=athost-test"
      .. " -keyout " .. dir .. "/ca.key -out " .. dir .. "/ca.pem")
    sh("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=athost-leaf"
      .. " -addext basicConstraints=critical,CA:FALSE"
      .. " -CA " .. dir .. "/ca.pem -CAkey " .. dir .. "/ca.key"
      .. " -keyout " .. dir .. "/leaf.key -out " .. dir .. "/leaf.pem")
    local ca_text = t.ok(t.slurp(dir .. "/ca.pem"), "ca.pem")
    local leaf_text = t.ok(t.slurp(dir .. "/leaf.pem"), "leaf.pem")
    local key_text = t.ok(t.slurp(dir .. "/ca.key"), "ca.key")

    local ca = t.ok(athost.x509(ca_text), "ca parsed")
    t.eq(ca.subject, "CN=athost-test", "ca subject")
    t.eq(ca.issuer, "CN=athost-test", "ca issuer")
    t.eq(ca.expired, false, "ca expired")
    t.eq(ca.not_yet_valid, false, "ca not_yet_valid")
    t.eq(ca.self_signed, true, "ca self_signed")
    t.eq(ca.count, 1, "ca count")
    t.eq(ca.pem, (ca_text:gsub("\n$", "")), "ca pem")
    t.match(ca.serial, "^[0-9a-f]+$", "ca serial")
    t.match(ca.fingerprint, "^" .. ("[0-9a-f]"):rep(64) .. "$", "fingerprint")
    local now = os.time()
    t.ok(ca.not_before <= os.date("!%Y-%m-%dT%H:%M:%SZ", now + 60),
      "not_before " .. ca.not_before .. " is now")
    t.ok(ca.not_after > os.date("!%Y-%m-%dT%H:%M:%SZ", now + 86400)
      and ca.not_after <= os.date("!%Y-%m-%dT%H:%M:%SZ", now + 3 * 86400),
      "not_after " .. ca.not_after .. " is in two days")

    local leaf = t.ok(athost.x509(leaf_text), "leaf parsed")
    t.eq(leaf.subject, "CN=athost-leaf", "leaf subject")
    t.eq(leaf.issuer, "CN=athost-test", "leaf issuer")
    t.eq(leaf.self_signed, false, "leaf self_signed")
    t.eq(leaf.is_ca, false, "leaf is_ca")
    t.eq(leaf.expired, false, "leaf expired")
    t.ok(leaf.fingerprint ~= ca.fingerprint, "fingerprints differ")

    local chain = t.ok(athost.x509(leaf_text .. ca_text), "chain parsed")
    t.eq(chain.count, 2, "chain count")
    t.eq(chain.subject, "CN=athost-leaf", "first certificate of a chain")
    t.eq(chain.pem, (leaf_text:gsub("\n$", "")), "chain pem is the first")

    local after_key = t.ok(athost.x509(key_text .. ca_text), "key then cert")
    t.eq(after_key.subject, "CN=athost-test", "certificate after a key")
    t.eq(after_key.count, 1, "key is not counted")

    t.match(t.fails("EINVAL", athost.x509(key_text)),
      "^EINVAL: not an X.509 certificate: ", "private key")
  end)
end)

t.test("x509 of text that is not a certificate fails with EINVAL", function()
  local text = fixture("huawei-ca-2016.pem")
  local function rejects(s, what)
    t.match(t.fails("EINVAL", athost.x509(s)),
      "^EINVAL: not an X.509 certificate: .", what)
  end
  rejects("", "empty")
  rejects("hello, world\n", "garbage")
  rejects(athost.random(600), "random bytes")
  rejects(text:sub(1, 700), "truncated, no END line")
  rejects(text:sub(1, 700) .. "\n-----END CERTIFICATE-----\n",
    "truncated body")
  rejects("-----BEGIN CERTIFICATE-----\nnot base64 at all!\n"
    .. "-----END CERTIFICATE-----\n", "bad base64")
  rejects("-----BEGIN CERTIFICATE-----\n" .. athost.base64("garbage")
    .. "\n-----END CERTIFICATE-----\n", "base64 of garbage")
  rejects(text:gsub("CERTIFICATE", "PUBLIC KEY"), "wrong PEM label")
  t.raises(function() athost.x509(nil) end, "bad argument #1 to 'x509'")
  t.ok(athost.x509(text), "still parses after failures")
end)

t.run()
