-- The SIMCom family (lib/athost/dialect/simcom.lua, profile a7670) against
-- a fake module on a pty replaying DIALECTS.md §4.3 and §4.4 in every form
-- §2 allows: outcome URCs before and after the final result, the failure
-- forms (OK+URC, ERROR+URC, URC+ERROR, bare ERROR), the prompt forms, the
-- +CMQTTRX block in one and several pieces with and without CR LF after
-- the raw bytes, HTTPREAD chunks (+HTTPREAD: n and DATA,n), CCERTDOWN,
-- and recovery after +CMQTTCONNLOST, +CMQTTNONET and +CGEV: NW PDN DEACT.
local t = require("t")
local athost = require("athost")
local listen = require("listen")
local modem = require("athost.modem")
local session = require("athost.session")
local profile = require("athost.profile")

local function L(line) return "\r\n" .. line .. "\r\n" end
local OK, ERR = L("OK"), L("ERROR")

-- The URC line and the final result in the order asked.
local function around(line, before, final)
  final = final or OK
  return before and L(line) .. final or final .. L(line)
end

-- Starts a fake module: fn(mp) runs on the pty master. Returns a modem on
-- the slave (profile a7670, or opts.profile) and finish(), which waits
-- for fn, closes both sides and raises if fn raised.
local function fake(fn, opts)
  opts = opts or {}
  local mp, path = assert(athost.pty { name = "fake7670" })
  local task = athost.spawn(function() return pcall(fn, mp) end)
  local p = assert(athost.open(path, { name = "dut", timeout = 5000 }))
  local mo = { profile = "a7670", gap = "0", error_urc_timeout = "300",
               disc_lost_timeout = "500" }
  for k, v in pairs(opts.modem or {}) do mo[k] = v end
  local m = modem.new(p, mo)
  if opts.profile then m.profile = opts.profile end
  return m, function()
    local ok, err = task:join()
    p:close()
    mp:close()
    if not ok then error("fake module: " .. tostring(err), 2) end
  end
end

