-- clouds/mqtt.lua end to end, as a user runs it: `athost clouds/mqtt.lua
-- -p sim:air720 ...` as a child process on the virtual Air720, against one
-- real mosquitto (tests/fixtures/broker.sh) at every TLS level, in ASCII
-- and HEX mode, with direct and cached delivery. mosquitto_sub and
-- mosquitto_pub check that messages cross both ways; the broker's log
-- says when a subscription is in place, so nothing waits blindly.
--
--   ATHOST_PATH=tests/lib:lib ./athost tests/lua/flow_mqtt_test.lua
--   ATHOST_BIN=build/asan/athost ...    (the children too)
local t = require("t")
local flows = require("flows")
local shown = flows.shown
local athost = require("athost")
local mqtt311 = require("athost.mqtt311")

local BIN = os.getenv("ATHOST_BIN") or "./athost"
local here = ((arg and arg[0]) or "tests/lua/x"):match("^(.*)/[^/]*$") or "."
local ROOT = here .. "/../.."
local BROKER_SH = ROOT .. "/tests/fixtures/broker.sh"
local FLOW = ROOT .. "/clouds/mqtt.lua"
local DIR = t.tmpdir()
local B = {}                  -- BROKER_* from broker.env, without the prefix

local proc = require("proc").new(DIR)
local q, shell, uid, poll = proc.q, proc.shell, proc.uid, proc.poll
local background, stop_running, test = proc.background, proc.stop_running, proc.test

---------------------------------------------------------------------------
-- The broker's log, mosquitto_sub, mosquitto_pub
---------------------------------------------------------------------------

local function broker_log() return t.slurp(B.DIR .. "/mosquitto.log") or "" end

-- Waits until the broker logged, since byte `from` of its log, its
-- connects-th CONNACK to client id (default the first) and a SUBACK after
-- it; fails early when the process `run` (if given) has ended.
local function subscribed(id, from, connects, run)
  poll(string.format("CONNACK #%d and then SUBACK to %s in the broker log",
    connects or 1, id), 20000, function()
    if run and run.done() then
      error("the flow ended before it subscribed: exit " .. run.done()
        .. ", stderr:\n" .. (t.slurp(run.base .. ".err") or ""), 0)
    end
    local s = broker_log():sub(from + 1)
    local at = 0
    for _ = 1, connects or 1 do
      at = s:find("Sending CONNACK to " .. id .. " ", at + 1, true)
      if not at then return false, s:sub(-400) end
    end
    return s:find("Sending SUBACK to " .. id .. "\n", at, true), s:sub(-400)
  end)
end

local function auth()
  return string.format("-h 127.0.0.1 -p %d -u %s -P %s", B.PORT, q(B.USER), q(B.PASS))
end

