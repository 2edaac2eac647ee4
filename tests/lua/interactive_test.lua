-- athost -i: a terminal on the port, driven through a pipe as a user's
-- keystrokes would be.
local t = require("t")
local bin = os.getenv("ATHOST_BIN") or "./athost"

local function session(input, extra)
  local dir = t.tmpdir()
  local inp = dir .. "/in"
  local f = assert(io.open(inp, "w"))
  f:write(input)
  f:close()
  local cmd = string.format("%s -i -p 'sim:air720?imei=862991419835241' %s < %s 2>%s/err",
    bin, extra or "", inp, dir)
  local p = assert(io.popen(cmd))
  local out = p:read("a")
  local ok, _, code = p:close()
  return out, t.slurp(dir .. "/err"), ok and 0 or code
end

t.test("typed AT commands are sent and the replies shown as they arrive", function()
  local out, err, code = session("AT\nATE0\nAT+CGMR\nAT+CGSN\n")
  t.eq(code, 0, "exit code")
  t.match(out, "OK\n", "OK shown")
  t.match(out, "AirM2M_720_V461_LTE_AT", "AT+CGMR's answer shown")
  t.match(out, "862991419835241", "AT+CGSN's answer shown")
  t.match(err, "type AT commands", "a greeting on stderr")
end)

t.test("a line starting with ! runs as Lua with port and athost in scope", function()
  local out, _, code = session('!athost.hmac("md5", "mRMyB50qafv74A5FofvhxZ2h9iTL9wX7", '
    .. '"clientId862991419835241deviceName862991419835241productKeyb1KCi45LcCP")\n'
    .. "!port.name\n!nosuchfunction()\n")
  t.eq(code, 0, "exit code")
  t.match(out, "70e7bb641d7566ad26a305dd20e8e261", "the HMAC printed")
  t.match(out, "lua: .*nosuchfunction", "a Lua error is shown, the session goes on")
end)

t.test("an unknown command shows the module's ERROR", function()
  local out = session("AT\nAT+NOSUCH\n")
  t.match(out, "ERROR", "ERROR shown")
end)

t.test("input from a pipe works like typing", function()
  local p = assert(io.popen(string.format(
    "printf 'AT\\nAT+CGMR\\n' | %s -i -p sim:air720 2>/dev/null", bin)))
  local out = p:read("a")
  t.ok(p:close(), "exit code 0")
  t.match(out, "AirM2M_720_V461_LTE_AT", "AT+CGMR's answer shown")
end)

t.run()
