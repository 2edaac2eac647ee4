-- The athost command, driven as a user drives it: options, exit codes,
-- parameters, --json events, secrets.
local t = require("t")
local athost = require("athost")

local cli = require("cli")
local BIN, in_tmpdir, write, athost_cmd = cli.BIN, cli.in_tmpdir, cli.write, cli.athost

local function lines(s)
  local r = {}
  for l in s:gmatch("[^\n]+") do r[#r + 1] = l end
  return r
end

-- ---- options and exit codes --------------------------------------------------

t.test("--version and -h exit 0", function()
  in_tmpdir(function(dir)
    local code, out = athost_cmd(dir, "--version")
    t.eq(code, 0, "--version exit code")
    t.match(out, "^athost %d+%.%d+%.%d+\n$", "--version output")
    t.match(out, athost.version, "the module's version")
    code, out = athost_cmd(dir, "-h")
    t.eq(code, 0, "-h exit code")
    t.match(out, "^usage: athost", "-h prints the usage")
    t.match(out, "exit codes", "-h explains exit codes")
    code = athost_cmd(dir, "--help")
    t.eq(code, 0, "--help exit code")
  end)
end)

t.test("usage errors exit 2", function()
  in_tmpdir(function(dir)
    local code, _, err = athost_cmd(dir, "--bogus")
    t.eq(code, 2, "unknown option")
    t.match(err, "unknown option %-%-bogus", "message")
    code = athost_cmd(dir, "")
    t.eq(code, 2, "no script")
    code = athost_cmd(dir, "-p")
    t.eq(code, 2, "an option without its value")
    write(dir .. "/ok.lua", "return true")
    code, _, err = athost_cmd(dir, dir .. "/ok.lua notkeyvalue")
    t.eq(code, 2, "an argument that is not key=value")
    t.match(err, "notkeyvalue", "message")
    code = athost_cmd(dir, dir .. "/missing.lua")
    t.eq(code, 2, "a script that does not exist")
  end)
end)

t.test("a script with a syntax error exits 2", function()
  in_tmpdir(function(dir)
    write(dir .. "/bad.lua", "local x = = 1\n")
    local code, out, err = athost_cmd(dir, dir .. "/bad.lua")
    t.eq(code, 2, "exit code")
    t.match(err, "bad%.lua:1:", "the message names file and line")
    t.eq(out, "", "stdout")
    code = athost_cmd(dir, "-e 'if then'")
    t.eq(code, 2, "a chunk with a syntax error")
  end)
end)

t.test("a failing script exits 1 with one line naming the step", function()
  in_tmpdir(function(dir)
    write(dir .. "/fail.lua", [[
local athost = require("athost")
athost.step("attach")
error("no network")
]])
    local code, _, err = athost_cmd(dir, "-q " .. dir .. "/fail.lua")
    t.eq(code, 1, "exit code")
    local l = lines(err)
    t.eq(#l, 1, "one line on stderr with -q, got: " .. err)
    t.match(l[1], '^athost: step "attach" failed: .*fail%.lua:3: no network$', "the line")
    -- without -q the progress lines come first; the failure is still one line
    code, _, err = athost_cmd(dir, dir .. "/fail.lua")
    t.eq(code, 1, "exit code without -q")
    l = lines(err)
    t.match(l[#l], '^athost: step "attach" failed: ', "last line")
    t.nomatch(err, "stack traceback", "stderr")
    local n = 0
    for _, x in ipairs(l) do if x:find("^athost:") then n = n + 1 end end
    t.eq(n, 1, "failure lines")
  end)
end)

t.test("-p with a port that cannot be opened exits 3", function()
  in_tmpdir(function(dir)
    local code, _, err = athost_cmd(dir,
      "-p /nonexistent/ttyUSB9 -e 'local p = require(\"athost\").port() print(p)'")
    t.eq(code, 3, "exit code")
    t.match(err, "/nonexistent/ttyUSB9", "the message names the port")
    -- a script that never asks for the port does not fail on it
    code = athost_cmd(dir, "-p /nonexistent/ttyUSB9 -e 'return true'")
    t.eq(code, 0, "port not used")
  end)
end)

t.test("athost.port() without -p raises (exit 1)", function()
  in_tmpdir(function(dir)
    local code, _, err = athost_cmd(dir, "-e 'require(\"athost\").port()'")
    t.eq(code, 1, "exit code")
    t.match(err, "%-p", "the message says how to give a port")
  end)
end)

-- ---- -e and parameters ---------------------------------------------------------

t.test("-e runs a chunk: the HMAC vector", function()
  in_tmpdir(function(dir)
    local code, out = athost_cmd(dir, "-e 'local athost = require(\"athost\") "
      .. "print(athost.hmac(\"md5\", \"mRMyB50qafv74A5FofvhxZ2h9iTL9wX7\", "
      .. "\"clientId862991419835241deviceName862991419835241productKeyb1KCi45LcCP\"))'")
    t.eq(code, 0, "exit code")
    t.eq(out, "70e7bb641d7566ad26a305dd20e8e261\n", "hmac")
  end)
end)

t.test("key=value arguments reach the script", function()
  in_tmpdir(function(dir)
    write(dir .. "/args.lua", [[
local args = ...
local athost = require("athost")
assert(athost.params() == args, "athost.params() is the argument table")
print(args.product_key, args.url, args.empty == "" and "<empty>" or args.empty)
print(arg[0], arg[1])
]])
    local code, out, err = athost_cmd(dir, dir .. "/args.lua product_key=a1B2c3 "
      .. "'url=http://x/?a=b&c=d' empty=")
    t.eq(code, 0, "exit code (" .. err .. ")")
    local l = lines(out)
    t.eq(l[1], "a1B2c3\thttp://x/?a=b&c=d\t<empty>", "values (split at the first =)")
    t.eq(l[2], dir .. "/args.lua\tproduct_key=a1B2c3", "arg table")
    code, out = athost_cmd(dir, "-e 'local a = ... print(a.x)' x=42")
    t.eq(code, 0, "-e exit code")
    t.eq(out, "42\n", "-e arguments")
  end)
end)

t.test("--config JSON is merged; key=value wins", function()
  in_tmpdir(function(dir)
    write(dir .. "/c.json", '{"product_key":"fromjson","region":"cn-shanghai","keepalive":60}')
    write(dir .. "/show.lua", [[
local a = ...
print(a.product_key, a.region, a.keepalive == 60)
]])
    local code, out, err = athost_cmd(dir, "--config " .. dir .. "/c.json "
      .. dir .. "/show.lua product_key=fromarg")
    t.eq(code, 0, "exit code (" .. err .. ")")
    t.eq(out, "fromarg\tcn-shanghai\ttrue\n", "merged parameters")
    write(dir .. "/bad.json", "{not json")
    code, _, err = athost_cmd(dir, "--config " .. dir .. "/bad.json " .. dir .. "/show.lua")
    t.eq(code, 2, "a config that is not JSON")
    t.match(err, "bad%.json", "message")
    code = athost_cmd(dir, "--config " .. dir .. "/none.json " .. dir .. "/show.lua")
    t.eq(code, 2, "a config that does not exist")
  end)
end)

-- ---- --json ----------------------------------------------------------------------

t.test("--json: one JSON object a line: steps, logs, data, result", function()
  in_tmpdir(function(dir)
    write(dir .. "/j.lua", [[
local athost = require("athost")
athost.step("attach")
athost.log("IMEI", "862991419835241")
athost.step("connect")
athost.emit("message", { topic = "/a/b", n = 1 })
]])
    local code, out = athost_cmd(dir, "--json " .. dir .. "/j.lua")
    t.eq(code, 0, "exit code")
    local ev = {}
    for _, l in ipairs(lines(out)) do
      local ok, obj = pcall(athost.json.decode, l)
      t.ok(ok and type(obj) == "table", "not a JSON object: " .. l)
      t.eq(type(obj.t), "number", "t in " .. l)
      ev[#ev + 1] = obj
    end
    local seq = {}
    for _, e in ipairs(ev) do
      seq[#seq + 1] = e.event .. (e.state and ("/" .. e.state) or "")
        .. (e.name and (":" .. e.name) or "")
    end
    t.deepeq(seq, { "step/start:attach", "log", "step/end:attach", "step/start:connect",
      "data:message", "step/end:connect", "result" }, "events")
    t.eq(ev[2].text, "IMEI 862991419835241", "log text")
    t.eq(ev[3].ok, true, "step end ok")
    t.eq(type(ev[3].ms), "number", "step end ms")
    t.deepeq(ev[5].data, { topic = "/a/b", n = 1 }, "data")
    t.eq(ev[7].ok, true, "result ok")
    t.eq(ev[7].code, 0, "result code")
  end)
end)

t.test("--json: a failure is a step end and a result with the error", function()
  in_tmpdir(function(dir)
    write(dir .. "/f.lua", [[
local athost = require("athost")
athost.step("attach")
error("no network", 0)
]])
    local code, out = athost_cmd(dir, "--json " .. dir .. "/f.lua")
    t.eq(code, 1, "exit code")
    local l = lines(out)
    local last = athost.json.decode(l[#l])
    t.eq(last.event, "result", "last event")
    t.eq(last.ok, false, "ok")
    t.eq(last.code, 1, "code")
    t.match(last.error, 'step "attach" failed: no network', "error")
    local endev = athost.json.decode(l[#l - 1])
    t.eq(endev.event, "step", "step end")
    t.eq(endev.state, "end", "state")
    t.eq(endev.ok, false, "step end ok")
  end)
end)

-- ---- secrets -----------------------------------------------------------------------

t.test("a product_secret argument never shows in --json output or the transcript", function()
  in_tmpdir(function(dir)
    local secret = "Pr0dS3cretVWII9f"
    write(dir .. "/s.lua", [[
local athost = require("athost")
local args = ...
local m, path = assert(athost.pty { name = "modem" })
local p = assert(athost.open(path, { name = "dut" }))
athost.log("signing with", args.product_secret)
athost.emit("auth", { secret = args.product_secret })
local modem = athost.spawn(function()
  local line = assert(m:readline())
  assert(m:send("\r\n+ECHO: " .. line .. "\r\n\r\nOK\r\n"))
end)
local r = assert(p:cmd("AT+AUTH=\"" .. args.product_secret .. "\""))
assert(r.lines[1]:find(args.product_secret, 1, true), "the script sees it")
modem:join()
athost.step("fail")
error("rejected " .. args.product_secret, 0)
]])
    local log = dir .. "/tr.log"
    local code, out, err = athost_cmd(dir, "--json -l " .. log .. " " .. dir
      .. "/s.lua product_secret=" .. secret)
    t.eq(code, 1, "exit code (" .. err .. ")")
    local tr = t.slurp(log) or ""
    t.nomatch(out, secret, "--json output")
    t.nomatch(err, secret, "stderr")
    t.nomatch(tr, secret, "transcript")
    t.match(out, "signing with %*%*%*", "the log, masked")
    t.match(out, '"rejected %*%*%*"', "the result's error, masked")
    t.match(tr, 'dut > AT%+AUTH="%*%*%*"\\r', "sent, masked")
    t.match(tr, 'dut < \\r\\n%+ECHO: AT%+AUTH="%*%*%*"\\r\\n', "received, masked")
    for _, l in ipairs(lines(out)) do
      t.ok(pcall(athost.json.decode, l), "not JSON: " .. l)
    end
  end)
end)

-- ---- parameters from files and the environment ------------------------------------

-- A script that prints its parameters a, b and password (masked when
-- registered as a secret: the log line shows ***).
local SHOW = [[
local athost = require("athost")
local args = ...
print("a=" .. tostring(args.a), "b=" .. tostring(args.b))
athost.log("password is " .. tostring(args.password))
]]

t.test("name=@FILE reads the value from FILE, @@ escapes an @, a missing file exits 2", function()
  in_tmpdir(function(dir)
    write(dir .. "/show.lua", SHOW)
    write(dir .. "/a.txt", "from a file\n")
    write(dir .. "/pw", "Fil3S3cretQ8x\r\n")
    local code, out, err = athost_cmd(dir, dir .. "/show.lua a=@" .. dir .. "/a.txt b=@@home"
      .. " password=@" .. dir .. "/pw")
    t.eq(code, 0, "exit code (" .. err .. ")")
    t.match(out, "^a=from a file\tb=@home\n", "a from the file (line end dropped), b literal")
    t.match(err, "password is %*%*%*\n", "a secret read from a file is masked")
    t.nomatch(out .. err, "Fil3S3cret", "the secret itself")
    code, out, err = athost_cmd(dir, dir .. "/show.lua a=@" .. dir .. "/nope")
    t.eq(code, 2, "a file that cannot be read is a usage error")
    t.match(err, "^athost: parameter a=@.-/nope: cannot read .-/nope: No such file or directory\n$",
      "one line naming the parameter and the file")
  end)
end)

t.test("ATHOST_PARAM_<NAME> sets a parameter; the command line wins", function()
  in_tmpdir(function(dir)
    write(dir .. "/show.lua", SHOW)
    local code, out, err = athost_cmd(dir, "", "ATHOST_PARAM_A=from-env ATHOST_PARAM_B=env-b "
      .. "ATHOST_PARAM_PASSWORD=EnvS3cretZ9 " .. cli.BIN .. " " .. dir .. "/show.lua b=cli-b")
    t.eq(code, 0, "exit code (" .. err .. ")")
    t.match(out, "^a=from%-env\tb=cli%-b\n", "a from the environment, b from the command line")
    t.match(err, "password is %*%*%*\n", "a secret from the environment is masked")
  end)
end)

t.test("--config: a secret in it is masked; a file others may read gets a warning", function()
  in_tmpdir(function(dir)
    write(dir .. "/show.lua", SHOW)
    write(dir .. "/c.json", '{"a":"cfg","password":"CfgS3cretW7"}')
    os.execute("chmod 644 " .. dir .. "/c.json")
    local code, out, err = athost_cmd(dir, "--config " .. dir .. "/c.json " .. dir .. "/show.lua")
    t.eq(code, 0, "exit code (" .. err .. ")")
    t.match(out, "^a=cfg\t", "a from the config")
    t.match(err, "password is %*%*%*\n", "masked")
    t.nomatch(out .. err, "CfgS3cret", "the secret itself")
    t.match(err, "athost: warning: .-/c%.json holds password and others may read it %(mode 0644%): "
      .. "chmod 600 ", "the warning")
    os.execute("chmod 600 " .. dir .. "/c.json")
    code, out, err = athost_cmd(dir, "--config " .. dir .. "/c.json " .. dir .. "/show.lua")
    t.eq(code, 0, "exit code")
    t.nomatch(err, "warning", "no warning for a private file")
  end)
end)

t.test("flow usage errors exit 2 and name the near miss; -i without a port 2; unknown sim model 3", function()
  in_tmpdir(function(dir)
    local flow = cli.ROOT .. "/clouds/aliyun.lua"
    local code, _, err = athost_cmd(dir, flow .. " prodcut_key=a1")
    t.eq(code, 2, "an unknown parameter")
    t.match(err, "^athost: unknown parameter prodcut_key=%.%.%. %(did you mean product_key=%?%); usage: ",
      "did you mean")
    code, _, err = athost_cmd(dir, flow .. " product_key=a1")
    t.eq(code, 2, "neither secret")
    t.match(err, "^athost: give product_secret=", "message")
    code, _, err = athost_cmd(dir, cli.ROOT .. "/clouds/mqtt.lua host=h")
    t.eq(code, 2, "a missing parameter")
    t.match(err, "^athost: missing parameter client_id; usage: ", "message")
    code, _, err = athost_cmd(dir, cli.ROOT .. "/clouds/mqtt.lua host=h client_id=c tls=sever")
    t.eq(code, 2, "a bad value")
    code, _, err = athost_cmd(dir, "-p sim:air720 " .. flow .. " product_key=a1 device_secret=x profile=ec9999")
    t.eq(code, 2, "an unknown profile")
    t.match(err, 'unknown module profile "ec9999" %(known: ec200u, air780e, ', "message")
    code, _, err = athost_cmd(dir, "-i </dev/null")
    t.eq(code, 2, "-i without a port")
    t.match(err, "^athost: %-i needs a port", "message")
    code, _, err = athost_cmd(dir, "-p sim:bogus -e 'require(\"athost\").port()'")
    t.eq(code, 3, "an unknown virtual modem is a port that cannot be opened")
    t.match(err, "^athost: sim: unknown model 'bogus' %(known: ", "message")
    t.nomatch(err, "%.lua:%d", "no Lua file position")
  end)
end)

t.test("a privateKey field in JSON the module prints is masked in the transcript", function()
  in_tmpdir(function(dir)
    write(dir .. "/s.lua", [=[
local athost = require("athost")
local m, path = assert(athost.pty { name = "modem" })
local p = assert(athost.open(path, { name = "dut" }))
local body = '{"certificateId":"abc","privateKey":"-----BEGIN RSA PRIVATE KEY-----\\nMIIEpAIBAAKCAQEA7xK3\\n-----END RSA PRIVATE KEY-----\\n"}'
local modem = athost.spawn(function()
  assert(m:readline())
  assert(m:send("\r\n+MSUB: \"t\"," .. #body .. " byte," .. body .. "\r\n\r\nOK\r\n"))
end)
assert(p:cmd("AT+X"))
modem:join()
]=])
    local code, _, err = athost_cmd(dir, "-l " .. dir .. "/tr " .. dir .. "/s.lua")
    t.eq(code, 0, "exit code (" .. err .. ")")
    local tr = t.slurp(dir .. "/tr") or ""
    t.match(tr, 'privateKey[^,]-%*%*%*', "the field masked")
    t.nomatch(tr, "MIIEpAIBAAKCAQEA7xK3", "the key")
    t.match(tr, "certificateId", "the rest kept")
  end)
end)


-- ---- what a flow hands the host may not abort it -----------------------------

-- Runs `athost -e CHUNK`; returns the exit code, stdout and stderr.
local function chunk(dir, src)
  return athost_cmd(dir, "-e '" .. src:gsub("'", "'\\''") .. "'")
end

t.test("a task table with raising metamethods or a bad joiners list does not abort the run", function()
  in_tmpdir(function(dir)
    -- The scheduler reads and writes a task's fields (step, done, ok,
    -- results, joiners) between resumes: a metamethod raising there once
    -- aborted the host (PANIC), a joiners entry that is no flow crashed it.
    local head = 'local t = athost.spawn(function() athost.sleep(1) return 7 end) '
    for _, c in ipairs({
      { "__index on the task",
        'setmetatable(t, {__index = function() error("boom") end})' },
      { "__newindex on the task",
        'setmetatable(t, {__newindex = function() error("boom") end})' },
      { "__index on every task (their shared metatable)",
        'athost.step("s") getmetatable(t).__index = function() error("boom") end' },
      { "joiners that are no flows", 't.joiners = {1, "x", coroutine.create(print)}' },
    }) do
      local code, out, err = chunk(dir, head .. c[2] .. ' athost.sleep(20) print("done", rawget(t, "ok"))')
      t.eq(code, 0, c[1] .. ": exit code (stderr: " .. err .. ")")
      t.eq(out, "done\ttrue\n", c[1] .. ": the flow went on")
      t.ok(not err:find("PANIC", 1, true), c[1] .. ": no abort")
    end
    -- A signal's message names the main flow's step, read the same way
    -- (here it has none: the lookup misses).
    local code, _, err = chunk(dir, 'getmetatable(athost.spawn(print)).__index = '
      .. 'function() error("boom") end athost.timer(1, function() os.execute("kill -TERM " .. '
      .. 'io.open("/proc/self/stat"):read("n")) end) athost.sleep(60000)')
    t.eq(code, 4, "SIGTERM: exit 4 (stderr: " .. err .. ")")
    t.match(err, "athost: canceled %(SIGTERM%)\n", "SIGTERM: the message")
    t.ok(not err:find("PANIC", 1, true), "SIGTERM: no abort")
  end)
end)

t.test("athost.connect to a name: bad options are the flow's error (exit 1), not an abort", function()
  in_tmpdir(function(dir)
    -- A name is looked up in libuv's thread pool; the options were read
    -- in the lookup's callback, outside the flow, where a bad one aborted
    -- the host (PANIC). Now they are read before the lookup.
    local l = 'local l = assert(athost.listen("127.0.0.1", 0)) '
    for _, c in ipairs({
      { '{timeout = "soon"}', "number expected, got string" },
      { '{eol = ("x"):rep(40)}', "eol is too long" },
      { 'setmetatable({}, {__index = function(_, k) error("no " .. k, 0) end})', "no eol" },
    }) do
      for _, open in ipairs({ 'athost.connect("localhost", l.port, %s)',
                              'athost.open("tcp:localhost:" .. l.port, %s)' }) do
        local src = l .. open:format(c[1])
        local code, _, err = chunk(dir, src)
        t.eq(code, 1, src .. ": exit code (stderr: " .. err .. ")")
        t.ok(err:find(c[2], 1, true), src .. ": message: " .. err)
        t.ok(not err:find("PANIC", 1, true), src .. ": no abort")
      end
    end
    -- Good options still reach the port opened through a lookup.
    local code, out, err = chunk(dir, l .. 'local s = athost.spawn(function() local c = assert(l:accept{timeout = 5000}) '
      .. 'print(c:readline()) c:close() end) local p = assert(athost.connect("localhost", l.port, {eol = "!\\n"})) '
      .. 'assert(p:sendline("hi")) s:join()')
    t.eq(code, 0, "good options: exit code (stderr: " .. err .. ")")
    t.eq(out, "hi!\n", "the eol given was used")
  end)
end)

t.test("a huge error message with little memory left: exit 1, not an abort", function()
  -- The message is copied (and a step's failure built from it) after the
  -- flow ended, between resumes: out of memory there aborted the host
  -- (PANIC). Under AddressSanitizer a limit on address space cannot work.
  if BIN:find("/asan/", 1, true) then return end
  in_tmpdir(function(dir)
    local code, out, err = athost_cmd(dir, nil, "ulimit -v 450000; " .. BIN
      .. " -e 'error(string.rep(\"x\", 200000000))'")
    t.eq(code, 1, "exit code (stderr: " .. err:sub(1, 300) .. ")")
    t.eq(out, "", "stdout")
    t.match(err, "^athost: [^\n]*not enough memory\n$", "the message")
  end)
end)

t.run()
