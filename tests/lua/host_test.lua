-- Flows: tasks and join, sleep and now, timers, steps.
local t = require("t")
local athost = require("athost")

local BIN = os.getenv("ATHOST_BIN") or (arg and arg[-1]) or "./athost"

-- A one-way signal between flows over a pty pair: post() from any flow,
-- wait() in another returns the posted word.
local function channel()
  local m, path = assert(athost.pty { name = "chan" })
  local s = assert(athost.open(path, { name = "chan-rx" }))
  return {
    post = function(word) assert(m:send(word .. "\n")) end,
    wait = function(ms) return assert(s:readline { timeout = ms or 5000 }) end,
    close = function() s:close() m:close() end,
  }
end

-- Runs the athost binary on a chunk; returns exit code, stdout, stderr.
local function run_chunk(chunk, ...)
  local dir = t.tmpdir()
  local f = assert(io.open(dir .. "/s.lua", "w"))
  f:write(chunk)
  f:close()
  local extra = table.concat({ ... }, " ")
  local _, how, code = os.execute(string.format("%s %s/s.lua %s >%s/out 2>%s/err",
    BIN, dir, extra, dir, dir))
  local out, err = t.slurp(dir .. "/out"), t.slurp(dir .. "/err")
  os.execute("rm -rf '" .. dir .. "'")
  t.eq(how, "exit", "the child exited (" .. tostring(err) .. ")")
  return code, out, err
end

-- ---- tasks ----------------------------------------------------------------

t.test("spawn passes arguments; join returns every result", function()
  local task = athost.spawn(function(a, b) return a + b, nil, "x" end, 2, 3)
  local r = table.pack(task:join())
  t.eq(r.n, 3, "number of results")
  t.eq(r[1], 5, "first")
  t.eq(r[2], nil, "second (nil kept)")
  t.eq(r[3], "x", "third")
  -- joined again once finished: the same results at once
  r = table.pack(task:join())
  t.eq(r.n, 3, "second join")
  t.eq(r[1], 5, "second join's first")
end)

t.test("a task that waits; two flows join it", function()
  local task = athost.spawn(function()
    athost.sleep(20)
    return "done"
  end)
  local other = athost.spawn(function() return "other got " .. task:join() end)
  t.eq(task:join(), "done", "main's join")
  t.eq(other:join(), "other got done", "the other joiner")
end)

t.test("a task that raises: join returns nil, error, ETASK", function()
  local task = athost.spawn(function()
    athost.sleep(1)
    error("no SIM card", 0)
  end)
  local v, err, code = task:join()
  t.eq(v, nil, "value")
  t.eq(code, "ETASK", "code")
  t.match(err, "no SIM card", "error")
  -- joined again: the same failure
  local v2, err2, code2 = task:join()
  t.eq(v2, nil, "second join value")
  t.eq(code2, "ETASK", "second join code")
  t.eq(err2, err, "second join error")
end)

t.test("a task that raises a non-string error", function()
  local task = athost.spawn(function() error({ code = 1 }) end)
  local v, err, code = task:join()
  t.eq(v, nil, "value")
  t.eq(code, "ETASK", "code")
  t.eq(type(err), "string", "the error is reported as a string")
end)

t.test("a waiting call outside a flow raises", function()
  t.raises(function() coroutine.wrap(function() athost.sleep(1) end)() end, "flow")
  local task = athost.spawn(function() end)
  t.raises(function() coroutine.wrap(function() task:join() end)() end, "flow")
end)

-- ---- sleep and now ----------------------------------------------------------

t.test("athost.now is monotonic", function()
  local last = athost.now()
  t.eq(type(last), "number", "now")
  for _ = 1, 1000 do
    local n = athost.now()
    t.ok(n >= last, "now went back from " .. last .. " to " .. n)
    last = n
  end
  athost.sleep(5)
  t.ok(athost.now() >= last, "now after a sleep")
end)

