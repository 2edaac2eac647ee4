-- clouds/azure.lua end to end on the virtual Air720, as a user runs it,
-- against mosquitto's TLS listener standing in for DPS and the hub (it
-- accepts exactly the SAS tokens the test enrolls, computed by
-- tests/lib/sas.lua, not by the flow's library) and the local DPS
-- (scripts/sim/azure-dps.lua): provisioning with a group enrollment once,
-- the stored assignment reused, and the failures a user meets.
--
--   ATHOST_PATH=tests/lib:lib ./athost tests/lua/flow_azure_test.lua
local t = require("t")
local X = require("matrix").new("air720")

X.test("DPS group enrollment once, then IoT Hub; the assignment reused; D2C and C2D", function()
  X.azure_twice {}
end)

X.test("a wrong device key: exit 1 at connect to IoT Hub, the hub refused", function()
  local e = X.azure_fail { kind = "wrong key" }
  t.match(e, '^athost: step "connect to IoT Hub" failed: MQTT connect: the broker refused', "error")
end)

X.test("an expired token (the clock two hours back): exit 1, refused, the expiry named", function()
  local e, r = X.azure_fail { kind = "expired" }
  t.match(e, '^athost: step "connect to IoT Hub" failed: MQTT connect: the broker refused', "error")
  t.match(e, "SAS token valid until " .. X.esc(os.date("!%Y-%m-%d", os.time() - 3600)), "the expiry")
  t.match(e, "expired by", "said to be expired")
  t.ok(r, "a result")
end)

X.test("DPS refuses the registration: exit 1 at register, DPS's status and words", function()
  local e = X.azure_fail { kind = "refused" }
  t.match(e, '^athost: step "register" failed: DPS answered 401: errorCode 401002: The device '
    .. "86%d+ is not authorized", "error")
end)

X.run()
