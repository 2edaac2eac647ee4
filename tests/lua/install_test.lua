-- `make install` as a user runs it, then athost from a directory outside
-- the tree: flows by name, --list, what is (not) installed.
local t = require("t")
local cli = require("cli")

local ROOT = cli.ROOT
local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function sh(cmd)
  local f = assert(io.popen(cmd .. " 2>&1"))
  local out = f:read("a")
  local ok, _, code = f:close()
  return out, ok and 0 or code
end

-- One installation for the suite (DESTDIR under a temporary directory;
-- the same PREFIX as the build, so nothing is rebuilt).
local DEST = t.tmpdir()
local out, code = sh(string.format("make -s -C %s install DESTDIR=%s", q(ROOT), q(DEST)))
assert(code == 0, "make install failed:\n" .. out)
local PREFIX = DEST .. "/usr/local"
local BIN = PREFIX .. "/bin/athost"
local DATA = PREFIX .. "/share/athost"

-- Runs the installed athost in a fresh directory outside the tree, with
-- no ATHOST_PATH unless env gives one.
local function run(args, env)
  local res
  cli.in_tmpdir(function(dir)
    local c, o, e = cli.athost(dir, nil, string.format("cd %s && env -u ATHOST_PATH %s %s %s",
      q(dir), env or "", q(BIN), args))
    res = { code = c, out = o, err = e, dir = dir }
  end)
  return res
end

t.test("a flow by name from another directory: its usage, exit 2", function()
  local r = run("clouds/mqtt.lua")
  t.eq(r.code, 2, "exit code (stderr: " .. r.err .. ")")
  t.match(r.err, "usage: athost clouds/mqtt.lua", "the flow's usage")
  t.match(r.err, "missing parameters", "what is missing")
  -- without .lua, too
  r = run("clouds/mqtt")
  t.eq(r.code, 2, "exit code without .lua")
  t.match(r.err, "usage: athost clouds/mqtt.lua", "the flow's usage without .lua")
end)

t.test("an installed script runs by name against a virtual modem", function()
  local r = run("scripts/probe.lua -p sim:air720?imei=862991419835999")
  t.eq(r.code, 0, "exit code (stderr: " .. r.err .. ")")
  t.match(r.out, "imei%s+862991419835999", "probe's answer")
end)

t.test("a name that is nowhere exits 2 and points at --list", function()
  local r = run("clouds/nosuch.lua")
  t.eq(r.code, 2, "exit code")
  t.match(r.err, "cannot find clouds/nosuch%.lua", "the message names it")
  t.match(r.err, "%-%-list", "the message points at --list")
end)

t.test("--list: installed flows and scripts with their first comment line", function()
  local r = run("--list")
  t.eq(r.code, 0, "exit code")
  t.match(r.out, "clouds/aliyun%.lua%s+Alibaba Cloud IoT", "aliyun")
  t.match(r.out, "clouds/mqtt%.lua%s+Any MQTT broker", "mqtt")
  t.match(r.out, "scripts/probe%.lua%s+Probes a module", "probe")
  t.match(r.out, "scripts/sim/air720%.lua%s+A virtual Luat Air720", "a virtual modem")
  t.nomatch(r.out, "deps", "--list")
  t.nomatch(r.out, "demo", "--list")
end)

t.test("development scripts are not installed", function()
  t.ok(io.open(DATA .. "/scripts/probe.lua"), "probe.lua installed")
  t.eq(io.open(DATA .. "/scripts/deps.sh"), nil, "deps.sh")
  t.eq(io.open(DATA .. "/scripts/demo.sh"), nil, "demo.sh")
end)

t.test("ATHOST_PATH holds flows too, before the installed ones", function()
  cli.in_tmpdir(function(mine)
    os.execute("mkdir -p " .. q(mine .. "/clouds"))
    cli.write(mine .. "/clouds/mine.lua", "-- My own flow: says hello.\nprint('hello from mine')\n")
    cli.write(mine .. "/clouds/mqtt.lua", "-- A local mqtt.lua that shadows the installed one.\nprint('local mqtt')\n")
    local env = "ATHOST_PATH=" .. q(mine)
    local r = run("clouds/mine.lua", env)
    t.eq(r.code, 0, "exit code (stderr: " .. r.err .. ")")
    t.eq(r.out, "hello from mine\n", "stdout")
    r = run("clouds/mqtt.lua", env)
    t.eq(r.out, "local mqtt\n", "the ATHOST_PATH one wins")
    r = run("--list", env)
    t.match(r.out, "clouds/mine%.lua%s+My own flow: says hello%.", "--list shows it")
    t.match(r.out, "clouds/mqtt%.lua%s+A local mqtt%.lua", "--list shows the one that wins")
    t.nomatch(r.out, "Any MQTT broker", "--list, the shadowed one")
  end)
end)

t.test("a file in the current directory wins", function()
  cli.in_tmpdir(function(dir)
    os.execute("mkdir -p " .. q(dir .. "/clouds"))
    cli.write(dir .. "/clouds/mqtt.lua", "print('the one here')\n")
    local c, o, e = cli.athost(dir, nil, string.format("cd %s && env -u ATHOST_PATH %s clouds/mqtt.lua",
      q(dir), q(BIN)))
    t.eq(c, 0, "exit code (stderr: " .. e .. ")")
    t.eq(o, "the one here\n", "stdout")
  end)
end)

