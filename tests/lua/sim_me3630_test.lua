-- The virtual ME3630 driven with raw AT commands, against the local Aliyun
-- auth service and a real mosquitto (tests/fixtures/broker.sh); messages
-- are checked on the broker's side with mosquitto_sub and mosquitto_pub.
local t = require("t")
local athost = require("athost")
local sim = require("athost.sim")
local aliyun_auth = require("athost.sim.aliyun_auth")
local mqtt = require("athost.mqtt311")

-- athost.sim lists the models it knows; older copies lack this one.
sim.models.me3630 = sim.models.me3630 or "athost.sim.me3630"

local q = aliyun_auth.quote
local PK, PS = "a1ME3630sim", "ps3630secretXYZ"
local DN, DS = "me3630-dev1", "Dm3630SecretDm3630SecretDm3630Se"

---------------------------------------------------------------------------
-- Fixtures: a broker, an auth service that adds the users it issues
---------------------------------------------------------------------------

local dir = t.tmpdir()
local broker = require("broker").start(dir)

-- Stops the broker when the file is done, passed or not.
local stop_broker <close> = setmetatable({}, { __close = function()
  os.execute("tests/fixtures/broker.sh stop " .. q(dir) .. " >/dev/null 2>&1")
  os.execute("rm -rf " .. q(dir))
end })

