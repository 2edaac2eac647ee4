-- clouds/tencent.lua, clouds/onenet.lua and clouds/thingsboard.lua end to
-- end on the virtual Air780E (sim:air780e, its own profile and spellings),
-- with the same cloud side as on the Air720 (tests/lib/matrix.lua).
local X = require("matrix").new("air780e")

X.test("tencent: registers once, PSK reused; report and control_reply", function() X.tencent_twice() end)
X.test("onenet: device key, post and set_reply", function() X.onenet {} end)
X.test("onenet: wrong key, expired token", function() X.onenet_failures() end)
X.test("thingsboard: provisions once, token reused", function() X.thingsboard_twice() end)
X.run()