-- The module reads one command: exactly its bytes and the CR, nothing
-- before them (a stray terminator after counted data would show here).
local function want(mp, cmd)
  local got, err = mp:read(#cmd + 1, { timeout = 5000 })
  if got ~= cmd .. "\r" then
    error(string.format("got %q, want %q (%s)", tostring(got), cmd .. "\r",
      tostring(err or mp:recv(200, { timeout = 10 }))), 2)
  end
end

local function answer(mp, cmd, reply)
  want(mp, cmd)
  if reply then assert(mp:send(reply)) end
end

-- A command with a data prompt: the prompt, exactly n bytes, then reply.
-- Returns the bytes.
local function data(mp, cmd, prompt, n, reply)
  want(mp, cmd)
  assert(mp:send(prompt))
  local got = assert(mp:read(n, { timeout = 5000 }))
  if reply then assert(mp:send(reply)) end
  return got
end

-- The plain-TCP connect of §4.3: START, REL (nothing to release), ACCQ,
-- CFG version 4, CONNECT; the outcomes before or after OK.
local function connect_dialogue(mp, o)
  o = o or {}
  if o.started then
    answer(mp, "AT+CMQTTSTART", ERR)
  else
    answer(mp, "AT+CMQTTSTART", around("+CMQTTSTART: 0", o.before))
  end
  answer(mp, "AT+CMQTTREL=0", ERR)
  answer(mp, 'AT+CMQTTACCQ=0,"dev1",0', OK)
  answer(mp, 'AT+CMQTTCFG="version",0,4', OK)
  answer(mp, 'AT+CMQTTCONNECT=0,"tcp://broker.example.com:1883",60,1,"user","pw-5ecret"',
    around("+CMQTTCONNECT: 0,0", o.before))
end

local OPTS = { host = "broker.example.com", port = 1883, client_id = "dev1",
  username = "user", password = "pw-5ecret", retries = 2, backoff_ms = 10 }

local function copy(o, changes)
  local out = {}
  for k, v in pairs(o) do out[k] = v end
  for k, v in pairs(changes or {}) do out[k] = v end
  return out
end

---------------------------------------------------------------------------
-- Identification
---------------------------------------------------------------------------

t.test("detection: SIMCOM INCORPORATED, an A76xx's Manufacturer: INCORPORATED, SIM7600", function()
  local cases = {
    { "SIMCOM INCORPORATED", "A7670C-LASE", "A124B01A7670M7" },
    { "INCORPORATED", "A7670E-LNXY-UBL", "A124B01A7670M7" },
    { "SIMCOM INCORPORATED", "SIMCOM_SIM7600E-H", "LE20B04SIM7600G22" },
  }
  for _, c in ipairs(cases) do
    local mp, path = assert(athost.pty { name = "fake7670" })
    local task = athost.spawn(function()
      return pcall(function()
        answer(mp, "AT+CGMI", L(c[1]) .. OK)
        answer(mp, "AT+CGMM", L(c[2]) .. OK)
        answer(mp, "AT+CGMR", L("+CGMR: " .. c[3]) .. OK)
        answer(mp, "ATI", L("Manufacturer: " .. c[1]) .. L("Model: " .. c[2]) .. OK)
      end)
    end)
    local p = assert(athost.open(path, { name = "dut", timeout = 5000 }))
    local m = modem.new(p, { gap = "0" })
    local prof = m:identify()
    local ok, err = task:join()
    p:close()
    mp:close()
    t.ok(ok, tostring(err))
    t.eq(prof.name, "a7670", "profile for " .. c[2])
    t.eq(prof.dialect, "simcom", "dialect")
  end
end)

---------------------------------------------------------------------------
-- TLS, certificates
---------------------------------------------------------------------------

t.test("§4.3 TLS: CCERTDOWN of ca.crt as ca_crt.pem, CSSLCFG, ACCQ server_type 1, tcp:// address", function()
  local pem = "-----BEGIN CERTIFICATE-----\nMIIB" .. string.rep("A", 1100)
    .. "\n-----END CERTIFICATE-----"
  local got
  local m, finish = fake(function(mp)
    got = data(mp, 'AT+CCERTDOWN="ca_crt.pem",' .. #pem, ">", #pem, OK)
    answer(mp, 'AT+CSSLCFG="sslversion",0,4', OK)
    answer(mp, 'AT+CSSLCFG="authmode",0,1', OK)
    answer(mp, 'AT+CSSLCFG="cacert",0,"ca_crt.pem"', OK)
    answer(mp, 'AT+CSSLCFG="enableSNI",0,1', OK)
    answer(mp, "AT+CMQTTSTART", OK .. L("+CMQTTSTART: 0"))
    answer(mp, "AT+CMQTTREL=0", ERR)
    answer(mp, 'AT+CMQTTACCQ=0,"dev1",1', OK)
    answer(mp, "AT+CMQTTSSLCFG=0,0", OK)
    answer(mp, 'AT+CMQTTCFG="version",0,4', OK)
    answer(mp, 'AT+CMQTTCONNECT=0,"tcp://broker.example.com:8883",60,1,"user","pw-5ecret"',
      OK .. L("+CMQTTCONNECT: 0,0"))
  end)
  local files = session.tls(m, { level = 1, ca = pem })
  t.eq(files.ca, "ca_crt.pem", "the name on the module")
  local s = session.mqtt(m, copy(OPTS, { port = 8883, tls = true }))
  t.ok(s:connect(), "connected")
  finish()
  t.eq(got, pem, "the certificate's bytes, exactly")
end)

t.test("tls without settings: authmode 0; mutual TLS: authmode 2 and the client files", function()
  local m, finish = fake(function(mp)
    answer(mp, 'AT+CSSLCFG="sslversion",0,4', OK)
    answer(mp, 'AT+CSSLCFG="authmode",0,0', OK)
    answer(mp, 'AT+CSSLCFG="enableSNI",0,1', OK)
  end)
  require("athost.dialect.simcom").tls(m, { level = 0 })
  finish()
  local key = "-----BEGIN PRIVATE KEY-----\nKEY\n-----END PRIVATE KEY-----"
  local got = {}
  m, finish = fake(function(mp)
    got.ca = data(mp, 'AT+CCERTDOWN="ca.pem",2', "> ", 2, OK)
    got.cert = data(mp, 'AT+CCERTDOWN="dev.der",3', "\r\n>", 3, OK)
    got.key = data(mp, 'AT+CCERTDOWN="client_key.pem",' .. #key, "\r\n> ", #key, OK)
    answer(mp, 'AT+CSSLCFG="sslversion",0,4', OK)
    answer(mp, 'AT+CSSLCFG="authmode",0,2', OK)
    answer(mp, 'AT+CSSLCFG="cacert",0,"ca.pem"', OK)
    answer(mp, 'AT+CSSLCFG="clientcert",0,"dev.der"', OK)
    answer(mp, 'AT+CSSLCFG="clientkey",0,"client_key.pem"', OK)
    answer(mp, 'AT+CSSLCFG="enableSNI",0,1', OK)
  end)
  local files = session.tls(m, { level = 2, ca = "CA", cert = "\0\1\2", key = key,
    names = { ca = "ca.pem", cert = "dev.der" } })
  finish()
  t.deepeq(files, { level = 2, ca = "ca.pem", cert = "dev.der", key = "client_key.pem" },
    "names on the module")
  t.deepeq(got, { ca = "CA", cert = "\0\1\2", key = key }, "bytes after each prompt form")
end)

t.test("CCERTDOWN: ERROR names the file; too big or a bad name is refused before sending", function()
  local m, finish = fake(function(mp) answer(mp, 'AT+CCERTDOWN="ca.pem",3', ERR) end)
  local err = t.raises(function() session.upload(m, "ca.pem", "abc") end, "uploading ca.pem")
  t.match(err, "ERROR", "the module's answer")
  finish()
  m, finish = fake(function() end)
  err = t.raises(function() session.upload(m, "big.pem", string.rep("x", 10241)) end,
    "10241 bytes; the a7670 takes 1-10240")
  err = t.raises(function() session.upload(m, 'a"b', "x") end, "double quote")
  finish()
end)

---------------------------------------------------------------------------
-- Connect
---------------------------------------------------------------------------

t.test("connect: +CMQTTCONNECT after OK and before it; START already started is fine", function()
  for _, v in ipairs({ { before = false }, { before = true }, { started = true } }) do
    local m, finish = fake(function(mp) connect_dialogue(mp, v) end)
    local s = session.mqtt(m, OPTS)
    t.ok(s:connect(), "connected")
    t.ok(s.connected, "state")
    finish()
  end
end)

t.test("connect failures in every documented form name the code", function()
  local forms = {
    { name = "OK+URC", reply = OK .. L("+CMQTTCONNECT: 0,32"), code = "32: handshake failed" },
    { name = "ERROR+URC", reply = ERR .. L("+CMQTTCONNECT: 0,30"),
      code = "30: connection refused: bad user name or password" },
    { name = "URC+ERROR", reply = L("+CMQTTCONNECT: 0,25") .. ERR, code = "25: DNS error" },
    { name = "bare ERROR", reply = ERR, code = nil },
  }
  for _, f in ipairs(forms) do
    local m, finish = fake(function(mp)
      answer(mp, "AT+CMQTTSTART", OK .. L("+CMQTTSTART: 0"))
      answer(mp, "AT+CMQTTREL=0", ERR)
      answer(mp, 'AT+CMQTTACCQ=0,"dev1",0', OK)
      answer(mp, 'AT+CMQTTCFG="version",0,4', OK)
      answer(mp, 'AT+CMQTTCONNECT=0,"tcp://broker.example.com:1883",60,1,"user","pw-5ecret"',
        f.reply)
      answer(mp, "AT", OK)
    end)
    local s = session.mqtt(m, OPTS)
    local ok, err = pcall(s.connect, s)
    t.eq(ok, false, f.name .. ": fails")
    t.match(err, "^connecting to broker.example.com:1883: ", f.name .. ": the step")
    if f.code then
      t.match(err, "(" .. f.code:gsub("%p", "%%%0") .. ")", f.name .. ": the code named")
    else
      t.match(err, "ERROR", f.name .. ": the module's word")
    end
    t.nomatch(err, "pw-5ecret", f.name .. ": no password")
    -- The next command gets its own answer, not a leftover ERROR.
    t.ok(m:cmd("AT"), f.name .. ": the port is in step")
    finish()
  end
end)

t.test("ACCQ: client used (19, or a bare ERROR) is disconnected, released and acquired again; other codes named", function()
  for _, used in ipairs({ L("+CMQTTACCQ: 0,19") .. ERR, ERR }) do
    local m, finish = fake(function(mp)
      answer(mp, "AT+CMQTTSTART", OK .. L("+CMQTTSTART: 0"))
      answer(mp, "AT+CMQTTREL=0", L("+CME ERROR: 21"))
      answer(mp, 'AT+CMQTTACCQ=0,"dev1",0', used)
      answer(mp, "AT+CMQTTDISC=0,120", L("+CMQTTDISC: 0,0") .. OK)
      answer(mp, "AT+CMQTTREL=0", OK)
      answer(mp, 'AT+CMQTTACCQ=0,"dev1",0', OK)
      answer(mp, 'AT+CMQTTCFG="version",0,4', OK)
      answer(mp, 'AT+CMQTTCONNECT=0,"tcp://broker.example.com:1883",60,1,"user","pw-5ecret"',
        OK .. L("+CMQTTCONNECT: 0,0"))
    end)
    local s = session.mqtt(m, OPTS)
    t.ok(s:connect(), "connected after clearing the stale client")
    finish()
  end
  local m, finish = fake(function(mp)
    answer(mp, "AT+CMQTTSTART", OK .. L("+CMQTTSTART: 0"))
    answer(mp, "AT+CMQTTREL=0", ERR)
    answer(mp, 'AT+CMQTTACCQ=0,"dev1",0', L("+CMQTTACCQ: 0,10") .. ERR)
  end)
  local s = session.mqtt(m, OPTS)
  local err = t.raises(function() s:connect() end, "acquiring MQTT client 0")
  t.match(err, '"%+CMQTTACCQ: 0,10" %(10: client index error%)', "the code named")
  finish()
end)

t.test("connect refuses what an AT string cannot carry, naming the field only", function()
  local m, finish = fake(function() end)
  local s = session.mqtt(m, copy(OPTS, { password = 'se"cret' }))
  local err = t.raises(function() s:connect() end, "password contains a double quote")
  t.nomatch(err, "se\"cret", "the value")
  s = session.mqtt(m, copy(OPTS, { client_id = string.rep("c", 129) }))
  t.raises(function() s:connect() end, "client_id is 129 bytes; the a7670 takes at most 128")
  t.raises(function() session.mqtt(m, copy(OPTS, { mode = "hex" })) end, "no HEX mode")
  finish()
end)

---------------------------------------------------------------------------
-- Subscribe, unsubscribe, publish
---------------------------------------------------------------------------

t.test("subscribe in one step: each prompt form, +CMQTTSUB after or before OK", function()
  local got = {}
  local m, finish = fake(function(mp)
    got[1] = data(mp, "AT+CMQTTSUB=0,6,1", ">", 6, around("+CMQTTSUB: 0,0", false))
    got[2] = data(mp, "AT+CMQTTSUB=0,5,0", "> ", 5, around("+CMQTTSUB: 0,0", true))
    got[3] = data(mp, "AT+CMQTTSUB=0,3,1", "\r\n> ", 3, around("+CMQTTSUB: 0,0", false))
    got[4] = data(mp, "AT+CMQTTSUB=0,3,0", "\r\n>", 3, around("+CMQTTSUB: 0,0", true))
  end)
  local s = session.mqtt(m, OPTS)
  t.ok(s:subscribe("dev/in", 1), "> ")
  t.ok(s:subscribe("a/b/c", 0), "> and a space")
  t.ok(s:subscribe("x/#", 1), "CR LF >")
  t.ok(s:subscribe("y/+", 0), "CR LF > without the space")
  finish()
  t.deepeq(got, { "dev/in", "a/b/c", "x/#", "y/+" }, "the topics' bytes")
  t.deepeq(s.subs, { ["dev/in"] = 1, ["a/b/c"] = 0, ["x/#"] = 1, ["y/+"] = 0 }, "subscriptions")
end)

t.test("subscribe refused: +CMQTTSUB: 0,<err> after OK, before ERROR, ERROR then URC", function()
  for _, reply in ipairs({ OK .. L("+CMQTTSUB: 0,11"), L("+CMQTTSUB: 0,12") .. ERR,
                           ERR .. L("+CMQTTSUB: 0,18") }) do
    local code = reply:match("0,(%d+)")
    local m, finish = fake(function(mp)
      data(mp, "AT+CMQTTSUB=0,3,0", ">", 3, reply)
      -- 11 (no connection): a lost link, recovered once, then refused again.
      if code == "11" then
        answer(mp, "AT+CMQTTDISC=0,120", ERR)
        answer(mp, "AT+CMQTTREL=0", OK)
        connect_dialogue(mp)
        data(mp, "AT+CMQTTSUB=0,3,0", ">", 3, OK .. L("+CMQTTSUB: 0,13"))
      end
    end)
    local s = session.mqtt(m, OPTS)
    local err = t.raises(function() s:subscribe("t/x", 0) end, "subscribing to t/x")
    if code == "11" then
      t.match(err, "13: not supported operation", "refused after the recovery")
      t.eq(s.stats.recovered, 1, "recovered once")
    else
      t.match(err, '"%+CMQTTSUB: 0,' .. code .. '" %(' .. code .. ": ", "the code: " .. code)
    end
    t.eq(s.subs["t/x"], nil, "not subscribed")
    finish()
  end
end)

t.test("unsubscribe: two steps (UNSUBTOPIC, UNSUB) by default, one step by profile", function()
  local got = {}
  local m, finish = fake(function(mp)
    got[1] = data(mp, "AT+CMQTTUNSUBTOPIC=0,6", ">", 6, OK)
    answer(mp, "AT+CMQTTUNSUB=0,0", L("+CMQTTUNSUB: 0,0") .. OK)
  end)
  local s = session.mqtt(m, OPTS)
  s.subs["dev/in"] = 1
  t.ok(s:unsubscribe("dev/in"), "two steps")
  t.eq(s.subs["dev/in"], nil, "gone")
  finish()
  local one = profile.derive("a7670", { mqtt = { unsub_steps = 1 } })
  m, finish = fake(function(mp)
    got[2] = data(mp, "AT+CMQTTUNSUB=0,6,0", "> ", 6, OK .. L("+CMQTTUNSUB: 0,0"))
  end, { profile = one })
  s = session.mqtt(m, OPTS)
  t.ok(s:unsubscribe("dev/in"), "one step")
  finish()
  t.deepeq(got, { "dev/in", "dev/in" }, "the topic's bytes")
end)

t.test("publish: TOPIC and PAYLOAD exact bytes (CR, LF, quote, comma, NUL), PUB outcome both orders", function()
  local payloads = { "hello", 'a\r\nb,"c"\0d\r', string.rep("z", 10240) }
  local got = {}
  local m, finish = fake(function(mp)
    for i, pl in ipairs(payloads) do
      local qos = (i - 1) % 2
      got[#got + 1] = data(mp, "AT+CMQTTTOPIC=0,7", ">", 7, OK)
      got[#got + 1] = data(mp, "AT+CMQTTPAYLOAD=0," .. #pl, i == 2 and "\r\n> " or ">", #pl, OK)
      answer(mp, "AT+CMQTTPUB=0," .. qos .. ",60", around("+CMQTTPUB: 0,0", i == 2))
    end
    got[#got + 1] = data(mp, "AT+CMQTTTOPIC=0,7", ">", 7, OK)
    got[#got + 1] = data(mp, "AT+CMQTTPAYLOAD=0,1", ">", 1, OK)
    answer(mp, "AT+CMQTTPUB=0,1,60,1", OK .. L("+CMQTTPUB: 0,0"))
  end)
  local s = session.mqtt(m, OPTS)
  for i, pl in ipairs(payloads) do t.ok(s:publish("dev/out", pl, (i - 1) % 2), "published " .. i) end
  t.ok(s:publish("dev/out", "r", 1, true), "retained")
  finish()
  t.deepeq(got, { "dev/out", payloads[1], "dev/out", payloads[2], "dev/out", payloads[3],
    "dev/out", "r" }, "bytes after the prompts")
  t.eq(s.stats.published, 4, "published")
end)

t.test("publish: +CMQTTPUB: 0,17 names the timeout; over 10240 bytes refused before sending", function()
  local m, finish = fake(function(mp)
    data(mp, "AT+CMQTTTOPIC=0,1", ">", 1, OK)
    data(mp, "AT+CMQTTPAYLOAD=0,1", ">", 1, OK)
    answer(mp, "AT+CMQTTPUB=0,1,60", OK .. L("+CMQTTPUB: 0,17"))
  end)
  local s = session.mqtt(m, OPTS)
  local err = t.raises(function() s:publish("t", "x", 1) end, "publishing to t")
  t.match(err, "%(17: timeout%)", "the code named")
  t.raises(function() s:publish("t", string.rep("x", 10241), 0) end,
    "a 10241-byte payload; the a7670 takes 1-10240")
  finish()
  t.eq(s.stats.published, 0, "nothing published")
end)

---------------------------------------------------------------------------
-- Receiving: the +CMQTTRX block
---------------------------------------------------------------------------

-- A block: topic and payload in pieces of the sizes given, CR LF after
-- the raw bytes or not.
local function block(topic, payload, tsizes, psizes, crlf)
  local out = { L(string.format("+CMQTTRXSTART: 0,%d,%d", #topic, #payload)):sub(3) }
  local function pieces(kind, s, sizes)
    local i = 1
    for _, n in ipairs(sizes) do
      out[#out + 1] = string.format("+CMQTTRX%s: 0,%d\r\n", kind, n) .. s:sub(i, i + n - 1)
        .. (crlf and "\r\n" or "")
      i = i + n
    end
  end
  pieces("TOPIC", topic, tsizes)
  pieces("PAYLOAD", payload, psizes)
  out[#out + 1] = "+CMQTTRXEND: 0\r\n"
  return "\r\n" .. table.concat(out)
end

-- Sends the blocks after the host's AT (its OK first), then in pieces of
-- `split` bytes; the host listens until n messages came.
local function receive(blocks, n, split)
  local m, finish = fake(function(mp)
    answer(mp, "AT", OK)
    local all = table.concat(blocks)
    local step = split or #all
    for i = 1, #all, step do assert(mp:send(all:sub(i, i + step - 1))) end
  end)
  local s = session.mqtt(m, OPTS)
  assert(m:cmd("AT"))
  local msgs = {}
  local ok, err = pcall(s.listen, s, 5000, function(msg)
    msgs[#msgs + 1] = msg
    if #msgs == n then return false end
  end)
  finish()
  return msgs, ok, err
end

t.test("a block in one piece, CR LF after the raw bytes and not", function()
  for _, crlf in ipairs({ true, false }) do
    local msgs, ok, err = receive({ block("dev/in", "hi", { 6 }, { 2 }, crlf) }, 1)
    t.ok(ok, tostring(err))
    t.deepeq(msgs, { { topic = "dev/in", payload = "hi" } }, "crlf=" .. tostring(crlf))
  end
end)

t.test("payloads with CR, LF, quote, comma, NUL and +CMQTT text are byte-exact", function()
  local p1 = '\r\n+CMQTTRXEND: 0\r\n,"x",\0\0\r'
  local p2 = "\n"
  local p3 = "+CMQTTRXPAYLOAD: 0,3\r\nabc"
  for _, crlf in ipairs({ true, false }) do
    local msgs, ok, err = receive({ block("a/b", p1, { 3 }, { #p1 }, crlf),
      block("c", p2, { 1 }, { 1 }, crlf), block("t/\0", p3, { 3 }, { #p3 }, crlf) }, 3, 7)
    t.ok(ok, tostring(err))
    t.deepeq(msgs, { { topic = "a/b", payload = p1 }, { topic = "c", payload = p2 },
      { topic = "t/\0", payload = p3 } }, "crlf=" .. tostring(crlf))
  end
end)

t.test("blocks keep their order when the listen wait takes one end and the handler the next", function()
  -- The wait is woken after the URC handlers of the same read: the end
  -- of the block after the one it took reaches the handler first, and
  -- must not close the older block.
  local m, finish = fake(function(mp)
    answer(mp, "AT", OK)
    assert(mp:send(block("a", "1", { 1 }, { 1 }, true)))
    want(mp, "AT")   -- listen took "a" and waits again
    assert(mp:send(block("b", "22", { 1 }, { 2 }, true) .. block("c", "333", { 1 }, { 3 }, false)))
  end)
  local s = session.mqtt(m, OPTS)
  assert(m:cmd("AT"))
  local msgs = listen.poking(s, 3, listen.both)
  finish()
  t.deepeq(msgs, { "a|1", "b|22", "c|333" }, "each topic with its payload, in the order they came")
end)

t.test("a listen canceled in its wait: the next listen has the blocks that came meanwhile", function()
  local m, finish = fake(function(mp)
    answer(mp, "AT", OK)
    answer(mp, "AT", block("a", "1", { 1 }, { 1 }, true) .. OK)   -- after the cancel
    want(mp, "AT")   -- the next listen had "a"
    assert(mp:send(block("b", "2", { 1 }, { 1 }, true)))
  end)
  local s = session.mqtt(m, OPTS)
  assert(m:cmd("AT"))
  local task = athost.spawn(function() return s:listen(5000, function() end) end)
  while not s.listening do athost.sleep(0) end
  task:cancel()
  assert(m:cmd("AT"))   -- "a" comes with its OK, before the next listen
  local msgs = listen.poking(s, 2, listen.both)
  finish()
  t.deepeq(msgs, { "a|1", "b|2" }, "both, the first without waiting for another")
end)

t.test("a 5,000-byte message in 1,500-byte pieces (and a topic in pieces) arrives whole", function()
  local payload = {}
  for i = 1, 5000 do payload[i] = string.char((i * 7 + i // 256) % 256) end
  payload = table.concat(payload)
  local topic = "dev/" .. string.rep("long/", 30)
  for _, crlf in ipairs({ true, false }) do
    for _, split in ipairs({ 1500, 97, 1 }) do
      local msgs, ok, err = receive({ block(topic, payload, { 100, #topic - 100 },
        { 1500, 1500, 1500, 500 }, crlf) }, 1, split)
      t.ok(ok, tostring(err))
      t.eq(#msgs, 1, "one message")
      t.eq(msgs[1].topic, topic, "topic")
      t.eq(#msgs[1].payload, 5000, "length")
      t.ok(msgs[1].payload == payload, "byte-exact (split " .. split .. ")")
    end
  end
end)

t.test("pieces that do not sum to the totals: one clear error, no message", function()
  local bad = L("+CMQTTRXSTART: 0,6,10") .. "+CMQTTRXTOPIC: 0,6\r\ndev/in\r\n"
    .. "+CMQTTRXPAYLOAD: 0,5\r\nhello\r\n+CMQTTRXEND: 0\r\n"
  local msgs, ok, err = receive({ bad }, 1)
  t.eq(ok, false, "listen fails")
  t.eq(#msgs, 0, "no message")
  t.match(err, '^waiting for messages: incoming message on "dev/in" %(client 0%): '
    .. '"%+CMQTTRXSTART: 0,6,10" announced a 6%-byte topic and a 10%-byte payload; '
    .. "the pieces brought 6 and 5 bytes", "expected and got")
  -- A piece whose count overruns what came (its bytes are not followed by
  -- a line end or the next +CMQTTRX line).
  local over = L("+CMQTTRXSTART: 0,6,2") .. "+CMQTTRXTOPIC: 0,6\r\ndev/in\r\n"
    .. "+CMQTTRXPAYLOAD: 0,1\r\nhi\r\n+CMQTTRXEND: 0\r\n"
  msgs, ok, err = receive({ over }, 1)
  t.eq(ok, false, "listen fails")
  t.eq(#msgs, 0, "no message")
  t.match(err, '"%+CMQTTRXPAYLOAD: 0,1" announced 1 bytes', "the piece named")
  -- A block that ends before it began, and one begun twice.
  msgs, ok, err = receive({ L("+CMQTTRXSTART: 0,1,1") .. L("+CMQTTRXSTART: 0,1,1") }, 1)
  t.eq(ok, false, "listen fails")
  t.match(err, "began a new block before \"%+CMQTTRXSTART: 0,1,1\" had its bytes", "the second start")
end)

t.test("a message arriving while PUB waits for its outcome is delivered after it", function()
  local m, finish = fake(function(mp)
    data(mp, "AT+CMQTTTOPIC=0,7", ">", 7, OK)
    data(mp, "AT+CMQTTPAYLOAD=0,2", ">", 2, OK)
    answer(mp, "AT+CMQTTPUB=0,1,60", OK .. block("dev/in", "echo", { 6 }, { 4 }, false)
      .. L("+CMQTTPUB: 0,0"))
  end)
  local s = session.mqtt(m, OPTS)
  t.ok(s:publish("dev/out", "hi", 1), "published")
  local msgs = {}
  s:listen(2000, function(msg) msgs[#msgs + 1] = msg return false end)
  finish()
  t.deepeq(msgs, { { topic = "dev/in", payload = "echo" } }, "the message")
end)

---------------------------------------------------------------------------
-- Disconnect
---------------------------------------------------------------------------

t.test("disconnect: +CMQTTDISC after or before OK, REL, STOP", function()
  for _, before in ipairs({ false, true }) do
    local m, finish = fake(function(mp)
      answer(mp, "AT+CMQTTDISC=0,120", around("+CMQTTDISC: 0,0", before))
      answer(mp, "AT+CMQTTREL=0", OK)
      answer(mp, "AT+CMQTTSTOP", around("+CMQTTSTOP: 0", before))
      answer(mp, "AT", OK)
    end)
    local s = session.mqtt(m, OPTS)
    s:disconnect()
    t.eq(s.connected, false, "disconnected")
    t.ok(m:cmd("AT"), "in step after")
    finish()
  end
end)

---------------------------------------------------------------------------
-- HTTP (§4.4)
---------------------------------------------------------------------------

local FORM = "a=1&b=2"
local CTYPE = "application/x-www-form-urlencoded"

-- The §4.4 dialogue up to +HTTPACTION, then the read as `read` says.
local function http_dialogue(mp, url, len, read, o)
  o = o or {}
  if url:find("^https") then
    answer(mp, 'AT+CSSLCFG="sslversion",0,4', OK)
    answer(mp, 'AT+CSSLCFG="authmode",0,0', OK)
    answer(mp, 'AT+CSSLCFG="enableSNI",0,1', OK)
  end
  answer(mp, "AT+HTTPTERM", ERR)
  answer(mp, "AT+HTTPINIT", OK)
  answer(mp, 'AT+HTTPPARA="URL","' .. url .. '"', OK)
  answer(mp, 'AT+HTTPPARA="CONTENT","' .. CTYPE .. '"', OK)
  if url:find("^https") then answer(mp, 'AT+HTTPPARA="SSLCFG",0', OK) end
  local body = data(mp, "AT+HTTPDATA=7,10000", "DOWNLOAD", 7, OK)
  assert(body == FORM, "the form body: " .. body)
  answer(mp, "AT+HTTPACTION=1", around("+HTTPACTION: 1," .. (o.status or 200) .. "," .. len,
    o.before))
  if read then read(mp) end
  answer(mp, "AT+HTTPTERM", OK)
end

t.test("HTTP POST and read: OK first, +HTTPREAD: n chunks (one, several), +HTTPREAD: 0", function()
  local reply = '{"code":200,"data":{"deviceSecret":"s3cr3t,\\"x\\"\\r\\n"},"pad":"'
    .. string.rep("p", 40) .. '"}'
  for _, form in ipairs({ "%d", "DATA,%d" }) do
    for _, sizes in ipairs({ { #reply }, { 20, 20, #reply - 40 } }) do
      for _, crlf in ipairs({ true, false }) do
        local m, finish = fake(function(mp)
          http_dialogue(mp, "https://api.example.com/v1/form", #reply, function(mp2)
            want(mp2, "AT+HTTPREAD=0," .. #reply)
            local out, i = { OK }, 1
            for _, n in ipairs(sizes) do
              out[#out + 1] = "\r\n+HTTPREAD: " .. form:format(n) .. "\r\n"
                .. reply:sub(i, i + n - 1) .. (crlf and "\r\n" or "")
              i = i + n
            end
            out[#out + 1] = (crlf and "" or "\r\n") .. "+HTTPREAD: " .. form:format(0) .. "\r\n"
            assert(mp2:send(table.concat(out)))
          end)
        end)
        local status, body = session.http(m, "POST", "https://api.example.com/v1/form",
          FORM, CTYPE)
        finish()
        t.eq(status, 200, "status")
        t.eq(body, reply, string.format("body (%s, %d chunks, crlf %s)", form, #sizes,
          tostring(crlf)))
      end
    end
  end
end)

t.test("HTTP: chunks before OK too; +HTTPACTION before OK; an empty body needs no read", function()
  local m, finish = fake(function(mp)
    http_dialogue(mp, "http://a.example/x", 5, function(mp2)
      answer(mp2, "AT+HTTPREAD=0,5", "\r\n+HTTPREAD: 5\r\nhello\r\n+HTTPREAD: 0" .. OK)
    end, { before = true })
  end)
  local status, body = session.http(m, "POST", "http://a.example/x", FORM, CTYPE)
  finish()
  t.eq(status, 200, "status")
  t.eq(body, "hello", "body")
  m, finish = fake(function(mp) http_dialogue(mp, "http://a.example/x", 0, nil, { status = 204 }) end)
  status, body = session.http(m, "POST", "http://a.example/x", FORM, CTYPE)
  finish()
  t.eq(status, 204, "status")
  t.eq(body, "", "empty body")
end)

t.test("HTTP: 715 and 603 named; a read that brings fewer bytes is an error, not a body", function()
  for _, v in ipairs({ { 715, "TLS handshake failed" }, { 603, "DNS error" } }) do
    local m, finish = fake(function(mp)
      http_dialogue(mp, "http://a.example/x", 0, nil, { status = v[1] })
    end)
    local err = t.raises(function() session.http(m, "POST", "http://a.example/x", FORM, CTYPE) end,
      "HTTP request to http://a.example/x")
    t.match(err, "status " .. v[1] .. ": " .. v[2], "named")
    finish()
  end
  local m, finish = fake(function(mp)
    http_dialogue(mp, "http://a.example/x", 57, function(mp2)
      answer(mp2, "AT+HTTPREAD=0,57", OK .. "\r\n+HTTPREAD: 40\r\n" .. string.rep("x", 40)
        .. "\r\n+HTTPREAD: 0\r\n")
    end)
  end)
  local err = t.raises(function() session.http(m, "POST", "http://a.example/x", FORM, CTYPE) end,
    "HTTP read of http://a.example/x")
  t.match(err, "AT%+HTTPREAD=0,57 brought 40 bytes where 57 were asked for", "expected and got")
  finish()
end)

---------------------------------------------------------------------------
-- Recovery
---------------------------------------------------------------------------

-- The module after a subscribe: it answers SUB, then `loss`; then what
-- `recover` replays; then a message, and the publish the host sends
-- after it. Returns what arrived at the module.
local function recovery(loss, recover)
  local got = {}
  local m, finish = fake(function(mp)
    connect_dialogue(mp)
    data(mp, "AT+CMQTTSUB=0,6,1", ">", 6, OK .. L("+CMQTTSUB: 0,0") .. L(loss))
    recover(mp)
    data(mp, "AT+CMQTTSUB=0,6,1", ">", 6, L("+CMQTTSUB: 0,0") .. OK
      .. block("dev/in", "after", { 6 }, { 5 }, true))
    got.topic = data(mp, "AT+CMQTTTOPIC=0,7", ">", 7, OK)
    got.payload = data(mp, "AT+CMQTTPAYLOAD=0,4", ">", 4, OK)
    answer(mp, "AT+CMQTTPUB=0,1,60", OK .. L("+CMQTTPUB: 0,0"))
  end)
  local s = session.mqtt(m, OPTS)
  s:connect()
  s:subscribe("dev/in", 1)
  local msgs = {}
  s:listen(5000, function(msg) msgs[#msgs + 1] = msg return false end)
  s:publish("dev/out", "next", 1)
  finish()
  return s, msgs, got
end

t.test("+CMQTTCONNLOST: DISC, REL, connect again, resubscribe; the next publish arrives", function()
  local s, msgs, got = recovery("+CMQTTCONNLOST: 0,3", function(mp)
    answer(mp, "AT+CMQTTDISC=0,120", L("+CMQTTDISC: 0,11") .. ERR)
    answer(mp, "AT+CMQTTREL=0", OK)
    connect_dialogue(mp, { started = true })
  end)
  t.eq(s.stats.recovered, 1, "recovered")
  t.deepeq(msgs, { { topic = "dev/in", payload = "after" } }, "a message after it")
  t.deepeq(got, { topic = "dev/out", payload = "next" }, "the next publish")
end)

t.test("+CMQTTNONET: the service is stopped and started again", function()
  local s, msgs, got = recovery("+CMQTTNONET", function(mp)
    answer(mp, "AT+CMQTTDISC=0,120", ERR)
    answer(mp, "AT+CMQTTREL=0", OK)
    answer(mp, "AT+CMQTTSTOP", OK .. L("+CMQTTSTOP: 0"))
    connect_dialogue(mp, { before = true })
  end)
  t.eq(s.stats.recovered, 1, "recovered")
  t.eq(#msgs, 1, "a message after it")
  t.deepeq(got, { topic = "dev/out", payload = "next" }, "the next publish")
end)

t.test("+CGEV: NW PDN DEACT: client and service released, CGACT rung, network, MQTT again", function()
  local s, msgs, got = recovery("+CGEV: NW PDN DEACT 1", function(mp)
    answer(mp, "AT+CMQTTDISC=0,120", ERR)
    answer(mp, "AT+CMQTTREL=0", OK)
    answer(mp, "AT+CMQTTSTOP", L("+CMQTTSTOP: 0") .. OK)
    answer(mp, 'AT+CGDCONT=1,"IP","CMNET"', OK)
    answer(mp, "AT+CGACT=1,1", OK)
    answer(mp, "AT+CPIN?", L("+CPIN: READY") .. OK)
    answer(mp, "AT+CEREG?", L("+CEREG: 0,1") .. OK)
    answer(mp, "AT+CGATT?", L("+CGATT: 1") .. OK)
    connect_dialogue(mp)
  end)
  t.eq(s.stats.recovered, 1, "recovered")
  t.deepeq(msgs, { { topic = "dev/in", payload = "after" } }, "a message after it")
  t.deepeq(got, { topic = "dev/out", payload = "next" }, "the next publish")
end)

t.test("+CIPEVENT: NETWORK CLOSED UNEXPECTEDLY with CGACT refused: the CFUN rung", function()
  local s, _, got = recovery("+CIPEVENT: NETWORK CLOSED UNEXPECTEDLY", function(mp)
    answer(mp, "AT+CMQTTDISC=0,120", ERR)
    answer(mp, "AT+CMQTTREL=0", ERR)
    answer(mp, "AT+CMQTTSTOP", ERR)
    answer(mp, 'AT+CGDCONT=1,"IP","CMNET"', OK)
    answer(mp, "AT+CGACT=1,1", L("+CME ERROR: 148"))
    answer(mp, "AT+CFUN=0", OK .. L("+CGEV: ME DETACH"))
    answer(mp, "AT+CFUN=1", OK)
    answer(mp, "AT+CPIN?", L("+CPIN: READY") .. OK)
    answer(mp, "AT+CEREG?", L("+CEREG: 0,5") .. OK)
    answer(mp, "AT+CGATT?", L("+CGATT: 1") .. OK)
    connect_dialogue(mp)
  end)
  t.eq(s.stats.recovered, 1, "recovered")
  t.deepeq(got, { topic = "dev/out", payload = "next" }, "the next publish")
end)

t.run()