t.test("the man page is installed and reads cleanly", function()
  local page = PREFIX .. "/share/man/man1/athost.1"
  t.ok(io.open(page), "athost.1 installed")
  local o, c = sh("MANWIDTH=80 man -l " .. q(page) .. " | col -b")
  t.eq(c, 0, "man -l exit code: " .. o)
  t.match(o, "NAME%s+athost %- script AT%-command dialogues", "NAME")
  for _, opt in ipairs({ "%-%-port SPEC", "rfc2217:HOST:PORT", "%-%-scan", "%-%-list",
      "EXIT STATUS", "ATHOST_PATH", "ATHOST_PARAM_NAME" }) do
    t.match(o, opt, "the page mentions " .. opt)
  end
  -- groff's own warnings (-ww): none
  local w = sh("groff -man -Tutf8 -ww -z " .. q(page))
  t.eq(w, "", "groff warnings")
  -- every option of --help is in the page
  local help = sh(q(BIN) .. " --help")
  for opt in help:gmatch("\n%s+[%-%w, ]-(%-%-[%w%-]+)") do
    t.ok(o:find(opt, 1, true), "the man page documents " .. opt)
  end
end)

-- Completes the words as bash would at the end of the line, with the
-- installed athost first on PATH; the candidates, sorted.
local function complete(line)
  local words = {}
  for w in line:gmatch("%S+") do words[#words + 1] = w end
  if line:sub(-1) == " " then words[#words + 1] = "" end
  local arr = {}
  for _, w in ipairs(words) do arr[#arr + 1] = q(w) end
  local script = string.format("source %s; COMP_WORDS=(%s); COMP_CWORD=%d; _athost; "
    .. "printf '%%s\\n' \"${COMPREPLY[@]}\" | LC_ALL=C sort",
    q(PREFIX .. "/share/bash-completion/completions/athost"), table.concat(arr, " "), #words - 1)
  local o, c
  cli.in_tmpdir(function(dir)
    o, c = sh(string.format("cd %s && env -u ATHOST_PATH PATH=%s:$PATH bash --norc --noprofile -c %s",
      q(dir), q(PREFIX .. "/bin"), q(script)))
  end)
  t.eq(c, 0, "bash exit code: " .. o)
  local got = {}
  for l in o:gmatch("[^\n]+") do got[#got + 1] = l end
  return got
end

t.test("bash completion: options, ports, flows, parameters", function()
  t.deepeq(complete("athost --sc"), { "--scan" }, "an option")
  t.deepeq(complete("athost --lo"), { "--log", "--log-max", "--logdir" }, "options")
  t.deepeq(complete("athost clouds/mq"), { "clouds/mqtt.lua" }, "a flow by name")
  local sims = complete("athost -p sim:a")
  t.deepeq(sims, { "sim:a7670", "sim:air720", "sim:air780e" }, "virtual modems after -p")
  t.deepeq(complete("athost -p rfc"), { "rfc2217:" }, "rfc2217: after -p")
  t.deepeq(complete("athost clouds/mqtt.lua -p sim:air720 tl"),
    { "tls=mutual", "tls=none", "tls=noverify", "tls=server" }, "a parameter's values")
  t.deepeq(complete("athost clouds/aliyun.lua product_"),
    { "product_key=", "product_secret=" }, "parameters of another flow")
  local all = complete("athost clouds/mqtt.lua ")
  local set = {}
  for _, w in ipairs(all) do set[w] = true end
  for _, w in ipairs({ "host=", "client_id=", "username=", "password=", "qos=", "topic=" }) do
    t.ok(set[w], "clouds/mqtt.lua offers " .. w .. " (got " .. table.concat(all, " ") .. ")")
  end
end)

t.test("libathost: versioned with a SONAME; pkg-config and --version agree", function()
  local lib = PREFIX .. "/lib"
  local v = sh(q(BIN) .. " --version"):match("athost (%S+)")
  t.ok(v, "athost --version")
  local real = lib .. "/libathost.so." .. v
  t.eq(sh("test -f " .. q(real) .. " && ! test -L " .. q(real) .. " && echo file"), "file\n",
    "libathost.so." .. v .. " is the library")
  t.eq(sh("readlink " .. q(lib .. "/libathost.so.0")), "libathost.so." .. v .. "\n", "libathost.so.0")
  t.eq(sh("readlink " .. q(lib .. "/libathost.so")), "libathost.so." .. v .. "\n", "libathost.so")
  t.match(sh("readelf -d " .. q(real)), "Library soname: %[libathost%.so%.0%]", "the SONAME")
  t.eq(sh("PKG_CONFIG_PATH=" .. q(lib .. "/pkgconfig") .. " pkg-config --modversion athost"),
    v .. "\n", "pkg-config's version")
end)

local ok, err = pcall(t.run)
os.execute("rm -rf " .. q(DEST))
if not ok then error(err, 0) end
