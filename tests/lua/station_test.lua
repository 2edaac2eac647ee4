-- The factory station: the example station (tests/station/station.c, built
-- through pkg-config against a `make install` of this tree) provisions 32
-- virtual Air720s at once with clouds/mqtt.lua against a real mosquitto
-- (tests/fixtures/broker.sh); then the built-in `athost --ports` station.
-- What the DUTs did is checked where it lands: the station's table and
-- exit code, mosquitto_sub on the broker, the transcripts, the JUnit
-- report against tests/station/junit.xsd.
--
--   ATHOST_PATH=tests/lib:lib ./athost tests/lua/station_test.lua
local t = require("t")
local athost = require("athost")

local BIN = os.getenv("ATHOST_BIN") or (arg and arg[-1]) or "./athost"
local here = ((arg and arg[0]) or "tests/lua/x"):match("^(.*)/[^/]*$") or "."
local DIR = t.tmpdir()
local B = {}                  -- BROKER_* from broker.env, without the prefix
local started = {}            -- file prefixes of the background processes
local STATION                 -- the example station, once built

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- Runs a shell command; returns its output (stdout and stderr) and success.
local function shell(cmd)
  local f = assert(io.popen(cmd .. " 2>&1"))
  local out = f:read("a")
  return out, f:close()
end

local ROOT = shell("cd " .. q(here .. "/../..") .. " && pwd"):match("[^\n]+")

