-- Progress on long waits: a wait that may last longer than 10 s says every
-- 10 s what it waits for and how long of how long, on stderr for a person,
-- as a "wait" event with --json, and not at all with -q. The children run
-- concurrently on silent virtual modems; the tests poll their output.
--
--   ATHOST_PATH=tests/lib:lib ./athost tests/lua/progress_test.lua
local t = require("t")
local athost = require("athost")

local BIN = os.getenv("ATHOST_BIN") or "./athost"
local DIR = t.tmpdir()
local proc = require("proc").new(DIR)
local q, poll, background, test = proc.q, proc.poll, proc.background, proc.test

local function rc(base) return tonumber(t.slurp(base .. ".rc") or "") end
local function err(base) return t.slurp(base .. ".err") or "" end

-- A command to a module that never answers, with an 11 s limit.
local SILENT_AT = "assert(athost.port():cmd('AT', { timeout = 11000 }))"

test("a command to a silent module says what it waits for after 10 s", function()
  local plain = background(string.format("%s -p 'sim:air720?silent=1' -e %s", BIN,
    q(SILENT_AT)), "plain")
  local json = background(string.format("%s --json -p 'sim:air720?silent=1' -e %s", BIN,
    q(SILENT_AT)), "json")
  local quiet = background(string.format("%s -q -p 'sim:air720?silent=1' -e %s", BIN,
    q(SILENT_AT)), "quiet")
  -- The line appears while the command still waits (the run goes on).
  local line = poll("the progress line on stderr", 15000, function()
    return err(plain):match("[^\n]*waiting for[^\n]*"), err(plain)
  end)
  t.match(line, "waiting for the final result to AT: 10 s of 11 s$", "what and how long")
  t.eq(rc(plain), nil, "shown while the wait goes on")
  for _, b in ipairs({ plain, json, quiet }) do
    poll("the end of " .. b, 10000, function() return rc(b) end)
  end
  t.eq(rc(plain), 1, "the timeout fails the run")
  local _, n = err(plain):gsub("waiting for", "")
  t.eq(n, 1, "one line in 11 s")
  -- --json: one wait event with the numbers as numbers.
  local ev
  for l in (t.slurp(json .. ".out") or ""):gmatch("[^\n]+") do
    local e = athost.json.decode(l)
    if e.event == "wait" then ev = e end
  end
  t.ok(ev, "a wait event: " .. (t.slurp(json .. ".out") or ""))
  t.eq(ev.name, "the final result to AT", "the event's name")
  t.ok(ev.ms >= 10000 and ev.ms < 11000, "ms waited: " .. tostring(ev.ms))
  t.eq(ev.total_ms, 11000, "the wait's limit")
  t.match(ev.text, "10 s of 11 s", "the line as text")
  -- -q: the error, no progress.
  t.eq(rc(quiet), 1, "-q: exit code")
  t.match(err(quiet), "ETIMEDOUT", "-q: the error is shown")
  t.nomatch(err(quiet), "waiting for", "-q: no progress line")
end)

test("an outcome after OK: the wait from the OK, named by the outcome", function()
  -- The connect of clouds/mqtt.lua: AT+MIPSTART's OK comes, CONNECT OK
  -- never does (the module falls silent after answering).
  local run = background(string.format("%s -p 'sim:air720?silent=AT+MIPSTART' "
    .. "clouds/mqtt.lua host=127.0.0.1 port=1 client_id=c1", BIN), "mipstart")
  local line = poll("the progress line", 15000, function()
    return err(run):match("[^\n]*waiting for[^\n]*"), err(run)
  end)
  t.match(line, "waiting for CONNECT OK after AT%+MIPSTART: 10 s of 60 s$", "the outcome waited for")
  t.match(err(run), "connect\n", "in the connect step")
end)

test("athost.waiting: a flow's own wait (a poll loop) reports alike until closed", function()
  local run = background(string.format("%s -e %s", BIN, q([[
    do
      local w <close> = athost.waiting("the moon", 20000)
      athost.sleep(10500)
    end
    athost.log("closed")
    athost.sleep(10000)]])), "waiting")
  poll("the end", 30000, function() return rc(run) end)
  t.eq(rc(run), 0, "exit code")
  local e = err(run)
  t.match(e, "waiting for the moon: 10 s of 20 s\n", "the line")
  local _, n = e:gsub("waiting for", "")
  t.eq(n, 1, "none after the wait was closed")
end)

t.run()
