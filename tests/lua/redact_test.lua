-- Secrets masked as a property of each port's stream: a secret split over
-- two sends, a 12 KiB private key sent in 1 KiB pieces (as
-- lib/athost/upload.lua sends big files) and a key the module sends back
-- in pieces never show in the -l transcript, the --json output or the
-- error a script gets; what is held back is written within a moment, so
-- the transcript stays live. Each case runs athost as a user does, with a
-- fake module on a pty in the same script.
local t = require("t")
local athost = require("athost")
local cli = require("cli")

local SECRET = "TOPSECRETabcdef1234567890"

-- The fake module and the device under test, shared by the scripts:
-- modem(fn) runs fn(m) as the module's flow; wait_for(cond) polls a
-- condition another flow sets, with a deadline.
local PRELUDE = [[
local athost = require("athost")
local args = ...
local m, path = assert(athost.pty { name = "modem" })
local p = assert(athost.open(path, { name = "dut", timeout = 5000 }))
local function wait_for(what, cond)
  local deadline = athost.now() + 5000
  while not cond() do
    assert(athost.now() < deadline, "timed out waiting for " .. what)
    athost.sleep(5)
  end
end
-- the module reads n bytes whatever pieces they come in
local function take(n)
  local got = ""
  while #got < n do got = got .. assert(m:recv(65536, { timeout = 5000 })) end
  return got
end
local function slurp(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read("a")
  f:close()
  return s
end
]]

-- Runs script in a fresh directory with -l and --json; returns the exit
-- code, the transcript, stdout and stderr.
local function run(script, extra)
  local code, tr, out, err
  cli.in_tmpdir(function(dir)
    cli.write(dir .. "/s.lua", PRELUDE .. script)
    code, out, err = cli.athost(dir, string.format("-l %s/t.log --json %s/s.lua log=%s/t.log %s",
      dir, dir, dir, extra or ""))
    tr = t.slurp(dir .. "/t.log") or ""
  end)
  return code, tr, out, err
end

-- No w-byte window of secret in any of the outputs.
local function absent(secret, w, outputs)
  for name, s in pairs(outputs) do
    local found
    for i = 1, #secret - w + 1 do
      if s:find(secret:sub(i, i + w - 1), 1, true) then
        found = i
        break
      end
    end
    t.ok(not found, string.format("the %d bytes of the secret at %s in %s",
      w, tostring(found), name))
  end
end

t.test("a secret split over two sends: masked in the transcript, --json and the error", function()
  local code, tr, out, err = run([[
local SECRET = "]] .. SECRET .. [["
athost.secret(SECRET)
local read1 = false
local modem = athost.spawn(function()
  local got = take(#SECRET + 9)
  -- echoed in two pieces, the second once the first was read, then a long
  -- error: what the port said last starts inside the secret
  assert(m:send(got:sub(1, 18)))
  wait_for("the first piece read", function() return read1 end)
  assert(m:send(got:sub(19) .. "\r\n+CME ERROR: " .. ("x"):rep(70) .. "\r\n"))
end)
assert(p:send('AT+KEY="TOPSECRETa'))
-- what is held back is written within a moment (as *** : a secret's start)
wait_for("the held bytes in the transcript", function()
  return slurp(args.log):find("dut > ***", 1, true) ~= nil
end)
assert(p:send('bcdef1234567890"\r'))
assert(p:read(18))
read1 = true
local _, e = p:expect("^NEVER", { timeout = 500 })
modem:join()
athost.log("said: " .. tostring(e))
error("the module refused the key: " .. tostring(e), 0)
]])
  t.eq(code, 1, "exit code (stderr: " .. err .. ")")
  absent(SECRET, 8, { transcript = tr, ["--json output"] = out, stderr = err })
  t.match(tr, 'dut > AT%+KEY="\n', "the command's start, then a record for the held part")
  t.match(out, '"event":"result"[^\n]*last said [^\n]*%+CME ERROR', "the error names what the port said")
  t.match(tr, "dut < [^\n]*%*%*%*", "the echo masked")
end)

-- A PEM private key of 12 KiB: base64 lines of 64 characters.
local function key()
  local b = athost.base64(athost.random(9400))
  local lines = { "-----BEGIN PRIVATE KEY-----" }
  for i = 1, #b, 64 do lines[#lines + 1] = b:sub(i, i + 63) end
  lines[#lines + 1] = "-----END PRIVATE KEY-----"
  return table.concat(lines, "\n") .. "\n"
end

t.test("a 12 KiB key sent in 1 KiB pieces: no 12-byte window of it anywhere", function()
  local k = key()
  t.ok(#k > 12 * 1024, "the key is over 12 KiB")
  local code, tr, out, err = run([[
local KEY = ]] .. string.format("%q", k) .. [[
athost.secret(KEY)
local modem = athost.spawn(function()
  assert(take(#KEY) == KEY, "the module got the key")
  assert(m:send("\r\nOK\r\n"))
end)
for i = 1, #KEY, 1024 do assert(p:send(KEY:sub(i, i + 1023))) end
assert(p:expect("^OK$"))
modem:join()
error("done", 0)
]])
  t.eq(code, 1, "exit code (stderr: " .. err .. ")")
  t.ok(#tr > 0 and tr:find("dut > ***", 1, true), "the key's records are ***")
  absent(k, 12, { transcript = tr, ["--json output"] = out, stderr = err })
end)

t.test("a key the module sends back in 1 KiB reads: not in the transcript or the error", function()
  local k = key()
  local code, tr, out, err = run([[
local KEY = ]] .. string.format("%q", k) .. [[
athost.secret(KEY)
local have = 0
local modem = athost.spawn(function()
  for i = 1, #KEY, 1024 do
    assert(m:send(KEY:sub(i, i + 1023)))
    -- the next piece once this one was read: one read each
    wait_for("piece " .. i, function() return have >= math.min(i + 1023, #KEY) end)
  end
end)
while have < #KEY do
  local s = assert(p:read(math.min(1024, #KEY - have)))
  have = have + #s
end
modem:join()
local _, e = p:expect("^NEVER", { timeout = 300 })
error("no answer after the key: " .. tostring(e), 0)
]])
  t.eq(code, 1, "exit code (stderr: " .. err .. ")")
  t.match(out, '"event":"result"[^\n]*last said[^\n]*%*%*%*', "the error says what the port said, masked")
  t.ok(tr:find("dut < ***", 1, true), "the received key is ***")
  absent(k, 12, { transcript = tr, ["--json output"] = out, stderr = err })
end)

t.run()
