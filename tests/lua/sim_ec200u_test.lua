-- The virtual Quectel EC200U (athost.sim.ec200u) driven with raw AT
-- commands through athost ports, in front of a real mosquitto (tests/
-- fixtures/broker.sh: plain, TLS and mutual-TLS listeners) and local HTTP
-- and HTTPS servers; what reaches the broker is checked with mosquitto_sub
-- and mosquitto_pub. The dialogues are DIALECTS.md 4.1 and 4.2.
--
--   ATHOST_PATH=tests/lib:lib ./athost tests/lua/sim_ec200u_test.lua
local t = require("t")
local simtest = require("simtest")
local athost = require("athost")

local here = ((arg and arg[0]) or "tests/lua/x"):match("^(.*)/[^/]*$") or "."
local ROOT = here .. "/../.."
local BROKER_SH = here .. "/../fixtures/broker.sh"
local DIR = t.tmpdir()
local B = {}                  -- BROKER_* from broker.env, without the prefix
local mosq = require("mosq")
local MQ                      -- mosquitto_sub / mosquitto_pub (mosq.new)

local raw, up, shell = mosq.raw, simtest.up, mosq.shell

local function with_modem(query, fn) simtest.with_modem("ec200u", query, fn) end

local function uid() return athost.random(4, "hex") end
local function topic() return "athost/ec200u/" .. uid() end

-- The +CME ERROR number cmd is refused with.
local function cme(p, cmd, opts)
  local _, msg, code, r = p:cmd(cmd, opts)
  t.eq(code, "CME", cmd .. ": " .. tostring(msg))
  return r and r.cme
end

-- cmd, whose result is the URC pat (before or after OK): its match.
local function outcome(p, cmd, pat, opts)
  local o = { outcome = pat, outcome_timeout = 10000, timeout = 10000 }
  for k, v in pairs(opts or {}) do o[k] = v end
  return assert(p:cmd(cmd, o)).outcome
end

