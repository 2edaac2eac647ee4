-- The virtual Air720 (athost.sim.air720) driven with raw AT commands
-- through athost ports, in front of a real mosquitto (tests/fixtures/
-- broker.sh, plain, TLS and mutual-TLS listeners) and a local HTTP
-- server; what reaches the broker is checked with mosquitto_sub and
-- mosquitto_pub.
--
--   ATHOST_PATH=tests/lib ./athost tests/lua/sim_air720_test.lua
local t = require("t")
local simtest = require("simtest")
local athost = require("athost")

local here = ((arg and arg[0]) or "tests/lua/x"):match("^(.*)/[^/]*$") or "."
local ROOT = here .. "/../.."
local BROKER_SH = here .. "/../fixtures/broker.sh"
local DIR = t.tmpdir()
local B = {}                  -- BROKER_* from broker.env, without the prefix

local L = require("luattest").new(B, DIR)
local shell, uid, raw = L.shell, L.uid, L.raw
local must_expect, mqtt_up, mqtt_status = L.must_expect, L.mqtt_up, L.mqtt_status
local subscriber, publish, topic, upload = L.subscriber, L.publish, L.topic, L.upload
local CONNECT_FAIL, MSUB = L.CONNECT_FAIL, L.MSUB

-- A fresh virtual Air720 (options as a query string), closed after fn.
local function with_modem(query, fn) simtest.with_modem("air720", query, fn) end
local up = simtest.up

---------------------------------------------------------------------------
-- The dialect
---------------------------------------------------------------------------

t.test("autobaud: only an upper-case AT is answered after power-on", function()
  with_modem("imei=862991419835241", function(p)
    t.fails("ETIMEDOUT", p:cmd("at", { timeout = 300 }))
    t.fails("ETIMEDOUT", p:cmd("AT+CGMR", { timeout = 300 }))
    t.eq(assert(p:cmd("AT")).final, "OK", "AT")
    t.eq(assert(p:cmd("at")).final, "OK", "at once synchronised")
  end)
end)

t.test("echo is on after power-on, ATE0 turns it off", function()
  with_modem(nil, function(p)
    assert(p:cmd("AT"))
    t.eq(raw(p, "AT+CGMR\r", "OK\r\n"), "AT+CGMR\r\r\nAirM2M_720_V461_LTE_AT\r\n\r\nOK\r\n",
      "echo, then the framed reply")
    assert(p:cmd("ATE0"))
    t.eq(raw(p, "AT+CGATT?\r", "OK\r\n"), "\r\n+CGATT: 1\r\n\r\nOK\r\n", "no echo")
  end)
end)

t.test("identity, SIM, registration, attach, signal", function()
  with_modem("imei=862991419835241&version=AirM2M_720_V499_LTE_AT", function(p)
    up(p)
    local function lines(c) return table.concat(assert(p:cmd(c, { reply = false })).lines, "|") end
    t.eq(lines("AT+CGMR"), "AirM2M_720_V499_LTE_AT", "CGMR")
    t.eq(lines("AT+CGMI"), "AirM2M", "CGMI")
    t.eq(lines("AT+CGSN"), "862991419835241", "CGSN")
    t.eq(lines("ATI"), "AirM2M|Air720|Revision:AirM2M_720_V499_LTE_AT", "ATI")
    t.eq(lines("AT+CPIN?"), "+CPIN: READY", "CPIN")
    t.eq(lines("AT+CGREG?"), "+CGREG: 0,1", "CGREG")
    t.eq(lines("AT+CGATT?"), "+CGATT: 1", "CGATT")
    t.match(lines("AT+CSQ"), "^%+CSQ: %d+,99$", "CSQ")
    t.fails("ERROR", p:cmd("AT+NOSUCH"))
    t.fails("ERROR", p:cmd("HELLO"))
  end)
end)

t.test("AT+CFUN=0/1 takes the network away and back; AT+RESET reboots", function()
  with_modem(nil, function(p)
    up(p)
    mqtt_up(p)
    assert(p:cmd("AT+CFUN=0"))
    t.eq(assert(p:cmd("AT+CGATT?")).lines[1], "+CGATT: 0", "detached")
    t.eq(assert(p:cmd("AT+CGREG?")).lines[1], "+CGREG: 0,0", "not registered")
    t.eq(mqtt_status(p), "0", "the link went with the radio")
    t.fails("CME", p:cmd(string.format('AT+MIPSTART="127.0.0.1",%d', B.PORT)))
    assert(p:cmd("AT+CFUN=1"))
    t.eq(assert(p:cmd("AT+CGATT?")).lines[1], "+CGATT: 1", "attached")
    mqtt_up(p)
    assert(p:cmd("AT+RESET"))
    must_expect(p, "RDY")
    t.fails("ETIMEDOUT", p:cmd("AT+CGATT?", { timeout = 300 }))
    up(p)
    t.eq(mqtt_status(p), "0", "state lost")
  end)
end)

t.test("a fresh IMEI per modem, with a valid check digit", function()
  local a, b
  with_modem(nil, function(_, m) a = m.imei end)
  with_modem(nil, function(_, m) b = m.imei end)
  t.match(a, "^%d%d%d%d%d%d%d%d%d%d%d%d%d%d%d$", "IMEI")
  t.ok(a ~= b, "two modems, two IMEIs")
  t.eq(require("athost.sim.core").luhn(a:sub(1, 14)), a, "Luhn")
end)