local issued = {}
local auth = aliyun_auth.new {
  products = { [PK] = PS },
  broker = { host = "127.0.0.1", port = broker.PORT },
  on_credentials = function(user, pass)
    issued[#issued + 1] = user
    return aliyun_auth.shell("tests/fixtures/broker.sh adduser " .. q(dir) .. " "
      .. q(user) .. " " .. q(pass) .. " >/dev/null")
  end,
}
auth:add_device(PK, DN, DS)
local AUTH_URL = "http://127.0.0.1:" .. assert(auth:listen("127.0.0.1", 0))

-- A fresh modem; the caller closes it with m:close().
local function modem(opts)
  opts = opts or {}
  opts.auth = opts.auth or AUTH_URL
  local p, m = assert(athost.open("sim:me3630", { sim = opts, timeout = 5000 }))
  assert(p:cmd("ATE0"))
  assert(p:cmd("AT+CMEE=1"))
  return p, m
end

-- The next of the given URCs (literal line starts); returns its index and
-- the match.
local function urc(p, alts, ms)
  local m, err = p:expect(alts, { timeout = ms or 10000 })
  if not m then error(err, 2) end
  return m.index, m
end

-- Sends cmd, whose outcome is one of alts (literal line starts), in
-- either order: a reply line before OK or a URC after it. Returns the
-- outcome line, where it came ("before" or "after") and the result.
local function outcome(p, cmd, alts, ms)
  local r = assert(p:cmd(cmd, { timeout = ms or 10000 }))
  for _, l in ipairs(r.lines) do
    for _, a in ipairs(alts) do
      if l:sub(1, #a) == a then return l, "before", r end
    end
  end
  local _, mt = urc(p, alts, ms)
  return mt.line, "after", r
end

local AUTH_ALTS = { "+ALIAUTH: OK", "+ALIAUTH: FAIL", "+CME ERROR:" }
local SUB_ALTS = { "+CLOUDSUBACK:", "+CMD ERROR:" }

local function online(p)
  assert(p:cmd("AT+ZECMCALL=1"))
  t.eq(outcome(p, "AT+CLOUDAUTH=" .. PK .. "," .. DN .. "," .. DS, AUTH_ALTS),
    "+ALIAUTH: OK", "authenticated")
  assert(p:cmd("AT+CLOUDCONN", { timeout = 10000 }))
end

-- mosquitto_sub on the broker, printing "topic|payload" lines to a pty;
-- returns once its subscription is acknowledged.
local function subscriber(topic, count)
  local p, slave = assert(athost.pty { name = "mosquitto_sub" })
  assert(os.execute(string.format("timeout 20 mosquitto_sub -d -h 127.0.0.1 -p %d"
    .. " -u %s -P %s -t %s -q 1 -C %d -F '%%t|%%p' >%s 2>&1 </dev/null &",
    broker.PORT, q(broker.USER), q(broker.PASS), q(topic), count or 1, q(slave))))
  assert(p:expect("Subscribed", { timeout = 10000 }))
  return p
end

local function publish(topic, msg)
  assert(aliyun_auth.shell(string.format("mosquitto_pub -h 127.0.0.1 -p %d -u %s"
    .. " -P %s -t %s -q 1 -m %s", broker.PORT, q(broker.USER), q(broker.PASS),
    q(topic), q(msg))))
end

local PUBLISH = { "^%+CLOUDPUBLISH: (%d+),([^,]*),(%d+),", count = 3 }

---------------------------------------------------------------------------
-- Tests
---------------------------------------------------------------------------

t.test("bring-up dialogue of reference 002", function()
  local p, m = assert(athost.open("sim:me3630", { sim = { auth = AUTH_URL,
    imei = "867010030000002" } }))
  local r = assert(p:cmd("AT"))
  t.eq(r.final, "OK", "AT")
  assert(p:cmd("ATE0"))
  t.eq(assert(p:cmd("AT+CGMR")).lines[1], "AL_ME3630C1CV1.0B01", "firmware")
  t.eq(assert(p:cmd("AT+CGSN")).lines[1], "867010030000002", "IMEI")
  r = assert(p:cmd("ATI"))
  t.eq(r.lines[2], "Model: ME3630", "ATI model")
  t.eq(r.lines[3], "Revision: AL_ME3630C1CV1.0B01", "ATI revision")
  t.eq(assert(p:cmd("AT+CPIN?")).lines[1], "+CPIN: READY", "SIM")
  t.eq(assert(p:cmd("AT+ZPAS?")).lines[1], '+ZPAS: "LTE","CS_PS","FDD"', "network")
  r = assert(p:cmd("AT+ZECMCALL=1"))
  t.deepeq(r.lines, { "+ZECMCALL: CONNECT" }, "ECM call")
  t.eq(assert(p:cmd("AT+ZECMCALL?")).lines[1], "+ZECMCALL: 1", "ECM state")
  t.fails("ERROR", p:cmd("AT+NOSUCH"))
  m:close()
end)

t.test("CLOUDAUTH: OK, then +ALIAUTH: OK from a real device-auth request", function()
  local p, m = modem()
  assert(p:cmd("AT+ZECMCALL=1"))
  local before = #issued
  local r = assert(p:cmd("AT+CLOUDAUTH=" .. PK .. "," .. DN .. "," .. DS))
  t.eq(r.final, "OK", "parameters accepted")
  t.eq(urc(p, { "+ALIAUTH: OK", "+ALIAUTH: FAIL" }), 1, "+ALIAUTH")
  t.eq(#issued, before + 1, "the service issued a token")
  t.eq(issued[#issued], auth:device(PK, DN).iotId, "for this device")
  t.eq(assert(p:cmd("AT+CLOUDAUTH?")).lines[1], '+CLOUDAUTH: "' .. PK .. '","' .. DN .. '"',
    "read form")
  m:close()
end)

t.test("CLOUDAUTH with a wrong secret: +ALIAUTH: FAIL, CLOUDCONN refused", function()
  local p, m = modem()
  assert(p:cmd("AT+ZECMCALL=1"))
  assert(p:cmd("AT+CLOUDAUTH=" .. PK .. "," .. DN .. ",not" .. DS:sub(4)))
  t.eq(urc(p, { "+ALIAUTH: OK", "+ALIAUTH: FAIL" }), 2, "+ALIAUTH: FAIL")
  t.fails("CME", p:cmd("AT+CLOUDCONN"))
  assert(p:cmd("AT+CLOUDAUTH=" .. PK .. ",nosuchdevice," .. DS))
  t.eq(urc(p, { "+ALIAUTH: OK", "+ALIAUTH: FAIL" }), 2, "unknown device")
  m:close()
end)

t.test("CLOUDAUTH errors: bad parameters, no data call, no auth server", function()
  local p, m = modem()
  t.fails("CME", p:cmd("AT+CLOUDAUTH=" .. PK .. "," .. DN))
  t.fails("CME", p:cmd("AT+CLOUDAUTH=" .. PK .. "," .. DN .. "," .. string.rep("s", 65)))
  assert(p:cmd("AT+CLOUDAUTH=" .. PK .. "," .. DN .. "," .. DS))
  local _, mt = urc(p, { "+ALIAUTH:", "+CME ERROR:" })
  t.eq(mt.line, "+CME ERROR: 30", "before AT+ZECMCALL=1")
  assert(p:cmd("AT+ZECMCALL=1"))
  local l = assert(athost.listen("127.0.0.1", 0))
  local closed = "127.0.0.1:" .. l.port
  l:close()
  assert(p:cmd("AT+CLOUDAUTH=" .. PK .. "," .. DN .. "," .. DS .. ",http://" .. closed))
  _, mt = urc(p, { "+ALIAUTH:", "+CME ERROR:" })
  t.eq(mt.line, "+CME ERROR: 767", "auth server unreachable")
  m:close()
end)

t.test("extended forms: auth host and port in CLOUDAUTH, CLOUDCONN=keepalive,clean,4", function()
  local p, m = modem { auth = "127.0.0.1:1" }          -- the default would fail
  assert(p:cmd("AT+ZECMCALL=1"))
  local port = AUTH_URL:match(":(%d+)$")
  assert(p:cmd(string.format('AT+CLOUDAUTH="%s","%s","%s","http://127.0.0.1",%s',
    PK, DN, DS, port)))
  t.eq(urc(p, { "+ALIAUTH: OK", "+ALIAUTH: FAIL", "+CME ERROR:" }), 1, "+ALIAUTH")
  t.fails("CME", p:cmd("AT+CLOUDCONN=60,1,3"))        -- MQTT 3.1: not supported
  t.fails("CME", p:cmd("AT+CLOUDCONN=5"))             -- keepalive below 30 s
  assert(p:cmd("AT+CLOUDCONN=120,1,4", { timeout = 10000 }))
  t.eq(assert(p:cmd("AT+CLOUDCONN?")).lines[1], "+CLOUDCONN: 1", "connected")
  assert(p:cmd("AT+CLOUDDISCONN"))
  m:close()
end)

t.test("messages cross both ways through mosquitto", function()
  local p, m = modem()
  online(p)
  local down = "/" .. PK .. "/" .. DN .. "/user/get"
  local up = "/" .. PK .. "/" .. DN .. "/user/update"
  assert(p:cmd("AT+CLOUDSUB=" .. down .. ",0," .. down .. "/1,1"))
  t.eq(urc(p, { "+CLOUDSUBACK: OK", "+CMD ERROR:" }), 1, "+CLOUDSUBACK after OK")
  -- broker -> module, payload with commas and a line break
  publish(down, "hello, world\r\nline 2")
  local _, mt = urc(p, { PUBLISH })
  t.eq(mt[1], "0", "packId of a QoS 0 subscription")
  t.eq(mt[2], down, "topic")
  t.eq(mt[3], "20", "length")
  t.eq(mt.payload, "hello, world\r\nline 2", "payload")
  publish(down .. "/1", "qos1")
  _, mt = urc(p, { PUBLISH })
  t.eq(mt[2], down .. "/1", "second topic")
  t.eq(mt[1], "1", "packId counts QoS 1 messages")
  t.eq(mt.payload, "qos1", "payload")
  -- module -> broker, QoS 0 and 1, a message with commas
  local sub = subscriber(up, 2)
  assert(p:cmd("AT+CLOUDPUB=" .. up .. ",0,{\"t\":21.5,\"h\":40}"))
  assert(p:cmd("AT+CLOUDPUB=" .. up .. ",1,helloworld"))
  t.ok(sub:expect(up .. '|{"t":21.5,"h":40}', { timeout = 10000 }), "QoS 0 arrived")
  t.ok(sub:expect(up .. "|helloworld", { timeout = 10000 }), "QoS 1 arrived")
  sub:close()
  m:close()
end)

t.test("CLOUDPUB limits: topic <= 64, payload < 256; a length takes raw bytes", function()
  local p, m = modem()
  online(p)
  local up = "/" .. PK .. "/" .. DN .. "/user/update"
  local sub = subscriber(up, 2)
  assert(p:cmd("AT+CLOUDPUB=" .. up .. ",0," .. string.rep("a", 255)))
  t.fails("CME", p:cmd("AT+CLOUDPUB=" .. up .. ",0," .. string.rep("a", 256)))
  t.fails("CME", p:cmd("AT+CLOUDPUB=/" .. string.rep("t", 64) .. ",0,x"))
  t.fails("CME", p:cmd("AT+CLOUDPUB=" .. up .. ",2,x"))
  t.fails("CME", p:cmd("AT+CLOUDPUB=" .. up .. ",0,300"))
  local r = assert(p:cmd("AT+CLOUDPUB=" .. up .. ",1,7", { prompt = ">", data = "a,b\r\nc!" }))
  t.eq(r.final, "OK", "raw bytes published")
  t.ok(sub:expect(up .. "|" .. string.rep("a", 255), { timeout = 10000 }), "255 bytes arrived")
  t.ok(sub:expect(up .. "|a,b", { timeout = 10000 }), "raw bytes arrived")
  sub:close()
  m:close()
end)

t.test("CLOUDSUB: at most 8 topics, QoS 0-1; CLOUDUNSUB stops delivery", function()
  local p, m = modem()
  online(p)
  local topics = {}
  for i = 1, 9 do topics[#topics + 1] = "/t/" .. i .. ",0" end
  t.fails("CME", p:cmd("AT+CLOUDSUB=" .. table.concat(topics, ",")))
  t.fails("CME", p:cmd("AT+CLOUDSUB=/t/1,2"))
  t.fails("CME", p:cmd("AT+CLOUDSUB=/t/1"))
  table.remove(topics)
  local r = assert(p:cmd("AT+CLOUDSUB=" .. table.concat(topics, ",")))
  t.deepeq(r.lines, {}, "nothing before OK")
  local _, mt = urc(p, { "+CLOUDSUBACK:", "+CMD ERROR:" })
  t.eq(mt.line, "+CLOUDSUBACK: OK", "one URC for 8 topics")
  assert(p:cmd("AT+CLOUDUNSUB=/t/1"))
  -- The broker routes in order: what follows the unsubscribed topic's
  -- message is the first delivery.
  publish("/t/1", "gone")
  publish("/t/2", "still here")
  _, mt = urc(p, { PUBLISH })
  t.eq(mt[2], "/t/2", "first delivery after unsubscribing")
  t.eq(mt.payload, "still here", "payload")
  m:close()
end)

-- A broker for one connection that answers CONNECT with CONNACK rc and
-- refuses (0x80) the subscriptions to the topics in `refuse`.
local function fake_broker(rc, refuse)
  local l = assert(athost.listen("127.0.0.1", 0))
  local task = athost.spawn(function()
    local c = l:accept { timeout = 10000 }
    if not c then return end
    local dec = mqtt.decoder()
    while true do
      local data = c:recv(65536, { timeout = 10000 })
      if not data then break end
      dec:feed(data)
      for pkt in function() return dec:next() end do
        if pkt.type == "CONNECT" then
          c:send(mqtt.connack(false, rc))
        elseif pkt.type == "SUBSCRIBE" then
          local granted = {}
          for _, s in ipairs(pkt.topics) do
            granted[#granted + 1] = refuse[s.topic] and 0x80 or s.qos
          end
          c:send(mqtt.suback(pkt.id, granted))
        end
      end
    end
    c:close()
  end)
  return "127.0.0.1:" .. l.port, function() l:close() task:join() end
end

t.test("the broker's refusals: CONNACK 5 is +CME ERROR: 767, SUBACK 0x80 +CMD ERROR: 128", function()
  local addr, stop = fake_broker(5, {})
  local p, m = modem { broker = addr }
  assert(p:cmd("AT+ZECMCALL=1"))
  assert(p:cmd("AT+CLOUDAUTH=" .. PK .. "," .. DN .. "," .. DS))
  t.eq(urc(p, { "+ALIAUTH: OK", "+ALIAUTH: FAIL", "+CME ERROR:" }), 1, "authenticated")
  local _, err = p:cmd("AT+CLOUDCONN", { timeout = 10000 })
  t.eq(err, "+CME ERROR: 767 at AT+CLOUDCONN", "CONNACK refused")
  m:close()
  stop()
  addr, stop = fake_broker(0, { ["/bad"] = true })
  p, m = modem { broker = addr }
  online(p)
  assert(p:cmd("AT+CLOUDSUB=/ok,0,/bad,1"))
  local _, mt = urc(p, { "+CLOUDSUBACK:", "+CMD ERROR:" })
  t.eq(mt.line, "+CMD ERROR: 128", "refused")
  assert(p:cmd("AT+CLOUDSUB=/ok,1"))
  _, mt = urc(p, { "+CLOUDSUBACK:", "+CMD ERROR:" })
  t.eq(mt.line, "+CLOUDSUBACK: OK", "granted")
  m:close()
  stop()
end)

t.test("CLOUDDISCONN: offline, token forgotten; re-auth and reconnect", function()
  local p, m = modem()
  online(p)
  local up = "/" .. PK .. "/" .. DN .. "/user/update"
  assert(p:cmd("AT+CLOUDDISCONN"))
  t.eq(assert(p:cmd("AT+CLOUDCONN?")).lines[1], "+CLOUDCONN: 0", "offline")
  t.fails("CME", p:cmd("AT+CLOUDPUB=" .. up .. ",0,x"))
  t.fails("CME", p:cmd("AT+CLOUDCONN"))               -- authenticate again first
  online(p)
  assert(p:cmd("AT+CLOUDPUB=" .. up .. ",0,again"))
  m:close()
end)

t.test("faults: link loss, refusal, silence, data call dropped", function()
  local p, m = modem()
  online(p)
  m:drop()
  urc(p, { "+CLOUDCONN: LOST" })
  t.fails("CME", p:cmd("AT+CLOUDPUB=/x,0,y"))
  assert(p:cmd("AT+CLOUDCONN", { timeout = 10000 }))  -- the token still works
  m:refuse("AT+CLOUDPUB", 767)
  t.fails("CME", p:cmd("AT+CLOUDPUB=/x,0,y"))
  m:refuse("AT+CLOUDPUB", nil)
  assert(p:cmd("AT+CLOUDPUB=/x,0,y"))
  m:silent(true)
  t.fails("ETIMEDOUT", p:cmd("AT", { timeout = 300 }))
  m:silent(false)
  assert(p:cmd("AT"))
  m:pdp_deact()
  local i = urc(p, { "+ZECMCALL: DISCONNECT" })
  t.eq(i, 1, "data call lost")
  urc(p, { "+CLOUDCONN: LOST" })
  t.fails("CME", p:cmd("AT+CLOUDCONN"))
  online(p)
  m:reboot()
  assert(p:cmd("ATE0"))
  t.eq(assert(p:cmd("AT+CLOUDCONN?")).lines[1], "+CLOUDCONN: 0", "offline after a reboot")
  t.eq(assert(p:cmd("AT+ZECMCALL?")).lines[1], "+ZECMCALL: 0", "no data call")
  t.fails("ERROR", p:cmd("AT+CLOUDCONN"))              -- the token is gone
  m:close()
end)

---------------------------------------------------------------------------
-- Knobs: each reading reference 002 allows
---------------------------------------------------------------------------

local AUTH = "AT+CLOUDAUTH=" .. PK .. "," .. DN .. "," .. DS

t.test("order=after (the command reference): OK, then +ALIAUTH and +CLOUDSUBACK", function()
  local p, m = modem { order = "after" }
  assert(p:cmd("AT+ZECMCALL=1"))
  local line, where, r = outcome(p, AUTH, AUTH_ALTS)
  t.eq(line, "+ALIAUTH: OK", "+ALIAUTH")
  t.eq(where, "after", "+ALIAUTH after OK")
  t.deepeq(r.lines, {}, "nothing before OK")
  assert(p:cmd("AT+CLOUDCONN", { timeout = 10000 }))
  line, where, r = outcome(p, "AT+CLOUDSUB=/k/a,0", SUB_ALTS)
  t.eq(line, "+CLOUDSUBACK: OK", "+CLOUDSUBACK")
  t.eq(where, "after", "+CLOUDSUBACK after OK")
  t.deepeq(r.lines, {}, "nothing before OK")
  m:close()
end)

t.test("order=before (reference 002's example): +ALIAUTH / +CLOUDSUBACK, then OK", function()
  local p, m = modem { order = "before" }
  -- No data call: the +CME ERROR outcome is the only answer.
  local r, err = p:cmd(AUTH, { timeout = 10000 })
  t.eq(r, nil, "refused")
  t.eq(err, "+CME ERROR: 30 at AT+CLOUDAUTH", "no data call")
  assert(p:cmd("AT+ZECMCALL=1"))
  local line, where
  line, where, r = outcome(p, "AT+CLOUDAUTH=" .. PK .. "," .. DN .. ",not" .. DS:sub(4),
    AUTH_ALTS)
  t.eq(line, "+ALIAUTH: FAIL", "a wrong secret")
  t.eq(where, "before", "+ALIAUTH: FAIL before OK")
  t.eq(r.final, "OK", "then OK")
  line, where, r = outcome(p, AUTH, AUTH_ALTS)
  t.eq(line, "+ALIAUTH: OK", "+ALIAUTH")
  t.eq(where, "before", "+ALIAUTH before OK")
  t.deepeq(r.lines, { "+ALIAUTH: OK" }, "the only line before OK")
  t.eq(r.final, "OK", "then OK")
  assert(p:cmd("AT+CLOUDCONN", { timeout = 10000 }))
  line, where, r = outcome(p, "AT+CLOUDSUB=/k/a,0,/k/b,1", SUB_ALTS)
  t.eq(line, "+CLOUDSUBACK: OK", "+CLOUDSUBACK")
  t.eq(where, "before", "+CLOUDSUBACK before OK")
  t.deepeq(r.lines, { "+CLOUDSUBACK: OK" }, "the only line before OK")
  m:close()
end)

t.test("order=before with a refusing broker: +CMD ERROR: 128, then OK; suback_first=1 alike", function()
  for _, opt in ipairs({ { order = "before" }, { suback_first = "1" } }) do
    local addr, stop = fake_broker(0, { ["/bad"] = true })
    opt.broker = addr
    local p, m = modem(opt)
    online(p)
    local line, where, r = outcome(p, "AT+CLOUDSUB=/bad,0", SUB_ALTS)
    t.eq(line, "+CMD ERROR: 128", "refused")
    t.eq(where, "before", "before OK")
    t.eq(r.final, "OK", "then OK")
    line, where = outcome(p, "AT+CLOUDSUB=/ok,1", SUB_ALTS)
    t.eq(line .. " " .. where, "+CLOUDSUBACK: OK before", "granted")
    m:close()
    stop()
  end
end)

t.test("suback_text=angle: +CLOUDSUBACK: <OK>, as the usage example prints it", function()
  local p, m = modem { suback_text = "angle" }
  online(p)
  t.eq(outcome(p, "AT+CLOUDSUB=/k/a,0", SUB_ALTS), "+CLOUDSUBACK: <OK>", "angle brackets")
  m:close()
  p, m = modem { suback_text = "ok" }
  online(p)
  t.eq(outcome(p, "AT+CLOUDSUB=/k/a,0", SUB_ALTS), "+CLOUDSUBACK: OK", "plain")
  m:close()
end)

t.test("urc_space=tight: +CLOUDPUBLISH:0,<topic>,<len>,<msg>; =space with a space", function()
  for _, v in ipairs({ "tight", "space" }) do
    local p, m = modem { urc_space = v }
    online(p)
    local topic = "/k/" .. v
    outcome(p, "AT+CLOUDSUB=" .. topic .. ",0", SUB_ALTS)
    publish(topic, "a,b c")
    local _, mt = urc(p, { { "^%+CLOUDPUBLISH: ?(%d+),([^,]*),(%d+),", count = 3 } })
    local want = "+CLOUDPUBLISH:" .. (v == "tight" and "" or " ") .. "0," .. topic .. ","
    t.eq(mt.line:sub(1, #want), want, v)
    t.eq(mt[3], "5", "length")
    t.eq(mt.payload, "a,b c", "payload")
    m:close()
  end
end)

t.test("an all-digit message is a length, after every prompt form", function()
  for _, form in ipairs({ "bare", "space", "line" }) do
    local p, m = modem { prompt = form }
    online(p)
    local up = "/" .. PK .. "/" .. DN .. "/user/" .. form
    local sub = subscriber(up, 1)
    local r = assert(p:cmd("AT+CLOUDPUB=" .. up .. ",1,2", { prompt = ">", data = "42" }))
    t.eq(r.final, "OK", "published after prompt=" .. form)
    t.ok(sub:expect(up .. "|42", { timeout = 10000 }), "\"42\" arrived")
    sub:close()
    m:close()
  end
end)

t.test("scripts/sim/me3630.lua serves a linked pty", function()
  local bin = os.getenv("ATHOST_BIN") or "./athost"
  local link = dir .. "/ttyME"
  local out, slave = assert(athost.pty { name = "me3630-script" })
  assert(os.execute(string.format("ATHOST_PATH=%s %s scripts/sim/me3630.lua link=%s auth=%s"
    .. " >%s 2>&1 </dev/null & echo $! >%s/me.pid", q(os.getenv("ATHOST_PATH") or ""),
    bin, q(link), q(AUTH_URL), q(slave), q(dir))))
  local pid = t.slurp(dir .. "/me.pid"):match("%d+")
  local ok, err = pcall(function()
    assert(out:expect("^/dev/pts/", { timeout = 5000 }))
    local p = assert(athost.open(link, { timeout = 5000 }))
    assert(p:cmd("ATE0"))
    t.eq(assert(p:cmd("AT+CGMR")).lines[1], "AL_ME3630C1CV1.0B01", "firmware")
    assert(p:cmd("AT+ZECMCALL=1"))
    assert(p:cmd("AT+CLOUDAUTH=" .. PK .. "," .. DN .. "," .. DS))
    t.eq(urc(p, { "+ALIAUTH: OK", "+ALIAUTH: FAIL", "+CME ERROR:" }), 1, "+ALIAUTH")
    p:close()
  end)
  os.execute("kill " .. pid .. " 2>/dev/null")
  out:close()
  if not ok then error(err, 0) end
end)

t.run()