-- mosquitto_sub on topic, started and known to be subscribed. Returns a
-- function that waits until pred(payloads) holds for what it received
-- (exact bytes) and returns the payloads.
local function subscriber(topic)
  local id = "sub-" .. uid()
  local from = #broker_log()
  -- stdbuf: mosquitto_sub's stdout is block-buffered in a file.
  local base = background(string.format("timeout 60 stdbuf -oL mosquitto_sub -i %s %s "
    .. "-t %s -q 1 -W 55 -F %%x", id, auth(), q(topic)), id)
  subscribed(id, from)
  return function(pred, what)
    return poll(what or "messages at mosquitto_sub", 20000, function()
      local got = {}
      for hex in (t.slurp(base .. ".out") or ""):gmatch("(%x*)\n") do
        got[#got + 1] = athost.unhex(hex)
      end
      if pred(got) then return got end
      return nil, #got .. " message(s): " .. table.concat(got, " | "):sub(1, 300)
    end)
  end
end

-- mosquitto_pub of exactly these bytes (retained if asked).
local function publish(topic, payload, retain)
  local file = DIR .. "/pub-" .. uid()
  local f = assert(io.open(file, "wb"))
  f:write(payload)
  f:close()
  local out, ok = shell(string.format("mosquitto_pub %s -t %s -q 1 %s-f %s", auth(),
    q(topic), retain and "-r " or "", file))
  t.ok(ok, "mosquitto_pub: " .. out)
end

---------------------------------------------------------------------------
-- The flow as a child process
---------------------------------------------------------------------------

-- Starts `athost -l TRANSCRIPT clouds/mqtt.lua -p 'sim:air720?SIM' k=v...`
-- (or -p PORT, a module this process serves). run.done() is its exit code
-- once it ended; run.wait() waits for that and returns { rc, out, err, tr }.
local function flow(sim, args, port)
  local name = "flow-" .. uid()
  local keys, words = {}, {}
  for k, v in pairs(args) do if v ~= false then keys[#keys + 1] = k end end
  table.sort(keys)
  for _, k in ipairs(keys) do words[#words + 1] = q(k .. "=" .. args[k]) end
  local tr = DIR .. "/" .. name .. ".tr"
  local run = {}
  run.base = background(string.format("timeout -s TERM 60 %s -l %s %s -p %s %s", BIN,
    tr, FLOW, q(port or "sim:air720" .. (sim and "?" .. sim or "")), table.concat(words, " ")),
    name)
  function run.done()
    local rc = t.slurp(run.base .. ".rc")
    return rc and tonumber(rc:match("%d+"))
  end
  function run.wait(ms)
    local rc = poll("the flow to end", ms or 45000, run.done)
    return { rc = rc, out = t.slurp(run.base .. ".out") or "",
      err = t.slurp(run.base .. ".err") or "", tr = t.slurp(tr) or "" }
  end
  return run
end

-- Transcript text as sent, without its escapes (\r \n \t \\ \xHH).
local ESC = { r = "\r", n = "\n", t = "\t", ["\\"] = "\\" }
local function unescape(s)
  return (s:gsub("\\(.)(%x?%x?)", function(c, h)
    if c == "x" then return string.char(tonumber(h, 16)) end
    return ESC[c] .. h
  end))
end

-- The records of the flow's own port (not the virtual modem's side nor
-- its network links) in direction dir, unescaped.
local function records(tr, dir)
  local out = {}
  for l in tr:gmatch("[^\n]+") do
    local name, d, s = l:match("^%s*[%d.]+ (%S+) ([<>]) (.*)$")
    if d == dir and not name:find("%-sim$") and not name:find("^tcp:") then
      out[#out + 1] = unescape(s)
    end
  end
  return out
end

-- The lines the flow sent to the module.
local function sent(tr) return records(tr, ">") end

-- What the module said to the flow, as one text.
local function heard(tr) return table.concat(records(tr, "<")) end

local function has_sent(tr, plain)
  for _, s in ipairs(sent(tr)) do
    if s:find(plain, 1, true) then return s end
  end
end

local LEVELS = flows.levels(B)

-- One session of clouds/mqtt.lua, both ways: mosquitto_sub waits on `up`
-- first; the flow subscribes to `down`, publishes o.up and listens for one
-- message; once the broker logged the flow's SUBACK (after its
-- o.connects-th CONNACK), mosquitto_pub sends o.down. Checks the exit code, that o.up arrived
-- byte-exact and that the flow printed o.down; returns the run's result.
local function roundtrip(o)
  local u = o.uid or uid()
  local up, down = "athost/flow/" .. u .. "/up", "athost/flow/" .. u .. "/down"
  local cid = "flow-" .. u
  local tls = o.tls or "none"
  local port, files = LEVELS[tls]()
  local args = { host = "127.0.0.1", port = port, tls = tls, client_id = cid,
    username = o.username or B.USER, password = o.password or B.PASS,
    subscribe = down, topic = up, publish = o.up, listen = 30, messages = 1,
    mode = o.mode or "ascii", delivery = o.delivery or "direct", qos = o.qos or 0 }
  for k, v in pairs(files) do args[k] = v end
  for k, v in pairs(o.args or {}) do args[k] = v end
  local received = subscriber(up)
  local from = #broker_log()
  local run = flow(o.sim, args)
  subscribed(cid, from, o.connects, run)
  publish(down, o.down)
  local r = run.wait()
  t.eq(r.rc, 0, "exit code (stderr: " .. r.err .. ")")
  t.eq(r.out, shown(down, o.down), "stdout")
  local want = o.arrives or o.up
  local got = received(function(ps)
    for _, p in ipairs(ps) do if p == want then return true end end
  end, "the flow's publish at mosquitto_sub")
  r.up, r.down, r.cid, r.port, r.received = up, down, cid, port, got
  return r
end

-- The lines of stderr that start with "athost:" (the one-line error).
local function errors(err)
  local out = {}
  for l in err:gmatch("[^\n]+") do
    if l:find("^athost:") then out[#out + 1] = l end
  end
  return out
end

local function session_args(extra)
  local args = { host = "127.0.0.1", port = B.PORT, client_id = "flow-" .. uid(),
    username = B.USER, password = B.PASS, subscribe = "athost/flow/" .. uid() }
  for k, v in pairs(extra or {}) do args[k] = v end
  return args
end

---------------------------------------------------------------------------
-- Every TLS level, both payload modes, both deliveries
---------------------------------------------------------------------------

-- What the flow must have said to the module for each level.
local TLS_DIALOGUE = {
  none = { yes = { "AT+MIPSTART=" }, no = { "AT+SSLCFG", "AT+SSLMIPSTART", "AT+FSWRITE" } },
  noverify = { yes = { 'AT+SSLCFG="seclevel",88,0', "AT+SSLMIPSTART=" },
    no = { "AT+FSWRITE", '"cacert"' } },
  server = { yes = { 'AT+FSCREATE="ca.crt"', 'AT+SSLCFG="cacert",88,"ca.crt"',
    'AT+SSLCFG="seclevel",88,1', "AT+SSLMIPSTART=" }, no = { '"clientkey"' } },
  mutual = { yes = { 'AT+FSCREATE="ca.crt"', 'AT+FSCREATE="client.crt"',
    'AT+FSCREATE="client.key"', 'AT+SSLCFG="clientcert",88,"client.crt"',
    'AT+SSLCFG="clientkey",88,"client.key"', 'AT+SSLCFG="seclevel",88,2',
    "AT+SSLMIPSTART=" }, no = {} },
}
local DESCRIBED = { none = "plain TCP", noverify = "TLS noverify", server = "TLS server",
  mutual = "TLS mutual" }

for _, tls in ipairs({ "none", "noverify", "server", "mutual" }) do
  for _, mode in ipairs({ "ascii", "hex" }) do
    for _, delivery in ipairs({ "direct", "cached" }) do
      local qos = delivery == "cached" and 1 or 0
      test(string.format("tls=%s mode=%s delivery=%s qos=%d: messages cross both ways",
        tls, mode, delivery, qos), function()
        local up = string.format("up %s/%s/%s from the device", tls, mode, delivery)
        local down = string.format("down %s/%s/%s from the cloud", tls, mode, delivery)
        local r = roundtrip { tls = tls, mode = mode, delivery = delivery, qos = qos,
          up = up, down = down }
        t.match(r.err, string.format("connected to 127%%.0%%.0%%.1:%d %%(%s, %s, %s delivery%%)",
          r.port, DESCRIBED[tls], mode, delivery), "stderr")
        t.match(r.err, "done: broker 127%.0%.0%.1:%d+, published 1, received 1, reconnects 0",
          "summary")
        for _, s in ipairs(TLS_DIALOGUE[tls].yes) do
          t.ok(has_sent(r.tr, s), "the flow sent " .. s)
        end
        for _, s in ipairs(TLS_DIALOGUE[tls].no) do
          t.ok(not has_sent(r.tr, s), "the flow did not send " .. s)
        end
        t.ok(has_sent(r.tr, "AT+MQTTMODE=" .. (mode == "hex" and 1 or 0)), "AT+MQTTMODE")
        t.ok(has_sent(r.tr, "AT+MQTTMSGSET=" .. (delivery == "cached" and 1 or 0)),
          "AT+MQTTMSGSET")
        t.eq(has_sent(r.tr, "AT+MQTTMSGGET") ~= nil, delivery == "cached",
          "cached messages read with AT+MQTTMSGGET")
        local body = mode == "hex" and athost.hex(up):upper() or up
        t.ok(has_sent(r.tr, string.format('AT+MPUB="%s",%d,0,"%s"', r.up, qos, body)),
          "AT+MPUB with the " .. mode .. " payload")
        if qos == 1 then
          t.ok(heard(r.tr):find("\r\nPUBACK\r\n", 1, true), "the module said PUBACK")
        end
      end)
    end
  end
end

---------------------------------------------------------------------------
-- Payloads AT+MPUB cannot carry as they are
---------------------------------------------------------------------------

local QUOTED = 'say "hi"\nback\\slash\r\n{"温度":21.5}\tend'

-- n bytes of printable text with quotes and line ends in it.
local function long_text(n)
  local parts, i = {}, 0
  while #table.concat(parts) < n do
    i = i + 1
    parts[#parts + 1] = string.format('line %d: "quoted" \\ text\n', i)
  end
  return table.concat(parts):sub(1, n)
end

test("a quote, a backslash, line ends, UTF-8: AT+MPUB escapes, byte-exact both ways", function()
  local r = roundtrip { up = QUOTED, down = 'cmd "x"\n\\\r\nend' }
  local s = t.ok(has_sent(r.tr, 'AT+MPUB="' .. r.up .. '"'), "AT+MPUB")
  t.eq(s, string.format('AT+MPUB="%s",0,0,"say \\22hi\\22\\0Aback\\5Cslash\\0D\\0A'
    .. '{\\22温度\\22:21.5}\tend"\r', r.up), "the escaped AT+MPUB")
  t.ok(not has_sent(r.tr, "AT+MPUBEX"), "no AT+MPUBEX")
end)

test("hex mode and cached delivery: a quote and line ends, byte-exact both ways", function()
  local r = roundtrip { mode = "hex", delivery = "cached", up = QUOTED,
    down = 'cmd "x"\n\\\r\nend' }
  t.ok(has_sent(r.tr, string.format('AT+MPUB="%s",0,0,"%s"', r.up,
    athost.hex(QUOTED):upper())), "AT+MPUB in hex")
end)

test("more than 4100 bytes: AT+MPUBEX with the exact count, byte-exact", function()
  local text = long_text(5000)
  -- Down: the longest message the module delivers (limits.message).
  local r = roundtrip { up = text, down = long_text(4100), tls = "server" }
  t.ok(has_sent(r.tr, string.format('AT+MPUBEX="%s",0,0,5000', r.up)), "AT+MPUBEX")
  t.ok(not has_sent(r.tr, 'AT+MPUB="'), "no AT+MPUB")
end)

test("hex mode: 3000 bytes are 6000 hex digits, so AT+MPUBEX, byte-exact", function()
  local text = long_text(3000)
  local r = roundtrip { mode = "hex", up = text, down = long_text(3000) }
  t.ok(has_sent(r.tr, string.format('AT+MPUBEX="%s",0,0,3000', r.up)), "AT+MPUBEX")
  t.ok(not has_sent(r.tr, 'AT+MPUB="'), "no AT+MPUB")
end)

test("cached delivery: four messages cached at once are all delivered", function()
  -- Retained messages reach the module right after its SUBACK, while the
  -- flow still waits for its PUBACK: all four slots fill before the flow
  -- reads them, and one AT+MQTTMSGGET prints them all.
  local base = "athost/flow/" .. uid()
  local want = {}
  for i = 1, 4 do
    publish(base .. "/retained/" .. i, "retained " .. i, true)
    want[i] = shown(base .. "/retained/" .. i, "retained " .. i)
  end
  local r = flow(nil, session_args { subscribe = base .. "/retained/#", qos = 1,
    delivery = "cached", topic = base .. "/up", publish = "up", listen = 15,
    messages = 4 }).wait()
  t.eq(r.rc, 0, "exit code (stderr: " .. r.err .. ")")
  local got = {}
  for l in r.out:gmatch("[^\n]+\n") do got[#got + 1] = l end
  table.sort(got)
  t.eq(table.concat(got), table.concat(want), "stdout")
  t.match(r.err, "received 4", "summary")
end)

test("every byte value, both ways: a handler= file publishes them (AT+MPUBEX)", function()
  local all = {}
  for b = 0, 255 do all[#all + 1] = string.char(b) end
  all = table.concat(all)
  -- The handler publishes on connect and answers the message it receives.
  local handler = DIR .. "/handler-" .. uid() .. ".lua"
  local f = assert(io.open(handler, "w"))
  f:write([[
local all = {}
for b = 0, 255 do all[#all + 1] = string.char(b) end
return {
  on_connect = function(session, args)
    session:publish(args.topic, table.concat(all), 1)
  end,
  on_message = function(msg, session)
    session:publish(msg.topic .. "/echo", msg.payload, 0)
  end,
}
]])
  f:close()
  local u = uid()
  local echoed = subscriber("athost/flow/" .. u .. "/down/echo")
  local r = roundtrip { uid = u, qos = 1, arrives = all, down = all:reverse(),
    args = { handler = handler } }
  t.ok(has_sent(r.tr, string.format('AT+MPUBEX="%s",1,0,256', r.up)), "AT+MPUBEX")
  t.ok(echoed(function(ps) return ps[1] == all:reverse() end, "the handler's echo"))
end)

test("a message that comes with the answer to AT+MPUB is not left waiting", function()
  -- The virtual Air720 runs here, and says "+MSUB: ..." in the same write
  -- as AT+MPUB's OK: the flow's URC handler queues the message after the
  -- flow went on to listen.
  local u = uid()
  local down, text = "athost/flow/" .. u .. "/down", "with the OK"
  local m = assert(require("athost.sim").start("air720", {}))
  local mpub = m.commands["+MPUB"]
  m.commands["+MPUB"] = function(mm, c)
    mpub(mm, c)
    mm:urc(string.format('+MSUB: "%s",%d byte,%s', down, #text, text))
  end
  local t0 = athost.now()
  local ok, err = pcall(function()
    local r = flow(nil, session_args { subscribe = down, topic = "athost/flow/" .. u .. "/up",
      publish = "up", listen = 20, messages = 1 }, m.path).wait()
    t.eq(r.rc, 0, "exit code (stderr: " .. r.err .. ")")
    t.ok(heard(r.tr):find("\r\nOK\r\n\r\n+MSUB: ", 1, true), "OK and +MSUB in one read")
    t.eq(r.out, shown(down, text), "stdout")
    local ms = athost.now() - t0
    t.ok(ms < 10000, "delivered at once, not when listen=20 ended (" .. ms .. " ms)")
  end)
  m:close()
  t.eq(#m.bugs, 0, "model errors: " .. table.concat(m.bugs, "\n"))
  if not ok then error(err, 0) end
end)

---------------------------------------------------------------------------
-- Secrets
---------------------------------------------------------------------------

test("the password and the client key never appear on stdout, stderr, transcript", function()
  local user, pass = "user-" .. uid(), "pw-" .. athost.random(12, "hex")
  local out, ok = shell(BROKER_SH .. " adduser " .. DIR .. " " .. user .. " " .. pass)
  t.ok(ok, "broker.sh adduser: " .. out)
  local r = roundtrip { tls = "mutual", username = user, password = pass,
    up = "secret-free", down = "still secret-free" }
  t.ok(has_sent(r.tr, string.format('AT+MCONFIG="%s","%s","***"', r.cid, user)),
    "AT+MCONFIG with the password masked")
  local key = assert(t.slurp(B.CLIENT_KEY))
  for what, s in pairs({ stdout = r.out, stderr = r.err, transcript = r.tr }) do
    t.ok(not s:find(pass, 1, true), what .. " shows the password")
    for line in key:gmatch("[^\n]+") do
      if not line:find("^%-%-%-%-%-") then
        t.ok(not s:find(line, 1, true), what .. " shows the client key")
      end
    end
  end
  t.ok(has_sent(r.tr, "***"), "the key went up masked")
  t.ok(broker_log():find("as " .. r.cid .. " (p2, c1, k60, u'" .. user .. "')", 1, true),
    "the broker logged the client with user " .. user)
end)

---------------------------------------------------------------------------
-- Failures
---------------------------------------------------------------------------

test("a wrong password: the broker refuses, exit 1, step \"connect\"", function()
  local pass = "wrong-" .. athost.random(8, "hex")
  local r = flow(nil, session_args { password = pass }).wait()
  t.eq(r.rc, 1, "exit code (stderr: " .. r.err .. ")")
  local e = errors(r.err)
  t.eq(#e, 1, "one error line in " .. r.err)
  t.match(e[1], '^athost: step "connect" failed: MQTT connect: the broker refused', "error")
  for what, s in pairs({ stdout = r.out, stderr = r.err, transcript = r.tr }) do
    t.ok(not s:find(pass, 1, true), what .. " shows the password")
  end
  t.ok(not has_sent(r.tr, "AT+MSUB"), "no AT+MSUB")
end)

test("a password an AT string cannot carry: exit 1, the field named, not its value", function()
  local tail = athost.random(6, "hex")
  local r = flow(nil, session_args { password = 'pa"ss-' .. tail }).wait()
  t.eq(r.rc, 1, "exit code (stderr: " .. r.err .. ")")
  local e = errors(r.err)
  t.eq(#e, 1, "one error line in " .. r.err)
  t.match(e[1], '^athost: step "connect" failed: AT%+MCONFIG: password contains a '
    .. "double quote", "error")
  for what, s in pairs({ stdout = r.out, stderr = r.err, transcript = r.tr }) do
    t.ok(not s:find(tail, 1, true), what .. " shows the password")
  end
  t.ok(not has_sent(r.tr, "AT+MCONFIG"), "no AT+MCONFIG")
end)

test("tls=server with the wrong CA: CONNECT FAIL, exit 1, step \"connect\"", function()
  local r = flow(nil, session_args { port = B.TLS_PORT, tls = "server",
    ca = B.WRONG_CA }).wait()
  t.eq(r.rc, 1, "exit code (stderr: " .. r.err .. ")")
  local e = errors(r.err)
  t.eq(#e, 1, "one error line in " .. r.err)
  t.match(e[1], '^athost: step "connect" failed: .*CONNECT FAIL', "error")
  t.ok(has_sent(r.tr, 'AT+SSLCFG="seclevel",88,1'), "verification was on")
end)

-- A broker that accepts one client and refuses its subscriptions (SUBACK
-- 0x80), as an ACL does; mosquitto here grants every topic.
local function refusing_broker()
  local l = assert(athost.listen("127.0.0.1", 0))
  local task = athost.spawn(function()
    local c = l:accept { timeout = 20000 }
    if not c then return end
    local d = mqtt311.decoder()
    while true do
      local p = d:next()
      if p and p.type == "CONNECT" then
        c:send(mqtt311.connack(false, 0))
      elseif p and p.type == "SUBSCRIBE" then
        c:send(mqtt311.suback(p.id, { 0x80 }))
      elseif not p then
        local data = c:recv(4096, { timeout = 20000 })
        if not data then break end
        d:feed(data)
      end
    end
    c:close()
  end)
  return l, task
end

test("a broker that refuses the subscription: exit 1 at once, step \"subscribe\"", function()
  local l, task = refusing_broker()
  local t0 = athost.now()
  local r = flow(nil, session_args { port = l.port }).wait()
  local ms = athost.now() - t0
  l:close()
  task:join()
  t.eq(r.rc, 1, "exit code (stderr: " .. r.err .. ")")
  local e = errors(r.err)
  t.eq(#e, 1, "one error line in " .. r.err)
  t.match(e[1], '^athost: step "subscribe" failed: subscribing to .*%+CME ERROR: 767', "error")
  t.ok(ms < 10000, "failed at once, not after the 30 s SUBACK wait (" .. ms .. " ms)")
end)

test("no AT+MQTTMODE, ATE0 or AT+CMEE (reference 000 sends none): ASCII works", function()
  local r = roundtrip { sim = "refuse=AT%2BMQTTMODE%3BATE0%3BAT%2BCMEE", up = "up without MQTTMODE",
    down = "down without MQTTMODE" }
  t.match(r.err, "AT%+MQTTMODE=0 refused %(.-%): going on", "the refusal is noted")
end)

test("no AT+MQTTMODE in mode=hex: exit 1 naming it (HEX cannot be had)", function()
  local r = flow("refuse=AT%2BMQTTMODE", session_args { mode = "hex" }).wait()
  t.eq(r.rc, 1, "exit code (stderr: " .. r.err .. ")")
  local e = errors(r.err)
  t.eq(#e, 1, "one error line in " .. r.err)
  t.match(e[1], '^athost: step "connect" failed: .*at AT%+MQTTMODE', "error")
end)

test("a module that stops answering: ETIMEDOUT naming the command, exit 1", function()
  local r = flow("silent=AT%2BMSUB", session_args()).wait()
  t.eq(r.rc, 1, "exit code (stderr: " .. r.err .. ")")
  local e = errors(r.err)
  t.eq(#e, 1, "one error line in " .. r.err)
  t.match(e[1], '^athost: step "subscribe" failed: .*ETIMEDOUT: no final result to AT%+MSUB',
    "error")
end)

test("the link drops after a publish: reconnected, the next publish arrives", function()
  -- drop=AT+MPUB: the link drops right after the first AT+MPUB's answer,
  -- between the two publishes of count=2.
  local r = roundtrip { sim = "drop=AT%2BMPUB", args = { count = 2 },
    up = "publish %d of 2", arrives = "publish 2 of 2", down = "after the drop",
    connects = 2 }
  t.match(r.err, "link lost %(CLOSED%): reconnecting", "stderr")
  t.match(r.err, "reconnected %(attempt 1%)", "stderr")
  t.match(r.err, "published 2, received 1, reconnects 1", "summary")
  local n = 0
  for _, s in ipairs(sent(r.tr)) do
    if s:find("^AT%+MCONNECT=") then n = n + 1 end
  end
  t.eq(n, 2, "AT+MCONNECT twice")
end)

test("the link drops right after AT+MSUB: reconnected, subscribed, both ways", function()
  local r = roundtrip { sim = "drop=AT%2BMSUB", up = "after the drop",
    down = "to the new session", connects = 2 }
  t.match(r.err, "link lost %(CLOSED%): reconnecting", "stderr")
  t.match(r.err, "published 1, received 1, reconnects 1", "summary")
end)

test("+PDP DEACT with the answer to a QoS 1 AT+MPUB: CIPSHUT, CGACT, next publish", function()
  -- The URC comes in the same read as AT+MPUB's OK, before the PUBACK wait.
  local t0 = athost.now()
  local r = roundtrip { sim = "pdp=AT%2BMPUB", qos = 1, args = { count = 2 },
    up = "publish %d of 2", arrives = "publish 2 of 2", down = "after +PDP DEACT",
    connects = 2 }
  t.ok(athost.now() - t0 < 15000, "recovered at once, not after the 30 s PUBACK wait")
  t.match(r.err, "link lost %(%+PDP DEACT%): reconnecting", "stderr")
  t.match(r.err, "reconnected %(attempt 1%)", "stderr")
  t.match(r.err, "published 2, received 1, reconnects 1", "summary")
  t.ok(has_sent(r.tr, "AT+CIPSHUT"), "AT+CIPSHUT")
  t.ok(has_sent(r.tr, 'AT+CGDCONT=5,"IP","CMIIOT"'), "the context defined")
  t.ok(has_sent(r.tr, "AT+CGACT=1,5"), "the context activated again")
  t.ok(not has_sent(r.tr, "AT+SAPBR"), "not the HTTP bearer")
end)

---------------------------------------------------------------------------
-- Every reading a reference allows (the virtual modem's knobs)
---------------------------------------------------------------------------

-- The outcome URCs before or after OK: the flow takes them either way.
for _, order in ipairs({ "after", "before" }) do
  test("order=" .. order .. ": CONNECT OK, CONNACK OK, SUBACK, PUBACK taken, "
    .. "both ways", function()
    local r = roundtrip { sim = "order=" .. order, qos = 1,
      up = "outcome " .. order, down = "down " .. order }
    t.match(r.err, "published 1, received 1, reconnects 0", "summary")
    -- The incoming message may come between OK and a later PUBACK.
    local said = heard(r.tr):gsub("\r\n%+MSUB: [^\r\n]*\r\n", "")
    for _, outcome in ipairs({ "CONNECT OK", "CONNACK OK", "SUBACK", "PUBACK" }) do
      local first = order == "before" and outcome or "OK"
      local second = order == "before" and "OK" or outcome
      t.ok(said:find("\r\n" .. first .. "\r\n\r\n" .. second .. "\r\n", 1, true),
        string.format("the module said %s, then %s", first, second))
    end
  end)
end

-- HEX mode: <n> counts hex characters or bytes, " byte" or not, the cached
-- topic bare or quoted; the flow reads every combination.
for _, c in ipairs({
  { delivery = "direct", sim = "hex_count=chars&msub_len=byte",
    line = '+MSUB: "%s",%d byte,%s', n = "chars" },
  { delivery = "direct", sim = "hex_count=bytes&msub_len=bare",
    line = '+MSUB: "%s",%d,%s', n = "bytes" },
  { delivery = "cached", sim = "hex_count=chars&msub_len=bare&cached_topic=quoted",
    line = '+MSUB: "%s",%d,%s', n = "chars" },
  { delivery = "cached", sim = "hex_count=bytes&msub_len=byte&cached_topic=bare",
    line = "+MSUB: %s,%d byte,%s", n = "bytes" },
}) do
  test(string.format("mode=hex delivery=%s, <n> counts %s (%s)", c.delivery, c.n, c.sim),
    function()
    local down = 'hex "down"\r\n' .. c.n
    local r = roundtrip { sim = c.sim, mode = "hex", delivery = c.delivery,
      up = "hex up", down = down }
    local hex = athost.hex(down):upper()
    local want = string.format(c.line, r.down, c.n == "bytes" and #down or #hex, hex)
    t.ok(heard(r.tr):find("\r\n" .. want .. "\r\n", 1, true), "the module said " .. want)
  end)
end

-- A virtual Air720 in this process whose answer to AT+MSUB is followed by
-- `line` (a message the flow must refuse); the flow (subscribe, listen)
-- must exit 1 at step "listen" with `msg` and print no message.
local function bad_message(opts, line, msg)
  local u = uid()
  local down = "athost/flow/" .. u .. "/down"
  local m = assert(require("athost.sim").start("air720", opts.sim or {}))
  local msub = m.commands["+MSUB"]
  m.commands["+MSUB"] = function(mm, c)
    msub(mm, c)
    mm:urc(string.format(line, down))
  end
  local ok, err = pcall(function()
    local r = flow(nil, session_args { subscribe = down, mode = opts.mode or "ascii",
      listen = 10, messages = 1 }, m.path).wait()
    t.eq(r.rc, 1, "exit code (stderr: " .. r.err .. ")")
    t.eq(r.out, "", "no message printed")
    local e = errors(r.err)
    t.eq(#e, 1, "one error line in " .. r.err)
    t.match(e[1], '^athost: step "listen" failed: waiting for messages: incoming %+MSUB on "'
      .. down:gsub("%p", "%%%0") .. '": ' .. msg, "error")
  end)
  m:close()
  t.eq(#m.bugs, 0, "model errors: " .. table.concat(m.bugs, "\n"))
  if not ok then error(err, 0) end
end

test("an incoming count above the profile's limit: an error naming it, no message", function()
  bad_message({}, '+MSUB: "%s",5000 byte,hello', ".*announced 5000 bytes, more than the 4100")
end)

test("a negative incoming count: an error naming it, no message", function()
  bad_message({}, '+MSUB: "%s",-5 byte,hello', ".*announced a negative byte count %(%-5%)")
end)

test("an ASCII count that disagrees with the payload: an error, no half message", function()
  bad_message({}, '+MSUB: "%s",3 byte,hello', ".*announced 3 bytes, but what came does "
    .. "not end after 3 bytes")
end)

test("mode=hex: a count that fits no reading names both readings", function()
  bad_message({ mode = "hex" }, '+MSUB: "%s",15 byte,68692C2',
    "announced 15 byte but 7 hex characters came %(want 15 or 30%)")
end)

test("mode=hex: a count above the limit, a negative count: errors", function()
  bad_message({ mode = "hex" }, '+MSUB: "%s",9000,6869',
    "announced 9000 byte, above the limit of 4100 bytes")
  bad_message({ mode = "hex" }, '+MSUB: "%s",-2 byte,6869', 'announced "%-2" byte: not a count')
end)

-- The bearer is lost right after a message was cached (+MSUB: <slot>), in
-- a virtual Air720 in this process with the knobs `sim`. The flow must
-- deliver the cached message, recover (its transcript is returned) and
-- deliver a message published after it re-subscribed.
local function bearer_lost(sim)
  local u = uid()
  local down, cid = "athost/flow/" .. u .. "/down", "flow-" .. u
  local m = assert(require("athost.sim").start("air720", sim))
  -- The fault follows the announcement of the first cached message.
  local armed = true
  local urc = m.urc
  function m:urc(line, gen)
    urc(self, line, gen)
    if armed and line:find("^%+MSUB: %d$") then
      armed = false
      self:pdp_deact()
    end
  end
  local r
  local ok, err = pcall(function()
    local from = #broker_log()
    local run = flow(nil, session_args { client_id = cid, subscribe = down,
      delivery = "cached", listen = 30, messages = 2 }, m.path)
    subscribed(cid, from, 1, run)
    publish(down, "before the fault")
    subscribed(cid, from, 2, run)
    publish(down, "after the fault")
    r = run.wait()
    t.eq(r.rc, 0, "exit code (stderr: " .. r.err .. ")")
    t.eq(r.out, shown(down, "before the fault") .. shown(down, "after the fault"), "stdout")
    t.match(r.err, "reconnected %(attempt 1%)", "stderr")
    t.match(r.err, "received 2, reconnects 1", "summary")
    t.ok(has_sent(r.tr, "AT+CIPSHUT"), "AT+CIPSHUT")
    t.ok(has_sent(r.tr, 'AT+CGDCONT=5,"IP","CMIIOT"'), "AT+CGDCONT=5")
    t.ok(has_sent(r.tr, "AT+CGACT=1,5"), "AT+CGACT=1,5")
    t.ok(not has_sent(r.tr, "AT+SAPBR"), "not the HTTP bearer")
  end)
  m:close()
  t.eq(#m.bugs, 0, "model errors: " .. table.concat(m.bugs, "\n"))
  if not ok then error(err, 0) end
  return r
end

-- The commands the flow sent, in order, from the first AT+CIPSHUT on.
local function after_shut(tr)
  local out, on = {}, false
  for _, s in ipairs(sent(tr)) do
    s = s:gsub("\r$", "")
    on = on or s == "AT+CIPSHUT"
    if on then out[#out + 1] = s end
  end
  return out
end

test("+PDP DEACT after a cached message: read, CIPSHUT, CGDCONT + CGACT, re-subscribed",
  function()
  local r = bearer_lost { pdp_urc = "pdp", cgact = "ok" }
  t.match(r.err, "link lost %(%+PDP DEACT%): reconnecting", "stderr")
  t.ok(not has_sent(r.tr, "AT+CFUN"), "no AT+CFUN: CGACT was enough")
  local cmds = after_shut(r.tr)
  t.deepeq({ cmds[1], cmds[2], cmds[3] }, { "AT+CIPSHUT", 'AT+CGDCONT=5,"IP","CMIIOT"',
    "AT+CGACT=1,5" }, "the first way of reference 003")
end)

test("+CGEV: NW PDN DEACT 1, CGACT refused: AT+CFUN=0 then AT+CFUN=1", function()
  local r = bearer_lost { pdp_urc = "cgev", cgact = "refuse", order = "before" }
  t.match(r.err, "link lost %(%+CGEV: NW PDN DEACT 1%): reconnecting", "stderr")
  t.ok(heard(r.tr):find("+CGEV: NW PDN DEACT 1", 1, true), "the module said +CGEV")
  t.ok(not heard(r.tr):find("+PDP DEACT", 1, true), "and not +PDP DEACT")
  t.ok(heard(r.tr):find("+CME ERROR: 767", 1, true), "CGACT refused")
  local cmds = after_shut(r.tr)
  t.deepeq({ cmds[1], cmds[2], cmds[3], cmds[4], cmds[5] }, { "AT+CIPSHUT",
    'AT+CGDCONT=5,"IP","CMIIOT"', "AT+CGACT=1,5", "AT+CFUN=0", "AT+CFUN=1" },
    "CGACT, then the second way")
end)

test("both bearer URCs, CGACT and CFUN refused: AT+RESET, bring-up, one recovery", function()
  local r = bearer_lost { pdp_urc = "both", cgact = "refuse", refuse = "AT+CFUN:767" }
  t.ok(has_sent(r.tr, "AT+RESET"), "AT+RESET")
  local cmds = table.concat(after_shut(r.tr), "|")
  t.match(cmds, "AT%+CFUN=0|AT%+RESET|AT|.-ATE0|AT%+CMEE=1|", "reset, then brought up")
  t.match(r.err, "re%-activation 2/3 failed", "stderr")
end)

-- Last: it restarts the broker.
test("the broker restarts while the flow listens: reconnected, message arrives", function()
  local u = uid()
  local down, cid = "athost/flow/" .. u .. "/down", "flow-" .. u
  local from = #broker_log()
  local run = flow(nil, session_args { client_id = cid, subscribe = down,
    listen = 30, messages = 1 })
  subscribed(cid, from, 1, run)
  from = #broker_log()
  local out, ok = shell(BROKER_SH .. " restart " .. DIR)
  t.ok(ok, "broker.sh restart: " .. out)
  subscribed(cid, from, 1, run)
  publish(down, "after the restart")
  local r = run.wait()
  t.eq(r.rc, 0, "exit code (stderr: " .. r.err .. ")")
  t.eq(r.out, shown(down, "after the restart"), "stdout")
  t.match(r.err, "link lost %(CLOSED%): reconnecting", "stderr")
  t.match(r.err, "reconnected %(attempt %d%)", "stderr")
end)

---------------------------------------------------------------------------

for k, v in pairs(require("broker").start(DIR)) do B[k] = v end

local passed, err = pcall(t.run)
stop_running()
shell(BROKER_SH .. " stop " .. DIR)
shell("rm -rf " .. DIR)
if not passed then error(err, 0) end
