-- The virtual Air780E (athost.sim.air780e) driven with raw AT commands,
-- as DIALECTS.md 3 and 4.5 describe the module: the MQTTS dialogue of
-- the Air780EP guide against a real mosquitto (checked with mosquitto_sub
-- and mosquitto_pub), the HTTP POST of 4.5 against a local HTTPS server,
-- the identification strings, and every reading of the model's knobs.
--
--   ATHOST_PATH=tests/lib:lib ./athost tests/lua/sim_air780e_test.lua
local t = require("t")
local simtest = require("simtest")
local athost = require("athost")

local here = ((arg and arg[0]) or "tests/lua/x"):match("^(.*)/[^/]*$") or "."
local ROOT = here .. "/../.."
local DIR = t.tmpdir()
local B = {}                  -- BROKER_* from broker.env, without the prefix

local L = require("luattest").new(B, DIR)
local shell, uid, raw = L.shell, L.uid, L.raw
local must_expect, mqtt_up, mqtt_status = L.must_expect, L.mqtt_up, L.mqtt_status
local subscriber, publish, topic, upload = L.subscriber, L.publish, L.topic, L.upload
local MSUB = L.MSUB

local function with_modem(query, fn) simtest.with_modem("air780e", query, fn) end
local up = simtest.up

local function lines(p, c)
  return table.concat(assert(p:cmd(c, { reply = false })).lines, "|")
end

-- Both spacings of +HTTPACTION / +HTTPREAD (knob http_space).
local ACTION = "^%+HTTPACTION: ?(%d+),(%d+),(%d+)$"
local HTTPREAD = { "^%+HTTPREAD: ?(%d+)", count = 1 }

local function https_server(reply)
  return simtest.http_server(reply, { tls = { cert = t.slurp(B.DIR .. "/server.pem"),
    key = t.slurp(B.DIR .. "/server.key") } })
end

---------------------------------------------------------------------------
-- Identification
---------------------------------------------------------------------------

t.test("identification: +CGMx: \"...\" with prefix and quotes, ATI one line", function()
  with_modem(nil, function(p)
    up(p)
    t.eq(lines(p, "AT+CGMI"), '+CGMI: "AirM2M"', "CGMI")
    t.eq(lines(p, "AT+CGMM"), '+CGMM: "Air780EP"', "CGMM")
    t.eq(lines(p, "AT+CGMR"), '+CGMR: "AirM2M_780EP_V1007_LTE_AT"', "CGMR")
    t.eq(lines(p, "ATI"), "AirM2M_780EP_V1007_LTE_AT", "ATI")
    t.match(lines(p, "AT+CGSN"), "^%d+$", "CGSN")
    t.eq(lines(p, "AT+CGATT?"), "+CGATT: 1", "attached")
  end)
end)

t.test("knobs ident=bare and variant=Air780E", function()
  with_modem("ident=bare&variant=Air780E", function(p)
    up(p)
    t.eq(lines(p, "AT+CGMI"), "AirM2M", "CGMI")
    t.eq(lines(p, "AT+CGMM"), "Air780E", "CGMM")
    t.eq(lines(p, "AT+CGMR"), "AirM2M_780E_V1007_LTE_AT", "CGMR")
    t.eq(lines(p, "ATI"), "AirM2M_780E_V1007_LTE_AT", "ATI")
  end)
  with_modem("variant=Air780E&version=AirM2M_780E_V1010_LTE_AT", function(p)
    up(p)
    t.eq(lines(p, "AT+CGMR"), '+CGMR: "AirM2M_780E_V1010_LTE_AT"', "version= option")
  end)
end)

---------------------------------------------------------------------------
-- MQTT
---------------------------------------------------------------------------

