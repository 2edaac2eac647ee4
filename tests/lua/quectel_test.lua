-- The Quectel family (lib/athost/dialect/quectel.lua, profile ec200u)
-- against fake modules on a pty that replay DIALECTS.md §1, §4.1 and §4.2
-- in every form it allows: outcome URCs after OK (and before it), the >
-- prompt with or without a space or a line end, +QMTRECV with and without
-- length and in buffered mode, QMTCONN and QMTOPEN result codes, QFUPL's
-- 405/407, HTTP with a known and an unknown length and its 7xx errors,
-- recovery after +QMTSTAT and +QIURC: "pdpdeact". A count or an order
-- that fits no reading gives one error naming what was expected and got.
local t = require("t")
local athost = require("athost")
local listen = require("listen")
local modem = require("athost.modem")
local session = require("athost.session")
local profile = require("athost.profile")

-- Starts a fake module: fn(mp) runs as a flow on the pty master. Returns
-- a modem on the slave (the ec200u profile, or `prof`) and finish(),
-- which waits for fn, closes both sides and raises if fn raised.
local function fake(fn, prof, opts)
  local mp, path = assert(athost.pty { name = "fakeEC200U" })
  local task = athost.spawn(function() return pcall(fn, mp) end)
  local p = assert(athost.open(path, { name = "dut", timeout = 5000 }))
  local mo = { profile = "ec200u", gap = "0" }
  for k, v in pairs(opts or {}) do mo[k] = v end
  local m = modem.new(p, mo)
  if prof then m.profile = prof end
  return m, function()
    local ok, err = task:join()
    p:close()
    mp:close()
    if not ok then error("fake module: " .. tostring(err), 2) end
  end
end

local function L(line) return "\r\n" .. line .. "\r\n" end
local OK = L("OK")

-- The module reads one command, checks it, answers.
local function answer(mp, want, reply)
  local line = assert(mp:readline { timeout = 5000 })
  if line ~= want then error(string.format("got %q, want %q", line, want), 2) end
  if reply then assert(mp:send(reply)) end
end

-- A command whose result is a URC: OK then the URC (§1.2: always so), or
-- the URC first when before is set (the engine takes either).
local function outcome(mp, want, urc, before)
  answer(mp, want, before and L(urc) .. OK or OK .. L(urc))
end

-- The module's side of connect(): the QMTCFG items, QMTOPEN, QMTCONN.
local function module_connect(mp, o)
  o = o or {}
  answer(mp, o.ssl or 'AT+QMTCFG="ssl",0,0', OK)
  answer(mp, 'AT+QMTCFG="version",0,4', OK)
  answer(mp, 'AT+QMTCFG="pdpcid",0,1', OK)
  answer(mp, 'AT+QMTCFG="keepalive",0,60', OK)
  answer(mp, 'AT+QMTCFG="session",0,1', OK)
  answer(mp, string.format('AT+QMTCFG="recv/mode",0,%d,1', o.cached and 1 or 0), OK)
  outcome(mp, 'AT+QMTOPEN=0,"broker.example.com",1883', "+QMTOPEN: 0,0", o.before)
  outcome(mp, 'AT+QMTCONN=0,"dev1","user","pass"', o.connack or "+QMTCONN: 0,0,0", o.before)
end

local BROKER = { host = "broker.example.com", port = 1883, client_id = "dev1",
  username = "user", password = "pass" }

local function opts(more)
  local o = {}
  for k, v in pairs(BROKER) do o[k] = v end
  for k, v in pairs(more or {}) do o[k] = v end
  return o
end

-- A payload with everything that breaks a line or a quoted field.
local NASTY = 'a\r\nb"c,d\0e\r"\n,z'

---------------------------------------------------------------------------
-- Identification and the bearer
---------------------------------------------------------------------------

t.test("identification: CGMI Quectel, ATI lines, CGMR with and without Revision:", function()
  for _, rev in ipairs({ "Revision: EC200UCNAAR03A14M08", "EC200UCNAAR03A14M08" }) do
    local mp, path = assert(athost.pty { name = "fakeEC200U" })
    local task = athost.spawn(function()
      return pcall(function()
        answer(mp, "AT", OK)
        answer(mp, "ATE0", OK)
        answer(mp, "AT+CGMI", L("Quectel") .. OK)
        answer(mp, "AT+CGMM", L("EC200U") .. OK)
        answer(mp, "AT+CGMR", L(rev) .. OK)
        answer(mp, "ATI", L("Quectel") .. L("EC200U") .. L("Revision: EC200UCNAAR03A14M08") .. OK)
        answer(mp, "AT+CMEE=2", OK)
      end)
    end)
    local p = assert(athost.open(path, { name = "dut", timeout = 5000 }))
    local m = modem.open(p, { gap = "0" })
    local ok, err = task:join()
    p:close()
    mp:close()
    t.ok(ok, tostring(err))
    t.eq(m.profile.name, "ec200u", "detected")
    t.eq(m.info.cgmr, "EC200UCNAAR03A14M08", "firmware without Revision:")
    t.eq(session.dialect(m), require("athost.dialect.quectel"), "the Quectel family")
  end
end)

