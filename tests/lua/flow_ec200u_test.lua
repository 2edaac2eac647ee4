-- The cloud flows, unchanged, on the virtual Quectel EC200U (sim:ec200u),
-- a model written independently from the same DIALECTS.md §1: every TLS
-- level at QoS 0 and 1, a buffered-mode (delivery=cached) message with
-- CR LF " , and NUL byte-exact, Aliyun with a product secret (registration
-- over AT+QHTTP*, the stored secret reused), Huawei with the CA upload
-- (QFDEL + QFUPL), recovery after +QMTSTAT and after +QIURC "pdpdeact"
-- with the next publish arriving, and the readings §1 leaves open (the
-- model's knobs).
local t = require("t")
local X = require("matrix").new("ec200u")

for _, tls in ipairs({ "none", "noverify", "server", "mutual" }) do
  for _, qos in ipairs({ 0, 1 }) do
    X.test(string.format("mqtt tls=%s qos=%d: messages both ways", tls, qos), function()
      X.mqtt { tls = tls, qos = qos }
    end)
  end
end

X.test("mqtt: buffered mode (delivery=cached), a message with CR LF \" , NUL byte-exact", function()
  X.mqtt { qos = 1, args = { delivery = "cached" }, down = 'a\r\nb"c,d\0e\r"\n,z',
    up = 'quotes " and, commas' }
end)

X.test("mqtt: URCs before OK, prompts on their own line, numeric errors, other Quectels' QMTCLOSE", function()
  X.mqtt { tls = "server", qos = 1, sim = { order = "before", prompt = "line",
    cme_form = "numeric", qmtclose_urc = "always", cgmr_prefix = "revision" } }
end)

X.test("aliyun: registered once over AT+QHTTP*, the stored secret reused", function()
  X.aliyun_twice {}
end)

X.test("aliyun: QIACT answering OK, mixed error forms, split bytes", function()
  X.aliyun_twice { sim = { qiact_active = "ok", cme_form = "mixed", split = "on",
    qhttp_err = "long" } }
end)

X.test("aliyun: outcomes before OK (+QHTTPREAD too), echo after boot, unrelated URCs", function()
  X.aliyun_twice { sim = { order = "before", echo_boot = "on", urcs = "on", delay = "20" } }
end)

X.test("huawei: the CA uploaded (QFDEL, QFUPL) and verified, both ways", function()
  X.huawei {}
end)

X.test("huawei: QFUPL's timeout in milliseconds, split bytes, the XOR-less checksum", function()
  X.huawei { sim = { qfupl_unit = "ms", split = "on", qfupl_checksum = "sum16" } }
end)

for _, k in ipairs({ { qmtstat_code = "1" }, { qmtstat_code = "2", qmtping = "on" },
                     { qmtstat_code = "7" } }) do
  X.test("recovery after +QMTSTAT (" .. (k.qmtping and "+QMTPING first, " or "") .. "code "
      .. k.qmtstat_code .. "): the next publish arrives", function()
    X.recovery { fault = "drop=AT+QMTPUBEX", sim = k }
  end)
end

for _, stat in ipairs({ "on", "off" }) do
  X.test("recovery after +QIURC \"pdpdeact\" (pdp_qmtstat=" .. stat
      .. "): the next publish arrives", function()
    local r = X.recovery { fault = "pdp=AT+QMTPUBEX", sim = { pdp_qmtstat = stat } }
    -- The bearer's loss, not the link's: the ladder ran (QIDEACT/QIACT).
    t.match(r.err, 'link lost %(%+QIURC: "pdpdeact",1%)', "the loss taken as the bearer's")
    t.match(r.tr, "AT%+QIDEACT=1", "the first rung of the ladder")
  end)
end

-- Every knob drawn at once from a seed (the line naming them is in the
-- failure's stderr).
for _, seed in ipairs({ 3, 7, 11 }) do
  X.test("personality=random:" .. seed .. ": mqtt TLS, aliyun twice", function()
    X.mqtt { tls = "server", qos = 1, sim = { personality = "random:" .. seed } }
    X.aliyun_twice { sim = { personality = "random:" .. seed } }
  end)
end

X.run()
