-- Files athost creates and devices it opens, checked as the user (or
-- whoever shares the machine) would: transcripts private and never written
-- through a planted symlink, rotated at --log-max; a serial port left
-- openable by the next run; the device secret's directory and file.
local t = require("t")
local athost = require("athost")

local BIN = os.getenv("ATHOST_BIN") or (arg and arg[-1]) or "./athost"
local DIR = t.tmpdir()
local P = require("proc").new(DIR)
local q, poll = P.q, P.poll

local function write(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

local n = 0
-- A fresh directory under DIR for one test.
local function fresh(name)
  n = n + 1
  local d = DIR .. "/" .. name .. n
  assert(os.execute("mkdir -p " .. q(d)))
  return d
end

-- Runs a shell command line; returns the exit code, stdout, stderr.
local function run(cmdline, dir)
  local _, how, code = os.execute(string.format("%s >%s/out 2>%s/err </dev/null",
    cmdline, q(dir), q(dir)))
  local out, err = t.slurp(dir .. "/out") or "", t.slurp(dir .. "/err") or ""
  t.eq(how, "exit", "the command exited (stderr: " .. err .. ")")
  return code, out, err
end

local function mode(path)
  local st = assert(athost.stat(path, true))
  return st.mode, st.type
end

-- A script that sends `lines` records of `width` bytes each on a pty of
-- its own, so that its transcript grows by known amounts.
local function chatter(dir, lines, width)
  local path = dir .. "/chatter.lua"
  write(path, string.format([[
local athost = require("athost")
local m, slave = assert(athost.pty { name = "modem" })
local p = assert(athost.open(slave, { name = "dut" }))
for i = 1, %d do
  assert(p:send(string.format("%%05d", i) .. string.rep("x", %d) .. "\r"))
end
]], lines, width))
  return path
end

-- ---- transcripts ----------------------------------------------------------

t.test("a transcript is created 0600 whatever the umask, and an old one is made private", function()
  local d = fresh("mode")
  local log = d .. "/tr.log"
  local code, _, err = run("umask 000 && " .. BIN .. " -l " .. q(log) .. " "
    .. chatter(d, 3, 10), d)
  t.eq(code, 0, "exit code (" .. err .. ")")
  t.eq(mode(log), 384, "mode of a new transcript (0600)")
  t.match(t.slurp(log), "dut > 00003xxxxxxxxxx\\r", "it holds the run")
  local old = d .. "/old.log"
  write(old, "an earlier run\n")
  assert(os.execute("chmod 644 " .. q(old)))
  code = run(BIN .. " -l " .. q(old) .. " -e 'athost.log(1)'", d)
  t.eq(code, 0, "exit code")
  t.eq(mode(old), 384, "an existing 0644 transcript is 0600 after the run")
end)

t.test("a symlink planted at the -l path is not followed: the run is refused", function()
  local d = fresh("symlink")
  local target, log = d .. "/victim", d .. "/tr.log"
  write(target, "precious\n")
  assert(os.execute("ln -s " .. q(target) .. " " .. q(log)))
  local code, _, err = run(BIN .. " -l " .. q(log) .. " " .. chatter(d, 2, 4), d)
  t.eq(code, 2, "exit code (a transcript that cannot be created)")
  t.match(err, log, "the message names the path")
  t.match(err, "symbolic link", "and says why")
  t.eq(t.slurp(target), "precious\n", "the link's target is untouched")
  local _, ty = mode(log)
  t.eq(ty, "link", "the link is left as it was")
  -- a dangling link (a file the planter hopes athost will create) too
  os.remove(target)
  code = run(BIN .. " -l " .. q(log) .. " -e 'athost.log(1)'", d)
  t.eq(code, 2, "exit code for a dangling link")
  t.eq(t.slurp(target), nil, "no file was created through the link")
end)

t.test("--logdir transcripts and the --junit report are 0600; a planted link is refused", function()
  local d = fresh("logdir")
  local logs = d .. "/logs"
  local code, _, err = run("umask 000 && " .. BIN .. " --ports sim:air720 --logdir "
    .. q(logs) .. " --junit " .. q(d .. "/report.xml")
    .. " -e 'local p = athost.port(); assert(p:cmd(\"AT\"))'", d)
  t.eq(code, 0, "exit code (" .. err .. ")")
  t.eq(mode(logs .. "/sim_air720_1.log"), 384, "the DUT's transcript (0600)")
  t.match(t.slurp(logs .. "/sim_air720_1.log"), "> AT\\r", "it holds the run")
  t.eq(mode(logs), 448, "the log directory (0700)")
  t.eq(mode(d .. "/report.xml"), 384, "the JUnit report (0600)")
  os.remove(logs .. "/sim_air720_1.log")
  write(d .. "/victim", "precious\n")
  assert(os.execute("ln -s " .. q(d .. "/victim") .. " " .. q(logs .. "/sim_air720_1.log")))
  code, _, err = run(BIN .. " --ports sim:air720 --logdir " .. q(logs)
    .. " -e 'athost.port()'", d)
  t.eq(code, 2, "exit code")
  t.match(err, "sim_air720_1%.log: it is a symbolic link", "the message")
  t.eq(t.slurp(d .. "/victim"), "precious\n", "the link's target is untouched")
end)

t.test("--log-max rotates the transcript to FILE.1, neither over the cap, nothing lost", function()
  local d = fresh("rotate")
  local log = d .. "/tr.log"
  -- FILE.1 planted as a symlink: rotation replaces it, never writes through it
  write(d .. "/victim", "precious\n")
  assert(os.execute("ln -s " .. q(d .. "/victim") .. " " .. q(log .. ".1")))
  local code, _, err = run(BIN .. " --log-max 2k -l " .. q(log) .. " "
    .. chatter(d, 60, 60), d)
  t.eq(code, 0, "exit code (" .. err .. ")")
  local cur, prev = t.slurp(log), t.slurp(log .. ".1")
  t.ok(cur and #cur > 0 and #cur <= 2048, "FILE within 2 KiB (" .. #(cur or "") .. ")")
  t.ok(prev and #prev > 1024 and #prev <= 2048, "FILE.1 full but within 2 KiB ("
    .. #(prev or "") .. ")")
  t.eq(mode(log), 384, "FILE mode")
  t.eq(mode(log .. ".1"), 384, "FILE.1 mode (a file now, not the link)")
  t.eq(t.slurp(d .. "/victim"), "precious\n", "the planted link's target is untouched")
  t.match(cur, "dut > 00060x+\\r\n$", "FILE ends with the last record")
  -- the records in FILE.1 and FILE are consecutive, each whole
  local nums = {}
  for num in (prev .. cur):gmatch("dut > (%d%d%d%d%d)x+\\r\n") do nums[#nums + 1] = tonumber(num) end
  local first = nums[1]
  t.ok(first and first > 1, "older records rotated away")
  for i, num in ipairs(nums) do t.eq(num, first + i - 1, "record " .. i) end
  t.eq(nums[#nums], 60, "the last record")
end)

t.test("--log-max takes sizes with k/M/G and refuses bad ones", function()
  local d = fresh("logmax")
  local code, _, err = run(BIN .. " --log-max 10Q -l " .. q(d .. "/a") .. " -e 'return'", d)
  t.eq(code, 2, "exit code for 10Q")
  t.match(err, "bad %-%-log%-max size '10Q'", "message")
  code = run(BIN .. " --log-max 0 -l " .. q(d .. "/a") .. " -e 'return'", d)
  t.eq(code, 2, "exit code for 0")
  code, _, err = run(BIN .. " --log-max 10M -e 'return'", d)
  t.eq(code, 2, "exit code without a transcript file")
  t.match(err, "needs a transcript file", "message")
  code, _, err = run(BIN .. " --log-max 10M -l " .. q(d .. "/a") .. " -e 'return'", d)
  t.eq(code, 0, "exit code for 10M (" .. err .. ")")
end)

-- ---- the exclusive open leaves nothing behind -------------------------------

-- As root the test runs athost as nobody: root ignores the exclusive mode,
-- the users it locked out do not.
local function as_user()
  if athost.uid() ~= 0 then return "" end
  return "setpriv --reuid=65534 --regid=65534 --clear-groups "
end

P.test("a pty opened by one athost after another: the second open succeeds (non-root)", function()
  local d = fresh("excl")
  local m, slave = assert(athost.pty { name = "master" })   -- kept open throughout
  if athost.uid() == 0 then assert(os.execute("chmod 666 " .. q(slave))) end
  local open = as_user() .. BIN .. " -p " .. q(slave)
  for i = 1, 2 do
    local code, _, err = run(open .. " -e 'assert(athost.port()); athost.log(\"opened\")'", d)
    t.eq(code, 0, "run " .. i .. " exit code (" .. err .. ")")
  end
  -- a run ending through os.exit (no host teardown) releases it too
  local code, _, err = run(open .. " -e 'assert(athost.port()); os.exit(0)'", d)
  t.eq(code, 0, "os.exit run (" .. err .. ")")
  code, _, err = run(open .. " -e 'assert(athost.port())'", d)
  t.eq(code, 0, "the run after os.exit (" .. err .. ")")
  -- a run that fails (its script raises) releases it too
  code = run(open .. " -e 'assert(athost.port()); error(\"boom\")'", d)
  t.eq(code, 1, "a failing run's exit code")
  code, _, err = run(open .. " -e 'assert(athost.port())'", d)
  t.eq(code, 0, "the run after a failing one (" .. err .. ")")
  m:close()
end)

P.test("while one athost has the port a second is refused as busy; after SIGTERM it is free", function()
  local d = fresh("busy")
  local m, slave = assert(athost.pty { name = "master" })
  if athost.uid() == 0 then assert(os.execute("chmod 666 " .. q(slave))) end
  local open = as_user() .. BIN .. " -p " .. q(slave)
  local first = P.background(open .. [[ -e 'local p = assert(athost.port())
    assert(p:sendline("ready")); athost.sleep(60000)']], "holder")
  assert(m:expect("ready", { timeout = 10000 }))
  local code, _, err = run(open .. " -e 'assert(athost.port())'", d)
  t.eq(code, 3, "exit code while the first has it")
  t.match(err, "port busy", "the message")
  assert(os.execute("kill -TERM $(cat " .. q(first .. ".pid") .. ")"))
  local rc = poll("the first athost's end", 10000, function()
    return t.slurp(first .. ".rc")
  end)
  t.eq(rc, "4\n", "the first ended as canceled (stderr: " .. (t.slurp(first .. ".err") or "") .. ")")
  code, _, err = run(open .. " -e 'assert(athost.port())'", d)
  t.eq(code, 0, "the next run opens it (" .. err .. ")")
  m:close()
end)

-- ---- the device secret's directory -------------------------------------------

local function lua_run(d, env, chunk)
  return run(string.format("env %s %s -e %s", env, BIN, q(chunk)), d)
end

t.test("state_dir: XDG_STATE_HOME, else ~/.local/state; with neither set it refuses", function()
  local d = fresh("statedir")
  local show = "print(require('athost.aliyun').state_dir())"
  local code, out = lua_run(d, "XDG_STATE_HOME=/x/state HOME=/h", show)
  t.eq(code, 0, "exit code")
  t.eq(out, "/x/state/athost\n", "with XDG_STATE_HOME")
  code, out = lua_run(d, "-u XDG_STATE_HOME HOME=/h", show)
  t.eq(out, "/h/.local/state/athost\n", "with HOME only")
  local err
  code, out, err = lua_run(d, "-u XDG_STATE_HOME -u HOME", show)
  t.eq(code, 1, "exit code with neither")
  t.eq(out, "", "no directory is made up")
  t.match(err, "neither XDG_STATE_HOME nor HOME is set %(give state_dir=DIR%)", "the message")
  code, out = lua_run(d, "-u XDG_STATE_HOME -u HOME", "print(require('athost.aliyun').state_dir('/given'))")
  t.eq(out, "/given\n", "a given directory needs neither")
end)

t.test("a state directory others can write or that is not the user's is refused, named", function()
  local aliyun = require("athost.aliyun")
  local d = fresh("refuse")
  assert(os.execute("chmod 770 " .. q(d)))
  local ok, err = pcall(aliyun.save_secret, d, "pk", "dn", "S3cr3tDeviceValue")
  t.ok(not ok, "saving into a group-writable directory fails")
  t.match(err, "state directory " .. d .. " is writable by group %(mode 0770%)", "the message")
  ok, err = pcall(aliyun.load_secret, d, "pk", "dn")
  t.ok(not ok, "loading from it fails too")
  t.match(err, "writable by group", "the message")
  assert(os.execute("chmod 703 " .. q(d)))
  ok, err = pcall(aliyun.save_secret, d, "pk", "dn", "S3cr3tDeviceValue")
  t.ok(not ok, "an other-writable directory")
  t.match(err, "is writable by others %(mode 0703%)", "the message")
  t.eq(io.popen("ls -A " .. q(d)):read("a"), "", "nothing was written there")
  if athost.uid() == 0 then
    assert(os.execute("chmod 700 " .. q(d) .. " && chown 65534 " .. q(d)))
    ok, err = pcall(aliyun.save_secret, d, "pk", "dn", "S3cr3tDeviceValue")
    t.ok(not ok, "a directory of another user")
    t.match(err, "state directory " .. d .. " belongs to uid 65534, not to this user %(uid 0%)",
      "the message")
  end
  local file = fresh("notdir") .. "/f"
  write(file, "")
  ok, err = pcall(aliyun.save_secret, file, "pk", "dn", "x")
  t.ok(not ok, "a file as the state directory")
  t.match(err, "is not a directory", "the message")
end)

t.test("the stored secret is 0600, replaced atomically through a fresh name, links not followed", function()
  local aliyun = require("athost.aliyun")
  local d = fresh("store") .. "/state"
  local path = aliyun.save_secret(d, "pk", "dev1", "first-secret")
  t.eq(mode(path), 384, "file mode 0600")
  t.eq(mode(d), 448, "directory mode 0700")
  -- a second save replaces the file: a hard link to the old one keeps the
  -- old content (a new inode was renamed in, not the old one rewritten)
  assert(os.execute("ln " .. q(path) .. " " .. q(d .. "/old-link")))
  aliyun.save_secret(d, "pk", "dev1", "second-secret")
  t.eq(aliyun.load_secret(d, "pk", "dev1"), "second-secret", "read back")
  t.match(t.slurp(d .. "/old-link"), "first%-secret", "the old inode untouched")
  os.remove(d .. "/old-link")
  -- a symlink planted at the secret's path (or its old fixed temporary name)
  -- is replaced, its target never written
  local victim = d .. "/../victim"
  write(victim, "precious\n")
  os.remove(path)
  assert(os.execute("ln -s " .. q(victim) .. " " .. q(path)))
  assert(os.execute("ln -s " .. q(victim) .. " " .. q(path .. ".tmp")))
  aliyun.save_secret(d, "pk", "dev1", "third-secret")
  t.eq(t.slurp(victim), "precious\n", "the target is untouched")
  local _, ty = mode(path)
  t.eq(ty, "file", "the path holds a file now")
  t.eq(mode(path), 384, "mode 0600")
  t.eq(aliyun.load_secret(d, "pk", "dev1"), "third-secret", "read back")
  os.remove(path .. ".tmp")
  t.eq(io.popen("ls -A " .. q(d)):read("a"), "aliyun-pk-dev1.json\n",
    "no temporary file is left behind")
end)

t.test("athost.write_private and athost.stat", function()
  local d = fresh("api")
  local p = d .. "/f"
  t.eq(athost.write_private(p, "a\0b"), p, "returns the path")
  t.eq(t.slurp(p), "a\0b", "content, NUL and all")
  local st = athost.stat(p)
  t.eq(st.type, "file", "type")
  t.eq(st.mode, 384, "mode 0600")
  t.eq(st.size, 3, "size")
  t.eq(st.mine, true, "mine")
  t.eq(st.uid, athost.uid(), "uid")
  t.eq(athost.stat(d).type, "dir", "a directory")
  assert(os.execute("ln -s f " .. q(d .. "/l")))
  t.eq(athost.stat(d .. "/l").type, "file", "stat follows a link")
  t.eq(athost.stat(d .. "/l", true).type, "link", "unless told not to")
  local v, err, code = athost.stat(d .. "/none")
  t.eq(v, nil, "a missing file")
  t.eq(code, "ENOENT", "code")
  t.match(err, "^ENOENT: cannot stat " .. d .. "/none: ", "message")
  v, err, code = athost.write_private(d .. "/no/such/dir/f", "x")
  t.eq(v, nil, "a missing directory")
  t.eq(code, "ENOENT", "code")
  t.match(err, "cannot write " .. d .. "/no/such/dir/f", "message")
end)

local ok, err = xpcall(t.run, debug.traceback)
os.execute("rm -rf " .. q(DIR))
if not ok then error(err, 0) end