t.test("bearer: QIACT? active is enough; 'already active' refusals are success", function()
  local m, finish = fake(function(mp)
    answer(mp, "AT+QIACT?", L('+QIACT: 1,1,1,"10.1.2.3"') .. OK)
  end)
  t.ok(m:bearer(), "already up")
  finish()
  m, finish = fake(function(mp)
    answer(mp, "AT+QIACT?", OK)
    answer(mp, 'AT+QICSGP=1,1,"CMIIOT","","",0', L("+CME ERROR: operation not allowed"))
    answer(mp, "AT+QIACT=1", L("ERROR"))
    answer(mp, "AT+QIACT?", L('+QIACT: 1,1,1,"10.1.2.3"') .. OK)
  end)
  t.ok(m:bearer(), "refusals taken as already active")
  finish()
  m, finish = fake(function(mp)
    answer(mp, "AT+QIACT?", OK)
    answer(mp, 'AT+QICSGP=1,1,"CMIIOT","","",0', OK)
    answer(mp, "AT+QIACT=1", L("ERROR"))
    answer(mp, "AT+QIACT?", L('+QIACT: 1,0,1,"0.0.0.0"') .. OK)
  end)
  local ok, err = pcall(m.bearer, m)
  finish()
  t.eq(ok, false, "down after all")
  t.match(err, '^AT%+QIACT=1 refused and AT%+QIACT%? says the bearer is down %("%+QIACT: 1,0', "message")
end)

---------------------------------------------------------------------------
-- Connect
---------------------------------------------------------------------------

t.test("connect: the §4.1 dialogue, URCs after OK and before it", function()
  for _, before in ipairs({ false, true }) do
    local m, finish = fake(function(mp) module_connect(mp, { before = before }) end)
    local s = session.mqtt(m, opts())
    t.ok(s:connect(), "connected")
    finish()
    t.eq(s.connected, true, "state")
  end
end)

t.test("QMTCONN: result and CONNACK code both 0, the refusals named", function()
  local cases = {
    { "+QMTCONN: 0,0,5", "^MQTT connect: the broker refused: .*CONNACK code 5: not authorised" },
    { "+QMTCONN: 0,0,4", "CONNACK code 4: bad user name or password" },
    { "+QMTCONN: 0,0,2", "CONNACK code 2: client id rejected" },
    { "+QMTCONN: 0,2", '^MQTT connect: the module said "%+QMTCONN: 0,2" %(send failed%)' },
    { "+QMTCONN: 0,1,0", "retransmitted" },
    { "+QMTCONN: 0,0", "no CONNACK code" },
  }
  for _, c in ipairs(cases) do
    local m, finish = fake(function(mp) module_connect(mp, { connack = c[1] }) end)
    local s = session.mqtt(m, opts())
    local ok, err = pcall(s.connect, s)
    finish()
    t.eq(ok, false, c[1])
    t.match(err, c[2], c[1])
    t.nomatch(err, '"pass"', "the password")
  end
end)

t.test("QMTOPEN: 2 after a stale session closes it and opens once more; codes named", function()
  local m, finish = fake(function(mp)
    for _, c in ipairs({ 'AT+QMTCFG="ssl",0,0', 'AT+QMTCFG="version",0,4',
        'AT+QMTCFG="pdpcid",0,1', 'AT+QMTCFG="keepalive",0,60',
        'AT+QMTCFG="session",0,1', 'AT+QMTCFG="recv/mode",0,0,1' }) do
      answer(mp, c, OK)
    end
    outcome(mp, 'AT+QMTOPEN=0,"broker.example.com",1883', "+QMTOPEN: 0,2")
    outcome(mp, "AT+QMTDISC=0", "+QMTDISC: 0,-1")
    answer(mp, "AT+QMTCLOSE=0", OK)           -- and no +QMTCLOSE, as on EC200U
    outcome(mp, 'AT+QMTOPEN=0,"broker.example.com",1883', "+QMTOPEN: 0,0")
    outcome(mp, 'AT+QMTCONN=0,"dev1","user","pass"', "+QMTCONN: 0,0,0")
  end)
  local s = session.mqtt(m, opts())
  t.ok(s:connect(), "connected on the second open")
  finish()
  for _, c in ipairs({ { "2", "client index occupied", true }, { "4", "DNS failure" },
                       { "-1", "failed to open the network" }, { "3", "PDP activation failed" },
                       { "5", "network connection error" }, { "1", "wrong parameter" } }) do
    m, finish = fake(function(mp)
      for _ = 1, 6 do assert(mp:readline { timeout = 5000 }) assert(mp:send(OK)) end
      outcome(mp, 'AT+QMTOPEN=0,"broker.example.com",1883', "+QMTOPEN: 0," .. c[1])
      if c[3] then
        outcome(mp, "AT+QMTDISC=0", "+QMTDISC: 0,0")
        answer(mp, "AT+QMTCLOSE=0", OK .. L("+QMTCLOSE: 0,0"))   -- a module that sends it
        outcome(mp, 'AT+QMTOPEN=0,"broker.example.com",1883', "+QMTOPEN: 0,2")
      end
    end)
    s = session.mqtt(m, opts())
    local ok, err = pcall(s.connect, s)
    finish()
    t.eq(ok, false, "code " .. c[1])
    t.match(err, '^connecting to broker.example.com:1883: the module said "%+QMTOPEN: 0,'
      .. c[1]:gsub("%-", "%%-") .. '" %(' .. c[2] .. "%)", "code " .. c[1])
  end
end)

---------------------------------------------------------------------------
-- TLS and files
---------------------------------------------------------------------------

local PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"