-- The Air780EP MQTTS guide (DIALECTS.md 3, [LDS]), step by step.
local function lds_mqtts(p, cid, host, port)
  local ca = t.slurp(B.CA)
  t.eq(assert(p:cmd('AT+FSCREATE="ca.crt"')).final, "OK", "FSCREATE")
  t.eq(raw(p, string.format('AT+FSWRITE="ca.crt",0,%d,15\r', #ca), ">"), ">", "FSWRITE prompt")
  assert(p:send(ca))
  t.eq(assert(p:final()).final, "OK", "the CA taken")
  assert(p:cmd('AT+SSLCFG="cacert",88,"ca.crt"'))
  assert(p:cmd('AT+SSLCFG="seclevel",88,1'))
  assert(p:cmd(string.format('AT+MCONFIG="%s","%s","%s"', cid, B.USER, B.PASS)))
  local r = assert(p:cmd(string.format('AT+SSLMIPSTART="%s",%d', host, port),
    { outcome = { "CONNECT OK" }, outcome_fail = { "CONNECT FAIL" }, outcome_timeout = 10000 }))
  t.eq(r.outcome.line, "CONNECT OK", "SSLMIPSTART")
  r = assert(p:cmd("AT+MCONNECT=1,60", { outcome = { "CONNACK OK" },
    outcome_fail = { "+CME ERROR", "CLOSED" }, outcome_timeout = 10000 }))
  t.eq(r.outcome.line, "CONNACK OK", "MCONNECT")
end

for _, order in ipairs({ "after", "before" }) do
  t.test("the MQTTS dialogue of the Air780EP guide (order=" .. order .. "), a message "
    .. "both ways", function()
    with_modem("order=" .. order .. "&hosts=mqtt.example.com=127.0.0.1:" .. B.TLS_PORT,
      function(p)
      up(p)
      local cid = "air780e-" .. uid()
      lds_mqtts(p, cid, "mqtt.example.com", 8883)
      t.ok(t.slurp(B.DIR .. "/mosquitto.log"):find("as " .. cid, 1, true),
        "mosquitto saw client " .. cid)
      t.eq(mqtt_status(p), "1", "online")
      local up_tp, down_tp = topic(), topic()
      local got = subscriber(up_tp)
      local payload = 'tls "up"\r\n,\0end'
      assert(p:cmd(string.format('AT+MPUBEX="%s",1,0,%d', up_tp, #payload),
        { prompt = ">", data = payload, outcome = { "PUBACK" }, outcome_timeout = 10000 }))
      local msg = got()
      t.eq(msg.payload, payload, "mosquitto_sub got the bytes")
      t.eq(msg.qos, 1, "QoS 1")
      assert(p:cmd(string.format('AT+MSUB="%s",1', down_tp), { outcome = { "SUBACK" },
        outcome_timeout = 10000 }))
      publish(down_tp, "down, \"quoted\"\r\n", 1)
      local m = must_expect(p, MSUB)
      t.eq(m[1], down_tp, "topic")
      t.eq(m.payload, "down, \"quoted\"\r\n", "mosquitto_pub's bytes")
    end)
  end)
end

t.test("MPUBEX without <len>: the message ends at 0x1A, or after 5 s idle", function()
  with_modem(nil, function(p)
    up(p)
    mqtt_up(p)
    local tp = topic()
    local got = subscriber(tp)
    t.eq(raw(p, string.format('AT+MPUBEX="%s",0,0\r', tp), ">"), ">", "prompt")
    assert(p:send("line 1\r\nline \"2\"\26"))
    t.eq(assert(p:final()).final, "OK", "0x1A ends it")
    t.eq(got().payload, "line 1\r\nline \"2\"", "without the 0x1A")
    got = subscriber(tp)
    t.eq(raw(p, string.format('AT+MPUBEX="%s",1,0\r', tp), ">"), ">", "prompt")
    local t0 = athost.now()
    assert(p:send("idle ends me"))
    t.eq(assert(p:final({ timeout = 8000 })).final, "OK", "idle ends it")
    t.ok(athost.now() - t0 >= 4900, "after 5 s: " .. (athost.now() - t0) .. " ms")
    must_expect(p, "PUBACK")
    t.eq(got().payload, "idle ends me", "the bytes before the pause")
  end)
end)

t.test("limits: topic 256, message 4100 (MPUB, MPUBEX, incoming), 4 slots", function()
  with_modem(nil, function(p)
    up(p)
    mqtt_up(p)
    local tp = topic()
    local long = tp .. "/" .. ("x"):rep(256 - #tp)
    t.fails("CME", p:cmd(string.format('AT+MSUB="%s",0', long)))
    t.fails("CME", p:cmd(string.format('AT+MPUB="%s",0,0,"x"', long)))
    t.fails("CME", p:cmd(string.format('AT+MPUBEX="%s",0,0,1', long)))
    t.fails("CME", p:cmd(string.format('AT+MPUB="%s",0,0,"%s"', tp, ("a"):rep(4101))))
    t.fails("CME", p:cmd(string.format('AT+MPUBEX="%s",0,0,4101', tp)))
    local got = subscriber(tp)
    local big = ("0123456789"):rep(410)
    assert(p:cmd(string.format('AT+MPUBEX="%s",0,0,4100', tp), { prompt = ">", data = big }))
    t.eq(got().payload, big, "4100 bytes out")
    assert(p:cmd(string.format('AT+MSUB="%s",0', tp)))
    must_expect(p, "SUBACK")
    publish(tp, big .. "!")                   -- 4101: dropped
    publish(tp, big)
    local m = must_expect(p, { '^%+MSUB: "([^"]*)",(%d+) byte,', count = 2, max = 8192 })
    t.eq(m[2], "4100", "the 4101-byte message dropped, the 4100-byte one in")
    t.eq(m.payload, big, "4100 bytes in")
    -- Cached: four slots; a fifth message finds none.
    assert(p:cmd("AT+MQTTMSGSET=1"))
    for i = 0, 4 do
      publish(tp, "m" .. i)
      if i < 4 then t.eq(must_expect(p, "^%+MSUB: (%d)$")[1], tostring(i), "slot") end
    end
    assert(p:cmd("AT+MQTTSTATU"))            -- the fifth has come and gone
    t.fails("ETIMEDOUT", p:expect("^%+MSUB: %d$", { timeout = 300 }))
    local r = assert(p:cmd("AT+MQTTMSGGET", { reply = false }))
    t.deepeq(r.lines, { "+MSUB: " .. tp .. ",2 byte,m0", "+MSUB: " .. tp .. ",2 byte,m1",
      "+MSUB: " .. tp .. ",2 byte,m2", "+MSUB: " .. tp .. ",2 byte,m3" },
      "MQTTMSGGET: the topic unquoted")
  end)
end)

t.test("msub_len=bare: +MSUB: \"<topic>\",<n>,<payload>, direct and cached", function()
  with_modem("msub_len=bare", function(p)
    up(p)
    mqtt_up(p)
    local tp = topic()
    assert(p:cmd(string.format('AT+MSUB="%s",0', tp)))
    must_expect(p, "SUBACK")
    publish(tp, "SSSSddddd")
    local want = '+MSUB: "' .. tp .. '",9,SSSSddddd'
    t.eq(raw(p, nil, "ddddd\r\n"), "\r\n" .. want .. "\r\n", "direct")
    assert(p:cmd("AT+MQTTMSGSET=1"))
    publish(tp, "hi")
    must_expect(p, "^%+MSUB: 0$")
    t.eq(raw(p, "AT+MQTTMSGGET\r", "OK\r\n"), "\r\n+MSUB: " .. tp .. ",2,hi\r\n\r\nOK\r\n",
      "cached")
  end)
end)

---------------------------------------------------------------------------
-- Bearer
---------------------------------------------------------------------------

t.test("pdp_urc: each reading of the bearer loss; MQTT goes with it", function()
  local want = {
    cgev = "\r\n+CGEV: NW PDN DEACT 1\r\n",
    me = "\r\n+CGEV: ME PDN DEACT 1\r\n",
    both = "\r\n+CGEV: NW PDN DEACT 1\r\n\r\n+PDP DEACT\r\n",
    me_pdp = "\r\n+CGEV: ME PDN DEACT 1\r\n\r\n+PDP DEACT\r\n",
  }
  for how, text in pairs(want) do
    with_modem("pdp_urc=" .. how, function(p, m)
      up(p)
      mqtt_up(p)
      p:flush()
      m:pdp_deact()
      t.eq(raw(p, nil, text:sub(-8)), text, how)
      t.eq(mqtt_status(p), "0", how .. ": the link went with the bearer")
      t.fails("CME", p:cmd(string.format('AT+MIPSTART="127.0.0.1",%d', B.PORT)))
    end)
  end
end)

t.test("pdn_act=on: +CGEV: ME PDN ACT 1,0 when CGACT or CFUN brings the bearer back",
  function()
  with_modem(nil, function(p, m)
    up(p)
    m:pdp_deact()
    must_expect(p, "+CGEV: NW PDN DEACT 1")
    t.eq(raw(p, "AT+CGACT=1,1\r", "ACT 1,0\r\n"), "\r\nOK\r\n\r\n+CGEV: ME PDN ACT 1,0\r\n",
      "CGACT")
    mqtt_up(p)
    assert(p:cmd("AT+CFUN=0"))
    t.eq(raw(p, "AT+CFUN=1\r", "ACT 1,0\r\n"), "\r\nOK\r\n\r\n+CGEV: ME PDN ACT 1,0\r\n",
      "CFUN")
    t.eq(raw(p, "AT+CGACT=1,1\r", "OK\r\n"), "\r\nOK\r\n", "already up: no URC")
    mqtt_up(p)
  end)
end)

t.test("pdn_act=off: the bearer comes back without a word", function()
  with_modem("pdn_act=off", function(p, m)
    up(p)
    m:pdp_deact()
    must_expect(p, "+CGEV: NW PDN DEACT 1")
    assert(p:cmd("AT+CGACT=1,1"))
    t.fails("ETIMEDOUT", p:expect("+CGEV", { timeout = 300 }))
    mqtt_up(p)
  end)
end)

---------------------------------------------------------------------------
-- HTTP
---------------------------------------------------------------------------

local REPLY = '{"code":200,"data":{"deviceSecret":"s3cr3t"},"message":"success"}'

local function json_reply()
  return 200, { ["Content-Type"] = "application/json" }, REPLY
end

-- HTTPINIT, [HTTPSSL=1], CID, URL, USER_DEFINED, [CONTENT], HTTPDATA, HTTPACTION=1.
local function post(p, url, body, o)
  o = o or {}
  assert(p:cmd("AT+HTTPINIT"))
  if o.ssl ~= false then assert(p:cmd("AT+HTTPSSL=1")) end
  assert(p:cmd('AT+HTTPPARA="CID",1'))
  assert(p:cmd(string.format('AT+HTTPPARA="URL","%s"', url)))
  assert(p:cmd('AT+HTTPPARA="USER_DEFINED","Content-Type: application/x-www-form-urlencoded"'))
  if o.content then assert(p:cmd(string.format('AT+HTTPPARA="CONTENT","%s"', o.content))) end
  assert(p:cmd(string.format("AT+HTTPDATA=%d,10000", #body), { prompt = "DOWNLOAD", data = body }))
  assert(p:cmd("AT+HTTPACTION=1"))
  local a = must_expect(p, ACTION)
  return a[1] .. "," .. a[2] .. "," .. a[3]
end

-- The same request again: its status.
local function repost(p)
  assert(p:cmd("AT+HTTPACTION=1"))
  return must_expect(p, ACTION)[2]
end

t.test("the HTTPS POST of DIALECTS.md 4.5, no SAPBR step", function()
  local port, seen, stop = https_server(json_reply)
  with_modem(nil, function(p)
    up(p)
    local url = string.format("https://127.0.0.1:%d/auth/register/device", port)
    local body = "a=1&b=2"
    assert(p:cmd("AT+HTTPINIT"))
    assert(p:cmd("AT+HTTPSSL=1"))
    assert(p:cmd('AT+HTTPPARA="CID",1'))
    assert(p:cmd(string.format('AT+HTTPPARA="URL","%s"', url)))
    assert(p:cmd('AT+HTTPPARA="USER_DEFINED","Content-Type: application/x-www-form-urlencoded"'))
    t.eq(raw(p, "AT+HTTPDATA=7,10000\r", "DOWNLOAD\r\n"), "\r\nDOWNLOAD\r\n", "DOWNLOAD")
    assert(p:send(body))
    t.eq(assert(p:final()).final, "OK", "7 bytes taken")
    -- http_space=tight by default: the manual's captured output.
    local want = "+HTTPACTION:1,200," .. #REPLY
    t.eq(raw(p, "AT+HTTPACTION=1\r", want .. "\r\n", 10000), "\r\nOK\r\n\r\n" .. want .. "\r\n",
      "OK, then +HTTPACTION")
    t.eq(raw(p, "AT+HTTPREAD\r", "\r\nOK\r\n"), "\r\n+HTTPREAD:" .. #REPLY .. "\r\n" .. REPLY
      .. "\r\nOK\r\n", "+HTTPREAD: <len>, the bytes, OK last")
    local r = assert(p:cmd("AT+HTTPREAD=0,10", { reply = HTTPREAD }))
    t.eq(r.payload, REPLY:sub(1, 10), "a part")
    assert(p:cmd("AT+HTTPTERM"))
    simtest.form_post(seen, "/auth/register/device", body)
  end)
  stop()
end)

t.test("HTTPACTION methods 0-2 only; HTTPDATA time 1000-120000 ms", function()
  with_modem(nil, function(p)
    up(p)
    assert(p:cmd("AT+HTTPINIT"))
    assert(p:cmd('AT+HTTPPARA="URL","http://127.0.0.1:1/"'))
    t.fails("CME", p:cmd("AT+HTTPACTION=3"))
    t.fails("CME", p:cmd("AT+HTTPDATA=7,999"))
    t.fails("CME", p:cmd("AT+HTTPDATA=7,120001"))
    assert(p:cmd("AT+HTTPDATA=1,120000", { prompt = "DOWNLOAD", data = "x" }))
  end)
end)

t.test("http_space=space and http_dup=on: \"+HTTPACTION: \" twice", function()
  local port, _, stop = simtest.http_server(json_reply)
  with_modem("http_space=space&http_dup=on", function(p)
    up(p)
    local line = "+HTTPACTION: 1,200," .. #REPLY
    t.eq(post(p, string.format("http://127.0.0.1:%d/", port), "a=1", { ssl = false }),
      "1,200," .. #REPLY, "first")
    t.eq(must_expect(p, ACTION).line, line, "the duplicate")
    t.eq(assert(p:cmd("AT+HTTPREAD", { reply = { "^%+HTTPREAD: (%d+)", count = 1 } })).payload,
      REPLY, "+HTTPREAD: with a space")
  end)
  stop()
end)

t.test("httpssl=needed: an https:// URL without AT+HTTPSSL=1 is 601; httpssl=url: "
  .. "the scheme decides", function()
  local port, seen, stop = https_server(json_reply)
  local url = string.format("https://127.0.0.1:%d/x", port)
  with_modem(nil, function(p)
    up(p)
    t.eq(post(p, url, "a=1", { ssl = false }), "1,601,0", "without HTTPSSL=1")
    assert(p:cmd("AT+HTTPSSL=1"))
    t.eq(repost(p), "200", "with it")
  end)
  with_modem("httpssl=url", function(p)
    up(p)
    t.eq(post(p, url, "a=1", { ssl = false }), "1,200," .. #REPLY, "without HTTPSSL=1")
  end)
  t.eq(#seen, 2, "requests at the server")
  stop()
end)

t.test("sapbr: not_needed, needed (601 until SAPBR=1,1), absent (ERROR)", function()
  local port, seen, stop = simtest.http_server(json_reply)
  local url = string.format("http://127.0.0.1:%d/", port)
  local ok = "1,200," .. #REPLY
  with_modem("sapbr=not_needed", function(p)
    up(p)
    t.eq(post(p, url, "a=1"), ok, "no SAPBR step")
    simtest.bearer(p)                     -- accepted all the same
    t.eq(repost(p), "200", "after SAPBR too")
  end)
  with_modem("sapbr=needed", function(p)
    up(p)
    t.eq(post(p, url, "a=1"), "1,601,0", "without the bearer")
    simtest.bearer(p)
    t.eq(repost(p), "200", "with it")
  end)
  with_modem("sapbr=absent", function(p)
    up(p)
    t.fails("ERROR", p:cmd('AT+SAPBR=3,1,"CONTYPE","GPRS"'))
    t.fails("ERROR", p:cmd("AT+SAPBR=1,1"))
    t.eq(post(p, url, "a=1"), ok, "HTTP without it")
  end)
  t.eq(#seen, 4, "requests at the server")
  stop()
end)

t.test("build: HTTPDATA at most 3356 bytes (at) or 130048 (lsat)", function()
  local port, seen, stop = simtest.http_server(json_reply)
  with_modem("build=at", function(p)
    up(p)
    assert(p:cmd("AT+HTTPINIT"))
    t.fails("CME", p:cmd("AT+HTTPDATA=3357,10000"))
    assert(p:cmd("AT+HTTPDATA=3356,10000", { prompt = "DOWNLOAD", data = ("a"):rep(3356) }))
  end)
  with_modem("build=lsat", function(p)
    up(p)
    local body = ("b"):rep(130048)
    assert(p:cmd("AT+HTTPINIT"))
    t.fails("CME", p:cmd("AT+HTTPDATA=130049,10000"))
    assert(p:cmd(string.format('AT+HTTPPARA="URL","http://127.0.0.1:%d/"', port)))
    assert(p:cmd("AT+HTTPDATA=130048,20000", { prompt = "DOWNLOAD", data = body,
      timeout = 20000 }))
    t.eq(repost(p), "200", "status")
    t.eq(seen[1].body, body, "130048 bytes at the server")
  end)
  stop()
end)

t.test("user_defined: header lines, or ignored (only CONTENT sets Content-Type)", function()
  local port, seen, stop = simtest.http_server(json_reply)
  local url = string.format("http://127.0.0.1:%d/", port)
  with_modem("user_defined=headers", function(p)
    up(p)
    post(p, url, "a=1")
  end)
  with_modem("user_defined=ignored", function(p)
    up(p)
    post(p, url, "a=1")
    assert(p:cmd("AT+HTTPTERM"))
    post(p, url, "a=1", { content = "application/x-www-form-urlencoded" })
  end)
  t.eq(seen[1].headers["content-type"], "application/x-www-form-urlencoded", "headers")
  t.eq(seen[2].headers["content-type"], nil, "ignored")
  t.eq(seen[3].headers["content-type"], "application/x-www-form-urlencoded", "CONTENT")
  stop()
end)

---------------------------------------------------------------------------
-- Standalone
---------------------------------------------------------------------------

t.test("athost scripts/sim/air780e.lua serves a separate athost -p", function()
  L.serve_script(ROOT, "air780e", "imei=861234567890123", function(link)
    local chunk = "local p = require('athost').port() assert(p:cmd('AT')) "
      .. "print(table.concat(assert(p:cmd('AT+CGMM', {reply = false})).lines)) "
      .. "print(assert(p:cmd('AT+CGSN')).lines[1])"
    local res, okc = shell(string.format("%s/athost -p %s -e \"%s\"", ROOT, link, chunk))
    t.ok(okc, "client: " .. res)
    t.match(res, '%+CGMM: "Air780EP"', "the Air780E answers")
    t.match(res, "861234567890123", "IMEI from the standalone modem")
    res, okc = shell(string.format("%s/athost -p 'sim:air780e?ident=bare' -e \"%s\"",
      ROOT, chunk))
    t.ok(okc, "-p sim: " .. res)
    t.match(res, "^Air780EP\n", "-p sim:air780e?ident=bare")
  end)
end)

---------------------------------------------------------------------------

require("luattest").run(B, DIR)