local function write(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

local function lines(s)
  local r = {}
  for l in (s or ""):gmatch("[^\n]+") do r[#r + 1] = l end
  return r
end

local function count(s, plain)
  local n, i = 0, 1
  while true do
    local j = s:find(plain, i, true)
    if not j then return n end
    n, i = n + 1, j + #plain
  end
end

-- Polls until done() returns a value (external processes: the broker's
-- log, a subscriber's exit); raises after ms.
local function wait_for(what, ms, done)
  local deadline = athost.now() + ms
  while true do
    local r = done()
    if r then return r end
    if athost.now() > deadline then error(what .. ": not within " .. ms .. " ms", 2) end
    athost.sleep(20)
  end
end

local function luhn(digits)
  local sum = 0
  for i = 1, #digits do
    local d = tonumber(digits:sub(i, i))
    if i % 2 == 0 then d = d * 2 if d > 9 then d = d - 9 end end
    sum = sum + d
  end
  return digits .. (10 - sum % 10) % 10
end

-- n IMEIs of a run: TAC 86299141, serials run*1000 + 1..n.
local function imeis(run, n)
  local r = {}
  for i = 1, n do r[i] = luhn(string.format("86299141%06d", run * 1000 + i)) end
  return r
end

local function broker_args()
  return string.format("host=127.0.0.1 port=%d username=%s password=%s", B.PORT,
    q(B.USER), q(B.PASS))
end

-- Starts cmd in the background with its output in PREFIX.out and .err;
-- returns PREFIX. Its pid goes to PREFIX.pid, its exit code to PREFIX.rc.
local function background(name, cmd)
  local f = DIR .. "/" .. name
  started[#started + 1] = f
  assert(os.execute(string.format("(%s >%s.out 2>%s.err & echo $! >%s.pid; wait $!; "
    .. "echo $? >%s.rc) >/dev/null 2>&1 &", cmd, f, f, f, f)))
  return f
end

-- Waits for a background process to exit; returns its exit code (a string).
local function exited(f, what, ms)
  return wait_for(what, ms, function() return (t.slurp(f .. ".rc") or ""):match("%d+") end)
end

-- Starts mosquitto_sub on a wildcard topic, to exit after n messages, and
-- returns once the broker has its subscription (the broker's log shows
-- the SUBACK; mosquitto_sub's own output is block-buffered). The returned
-- function waits for it to exit and returns { [topic] = payload } and the
-- number of messages.
local function subscriber(topic, n)
  local id = "station-sub-" .. athost.random(4, "hex")
  local f = background(id, string.format("mosquitto_sub -h 127.0.0.1 -p %d -u %s -P %s "
    .. "-i %s -t %s -q 1 -C %d -W 30 -F '%%t|%%p'", B.PORT, q(B.USER), q(B.PASS), id,
    q(topic), n))
  wait_for("mosquitto_sub " .. id .. " subscribed", 10000, function()
    return (t.slurp(B.DIR .. "/mosquitto.log") or ""):find("Sending SUBACK to " .. id, 1, true)
  end)
  return function()
    local rc = exited(f, "mosquitto_sub to receive " .. n .. " messages", 35000)
    local out = t.slurp(f .. ".out") or ""
    t.eq(rc, "0", "mosquitto_sub exit code (got " .. out .. (t.slurp(f .. ".err") or "") .. ")")
    local got, msgs = {}, 0
    for _, l in ipairs(lines(out)) do
      local tp, payload = l:match("^([^|]*)|(.*)$")
      t.ok(tp, "a topic|payload line: " .. l)
      t.eq(got[tp], nil, "a second message on " .. tp)
      got[tp], msgs = payload, msgs + 1
    end
    return got, msgs
  end
end

local function validate(xml)
  local out, ok = shell("xmllint --noout --schema " .. q(ROOT .. "/tests/station/junit.xsd")
    .. " " .. q(xml))
  t.ok(ok, "xmllint --schema junit.xsd " .. xml .. ": " .. out)
end

---------------------------------------------------------------------------
-- The example station
---------------------------------------------------------------------------

t.test("the example station builds through pkg-config against make install", function()
  local src, prefix = DIR .. "/src", DIR .. "/prefix"
  -- Installed from a copy of the tree: a build under another PREFIX must
  -- not relink the ./athost and build/ that other suites are using.
  local out, ok = shell(string.format("mkdir -p %s && cd %s && cp -R Makefile athost.pc.in "
    .. "athost.1 completion host lib clouds scripts %s/", q(src), q(ROOT), q(src)))
  t.ok(ok, "copy: " .. out)
  out, ok = shell(string.format("env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -C %s -j2 "
    .. "install PREFIX=%s", q(src), q(prefix)))
  t.ok(ok, "make install: " .. out:sub(-3000))
  local pc = "PKG_CONFIG_PATH=" .. q(prefix .. "/lib/pkgconfig") .. " pkg-config "
  local luadir = shell(pc .. "--variable=luadir athost"):match("[^\n]*")
  t.eq(luadir, prefix .. "/share/athost/lib", "luadir in the installed athost.pc")
  t.ok(t.slurp(luadir .. "/athost/modem.lua"), "the Lua library is installed under luadir")
  out, ok = shell(string.format("cc -std=c11 -Wall -Wextra -Wpedantic -Werror -o %s "
    .. "%s $(%s --cflags --libs athost) -DATHOST_LUADIR='\"%s\"' -Wl,-rpath,%s",
    q(DIR .. "/station"), q(ROOT .. "/tests/station/station.c"), pc, luadir,
    q(prefix .. "/lib")))
  t.ok(ok, "cc station.c: " .. out)
  out = shell("ldd " .. q(DIR .. "/station"))
  -- by its SONAME, as a distribution's package would be found
  t.match(out, "libathost%.so%.0 => " .. prefix:gsub("%p", "%%%0") .. "/lib/libathost%.so%.0",
    "linked against the installed libathost")
  STATION = DIR .. "/station"
end)

-- Writes the DUT list of a run (a port spec and the DUT's own parameters
-- a line; extra[i] adds model options to DUT i's spec), runs the example
-- station with the installed clouds/mqtt.lua, and returns its exit code,
-- table (stdout), stderr and its run directory.
local function run_station(run, ids, extra)
  t.ok(STATION, "the example station was built")
  local dir = DIR .. "/" .. run
  assert(os.execute("mkdir -p " .. q(dir)))
  local duts = {}
  for i, imei in ipairs(ids) do
    duts[i] = string.format("sim:air720?imei=%s%s client_id=%s topic=station/%s/%s "
      .. "publish=hello-%s", imei, extra[i] or "", imei, run, imei, imei)
  end
  write(dir .. "/duts", "# port spec, then this DUT's parameters\n"
    .. table.concat(duts, "\n") .. "\n")
  -- Without ATHOST_PATH: the library comes from the installed luadir.
  local _, how, code = os.execute(string.format("env -u ATHOST_PATH %s --junit %s "
    .. "--logdir %s %s %s %s >%s 2>%s", q(STATION), q(dir .. "/report.xml"),
    q(dir .. "/logs"), q(DIR .. "/prefix/share/athost/clouds/mqtt.lua"), q(dir .. "/duts"),
    broker_args(), q(dir .. "/table"), q(dir .. "/stderr")))
  t.eq(how, "exit", "the station exited")
  return code, t.slurp(dir .. "/table") or "", t.slurp(dir .. "/stderr") or "", dir
end

-- The station's table: { dutNN = "PASS" | "FAIL" } and its last line.
local function results(tbl)
  local r, n, last = {}, 0, nil
  for _, l in ipairs(lines(tbl)) do
    local name, res = l:match("^(dut%d+)%s+(%u+)%s")
    if name then r[name], n = res, n + 1 end
    last = l
  end
  return r, n, last
end

local function dut(i) return string.format("dut%02d", i) end

t.test("32 DUTs provisioned at once: table, broker, transcripts, JUnit", function()
  local ids = imeis(1, 32)
  local received = subscriber("station/pass/#", 32)
  local code, tbl, err, dir = run_station("pass", ids, {})
  local res, n, last = results(tbl)
  t.eq(n, 32, "rows in the table:\n" .. tbl .. err)
  for i = 1, 32 do t.eq(res[dut(i)], "PASS", dut(i) .. " in the table:\n" .. tbl) end
  t.eq(last, "32 passed, 0 failed", "the table's last line")
  t.eq(code, 0, "exit code (stderr: " .. err .. ")")

  local got, msgs = received()
  t.eq(msgs, 32, "messages at mosquitto_sub")
  for _, imei in ipairs(ids) do
    t.eq(got["station/pass/" .. imei], "hello-" .. imei, "the message of " .. imei)
  end
  -- each DUT connected as itself
  local blog = t.slurp(B.DIR .. "/mosquitto.log") or ""
  for _, imei in ipairs(ids) do
    t.ok(blog:find(" as " .. imei .. " (", 1, true), "a connection with client id " .. imei)
  end

  local logs = lines(shell("ls " .. q(dir .. "/logs")))
  t.eq(#logs, 32, "transcripts: " .. table.concat(logs, " "))
  for i, imei in ipairs(ids) do
    local tr = t.slurp(dir .. "/logs/" .. dut(i) .. ".log") or ""
    t.ok(#tr > 0, dut(i) .. ".log is not empty")
    t.ok(tr:find(string.format('> AT+MPUB="station/pass/%s",0,0,"hello-%s"\\r', imei, imei),
      1, true), dut(i) .. ".log holds its own AT+MPUB:\n" .. tr)
    t.eq(count(tr, "AT+MPUB="), 1, dut(i) .. ": one AT+MPUB (the model's own side is not recorded)")
    t.nomatch(tr, B.PASS, dut(i) .. ".log (the password is a secret)")
  end

  local xml = dir .. "/report.xml"
  validate(xml)
  local s = t.slurp(xml)
  t.match(s, '<testsuites tests="32" failures="0"', "totals")
  t.eq(count(s, "<testcase "), 32, "test cases")
  t.eq(count(s, "<failure"), 0, "failures")
end)

t.test("DUT 7 refuses AT+MCONFIG: only its test case fails, exit non-zero", function()
  local ids = imeis(2, 32)
  local code, tbl, err, dir = run_station("fail", ids, { [7] = "&refuse=AT+MCONFIG:767" })
  local res, n, last = results(tbl)
  t.eq(n, 32, "rows in the table:\n" .. tbl .. err)
  for i = 1, 32 do
    t.eq(res[dut(i)], i == 7 and "FAIL" or "PASS", dut(i) .. " in the table:\n" .. tbl)
  end
  t.match(tbl, "\ndut07%s+FAIL%s+%d+ms%s+step \"connect\" failed: %+CME ERROR: 767 at AT%+MCONFIG",
    "dut07's row names the step and the error")
  t.eq(last, "31 passed, 1 failed", "the table's last line")
  t.eq(code, 1, "exit code")

  local xml = dir .. "/report.xml"
  validate(xml)
  local s = t.slurp(xml)
  t.match(s, '<testsuites tests="32" failures="1"', "totals")
  t.eq(count(s, "<testcase "), 32, "test cases")
  t.eq(count(s, "<failure"), 1, "failures")
  local failed = s:match('<testcase [^>]*name="(dut%d+)"[^>]*>%s*<failure')
  t.eq(failed, "dut07", "the test case with the failure")
  t.match(s, '<failure type="step" message="step &quot;connect&quot; failed: %+CME ERROR: 767 '
    .. 'at AT%+MCONFIG">failed in step connect</failure>', "the failure")

  t.eq(#lines(shell("ls " .. q(dir .. "/logs"))), 32, "transcripts")
  local tr = t.slurp(dir .. "/logs/dut07.log") or ""
  t.match(tr, "\\r\\n%+CME ERROR: 767\\r\\n", "dut07.log shows the refusal")
  t.nomatch(tr, "AT+MPUB", "dut07.log (it never got to publish)")
  t.ok((t.slurp(dir .. "/logs/dut08.log") or ""):find("> AT+MPUB=", 1, true),
    "dut08 published")
end)

---------------------------------------------------------------------------
-- The built-in station: athost --ports
---------------------------------------------------------------------------

t.test("athost --ports: 4 virtual modems, --table, --junit, --logdir, --json", function()
  local ids = imeis(3, 4)
  local dir = DIR .. "/builtin"
  assert(os.execute("mkdir -p " .. q(dir)))
  local ports, payload = {}, { "one", "two", "three, with a comma", "four" }
  for i, imei in ipairs(ids) do ports[i] = "sim:air720?imei=" .. imei end
  -- Rows by their port column (out of order), or by position where the
  -- port cell is empty.
  local function row(i, with_port)
    return string.format('%s,%s,builtin/%s,"%s"', with_port and ports[i] or "", ids[i],
      ids[i], payload[i])
  end
  write(dir .. "/duts.csv", table.concat({ "port,client_id,topic,publish", row(1),
    row(4, true), row(3), row(2, true) }, "\n") .. "\n")
  local received = subscriber("builtin/#", 4)
  local _, how, code = os.execute(string.format("%s --ports %s --table %s --junit %s "
    .. "--logdir %s --json %s %s >%s 2>%s", BIN, q(table.concat(ports, ",")),
    q(dir .. "/duts.csv"), q(dir .. "/report.xml"), q(dir .. "/logs"),
    q(ROOT .. "/clouds/mqtt.lua"), broker_args(), q(dir .. "/out"), q(dir .. "/err")))
  local out, err = t.slurp(dir .. "/out") or "", t.slurp(dir .. "/err") or ""
  t.eq(how, "exit", "athost exited")
  t.eq(code, 0, "exit code (stdout: " .. out .. " stderr: " .. err .. ")")

  local results, hosts = {}, {}
  for _, l in ipairs(lines(out)) do
    local ok, ev = pcall(athost.json.decode, l)
    t.ok(ok and type(ev) == "table", "not a JSON object: " .. l)
    t.eq(type(ev.host), "string", "host in " .. l)
    hosts[ev.host] = true
    if ev.event == "result" then results[#results + 1] = ev end
  end
  t.eq(#results, 4, "result events")
  local seen = {}
  for _, ev in ipairs(results) do
    t.eq(ev.ok, true, "result of " .. ev.host)
    t.eq(ev.code, 0, "code of " .. ev.host)
    t.eq(seen[ev.host], nil, "a second result for " .. ev.host)
    seen[ev.host] = true
  end

  local got, msgs = received()
  t.eq(msgs, 4, "messages at mosquitto_sub")
  for i, imei in ipairs(ids) do
    t.eq(got["builtin/" .. imei], payload[i], "the message of port " .. i)
  end

  local logs = lines(shell("ls " .. q(dir .. "/logs")))
  t.eq(#logs, 4, "transcripts: " .. table.concat(logs, " "))
  for i, imei in ipairs(ids) do
    local name
    for _, f in ipairs(logs) do if f:find(imei, 1, true) then name = f end end
    t.ok(name, "a transcript named after port " .. i .. ": " .. table.concat(logs, " "))
    t.ok(hosts[name:gsub("%.log$", "")], "events of " .. name)
    local tr = t.slurp(dir .. "/logs/" .. name)
    t.ok(tr:find(string.format('> AT+MPUB="builtin/%s",0,0,"%s"\\r', imei, payload[i]), 1,
      true), name .. " holds the AT+MPUB of its row:\n" .. tr)
    t.ok(tr:find(string.format('> AT+MCONFIG="%s","%s","***"', imei, B.USER), 1, true),
      name .. ": client id from its row, the password masked")
  end

  local xml = dir .. "/report.xml"
  validate(xml)
  local s = t.slurp(xml)
  t.match(s, '<testsuites tests="4" failures="0"', "totals")
  -- Test cases are named by the DUT: here its IMEI (the table names
  -- none), with the port beside it.
  for i, p in ipairs(ports) do
    t.ok(s:find('name="' .. ids[i] .. '"', 1, true), "a test case named " .. ids[i])
    t.ok(s:find("<system-out>port " .. p:gsub("&", "&amp;") .. " imei " .. ids[i], 1, true),
      "the port and IMEI of " .. ids[i])
  end
  t.eq(count(s, "<failure"), 0, "failures")
end)

t.test("the operators' table: port order, DUT names, IMEIs; duplicates suffixed", function()
  local dir = DIR .. "/names"
  assert(os.execute("mkdir -p " .. q(dir)))
  local ids = imeis(5, 4)
  -- Ports 1 and 2 share an IMEI (a cloned module); port 3 is named by
  -- the table's dut column, port 4 by device_name; port 4 fails.
  local ports = { "sim:air720?imei=" .. ids[1], "sim:air720?imei=" .. ids[1],
    "sim:air720?imei=" .. ids[3], "sim:air720?imei=" .. ids[4] }
  write(dir .. "/t.csv", "dut,device_name\n,\n,\nbench-3,\n,dev-four\n")
  local chunk = 'local a = ... local athost = require("athost") '
    .. 'local m = require("athost.modem").open(athost.port()) '
    .. 'if (a.device_name or "") ~= "" then error("refused " .. a.device_name) end'
  local _, how, code = os.execute(string.format("%s --ports %s --table %s --junit %s -e %s >%s 2>%s",
    BIN, q(table.concat(ports, ",")), q(dir .. "/t.csv"), q(dir .. "/r.xml"), q(chunk),
    q(dir .. "/out"), q(dir .. "/err")))
  local err = t.slurp(dir .. "/err") or ""
  t.eq(how, "exit", "athost exited")
  t.eq(code, 1, "exit code: one DUT failed (stderr: " .. err .. ")")
  local rows = {}
  local started
  for _, l in ipairs(lines(err)) do
    if l:match("^PORT%s+DUT%s+IMEI%s+RESULT") then started = true
    elseif started and l:match("^sim:") then rows[#rows + 1] = l end
  end
  t.eq(#rows, 4, "table rows:\n" .. err)
  local function cell(i) return rows[i]:match("^(%S+)%s+(%S+)%s+(%S+)%s+(%S+)") end
  local want = { { ports[1], ids[1], ids[1], "PASS" }, { ports[2], ids[1] .. "#2", ids[1], "PASS" },
    { ports[3], "bench-3", ids[3], "PASS" }, { ports[4], "dev-four", ids[4], "FAIL" } }
  for i, w in ipairs(want) do
    local p, n, imei, res = cell(i)
    t.eq(p, w[1], "row " .. i .. " port (port order)")
    t.eq(n, w[2], "row " .. i .. " DUT")
    t.eq(imei, w[3], "row " .. i .. " IMEI")
    t.eq(res, w[4], "row " .. i .. " result")
  end
  t.match(rows[4], "refused dev%-four", "the failing row's error")
  local xml = dir .. "/r.xml"
  validate(xml)
  local s = t.slurp(xml)
  for _, w in ipairs(want) do
    t.ok(s:find('name="' .. w[2] .. '"', 1, true), "a test case named " .. w[2])
  end
end)

t.test("--table: the port column picks a row and is no parameter of the flow", function()
  local dir = DIR .. "/table"
  assert(os.execute("mkdir -p " .. q(dir)))
  -- A has no row of its own: it takes row 1, whose port cell is empty.
  write(dir .. "/t.csv", "port,x\n,one\nB,two\n")
  local out, ok = shell(string.format("%s --ports A,B --table %s --json -e %s", BIN,
    q(dir .. "/t.csv"), q('local a = ... require("athost").emit("row", '
      .. '{ x = a.x, port = a.port or "none" })')))
  t.ok(ok, "athost --ports: " .. out)
  local rows = {}
  for _, l in ipairs(lines(out)) do
    local ev = athost.json.decode(l)
    if ev.event == "data" then rows[ev.host] = ev.data end
  end
  t.deepeq(rows, { A = { x = "one", port = "none" }, B = { x = "two", port = "none" } },
    "parameters per port")
end)

t.test("--table: CSV cells trimmed, quotes kept, each of 300 ports finds its row", function()
  local dir = DIR .. "/table300"
  assert(os.execute("mkdir -p " .. q(dir)))
  -- Rows in reverse port order; cells padded with blanks (a long run of
  -- them too), a quoted cell holding a comma and doubled quotes.
  local csv, ports = { " port , x ,\ty\t" }, {}
  for i = 300, 1, -1 do
    local x = i == 7 and (" "):rep(20000) .. "v7\t" .. (" "):rep(20000) or "  v" .. i .. " "
    csv[#csv + 1] = string.format('P%d,%s,"a,""%d"" b"', i, x, i)
  end
  for i = 1, 300 do ports[i] = "P" .. i end
  write(dir .. "/t.csv", table.concat(csv, "\r\n") .. "\r\n")
  local out, ok = shell(string.format("%s --ports %s --table %s --json -e %s", BIN,
    q(table.concat(ports, ",")), q(dir .. "/t.csv"),
    q('local a = ... require("athost").emit("row", { x = a.x, y = a.y })')))
  t.ok(ok, "athost --ports: " .. out:sub(1, 2000))
  local rows, n = {}, 0
  for _, l in ipairs(lines(out)) do
    local ev = athost.json.decode(l)
    if ev.event == "data" then rows[ev.host], n = ev.data, n + 1 end
  end
  t.eq(n, 300, "a row event per DUT")
  for i = 1, 300 do
    t.deepeq(rows["P" .. i], { x = "v" .. i, y = 'a,"' .. i .. '" b' }, "port P" .. i .. "'s row")
  end
end)

t.test("--table: rows that are not objects, or no JSON, are a usage error (exit 2)", function()
  local dir = DIR .. "/tablebad"
  assert(os.execute("mkdir -p " .. q(dir)))
  for _, c in ipairs({ { "[1,2]", "row 1 is not an object" },
                       { '{"A":{"x":"1"},"B":7}', "row B is not an object" },
                       { '"rows"', "not a JSON array or object" },
                       { "{bad", "Expected object key string" } }) do
    write(dir .. "/t.json", c[1])
    local out = shell(string.format("%s --ports A,B --table %s -e %s 2>&1; echo \"exit $?\"", BIN,
      q(dir .. "/t.json"), q("print(1)")))
    t.match(out, "athost: table [^\n]*t%.json: " .. c[2]:gsub("%p", "%%%0"), "message for " .. c[1])
    t.match(out, "exit 2\n$", "usage error for " .. c[1] .. ": " .. out)
    t.ok(not out:find("PANIC", 1, true), "no crash for " .. c[1])
  end
end)

t.test("--table: more ports than rows: the ports past the last row get none", function()
  local dir = DIR .. "/tableshort"
  assert(os.execute("mkdir -p " .. q(dir)))
  -- A, then B and C with no row (they once aborted the station: an
  -- unprotected Lua error indexing the missing row); an empty table too.
  for _, c in ipairs({ { '[{"x":"1"}]', { A = "1", B = "none", C = "none" } },
                       { "[]", { A = "none", B = "none", C = "none" } },
                       { "x\n1\n", { A = "1", B = "none", C = "none" }, "csv" } }) do
    local file = dir .. "/t." .. (c[3] or "json")
    write(file, c[1])
    local out, ok = shell(string.format("%s --ports A,B,C --table %s --json -e %s", BIN, q(file),
      q('local a = ... require("athost").emit("row", { x = a.x or "none" })')))
    t.ok(ok, "exit 0 for " .. c[1] .. ": " .. out)
    t.ok(not out:find("PANIC", 1, true), "no crash for " .. c[1])
    local rows = {}
    for _, l in ipairs(lines(out)) do
      local ok2, ev = pcall(athost.json.decode, l)
      if ok2 and ev.event == "data" then rows[ev.host] = ev.data.x end
    end
    t.deepeq(rows, c[2], "each port's row for " .. c[1])
  end
end)

t.test("athost --ports: SIGTERM cancels the DUTs, writes the report, exits 4", function()
  local dir = DIR .. "/signal"
  assert(os.execute("mkdir -p " .. q(dir)))
  local chunk = 'local athost = require("athost") assert(athost.port():cmd("AT")) '
    .. 'athost.log("waiting") athost.sleep(60000)'
  local f = background("signal/station", string.format("%s --ports %s --json --junit %s -e %s",
    BIN, q("sim:air720,sim:air720"), q(dir .. "/report.xml"), q(chunk)))
  local pid = wait_for("the station's pid", 10000, function()
    return (t.slurp(f .. ".pid") or ""):match("%d+")
  end)
  wait_for("both DUTs waiting", 10000, function()
    return count(t.slurp(f .. ".out") or "", '"text":"waiting"') == 2
  end)
  assert(os.execute("kill -TERM " .. pid))
  local rc = exited(f, "the station to exit", 10000)
  t.eq(rc, "4", "exit code (stderr: " .. (t.slurp(f .. ".err") or "") .. ")")
  local results = 0
  for _, l in ipairs(lines(t.slurp(f .. ".out"))) do
    local ev = athost.json.decode(l)
    if ev.event == "result" then
      results = results + 1
      t.eq(ev.code, 4, "result code of " .. ev.host)
    end
  end
  t.eq(results, 2, "result events")
  local xml = dir .. "/report.xml"
  validate(xml)
  local s = t.slurp(xml)
  t.match(s, '<testsuites tests="2" failures="2"', "totals")
  -- Each DUT was interrupted as a single run is (its cleanups ran), and
  -- says by which signal.
  t.eq(count(s, '<failure type="exit 4" message="canceled (SIGTERM)'), 2, "canceled test cases")
end)

-- The DUTs of `athost --ports` share one Lua state (ATHOST_STATION_ISOLATE=1:
-- a state each); either way, what is a DUT's own stays its own.
local SHARED_FLOW = [[
local args = ...
local athost = require("athost")
-- Globals are the DUT's own: no other DUT's mark is seen, before or
-- after the others set theirs.
local before = mark
mark = args.mark
local port = athost.port()
-- The secret goes out in a command (masked in this DUT's transcript).
port:cmd("AT+TOKEN=" .. args.key_secret, { timeout = 200 })
assert(port:cmd("AT"))
athost.sleep(50)
local seen = {}
for k, v in pairs(athost.params()) do seen[#seen + 1] = k .. "=" .. v end
table.sort(seen)
-- A coroutine of the flow acts on the flow's own DUT.
local w = coroutine.wrap(function()
  athost.log("wrapped " .. athost.params().mark)
  athost.secret(args.mark .. "-wrapsecret")
  coroutine.yield(athost.params().mark)
  local ok, err = pcall(port.cmd, port, "AT")
  return err
end)
local wrapped, waiterr = w(), w()
athost.log("logged " .. args.mark .. "-wrapsecret and " .. args.word)
if args.fail == "yes" then error("failing on purpose in " .. args.mark, 0) end
athost.emit("dut", { before = tostring(before), after = mark, params = table.concat(seen, " "),
  wrapped = wrapped, waiterr = waiterr, G = tostring(rawget(_G, "mark")) })
]]

for _, mode in ipairs({ "shared", "isolated" }) do
  t.test("athost --ports (" .. mode .. " state): globals, parameters, secrets, "
      .. "coroutines and failures per DUT", function()
    local dir = DIR .. "/" .. mode
    assert(os.execute("mkdir -p " .. q(dir)))
    write(dir .. "/flow.lua", SHARED_FLOW)
    local ids = imeis(mode == "shared" and 6 or 7, 3)
    local ports = {}
    for i, imei in ipairs(ids) do ports[i] = "sim:air720?imei=" .. imei end
    -- B's secret is a word A logs: secrets are per DUT, so A shows it.
    write(dir .. "/t.csv", "port,mark,key_secret,word,fail\n"
      .. ports[1] .. ",A,sekritAAA,zebra,no\n"
      .. ports[2] .. ",B,zebra,giraffe,yes\n"
      .. ports[3] .. ",C,sekritCCC,okapi,no\n")
    local env = mode == "isolated" and "ATHOST_STATION_ISOLATE=1 " or ""
    local _, how, code = os.execute(string.format("%s%s --ports %s --table %s --logdir %s "
      .. "--json %s >%s 2>%s", env, BIN, q(table.concat(ports, ",")), q(dir .. "/t.csv"),
      q(dir .. "/logs"), q(dir .. "/flow.lua"), q(dir .. "/out"), q(dir .. "/err")))
    local out, err = t.slurp(dir .. "/out") or "", t.slurp(dir .. "/err") or ""
    t.eq(how, "exit", "athost exited")
    t.eq(code, 1, "exit code: one DUT failed (stderr: " .. err .. ")")
    local res, data, logs = {}, {}, {}
    for _, l in ipairs(lines(out)) do
      local ev = athost.json.decode(l)
      local m = ev.host:match("imei_(%d+)")
      local who = m == ids[1] and "A" or m == ids[2] and "B" or m == ids[3] and "C"
      t.ok(who, "an event of a known DUT: " .. l)
      if ev.event == "result" then res[who] = ev
      elseif ev.event == "data" and ev.name == "dut" then data[who] = ev.data
      elseif ev.event == "log" then logs[who] = (logs[who] or "") .. ev.text .. "\n" end
    end
    t.eq(res.A and res.A.ok, true, "A passed: " .. out)
    t.eq(res.C and res.C.ok, true, "C passed")
    t.eq(res.B and res.B.ok, false, "B failed")
    t.eq(res.B and res.B.error, "failing on purpose in B", "B's error is its own")
    t.eq(data.B, nil, "B stopped at its error")
    for _, who in ipairs({ "A", "C" }) do
      local d = data[who] or {}
      local sec = "***"
      t.eq(d.before, "nil", who .. " saw no other DUT's global")
      t.eq(d.after, who, who .. "'s global is still its own after the others ran")
      t.eq(d.G, who, who .. "'s _G is its own globals")
      t.eq(d.params, "fail=no key_secret=" .. sec .. " mark=" .. who .. " word="
        .. (who == "A" and "zebra" or "okapi"), who .. "'s parameters, and no other's")
      t.eq(d.wrapped, who, "coroutine.wrap in " .. who .. " reads its own parameters")
      t.match(d.waiterr or "", "not in a plain coroutine", "a wait in coroutine.wrap still needs a flow")
      t.match(logs[who] or "", "wrapped " .. who, "a log from coroutine.wrap is " .. who .. "'s event")
      t.match(logs[who] or "", "logged %*%*%* and", "the secret a coroutine of " .. who
        .. " registered is masked in " .. who .. "'s events")
    end
    t.match(logs.A or "", "and zebra\n", "B's secret is no secret in A's events")
    local names = lines(shell("ls " .. q(dir .. "/logs")))
    t.eq(#names, 3, "transcripts: " .. table.concat(names, " "))
    for i, who in ipairs({ "A", "B", "C" }) do
      local tr = t.slurp(dir .. "/logs/sim_air720_imei_" .. ids[i] .. "_" .. i .. ".log") or ""
      t.ok(tr:find("> AT+TOKEN=***\\r", 1, true), who .. "'s transcript masks its secret:\n" .. tr)
      t.nomatch(tr, "sekrit", who .. "'s transcript holds no secret")
    end
  end)
end

---------------------------------------------------------------------------

for k, v in pairs(require("broker").start(DIR .. "/broker")) do B[k] = v end

local passed, err = pcall(t.run)
for _, f in ipairs(started) do
  if not t.slurp(f .. ".rc") then
    local pid = (t.slurp(f .. ".pid") or ""):match("%d+")
    if pid then os.execute("kill " .. pid .. " 2>/dev/null") end
  end
end
shell(q(ROOT .. "/tests/fixtures/broker.sh") .. " stop " .. q(DIR .. "/broker"))
shell("rm -rf " .. q(DIR))
if not passed then error(err, 0) end
