-- The virtual SIMCom A7670 (athost.sim.a7670) driven with raw AT commands
-- through athost ports, as DIALECTS.md 2, 4.3 and 4.4 describe the module,
-- in front of a real mosquitto (tests/fixtures/broker.sh: plain, TLS and
-- mutual-TLS listeners) and a local HTTP server; what reaches the broker
-- is checked with mosquitto_sub and mosquitto_pub and its log.
--
--   ATHOST_PATH=tests/lib:lib ./athost tests/lua/sim_a7670_test.lua
local t = require("t")
local simtest = require("simtest")
local athost = require("athost")
local mosq = require("mosq")

local here = ((arg and arg[0]) or "tests/lua/x"):match("^(.*)/[^/]*$") or "."
local ROOT = here .. "/../.."
local DIR = t.tmpdir()
local B = {}                  -- BROKER_* from broker.env, without the prefix
local M                       -- mosq.new(B, DIR), once the broker runs
local raw, shell = mosq.raw, mosq.shell

local function with_modem(query, fn) simtest.with_modem("a7670", query, fn) end
local up = simtest.up
local function uid() return athost.random(4, "hex") end
local function topic() return "athost/a76/" .. uid() end

local function must_expect(p, pat, ms)
  return assert(p:expect(pat, { timeout = ms or 10000 }))
end

-- A command whose result is an outcome URC (before or after OK): its
-- captures. o: prompt data, the outcome pattern's failures.
local function outcome(p, cmd, pat, o)
  o = o or {}
  local r = assert(p:cmd(cmd, { outcome = pat, outcome_timeout = 15000, timeout = 15000,
    prompt = o.data and ">" or nil, data = o.data }))
  return r.outcome
end

local function broker_log() return t.slurp(B.DIR .. "/mosquitto.log") or "" end

