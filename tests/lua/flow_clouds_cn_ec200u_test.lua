-- clouds/tencent.lua, clouds/onenet.lua and clouds/thingsboard.lua end to
-- end on the virtual EC200U (sim:ec200u, the Quectel command family),
-- with the same cloud side as on the Air720 (tests/lib/matrix.lua).
local X = require("matrix").new("ec200u")

X.test("tencent: registers once, PSK reused; report and control_reply", function() X.tencent_twice() end)
X.test("onenet: device key, post and set_reply", function() X.onenet {} end)
X.test("tencent: wrong PSK, expired token, refused registration", function() X.tencent_failures() end)
X.test("thingsboard: refused provisioning", function() X.thingsboard_failures() end)
X.test("thingsboard: provisions once, token reused", function() X.thingsboard_twice() end)
X.run()
