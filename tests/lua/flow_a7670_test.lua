-- The cloud flows end to end on the virtual SIMCom A7670 (sim:a7670),
-- through tests/lib/matrix.lua: clouds/mqtt.lua at every TLS level, QoS 0
-- and 1, both ways; clouds/aliyun.lua registering over the A7670's HTTP
-- commands and reusing the stored secret; clouds/huawei.lua with the CA
-- uploaded through AT+CCERTDOWN; recovery after +CMQTTCONNLOST and after
-- +CGEV: NW PDN DEACT with the next publish arriving; a 5,000-byte
-- message in 1,500-byte +CMQTTRXPAYLOAD pieces, byte-exact. Checked with
-- mosquitto_sub and mosquitto_pub.
local t = require("t")
local X = require("matrix").new("a7670")

for _, tls in ipairs({ "none", "noverify", "server", "mutual" }) do
  for _, qos in ipairs({ 0, 1 }) do
    X.test(string.format("mqtt tls=%s qos=%d both ways", tls, qos), function()
      X.mqtt { tls = tls, qos = qos }
    end)
  end
end

-- The readings DIALECTS.md leaves open, on the flow: outcome URCs before
-- OK, no CR LF after the raw bytes, a URC inside the block, the prompt
-- with a line end, random piece sizes.
X.test("mqtt tls=server qos=1 with the other readings of the knobs", function()
  X.mqtt { tls = "server", qos = 1, sim = { order = "before", prompt = "line",
    rx_crlf = "off", rx_urc = "on", rx_chunk = "random", disc_order = "before" } }
end)

X.test("a 5,000-byte message in 1,500-byte pieces arrives byte-exact", function()
  local bytes = {}
  for i = 1, 5000 do bytes[i] = string.char(32 + (i * 31) % 95) end
  -- CR, LF, quote, comma and the text of a block line inside it.
  local down = table.concat(bytes):sub(1, 4950) .. '\r\n"x",y\r\n+CMQTTRXEND: 0\r\n'
  down = down .. string.rep("z", 5000 - #down)
  t.eq(#down, 5000, "the message's length")
  -- X.mqtt checks stdout against the message, byte for byte.
  local r = X.mqtt { qos = 1, down = down, sim = { rx_chunk = "1500" } }
  local pieces = {}
  for n in r.tr:gmatch("%+CMQTTRXPAYLOAD: 0,(%d+)") do pieces[#pieces + 1] = tonumber(n) end
  t.deepeq(pieces, { 1500, 1500, 1500, 500 }, "the pieces in the transcript")
end)

X.test("aliyun: registration over HTTP, then the stored secret", function()
  X.aliyun_twice {}
end)

X.test("aliyun: HTTPREAD in SIM7600's DATA,<n> form, in pieces", function()
  X.aliyun_twice { sim = { httpread_form = "data", http_chunk = "random" } }
end)

X.test("huawei: the CA uploaded with AT+CCERTDOWN and verified", function()
  X.huawei {}
end)

X.test("recovery after +CMQTTCONNLOST: the next publish arrives", function()
  X.recovery { fault = "drop=AT+CMQTTPUB" }
end)

X.test("recovery after +CGEV: NW PDN DEACT: the next publish arrives", function()
  X.recovery { fault = "pdp=AT+CMQTTPUB" }
end)

X.run()
