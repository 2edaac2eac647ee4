-- Ctrl-C and SIGTERM in flows: the flow's cleanups (athost.defer) close
-- what it opened on the module within a bounded time, the run exits 4
-- naming the step, a second signal ends it at once. clouds/mqtt.lua runs
-- as a child on the virtual Air720 against a real mosquitto
-- (tests/fixtures/broker.sh), whose log shows the client's DISCONNECT.
--
--   ATHOST_PATH=tests/lib:lib ./athost tests/lua/cancel_test.lua
local t = require("t")
local broker = require("broker")

local BIN = os.getenv("ATHOST_BIN") or "./athost"
local here = ((arg and arg[0]) or "tests/lua/x"):match("^(.*)/[^/]*$") or "."
local FLOW = here .. "/../../clouds/mqtt.lua"
local DIR = t.tmpdir()
local proc = require("proc").new(DIR)
local q, poll, background, test, uid = proc.q, proc.poll, proc.background, proc.test, proc.uid
local B

local function slurp(p) return t.slurp(p) or "" end
local function rc(base) return tonumber(slurp(base .. ".rc"):match("%d+") or "") end
local function pid(base) return slurp(base .. ".pid"):match("%d+") end

-- clouds/mqtt.lua subscribed and listening for 60 s on the virtual MODEL
-- (default air720) with its options SIM; returns the run's files' base,
-- its transcript path and its client id once it listens.
local function listening(sim, model)
  local id = "cancel-" .. uid()
  local tr = DIR .. "/" .. id .. ".tr"
  local base = background(string.format("%s -l %s %s -p %s host=127.0.0.1 port=%d "
    .. "client_id=%s username=%s password=%s subscribe=%s listen=60", BIN, tr, FLOW,
    q("sim:" .. (model or "air720") .. (sim and "?" .. sim or "")), B.PORT, id,
    q(B.USER), q(B.PASS), q("t/" .. id)), id)
  poll("the flow listening", 20000, function()
    if rc(base) then error("the flow ended: " .. slurp(base .. ".err"), 0) end
    return slurp(base .. ".err"):find("listen\n", 1, true), slurp(base .. ".err")
  end)
  return base, tr, id
end

local function signal(base, sig) os.execute(string.format("kill -%s %s", sig, pid(base))) end

-- What the flow's own port sent (not the virtual modem's side), in order.
local function sent(tr)
  local out = {}
  for l in slurp(tr):gmatch("[^\n]+") do
    local name, s = l:match("^%s*[%d.]+ (%S+) > (.*)$")
    if s and not name:find("%-sim$") and not name:find("^tcp:") then out[#out + 1] = s end
  end
  return out
end

for _, sig in ipairs({ "INT", "TERM" }) do
  test("SIG" .. sig .. " while listening: MQTT disconnect and close on the module, exit 4 naming the step", function()
    local base, tr, id = listening()
    local before = #sent(tr)
    signal(base, sig)
    poll("the end of the run", 10000, function() return rc(base) end)
    t.eq(rc(base), 4, "exit code 4 (canceled)")
    local err = slurp(base .. ".err")
    t.match(err, 'athost: canceled %(SIG' .. sig .. '%) during step "listen"', "the step is named")
    local after = table.concat(sent(tr), "\n", before + 1)
    t.match(after, "^AT%+MDISCONNECT\\r\nAT%+MIPCLOSE\\r$", "sent after the signal")
    poll("the client's DISCONNECT in the broker log", 5000, function()
      local log = slurp(B.DIR .. "/mosquitto.log")
      return log:find("Received DISCONNECT from " .. id, 1, true), log:sub(-300)
    end)
  end)
end

-- The other command families: the same interruption ends the session with
-- the dialect's own commands (DIALECTS.md: Quectel QMTDISC, with QMTCLOSE
-- only where the profile says the module needs it — not the EC200U;
-- SIMCom CMQTTDISC, CMQTTREL, CMQTTSTOP).
for _, c in ipairs({
  { model = "ec200u", after = "^AT%+QMTDISC=0\\r$" },
  { model = "a7670", after = "^AT%+CMQTTDISC=0,120\\r\nAT%+CMQTTREL=0\\r\nAT%+CMQTTSTOP\\r$" },
}) do
  test("SIGINT while listening on the " .. c.model .. ": its MQTT disconnect on the module, exit 4", function()
    local base, tr, id = listening(nil, c.model)
    local before = #sent(tr)
    signal(base, "INT")
    poll("the end of the run", 10000, function() return rc(base) end)
    t.eq(rc(base), 4, "exit code 4 (canceled)")
    t.match(slurp(base .. ".err"), 'athost: canceled %(SIGINT%) during step "listen"',
      "the step is named")
    t.match(table.concat(sent(tr), "\n", before + 1), c.after, "sent after the signal")
    poll("the client's DISCONNECT in the broker log", 5000, function()
      local log = slurp(B.DIR .. "/mosquitto.log")
      return log:find("Received DISCONNECT from " .. id, 1, true), log:sub(-300)
    end)
  end)
end

