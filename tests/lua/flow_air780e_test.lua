-- The cloud flows, unchanged, on the virtual Air780E (sim:air780e): every
-- TLS level at QoS 0 and 1, Aliyun with a product secret (registration
-- over AT+HTTP* with AT+HTTPSSL, the stored secret reused), Huawei with
-- the CA upload, recovery after CLOSED and after each bearer-loss
-- spelling, and the readings DIALECTS.md §3 leaves open (knobs: SAPBR
-- needed or absent, USER_DEFINED ignored, bare identification, +HTTPACTION
-- spacing and repeats, +MSUB without " byte").
local X = require("matrix").new("air780e")

for _, tls in ipairs({ "none", "noverify", "server", "mutual" }) do
  for _, qos in ipairs({ 0, 1 }) do
    X.test(string.format("mqtt tls=%s qos=%d: messages both ways", tls, qos), function()
      X.mqtt { tls = tls, qos = qos }
    end)
  end
end

X.test("mqtt: cached delivery, HEX mode, counts without \" byte\"", function()
  X.mqtt { qos = 1, args = { delivery = "cached", mode = "hex" }, sim = { msub_len = "bare" } }
end)

X.test("aliyun: registered once, the stored secret reused (the defaults)", function()
  X.aliyun_twice {}
end)

X.test("aliyun: SAPBR absent, USER_DEFINED ignored, bare identification, spaced and repeated +HTTPACTION", function()
  X.aliyun_twice { sim = { sapbr = "absent", user_defined = "ignored", ident = "bare",
    http_space = "space", http_dup = "on", variant = "Air780E" } }
end)

X.test("aliyun: SAPBR needed, HTTPS from the URL", function()
  X.aliyun_twice { sim = { sapbr = "needed", httpssl = "url" } }
end)

X.test("huawei: the CA uploaded and verified, both ways", function()
  X.huawei {}
end)

X.test("recovery after CLOSED: the next publish arrives", function()
  X.recovery { fault = "drop=AT+MPUB" }
end)

for _, urc in ipairs({ "cgev", "me", "me_pdp" }) do
  X.test("recovery after the bearer loss (pdp_urc=" .. urc .. "): the next publish arrives", function()
    X.recovery { fault = "pdp=AT+MPUB", sim = { pdp_urc = urc, pdn_act = urc == "me" and "off" or "on" } }
  end)
end

X.run()
