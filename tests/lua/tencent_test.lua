-- Tencent IoT signing (lib/athost/tencent.lua) against the vectors of
-- CLOUDS.md 1: "checked" ones recomputed there and equal to a published
-- output, "computed" ones with no published output (pinned all the same,
-- so a change shows).
local t = require("t")
local athost = require("athost")
local tencent = require("athost.tencent")

local PSK = "MLvMHde65nKPk0Lx+ZThaA=="
local USER = "L4WG9V9M2MTEST2;21010406;5AiF2;92233720368547758"
local PS = "XoezQjzzMedF4lAr2CqCkVYK"

t.test("MQTT username: clientId;sdkappid;connid;expiry (checked layout)", function()
  t.eq(tencent.username("L4WG9V9M2M", "TEST2", "21010406", "5AiF2", "92233720368547758"),
    USER, "username")
  t.eq(athost.hex(athost.unbase64(PSK)), "30bbcc1dd7bae6728f9342f1f994e168", "psk decodes")
  t.eq(tencent.SDKAPPID, "12010126", "the docs' sdkappid is the default")
end)

t.test("MQTT password, hmacsha1 (checked, qcloud_iot_mqtt_sign readme)", function()
  t.eq(tencent.password(PSK, USER, "hmacsha1"),
    "9ed5ea5710f9e585426dcf19e0c8c2d6af484f06;hmacsha1", "password")
end)

t.test("MQTT password, hmacsha256 (computed)", function()
  t.eq(tencent.password(PSK, USER, "hmacsha256"),
    "25ef37edcaa2ea66dc927def462409ac5f5dad4634d2ebf147cd0be8724f020b;hmacsha256", "password")
end)

t.test("credentials: client id is productId..deviceName; connid five alphanumerics", function()
  local cid, user, pass = tencent.credentials { product_id = "L4WG9V9M2M", device_name = "TEST2",
    device_psk = PSK, sdkappid = "21010406", connid = "5AiF2", expiry = "92233720368547758",
    sign_method = "hmacsha1" }
  t.eq(cid, "L4WG9V9M2MTEST2", "client id")
  t.eq(user, USER, "username")
  t.eq(pass, "9ed5ea5710f9e585426dcf19e0c8c2d6af484f06;hmacsha1", "password")
  t.match(tencent.connid(), "^%w%w%w%w%w$", "connid")
  t.raises(function() tencent.method("hmacmd5") end, "use hmacsha1 or hmacsha256")
  t.raises(function() tencent.password("not base64!", USER) end, "device_psk is not base64")
end)

t.test("dynamic registration signature (checked, SDK log)", function()
  t.eq(athost.hmac("sha1", PS, "deviceName=TEST2&nonce=1005258070&productId=L4WG9V9M2M"
    .. "&timestamp=1611299964"), "ac6f3506ec187c54cbb20e70ca5a697221c42864", "hex")
  t.eq(tencent.register_sign(PS, "L4WG9V9M2M", "TEST2", 1005258070, 1611299964),
    "YWM2ZjM1MDZlYzE4N2M1NGNiYjIwZTcwY2E1YTY5NzIyMWM0Mjg2NA==", "signature")
  t.eq(tencent.register_body(PS, "L4WG9V9M2M", "TEST2", 1005258070, 1611299964),
    '{"deviceName":"TEST2","nonce":1005258070,"productId":"L4WG9V9M2M",'
    .. '"timestamp":1611299964,"signature":'
    .. '"YWM2ZjM1MDZlYzE4N2M1NGNiYjIwZTcwY2E1YTY5NzIyMWM0Mjg2NA=="}', "body")
end)

t.test("dynamic registration payload decrypts to the psk (checked, len 53)", function()
  local p = tencent.decrypt(PS, "sf1gANtJCT/PRC4ZHOypfkLnO53otVR/oBAnD3vXhS2m8XkbQ08b"
    .. "TCD+I1Tz5Jjo7vhAnC6QE3RgWWZGg6pWGg==", 53)
  t.eq(p.psk, PSK, "psk")
  t.eq(math.tointeger(p.encryptionType), 2, "key auth")
  -- Without len the zero padding is stripped.
  t.eq(tencent.decrypt(PS, "sf1gANtJCT/PRC4ZHOypfkLnO53otVR/oBAnD3vXhS2m8XkbQ08b"
    .. "TCD+I1Tz5Jjo7vhAnC6QE3RgWWZGg6pWGg==").psk, PSK, "no len")
  t.raises(function() tencent.decrypt("WrongSecret12345xx", "sf1gANtJCT/PRC4ZHOypfkLnO53otVR/"
    .. "oBAnD3vXhS2m8XkbQ08bTCD+I1Tz5Jjo7vhAnC6QE3RgWWZGg6pWGg==", 53) end, "wrong product secret?")
  t.raises(function() tencent.decrypt(PS, "a!b", 3) end, "not base64")
  t.raises(function() tencent.decrypt(PS, "YWJj", 3) end, "cannot decrypt")
end)

t.test("signed-header registration API signature (checked, qcloud_iot_mqtt_sign readme)", function()
  local body = '{"ProductId":"PRODUCT_ID1","DeviceName":"DEVICENAME1"}'
  t.eq(#body, 54, "body length")
  t.eq(athost.digest("sha1", body), "88eef715f4c42652ef51b274f174f4f81a393f75", "body SHA1")
  t.eq(tencent.header_sign("PRODUCT_SECRETKEY", "ap-guangzhou.gateway.tencentdevices.com",
    "/device/register", "1629362589", "333464802", body), "7u3+tAPlt8O4mPpBm3lambv23sw=", "signature")
end)

t.test("data template topics and envelopes", function()
  local tp = tencent.topics("PID", "dev1")
  t.eq(tp.up, "$thing/up/property/PID/dev1", "up")
  t.eq(tp.down, "$thing/down/property/PID/dev1", "down")
  t.eq(tencent.report("t-1", '{"power_switch":1}'),
    '{"method":"report","clientToken":"t-1","params":{"power_switch":1}}', "report")
  t.eq(tencent.control_reply("c-9", 0, "ok"),
    '{"method":"control_reply","clientToken":"c-9","code":0,"status":"ok"}', "control_reply")
  t.eq(tencent.mqtt_host("PID"), "PID.iotcloud.tencentdevices.com", "host")
  t.eq(tencent.mqtt_host("PID", "us-east"), "PID.us-east.iotcloud.tencentdevices.com", "US East")
end)

t.run()
