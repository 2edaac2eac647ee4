-- AWS IoT Core, Azure IoT Hub and Huawei IoTDA end to end on the virtual
-- A7670 (sim:a7670: the SIMCom command family, AT+CMQTT*, AT+CCERTDOWN,
-- AT+CSSLCFG, AT+HTTP*), through
-- the same flows and the same cloud side as on the Air720
-- (tests/lib/matrix.lua): provisioning once and the stored credentials
-- reused, messages both ways in each cloud's envelope.
--
--   ATHOST_PATH=tests/lib:lib ./athost tests/lua/flow_clouds_a7670_test.lua
local X = require("matrix").new("a7670")

X.test("AWS: fleet provisioning by claim once, the stored certificate reused", function()
  X.aws_twice {}
end)

X.test("Azure: DPS group enrollment once, then IoT Hub; D2C and C2D", function()
  X.azure_twice {}
end)

X.test("Huawei IoTDA: the report envelope and a command both ways", function()
  X.huawei {}
end)

X.run()