-- An HTTP request the server never answers: clouds/aliyun.lua's "auth"
-- step (AT+HTTPACTION answered OK, +HTTPACTION awaited) against a local
-- server that accepts the connection and says nothing. Ctrl-C there ends
-- the module's HTTP session (AT+HTTPTERM), or the next run's AT+HTTPINIT
-- would find it busy.
test("SIGINT while an HTTP request waits for its answer: AT+HTTPTERM on the module, exit 4", function()
  local athost = require("athost")
  local l = assert(athost.listen("127.0.0.1", 0))
  local held = {}
  local accepting = athost.spawn(function()
    while true do
      local c = l:accept({ timeout = 0 })
      if not c then return end
      held[#held + 1] = c
    end
  end)
  local id = "http-" .. uid()
  local tr = DIR .. "/" .. id .. ".tr"
  local secret = "Ds" .. athost.random(12, "hex")
  local base = background(string.format("%s -l %s %s/../../clouds/aliyun.lua -p sim:air720 "
    .. "product_key=a1Cancel device_name=dev-%s device_secret=%s auth_base=%s", BIN, tr,
    here, id, q(secret), q("http://127.0.0.1:" .. l.port)), id)
  local ok, err = pcall(function()
    poll("the module's HTTP connection to the server", 20000, function()
      if rc(base) then error("the flow ended: " .. slurp(base .. ".err"), 0) end
      return held[1] and table.concat(sent(tr), "\n"):find("AT+HTTPACTION", 1, true),
        slurp(base .. ".err")
    end)
    local before = #sent(tr)
    signal(base, "INT")
    poll("the end of the run", 10000, function() return rc(base) end)
    t.eq(rc(base), 4, "exit code 4 (canceled)")
    t.match(slurp(base .. ".err"), 'athost: canceled %(SIGINT%) during step "auth"',
      "the step is named")
    t.match(table.concat(sent(tr), "\n", before + 1), "^AT%+HTTPTERM\\r$",
      "sent after the signal")
    t.nomatch(slurp(tr) .. slurp(base .. ".err"), secret, "the device secret shown nowhere")
  end)
  accepting:cancel()
  for _, c in ipairs(held) do c:close() end
  l:close()
  if not ok then error(err, 0) end
end)

test("a second SIGINT during a cleanup that hangs ends the run at once", function()
  local base, tr = listening("silent=AT+MDISCONNECT")
  signal(base, "INT")
  -- The cleanup is under way: AT+MDISCONNECT went out, the module is silent.
  poll("AT+MDISCONNECT sent", 5000, function()
    return table.concat(sent(tr), "\n"):find("AT+MDISCONNECT", 1, true), slurp(tr):sub(-300)
  end)
  t.eq(rc(base), nil, "the cleanup waits for the module")
  t.match(slurp(base .. ".err"), "again to quit at once", "the user is told how to quit now")
  local t0 = require("athost").now()
  signal(base, "INT")
  -- Well inside the 5 s the cleanup may take.
  poll("the end after the second SIGINT", 2000, function() return rc(base) end)
  t.ok(require("athost").now() - t0 < 2000, "at once")
  t.eq(rc(base), 4, "exit code 4")
  t.match(slurp(base .. ".err"), 'during step "listen"; SIGINT again: the cleanup was cut short',
    "the message says so")
end)

test("a cleanup that hangs is bounded by the profile's time (waits.cleanup, 5 s)", function()
  local base = listening("silent=AT+MDISCONNECT")
  local t0 = require("athost").now()
  signal(base, "INT")
  poll("the end of the run", 10000, function() return rc(base) end)
  local took = require("athost").now() - t0
  t.ok(took >= 4900 and took < 8000, "ended after the bound: " .. took .. " ms")
  t.eq(rc(base), 4, "exit code 4")
  t.match(slurp(base .. ".err"), "cleanup: the MQTT session did not end within 5000 ms",
    "the overrun is reported")
end)

-- athost.defer itself, in -e chunks.
local function chunk(src, extra)
  local p = assert(io.popen(string.format("%s %s -e %s 2>&1", BIN, extra or "", q(src))))
  local out = p:read("a")
  local _, _, code = p:close()
  return out, code
end

test("athost.defer: newest first at the end, on error too; cancel() takes one back", function()
  local out, code = chunk([[
    athost.defer(function(why) print("first", why) end)
    local h = athost.defer(function() print("never") end)
    athost.defer(function(why) print("second", why) end)
    h:cancel()]])
  t.eq(code, 0, "exit code: " .. out)
  t.match(out, "^second\tended\nfirst\tended\n", "reverse order, told why")
  t.nomatch(out, "never", "a canceled one does not run")
  out, code = chunk([[
    athost.defer(function(why) print("cleaned", why) end)
    athost.step("work")
    error("broken", 0)]])
  t.eq(code, 1, "the error's exit code stays")
  t.match(out, "cleaned\tfailed", "run on error")
  t.match(out, 'step "work" failed: broken', "the error is the run's message")
end)

test("athost.defer: one that raises or overruns is reported, the others still run", function()
  local out, code = chunk([[
    athost.defer(function() print("ran") end)
    athost.defer(function() athost.sleep(60000) end, { timeout = 100, name = "slow" })
    athost.defer(function() error("oops", 0) end, { name = "bad" })]])
  t.eq(code, 0, "exit code: " .. out)
  t.match(out, "cleanup: bad: oops", "the error is logged")
  t.match(out, "cleanup: slow did not end within 100 ms", "the overrun is logged")
  t.match(out, "ran\n", "the oldest still ran")
end)

B = broker.start(DIR .. "/broker")
B.DIR = DIR .. "/broker"
local passed, err = pcall(t.run)
broker.stop(B.DIR)
if not passed then error(err, 0) end