t.test("AT+CMEE 0/1/2 and the refusal fault", function()
  with_modem("refuse=AT+CSQ:100", function(p, m)
    assert(p:cmd("AT"))
    t.fails("ERROR", p:cmd("AT+CSQ"))
    assert(p:cmd("AT+CMEE=1"))
    local _, msg, code, r = p:cmd("AT+CSQ")
    t.eq(code, "CME", msg)
    t.eq(r.cme, 100, "+CME ERROR number")
    m:refuse("AT+CGATT?", 30)
    _, msg, code, r = p:cmd("AT+CGATT?")
    t.eq(code, "CME", msg)
    t.eq(r.cme, 30, "refused with the given number")
    assert(p:cmd("AT+CMEE=2"))
    t.match(t.fails("CME", p:cmd("AT+HTTPTERM")), "operation not allowed", "verbose")
    m:refuse("AT+CGATT?", nil)
    assert(p:cmd("AT+CGATT?"))
  end)
end)

t.test("files: FSCREATE, FSWRITE after a bare '>', FSREAD, FSLS, FSDEL", function()
  with_modem(nil, function(p)
    up(p)
    t.fails("CME", p:cmd('AT+FSWRITE="a.txt",0,5,10'))       -- no such file
    assert(p:cmd('AT+FSCREATE="a.txt"'))
    t.eq(raw(p, 'AT+FSWRITE="a.txt",0,5,10\r', ">"), ">", "the prompt, no CR/LF")
    assert(p:send("hel\r\n"))
    t.eq(assert(p:final()).final, "OK", "5 bytes taken")
    assert(p:cmd('AT+FSWRITE="a.txt",1,2,10', { prompt = ">", data = "lo" }))
    t.eq(raw(p, 'AT+FSREAD="a.txt"\r', "OK\r\n"), "\r\nhel\r\nlo\r\n\r\nOK\r\n", "FSREAD")
    upload(p, "b.txt", "x")
    t.eq(table.concat(assert(p:cmd("AT+FSLS", { reply = false })).lines, ","),
      "a.txt,b.txt", "FSLS")
    assert(p:cmd('AT+FSDEL="b.txt"'))
    t.fails("CME", p:cmd('AT+FSDEL="b.txt"'))
    -- Too few bytes within the timeout: ERROR, the file unchanged.
    local t0 = athost.now()
    t.fails("ERROR", p:cmd('AT+FSWRITE="a.txt",0,10,1', { prompt = ">",
      data = "abc", timeout = 3000 }))
    t.ok(athost.now() - t0 >= 900, "waited the second")
    t.eq(assert(p:cmd('AT+FSFLSIZE="a.txt"')).lines[1], "+FSFLSIZE: 7", "size")
  end)
end)

---------------------------------------------------------------------------
-- MQTT over TCP
---------------------------------------------------------------------------

t.test("MPUB QoS 0 and QoS 1 (PUBACK) reach mosquitto_sub", function()
  with_modem(nil, function(p)
    up(p)
    mqtt_up(p)
    t.eq(mqtt_status(p), "1", "online")
    local tp = topic()
    local got = subscriber(tp)
    assert(p:cmd(string.format('AT+MPUB="%s",0,0,"test0"', tp)))
    local msg = got()
    t.eq(msg.payload, "test0", "QoS 0 payload")
    t.eq(msg.qos, 0, "QoS 0")
    got = subscriber(tp)
    assert(p:cmd(string.format('AT+MPUB="%s",1,0,"{\\22a\\22:\\5C1,\\0D\\0Ab}"', tp)))
    must_expect(p, "PUBACK")
    msg = got()
    t.eq(msg.payload, '{"a":\\1,\r\nb}', "escapes decoded")
    t.eq(msg.qos, 1, "QoS 1")
  end)
end)

t.test("MPUB refusals: unquoted message, not connected, bad QoS", function()
  with_modem(nil, function(p)
    up(p)
    t.fails("CME", p:cmd('AT+MPUB="t",0,0,"x"'))            -- no MQTT yet
    mqtt_up(p)
    t.fails("CME", p:cmd('AT+MPUB="t",0,0,x'))
    t.fails("CME", p:cmd('AT+MPUB="t",2,0,"x"'))
    t.fails("CME", p:cmd('AT+MPUB="a/#",0,0,"x"'))
    t.fails("CME", p:cmd('AT+MSUB="a/#/b",0'))
  end)
end)

