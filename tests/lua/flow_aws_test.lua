-- clouds/aws.lua end to end on the virtual Air720, as a user runs it,
-- against mosquitto's certificate listener (the client certificate is the
-- credential, as AWS IoT Core takes devices) and the local fleet
-- provisioning service (scripts/sim/aws-fleet.lua): a registered device,
-- fleet provisioning by claim once and the stored certificate reused,
-- and the failures a user meets. tests/lib/matrix.lua does the work.
--
--   ATHOST_PATH=tests/lib:lib ./athost tests/lua/flow_aws_test.lua
local t = require("t")
local X = require("matrix").new("air720")

X.test("a registered device: its certificate and key uploaded, both ways", function()
  X.aws_device {}
end)

X.test("fleet provisioning by claim once, the stored certificate reused", function()
  X.aws_twice {}
end)

X.test("a certificate with the wrong key: exit 1 at connect, the TLS handshake refused", function()
  local e = X.aws_fail { kind = "wrong key" }
  t.match(e, '^athost: step "connect" failed: connecting to ' .. X.AWS_ENDPOINT:gsub("%p", "%%%0")
    .. ":8883: CONNECT FAIL", "error")
end)

X.test("provisioning refused by the template's hook: exit 1 at register thing, AWS's words", function()
  local e = X.aws_fail { kind = "refused" }
  t.match(e, '^athost: step "register thing" failed: register thing rejected: statusCode 403, '
    .. "errorCode AccessDeniedException: Provisioning of 86%d+ was denied", "error")
end)

X.test("a reply larger than the module takes: exit 1 naming both sizes", function()
  local e = X.aws_fail { kind = "too big" }
  t.match(e, '^athost: step "create keys and certificate" failed: create keys and certificate: '
    .. "the reply is %d%d%d%d bytes, more than the air720%-2k takes in one message "
    .. "%(its profile's limits.message = 2048%)", "error")
end)

X.run()
