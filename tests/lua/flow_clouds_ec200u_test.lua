-- AWS IoT Core, Azure IoT Hub and Huawei IoTDA end to end on the virtual
-- EC200U (sim:ec200u: the Quectel command family, AT+QMT*, AT+QFUPL,
-- AT+QSSLCFG, AT+QHTTP*), through
-- the same flows and the same cloud side as on the Air720
-- (tests/lib/matrix.lua): provisioning once and the stored credentials
-- reused, messages both ways in each cloud's envelope.
--
--   ATHOST_PATH=tests/lib:lib ./athost tests/lua/flow_clouds_ec200u_test.lua
local X = require("matrix").new("ec200u")

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