-- A cert file into flash: AT+CCERTDOWN, '>', the bytes, OK.
local function certdown(p, name, data)
  assert(p:cmd(string.format('AT+CCERTDOWN="%s",%d', name, #data), { prompt = ">", data = data }))
end

-- CMQTTSTART, ACCQ (server_type 1 for o.tls), CMQTTSSLCFG, version, and
-- CONNECT; returns the CONNECT's error code ("0": connected) and the
-- client id.
local function mqtt_up(p, o)
  o = o or {}
  if not o.started then
    t.eq(outcome(p, "AT+CMQTTSTART", "^%+CMQTTSTART: (%d+)$")[1], "0", "CMQTTSTART")
  end
  local cid = o.cid or "a76-" .. uid()
  if not o.acquired then
    assert(p:cmd(string.format('AT+CMQTTACCQ=0,"%s",%d', cid, o.tls and 1 or 0)))
  end
  if o.ctx then assert(p:cmd("AT+CMQTTSSLCFG=0," .. o.ctx)) end
  if o.version ~= 3 then assert(p:cmd('AT+CMQTTCFG="version",0,' .. (o.version or 4))) end
  local r = assert(p:cmd(string.format('AT+CMQTTCONNECT=0,"tcp://%s:%d",60,1,"%s","%s"',
    o.host or "127.0.0.1", o.port or B.PORT, B.USER, o.pass or B.PASS),
    { outcome = "^%+CMQTTCONNECT: 0,(%d+)$", outcome_timeout = 15000, timeout = 15000 }))
  return r.outcome[1], cid
end

local function connected(p, o) t.eq(mqtt_up(p, o), "0", "CMQTTCONNECT") end

-- CMQTTTOPIC, CMQTTPAYLOAD, CMQTTPUB: the +CMQTTPUB error code.
local function pub(p, tp, payload, qos)
  assert(p:cmd(string.format("AT+CMQTTTOPIC=0,%d", #tp), { prompt = ">", data = tp }))
  assert(p:cmd(string.format("AT+CMQTTPAYLOAD=0,%d", #payload), { prompt = ">", data = payload }))
  return outcome(p, string.format("AT+CMQTTPUB=0,%d,60", qos or 0), "^%+CMQTTPUB: 0,(%d+)$")[1]
end

local function sub(p, tp, qos)
  return outcome(p, string.format("AT+CMQTTSUB=0,%d,%d", #tp, qos or 0),
    "^%+CMQTTSUB: 0,(%d+)$", { data = tp })[1]
end

-- The incoming +CMQTTRX blocks, taken by URC handlers with counted
-- patterns (the raw bytes are never read as lines): next() waits for the
-- next whole message {idx, topic, payload, tparts = {sizes}, pparts,
-- totals = {topic, payload}}; stop() removes the handlers. trailer false:
-- the next line may follow the bytes without CR LF (rx_crlf=off).
local function receiver(p, trailer)
  local done, cur = {}, nil
  local function piece(field, parts)
    return function(m)
      if m.error then error("RX piece: " .. m.error) end
      cur[field] = cur[field] .. m.payload
      cur[parts][#cur[parts] + 1] = #m.payload
    end
  end
  local ids = {
    p:on("^%+CMQTTRXSTART: (%d+),(%d+),(%d+)$", function(m)
      cur = { idx = m[1], totals = { tonumber(m[2]), tonumber(m[3]) }, topic = "",
        payload = "", tparts = {}, pparts = {} }
    end),
    p:on({ "^%+CMQTTRXTOPIC: %d+,(%d+)$", count = 1, trailer = trailer },
      piece("topic", "tparts")),
    p:on({ "^%+CMQTTRXPAYLOAD: %d+,(%d+)$", count = 1, trailer = trailer },
      piece("payload", "pparts")),
    p:on("^%+CMQTTRXEND: (%d+)$", function(m)
      cur.end_idx = m[1]
      done[#done + 1] = cur
    end),
  }
  local r = {}
  function r.next(ms)
    local deadline = athost.now() + (ms or 10000)
    while #done == 0 do
      if athost.now() > deadline then error("no +CMQTTRX block within the time", 2) end
      athost.sleep(10)
    end
    return table.remove(done, 1)
  end
  function r.stop() for _, id in ipairs(ids) do p:off(id) end end
  return r
end

local function sum(parts)
  local n = 0
  for _, v in ipairs(parts) do n = n + v end
  return n
end

---------------------------------------------------------------------------
-- Identification, boot, basics
---------------------------------------------------------------------------

t.test("power-on: the boot URCs of DIALECTS.md 2.6, echo on, no autobaud", function()
  with_modem("boot=50", function(p)
    local got = raw(p, nil, "ME PDN ACT 8,1\r\n", 3000)
    t.eq(got, "\r\n+CPIN: READY\r\n\r\nSMS DONE\r\n\r\n+CGEV: EPS PDN ACT 1\r\n"
      .. "\r\n+CGEV: ME PDN ACT 8,1\r\n", "boot URCs")
    t.eq(raw(p, "at+cgmi\r", "OK\r\n"), "at+cgmi\r\r\nSIMCOM INCORPORATED\r\n\r\nOK\r\n",
      "lower case answered at once, echoed")
  end)
end)

t.test("identification: CGMI, CGMM, CGMR, CGSN, ATI, SIMCOMATI (A76xx form)", function()
  with_modem("imei=869951030000011", function(p)
    up(p)
    local function lines(c) return table.concat(assert(p:cmd(c, { reply = false })).lines, "|") end
    t.eq(lines("AT+CGMI"), "SIMCOM INCORPORATED", "CGMI")
    t.eq(lines("AT+CGMM"), "A7670E-LNXY-UBL", "CGMM")
    t.eq(lines("AT+CGMR"), "+CGMR: A124B01A7670M7", "CGMR")
    t.eq(lines("AT+CGSN"), "869951030000011", "CGSN")
    t.eq(lines("ATI"), "Manufacturer: INCORPORATED|Model: A7670E-LNXY-UBL|"
      .. "Revision: A124B01A7670M7|IMEI: 869951030000011|+GCAP: +CGSM,+FCLASS,+DS", "ATI")
    t.eq(lines("AT+SIMCOMATI"), "Manufacturer: INCORPORATED|Model: A7670E-LNXY-UBL|"
      .. "Revision: A124B01A7670M7|A7670M7_B01V01_240722|QCN:|IMEI: 869951030000011|MEID:|"
      .. "+GCAP: +CGSM,+FCLASS,+DS|DeviceInfo:", "SIMCOMATI")
    t.eq(lines("AT+CICCID"), "+ICCID: 89860012345678901234", "CICCID")
    t.eq(lines("AT+CPIN?"), "+CPIN: READY", "CPIN")
    t.eq(lines("AT+CGREG?"), "+CGREG: 0,1", "CGREG")
    t.fails("ERROR", p:cmd("AT+NOSUCH"))
  end)
end)

t.test("knobs cgmm, simcomati, cgmr_form: each reading", function()
  with_modem("cgmm=A7608SA-H&simcomati=simcom&cgmr_form=bare&version=A50C4B12A7600M7", function(p)
    up(p)
    t.eq(assert(p:cmd("AT+CGMM")).lines[1], "A7608SA-H", "CGMM")
    t.eq(assert(p:cmd("AT+CGMR", { reply = false })).lines[1], "A50C4B12A7600M7", "bare CGMR")
    local r = assert(p:cmd("AT+SIMCOMATI", { reply = false }))
    t.eq(r.lines[1] .. "|" .. r.lines[2], "Manufacturer: SIMCOM INCORPORATED|Model: A7608SA-H",
      "SIMCOMATI")
    t.eq(assert(p:cmd("ATI", { reply = false })).lines[1], "Manufacturer: SIMCOM INCORPORATED",
      "ATI")
  end)
  with_modem("cgmm=A7670G-LLSE", function(p)
    up(p)
    t.eq(assert(p:cmd("AT+CGMM")).lines[1], "A7670G-LLSE", "CGMM")
  end)
end)

t.test("NETOPEN/NETCLOSE: OK then +NETOPEN: 0; query; twice refused", function()
  with_modem(nil, function(p)
    up(p)
    t.eq(assert(p:cmd("AT+NETOPEN?")).lines[1], "+NETOPEN: 0", "closed")
    t.eq(outcome(p, "AT+NETOPEN", "^%+NETOPEN: (%d+)$")[1], "0", "opened")
    t.eq(assert(p:cmd("AT+NETOPEN?")).lines[1], "+NETOPEN: 1", "open")
    t.fails("ERROR", p:cmd("AT+NETOPEN"))
    t.eq(outcome(p, "AT+NETCLOSE", "^%+NETCLOSE: (%d+)$")[1], "0", "closed")
    t.fails("ERROR", p:cmd("AT+NETCLOSE"))
    assert(p:cmd("AT+CFUN=0"))
    t.eq(outcome(p, "AT+NETOPEN", "^%+NETOPEN: (%d+)$")[1], "1", "no radio")
  end)
end)

---------------------------------------------------------------------------
-- Certificates and TLS contexts
---------------------------------------------------------------------------

t.test("CCERTDOWN: '>' then exactly len bytes; names 5-108 ending .pem/.der; "
  .. "CCERTLIST, CCERTDELE; kept over AT+CRESET", function()
  with_modem(nil, function(p, m)
    up(p)
    t.eq(raw(p, 'AT+CCERTDOWN="ca.pem",5\r', ">"), ">", "the bare prompt")
    assert(p:send("a\r\n\"\0"))
    t.eq(assert(p:final()).final, "OK", "5 bytes taken")
    t.eq(m.files["ca.pem"], "a\r\n\"\0", "byte-exact")
    for _, bad in ipairs({ "a.pe", "x.crt", string.rep("n", 105) .. ".pem", "" }) do
      t.fails("ERROR", p:cmd(string.format('AT+CCERTDOWN="%s",3', bad)))
    end
    certdown(p, string.rep("n", 104) .. ".der", "xyz")
    t.fails("ERROR", p:cmd('AT+CCERTDOWN="big.pem",10241'))
    t.eq(table.concat(assert(p:cmd("AT+CCERTLIST", { reply = false })).lines, "|"),
      '+CCERTLIST: "ca.pem"|+CCERTLIST: "' .. string.rep("n", 104) .. '.der"', "list")
    assert(p:cmd('AT+CCERTDELE="' .. string.rep("n", 104) .. '.der"'))
    t.fails("ERROR", p:cmd('AT+CCERTDELE="none.pem"'))
    assert(p:cmd('AT+CSSLCFG="authmode",3,2'))
    assert(p:cmd("AT+CRESET"))
    must_expect(p, "+CGEV: ME PDN ACT 8,1")
    up(p)
    t.eq(table.concat(assert(p:cmd("AT+CCERTLIST", { reply = false })).lines, "|"),
      '+CCERTLIST: "ca.pem"', "flash kept")
    t.eq(assert(p:cmd("AT+CSSLCFG=3")).lines[1], '+CSSLCFG: 3,4,0,1,300,"","","","",0',
      "contexts are RAM")
  end)
end)

t.test("CSSLCFG: every item per context, the query form, bad values refused", function()
  with_modem(nil, function(p)
    up(p)
    t.eq(assert(p:cmd("AT+CSSLCFG=0")).lines[1], '+CSSLCFG: 0,4,0,1,300,"","","","",0',
      "defaults as documented")
    for _, c in ipairs({ '"sslversion",9,3', '"authmode",9,2', '"ignorelocaltime",9,0',
      '"negotiatetime",9,120', '"cacert",9,"ca.pem"', '"clientcert",9,"c.pem"',
      '"clientkey",9,"k.der"', '"password",9,"pw"', '"enableSNI",9,1' }) do
      assert(p:cmd("AT+CSSLCFG=" .. c))
    end
    t.eq(assert(p:cmd("AT+CSSLCFG=9")).lines[1],
      '+CSSLCFG: 9,3,2,0,120,"ca.pem","c.pem","k.der","pw",1', "context 9")
    t.eq(#assert(p:cmd("AT+CSSLCFG?")).lines, 10, "AT+CSSLCFG? shows ctx 0-9")
    for _, c in ipairs({ '"authmode",10,1', '"authmode",0,4', '"negotiatetime",0,9',
      '"cacert",0,"ca.crt"', '"nosuch",0,1', "10" }) do
      t.fails("ERROR", p:cmd("AT+CSSLCFG=" .. c))
    end
  end)
end)

---------------------------------------------------------------------------
-- MQTT: DIALECTS.md 4.3
---------------------------------------------------------------------------

t.test("4.3: MQTT over TLS with the uploaded CA verified, QoS 1 both ways, DISC, REL, STOP",
  function()
  with_modem("hosts=broker.example.com=127.0.0.1", function(p)
    up(p)
    local ca = t.slurp(B.CA)
    certdown(p, "ca.pem", ca)
    assert(p:cmd('AT+CSSLCFG="sslversion",0,4'))
    assert(p:cmd('AT+CSSLCFG="authmode",0,1'))
    assert(p:cmd('AT+CSSLCFG="cacert",0,"ca.pem"'))
    assert(p:cmd('AT+CSSLCFG="enableSNI",0,1'))
    connected(p, { tls = true, ctx = 0, host = "broker.example.com", port = B.TLS_PORT })
    local rx = receiver(p)
    local din, dout = topic(), topic()
    t.eq(sub(p, din, 1), "0", "+CMQTTSUB: 0,0")
    local got = M.subscriber(dout)
    t.eq(pub(p, dout, "hello", 1), "0", "+CMQTTPUB: 0,0 after the PUBACK")
    local msg = got()
    t.eq(msg.payload, "hello", "at mosquitto_sub")
    t.eq(msg.qos, 1, "QoS 1")
    M.publish(din, "hi", 1)
    local r = rx.next()
    t.eq(r.idx .. "|" .. r.topic .. "|" .. r.payload, "0|" .. din .. "|hi", "+CMQTTRX block")
    t.eq(r.totals[1] .. "," .. r.totals[2], #din .. ",2", "totals")
    rx.stop()
    t.eq(outcome(p, "AT+CMQTTDISC=0,120", "^%+CMQTTDISC: 0,(%d+)$")[1], "0", "DISC")
    t.eq(table.concat(assert(p:cmd("AT+CMQTTDISC?")).lines, "|"),
      "+CMQTTDISC: 0,1|+CMQTTDISC: 1,1", "disconnected")
    assert(p:cmd("AT+CMQTTREL=0"))
    t.eq(outcome(p, "AT+CMQTTSTOP", "^%+CMQTTSTOP: (%d+)$")[1], "0", "STOP")
    t.fails("ERROR", p:cmd('AT+CMQTTACCQ=0,"x"'))        -- stopped
  end)
end)

t.test("TLS: wrong CA -> 32, missing CA file -> 33 (and CMQTTSSLCFG cleared), "
  .. "authmode 0 encrypts only", function()
  with_modem(nil, function(p)
    up(p)
    certdown(p, "wrong.pem", t.slurp(B.WRONG_CA))
    assert(p:cmd('AT+CSSLCFG="authmode",1,1'))
    assert(p:cmd('AT+CSSLCFG="cacert",1,"wrong.pem"'))
    t.eq(mqtt_up(p, { tls = true, ctx = 1, port = B.TLS_PORT }), "32", "handshake refused")
    -- The failed CONNECT cleared CMQTTSSLCFG: ctx 0 (= idx, authmode 0) now.
    assert(p:cmd('AT+CSSLCFG="cacert",1,"none.pem"'))
    t.eq(mqtt_up(p, { started = true, acquired = true, tls = true, port = B.TLS_PORT }),
      "0", "ctx 0 after the failure, encrypt only")
  end)
  with_modem(nil, function(p)
    up(p)
    assert(p:cmd('AT+CSSLCFG="authmode",1,1'))
    assert(p:cmd('AT+CSSLCFG="cacert",1,"none.pem"'))
    t.eq(mqtt_up(p, { tls = true, ctx = 1, port = B.TLS_PORT }), "33", "no such file")
  end)
end)

t.test("mutual TLS (authmode 2, clientcert, clientkey) and authmode 3", function()
  with_modem(nil, function(p)
    up(p)
    certdown(p, "ca.pem", t.slurp(B.CA))
    certdown(p, "client.pem", t.slurp(B.CLIENT_CERT))
    certdown(p, "client_key.pem", t.slurp(B.CLIENT_KEY))
    for _, c in ipairs({ '"authmode",2,2', '"cacert",2,"ca.pem"', '"clientcert",2,"client.pem"',
      '"clientkey",2,"client_key.pem"', '"authmode",3,3', '"clientcert",3,"client.pem"',
      '"clientkey",3,"client_key.pem"', '"authmode",4,1', '"cacert",4,"ca.pem"' }) do
      assert(p:cmd("AT+CSSLCFG=" .. c))
    end
    connected(p, { tls = true, ctx = 2, port = B.MTLS_PORT })
    local rx = receiver(p)
    local tp = topic()
    t.eq(sub(p, tp, 0), "0", "SUB")
    M.publish(tp, "mutual")
    t.eq(rx.next().payload, "mutual", "a message over mutual TLS")
    rx.stop()
    t.eq(outcome(p, "AT+CMQTTDISC=0,60", "^%+CMQTTDISC: 0,(%d+)$")[1], "0", "DISC")
    assert(p:cmd("AT+CMQTTREL=0"))
    t.eq(mqtt_up(p, { started = true, tls = true, ctx = 3, port = B.MTLS_PORT }), "0",
      "authmode 3: the client certificate, no server check")
    assert(p:cmd("AT+CMQTTDISC=0,60", { outcome = "+CMQTTDISC: 0,0" }))
    assert(p:cmd("AT+CMQTTREL=0"))
    t.eq(mqtt_up(p, { started = true, tls = true, ctx = 4, port = B.MTLS_PORT }) ~= "0", true,
      "authmode 1 against the mutual-TLS listener fails")
  end)
end)

t.test("QoS 0 and 1 both ways; payloads with CR, LF, quote, comma, NUL byte-exact", function()
  with_modem(nil, function(p)
    up(p)
    connected(p)
    local rx = receiver(p)
    local tp = topic()
    local nasty = 'a,"b"\r\nc\0d,\r\n'
    for _, qos in ipairs({ 0, 1 }) do
      local got = M.subscriber(tp)
      t.eq(pub(p, tp, nasty, qos), "0", "+CMQTTPUB at QoS " .. qos)
      local msg = got()
      t.eq(msg.payload, nasty, "out, QoS " .. qos)
      t.eq(msg.qos, qos, "QoS")
    end
    local din = topic() .. "/x,y"
    t.eq(sub(p, din, 1), "0", "SUB")
    for _, qos in ipairs({ 0, 1 }) do
      M.publish(din, nasty, qos)
      local r = rx.next()
      t.eq(r.topic, din, "topic")
      t.eq(r.payload, nasty, "in, QoS " .. qos)
    end
    rx.stop()
    t.fails("ERROR", p:cmd("AT+CMQTTPUB=0,1,60"))                    -- no topic
    t.fails("ERROR", p:cmd("AT+CMQTTPUB=0,2,60"))                    -- QoS 2
  end)
end)

t.test("a 5,000-byte message arrives in 1,500-byte pieces, byte-exact (rx_chunk default)",
  function()
  with_modem(nil, function(p)
    up(p)
    connected(p)
    local rx = receiver(p)
    local tp = topic()
    t.eq(sub(p, tp, 1), "0", "SUB")
    local bytes = {}
    for i = 1, 5000 do bytes[i] = string.char((i * 7 + i // 256) % 256) end
    local big = table.concat(bytes):gsub("^.", "\0")
    M.publish(tp, big, 1)
    local r = rx.next()
    t.eq(table.concat(r.pparts, ","), "1500,1500,1500,500", "payload pieces")
    t.eq(r.totals[2], 5000, "payload total")
    t.ok(r.payload == big, "5000 bytes byte-exact")
    rx.stop()
  end)
end)

t.test("rx_chunk=512|whole|random, rx_crlf=off, rx_urc=on: pieces sum to the totals", function()
  local long_topic = "athost/" .. string.rep("t", 993)
  local payload = string.rep("0123456789\r\n", 200) .. "\0end"
  for _, c in ipairs({
    { "rx_chunk=512", "512,488", "512,512,512,512,356" },
    { "rx_chunk=whole", "1000", "2404" },
    { "rx_chunk=random&rx_crlf=on&rx_urc=off&personality=random:7" },
    { "rx_chunk=1500&rx_crlf=off", "1000", "1500,904", false },
    { "rx_chunk=512&rx_urc=on&rx_crlf=off", "512,488", "512,512,512,512,356", false },
  }) do
    with_modem(c[1], function(p)
      up(p)
      connected(p)
      local rx = receiver(p, c[4])
      t.eq(sub(p, long_topic, 0), "0", "SUB " .. c[1])
      M.publish(long_topic, payload)
      local r = rx.next()
      if c[2] then
        t.eq(table.concat(r.tparts, ","), c[2], c[1] .. " topic pieces")
        t.eq(table.concat(r.pparts, ","), c[3], c[1] .. " payload pieces")
      end
      t.eq(sum(r.tparts), r.totals[1], c[1] .. " topic pieces sum")
      t.eq(sum(r.pparts), r.totals[2], c[1] .. " payload pieces sum")
      t.ok(r.topic == long_topic and r.payload == payload, c[1] .. " byte-exact")
      rx.stop()
    end)
  end
end)

t.test("rx_crlf and rx_urc on the wire", function()
  local want = {
    ["rx_chunk=whole"] = "\r\n+CMQTTRXSTART: 0,%d,2\r\n+CMQTTRXTOPIC: 0,%d\r\n%s\r\n"
      .. "+CMQTTRXPAYLOAD: 0,2\r\nhi\r\n+CMQTTRXEND: 0\r\n",
    ["rx_chunk=whole&rx_crlf=off"] = "\r\n+CMQTTRXSTART: 0,%d,2\r\n+CMQTTRXTOPIC: 0,%d\r\n%s"
      .. "+CMQTTRXPAYLOAD: 0,2\r\nhi+CMQTTRXEND: 0\r\n",
    ["rx_chunk=whole&rx_urc=on"] = "\r\n+CMQTTRXSTART: 0,%d,2\r\n+CMQTTRXTOPIC: 0,%d\r\n%s\r\n"
      .. "\r\n+CTZV: +32\r\n+CMQTTRXPAYLOAD: 0,2\r\nhi\r\n+CMQTTRXEND: 0\r\n",
  }
  for q, text in pairs(want) do
    with_modem(q, function(p)
      up(p)
      connected(p)
      local tp = topic()
      t.eq(sub(p, tp, 0), "0", "SUB")
      p:flush()
      M.publish(tp, "hi")
      t.eq(raw(p, nil, "+CMQTTRXEND: 0\r\n", 5000), text:format(#tp, #tp, tp), q)
    end)
  end
end)

t.test("CMQTTCFG version: 3 (MQTT 3.1, the default) or 4, seen in the broker's log", function()
  with_modem(nil, function(p)
    up(p)
    local _, cid3 = mqtt_up(p, { version = 3 })
    assert(p:cmd("AT+CMQTTDISC=0,60", { outcome = "+CMQTTDISC: 0,0" }))
    assert(p:cmd("AT+CMQTTREL=0"))
    local _, cid4 = mqtt_up(p, { started = true, version = 4 })
    local log = broker_log()
    t.ok(log:find("as " .. cid3 .. " (p1, c1, k60", 1, true), "MQTT 3.1 (p1) for " .. cid3)
    t.ok(log:find("as " .. cid4 .. " (p2, c1, k60", 1, true), "MQTT 3.1.1 (p2) for " .. cid4)
    t.fails("ERROR", p:cmd('AT+CMQTTCFG="version",0,5'))
    t.fails("ERROR", p:cmd('AT+CMQTTCFG="version",1,4'))           -- not acquired
  end)
end)

t.test("SUBTOPIC+SUB (several topics), UNSUBTOPIC+UNSUB, one-step UNSUB", function()
  with_modem(nil, function(p)
    up(p)
    connected(p)
    local rx = receiver(p)
    local a, b = topic(), topic()
    t.fails("ERROR", p:cmd("AT+CMQTTSUB=0"))                           -- no topics yet
    assert(p:cmd(string.format("AT+CMQTTSUBTOPIC=0,%d,1", #a), { prompt = ">", data = a }))
    assert(p:cmd(string.format("AT+CMQTTSUBTOPIC=0,%d,0", #b), { prompt = ">", data = b }))
    t.eq(outcome(p, "AT+CMQTTSUB=0", "^%+CMQTTSUB: 0,(%d+)$")[1], "0", "both subscribed")
    M.publish(a, "to a", 1)
    t.eq(rx.next().payload, "to a", "a")
    M.publish(b, "to b")
    t.eq(rx.next().payload, "to b", "b")
    assert(p:cmd(string.format("AT+CMQTTUNSUBTOPIC=0,%d", #a), { prompt = ">", data = a }))
    t.eq(outcome(p, "AT+CMQTTUNSUB=0,0", "^%+CMQTTUNSUB: 0,(%d+)$")[1], "0", "UNSUB a")
    t.eq(outcome(p, string.format("AT+CMQTTUNSUB=0,%d,0", #b), "^%+CMQTTUNSUB: 0,(%d+)$",
      { data = b })[1], "0", "one-step UNSUB b")
    -- Neither arrives now; a message on a third topic still does.
    local c = topic()
    t.eq(sub(p, c, 0), "0", "SUB c")
    M.publish(a, "gone")
    M.publish(b, "gone")
    M.publish(c, "to c")
    t.eq(rx.next().payload, "to c", "only c")
    rx.stop()
  end)
end)

t.test("WILLTOPIC/WILLMSG: the will reaches mosquitto_sub after the link drops", function()
  with_modem(nil, function(p, m)
    up(p)
    t.eq(outcome(p, "AT+CMQTTSTART", "^%+CMQTTSTART: (%d+)$")[1], "0", "START")
    assert(p:cmd(string.format('AT+CMQTTACCQ=0,"will-%s"', uid())))
    local wt = topic()
    assert(p:cmd(string.format("AT+CMQTTWILLTOPIC=0,%d", #wt), { prompt = ">", data = wt }))
    assert(p:cmd("AT+CMQTTWILLMSG=0,7,1", { prompt = ">", data = "gone,\r\n" }))
    connected(p, { started = true, acquired = true })
    local got = M.subscriber(wt)
    m:drop()
    must_expect(p, "+CMQTTCONNLOST: 0,1")
    local msg = got()
    t.eq(msg.payload, "gone,\r\n", "the will")
    t.eq(msg.qos, 1, "its QoS")
  end)
end)

---------------------------------------------------------------------------
-- Service states and refusals
---------------------------------------------------------------------------

t.test("before CMQTTSTART every CMQTT command is ERROR; START twice; STOP with a client; "
  .. "REL while connected", function()
  with_modem(nil, function(p)
    up(p)
    for _, c in ipairs({ 'AT+CMQTTACCQ=0,"x"', "AT+CMQTTREL=0", "AT+CMQTTSTOP",
      "AT+CMQTTDISC?", "AT+CMQTTSSLCFG=0,0", "AT+CMQTTTOPIC=0,3" }) do
      t.fails("ERROR", p:cmd(c))
    end
    t.eq(outcome(p, "AT+CMQTTSTART", "^%+CMQTTSTART: (%d+)$")[1], "0", "START")
    t.fails("ERROR", p:cmd("AT+CMQTTSTART"))
    assert(p:cmd('AT+CMQTTACCQ=1,"x"'))
    t.fails("ERROR", p:cmd("AT+CMQTTSTOP"))
    t.fails("ERROR", p:cmd('AT+CMQTTACCQ=2,"x"'))
    t.fails("ERROR", p:cmd('AT+CMQTTACCQ=0,""'))
    t.fails("ERROR", p:cmd('AT+CMQTTACCQ=0,"' .. string.rep("c", 129) .. '"'))
    t.fails("ERROR", p:cmd("AT+CMQTTSUB=0,3,0"))                          -- not acquired
    connected(p, { started = true })
    t.fails("ERROR", p:cmd("AT+CMQTTREL=0"))
    t.fails("ERROR", p:cmd('AT+CMQTTCONNECT=0,"tcp://127.0.0.1:1",60,1'))  -- connected
    t.fails("ERROR", p:cmd('AT+CMQTTCONNECT=1,"mqtt://127.0.0.1:1883",60,1'))
    t.fails("ERROR", p:cmd('AT+CMQTTCONNECT=1,"tcp://h",60,1'))           -- under 9 bytes
    t.fails("ERROR", p:cmd('AT+CMQTTCONNECT=1,"tcp://127.0.0.1",0,1'))     -- keepalive
    t.fails("ERROR", p:cmd("AT+CMQTTDISC=1,60"))                          -- not connected
    t.eq(table.concat(assert(p:cmd("AT+CMQTTDISC?")).lines, "|"),
      "+CMQTTDISC: 0,0|+CMQTTDISC: 1,1", "client 0 connected")
  end)
end)

t.test("accq_fail=code|bare: a client in use", function()
  for knob, want in pairs({ code = "\r\n+CMQTTACCQ: 0,19\r\n\r\nERROR\r\n", bare = "\r\nERROR\r\n" }) do
    with_modem("accq_fail=" .. knob, function(p)
      up(p)
      outcome(p, "AT+CMQTTSTART", "^%+CMQTTSTART: (%d+)$")
      assert(p:cmd('AT+CMQTTACCQ=0,"a"'))
      t.eq(raw(p, 'AT+CMQTTACCQ=0,"b"\r', "ERROR\r\n"), want, knob)
    end)
  end
end)

-- mosquitto refuses a wrong password with CONNACK 5 (not authorised).
t.test("CONNECT failures: closed port 3, wrong password 31 (CONNACK 5), DNS 25", function()
  local l = assert(athost.listen("127.0.0.1", 0))
  local dead = l.port
  l:close()
  with_modem(nil, function(p)
    up(p)
    t.eq(mqtt_up(p, { port = dead }), "3", "refused")
    assert(p:cmd("AT+CMQTTREL=0"))
    t.eq(mqtt_up(p, { started = true, pass = "wrong" }), "31", "bad password")
    assert(p:cmd("AT+CMQTTREL=0"))
    t.eq(mqtt_up(p, { started = true, host = "no-such-host.invalid" }), "25", "DNS")
  end)
end)

---------------------------------------------------------------------------
-- Orders: the core knob order, disc_order, connect_fail
---------------------------------------------------------------------------

-- The raw answer to cmd: OK and the outcome in the order asked for.
local function answer(p, cmd, outcome_line, order, data)
  local want = order == "after" and "\r\nOK\r\n\r\n" .. outcome_line .. "\r\n"
    or "\r\n" .. outcome_line .. "\r\n\r\nOK\r\n"
  if data then
    t.eq(raw(p, cmd .. "\r", ">"), ">", cmd .. " prompt")
    cmd = data
  else
    cmd = cmd .. "\r"
  end
  t.eq(raw(p, cmd, want:sub(-6), 10000), want, cmd)
end

for _, order in ipairs({ "after", "before" }) do
  t.test("order=" .. order .. ": CMQTTSTART, CONNECT, SUB, PUB, UNSUB, NETOPEN, "
    .. "HTTPACTION; DISC follows disc_order", function()
    local port, _, stop = simtest.http_server(function() return 200, {}, "pong" end)
    with_modem("order=" .. order .. "&disc_order=" .. (order == "after" and "before" or "after"),
      function(p)
      up(p)
      answer(p, "AT+CMQTTSTART", "+CMQTTSTART: 0", order)
      assert(p:cmd('AT+CMQTTACCQ=0,"o-' .. uid() .. '"'))
      answer(p, string.format('AT+CMQTTCONNECT=0,"tcp://127.0.0.1:%d",60,1,"%s","%s"',
        B.PORT, B.USER, B.PASS), "+CMQTTCONNECT: 0,0", order)
      local tp = topic()
      answer(p, string.format("AT+CMQTTSUB=0,%d,1", #tp), "+CMQTTSUB: 0,0", order, tp)
      local other = topic()
      for _, qos in ipairs({ 0, 1 }) do
        assert(p:cmd(string.format("AT+CMQTTTOPIC=0,%d", #other), { prompt = ">", data = other }))
        answer(p, "AT+CMQTTPUB=0," .. qos .. ",60", "+CMQTTPUB: 0,0", order)
      end
      answer(p, string.format("AT+CMQTTUNSUB=0,%d,0", #tp), "+CMQTTUNSUB: 0,0", order, tp)
      answer(p, "AT+CMQTTDISC=0,60", "+CMQTTDISC: 0,0", order == "after" and "before" or "after")
      answer(p, "AT+NETOPEN", "+NETOPEN: 0", order)
      assert(p:cmd("AT+HTTPINIT"))
      assert(p:cmd(string.format('AT+HTTPPARA="URL","http://127.0.0.1:%d/x"', port)))
      answer(p, "AT+HTTPACTION=0", "+HTTPACTION: 0,200,4", order)
    end)
    stop()
  end)
end

t.test("connect_fail=ok|error_after|error_before|bare: a refused CONNECT", function()
  local l = assert(athost.listen("127.0.0.1", 0))
  local dead = l.port
  l:close()
  local cases = {
    ["connect_fail=ok"] = "\r\nOK\r\n\r\n+CMQTTCONNECT: 0,3\r\n",
    ["connect_fail=ok&order=before"] = "\r\n+CMQTTCONNECT: 0,3\r\n\r\nOK\r\n",
    ["connect_fail=error_after"] = "\r\nERROR\r\n\r\n+CMQTTCONNECT: 0,3\r\n",
    ["connect_fail=error_before"] = "\r\n+CMQTTCONNECT: 0,3\r\n\r\nERROR\r\n",
  }
  for q, want in pairs(cases) do
    with_modem(q, function(p)
      up(p)
      outcome(p, "AT+CMQTTSTART", "^%+CMQTTSTART: (%d+)$")
      assert(p:cmd('AT+CMQTTACCQ=0,"f"'))
      t.eq(raw(p, string.format('AT+CMQTTCONNECT=0,"tcp://127.0.0.1:%d",60,1\r', dead),
        want:sub(-6), 10000), want, q)
    end)
  end
  with_modem("connect_fail=bare", function(p)
    up(p)
    outcome(p, "AT+CMQTTSTART", "^%+CMQTTSTART: (%d+)$")
    assert(p:cmd('AT+CMQTTACCQ=0,"f"'))
    t.eq(raw(p, string.format('AT+CMQTTCONNECT=0,"tcp://127.0.0.1:%d",60,1\r', dead),
      "ERROR\r\n", 10000), "\r\nERROR\r\n", "bare")
    t.fails("ETIMEDOUT", p:expect("+CMQTTCONNECT", { timeout = 300 }))
    -- Success still answers OK and the URC; the client stayed acquired.
    t.eq(mqtt_up(p, { started = true, acquired = true }), "0", "connected after a bare ERROR")
  end)
end)

---------------------------------------------------------------------------
-- Link and bearer loss
---------------------------------------------------------------------------

t.test("fault drop: +CMQTTCONNLOST: 0,1; CONNECT again on the same client", function()
  with_modem(nil, function(p, m)
    up(p)
    connected(p)
    m:drop()
    t.eq(must_expect(p, "^%+CMQTTCONNLOST: (%d+),(%d+)$")[2], "1", "cause 1")
    t.eq(assert(p:cmd("AT+CMQTTDISC?")).lines[1], "+CMQTTDISC: 0,1", "disconnected")
    local r = assert(p:cmd(string.format('AT+CMQTTCONNECT=0,"tcp://127.0.0.1:%d",60,1,"%s","%s"',
      B.PORT, B.USER, B.PASS), { outcome = "^%+CMQTTCONNECT: 0,(%d+)$", outcome_timeout = 10000 }))
    t.eq(r.outcome[1], "0", "reconnected")
    local tp = topic()
    local got = M.subscriber(tp)
    t.eq(pub(p, tp, "after", 1), "0", "PUB")
    t.eq(got().payload, "after", "the next publish arrives")
  end)
  with_modem("drop=AT+CMQTTDISC?", function(p)
    up(p)
    connected(p)
    t.eq(assert(p:cmd("AT+CMQTTDISC?")).lines[1], "+CMQTTDISC: 0,0", "answered first")
    must_expect(p, "+CMQTTCONNLOST: 0,1")
  end)
end)

t.test("fault pdp: +CGEV: NW PDN DEACT 1, CONNLOST cause 3, +CMQTTNONET; CMQTTSTART "
  .. "brings it back", function()
  with_modem(nil, function(p, m)
    up(p)
    t.eq(outcome(p, "AT+NETOPEN", "^%+NETOPEN: (%d+)$")[1], "0", "NETOPEN")
    connected(p)
    p:flush()
    m:pdp_deact()
    t.eq(raw(p, nil, "+CMQTTNONET\r\n"), "\r\n+CGEV: NW PDN DEACT 1\r\n"
      .. "\r\n+CIPEVENT: NETWORK CLOSED UNEXPECTEDLY\r\n\r\n+CMQTTCONNLOST: 0,3\r\n"
      .. "\r\n+CMQTTNONET\r\n", "the URCs")
    t.eq(assert(p:cmd("AT+CGACT?")).lines[1], "+CGACT: 1,0", "context down")
    t.eq(assert(p:cmd("AT+NETOPEN?")).lines[1], "+NETOPEN: 0", "sockets' network closed")
    t.fails("ERROR", p:cmd("AT+CMQTTDISC?"))                     -- the service stopped
    connected(p)
    t.eq(assert(p:cmd("AT+CGACT?")).lines[1], "+CGACT: 1,1", "CMQTTSTART re-activated it")
  end)
  with_modem("pdp=AT+CMQTTDISC?", function(p)
    up(p)
    connected(p)
    t.eq(assert(p:cmd("AT+CMQTTDISC?")).lines[1], "+CMQTTDISC: 0,0", "answered first")
    must_expect(p, "+CGEV: NW PDN DEACT 1")
    must_expect(p, "+CMQTTCONNLOST: 0,3")
    must_expect(p, "+CMQTTNONET")
  end)
end)

t.test("fault reboot, silent; split, delay, noise, urcs and prompt=line: 4.3 still works",
  function()
  with_modem(nil, function(p, m)
    up(p)
    connected(p)
    m:reboot()
    must_expect(p, "SMS DONE")
    up(p)
    t.fails("ERROR", p:cmd("AT+CMQTTDISC?"))                     -- state lost
    m:silent(true)
    t.fails("ETIMEDOUT", p:cmd("AT", { timeout = 300 }))
    m:silent(false)
    assert(p:cmd("AT"))
  end)
  with_modem("split=on&delay=20&noise=on&urcs=on&prompt=line&personality=random:3&"
    .. "order=before&rx_crlf=on", function(p)
    up(p)
    connected(p)
    local rx = receiver(p)
    local tp = topic()
    t.eq(sub(p, tp, 1), "0", "SUB")
    M.publish(tp, "in\r\n,\0", 1)
    t.eq(rx.next().payload, "in\r\n,\0", "RX through noise and split output")
    rx.stop()
    local out = topic()
    local got = M.subscriber(out)
    t.eq(pub(p, out, "out", 1), "0", "PUB after the '\\r\\n> ' prompt")
    t.eq(got().payload, "out", "at mosquitto_sub")
  end)
end)

---------------------------------------------------------------------------
-- HTTP: DIALECTS.md 4.4
---------------------------------------------------------------------------

local ACTION = "^%+HTTPACTION: (%d+),(%d+),(%d+)$"

-- Everything one AT+HTTPREAD=off,size sends after its OK, as pieces:
-- { sizes = {...}, body = "...", lines = raw }.
local function httpread(p, off, size, header)
  header = header or "+HTTPREAD: "
  local pieces, body = {}, ""
  local id = p:on({ "^%+HTTPREAD: ?D?A?T?A?,?([1-9]%d*)$", count = 1 }, function(m)
    pieces[#pieces + 1] = { m.line, #m.payload }
    body = body .. m.payload
  end)
  local ended = false
  local id0 = p:on("+HTTPREAD: 0", function() ended = true end)
  t.eq(assert(p:cmd(string.format("AT+HTTPREAD=%d,%d", off, size), { reply = false })).final,
    "OK", "OK first")
  local deadline = athost.now() + 5000
  while not ended and athost.now() < deadline do athost.sleep(5) end
  p:off(id)
  p:off(id0)
  t.ok(ended, "+HTTPREAD: 0 at the end")
  local sizes = {}
  for i, pc in ipairs(pieces) do
    sizes[i] = pc[2]
    t.eq(pc[1], header .. pc[2], "piece header")
  end
  return sizes, body
end

t.test("4.4: HTTP POST of a form, +HTTPACTION, HTTPREAD? and HTTPREAD=0,n (OK first)", function()
  local reply = '{"code":200,"data":{"deviceSecret":"s3cr3t"},"message":"success"}'
  local port, seen, stop = simtest.http_server(function()
    return 200, { ["Content-Type"] = "application/json" }, reply
  end)
  with_modem(nil, function(p)
    up(p)
    t.fails("ERROR", p:cmd("AT+HTTPACTION=1"))                  -- before HTTPINIT
    assert(p:cmd("AT+HTTPINIT"))
    t.fails("ERROR", p:cmd("AT+HTTPINIT"))
    t.fails("ERROR", p:cmd("AT+HTTPACTION=1"))                  -- no URL
    assert(p:cmd(string.format('AT+HTTPPARA="URL","http://127.0.0.1:%d/v1/form"', port)))
    assert(p:cmd('AT+HTTPPARA="CONTENT","application/x-www-form-urlencoded"'))
    assert(p:cmd('AT+HTTPPARA="USERDATA","X-Dev: a7670"'))
    assert(p:cmd('AT+HTTPPARA="ACCEPT","application/json"'))
    t.fails("ERROR", p:cmd('AT+HTTPPARA="NOSUCH","1"'))
    t.fails("ERROR", p:cmd('AT+HTTPPARA="CONNECTTO",5'))
    local body = "a=1&b=2"
    t.eq(raw(p, "AT+HTTPDATA=7,10000\r", "DOWNLOAD\r\n"), "\r\nDOWNLOAD\r\n", "DOWNLOAD")
    assert(p:send(body))
    assert(p:final())
    local a = outcome(p, "AT+HTTPACTION=1", ACTION)
    t.eq(a[1] .. "," .. a[2] .. "," .. a[3], "1,200," .. #reply, "+HTTPACTION")
    t.eq(assert(p:cmd("AT+HTTPREAD?")).lines[1], "+HTTPREAD: LEN," .. #reply, "LEN")
    local sizes, got = httpread(p, 0, #reply)
    t.eq(table.concat(sizes, ","), tostring(#reply), "one piece")
    t.eq(got, reply, "the body")
    local _, part = httpread(p, 10, 5)
    t.eq(part, reply:sub(11, 15), "offset and size")
    local r = assert(p:cmd("AT+HTTPHEAD", { reply = { "^%+HTTPHEAD: (%d+)$", count = 1 } }))
    t.match(r.payload, "^HTTP/1.1 200 OK\r\n", "HTTPHEAD status line")
    t.match(r.payload, "content%-type: application/json\r\n", "HTTPHEAD headers")
    assert(p:cmd("AT+HTTPTERM"))
    t.fails("ERROR", p:cmd("AT+HTTPTERM"))
    t.eq(#seen, 1, "requests")
    local req = seen[1]
    t.eq(req.method .. " " .. req.path, "POST /v1/form", "request line")
    t.eq(req.headers["content-type"], "application/x-www-form-urlencoded", "CONTENT")
    t.eq(req.headers["x-dev"], "a7670", "USERDATA")
    t.eq(req.headers.accept, "application/json", "ACCEPT")
    t.eq(req.body, body, "body")
  end)
  stop()
end)

t.test("http_chunk=512|random, httpread_form=data: pieces of a 2,000-byte body", function()
  local reply = string.rep("abcdefghij\r\n\0", 153) .. "x"
  local port, _, stop = simtest.http_server(function() return 200, {}, reply end)
  for _, c in ipairs({ { "http_chunk=512", "512,512,512,454" },
    { "http_chunk=random&httpread_form=plain&personality=random:5" },
    { "http_chunk=whole&httpread_form=data", "1990", "+HTTPREAD: DATA," } }) do
    with_modem(c[1], function(p)
      up(p)
      assert(p:cmd("AT+HTTPINIT"))
      assert(p:cmd(string.format('AT+HTTPPARA="URL","http://127.0.0.1:%d/"', port)))
      t.eq(outcome(p, "AT+HTTPACTION=0", ACTION)[3], tostring(#reply), "length")
      local sizes, body = httpread(p, 0, 5000, c[3])
      if c[2] then t.eq(table.concat(sizes, ","), c[2], c[1]) end
      t.eq(sum(sizes), #reply, c[1] .. " sizes sum")
      t.ok(body == reply, c[1] .. " byte-exact")
      if c[3] then
        t.match(assert(p:cmd("AT+HTTPHEAD", { reply = false })).lines[1] or "",
          "^%+HTTPHEAD: DATA,%d+$", "HTTPHEAD's DATA form")
      end
    end)
  end
  stop()
end)

t.test("http_errors=7xx|60x: no network, connection refused, DNS, CA missing, handshake",
  function()
  local port, _, stop = simtest.http_server(function() return 200, {}, "x" end)
  local l = assert(athost.listen("127.0.0.1", 0))
  local dead = l.port
  l:close()
  local urls = {
    refused = string.format("http://127.0.0.1:%d/", dead),
    dns = "http://no-such-host.invalid/",
    ca = string.format("https://127.0.0.1:%d/", port),
    tls = string.format("https://127.0.0.1:%d/", port),
  }
  local want = { ["7xx"] = { nonet = 717, refused = 714, dns = 713, ca = 719, tls = 715 },
    ["60x"] = { nonet = 601, refused = 601, dns = 603, ca = 601, tls = 601 } }
  for knob, codes in pairs(want) do
    with_modem("http_errors=" .. knob, function(p)
      up(p)
      assert(p:cmd("AT+HTTPINIT"))
      local function status(url, ctx)
        assert(p:cmd(string.format('AT+HTTPPARA="URL","%s"', url)))
        if ctx then assert(p:cmd('AT+HTTPPARA="SSLCFG",' .. ctx)) end
        return tonumber(outcome(p, "AT+HTTPACTION=0", ACTION)[2])
      end
      assert(p:cmd('AT+CSSLCFG="authmode",1,1'))
      t.eq(status(urls.refused), codes.refused, knob .. " refused")
      t.eq(status(urls.dns), codes.dns, knob .. " DNS")
      t.eq(status(urls.ca, 1), codes.ca, knob .. " CA missing")
      t.eq(status(urls.tls, 0), codes.tls, knob .. " handshake with a plain server")
      assert(p:cmd("AT+CGACT=0,1"))
      t.eq(status(urls.refused), codes.nonet, knob .. " no network")
    end)
  end
  stop()
end)

t.test("httpdata_unit=ms|s: AT+HTTPDATA's <time>", function()
  for unit, slow in pairs({ ms = false, s = true }) do
    with_modem("httpdata_unit=" .. unit, function(p)
      up(p)
      assert(p:cmd("AT+HTTPINIT"))
      local t0 = athost.now()
      t.fails("ERROR", p:cmd("AT+HTTPDATA=5,1", { prompt = "DOWNLOAD", data = "abc",
        timeout = 3000 }))
      local ms = athost.now() - t0
      if slow then
        t.ok(ms >= 900, unit .. ": waited a second, " .. ms .. " ms")
      else
        t.ok(ms < 500, unit .. ": gave up after a millisecond, " .. ms .. " ms")
      end
    end)
  end
end)

---------------------------------------------------------------------------
-- Standalone
---------------------------------------------------------------------------

t.test("athost scripts/sim/a7670.lua serves a separate athost -p", function()
  simtest.standalone(ROOT, DIR, "a7670")
end)

---------------------------------------------------------------------------

for k, v in pairs(require("broker").start(DIR)) do B[k] = v end
M = mosq.new(B, DIR)

local passed, err = pcall(t.run)
require("broker").stop(DIR)
shell("rm -rf " .. DIR)
if not passed then error(err, 0) end
