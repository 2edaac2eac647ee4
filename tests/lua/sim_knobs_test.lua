-- The virtual modems' knobs (athost.sim.core): README.md lists every knob
-- of the code with its default, a personality is drawn from its seed and
-- printed, and the generic knobs (urcs, split, delay, noise) do what they
-- say on the host's side of the pty.
--
--   ATHOST_PATH=tests/lib:lib ./athost tests/lua/sim_knobs_test.lua
local t = require("t")
local athost = require("athost")
local sim = require("athost.sim")
local core = require("athost.sim.core")

local BIN = os.getenv("ATHOST_BIN") or "./athost"
local here = ((arg and arg[0]) or "tests/lua/x"):match("^(.*)/[^/]*$") or "."
local ROOT = here .. "/../.."

---------------------------------------------------------------------------
-- README.md and the code
---------------------------------------------------------------------------

-- The knob rows of README.md's section on virtual modems:
-- { name, models = "all" or "air720, me3630", default }.
local function readme_rows()
  local text = assert(t.slurp(ROOT .. "/README.md"), "README.md")
  local section = text:match("\n## Virtual modems(.-)\n## ") or text:match("\n## Virtual modems(.*)$")
  t.ok(section, "README.md has a section \"## Virtual modems ...\"")
  local rows = {}
  for line in section:gmatch("[^\n]+") do
    local name, models, default = line:match("^| `([^`]+)` | ([^|]-) | .- | `([^`]*)` | ")
    if name then rows[#rows + 1] = { name = name, models = models, default = default } end
  end
  return rows
end

-- The README row for a code row: same name, "all" for a core knob, else a
-- models cell naming each of its models.
local function find_row(rows, r)
  local named = {}
  for _, x in ipairs(rows) do
    if x.name == r.name then
      named[#named + 1] = x
      local set = {}
      for m in x.models:gmatch("[%w_%-]+") do set[m] = true end
      local fits = r.all and x.models == "all"
      if not r.all and x.models ~= "all" then
        fits = true
        for _, m in ipairs(r.models) do if not set[m] then fits = false end end
      end
      if fits then return x end
    end
  end
  return nil, named
end

t.test("README.md lists every knob of every model with its default", function()
  local rows, problems = readme_rows(), {}
  for _, r in ipairs(sim.knob_rows()) do
    local where = r.all and "all models" or table.concat(r.models, ", ")
    local x, named = find_row(rows, r)
    if not x then
      problems[#problems + 1] = string.format("knob %s (%s, default %s) is not in README.md%s",
        r.name, where, r.default, #named > 0 and " for those models" or "")
    elseif x.default ~= r.default then
      problems[#problems + 1] = string.format("knob %s (%s): default %s in the code, %s in README.md",
        r.name, where, r.default, x.default)
    end
  end
  t.ok(#problems == 0, table.concat(problems, "\n")
    .. "\n(athost scripts/sim/knobs.lua prints the table to paste)")
end)

t.test("README.md lists no knob the code lacks", function()
  local code = {}
  for _, r in ipairs(sim.knob_rows()) do code[r.name] = true end
  local stale = {}
  for _, x in ipairs(readme_rows()) do
    if not code[x.name] then stale[#stale + 1] = x.name end
  end
  t.eq(table.concat(stale, ", "), "", "README.md knobs no model has")
end)

t.test("scripts/sim/knobs.lua prints the table, one row per knob", function()
  local f = assert(io.popen(BIN .. " " .. ROOT .. "/scripts/sim/knobs.lua 2>&1"))
  local out = f:read("a")
  t.ok(f:close(), "exit status: " .. out)
  t.eq(out, sim.knob_table(), "its output")
  local n = 0
  for _ in out:gmatch("\n| `") do n = n + 1 end
  t.eq(n, #sim.knob_rows(), "rows")
  for _, k in ipairs(core.knobs) do
    t.ok(out:find("| `" .. k.name .. "` | all | ", 1, true), "a row for " .. k.name)
  end
end)

t.test("every knob has values, a default among them and a doc", function()
  for _, r in ipairs(sim.knob_rows()) do
    t.ok(type(r.doc) == "string" and #r.doc > 10, r.name .. ": a doc")
    t.ok(#r.values >= 2, r.name .. ": two readings or more")
    local ok = false
    for _, v in ipairs(r.values) do ok = ok or v == r.default end
    t.ok(ok, r.name .. ": default " .. tostring(r.default) .. " is one of its values")
  end
end)

---------------------------------------------------------------------------
-- Personalities
---------------------------------------------------------------------------

local function knobs_of(line)
  local kv = {}
  for k, v in line:gmatch("(%S+)=(%S+)") do kv[k] = v end
  return kv
end

t.test("personality=random:SEED: the seed line on stderr, the same line for the same seed", function()
  local function run(spec)
    local f = assert(io.popen(string.format("%s -p '%s' -e 'assert(athost.port():cmd(\"AT\"))' 2>&1",
      BIN, spec)))
    local out = f:read("a")
    t.ok(f:close(), "athost -p " .. spec .. ": " .. out)
    return out
  end
  for _, model in ipairs({ "air720", "me3630", "ec200u" }) do
    local a = run("sim:" .. model .. "?personality=random:4242")
    local line = a:match("athost sim " .. model .. ": (personality=random:4242: [^\n]*)\n")
    t.ok(line, model .. ": the seed line in " .. a)
    t.eq(run("sim:" .. model .. "?personality=random:4242"):match("personality=random:4242: [^\n]*"),
      line, model .. ": the same seed, the same personality")
    local kv = knobs_of(line:match(": (.*)$"))
    for _, k in ipairs(core.all_knobs(require(sim.models[model]))) do
      t.ok(kv[k.name], model .. ": the line names " .. k.name)
    end
    -- A knob given as an option is kept, the rest drawn.
    local b = run("sim:" .. model .. "?personality=random:4242&split=on&delay=0")
    local kb = knobs_of(b:match("personality=random:4242: ([^\n]*)"))
    t.eq(kb.split, "on", "split given")
    t.eq(kb.delay, "0", "delay given")
    t.eq(kb.order, kv.order, "order drawn as before")
    t.nomatch(run("sim:" .. model), "personality=", "no line for the default personality")
  end
end)

t.test("personality=default is every default; a bad personality or value is refused", function()
  local kv, line = core.resolve_knobs(require("athost.sim.air720"), { personality = "default" })
  t.eq(line, nil, "no seed line")
  for _, k in ipairs(core.all_knobs(require("athost.sim.air720"))) do
    t.eq(kv[k.name], k.default, k.name)
  end
  t.raises(function() core.resolve_knobs({}, { personality = "random" }) end,
    "bad personality 'random' (default or random:SEED)")
  t.raises(function() core.resolve_knobs({}, { split = "sometimes" }) end,
    "knob split=sometimes is none of off|on")
  -- noise is a knob and a fault: its fault values stay accepted.
  t.eq(core.resolve_knobs({}, { noise = "1" }).noise, "1", "noise=1")
  t.eq(core.resolve_knobs({}, { noise = "AT+MSUB" }).noise, "AT+MSUB", "noise=AT+MSUB")
end)

t.test("seeds draw every value of every knob; a new knob changes no other's draw", function()
  local seen = {}
  local dialect = require("athost.sim.air720")
  for seed = 1, 200 do
    local kv = core.resolve_knobs(dialect, { personality = "random:" .. seed })
    for k, v in pairs(kv) do seen[k .. "=" .. v] = true end
  end
  for _, k in ipairs(core.all_knobs(dialect)) do
    for _, v in ipairs(k.values) do
      t.ok(seen[k.name .. "=" .. v], k.name .. "=" .. v .. " drawn by one of 200 seeds")
    end
  end
  -- Each knob draws from its own stream of the seed: a knob added before
  -- others (another dialect's, a new core one) leaves their values alone.
  local a = { knobs = { { name = "zz_one", values = { "a", "b", "c" }, default = "a", doc = "x" } } }
  local b = { knobs = { { name = "aa_new", values = { "x", "y" }, default = "x", doc = "x" },
    a.knobs[1] } }
  for seed = 1, 50 do
    local ka = core.resolve_knobs(a, { personality = "random:" .. seed })
    local kb = core.resolve_knobs(b, { personality = "random:" .. seed })
    for _, k in ipairs(core.knobs) do t.eq(kb[k.name], ka[k.name], k.name .. " of seed " .. seed) end
    t.eq(kb.zz_one, ka.zz_one, "zz_one of seed " .. seed)
  end
end)

---------------------------------------------------------------------------
-- The generic knobs, seen from the host
---------------------------------------------------------------------------

-- A virtual Air720 with these options, synced and with echo off.
local function modem(opts)
  local p, m = assert(athost.open("sim:air720", { name = "host", sim = opts }))
  assert(p:cmd("AT", { timeout = 2000 }))
  assert(p:cmd("ATE0"))
  return p, m
end

-- Sends cmd raw and reads until "\r\nOK\r\n": the reads' sizes and bytes.
local function raw_answer(p, cmd)
  assert(p:send(cmd .. "\r"))
  local sizes, all = {}, ""
  while not all:find("\r\nOK\r\n", 1, true) do
    local s = assert(p:recv(4096, { timeout = 3000 }))
    sizes[#sizes + 1] = #s
    all = all .. s
  end
  return sizes, all
end

t.test("split=on: the host reads the answer in pieces of 1-7 bytes", function()
  local p, m = modem { split = "on" }
  local ok, err = pcall(function()
    local sizes, all = raw_answer(p, "ATI")
    t.ok(all:find("AirM2M\r\n", 1, true), "ATI's answer: " .. all)
    t.ok(#sizes >= 5, "5 reads or more for " .. #all .. " bytes, got " .. #sizes)
    for _, n in ipairs(sizes) do t.ok(n <= 7, "a read of " .. n .. " bytes") end
    -- And the chat engine reassembles the lines.
    local r = assert(p:cmd("AT+CGSN"))
    t.eq(r.lines[1], m.imei, "AT+CGSN through split output")
  end)
  m:close()
  p:close()
  if not ok then error(err, 0) end
end)

t.test("delay=150: each answer 150 ms after the command, the echo at once", function()
  local p, m = modem { delay = "150" }
  local ok, err = pcall(function()
    local t0 = athost.now()
    assert(p:cmd("AT+CSQ"))
    local ms = athost.now() - t0
    t.ok(ms >= 145, "AT+CSQ answered after " .. ms .. " ms")
    t.ok(ms < 1000, "and not much later: " .. ms .. " ms")
    assert(p:cmd("ATE1"))
    assert(p:send("AT\r"))
    t0 = athost.now()
    local echo = assert(p:expect("AT", { timeout = 1000 }))
    t.eq(echo.line, "AT", "the echo")
    t.ok(athost.now() - t0 < 100, "the echo at once")
    t.ok(p:expect("OK", { timeout = 1000 }), "then OK")
    t.ok(athost.now() - t0 >= 145, "OK after the delay")
  end)
  m:close()
  p:close()
  if not ok then error(err, 0) end
end)

t.test("urcs=on: unrelated URCs between answers, every answer intact", function()
  local p, m = modem { urcs = "on", personality = "random:11" }
  local ok, err = pcall(function()
    -- A handler per URC of the list sees them wherever they come (a line
    -- no handler takes is dropped by the next command).
    local heard, n = {}, 0
    for _, u in ipairs(core.UNRELATED) do
      local line = (type(u) == "table" and u[1] or u):format(24)
      p:on(line:match("^[^:]+:"), function(mt)
        t.eq(mt.line, line, "an unrelated URC")
        if not heard[line] then n = n + 1 end
        heard[line] = true
      end)
    end
    for _ = 1, 40 do
      local r = assert(p:cmd("AT+CGSN"))
      t.eq(table.concat(r.lines, "|"), m.imei, "AT+CGSN's reply lines")
      athost.sleep(5)
    end
    t.ok(n >= 2, "two kinds of URC or more in 40 answers, got " .. n)
  end)
  m:close()
  p:close()
  if not ok then error(err, 0) end
end)

t.test("noise=on (the knob) and noise=1 (the fault): garbage before lines", function()
  for _, v in ipairs({ "on", "1" }) do
    local p, m = modem { noise = v }
    local ok, err = pcall(function()
      local _, all = raw_answer(p, "AT+CSQ")
      t.ok(all:find("\0", 1, true), "a NUL in " .. all:gsub("%c", "."))
      local r = assert(p:cmd("AT+CSQ"))
      t.eq(r.lines[1], "+CSQ: 24,99", "AT+CSQ through the noise")
    end)
    m:close()
    p:close()
    if not ok then error(err, 0) end
  end
end)

t.test("all generic knobs at once: a dialogue still works", function()
  local p, m = modem { urcs = "on", split = "on", delay = "20", noise = "on",
    prompt = "line", personality = "random:99" }
  local ok, err = pcall(function()
    for _ = 1, 5 do
      t.eq(assert(p:cmd("AT+CGREG?", { reply = "^%+CGREG: %d,(%d)" }))[1], "1", "registered")
    end
    local r = assert(p:cmd('AT+FSCREATE="a.txt"'))
    t.eq(r.final, "OK", "AT+FSCREATE")
    r = assert(p:cmd('AT+FSWRITE="a.txt",0,5,10', { prompt = ">", data = "hello" }))
    t.eq(r.final, "OK", "AT+FSWRITE after the prompt")
    t.eq(m.files["a.txt"], "hello", "the file")
  end)
  m:close()
  p:close()
  if not ok then error(err, 0) end
end)

t.run()