t.test("MPUBEX: '>' then exactly len raw bytes", function()
  with_modem(nil, function(p)
    up(p)
    mqtt_up(p)
    local tp = topic()
    local got = subscriber(tp)
    local payload = 'bin\0ary "quoted"\r\n\\end'
    t.eq(raw(p, string.format('AT+MPUBEX="%s",1,0,%d\r', tp, #payload), ">"), ">",
      "prompt")
    assert(p:send(payload))
    assert(p:final())
    must_expect(p, "PUBACK")
    t.eq(got().payload, payload, "bytes as sent")
  end)
end)

t.test("mosquitto_pub arrives as +MSUB (direct) and via MQTTMSGGET (cached)", function()
  with_modem(nil, function(p)
    up(p)
    mqtt_up(p)
    local tp = topic()
    assert(p:cmd(string.format('AT+MSUB="%s",1', tp)))
    must_expect(p, "SUBACK")
    assert(p:cmd("AT+MQTTMSGSET=0"))
    publish(tp, "hello, world\r\nline 2", 1)
    local m = must_expect(p, MSUB)
    t.eq(m[1], tp, "topic")
    t.eq(m.payload, "hello, world\r\nline 2", "payload")
    t.eq(m[2], "20", "length")
    -- Cached: +MSUB: <slot>, then AT+MQTTMSGGET (reference 003).
    assert(p:cmd("AT+MQTTMSGSET=1"))
    publish(tp, "SSSSddddd", 0)
    t.eq(must_expect(p, "^%+MSUB: (%d)$")[1], "0", "slot")
    t.eq(table.concat(assert(p:cmd("AT+MQTTMSGGET?")).lines, "|"),
      "+MQTTMSGGET: 0,VALID|+MQTTMSGGET: 1,INVALID|+MQTTMSGGET: 2,INVALID|"
      .. "+MQTTMSGGET: 3,INVALID", "slots")
    local r = assert(p:cmd("AT+MQTTMSGGET",
      { reply = { "^%+MSUB: ([^,]*),(%d+) byte,", count = 2 } }))
    t.eq(r.line, "+MSUB: " .. tp .. ",9 byte,", "unquoted topic")
    t.eq(r.payload, "SSSSddddd", "cached payload")
    t.match(table.concat(assert(p:cmd("AT+MQTTMSGGET?")).lines, "|"),
      "^%+MQTTMSGGET: 0,INVALID", "read frees the slot")
    assert(p:cmd(string.format('AT+MUNSUB="%s"', tp)))
    must_expect(p, "UNSUBACK")
  end)
end)

t.test("HEX mode both ways (AT+MQTTMODE=1), direct and cached", function()
  with_modem(nil, function(p)
    up(p)
    mqtt_up(p)
    local tp = topic()
    assert(p:cmd("AT+MQTTMODE=1"))
    local got = subscriber(tp)
    assert(p:cmd(string.format('AT+MPUB="%s",0,0,"313233000A"', tp)))
    t.eq(got().payload, "123\0\n", "hex decoded")
    t.fails("CME", p:cmd(string.format('AT+MPUB="%s",0,0,"31G"', tp)))
    assert(p:cmd(string.format('AT+MSUB="%s",0', tp)))
    must_expect(p, "SUBACK")
    publish(tp, "Hi\r\n")
    local m = must_expect(p, MSUB)
    t.eq(m.payload, "48690D0A", "hex text")
    t.eq(m[2], "8", "the count frames the hex digits")
    assert(p:cmd("AT+MQTTMSGSET=1"))
    publish(tp, "\1\2")
    must_expect(p, "^%+MSUB: %d$")
    t.eq(assert(p:cmd("AT+MQTTMSGGET", { reply = { "^%+MSUB: [^,]*,(%d+) byte,",
      count = 1 } })).payload, "0102", "cached hex")
  end)
end)

t.test("keepalive pings hold a 1 s session open", function()
  with_modem(nil, function(p)
    up(p)
    local cid = "ka-" .. uid()
    mqtt_up(p, { client_id = cid, keepalive = 1 })
    t.fails("ETIMEDOUT", p:expect("CLOSED", { timeout = 3500 }))
    t.eq(mqtt_status(p), "1", "still online")
    t.ok(t.slurp(B.DIR .. "/mosquitto.log"):find("PINGREQ from " .. cid, 1, true),
      "the broker saw pings")
  end)
end)

t.test("MDISCONNECT then MIPCLOSE: OK, OK, no CLOSED (reference 003)", function()
  with_modem(nil, function(p)
    up(p)
    mqtt_up(p)
    assert(p:cmd("AT+MDISCONNECT"))
    assert(p:cmd("AT+MIPCLOSE"))
    t.fails("ETIMEDOUT", p:expect("CLOSED", { timeout = 300 }))
    t.eq(mqtt_status(p), "0", "offline")
    t.fails("CME", p:cmd("AT+MIPCLOSE"))
    mqtt_up(p)
  end)
end)

t.test("MIPSTART twice: ALREADY CONNECT; MCONNECT without a link refused", function()
  with_modem(nil, function(p)
    up(p)
    t.fails("CME", p:cmd("AT+MCONNECT=1,60"))
    mqtt_up(p)
    assert(p:cmd(string.format('AT+MIPSTART="127.0.0.1",%d', B.PORT)))
    must_expect(p, "ALREADY CONNECT")
  end)
end)

t.test("wrong credentials: the broker's refusal follows MCONNECT", function()
  with_modem(nil, function(p)
    up(p)
    assert(p:cmd(string.format('AT+MCONFIG="sim-%s","%s","wrong"', uid(), B.USER)))
    assert(p:cmd(string.format('AT+MIPSTART="127.0.0.1",%d', B.PORT)))
    must_expect(p, "CONNECT OK", { abort = CONNECT_FAIL })
    assert(p:cmd("AT+MCONNECT=1,60"))
    local r = assert(p:expect({ "CONNACK OK", "+CME ERROR", "ERROR" }, { timeout = 10000 }))
    t.eq(r.line, "+CME ERROR: 767", "the refusal")
    must_expect(p, "CLOSED")
    t.eq(mqtt_status(p), "0", "offline")
  end)
end)

t.test("a closed port: CONNECT FAIL; the hosts table redirects names", function()
  local l = assert(athost.listen("127.0.0.1", 0))
  local dead = l.port
  l:close()
  with_modem(string.format("hosts=broker.example=127.0.0.1:%d", B.PORT), function(p)
    up(p)
    assert(p:cmd(string.format('AT+MIPSTART="127.0.0.1",%d', dead)))
    must_expect(p, "CONNECT FAIL", { abort = "CONNECT OK" })
    t.eq(mqtt_status(p), "0", "offline")
    mqtt_up(p, { host = "broker.example", port = 1883 })
  end)
end)

---------------------------------------------------------------------------
-- MQTT over TLS
---------------------------------------------------------------------------

t.test("SSLMIPSTART with seclevel 0: TLS without verification", function()
  with_modem(nil, function(p)
    up(p)
    assert(p:cmd('AT+SSLCFG="seclevel",88,0'))
    mqtt_up(p, { tls = true, port = B.TLS_PORT })
    local tp = topic()
    local got = subscriber(tp)
    assert(p:cmd(string.format('AT+MPUB="%s",1,0,"over tls"', tp)))
    must_expect(p, "PUBACK")
    t.eq(got().payload, "over tls", "payload")
  end)
end)

t.test("seclevel 1: the broker verified against the uploaded CA", function()
  with_modem(string.format("hosts=mqtt.example.com=127.0.0.1:%d", B.TLS_PORT), function(p)
    up(p)
    upload(p, "ca.crt", t.slurp(B.CA))
    assert(p:cmd('AT+SSLCFG="cacert",88,"ca.crt"'))
    assert(p:cmd('AT+SSLCFG="seclevel",88,1'))
    mqtt_up(p, { tls = true, port = B.TLS_PORT })
    assert(p:cmd("AT+MIPCLOSE"))
    mqtt_up(p, { tls = true, host = "mqtt.example.com", port = 8883 })
  end)
end)

t.test("seclevel 1 with the wrong CA: CONNECT FAIL", function()
  with_modem(nil, function(p)
    up(p)
    upload(p, "ca.crt", t.slurp(B.WRONG_CA))
    assert(p:cmd('AT+SSLCFG="cacert",88,"ca.crt"'))
    assert(p:cmd('AT+SSLCFG="seclevel",88,1'))
    assert(p:cmd(string.format('AT+SSLMIPSTART="127.0.0.1",%d', B.TLS_PORT)))
    must_expect(p, "CONNECT FAIL", { abort = "CONNECT OK" })
    -- A CA file that does not exist fails the same way.
    assert(p:cmd('AT+SSLCFG="cacert",88,"none.crt"'))
    assert(p:cmd(string.format('AT+SSLMIPSTART="127.0.0.1",%d', B.TLS_PORT)))
    must_expect(p, "CONNECT FAIL", { abort = "CONNECT OK" })
  end)
end)

t.test("seclevel 2: mutual TLS with the uploaded client certificate", function()
  with_modem(nil, function(p)
    up(p)
    upload(p, "ca.crt", t.slurp(B.CA))
    upload(p, "client.crt", t.slurp(B.CLIENT_CERT))
    upload(p, "client.key", t.slurp(B.CLIENT_KEY))
    assert(p:cmd('AT+SSLCFG="cacert",88,"ca.crt"'))
    assert(p:cmd('AT+SSLCFG="clientcert",88,"client.crt"'))
    assert(p:cmd('AT+SSLCFG="clientkey",88,"client.key"'))
    assert(p:cmd('AT+SSLCFG="seclevel",88,2'))
    mqtt_up(p, { tls = true, port = B.MTLS_PORT })
    local tp = topic()
    assert(p:cmd(string.format('AT+MSUB="%s",1', tp)))
    must_expect(p, "SUBACK")
    publish(tp, "mutual")
    t.eq(must_expect(p, MSUB).payload, "mutual", "message over mTLS")
  end)
end)

---------------------------------------------------------------------------
-- Knobs: every reading of what the references leave open
---------------------------------------------------------------------------

-- The raw answer to cmd up to and including `last`, with the module's
-- URC order set by the knob `order`: outcome after OK (the reference
-- dialogues) or before it.
local ORDER = {
  after = function(outcome) return "\r\nOK\r\n\r\n" .. outcome .. "\r\n", outcome .. "\r\n" end,
  before = function(outcome) return "\r\n" .. outcome .. "\r\n\r\nOK\r\n", "\r\nOK\r\n" end,
}

for _, order in ipairs({ "after", "before" }) do
  t.test("order=" .. order .. ": CONNECT OK, CONNACK OK, SUBACK, PUBACK, UNSUBACK, "
    .. "ALREADY CONNECT", function()
    with_modem("order=" .. order, function(p)
      up(p)
      assert(p:cmd(string.format('AT+MCONFIG="sim-%s","%s","%s"', uid(), B.USER, B.PASS)))
      local function answer(cmd, outcome)
        local want, last = ORDER[order](outcome)
        t.eq(raw(p, cmd .. "\r", want:sub(-#last), 5000), want, cmd)
      end
      answer(string.format('AT+MIPSTART="127.0.0.1",%d', B.PORT), "CONNECT OK")
      answer("AT+MCONNECT=1,60", "CONNACK OK")
      local tp = topic()
      answer(string.format('AT+MSUB="%s",1', tp), "SUBACK")
      -- Publish elsewhere: no message of our own between the lines.
      local other = topic()
      answer(string.format('AT+MPUB="%s",1,0,"q1"', other), "PUBACK")
      local want, last = ORDER[order]("PUBACK")
      t.eq(raw(p, string.format('AT+MPUBEX="%s",1,0,2\r', other), ">"), ">", "prompt")
      t.eq(raw(p, "ex", want:sub(-#last), 5000), want, "AT+MPUBEX at QoS 1")
      answer(string.format('AT+MUNSUB="%s"', tp), "UNSUBACK")
      answer(string.format('AT+MIPSTART="127.0.0.1",%d', B.PORT), "ALREADY CONNECT")
      -- QoS 0 has no outcome: OK alone.
      t.eq(raw(p, string.format('AT+MPUB="%s",0,0,"q0"\r', other), "OK\r\n"), "\r\nOK\r\n",
        "AT+MPUB at QoS 0")
    end)
  end)

  t.test("order=" .. order .. ": CONNECT FAIL; a refused CONNACK is the only answer "
    .. "before OK", function()
    with_modem("order=" .. order, function(p)
      up(p)
      local l = assert(athost.listen("127.0.0.1", 0))
      local closed = l.port
      l:close()
      local want, last = ORDER[order]("CONNECT FAIL")
      t.eq(raw(p, string.format('AT+MIPSTART="127.0.0.1",%d\r', closed), want:sub(-#last),
        5000), want, "CONNECT FAIL")
      assert(p:cmd(string.format('AT+MCONFIG="sim-%s","%s","wrong"', uid(), B.USER)))
      t.eq(raw(p, string.format('AT+MIPSTART="127.0.0.1",%d\r', B.PORT),
        order == "after" and "CONNECT OK\r\n" or "OK\r\n", 5000),
        ORDER[order]("CONNECT OK"), "CONNECT OK")
      -- The broker then closes the link: CLOSED may come in the same read.
      local got = raw(p, "AT+MCONNECT=1,60\r", "767\r\n", 5000)
      want = order == "after" and "\r\nOK\r\n\r\n+CME ERROR: 767\r\n"
        or "\r\n+CME ERROR: 767\r\n"
      t.eq(got:sub(1, #want), want, "refused")
      t.ok(got == want or got == want .. "\r\nCLOSED\r\n", "then at most CLOSED: " .. got)
    end)
  end)
end

-- An incoming message as the module prints it, direct and cached, for
-- every setting of hex_count, msub_len and cached_topic.
t.test("hex_count, msub_len, cached_topic: each reading, direct and cached", function()
  local cases = {
    { "hex_count=chars&msub_len=byte&cached_topic=bare", 1, '"%s",8 byte,48690D0A',
      "%s,4 byte,0102" },
    { "hex_count=bytes&msub_len=byte&cached_topic=quoted", 1, '"%s",4 byte,48690D0A',
      '"%s",2 byte,0102' },
    { "hex_count=bytes&msub_len=bare&cached_topic=bare", 1, '"%s",4,48690D0A',
      "%s,2,0102" },
    { "hex_count=chars&msub_len=bare&cached_topic=quoted", 1, '"%s",8,48690D0A',
      '"%s",4,0102' },
    { "hex_count=bytes&msub_len=bare&cached_topic=quoted", 0, '"%s",4,Hi\r\n',
      '"%s",2,\1\2' },
  }
  for _, c in ipairs(cases) do
    with_modem(c[1], function(p)
      up(p)
      mqtt_up(p)
      local tp = topic()
      assert(p:cmd("AT+MQTTMODE=" .. c[2]))
      assert(p:cmd(string.format('AT+MSUB="%s",0', tp)))
      must_expect(p, "SUBACK")
      publish(tp, "Hi\r\n")
      local direct = "+MSUB: " .. string.format(c[3], tp)
      t.eq(raw(p, nil, direct:sub(-4) .. "\r\n"), "\r\n" .. direct .. "\r\n", c[1] .. " direct")
      assert(p:cmd("AT+MQTTMSGSET=1"))
      publish(tp, "\1\2")
      must_expect(p, "^%+MSUB: 0$")
      local cached = "+MSUB: " .. string.format(c[4], tp)
      t.eq(raw(p, "AT+MQTTMSGGET\r", "OK\r\n"), "\r\n" .. cached .. "\r\n\r\nOK\r\n",
        c[1] .. " cached")
    end)
  end
end)

t.test("statu: \"+MQTTSTATU :0\" or \"+MQTTSTATU: 0\"", function()
  for statu, line in pairs({ space = "+MQTTSTATU :", plain = "+MQTTSTATU: " }) do
    with_modem("statu=" .. statu, function(p)
      up(p)
      t.eq(raw(p, "AT+MQTTSTATU\r", "OK\r\n"), "\r\n" .. line .. "0\r\n\r\nOK\r\n", statu)
      mqtt_up(p)
      t.eq(raw(p, "AT+MQTTSTATU\r", "OK\r\n"), "\r\n" .. line .. "1\r\n\r\nOK\r\n", statu)
    end)
  end
end)

t.test("pdp_urc: +PDP DEACT, +CGEV: NW PDN DEACT 1, or both", function()
  local want = { pdp = "\r\n+PDP DEACT\r\n", cgev = "\r\n+CGEV: NW PDN DEACT 1\r\n",
    both = "\r\n+CGEV: NW PDN DEACT 1\r\n\r\n+PDP DEACT\r\n" }
  for how, text in pairs(want) do
    with_modem("pdp_urc=" .. how, function(p, m)
      up(p)
      mqtt_up(p)
      athost.sleep(0)
      p:flush()
      m:pdp_deact()
      t.eq(raw(p, nil, text:sub(-8)), text, how)
      t.eq(mqtt_status(p), "0", "the link went with the bearer")
    end)
  end
end)

-- Reference 003 after +PDP DEACT: AT+CIPSHUT, then one of three ways.
-- The cached messages (RAM) survive all but the reset.
local function slots(p)
  return table.concat(assert(p:cmd("AT+MQTTMSGGET?")).lines, "|"):gsub("%+MQTTMSGGET: ", "")
end

local function cached_then_deact(p, m)
  up(p)
  mqtt_up(p)
  local tp = topic()
  assert(p:cmd("AT+MQTTMSGSET=1"))
  assert(p:cmd(string.format('AT+MSUB="%s",0', tp)))
  must_expect(p, "SUBACK")
  publish(tp, "before the fault")
  must_expect(p, "^%+MSUB: 0$")
  m:pdp_deact()
  must_expect(p, "+PDP DEACT")
  assert(p:cmd("AT+CIPSHUT", { final = { "SHUT OK" } }))
  t.eq(mqtt_status(p), "0", "offline")
  t.fails("CME", p:cmd(string.format('AT+MIPSTART="127.0.0.1",%d', B.PORT)))
  t.eq(assert(p:cmd("AT+CGACT?")).lines[1], "+CGACT: 1,0", "context down after CIPSHUT")
  t.eq(slots(p), "0,VALID|1,INVALID|2,INVALID|3,INVALID", "the slot survived CIPSHUT")
  return tp
end

t.test("cgact=ok: after +PDP DEACT and CIPSHUT, CGDCONT=5 and CGACT=1,5 bring MQTT back",
  function()
  with_modem("cgact=ok", function(p, m)
    cached_then_deact(p, m)
    t.fails("CME", p:cmd("AT+CGACT=1,5"))               -- not defined yet
    assert(p:cmd('AT+CGDCONT=5,"IP","CMIIOT"'))
    assert(p:cmd("AT+CGACT=1,5"))
    t.deepeq(assert(p:cmd("AT+CGACT?")).lines, { "+CGACT: 1,0", "+CGACT: 5,1" }, "CGACT?")
    mqtt_up(p)
    t.eq(mqtt_status(p), "1", "online again")
    local r = assert(p:cmd("AT+MQTTMSGGET", { reply = { "^%+MSUB: ([^,]*),(%d+) byte,",
      count = 2 } }))
    t.eq(r.payload, "before the fault", "the cached message")
  end)
end)

t.test("cgact=refuse: CGACT refused; CFUN=0 then CFUN=1 brings MQTT back; "
  .. "AT+RESET drops the slots", function()
  with_modem("cgact=refuse", function(p, m)
    cached_then_deact(p, m)
    assert(p:cmd('AT+CGDCONT=5,"IP","CMIIOT"'))
    local _, msg, code, r = p:cmd("AT+CGACT=1,5")
    t.eq(code, "CME", msg)
    t.eq(r.cme, 767, "+CME ERROR number")
    assert(p:cmd("AT+CFUN=1"))                      -- already 1: no change
    t.fails("CME", p:cmd(string.format('AT+MIPSTART="127.0.0.1",%d', B.PORT)))
    assert(p:cmd("AT+CFUN=0"))
    assert(p:cmd("AT+CFUN=1"))
    t.eq(slots(p), "0,VALID|1,INVALID|2,INVALID|3,INVALID", "the slot survived CFUN")
    mqtt_up(p)
    t.eq(mqtt_status(p), "1", "online again")
    assert(p:cmd("AT+RESET"))
    must_expect(p, "RDY")
    up(p)
    t.eq(slots(p), "0,INVALID|1,INVALID|2,INVALID|3,INVALID", "a reset empties the slots")
    mqtt_up(p)
  end)
end)

---------------------------------------------------------------------------
-- HTTP
---------------------------------------------------------------------------

local http_server, bearer = simtest.http_server, simtest.bearer

local ACTION = "^%+HTTPACTION: (%d+),(%d+),(%d+)$"

t.test("HTTP POST as in reference 000, against a local server", function()
  local reply = '{"code":200,"data":{"deviceSecret":"s3cr3t"},"message":"success"}'
  local port, seen, stop = http_server(function()
    return 200, { ["Content-Type"] = "application/json" }, reply
  end)
  with_modem(nil, function(p)
    up(p)
    bearer(p)
    t.match(assert(p:cmd("AT+SAPBR=2,1")).lines[1], '^%+SAPBR: 1,1,"10%.', "bearer up")
    t.fails("CME", p:cmd("AT+HTTPACTION=1"))            -- before HTTPINIT
    assert(p:cmd("AT+HTTPINIT"))
    t.fails("CME", p:cmd("AT+HTTPINIT"))                -- twice
    t.fails("CME", p:cmd("AT+HTTPACTION=1"))            -- no URL
    assert(p:cmd(string.format('AT+HTTPPARA="URL","http://127.0.0.1:%d/auth/register/device"', port)))
    assert(p:cmd('AT+HTTPPARA="USER_DEFINED","Content-Type: application/x-www-form-urlencoded"'))
    local body = "productKey=b1KCi45LcCP&deviceName=862991419835241&random=123456"
    assert(p:cmd(string.format("AT+HTTPDATA=%d,20000", #body),
      { prompt = "DOWNLOAD", data = body }))
    assert(p:cmd("AT+HTTPACTION=1"))
    local a = must_expect(p, ACTION)
    t.eq(a[1] .. "," .. a[2] .. "," .. a[3], "1,200," .. #reply, "+HTTPACTION")
    local r = assert(p:cmd("AT+HTTPREAD", { reply = { "^%+HTTPREAD: (%d+)", count = 1 } }))
    t.eq(r.payload, reply, "HTTPREAD body")
    assert(p:cmd("AT+HTTPTERM"))
    t.fails("CME", p:cmd("AT+HTTPTERM"))
    simtest.form_post(seen, "/auth/register/device", body)
  end)
  stop()
end)

t.test("HTTP GET through the hosts table; 601 without bearer or server", function()
  local port, seen, stop = http_server(function() return 200, {}, "pong" end)
  local l = assert(athost.listen("127.0.0.1", 0))
  local dead = l.port
  l:close()
  with_modem(string.format("hosts=iot-auth.example.com=127.0.0.1:%d", port), function(p)
    up(p)
    assert(p:cmd("AT+HTTPINIT"))
    assert(p:cmd('AT+HTTPPARA="URL","http://iot-auth.example.com/ping"'))
    assert(p:cmd("AT+HTTPACTION=0"))
    t.eq(must_expect(p, ACTION)[2], "601", "no bearer")
    bearer(p)
    assert(p:cmd("AT+HTTPACTION=0"))
    local a = must_expect(p, ACTION)
    t.eq(a[1] .. "," .. a[2] .. "," .. a[3], "0,200,4", "GET")
    t.eq(seen[1].headers.host, "iot-auth.example.com", "Host header")
    assert(p:cmd(string.format('AT+HTTPPARA="URL","http://127.0.0.1:%d/"', dead)))
    assert(p:cmd("AT+HTTPACTION=0"))
    t.eq(must_expect(p, ACTION)[2], "601", "connection refused")
  end)
  stop()
end)

t.test("HTTPDATA with a wrong length: too few bytes time out, too many spill", function()
  local port, seen, stop = http_server(function() return 200, {}, "ok" end)
  with_modem(nil, function(p)
    up(p)
    bearer(p)
    assert(p:cmd("AT+HTTPINIT"))
    assert(p:cmd(string.format('AT+HTTPPARA="URL","http://127.0.0.1:%d/"', port)))
    local t0 = athost.now()
    t.fails("ERROR", p:cmd("AT+HTTPDATA=10,1000", { prompt = "DOWNLOAD",
      data = "short", timeout = 3000 }))
    t.ok(athost.now() - t0 >= 900, "waited for the bytes")
    -- Three bytes announced, six sent: the rest starts the next line.
    assert(p:cmd("AT+HTTPDATA=3,1000", { prompt = "DOWNLOAD", data = "abcdef" }))
    t.fails("ERROR", p:cmd("AT+HTTPACTION=1"))
    assert(p:cmd("AT+HTTPACTION=1"))
    must_expect(p, ACTION)
    t.eq(seen[1].body, "abc", "the server got the announced bytes")
  end)
  stop()
end)

---------------------------------------------------------------------------
-- Faults
---------------------------------------------------------------------------

t.test("fault: the link drops -> CLOSED, then reconnect from MIPSTART", function()
  with_modem(nil, function(p, m)
    up(p)
    mqtt_up(p)
    m:drop()
    must_expect(p, "CLOSED")
    t.eq(mqtt_status(p), "0", "offline")
    t.fails("CME", p:cmd("AT+MIPCLOSE"))         -- 003: ignore its error
    mqtt_up(p)
  end)
  with_modem("drop=AT+MQTTSTATU", function(p)
    up(p)
    mqtt_up(p)
    t.eq(mqtt_status(p), "1", "answered first")
    must_expect(p, "CLOSED")
  end)
end)

t.test("fault: the bearer is lost -> +PDP DEACT; CIPSHUT alone does not recover", function()
  with_modem(nil, function(p, m)
    up(p)
    bearer(p)
    mqtt_up(p)
    m:pdp_deact()
    must_expect(p, "+PDP DEACT")
    t.eq(mqtt_status(p), "0", "offline")
    t.match(assert(p:cmd("AT+SAPBR=2,1")).lines[1], "^%+SAPBR: 1,3,", "bearer down")
    t.fails("CME", p:cmd(string.format('AT+MIPSTART="127.0.0.1",%d', B.PORT)))
    assert(p:cmd("AT+CIPSHUT", { final = { "SHUT OK" } }))
    -- Reference 003: the context must be activated again after CIPSHUT.
    t.fails("CME", p:cmd(string.format('AT+MIPSTART="127.0.0.1",%d', B.PORT)))
    t.fails("CME", p:cmd("AT+SAPBR=1,1"))
    assert(p:cmd("AT+CGACT=1,1"))
    bearer(p)
    mqtt_up(p)
  end)
end)

t.test("fault: noise between lines", function()
  with_modem("noise=1", function(p)
    up(p)
    for _ = 1, 5 do
      t.deepeq(assert(p:cmd("AT+CGATT?")).lines, { "+CGATT: 1" }, "reply")
    end
    local got = raw(p, "AT+CGMR\r", "OK\r\n")
    t.ok(got:find("\0", 1, true), "garbage on the wire: " .. got:gsub("%c", "."))
    t.match(got, "\r\nAirM2M_720_V461_LTE_AT\r\n", "the line intact")
  end)
end)

t.test("fault: output one byte at a time", function()
  with_modem("slow=3", function(p)
    up(p)
    athost.sleep(50)          -- the LF after up()'s last OK is still coming
    local t0 = athost.now()
    local got, chunks = raw(p, "AT+CGMR\r", "OK\r\n")
    t.eq(got, "\r\nAirM2M_720_V461_LTE_AT\r\n\r\nOK\r\n", "bytes")
    t.ok(chunks >= #got // 2, string.format("%d bytes in %d reads", #got, chunks))
    t.ok(athost.now() - t0 >= 2 * #got, "paced")
    t.eq(assert(p:cmd("AT+CGSN")).final, "OK", "a command still works")
  end)
end)

t.test("fault: echo stuck on", function()
  with_modem(nil, function(p, m)
    up(p)
    m:echo(true)
    assert(p:cmd("ATE0"))
    t.eq(raw(p, "AT+CGATT?\r", "OK\r\n"), "AT+CGATT?\r\r\n+CGATT: 1\r\n\r\nOK\r\n",
      "echo despite ATE0")
    t.deepeq(assert(p:cmd("AT+CGATT?")).lines, { "+CGATT: 1" }, "flows skip it")
  end)
end)

t.test("fault: reboot mid-dialogue -> banner, state lost, autobaud", function()
  with_modem(nil, function(p, m)
    up(p)
    upload(p, "keep.txt", "flash")
    mqtt_up(p)
    m:reboot()
    must_expect(p, "RDY")
    t.fails("ETIMEDOUT", p:cmd("AT+MQTTSTATU", { timeout = 300 }))
    assert(p:cmd("AT"))
    t.eq(raw(p, "AT+MQTTSTATU\r", "OK\r\n"), "AT+MQTTSTATU\r\r\n+MQTTSTATU :0\r\n\r\nOK\r\n",
      "echo back on, offline")
    assert(p:cmd("ATE0"))
    t.eq(assert(p:cmd('AT+FSFLSIZE="keep.txt"')).lines[1], "+FSFLSIZE: 5", "files kept")
  end)
  with_modem("reboot=AT+HTTPDATA", function(p)
    up(p)
    assert(p:cmd("AT+HTTPINIT"))
    t.fails("EABORT", p:cmd("AT+HTTPDATA=5,1000", { prompt = "DOWNLOAD", data = "hello",
      abort = "RDY" }))
    assert(p:cmd("AT", { timeout = 2000 }))
    assert(p:cmd("AT+HTTPINIT"))                  -- the old session is gone
  end)
end)

t.test("fault: silence -> the command times out", function()
  with_modem(nil, function(p, m)
    up(p)
    m:silent(true)
    t.fails("ETIMEDOUT", p:cmd("AT", { timeout = 500 }))
    m:silent(false)
    assert(p:cmd("AT"))
  end)
  with_modem("silent=AT+CGATT?", function(p)
    up(p)
    local msg = t.fails("ETIMEDOUT", p:cmd("AT+CGATT?", { timeout = 500 }))
    t.match(msg, "no final result to AT%+CGATT%?", "message")
    t.fails("ETIMEDOUT", p:cmd("AT", { timeout = 300 }))
  end)
end)

---------------------------------------------------------------------------
-- Standalone
---------------------------------------------------------------------------

t.test("athost scripts/sim/air720.lua serves a separate athost -p", function()
  L.serve_script(ROOT, "air720", "imei=861234567890123", function(link)
    local chunk = "local p = require('athost').port() assert(p:cmd('AT')) "
      .. "print(assert(p:cmd('AT+CGSN')).lines[1])"
    local res, okc = shell(string.format("%s/athost -p %s -e \"%s\"", ROOT, link, chunk))
    t.ok(okc, "client: " .. res)
    t.match(res, "861234567890123", "IMEI from the standalone modem")
    res, okc = shell(string.format("%s/athost -p 'sim:air720?imei=869999999999999' -e \"%s\"",
      ROOT, chunk))
    t.ok(okc, "-p sim: " .. res)
    t.match(res, "869999999999999", "IMEI from -p sim:air720")
  end)
end)

-- Last: it restarts the broker.
t.test("fault: broker restart -> CLOSED, reconnect afterwards", function()
  with_modem(nil, function(p)
    up(p)
    mqtt_up(p)
    local out, ok = shell(BROKER_SH .. " restart " .. DIR)
    t.ok(ok, "broker.sh restart: " .. out)
    must_expect(p, "CLOSED")
    t.eq(mqtt_status(p), "0", "offline")
    mqtt_up(p)
  end)
end)

---------------------------------------------------------------------------

require("luattest").run(B, DIR)