t.test("TLS: CA upload (QFDEL 405, QFUPL), QSSLCFG on ctx 2, ssl before every open", function()
  local got
  local m, finish = fake(function(mp)
    answer(mp, 'AT+QFDEL="UFS:ca.crt"', L("+CME ERROR: 405"))
    answer(mp, 'AT+QFUPL="UFS:ca.crt",' .. #PEM .. ",20000", L("CONNECT"))
    got = assert(mp:read(#PEM, { timeout = 5000 }))
    assert(mp:send(L("+QFUPL: " .. #PEM .. ",3a7f") .. OK))
    answer(mp, 'AT+QSSLCFG="sslversion",2,4', OK)
    answer(mp, 'AT+QSSLCFG="ciphersuite",2,0xFFFF', OK)
    answer(mp, 'AT+QSSLCFG="seclevel",2,1', OK)
    answer(mp, 'AT+QSSLCFG="cacert",2,"UFS:ca.crt"', OK)
    module_connect(mp, { ssl = 'AT+QMTCFG="ssl",0,1,2' })
  end)
  local f = session.tls(m, { level = 1, ca = PEM })
  t.eq(f.ca, "UFS:ca.crt", "the name the module knows")
  local s = session.mqtt(m, opts({ tls = true }))
  t.ok(s:connect(), "connected")
  finish()
  t.eq(got, PEM, "the bytes after CONNECT")
end)

t.test("TLS without session.tls: seclevel 0 on the context; plain after it sets ssl 0", function()
  local m, finish = fake(function(mp)
    answer(mp, 'AT+QSSLCFG="sslversion",2,4', OK)
    answer(mp, 'AT+QSSLCFG="ciphersuite",2,0xFFFF', OK)
    answer(mp, 'AT+QSSLCFG="seclevel",2,0', OK)
    module_connect(mp, { ssl = 'AT+QMTCFG="ssl",0,1,2' })
    answer(mp, "AT+QMTDISC=0", OK .. L("+QMTDISC: 0,0"))
    module_connect(mp, { ssl = 'AT+QMTCFG="ssl",0,0' })
  end)
  local s = session.mqtt(m, opts({ tls = true }))
  t.ok(s:connect(), "TLS, verifying nothing")
  s:disconnect()
  s = session.mqtt(m, opts())
  t.ok(s:connect(), "plain: ssl 0 again (EC200U keeps it until power cycle)")
  finish()
end)

t.test("QFUPL: 407 deletes again and retries; a size that differs is named", function()
  local m, finish = fake(function(mp)
    answer(mp, 'AT+QFDEL="UFS:k.pem"', OK)
    answer(mp, 'AT+QFUPL="UFS:k.pem",5,20000', L("+CME ERROR: 407"))
    answer(mp, 'AT+QFDEL="UFS:k.pem"', OK)
    answer(mp, 'AT+QFUPL="UFS:k.pem",5,20000', L("CONNECT"))
    assert(mp:read(5, { timeout = 5000 }))
    assert(mp:send(L("+QFUPL: 5,0") .. OK))
    answer(mp, 'AT+QFDEL="UFS:x"', L("+CME ERROR: 405"))
    answer(mp, 'AT+QFUPL="UFS:x",5,20000', L("CONNECT"))
    assert(mp:read(5, { timeout = 5000 }))
    assert(mp:send(L("+QFUPL: 4,0") .. OK))
    answer(mp, 'AT+QFDEL="UFS:y"', L("+CME ERROR: 418"))
  end)
  t.eq(session.upload(m, "k.pem", "12345"), "UFS:k.pem", "uploaded after 407")
  local ok, err = pcall(session.upload, m, "x", "12345")
  t.eq(ok, false, "size")
  t.match(err, '^uploading UFS:x %(5 bytes%): the module stored 4 bytes where 5 were sent '
    .. '%(it said "%+QFUPL: 4,0"%)', "message")
  ok, err = pcall(session.upload, m, "y", "12345")
  finish()
  t.eq(ok, false, "delete refused")
  t.match(err, "^deleting UFS:y before the upload: %+CME ERROR: 418", "message")
end)

t.test("QFUPL checksum: off by default, xor16 checks it in either byte order", function()
  local q = require("athost.dialect.quectel")
  local data = "\1\2\3\4\5"
  t.eq(q.xor16(data, true), 0x0102 ~ 0x0304 ~ 0x0500, "big-endian words")
  t.eq(q.xor16(data, false), 0x0201 ~ 0x0403 ~ 0x0005, "little-endian words")
  local p = profile.derive("ec200u", { files = { checksum = "xor16" } })
  for _, sum in ipairs({ string.format("%x", q.xor16(data, true)),
                         string.format("%X", q.xor16(data, false)), "beef" }) do
    local m, finish = fake(function(mp)
      answer(mp, 'AT+QFDEL="UFS:d"', OK)
      answer(mp, 'AT+QFUPL="UFS:d",5,20000', L("CONNECT"))
      assert(mp:read(5, { timeout = 5000 }))
      assert(mp:send(L("+QFUPL: 5," .. sum) .. OK))
    end, p)
    local ok, err = pcall(session.upload, m, "d", data)
    finish()
    if sum == "beef" then
      t.eq(ok, false, "a wrong checksum")
      t.match(err, "checksum beef, the data's 16%-bit XOR is 0706 %(or 0607", "message")
    else
      t.ok(ok, "checksum " .. sum .. ": " .. tostring(err))
    end
  end
end)

---------------------------------------------------------------------------
-- Subscribe and publish
---------------------------------------------------------------------------

-- A connected session on a fake that then runs more(mp).
local function connected(more, prof, o)
  local m, finish = fake(function(mp)
    module_connect(mp, { cached = o and o.delivery == "cached" })
    more(mp)
  end, prof)
  local s = session.mqtt(m, opts(o))
  assert(s:connect())
  return s, finish
end

t.test("subscribe: granted QoS taken; 128 and result 2 refused; a retransmission waited past", function()
  local s, finish = connected(function(mp)
    outcome(mp, 'AT+QMTSUB=0,1,"dev/in",1', "+QMTSUB: 0,1,0,1")
    answer(mp, 'AT+QMTSUB=0,2,"dev/x",0', OK .. L("+QMTSUB: 0,2,1,1") .. L("+QMTSUB: 0,2,0,0"))
    outcome(mp, 'AT+QMTSUB=0,3,"dev/no",1', "+QMTSUB: 0,3,0,128")
    outcome(mp, 'AT+QMTSUB=0,4,"dev/no",1', "+QMTSUB: 0,4,2")
    answer(mp, "AT+QMTCONN?", L("+QMTCONN: 0,3") .. OK)   -- still connected
    outcome(mp, 'AT+QMTUNS=0,5,"dev/in"', "+QMTUNS: 0,5,0")
  end)
  t.ok(s:subscribe("dev/in", 1), "subscribed")
  t.ok(s:subscribe("dev/x", 0), "after a retransmission notice")
  local ok, err = pcall(s.subscribe, s, "dev/no", 1)
  t.eq(ok, false, "128")
  t.match(err, '^subscribing to dev/no: refused by the broker: the module said '
    .. '"%+QMTSUB: 0,3,0,128" %(granted QoS 128%)', "message")
  ok, err = pcall(s.subscribe, s, "dev/no", 1)
  t.eq(ok, false, "result 2")
  t.match(err, '^subscribing to dev/no: refused: the module said "%+QMTSUB: 0,4,2" %(send failed%)',
    "message")
  t.ok(s:unsubscribe("dev/in"), "unsubscribed")
  finish()
  t.deepeq(s.subs, { ["dev/x"] = 0 }, "subscriptions")
end)

t.test("publish: > with or without space or line end, exact bytes, msgid 0 iff QoS 0", function()
  local got = {}
  local s, finish = connected(function(mp)
    for i, c in ipairs({
      { "AT+QMTPUBEX=0,0,0,0,\"dev/out\",5", ">", "+QMTPUBEX: 0,0,0" },
      { "AT+QMTPUBEX=0,1,1,0,\"dev/out\"," .. #NASTY, "> ", "+QMTPUBEX: 0,1,0" },
      { "AT+QMTPUBEX=0,2,1,1,\"dev/out\",3", "\r\n> ", "+QMTPUBEX: 0,2,0" },
    }) do
      answer(mp, c[1], c[2])
      got[i] = assert(mp:read(tonumber(c[1]:match("(%d+)$")), { timeout = 5000 }))
      assert(mp:send(OK .. (i == 2 and L("+QMTPUBEX: 0,1,1,1") or "") .. L(c[3])))
    end
  end)
  t.ok(s:publish("dev/out", "hello", 0), "QoS 0")
  t.ok(s:publish("dev/out", NASTY, 1), "QoS 1, the bytes that break lines and fields")
  t.ok(s:publish("dev/out", "end", 1, true), "retained")
  finish()
  t.deepeq(got, { "hello", NASTY, "end" }, "the bytes after the prompt")
  t.eq(s.stats.published, 3, "published")
end)

t.test("publish: result 2 refused; over the limit refused before sending; the QMTPUB form", function()
  local s, finish = connected(function(mp)
    answer(mp, 'AT+QMTPUBEX=0,1,1,0,"t",2', ">")
    assert(mp:read(2, { timeout = 5000 }))
    assert(mp:send(OK .. L("+QMTPUBEX: 0,1,2")))
    answer(mp, "AT+QMTCONN?", L("+QMTCONN: 1,1") .. L("+QMTCONN: 0,3") .. OK)
  end)
  local ok, err = pcall(s.publish, s, "t", "hi", 1)
  t.eq(ok, false, "result 2")
  t.match(err, '^publishing to t: refused: the module said "%+QMTPUBEX: 0,1,2" %(send failed%)', "message")
  ok, err = pcall(s.publish, s, "t", string.rep("x", 4097), 0)
  finish()
  t.eq(ok, false, "too long")
  t.match(err, "^publishing to t: 4097 bytes, the ec200u takes at most 4096", "message")
  local p = profile.derive("ec200u", { mqtt = { publish = "pub" } })
  s, finish = connected(function(mp)
    answer(mp, 'AT+QMTPUB=0,1,1,0,"t",2', ">")
    assert(mp:read(2, { timeout = 5000 }))
    assert(mp:send(OK .. L("+QMTPUB: 0,1,0")))
  end, p)
  t.ok(s:publish("t", "hi", 1), "the QMTPUB form")
  finish()
end)

---------------------------------------------------------------------------
-- Receiving
---------------------------------------------------------------------------

-- Listens until n messages came; returns them as "topic|payload".
local function take(s, n)
  local msgs = {}
  s:listen(5000, function(msg)
    msgs[#msgs + 1] = msg.topic .. "|" .. msg.payload
    if #msgs == n then return false end
  end)
  return msgs
end

t.test("+QMTRECV with length: CR LF \" , NUL byte-exact; without length when it frames", function()
  local s, finish = connected(function(mp)
    assert(mp:send(L('+QMTRECV: 0,3,"dev/in",' .. #NASTY .. ',"' .. NASTY .. '"')))
    assert(mp:send(L('+QMTRECV: 0,4,"dev/in",2,"hi"')))
    assert(mp:send(L('+QMTRECV: 0,0,"dev/in","a"b,c"')))   -- a module that ignores len_en
    assert(mp:send(L('+QMTRECV: 0,5,"dev/in",0,""')))
  end)
  local msgs = take(s, 4)
  finish()
  t.deepeq(msgs, { "dev/in|" .. NASTY, "dev/in|hi", 'dev/in|a"b,c', "dev/in|" }, "messages")
end)

t.test("messages keep their order when the listen wait takes one and handlers the next", function()
  -- The wait is woken after the URC handlers of the same read, so the
  -- line after the one it took reaches the session first: listen must
  -- still hand them over in the order they came.
  local s, finish = connected(function(mp)
    assert(mp:send(L('+QMTRECV: 0,1,"dev/in",1,"a"')))
    assert(mp:readline() == "AT")   -- listen took "a" and waits again
    assert(mp:send(L('+QMTRECV: 0,0,"dev/in","b"') .. L('+QMTRECV: 0,2,"dev/in",1,"c"')))
  end)
  local msgs = listen.poking(s, 3)
  finish()
  t.deepeq(msgs, { "a", "b", "c" }, "messages in the order they came")
end)

t.test("+QMTRECV that fits no reading: one error naming expected and got", function()
  for _, bad in ipairs({
    { '+QMTRECV: 0,1,"dev/in","a\r\nb"', "cannot be framed: expected %+QMTRECV: 0,<msgid>" },
    { '+QMTRECV: 0,1,"dev/in",3,"hello"', "announced" },
    { '+QMTRECV: 0,1,"dev/in",-2,"hi"', "negative" },
    { '+QMTRECV: 0,1,dev/in,hi', "cannot be framed" },
  }) do
    local s, finish = connected(function(mp) assert(mp:send(L(bad[1]))) end)
    local t0 = athost.now()
    local ok, err = pcall(s.listen, s, 5000, function() end)
    finish()
    t.eq(ok, false, bad[1])
    t.match(err, "^waiting for messages: ", "the step")
    t.match(err, bad[2], bad[1])
    t.ok(athost.now() - t0 < 4000, "at once, not at the end of listen")
  end
end)

t.test("buffered mode (delivery=cached): notice, AT+QMTRECV=0,<id>, byte-exact", function()
  local s, finish = connected(function(mp)
    assert(mp:send(L("+QMTRECV: 0,2")))
    answer(mp, "AT+QMTRECV=0,2", L('+QMTRECV: 0,7,"dev/in",' .. #NASTY .. ',"' .. NASTY .. '"') .. OK)
    assert(mp:send(L("+QMTRECV: 0,0") .. L("+QMTRECV: 0,1")))
    answer(mp, "AT+QMTRECV=0,0", L('+QMTRECV: 0,8,"dev/in",1,"x"') .. OK)
    answer(mp, "AT+QMTRECV=0,1", L('+QMTRECV: 0,9,"dev/in","y"') .. OK)
  end, nil, { delivery = "cached" })
  local msgs = take(s, 3)
  finish()
  t.deepeq(msgs, { "dev/in|" .. NASTY, "dev/in|x", "dev/in|y" }, "messages in order")
end)

t.test("options the family has no reading of are refused by name", function()
  local m, finish = fake(function() end)
  local ok, err = pcall(session.mqtt, m, opts({ mode = "hex" }))
  t.eq(ok, false, "hex")
  t.match(err, "^mode=hex: the ec200u has no such payload mode", "message")
  ok, err = pcall(session.mqtt, m, opts({ delivery = "slow" }))
  finish()
  t.eq(ok, false, "delivery")
  t.match(err, "^delivery=slow: direct or cached", "message")
end)

---------------------------------------------------------------------------
-- Recovery
---------------------------------------------------------------------------

t.test("+QMTSTAT: relink (QMTCLOSE), connect, resubscribe, the next publish arrives", function()
  for _, stat in ipairs({ "+QMTSTAT: 0,1", "+QMTSTAT: 0,2", "+QMTPING: 0,1" }) do
    local got
    local s, finish = connected(function(mp)
      outcome(mp, 'AT+QMTSUB=0,1,"dev/in",1', "+QMTSUB: 0,1,0,1")
      assert(mp:send(L(stat)))
      answer(mp, "AT+QMTCLOSE=0", L("ERROR"))      -- already closed: ignored
      module_connect(mp)
      outcome(mp, 'AT+QMTSUB=0,2,"dev/in",1', "+QMTSUB: 0,2,0,1")
      assert(mp:send(L('+QMTRECV: 0,1,"dev/in",5,"again"')))
      answer(mp, 'AT+QMTPUBEX=0,3,1,0,"dev/out",4', ">")
      got = assert(mp:read(4, { timeout = 5000 }))
      assert(mp:send(OK .. L("+QMTPUBEX: 0,3,0")))
    end)
    s:subscribe("dev/in", 1)
    local msgs = take(s, 1)
    local ok, err = pcall(s.publish, s, "dev/out", "next", 1)
    finish()
    t.ok(ok, tostring(err))
    t.deepeq(msgs, { "dev/in|again" }, "the message after the reconnect")
    t.eq(got, "next", "the next publish arrived")
    t.eq(s.stats.recovered, 1, "recovered once")
  end
end)

-- A QoS 1 publish whose first try the module answers with OK and
-- first_reply, then between(mp) (the recovery's first commands), a
-- connect and the second try. Returns the session, pcall's results and
-- the bytes of the second try.
local function publish_through(topic, payload, first_reply, between)
  local got
  local s, finish = connected(function(mp)
    answer(mp, string.format('AT+QMTPUBEX=0,1,1,0,"%s",%d', topic, #payload), ">")
    assert(mp:read(#payload, { timeout = 5000 }))
    assert(mp:send(OK .. first_reply))
    between(mp)
    module_connect(mp)
    answer(mp, string.format('AT+QMTPUBEX=0,2,1,0,"%s",%d', topic, #payload), ">")
    got = assert(mp:read(#payload, { timeout = 5000 }))
    assert(mp:send(OK .. L("+QMTPUBEX: 0,2,0")))
  end)
  local ok, err = pcall(s.publish, s, topic, payload, 1)
  finish()
  return s, ok, err, got
end

t.test("publish send failed (result 2) with the link going: AT+QMTCONN? tells, relink, the publish again", function()
  -- The +QMTSTAT after the result, while AT+QMTCONN? is asked, or never
  -- (the client is no longer listed, or listed in another state).
  for _, case in ipairs({
    { after = L("+QMTSTAT: 0,1"), conn = nil },
    { after = "", conn = L("+QMTSTAT: 0,1") .. OK },
    { after = "", conn = OK },
    { after = "", conn = L("+QMTCONN: 0,1") .. OK },
  }) do
    local s, ok, err, got = publish_through("dev/out", "next", L("+QMTPUBEX: 0,1,2") .. case.after,
      function(mp)
        if case.conn then answer(mp, "AT+QMTCONN?", case.conn) end
        answer(mp, "AT+QMTCLOSE=0", OK)
      end)
    t.ok(ok, tostring(err))
    t.eq(got, "next", "the publish arrived after the reconnect")
    t.eq(s.stats.recovered, 1, "recovered once")
    t.eq(s.stats.published, 1, "published once")
  end
end)

t.test("pdpdeact: QMTCLOSE, QIDEACT + QIACT ('already active' tolerated), network, MQTT", function()
  for _, loss in ipairs({ '+QIURC: "pdpdeact",1', "+CGEV: NW PDN DEACT 1" }) do
    local got
    local s, finish = connected(function(mp)
      outcome(mp, 'AT+QMTSUB=0,1,"dev/in",0', "+QMTSUB: 0,1,0,0")
      assert(mp:send(L(loss)))
      answer(mp, "AT+QMTCLOSE=0", OK)
      answer(mp, "AT+QIDEACT=1", OK)
      answer(mp, "AT+QIACT=1", L("+CME ERROR: operation not allowed"))
      answer(mp, "AT+CPIN?", L("+CPIN: READY") .. OK)
      answer(mp, "AT+CEREG?", L("+CEREG: 0,1") .. OK)
      answer(mp, "AT+CGATT?", L("+CGATT: 1") .. OK)
      module_connect(mp)
      outcome(mp, 'AT+QMTSUB=0,2,"dev/in",0', "+QMTSUB: 0,2,0,0")
      answer(mp, 'AT+QMTPUBEX=0,0,0,0,"dev/out",5', ">")
      got = assert(mp:read(5, { timeout = 5000 }))
      assert(mp:send(OK .. L("+QMTPUBEX: 0,0,0")))
    end)
    s:subscribe("dev/in", 0)
    t.eq(s:listen(300, function() end), 0, "no message")
    t.ok(s:publish("dev/out", "after", 0), "published after " .. loss)
    finish()
    t.eq(got, "after", "the next publish arrived")
    t.eq(s.stats.recovered, 1, "recovered once")
  end
end)

-- The module's side of the first rung and the network checks.
local function module_rung(mp)
  answer(mp, "AT+QMTCLOSE=0", OK)
  answer(mp, "AT+QIDEACT=1", OK)
  answer(mp, "AT+QIACT=1", OK)
  answer(mp, "AT+CPIN?", L("+CPIN: READY") .. OK)
  answer(mp, "AT+CEREG?", L("+CEREG: 0,1") .. OK)
  answer(mp, "AT+CGATT?", L("+CGATT: 1") .. OK)
end

t.test("pdpdeact ending a publish, +QMTSTAT after it: the bearer ladder, then the publish", function()
  for _, after in ipairs({ L("+QMTSTAT: 0,1"), "" }) do
    local s, ok, err, got = publish_through("t", "hi", L('+QIURC: "pdpdeact",1') .. after,
      module_rung)
    t.ok(ok, tostring(err))
    t.eq(got, "hi", "the publish after the recovery")
    t.eq(s.stats.recovered, 1, "recovered once")
  end
end)

t.test("+QMTOPEN: 3 while relinking: the next attempt climbs the bearer ladder", function()
  local s, finish = connected(function(mp)
    assert(mp:send(L("+QMTSTAT: 0,1")))
    answer(mp, "AT+QMTCLOSE=0", OK)
    for _, c in ipairs({ 'AT+QMTCFG="ssl",0,0', 'AT+QMTCFG="version",0,4',
        'AT+QMTCFG="pdpcid",0,1', 'AT+QMTCFG="keepalive",0,60',
        'AT+QMTCFG="session",0,1', 'AT+QMTCFG="recv/mode",0,0,1' }) do
      answer(mp, c, OK)
    end
    outcome(mp, 'AT+QMTOPEN=0,"broker.example.com",1883', "+QMTOPEN: 0,3")
    module_rung(mp)
    module_connect(mp)
  end, nil, { backoff_ms = 1 })
  t.eq(s:listen(500, function() end), 0, "no message")
  finish()
  t.eq(s.stats.recovered, 1, "recovered")
end)

t.test("a +QIURC pdpdeact of another context is no loss", function()
  local s, finish = connected(function(mp)
    assert(mp:send(L('+QIURC: "pdpdeact",2')))
    answer(mp, 'AT+QMTPUBEX=0,0,0,0,"t",1', ">")
    assert(mp:read(1, { timeout = 5000 }))
    assert(mp:send(OK .. L("+QMTPUBEX: 0,0,0")))
  end)
  t.eq(s:listen(200, function() end), 0, "no message")
  t.ok(s:publish("t", "x", 0), "published without a recovery")
  finish()
  t.eq(s.stats.recovered, 0, "no recovery")
end)

t.test("disconnect: QMTDISC, no QMTCLOSE on EC200U; with close_after_disc, not waited for", function()
  local s, finish = connected(function(mp)
    answer(mp, "AT+QMTDISC=0", OK .. L("+QMTDISC: 0,0") .. L("+QMTSTAT: 0,5"))
    answer(mp, "AT", OK)
  end)
  s:disconnect()
  assert(s.m:cmd("AT"))
  finish()
  t.eq(s.connected, false, "disconnected")
  local p = profile.derive("ec200u", { mqtt = { close_after_disc = true } })
  s, finish = connected(function(mp)
    answer(mp, "AT+QMTDISC=0", OK .. L("+QMTDISC: 0,0"))
    answer(mp, "AT+QMTCLOSE=0", OK)
  end, p)
  s:disconnect()
  finish()
end)

---------------------------------------------------------------------------
-- HTTP
---------------------------------------------------------------------------

local URL = "https://api.example.com/v1/form"
local FORM = "a=1&b=2"

-- The module's side of §4.2 up to the URL.
local function http_head(mp, ctype, https)
  answer(mp, 'AT+QHTTPCFG="contextid",1', OK)
  answer(mp, 'AT+QHTTPCFG="requestheader",0', OK)
  answer(mp, 'AT+QHTTPCFG="responseheader",0', OK)
  if ctype then answer(mp, 'AT+QHTTPCFG="contenttype",0', OK) end
  if https then
    answer(mp, 'AT+QSSLCFG="sslversion",2,4', OK)
    answer(mp, 'AT+QSSLCFG="ciphersuite",2,0xFFFF', OK)
    answer(mp, 'AT+QSSLCFG="seclevel",2,0', OK)
    answer(mp, 'AT+QHTTPCFG="sslctxid",2', OK)
  end
end

local function http_post(mp, url, result)
  http_head(mp, true, url:find("^https"))
  answer(mp, "AT+QHTTPURL=" .. #url .. ",80", L("CONNECT"))
  assert(mp:read(#url, { timeout = 5000 }) == url, "the URL")
  assert(mp:send(OK))
  answer(mp, "AT+QHTTPPOST=" .. #FORM .. ",80,80", L("CONNECT"))
  assert(mp:read(#FORM, { timeout = 5000 }) == FORM, "the body")
  assert(mp:send(OK .. L(result)))
end

local CT = "application/x-www-form-urlencoded"

t.test("HTTP POST and read: known length, unknown length, split bytes, +QHTTPREAD before or after OK", function()
  local body = '{"code":200,\r\n"x":"OK"}\r\nOK\r\n tail'
  local m, finish = fake(function(mp)
    http_post(mp, URL, "+QHTTPPOST: 0,200," .. #body)
    answer(mp, "AT+QHTTPREAD=80", L("CONNECT") .. body .. OK .. L("+QHTTPREAD: 0"))
    -- Without a length: up to the OK +QHTTPREAD follows, bytes one by one.
    http_post(mp, URL, "+QHTTPPOST: 0,200")
    answer(mp, "AT+QHTTPREAD=80")
    for c in (L("CONNECT") .. body .. OK .. L("+QHTTPREAD: 0")):gmatch(".") do
      assert(mp:send(c))
    end
    -- +QHTTPREAD before OK (as other outcomes may come), both ways.
    http_post(mp, URL, "+QHTTPPOST: 0,200," .. #body)
    answer(mp, "AT+QHTTPREAD=80", L("CONNECT") .. body .. L("+QHTTPREAD: 0") .. OK)
    http_post(mp, URL, "+QHTTPPOST: 0,200")
    answer(mp, "AT+QHTTPREAD=80", L("CONNECT") .. body .. L("+QHTTPREAD: 0") .. OK)
    -- Line noise between the lines around a counted body.
    http_post(mp, URL, "+QHTTPPOST: 0,200," .. #body)
    answer(mp, "AT+QHTTPREAD=80", L("\0\27~\255") .. L("CONNECT") .. body
      .. L("\0\1garbage") .. OK .. L("\0\255") .. L("+QHTTPREAD: 0"))
    -- An empty body announced as 0: no read.
    http_post(mp, "http://h/x", "+QHTTPPOST: 0,204,0")
    -- An empty body of unknown length.
    http_post(mp, "http://h/x", "+QHTTPPOST: 0,200")
    answer(mp, "AT+QHTTPREAD=80", L("CONNECT") .. OK .. L("+QHTTPREAD: 0"))
  end)
  local seen
  local status, text = session.http(m, "POST", URL, FORM, CT, { seen = function(b) seen = b end })
  t.eq(status, 200, "status")
  t.eq(text, body, "the body, byte-exact")
  t.eq(seen, body, "seen before anything else")
  status, text = session.http(m, "POST", URL, FORM, CT)
  t.eq(text, body, "the body up to the last OK")
  status, text = session.http(m, "POST", URL, FORM, CT)
  t.eq(text, body, "known length, +QHTTPREAD before OK")
  status, text = session.http(m, "POST", URL, FORM, CT)
  t.eq(text, body, "unknown length, +QHTTPREAD before OK")
  status, text = session.http(m, "POST", URL, FORM, CT)
  t.eq(text, body, "noise lines around it skipped")
  status, text = session.http(m, "POST", "http://h/x", FORM, CT)
  t.eq(status, 204, "status")
  t.eq(text, "", "no body")
  status, text = session.http(m, "POST", "http://h/x", FORM, CT)
  t.eq(text, "", "an empty body")
  finish()
end)

t.test("HTTP errors: 7xx named (outcome or CME), QHTTPREAD err, counts that fit no reading", function()
  local cases = {
    { function(mp) http_post(mp, URL, "+QHTTPPOST: 702") end,
      'HTTP request to ' .. URL .. ': the module said "%+QHTTPPOST: 702": 702 %(timeout%)' },
    { function(mp)
        http_head(mp, true, true)
        answer(mp, "AT+QHTTPURL=" .. #URL .. ",80", L("CONNECT"))
        assert(mp:read(#URL, { timeout = 5000 }))
        assert(mp:send(OK))
        answer(mp, "AT+QHTTPPOST=" .. #FORM .. ",80,80", L("+CME ERROR: 703"))
      end, "%+CME ERROR: 703 at AT%+QHTTPPOST %(busy%)" },
    { function(mp)
        http_post(mp, URL, "+QHTTPPOST: 0,200,5")
        answer(mp, "AT+QHTTPREAD=80", L("CONNECT") .. "hello" .. OK .. L("+QHTTPREAD: 717"))
      end, "HTTP read of .*: %+QHTTPREAD: 717 %(socket read error%)" },
    { function(mp)
        http_post(mp, URL, "+QHTTPPOST: 0,200,3")
        answer(mp, "AT+QHTTPREAD=80", L("CONNECT") .. "hello" .. OK .. L("+QHTTPREAD: 0"))
      end, 'expected OK or %+QHTTPREAD after the 3 bytes announced, the module said "lo"' },
    { function(mp)
        http_post(mp, URL, "+QHTTPPOST: 0,200,3")
        answer(mp, "AT+QHTTPREAD=80", L("+CME ERROR: 705"))
      end, "HTTP read of .*: %+CME ERROR: 705 at AT%+QHTTPREAD=80 %(no request%)" },
    { function(mp) http_post(mp, URL, "+QHTTPPOST: 0,200,-4") end,
      "a length that is no count" },
  }
  for i, c in ipairs(cases) do
    local m, finish = fake(c[1])
    local ok, err = pcall(session.http, m, "POST", URL, FORM, CT, { timeout = 3000 })
    finish()
    t.eq(ok, false, "case " .. i)
    t.match(err, c[2], "case " .. i)
  end
  -- A MIME type without a known index is refused before anything is sent
  -- but the settings.
  local m, finish = fake(function(mp)
    answer(mp, 'AT+QHTTPCFG="contextid",1', OK)
    answer(mp, 'AT+QHTTPCFG="requestheader",0', OK)
    answer(mp, 'AT+QHTTPCFG="responseheader",0', OK)
  end)
  local ok, err = pcall(session.http, m, "POST", URL, "{}", "application/cbor")
  finish()
  t.eq(ok, false, "cbor")
  t.match(err, 'its index of "application/cbor" is unknown: add it to the profile\'s '
    .. "http.content_types", "message")
end)

t.test("HTTP GET: QHTTPGET, +QHTTPGET outcome, the read", function()
  local m, finish = fake(function(mp)
    http_head(mp, nil, false)
    answer(mp, "AT+QHTTPURL=9,80", L("CONNECT"))
    assert(mp:read(9, { timeout = 5000 }))
    assert(mp:send(OK))
    outcome(mp, "AT+QHTTPGET=80", "+QHTTPGET: 0,200,2")
    answer(mp, "AT+QHTTPREAD=80", L("CONNECT") .. "ok" .. OK .. L("+QHTTPREAD: 0"))
  end)
  local status, text = session.http(m, "GET", "http://h/", nil, nil)
  finish()
  t.eq(status, 200, "status")
  t.eq(text, "ok", "body")
end)

t.run()
