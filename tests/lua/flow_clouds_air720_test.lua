-- clouds/tencent.lua, clouds/onenet.lua and clouds/thingsboard.lua end to
-- end on the virtual Air720 (tests/lib/matrix.lua): messages both ways in
-- each cloud's envelope, provisioning once and the stored credential
-- reused, and the failures a user meets.
local X = require("matrix").new("air720")

X.test("tencent: registers once, PSK reused; report and control_reply", function() X.tencent_twice() end)
X.test("tencent: wrong PSK, expired token, refused registration", function() X.tencent_failures() end)
X.test("tencent: device PSK, hmacsha1, the SDK's sdkappid", function()
  local d = X.tencent_device { sign_method = "hmacsha1", sdkappid = "21010406" }
  X.tencent { device = d, args = { device_psk = d.psk } }
end)
X.test("onenet: device key, post and set_reply", function() X.onenet {} end)
X.test("onenet: product key (res=products/<pid>), md5", function() X.onenet { product = true, method = "md5" } end)
X.test("onenet: wrong key, expired token", function() X.onenet_failures() end)
X.test("thingsboard: access token, telemetry and RPC", function()
  X.thingsboard { args = { access_token = X.tb_token } }
end)
X.test("thingsboard: provisions once, token reused", function() X.thingsboard_twice() end)
X.test("thingsboard: refused provisioning", function() X.thingsboard_failures() end)
X.run()
