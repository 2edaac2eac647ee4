-- OneNET token (lib/athost/onenet.lua) against CLOUDS.md 2. No published
-- key+output pair exists: the vectors there are "computed" (Python
-- hmac/base64/quote), pinned here so any change to the formula shows.
local t = require("t")
local onenet = require("athost.onenet")

local KEY = "KuF3NT/jUBJ62LNBB/A8XZA9CqS3Cu79B/ABmfA1UCw="
local RES = "products/123456789/devices/test"

t.test("token, md5 (computed)", function()
  t.eq(onenet.sign(KEY, RES, 1658920369, "md5"), "fVfCsxp0PbuYXl6F87Mp7Q==", "sign")
  t.eq(onenet.token(KEY, RES, 1658920369, "md5"),
    "version=2018-10-31&res=products%2F123456789%2Fdevices%2Ftest&et=1658920369"
    .. "&method=md5&sign=fVfCsxp0PbuYXl6F87Mp7Q%3D%3D", "password")
end)

t.test("token, sha256 (computed)", function()
  t.eq(onenet.sign(KEY, RES, 1658920369, "sha256"),
    "aoIkF9A02CDSWFB7XqI078nJPlKTOYDsB1WxnBks0PU=", "sign")
end)

t.test("product-level token signs res=products/<pid> (computed for this test)", function()
  local cid, user, pass = onenet.credentials { product_id = "123456789", device_name = "test",
    key = KEY, et = 1658920369, method = "sha256", product_level = true }
  t.eq(cid, "test", "client id = device name")
  t.eq(user, "123456789", "username = product id")
  t.eq(pass, "version=2018-10-31&res=products%2F123456789&et=1658920369&method=sha256"
    .. "&sign=PrzrpJ0LiyzuMc%2BsK9f%2FQuLyyY7rCCAqSP3EylAIfn0%3D", "password")
end)

t.test("methods, quoting, bad keys", function()
  t.eq(onenet.method("SHA1"), "sha1", "lowercase")
  t.raises(function() onenet.method("hmacsha1") end, "use md5, sha1 or sha256")
  t.eq(onenet.quote("a/b+c=d e"), "a%2Fb%2Bc%3Dd%20e", "quote, nothing safe")
  t.raises(function() onenet.sign("not base64!", RES, 1, "md5") end, "not base64")
end)

t.test("OneJSON topics and envelopes", function()
  local tp = onenet.topics("P1", "d1")
  t.eq(tp.post, "$sys/P1/d1/thing/property/post", "post")
  t.eq(tp.post_reply, "$sys/P1/d1/thing/property/post/reply", "post reply")
  t.eq(tp.set, "$sys/P1/d1/thing/property/set", "set")
  t.eq(tp.set_reply, "$sys/P1/d1/thing/property/set_reply", "set_reply")
  t.eq(onenet.post("123", '{"Power":"on","Temp":21.5}'),
    '{"id":"123","version":"1.0","params":{"Power":{"value":"on"},"Temp":{"value":21.5}}}', "post")
  t.eq(onenet.post("7", '{"Power":"on"}', 1524448722123),
    '{"id":"7","version":"1.0","params":{"Power":{"value":"on","time":1524448722123}}}', "time")
  t.eq(onenet.reply("123", 200, "success"), '{"id":"123","code":200,"msg":"success"}', "reply")
end)

t.run()