t.test("sleeps end in the order of their ends", function()
  local order = {}
  local tasks = {}
  for _, ms in ipairs { 30, 10, 20, 0 } do
    tasks[#tasks + 1] = athost.spawn(function()
      athost.sleep(ms)
      order[#order + 1] = ms
    end)
  end
  for _, task in ipairs(tasks) do task:join() end
  t.deepeq(order, { 0, 10, 20, 30 }, "order")
end)

t.test("a sleep lasts at least its time, even after a busy stretch", function()
  -- a flow that computed for a while must still sleep its full time
  local t0 = athost.now()
  while athost.now() - t0 < 40 do end
  local before = athost.now()
  athost.sleep(20)
  local slept = athost.now() - before
  t.ok(slept >= 19, "slept only " .. slept .. " ms of 20")
end)

t.test("sleep(0) and negative sleeps yield and return", function()
  local ran = false
  local task = athost.spawn(function() ran = true end)
  athost.sleep(0)
  t.ok(ran, "another flow ran during sleep(0)")
  athost.sleep(-5)
  task:join()
end)

-- ---- timers -----------------------------------------------------------------

t.test("a repeating timer runs its function as a flow until stopped", function()
  local ch = channel()
  local n = 0
  local tm
  tm = athost.timer(5, function()
    n = n + 1
    ch.post("tick" .. n)
    athost.sleep(1)          -- a timer's function is a flow: it may wait
  end, 5)
  t.eq(ch.wait(), "tick1", "first tick")
  t.eq(ch.wait(), "tick2", "second tick")
  t.eq(ch.wait(), "tick3", "third tick")
  tm:stop()
  local at = n
  athost.sleep(50)           -- ten periods: none may run after stop
  t.eq(n, at, "ticks after stop")
  tm:stop()                  -- stopping twice is harmless
  ch.close()
end)

t.test("a timer stopped from its own function", function()
  local ch = channel()
  local n = 0
  local tm
  tm = athost.timer(1, function()
    n = n + 1
    if n == 2 then
      tm:stop()
      ch.post("stopped")
    end
  end, 1)
  t.eq(ch.wait(), "stopped", "signal")
  athost.sleep(20)
  t.eq(n, 2, "runs")
  ch.close()
end)

t.test("a one-shot timer fires once; stop after it fired is harmless", function()
  local ch = channel()
  local n = 0
  local tm = athost.timer(5, function()
    n = n + 1
    ch.post("fired")
  end)
  t.eq(ch.wait(), "fired", "fired")
  tm:stop()
  athost.sleep(20)
  t.eq(n, 1, "runs")
  -- a timer whose handle is dropped still fires
  athost.timer(1, function() ch.post("unreferenced") end)
  collectgarbage("collect")
  t.eq(ch.wait(), "unreferenced", "unreferenced timer")
  collectgarbage("collect")
  ch.close()
end)

t.test("a timer stopped before it fires never runs", function()
  local ran = false
  local tm = athost.timer(10, function() ran = true end)
  tm:stop()
  athost.sleep(30)
  t.eq(ran, false, "ran")
end)

t.test("a finalizer run as athost exits cannot start a timer or open a port", function()
  -- Objects still alive at the end are finalized as the state closes,
  -- after the loop's last run: what they started then would never be
  -- closed (the sanitizer build reports it as a leak and fails).
  local code, out, err = run_chunk([[
local athost = require("athost")
local function try(what, fn)
  local ok, e = pcall(fn)
  io.stderr:write(what, ": ", ok and "started" or tostring(e), "\n")
end
keep_timer = setmetatable({}, { __gc = function()
  try("timer", function() athost.timer(10, function() end) end)
end })
keep_pty = setmetatable({}, { __gc = function()
  try("pty", function() athost.pty { name = "late" } end)
end })
print("done")
]])
  t.eq(code, 0, "exit code (" .. err .. ")")
  t.eq(out, "done\n", "output")
  t.match(err, "timer: [^\n]*timer: athost is closing", "the timer refused")
  t.match(err, "pty: [^\n]*late: athost is closing", "the port refused")
end)

-- ---- steps ------------------------------------------------------------------

t.test("athost.step names the step in a task's failure", function()
  local task = athost.spawn(function()
    athost.step("attach")
    athost.sleep(1)
    error("no network", 0)
  end)
  local _, err, code = task:join()
  t.eq(code, "ETASK", "code")
  t.match(err, 'step "attach" failed', "the step is named")
  t.match(err, "no network", "the error")
  -- a task whose steps all ended fine fails without a step name
  task = athost.spawn(function()
    athost.step("a")
    athost.step("b")
    return "ok"
  end)
  t.eq(task:join(), "ok", "steps that pass")
end)

t.test("a flow that raises unjoined ends the run: exit 1, its step named", function()
  local code, out, err = run_chunk([[
    local athost = require("athost")
    athost.spawn(function()
      athost.step("register")
      error("denied", 0)
    end)
    athost.sleep(5000)
    print("not reached")
  ]], "")
  t.eq(code, 1, "exit code")
  t.nomatch(out, "not reached", "stdout")
  t.match(err, 'step "register" failed: denied', "stderr")
end)

t.test("a script that waits for nothing ends with exit 1", function()
  local code, _, err = run_chunk([[
    local athost = require("athost")
    local task = athost.spawn(function() coroutine.yield() end)
    task:join()
  ]], "")
  t.eq(code, 1, "exit code")
  t.match(err, "waiting for nothing", "stderr")
end)

t.test("a script that returns false fails; its message is shown", function()
  local code, _, err = run_chunk([[
    return false, "the module never answered"
  ]], "")
  t.eq(code, 1, "exit code")
  t.match(err, "the module never answered", "stderr")
  code = run_chunk("return true", "")
  t.eq(code, 0, "return true")
end)

t.run()