-- AT+QFUPL of data: CONNECT, the bytes, "+QFUPL: <size>,<checksum>".
local function upload(p, name, data)
  local r = assert(p:cmd(string.format('AT+QFUPL="%s",%d,100', name, #data),
    { prompt = "CONNECT", data = data, reply = "^%+QFUPL: (%d+),(%x+)$" }))
  t.eq(tonumber(r[1]), #data, "the size +QFUPL reports")
  return r[2]
end

local function xor16(s)
  local v = 0
  for i = 1, #s, 2 do v = v ~ (s:byte(i) * 256 + (s:byte(i + 1) or 0)) end
  return string.format("%x", v)
end

local function sum16(s)
  local v = 0
  for i = 1, #s do v = (v + s:byte(i)) % 65536 end
  return string.format("%x", v)
end

-- An SSL context with the broker's CA (and the client's files for level 2).
local function ssl_context(p, ctx, level, ca)
  upload(p, "UFS:ca.pem", ca or t.slurp(B.CA))
  assert(p:cmd(string.format('AT+QSSLCFG="sslversion",%d,4', ctx)))
  assert(p:cmd(string.format('AT+QSSLCFG="ciphersuite",%d,0xFFFF', ctx)))
  assert(p:cmd(string.format('AT+QSSLCFG="seclevel",%d,%d', ctx, level)))
  assert(p:cmd(string.format('AT+QSSLCFG="cacert",%d,"UFS:ca.pem"', ctx)))
  if level == 2 then
    upload(p, "UFS:client.pem", t.slurp(B.CLIENT_CERT))
    upload(p, "UFS:client.key", t.slurp(B.CLIENT_KEY))
    assert(p:cmd(string.format('AT+QSSLCFG="clientcert",%d,"UFS:client.pem"', ctx)))
    assert(p:cmd(string.format('AT+QSSLCFG="clientkey",%d,"UFS:client.key"', ctx)))
  end
end

local OPEN = "^%+QMTOPEN: %d+,(%-?%d+)$"

-- QMTCFG "ssl" (o.ctx: TLS with that context), QMTOPEN, QMTCONN: both
-- results 0.
local function mqtt_up(p, o)
  o = o or {}
  local idx = o.idx or 0
  assert(p:cmd(string.format('AT+QMTCFG="ssl",%d,%s', idx, o.ctx and "1," .. o.ctx or "0")))
  t.eq(outcome(p, string.format('AT+QMTOPEN=%d,"%s",%d', idx, o.host or "127.0.0.1",
    o.port or B.PORT), OPEN)[1], "0", "+QMTOPEN result")
  local r = outcome(p, string.format('AT+QMTCONN=%d,"%s","%s","%s"', idx,
    o.client_id or "ec-" .. uid(), o.user or B.USER, o.pass or B.PASS),
    "^%+QMTCONN: %d+,(%d+),?(%d*)$")
  t.eq(r[1] .. "," .. r[2], "0,0", "+QMTCONN result,ret_code")
end

local function subscribe(p, tp, qos)
  t.eq(outcome(p, string.format('AT+QMTSUB=0,1,"%s",%d', tp, qos or 1),
    "^%+QMTSUB: 0,1,.*$").line, "+QMTSUB: 0,1,0," .. (qos or 1), "+QMTSUB")
end

-- An incoming message with its length (recv/mode ...,1): msgid, topic,
-- payload.
local RECV_LEN = { '^%+QMTRECV: 0,(%d+),"([^"]*)",(%d+),"', count = 3, trailer = '"' }

local function recv(p)
  local m = assert(p:expect(RECV_LEN, { timeout = 10000 }))
  return { id = m[1], topic = m[2], payload = m.payload }
end

-- Bytes no AT string can carry: CR, LF, '"', ',', NUL.
local PAYLOAD = 'a\r\nb"c,d\0e'

---------------------------------------------------------------------------
-- Identification, power-on, errors
---------------------------------------------------------------------------

t.test("identification: CGMI, CGMM, CGMR, ATI, QGMR, CGSN", function()
  with_modem("imei=866123456789017", function(p)
    up(p)
    local function lines(c) return table.concat(assert(p:cmd(c, { reply = false })).lines, "|") end
    t.eq(lines("AT+CGMI"), "Quectel", "CGMI")
    t.eq(lines("AT+CGMM"), "EC200U", "CGMM")
    t.eq(lines("AT+CGMR"), "EC200UCNAAR03A14M08", "CGMR")
    t.eq(lines("ATI"), "Quectel|EC200U|Revision: EC200UCNAAR03A14M08", "ATI")
    t.eq(lines("AT+QGMR"), "EC200UCNAAR03A14M08_01.200.01.200", "QGMR")
    t.eq(lines("AT+CGSN"), "866123456789017", "CGSN")
    t.eq(lines("AT+CPIN?"), "+CPIN: READY", "CPIN")
    t.eq(lines("AT+CEREG?"), "+CEREG: 0,1", "CEREG")
    t.eq(lines("AT+CGATT?"), "+CGATT: 1", "CGATT")
    t.match(lines("AT+CSQ"), "^%+CSQ: %d+,99$", "CSQ")
    t.fails("ERROR", p:cmd("AT+NOSUCH"))
  end)
end)

t.test("cgmr_prefix, qgmr_form: each reading; version= sets the revision", function()
  local cases = {
    { "cgmr_prefix=none&qgmr_form=suffix", "EC200UCNAAR03A11M08", "EC200UCNAAR03A11M08_01.200.01.200" },
    { "cgmr_prefix=revision&qgmr_form=bare", "Revision: EC200UCNAAR03A11M08", "EC200UCNAAR03A11M08" },
  }
  for _, c in ipairs(cases) do
    with_modem(c[1] .. "&version=EC200UCNAAR03A11M08", function(p)
      up(p)
      t.eq(raw(p, "AT+CGMR\r", "OK\r\n"), "\r\n" .. c[2] .. "\r\n\r\nOK\r\n", c[1] .. ": CGMR")
      t.eq(raw(p, "AT+QGMR\r", "OK\r\n"), "\r\n" .. c[3] .. "\r\n\r\nOK\r\n", c[1] .. ": QGMR")
      t.eq(assert(p:cmd("ATI")).lines[3], "Revision: EC200UCNAAR03A11M08", "ATI's revision")
    end)
  end
end)

t.test("power-on: the banner, echo on; a reboot (AT+CFUN=1,1) restores ATE1", function()
  with_modem(nil, function(p)
    local got = raw(p, nil, "SMS DONE\r\n")
    t.eq(got, "\r\nRDY\r\n\r\n+CFUN: 1\r\n\r\n+CPIN: READY\r\n\r\n+QUSIM: 1\r\n\r\n+QIND: SMS DONE\r\n",
      "the banner")
    t.eq(raw(p, "AT\r", "OK\r\n"), "AT\r\r\nOK\r\n", "echo on after power-on")
    assert(p:cmd("ATE0"))
    t.eq(raw(p, "AT\r", "OK\r\n"), "\r\nOK\r\n", "ATE0")
    assert(p:cmd("AT+CFUN=1,1"))
    assert(p:expect("+QIND: SMS DONE", { timeout = 3000 }))
    t.eq(raw(p, "AT\r", "OK\r\n"), "AT\r\r\nOK\r\n", "echo back on after the reboot")
  end)
  with_modem("echo_boot=off", function(p)
    assert(p:expect("+QIND: SMS DONE", { timeout = 3000 }))
    t.eq(raw(p, "AT\r", "OK\r\n"), "\r\nOK\r\n", "echo_boot=off: no echo")
  end)
end)

t.test("cme_form: under AT+CMEE=2 text, numeric or both; CMEE 0 and 1", function()
  local want = { text = "+CME ERROR: operation not allowed", numeric = "+CME ERROR: 3" }
  for form, line in pairs(want) do
    with_modem("cme_form=" .. form, function(p)
      assert(p:cmd("AT"))
      assert(p:cmd("ATE0"))
      t.eq(raw(p, "AT+QIACT=1\r", "\r\n", 3000):sub(1, 7), "\r\nERROR", "CMEE=0: ERROR")
      assert(p:cmd("AT+CMEE=1"))
      t.eq(cme(p, "AT+QIACT=1"), 3, "CMEE=1: the number")
      assert(p:cmd("AT+CMEE=2"))
      t.eq(raw(p, "AT+QIACT=1\r", line .. "\r\n"), "\r\n" .. line .. "\r\n", form)
      -- Quectel's file errors have no text: a number in either form.
      t.eq(raw(p, 'AT+QFDEL="UFS:none"\r', "405\r\n"), "\r\n+CME ERROR: 405\r\n", form .. ": 405")
    end)
  end
  with_modem("cme_form=mixed", function(p)
    up(p)
    assert(p:cmd("AT+CMEE=2"))
    local seen = {}
    for _ = 1, 30 do
      local _, msg = p:cmd("AT+QIACT=1")
      seen[msg:match("^%+CME ERROR: (.-) at AT%+QIACT")] = true
    end
    t.ok(seen["3"] and seen["operation not allowed"], "both forms in 30 errors")
  end)
end)

---------------------------------------------------------------------------
-- PDP contexts
---------------------------------------------------------------------------

t.test("qiact_active=error: the attach bearer is up, QIACT=1 and QICSGP=1 refused", function()
  with_modem("qiact_active=error", function(p)
    up(p)
    t.match(assert(p:cmd("AT+QIACT?")).lines[1], '^%+QIACT: 1,1,1,"10%.%d+%.%d+%.%d+"$', "QIACT?")
    t.eq(cme(p, "AT+QIACT=1"), 3, "QIACT=1 while up")
    t.eq(cme(p, 'AT+QICSGP=1,1,"CMNET","","",1'), 3, "QICSGP=1 while up")
    -- Another context: defined, activated, listed, deactivated.
    assert(p:cmd('AT+QICSGP=2,1,"CMIOT","u","p",1'))
    t.eq(assert(p:cmd("AT+QICSGP=2")).lines[1], '+QICSGP: 1,"CMIOT","u","p",1', "QICSGP read")
    assert(p:cmd("AT+QIACT=2"))
    local lines = assert(p:cmd("AT+QIACT?")).lines
    t.eq(#lines, 2, "two contexts up")
    t.match(lines[2], '^%+QIACT: 2,1,1,"10%.', "context 2")
    t.match(assert(p:cmd("AT+CGPADDR=2")).lines[1], '^%+CGPADDR: 2,"10%.', "its address")
    assert(p:cmd("AT+QIDEACT=2"))
    t.eq(#assert(p:cmd("AT+QIACT?")).lines, 1, "context 2 down")
    t.eq(assert(p:cmd("AT+CGPADDR=2")).lines[1], '+CGPADDR: 2,"0.0.0.0"', "no address")
    -- Down, context 1 comes back with QIACT=1.
    assert(p:cmd("AT+QIDEACT=1"))
    t.eq(#assert(p:cmd("AT+QIACT?")).lines, 0, "nothing up")
    assert(p:cmd("AT+QIACT=1"))
    t.eq(#assert(p:cmd("AT+QIACT?")).lines, 1, "context 1 up again")
  end)
end)

t.test("qiact_active=ok: QIACT=1 and QICSGP=1 answer OK while up", function()
  with_modem("qiact_active=ok", function(p)
    up(p)
    assert(p:cmd("AT+QIACT=1"))
    assert(p:cmd('AT+QICSGP=1,1,"CMNET","","",1'))
    t.eq(#assert(p:cmd("AT+QIACT?")).lines, 1, "still one context up")
  end)
end)

---------------------------------------------------------------------------
-- Files
---------------------------------------------------------------------------

t.test("files: QFUPL after CONNECT with its checksum, 407, QFLST, QFDEL, 405", function()
  with_modem(nil, function(p, m)
    up(p)
    local data = "-----BEGIN CERTIFICATE-----\r\nodd\0"   -- odd length
    t.eq(raw(p, string.format('AT+QFUPL="UFS:ca.pem",%d,100\r', #data), "CONNECT\r\n"),
      "\r\nCONNECT\r\n", "CONNECT as a line")
    t.eq(raw(p, data, "OK\r\n"), string.format("\r\n+QFUPL: %d,%s\r\n\r\nOK\r\n", #data,
      xor16(data)), "size and 16-bit XOR in hex")
    t.eq(m.files["UFS:ca.pem"], data, "the file in flash")
    t.eq(cme(p, 'AT+QFUPL="UFS:ca.pem",3,10'), 407, "the name exists")
    upload(p, "b.txt", "xyz")                      -- a bare name is UFS
    upload(p, "RAM:r.bin", "1")
    t.deepeq(assert(p:cmd('AT+QFLST="*"')).lines, { string.format('+QFLST: "UFS:b.txt",3'),
      string.format('+QFLST: "UFS:ca.pem",%d', #data) }, "QFLST *")
    t.deepeq(assert(p:cmd('AT+QFLST="RAM:*"')).lines, { '+QFLST: "RAM:r.bin",1' }, "QFLST RAM:*")
    assert(p:cmd('AT+QFDEL="UFS:b.txt"'))
    t.eq(cme(p, 'AT+QFDEL="UFS:b.txt"'), 405, "gone")
    t.eq(cme(p, 'AT+QFUPL="UFS:a/b",3,10'), 406, "a bad name")
    -- After a reboot flash is kept, RAM is not.
    m:reboot()
    assert(p:expect("+QIND: SMS DONE", { timeout = 3000 }))
    up(p)
    t.deepeq(assert(p:cmd('AT+QFLST="*"')).lines,
      { string.format('+QFLST: "UFS:ca.pem",%d', #data) }, "UFS kept")
    t.eq(#assert(p:cmd('AT+QFLST="RAM:*"')).lines, 0, "RAM lost")
  end)
end)

t.test("qfupl_checksum=sum16; ackmode 1: an A after each 1024 bytes", function()
  with_modem("qfupl_checksum=sum16", function(p)
    up(p)
    local data = string.rep("0123456789abcdef", 130)    -- 2080 bytes
    t.eq(raw(p, string.format('AT+QFUPL="UFS:big",%d,10,1\r', #data), "CONNECT\r\n"),
      "\r\nCONNECT\r\n", "CONNECT")
    t.eq(raw(p, data:sub(1, 1024), "A"), "A", "an A after 1024 bytes")
    t.eq(raw(p, data:sub(1025, 2048), "A"), "A", "after 2048")
    t.eq(raw(p, data:sub(2049), "OK\r\n"), string.format("\r\n+QFUPL: %d,%s\r\n\r\nOK\r\n",
      #data, sum16(data)), "no A for the rest; the 16-bit sum")
  end)
end)

t.test("qfupl_unit: the timeout in seconds or milliseconds; late bytes fail with 409", function()
  for unit, window in pairs({ s = { 900, 3000 }, ms = { 250, 850 } }) do
    with_modem("qfupl_unit=" .. unit, function(p, m)
      up(p)
      local t0 = athost.now()
      local n = cme(p, string.format('AT+QFUPL="UFS:x",10,%d', unit == "s" and 1 or 300),
        { prompt = "CONNECT", data = "abc", timeout = 5000 })
      local ms = athost.now() - t0
      t.eq(n, 409, unit .. ": the write error")
      t.ok(ms >= window[1] and ms < window[2], unit .. ": failed after " .. ms .. " ms")
      t.eq(m.files["UFS:x"], nil, "no file")
    end)
  end
end)

---------------------------------------------------------------------------
-- MQTT: DIALECTS.md 4.1 and the TLS levels
---------------------------------------------------------------------------

t.test("4.1: MQTT over TLS with the CA upload, ctx 2, client 0", function()
  with_modem(string.format("hosts=broker.example.com=127.0.0.1:%d", B.TLS_PORT), function(p)
    up(p)
    t.eq(cme(p, 'AT+QFDEL="UFS:ca.pem"'), 405, "no CA yet")
    ssl_context(p, 2, 1)
    assert(p:cmd('AT+QMTCFG="ssl",0,1,2'))
    assert(p:cmd('AT+QMTCFG="version",0,4'))
    assert(p:cmd('AT+QMTCFG="recv/mode",0,0,1'))
    t.eq(outcome(p, 'AT+QMTOPEN=0,"broker.example.com",8883', OPEN).line, "+QMTOPEN: 0,0",
      "TLS verified against the uploaded CA")
    local cid = "dev1-" .. uid()
    t.eq(outcome(p, string.format('AT+QMTCONN=0,"%s","%s","%s"', cid, B.USER, B.PASS),
      "^%+QMTCONN: .*$").line, "+QMTCONN: 0,0,0", "connected")
    t.ok(t.slurp(B.DIR .. "/mosquitto.log"):find("as " .. cid, 1, true), "the broker saw " .. cid)
    local tin, tout = topic(), topic()
    t.eq(outcome(p, string.format('AT+QMTSUB=0,1,"%s",1', tin), "^%+QMTSUB: .*$").line,
      "+QMTSUB: 0,1,0,1", "subscribed")
    local got = MQ.subscriber(tout)
    t.eq(outcome(p, string.format('AT+QMTPUBEX=0,2,1,0,"%s",5', tout), "^%+QMTPUBEX: .*$",
      { prompt = ">", data = "hello" }).line, "+QMTPUBEX: 0,2,0", "published")
    local msg = got()
    t.eq(msg.payload, "hello", "at mosquitto_sub")
    t.eq(msg.qos, 1, "QoS 1")
    MQ.publish(tin, "hi", 1)
    local r = recv(p)
    t.eq(r.topic .. "|" .. r.payload, tin .. "|hi", "+QMTRECV")
    t.ok(r.id ~= "0", "a QoS 1 message has a packet id")
    t.eq(outcome(p, "AT+QMTDISC=0", "^%+QMTDISC: .*$").line, "+QMTDISC: 0,0", "disconnected")
    -- EC200U: QMTDISC closed the socket; QMTCLOSE answers OK, no URC.
    t.eq(raw(p, "AT+QMTCLOSE=0\r", "OK\r\n"), "\r\nOK\r\n", "QMTCLOSE")
    t.fails("ETIMEDOUT", p:expect("+QMTCLOSE", { timeout = 300 }))
  end)
end)

t.test("TLS: a wrong or missing CA fails +QMTOPEN with 5; seclevel 0 needs none", function()
  with_modem(nil, function(p)
    up(p)
    ssl_context(p, 1, 1, t.slurp(B.WRONG_CA))
    assert(p:cmd('AT+QMTCFG="ssl",0,1,1'))
    t.eq(outcome(p, string.format('AT+QMTOPEN=0,"127.0.0.1",%d', B.TLS_PORT), OPEN)[1], "5",
      "wrong CA")
    assert(p:cmd('AT+QSSLCFG="cacert",1,"UFS:none.pem"'))
    t.eq(outcome(p, string.format('AT+QMTOPEN=0,"127.0.0.1",%d', B.TLS_PORT), OPEN)[1], "5",
      "no such CA file")
    assert(p:cmd('AT+QSSLCFG="seclevel",1,0'))
    t.eq(assert(p:cmd('AT+QSSLCFG="seclevel",1')).lines[1], '+QSSLCFG: "seclevel",1,0', "read back")
    mqtt_up(p, { ctx = 1, port = B.TLS_PORT })
  end)
end)

t.test("TLS seclevel 2: mutual TLS with the uploaded certificate and key", function()
  with_modem(nil, function(p)
    up(p)
    ssl_context(p, 0, 2)
    mqtt_up(p, { ctx = 0, port = B.MTLS_PORT })
    local tp = topic()
    subscribe(p, tp)
    MQ.publish(tp, "mutual", 1)
    assert(p:cmd('AT+QMTCFG="recv/mode",0,0,1'))     -- set while connected
    MQ.publish(tp, "mutual2", 1)
    t.match(assert(p:expect("^%+QMTRECV: 0,%d+,", { timeout = 10000 })).line,
      '"mutual"$', "over mutual TLS, without length")
    t.eq(recv(p).payload, "mutual2", "then with length")
    -- Without the client certificate the broker refuses the handshake.
    assert(p:cmd("AT+QMTCLOSE=0"))
    assert(p:cmd('AT+QSSLCFG="clientcert",0,"UFS:gone.pem"'))
    t.eq(outcome(p, string.format('AT+QMTOPEN=0,"127.0.0.1",%d', B.MTLS_PORT), OPEN)[1], "5",
      "no certificate")
  end)
end)

t.test('QMTCFG "ssl" persists until power-off: set it before every QMTOPEN', function()
  with_modem(nil, function(p, m)
    up(p)
    assert(p:cmd('AT+QSSLCFG="seclevel",3,0'))
    mqtt_up(p, { ctx = 3, port = B.TLS_PORT })
    t.eq(outcome(p, "AT+QMTDISC=0", "^%+QMTDISC: .*$").line, "+QMTDISC: 0,0", "QMTDISC")
    t.eq(assert(p:cmd('AT+QMTCFG="ssl",0')).lines[1], '+QMTCFG: "ssl",1,3', "still on")
    t.eq(outcome(p, string.format('AT+QMTOPEN=0,"127.0.0.1",%d', B.PORT), OPEN)[1], "5",
      "TLS to the plain port fails")
    assert(p:cmd("AT+QMTCLOSE=0"))
    mqtt_up(p)                                       -- sets ssl 0
    m:reboot()
    assert(p:expect("+QIND: SMS DONE", { timeout = 3000 }))
    up(p)
    t.eq(assert(p:cmd('AT+QMTCFG="ssl",0')).lines[1], '+QMTCFG: "ssl",0,0', "reset by power-off")
  end)
end)

---------------------------------------------------------------------------
-- MQTT: publishing and receiving
---------------------------------------------------------------------------

t.test("QoS 0 and 1 both ways: mosquitto_sub and mosquitto_pub", function()
  with_modem(nil, function(p)
    up(p)
    mqtt_up(p)
    assert(p:cmd('AT+QMTCFG="recv/mode",0,0,1'))
    local tin, tout = topic(), topic()
    subscribe(p, tin, 1)
    for qos = 0, 1 do
      local got = MQ.subscriber(tout)
      local id = qos == 0 and 0 or 7
      t.eq(outcome(p, string.format('AT+QMTPUBEX=0,%d,%d,0,"%s",2', id, qos, tout),
        "^%+QMTPUBEX: .*$", { prompt = ">", data = "q" .. qos }).line,
        string.format("+QMTPUBEX: 0,%d,0", id), "QoS " .. qos .. " result")
      local msg = got()
      t.eq(msg.payload .. "|" .. msg.qos, "q" .. qos .. "|" .. qos, "QoS " .. qos .. " out")
      MQ.publish(tin, "in" .. qos, qos)
      local r = recv(p)
      t.eq(r.payload, "in" .. qos, "QoS " .. qos .. " in")
      t.ok((r.id == "0") == (qos == 0), "msgid " .. r.id .. " for QoS " .. qos)
    end
    t.eq(cme(p, string.format('AT+QMTPUBEX=0,0,1,0,"%s",1', tout)), 50, "msgid 0 with QoS 1")
    t.eq(cme(p, string.format('AT+QMTPUBEX=0,3,0,0,"%s",1', tout)), 50, "msgid 3 with QoS 0")
    t.eq(cme(p, 'AT+QMTPUBEX=1,1,1,0,"x",1'), 3, "client 1 is not connected")
  end)
end)

t.test("receiving byte-exact: recv/mode 0 with and without length, 1 buffered", function()
  with_modem(nil, function(p)
    up(p)
    mqtt_up(p)
    local tp = topic()
    subscribe(p, tp, 0)
    -- mode 0, no length: the payload raw between quotes.
    assert(p:cmd('AT+QMTCFG="recv/mode",0,0,0'))
    t.eq(assert(p:cmd('AT+QMTCFG="recv/mode",0')).lines[1], '+QMTCFG: "recv/mode",0,0', "read")
    MQ.publish(tp, PAYLOAD)
    local want = string.format('\r\n+QMTRECV: 0,0,"%s","%s"\r\n', tp, PAYLOAD)
    t.eq(raw(p, nil, 'e"\r\n', 10000), want, "without length")
    -- mode 0 with length: counted.
    assert(p:cmd('AT+QMTCFG="recv/mode",0,0,1'))
    MQ.publish(tp, PAYLOAD)
    want = string.format('\r\n+QMTRECV: 0,0,"%s",%d,"%s"\r\n', tp, #PAYLOAD, PAYLOAD)
    t.eq(raw(p, nil, 'e"\r\n', 10000), want, "with length")
    MQ.publish(tp, PAYLOAD)
    t.eq(recv(p).payload, PAYLOAD, "read by its count")
    -- mode 1: a notice per message, slots, read one or all.
    assert(p:cmd('AT+QMTCFG="recv/mode",0,1,1'))
    MQ.publish(tp, PAYLOAD)
    t.eq(assert(p:expect("^%+QMTRECV: 0,(%d+)$", { timeout = 10000 }))[1], "0", "slot 0")
    MQ.publish(tp, "second")
    t.eq(assert(p:expect("^%+QMTRECV: 0,(%d+)$", { timeout = 10000 }))[1], "1", "slot 1")
    t.deepeq(assert(p:cmd("AT+QMTRECV?")).lines, { "+QMTRECV: 0,1,1,0,0,0" }, "two slots full")
    local r = assert(p:cmd("AT+QMTRECV=0,0", { reply = RECV_LEN }))
    t.eq(r.payload, PAYLOAD, "slot 0 by its count")
    t.deepeq(assert(p:cmd("AT+QMTRECV?")).lines, { "+QMTRECV: 0,0,1,0,0,0" }, "slot 0 freed")
    assert(p:cmd('AT+QMTCFG="recv/mode",0,1,0'))
    MQ.publish(tp, PAYLOAD)
    t.eq(assert(p:expect("^%+QMTRECV: 0,(%d+)$", { timeout = 10000 }))[1], "0", "slot 0 again")
    t.eq(raw(p, "AT+QMTRECV=0\r", "OK\r\n"), string.format(
      '\r\n+QMTRECV: 0,0,"%s","%s"\r\n\r\n+QMTRECV: 0,0,"%s","second"\r\n\r\nOK\r\n',
      tp, PAYLOAD, tp), "the whole buffer, in slot order, without length")
    t.deepeq(assert(p:cmd("AT+QMTRECV?")).lines, { "+QMTRECV: 0,0,0,0,0,0" }, "all free")
  end)
end)

t.test("QMTPUB: with length, ended by Ctrl-Z, cancelled by Esc, inline; QMTPUBEX inline",
  function()
  with_modem(nil, function(p)
    up(p)
    mqtt_up(p)
    local tp = topic()
    local PUB = "^%+QMTPUB: .*$"
    local got = MQ.subscriber(tp)
    t.eq(outcome(p, string.format('AT+QMTPUB=0,1,1,0,"%s",%d', tp, #PAYLOAD), PUB,
      { prompt = ">", data = PAYLOAD }).line, "+QMTPUB: 0,1,0", "with length")
    t.eq(got().payload, PAYLOAD, "exact bytes")
    got = MQ.subscriber(tp)
    local text = 'no len\r\n"x",y\0z'
    t.eq(outcome(p, string.format('AT+QMTPUB=0,2,1,0,"%s"', tp), PUB,
      { prompt = ">", data = text .. "\26" }).line, "+QMTPUB: 0,2,0", "ended by Ctrl-Z")
    t.eq(got().payload, text, "up to Ctrl-Z")
    got = MQ.subscriber(tp)
    t.eq(assert(p:cmd(string.format('AT+QMTPUB=0,3,1,0,"%s"', tp),
      { prompt = ">", data = "never sent\27" })).final, "OK", "Esc: OK")
    t.eq(outcome(p, string.format('AT+QMTPUB=0,4,1,0,"%s","inline, text"', tp), PUB).line,
      "+QMTPUB: 0,4,0", "inline")
    t.eq(got().payload, "inline, text", "the inline message, the cancelled one never sent")
    got = MQ.subscriber(tp)
    t.eq(outcome(p, string.format('AT+QMTPUBEX=0,0,0,0,"%s","ex inline"', tp),
      "^%+QMTPUBEX: .*$").line, "+QMTPUBEX: 0,0,0", "QMTPUBEX inline at QoS 0")
    t.eq(got().payload, "ex inline", "its message")
  end)
end)

t.test("QMTSUB several topics; QMTUNS; QMTCONN? and QMTOPEN? states", function()
  with_modem(nil, function(p)
    up(p)
    mqtt_up(p)
    assert(p:cmd('AT+QMTCFG="recv/mode",0,0,1'))
    t.match(assert(p:cmd("AT+QMTOPEN?")).lines[1], '^%+QMTOPEN: 0,"127%.0%.0%.1",%d+$', "QMTOPEN?")
    t.eq(assert(p:cmd("AT+QMTCONN?")).lines[1], "+QMTCONN: 0,3", "connected")
    local a, b = topic(), topic()
    t.eq(outcome(p, string.format('AT+QMTSUB=0,9,"%s",1,"%s",0', a, b), "^%+QMTSUB: .*$").line,
      "+QMTSUB: 0,9,0,1,0", "granted QoS per topic")
    t.eq(outcome(p, string.format('AT+QMTUNS=0,10,"%s"', a), "^%+QMTUNS: .*$").line,
      "+QMTUNS: 0,10,0", "unsubscribed")
    MQ.publish(a, "not for us")
    MQ.publish(b, "for us")
    t.eq(recv(p).topic, b, "only the topic still subscribed")
  end)
end)

t.test("aliauth: the module signs Aliyun's credentials itself", function()
  local pk, dn, ds = "a1PK" .. uid(), "dev" .. uid(), "secret" .. uid()
  local user = dn .. "&" .. pk
  local pass = athost.hmac("sha1", ds, "clientId" .. dn .. "deviceName" .. dn .. "productKey" .. pk)
  local out, ok = shell(string.format("bash %s adduser %s '%s' '%s'", BROKER_SH, DIR, user, pass))
  t.ok(ok, "broker.sh adduser: " .. out)
  with_modem(nil, function(p)
    up(p)
    assert(p:cmd(string.format('AT+QMTCFG="aliauth",0,"%s","%s","%s"', pk, dn, ds)))
    t.eq(outcome(p, string.format('AT+QMTOPEN=0,"127.0.0.1",%d', B.PORT), OPEN)[1], "0", "open")
    t.eq(outcome(p, string.format('AT+QMTCONN=0,"%s"', dn), "^%+QMTCONN: .*$").line,
      "+QMTCONN: 0,0,0", "accepted with the signed password")
    t.ok(t.slurp(B.DIR .. "/mosquitto.log"):find(dn .. "|securemode=3,signmethod=hmacsha1|", 1,
      true), "the client id names the sign method")
  end)
end)

t.test('QMTCFG "version": 3 speaks MQTT 3.1 to the broker, 4 MQTT 3.1.1', function()
  with_modem(nil, function(p)
    up(p)
    for _, v in ipairs({ 3, 4 }) do
      assert(p:cmd('AT+QMTCFG="version",0,' .. v))
      local cid = "v" .. v .. "-" .. uid()
      mqtt_up(p, { client_id = cid })
      local log = t.slurp(B.DIR .. "/mosquitto.log")
      t.match(log, "as " .. cid:gsub("%-", "%%-") .. " %(p" .. (v == 3 and 1 or 2) .. ",",
        "the broker's protocol for version " .. v)
      t.eq(outcome(p, "AT+QMTDISC=0", "^%+QMTDISC: .*$").line, "+QMTDISC: 0,0", "QMTDISC")
    end
  end)
end)

t.test("a refused CONNACK: +QMTCONN: 0,0,<ret_code>, then +QMTSTAT: 0,1", function()
  with_modem(nil, function(p)
    up(p)
    t.eq(outcome(p, string.format('AT+QMTOPEN=0,"127.0.0.1",%d', B.PORT), OPEN)[1], "0", "open")
    local r = outcome(p, string.format('AT+QMTCONN=0,"ec-%s","%s","wrong"', uid(), B.USER),
      "^%+QMTCONN: 0,(%d+),(%d+)$")
    t.eq(r[1], "0", "sent and answered")
    t.ok(r[2] == "4" or r[2] == "5", "the broker's refusal code: " .. r[2])
    t.eq(assert(p:expect("^%+QMTSTAT: .*$", { timeout = 5000 })).line, "+QMTSTAT: 0,1", "closed")
    mqtt_up(p)                                       -- the index is free again
  end)
end)

---------------------------------------------------------------------------
-- Knobs of the MQTT commands, and the core's
---------------------------------------------------------------------------

t.test("qmtclose_urc=always: the client stays open until QMTCLOSE, which reports it", function()
  with_modem("qmtclose_urc=always", function(p)
    up(p)
    mqtt_up(p)
    t.eq(outcome(p, "AT+QMTDISC=0", "^%+QMTDISC: .*$").line, "+QMTDISC: 0,0", "QMTDISC")
    t.eq(outcome(p, string.format('AT+QMTOPEN=0,"127.0.0.1",%d', B.PORT), OPEN)[1], "2",
      "index occupied")
    t.eq(raw(p, "AT+QMTCLOSE=0\r", "+QMTCLOSE: 0,0\r\n"), "\r\nOK\r\n\r\n+QMTCLOSE: 0,0\r\n",
      "OK, then +QMTCLOSE")
    mqtt_up(p)
  end)
  with_modem("qmtclose_urc=none", function(p)
    up(p)
    mqtt_up(p)
    t.eq(outcome(p, "AT+QMTDISC=0", "^%+QMTDISC: .*$").line, "+QMTDISC: 0,0", "QMTDISC")
    mqtt_up(p)                                       -- no QMTCLOSE needed
    t.eq(raw(p, "AT+QMTCLOSE=0\r", "+QMTCLOSE: 0,0\r\n"), "\r\nOK\r\n\r\n+QMTCLOSE: 0,0\r\n",
      "a socket to close: +QMTCLOSE")
  end)
end)

t.test("link loss (fault drop): +QMTSTAT: 0,<qmtstat_code> (after +QMTPING with qmtping=on), then reopen", function()
  for _, code in ipairs({ "1", "2", "7" }) do
    with_modem("qmtstat_code=" .. code, function(p, m)
      up(p)
      mqtt_up(p)
      m:drop()
      t.eq(assert(p:expect("^%+QMTSTAT: .*$", { timeout = 5000 })).line, "+QMTSTAT: 0," .. code,
        "qmtstat_code=" .. code)
      t.eq(#assert(p:cmd("AT+QMTCONN?")).lines, 0, "no client left")
      mqtt_up(p)
    end)
  end
  with_modem("qmtping=on", function(p, m)
    up(p)
    mqtt_up(p)
    athost.sleep(0)
    p:flush()
    m:drop()
    t.eq(raw(p, nil, "+QMTSTAT: 0,1\r\n"), "\r\n+QMTPING: 0,1\r\n\r\n+QMTSTAT: 0,1\r\n",
      "qmtping=on: +QMTPING first")
  end)
  with_modem("drop=AT+QMTSUB", function(p)
    up(p)
    mqtt_up(p)
    local r = assert(p:cmd(string.format('AT+QMTSUB=0,1,"%s",1', topic()),
      { outcome = "^%+QMTSUB: .*$", outcome_timeout = 5000 }))
    t.eq(r.final, "OK", "answered first")
    t.match(r.outcome.line, "^%+QMTSUB: 0,1,", "its outcome")
    t.eq(assert(p:expect("^%+QMTSTAT: .*$", { timeout = 5000 })).line, "+QMTSTAT: 0,1", "then lost")
  end)
end)

t.test("the broker closes the link: +QMTSTAT: 0,1; a keepalive of 1 s holds", function()
  with_modem(nil, function(p)
    up(p)
    assert(p:cmd('AT+QMTCFG="keepalive",0,1'))
    local cid = "ka-" .. uid()
    mqtt_up(p, { client_id = cid })
    t.fails("ETIMEDOUT", p:expect("+QMTSTAT", { timeout = 3000 }))
    t.ok(t.slurp(B.DIR .. "/mosquitto.log"):find("PINGREQ from " .. cid, 1, true), "pings")
    -- Another connection with the same client id takes the session over.
    local out = shell(string.format("mosquitto_pub -h 127.0.0.1 -p %d -u %s -P %s -i %s -t x -m y",
      B.PORT, B.USER, B.PASS, cid))
    t.eq(assert(p:expect("^%+QMTSTAT: .*$", { timeout = 5000 })).line, "+QMTSTAT: 0,1",
      "closed by the broker " .. out)
  end)
end)

t.test("bearer loss (fault pdp): +QIURC: \"pdpdeact\",1, +QMTSTAT per pdp_qmtstat; QIACT recovers",
  function()
  for _, on in ipairs({ "on", "off" }) do
    with_modem("pdp_qmtstat=" .. on .. "&qmtstat_code=7", function(p, m)
      up(p)
      mqtt_up(p)
      athost.sleep(0)
      p:flush()
      m:pdp_deact()
      local want = '\r\n+QIURC: "pdpdeact",1\r\n' .. (on == "on" and "\r\n+QMTSTAT: 0,7\r\n" or "")
      t.eq(raw(p, nil, want:sub(-6), 3000), want, "pdp_qmtstat=" .. on)
      t.eq(#assert(p:cmd("AT+QIACT?")).lines, 0, "context 1 down")
      t.eq(outcome(p, string.format('AT+QMTOPEN=0,"127.0.0.1",%d', B.PORT), OPEN)[1], "3",
        "no bearer: 3")
      assert(p:cmd("AT+QIDEACT=1"))
      assert(p:cmd("AT+QIACT=1"))
      mqtt_up(p)
    end)
  end
end)

-- The raw answer to cmd up to the outcome, in the order the knob says.
local ORDER = {
  after = function(o) return "\r\nOK\r\n\r\n" .. o .. "\r\n", o .. "\r\n" end,
  before = function(o) return "\r\n" .. o .. "\r\n\r\nOK\r\n", "\r\nOK\r\n" end,
}

for _, order in ipairs({ "after", "before" }) do
  t.test("order=" .. order .. ": QMTOPEN, QMTCONN, QMTSUB, QMTPUBEX, QMTUNS, QMTDISC", function()
    with_modem("order=" .. order, function(p)
      up(p)
      local function answer(cmd, o, data)
        local want, last = ORDER[order](o)
        if data then
          t.eq(raw(p, cmd .. "\r", ">"), ">", cmd .. ": the prompt")
          cmd = data
        else
          cmd = cmd .. "\r"
        end
        t.eq(raw(p, cmd, want:sub(-#last), 5000), want, cmd)
      end
      answer(string.format('AT+QMTOPEN=0,"127.0.0.1",%d', B.PORT), "+QMTOPEN: 0,0")
      answer(string.format('AT+QMTCONN=0,"ec-%s","%s","%s"', uid(), B.USER, B.PASS),
        "+QMTCONN: 0,0,0")
      local tp = topic()
      answer(string.format('AT+QMTSUB=0,1,"%s",1', tp), "+QMTSUB: 0,1,0,1")
      answer(string.format('AT+QMTPUBEX=0,2,1,0,"%s",3', topic()), "+QMTPUBEX: 0,2,0", "abc")
      answer(string.format('AT+QMTUNS=0,3,"%s"', tp), "+QMTUNS: 0,3,0")
      answer("AT+QMTDISC=0", "+QMTDISC: 0,0")
    end)
  end)
end

t.test("prompt: QMTPUBEX's '>' bare, with a space, or on a line of its own", function()
  for form, want in pairs({ bare = ">", space = "> ", line = "\r\n> " }) do
    with_modem("prompt=" .. form, function(p)
      up(p)
      mqtt_up(p)
      local got = raw(p, string.format('AT+QMTPUBEX=0,0,0,0,"%s",2\r', topic()), ">")
      got = got .. raw(p, "ab", "+QMTPUBEX: 0,0,0\r\n")
      t.eq(got, want .. "\r\nOK\r\n\r\n+QMTPUBEX: 0,0,0\r\n", form)
    end)
  end
end)

t.test("split, noise, delay, unrelated URCs: the 4.1 dialogue still holds byte-exact", function()
  with_modem("split=on&noise=on&delay=20&urcs=on&personality=random:5", function(p)
    up(p)
    mqtt_up(p)
    assert(p:cmd('AT+QMTCFG="recv/mode",0,0,1'))
    local tp = topic()
    subscribe(p, tp, 1)
    local got = MQ.subscriber(tp .. "/out")
    outcome(p, string.format('AT+QMTPUBEX=0,5,1,0,"%s/out",%d', tp, #PAYLOAD), "^%+QMTPUBEX: 0,5,0$",
      { prompt = ">", data = PAYLOAD })
    t.eq(got().payload, PAYLOAD, "out")
    MQ.publish(tp, PAYLOAD, 1)
    t.eq(recv(p).payload, PAYLOAD, "in")
  end)
end)

t.test("faults: reboot mid-dialogue (banner, state lost), silence", function()
  with_modem(nil, function(p, m)
    up(p)
    mqtt_up(p)
    m:reboot()
    assert(p:expect("RDY", { timeout = 3000 }))
    assert(p:cmd("AT"))
    t.eq(raw(p, "AT+QMTCONN?\r", "OK\r\n"), "AT+QMTCONN?\r\r\nOK\r\n", "echo on, no client")
    m:silent(true)
    t.fails("ETIMEDOUT", p:cmd("AT", { timeout = 300 }))
    m:silent(false)
    assert(p:cmd("AT"))
  end)
end)

---------------------------------------------------------------------------
-- HTTP(S): DIALECTS.md 4.2
---------------------------------------------------------------------------

local http_server = simtest.http_server

-- QHTTPURL: CONNECT, the URL, OK.
local function url(p, u)
  assert(p:cmd(string.format("AT+QHTTPURL=%d,80", #u), { prompt = "CONNECT", data = u }))
end

local POSTED = "^%+QHTTPPOST: .*$"

t.test("4.2: HTTP POST (form) and QHTTPREAD against a local server", function()
  local reply = '{"code":200,"data":{"deviceSecret":"s3cr3t"}}'
  local port, seen, stop = http_server(function()
    return 200, { ["Content-Type"] = "application/json" }, reply
  end)
  with_modem(nil, function(p)
    up(p)
    assert(p:cmd('AT+QHTTPCFG="contextid",1'))
    assert(p:cmd('AT+QHTTPCFG="requestheader",0'))
    assert(p:cmd('AT+QHTTPCFG="contenttype",0'))
    t.eq(cme(p, "AT+QHTTPPOST=7,80,80"), 712, "no URL yet")
    local u = string.format("http://127.0.0.1:%d/v1/form", port)
    t.eq(raw(p, string.format("AT+QHTTPURL=%d,80\r", #u), "CONNECT\r\n"), "\r\nCONNECT\r\n", "CONNECT")
    t.eq(raw(p, u, "OK\r\n"), "\r\nOK\r\n", "the URL taken")
    t.eq(outcome(p, "AT+QHTTPPOST=7,80,80", POSTED, { prompt = "CONNECT", data = "a=1&b=2" }).line,
      "+QHTTPPOST: 0,200," .. #reply, "+QHTTPPOST")
    t.eq(raw(p, "AT+QHTTPREAD=80\r", "+QHTTPREAD: 0\r\n"),
      "\r\nCONNECT\r\n" .. reply .. "\r\nOK\r\n\r\n+QHTTPREAD: 0\r\n", "QHTTPREAD")
    t.eq(cme(p, "AT+QHTTPREAD=80"), 705, "read once")
    t.eq(#seen, 1, "one request")
    t.eq(seen[1].method .. " " .. seen[1].path, "POST /v1/form", "request line")
    t.eq(seen[1].headers["content-type"], "application/x-www-form-urlencoded", "content type 0")
    t.eq(seen[1].body, "a=1&b=2", "body")
  end)
  stop()
end)

t.test("HTTPS: sslctxid's seclevel 1 checks the server against the uploaded CA", function()
  local tls = { cert = t.slurp(B.DIR .. "/server.pem"), key = t.slurp(B.DIR .. "/server.key") }
  local port, seen, stop = http_server(function() return 200, {}, "secure" end, { tls = tls })
  for _, ca in ipairs({ "right", "wrong" }) do
    with_modem(nil, function(p)
      up(p)
      ssl_context(p, 2, 1, t.slurp(ca == "right" and B.CA or B.WRONG_CA))
      assert(p:cmd('AT+QHTTPCFG="sslctxid",2'))
      url(p, string.format("https://127.0.0.1:%d/x", port))
      t.eq(outcome(p, "AT+QHTTPPOST=1,80,80", POSTED, { prompt = "CONNECT", data = "z" }).line,
        ca == "right" and "+QHTTPPOST: 0,200,6" or "+QHTTPPOST: 710", ca .. " CA")
    end)
  end
  t.eq(#seen, 1, "only the verified request reached the server")
  stop()
end)

t.test("QHTTPCFG: responseheader, requestheader, a MIME contenttype; GET", function()
  local port, seen, stop = http_server(function(req)
    return 201, { ["X-Echo"] = req.headers["x-mine"] or "-" }, "made"
  end)
  with_modem(nil, function(p)
    up(p)
    url(p, string.format("http://127.0.0.1:%d/base", port))
    assert(p:cmd('AT+QHTTPCFG="responseheader",1'))
    assert(p:cmd('AT+QHTTPCFG="requestheader",1'))
    local req = "PUT /own/path HTTP/1.1\r\nX-Mine: yes\r\nContent-Type: text/plain\r\n\r\nbody!"
    t.eq(outcome(p, string.format("AT+QHTTPPOST=%d,80,80", #req), POSTED,
      { prompt = "CONNECT", data = req }).line, "+QHTTPPOST: 0,201,4", "own request")
    local got = raw(p, "AT+QHTTPREAD=80\r", "+QHTTPREAD: 0\r\n")
    t.match(got, "^\r\nCONNECT\r\nHTTP/1%.1 201 Created\r\n.*x%-echo: yes\r\n\r\nmade\r\nOK\r\n",
      "status line and headers before the body")
    t.eq(seen[1].method .. " " .. seen[1].path, "PUT /own/path", "as given")
    t.eq(seen[1].body, "body!", "its body")
    assert(p:cmd('AT+QHTTPCFG="requestheader",0'))
    assert(p:cmd('AT+QHTTPCFG="responseheader",0'))
    assert(p:cmd('AT+QHTTPCFG="contenttype","application/json"'))   -- accepted...
    t.eq(outcome(p, "AT+QHTTPPOST=2,80,80", POSTED, { prompt = "CONNECT", data = "{}" }).line,
      "+QHTTPPOST: 730", "...but the POST fails")
    t.eq(#seen, 1, "nothing sent")
    assert(p:cmd('AT+QHTTPCFG="contenttype",4'))
    t.eq(outcome(p, "AT+QHTTPGET=80", "^%+QHTTPGET: .*$").line, "+QHTTPGET: 0,201,4", "GET")
    t.eq(seen[2].method, "GET", "method")
  end)
  stop()
end)

t.test("qhttp_err: a failed request's URC short or long; 709 without the context", function()
  local l = assert(athost.listen("127.0.0.1", 0))
  local dead = l.port
  l:close()
  for form, line in pairs({ short = "+QHTTPPOST: 716", long = "+QHTTPPOST: 716,0,0" }) do
    with_modem("qhttp_err=" .. form, function(p)
      up(p)
      url(p, string.format("http://127.0.0.1:%d/", dead))
      t.eq(outcome(p, "AT+QHTTPPOST=1,80,80", POSTED, { prompt = "CONNECT", data = "x" }).line,
        line, form)
      assert(p:cmd("AT+QIDEACT=1"))
      t.match(outcome(p, "AT+QHTTPPOST=1,80,80", POSTED, { prompt = "CONNECT", data = "x" }).line,
        "^%+QHTTPPOST: 709", "context down")
    end)
  end
end)

---------------------------------------------------------------------------
-- Standalone
---------------------------------------------------------------------------

t.test("athost scripts/sim/ec200u.lua serves a separate athost -p; so does -p sim:ec200u",
  function()
  simtest.standalone(ROOT, DIR, "ec200u")
end)

---------------------------------------------------------------------------

for k, v in pairs(require("broker").start(DIR)) do B[k] = v end
MQ = mosq.new(B, DIR)

local passed, err = pcall(t.run)
shell(BROKER_SH .. " stop " .. DIR)
shell("rm -rf " .. DIR)
if not passed then error(err, 0) end
