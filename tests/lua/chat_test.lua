-- The chat engine end to end, through real ptys: a fake modem written in
-- Lua answers on the pty master (a flow reading commands with readline and
-- answering with send), and the test opens the slave path with athost.open
-- as a script opens /dev/ttyUSB0.
local t = require("t")
local athost = require("athost")

local BIN = os.getenv("ATHOST_BIN") or (arg and arg[-1]) or "./athost"

-- A fake modem on a pty (tests/lib/ptymodem.lua).
local fake = require("ptymodem").fake

-- The modem reads one command; checks it if want is given; answers.
local function answer(m, want, reply)
  local line = assert(m:readline())
  if want and line ~= want then
    error(string.format("modem got %q, want %q", line, want), 2)
  end
  if reply then assert(m:send(reply)) end
  return line
end

local function plain_find(s, what, label)
  if type(s) ~= "string" or not s:find(what, 1, true) then
    error(string.format("%s: %q does not contain %q", label or "string",
      tostring(s), what), 2)
  end
end

-- 1 MiB that differs at every 256-byte block, with every byte value.
local function mebibyte()
  local block = {}
  for i = 0, 251 do block[#block + 1] = string.char((i * 7 + 13) % 256) end
  block = table.concat(block)
  local parts = {}
  for i = 0, 4095 do parts[#parts + 1] = string.pack(">I4", i) .. block end
  return table.concat(parts)
end

-- ---- replies and URCs -------------------------------------------------------

t.test("a URC that comes with the final OK is handled before the command returns", function()
  local p, finish = fake(function(m)
    answer(m, "AT+MPUB=\"t\",0,0,\"x\"", "\r\nOK\r\n\r\nCLOSED\r\n")
  end)
  local lost = false
  p:on("CLOSED", function() lost = true end)
  assert(p:cmd('AT+MPUB="t",0,0,"x"'))
  t.ok(lost, "the CLOSED handler ran before the flow went on")
  finish()
end)

t.test("reply and OK: r.final, r.lines, r.command, r.ms", function()
  local p, finish = fake(function(m)
    answer(m, "AT+CGATT?", "\r\n+CGATT: 1\r\n\r\nOK\r\n")
  end)
  local r = assert(p:cmd("AT+CGATT?"))
  t.eq(r.final, "OK", "final")
  t.deepeq(r.lines, { "+CGATT: 1" }, "lines")
  t.eq(r.line, "+CGATT: 1", "line: the reply prefix matched")
  t.eq(r.command, "AT+CGATT?", "command")
  t.eq(type(r.ms), "number", "ms")
  finish()
end)

t.test("options of timeout, progress and reply only act as in any other options", function()
  local p, finish = fake(function(m)
    answer(m, "AT+CGATT?", "\r\n+CREG: 1\r\n+CGATT: 1\r\n\r\nOK\r\n")
    answer(m, "AT+CGATT?", "\r\n+CREG: 1\r\n+CGATT: 1\r\n\r\nOK\r\n")
    answer(m, "AT+CGMR", "\r\nR1.0\r\n\r\nOK\r\n")
    answer(m, "AT+CGMR", "\r\nR1.0\r\n\r\nOK\r\n")
  end)
  local r = assert(p:cmd("AT+CGATT?", { timeout = 2000 }))
  t.eq(r.line, "+CGATT: 1", "timeout only: the reply prefix still picks the line")
  r = assert(p:cmd("AT+CGATT?", { timeout = 2000, progress = false, eol = "\r" }))
  t.eq(r.line, "+CGATT: 1", "with another option too")
  local a = assert(p:cmd("AT+CGMR", { timeout = 2000, reply = false }))
  local b = assert(p:cmd("AT+CGMR", { timeout = 2000, reply = false, echo_check = true }))
  t.deepeq(a.lines, { "R1.0" }, "reply = false: the bare line")
  t.eq(a.line, b.line, "reply = false: r.line as with other options beside it")
  finish()
end)

t.test("a URC between a command and its reply goes to its handler", function()
  local urcs = {}
  local p, finish = fake(function(m)
    answer(m, "AT+CGATT?", "\r\n+CREG: 1,\"1A2B\",\"0C3D\"\r\n")
    athost.sleep(20)
    assert(m:send("\r\n+CGATT: 1\r\n"))
    athost.sleep(20)
    assert(m:send("\r\n+PDP DEACT\r\n\r\nOK\r\n"))
  end)
  p:on("^%+CREG: (%d)", function(u) urcs[#urcs + 1] = u.line .. "|" .. u[1] end)
  p:on("+PDP DEACT", function(u) urcs[#urcs + 1] = u.line end)
  local r = assert(p:cmd("AT+CGATT?"))
  t.eq(r.final, "OK", "final")
  t.deepeq(r.lines, { "+CGATT: 1" }, "the URCs are not reply lines")
  t.deepeq(urcs, { "+CREG: 1,\"1A2B\",\"0C3D\"|1", "+PDP DEACT" }, "URCs")
  finish()
end)

t.test("a URC handler is a flow: it may send commands itself", function()
  local seen
  local p, finish = fake(function(m)
    assert(m:send("\r\n+CMTI: \"SM\",3\r\n"))
    answer(m, "AT+CMGR=3", "\r\n+CMGR: \"REC UNREAD\"\r\nhello\r\n\r\nOK\r\n")
    answer(m, "AT+DONE")
  end)
  p:on("^%+CMTI: \"SM\",(%d+)", function(u)
    local r = assert(p:cmd("AT+CMGR=" .. u[1]))
    seen = r.lines
    assert(p:sendline("AT+DONE"))
  end)
  finish()      -- the modem ends when the handler said AT+DONE
  t.deepeq(seen, { "+CMGR: \"REC UNREAD\"", "hello" }, "the handler's reply")
end)

t.test("a reply sharing a URC's prefix is the command's; later, the URC's", function()
  local urcs = {}
  local p, finish = fake(function(m)
    answer(m, "AT+CGREG?", "\r\n+CGREG: 0,1\r\n\r\nOK\r\n")
    answer(m, "AT+CSQ", "\r\n+CGREG: 5\r\n\r\n+CSQ: 31,99\r\n\r\nOK\r\n")
  end)
  p:on("+CGREG:", function(u) urcs[#urcs + 1] = u.line end)
  local r = assert(p:cmd("AT+CGREG?"))
  t.deepeq(r.lines, { "+CGREG: 0,1" }, "AT+CGREG? reply")
  t.deepeq(urcs, {}, "no URC for the reply")
  r = assert(p:cmd("AT+CSQ"))
  t.deepeq(r.lines, { "+CSQ: 31,99" }, "AT+CSQ reply")
  t.deepeq(urcs, { "+CGREG: 5" }, "URC while another command runs")
  finish()
end)

t.test("a reply delivered one byte at a time", function()
  local p, finish = fake(function(m)
    answer(m, "AT+CGATT?")
    for c in ("AT+CGATT?\r\r\n+CGATT: 1\r\n\r\nOK\r\n"):gmatch(".") do
      assert(m:send(c))
      athost.sleep(2)
    end
  end)
  local r = assert(p:cmd("AT+CGATT?", { reply = "^%+CGATT: (%d)" }))
  t.eq(r.final, "OK", "final")
  t.deepeq(r.lines, { "+CGATT: 1" }, "lines (the echo skipped)")
  t.eq(r[1], "1", "capture")
  finish()
end)

t.test("echo (ATE1) is skipped", function()
  local p, finish = fake(function(m)
    answer(m, "AT+CGMR", "AT+CGMR\r\r\nAir720_V1.2\r\n\r\nOK\r\n")
  end)
  local r = assert(p:cmd("AT+CGMR"))
  t.deepeq(r.lines, { "Air720_V1.2" }, "lines")
  finish()
end)

t.test("r.lines, r.line and captures with a reply pattern", function()
  local p, finish = fake(function(m)
    answer(m, "AT+CSQ", "\r\n+CSQ: 31,99\r\n+CSQ: 20,0\r\n\r\nOK\r\n")
    answer(m, "AT+COPS?", "\r\n+COPS: 0,0,\"CHINA MOBILE\",7\r\n\r\nOK\r\n")
    answer(m, "AT+CIMI", "\r\n460001234567890\r\n\r\nOK\r\n")
  end)
  local r = assert(p:cmd("AT+CSQ", { reply = "^%+CSQ: (%d+),(%d+)" }))
  t.deepeq(r.lines, { "+CSQ: 31,99", "+CSQ: 20,0" }, "lines")
  t.eq(r.line, "+CSQ: 31,99", "line: the first matched")
  t.eq(r[1], "31", "capture 1")
  t.eq(r[2], "99", "capture 2")
  r = assert(p:cmd("AT+COPS?", { reply = "^%+COPS: %d,%d,\"([^\"]*)\"" }))
  t.eq(r[1], "CHINA MOBILE", "operator")
  r = assert(p:cmd("AT+CIMI", { reply = "^(%d+)$" }))
  t.eq(r[1], "460001234567890", "IMSI")
  finish()
end)

t.test("+CME ERROR: nil, message, \"CME\", r with r.cme", function()
  local p, finish = fake(function(m)
    answer(m, "AT+SSLMIPSTART=\"iot.example.com\",8883",
      "\r\n+CME ERROR: 767\r\n")
    answer(m, "AT+CMGS=1", "\r\n+CMS ERROR: 500\r\n")
    answer(m, "AT+BOGUS", "\r\nERROR\r\n")
  end)
  local r, err, code, r2 = p:cmd("AT+SSLMIPSTART=\"iot.example.com\",8883")
  t.eq(r, nil, "no result")
  t.eq(err, "+CME ERROR: 767 at AT+SSLMIPSTART", "message")
  t.eq(code, "CME", "code")
  t.eq(r2.cme, 767, "r.cme")
  t.eq(r2.final, "+CME ERROR: 767", "r.final")
  r, err, code, r2 = p:cmd("AT+CMGS=1")
  t.eq(code, "CMS", "CMS code")
  t.eq(r2.cms, 500, "r.cms")
  t.eq(err, "+CMS ERROR: 500 at AT+CMGS", "CMS message")
  t.eq(t.fails("ERROR", p:cmd("AT+BOGUS")), "ERROR at AT+BOGUS", "ERROR")
  finish()
end)

t.test("extra final result codes", function()
  local p, finish = fake(function(m)
    answer(m, "AT+CIPSEND=5", "\r\n> ")
    assert(m:read(5))
    assert(m:send("\r\nSEND OK\r\n"))
  end)
  local r = assert(p:cmd("AT+CIPSEND=5", { prompt = ">", data = "hello",
    final = { "SEND OK", "SEND FAIL" } }))
  t.eq(r.final, "SEND OK", "final")
  finish()
end)

t.test("expect with abort", function()
  local p, finish = fake(function(m)
    answer(m, "AT+MIPSTART=\"h\",1883", "\r\nOK\r\n")
    athost.sleep(10)
    assert(m:send("\r\nCONNECT FAIL\r\n"))
    answer(m, "AT+MIPSTART=\"h\",1883", "\r\nOK\r\n\r\nALREADY CONNECT\r\n")
  end)
  assert(p:cmd("AT+MIPSTART=\"h\",1883"))
  local msg = t.fails("EABORT", p:expect({ "CONNECT OK", "ALREADY CONNECT" },
    { abort = "CONNECT FAIL", timeout = 5000 }))
  plain_find(msg, "CONNECT FAIL", "abort message")
  assert(p:cmd("AT+MIPSTART=\"h\",1883"))
  local mt = assert(p:expect({ "CONNECT OK", "ALREADY CONNECT" },
    { abort = "CONNECT FAIL" }))
  t.eq(mt.index, 2, "index")
  t.eq(mt.line, "ALREADY CONNECT", "line")
  finish()
end)

t.test("expect with abort: the abort line already there when expect starts", function()
  local p, finish = fake(function(m)
    answer(m, "AT+MIPSTART=\"h\",1883", "\r\nOK\r\n\r\nCONNECT FAIL\r\n")
    answer(m, "AT+MIPSTART=\"h\",1883", "\r\nOK\r\n\r\nCONNECT OK\r\n")
  end)
  assert(p:cmd("AT+MIPSTART=\"h\",1883"))
  local v, msg, code = p:expect({ "CONNECT OK", "ALREADY CONNECT" },
    { abort = { "CONNECT FAIL", "ERROR" } })
  t.eq(v, nil, "no match")
  t.eq(code, "EABORT", "code")
  plain_find(msg, "CONNECT FAIL", "message")
  assert(p:cmd("AT+MIPSTART=\"h\",1883"))
  local mt = assert(p:expect({ "CONNECT OK", "ALREADY CONNECT" }, { abort = "CONNECT FAIL" }))
  t.eq(mt.index, 1, "index")
  finish()
end)

t.test("cmd with abort", function()
  local p, finish = fake(function(m)
    answer(m, "ATD10086;", "\r\nNO CARRIER\r\n")
  end)
  local v, msg, code, r = p:cmd("ATD10086;", { abort = { "NO CARRIER", "BUSY" } })
  t.eq(v, nil, "no result")
  t.eq(code, "EABORT", "code")
  plain_find(msg, "NO CARRIER", "message")
  t.eq(type(r), "table", "r")
  finish()
end)

-- ---- prompts --------------------------------------------------------------

local PEM = "-----BEGIN CERTIFICATE-----\n"
  .. string.rep("MIIDdzCCAl+gAwIBAgIEAgAAuTANBgkqhkiG9w0BAQUFADBaMQswCQYDVQQGEwJJ\n", 21)
  .. "> OK\r\nERROR\n"
  .. "-----END CERTIFICATE-----\n"

t.test("a > prompt without CR/LF: the data, exactly, then OK", function()
  local n = #PEM
  local cmd = "AT+FSWRITE=\"ca.crt\",0," .. n .. ",15"
  local p, finish = fake(function(m)
    answer(m, cmd, "\r\n> ")
    local data = assert(m:read(n))
    assert(m:send("\r\nOK\r\n"))
    -- whatever the host sent after the data is in front of the next command
    local next_cmd = assert(m:read(#"AT+CHECK\r"))
    assert(m:send("\r\nOK\r\n"))
    return data, next_cmd
  end)
  local r = assert(p:cmd(cmd, { prompt = ">", data = PEM }))
  t.eq(r.final, "OK", "final")
  t.deepeq(r.lines, {}, "no reply lines (the prompt's space is no line)")
  assert(p:cmd("AT+CHECK"))
  local data, next_cmd = finish()
  t.eq(data, PEM, "the modem received exactly the data")
  t.eq(next_cmd, "AT+CHECK\r", "nothing after the data")
end)

t.test("a prompt split from its space, and > without a space", function()
  local p, finish = fake(function(m)
    answer(m, "AT+MPUBEX=\"t\",0,0,3")
    assert(m:send("\r\n>"))
    athost.sleep(20)
    assert(m:send(" "))
    assert(m:read(3))
    assert(m:send("\r\nOK\r\n"))
    answer(m, "AT+MPUBEX=\"t\",0,0,2", "\r\n>")
    assert(m:read(2))
    assert(m:send("\r\nOK\r\n"))
  end)
  local r = assert(p:cmd("AT+MPUBEX=\"t\",0,0,3", { prompt = ">", data = "abc" }))
  t.deepeq(r.lines, {}, "no stray blank line")
  r = assert(p:cmd("AT+MPUBEX=\"t\",0,0,2", { prompt = ">", data = "de" }))
  t.eq(r.final, "OK", "final")
  finish()
end)

t.test("p:prompt, send, p:final", function()
  local p, finish = fake(function(m)
    answer(m, "AT+FSWRITE=\"a\",0,4,15", "\r\n> ")
    local d = assert(m:read(4))
    assert(m:send("\r\nOK\r\n"))
    return d
  end)
  assert(p:sendline("AT+FSWRITE=\"a\",0,4,15"))
  local mt = assert(p:prompt(">"))
  t.eq(mt.line, ">", "prompt line")
  assert(p:send("\0\r\n>"))
  local r = assert(p:final())
  t.eq(r.final, "OK", "final")
  t.deepeq(r.lines, {}, "no lines")
  t.eq(finish(), "\0\r\n>", "data")
end)

t.test("cmd without data ends at the prompt; DOWNLOAD is a line prompt", function()
  local p, finish = fake(function(m)
    answer(m, "AT+HTTPDATA=5,10000", "\r\nDOWNLOAD\r\n")
    local d = assert(m:read(5))
    assert(m:send("\r\nOK\r\n"))
    return d
  end)
  local r = assert(p:cmd("AT+HTTPDATA=5,10000", { prompt = "DOWNLOAD" }))
  t.eq(r.prompt, "DOWNLOAD", "r.prompt")
  t.eq(r.final, nil, "no final yet")
  assert(p:send("a=b&c"))
  assert(p:final())
  t.eq(finish(), "a=b&c", "data")
end)

-- ---- counted payloads and raw reads ----------------------------------------

t.test("counted payload via cmd reply {count=}", function()
  local body = "{\"deviceSecret\":\"x\"}\r\nOK\r\n+CME ERROR: 1\r\n" .. ("z"):rep(100)
  local p, finish = fake(function(m)
    answer(m, "AT+HTTPREAD", "\r\n+HTTPREAD: " .. #body .. "\r\n" .. body
      .. "\r\n\r\nOK\r\n")
  end)
  local r = assert(p:cmd("AT+HTTPREAD", { reply = { "^%+HTTPREAD: (%d+)", count = 1 } }))
  t.eq(r.payload, body, "payload")
  t.eq(r[1], tostring(#body), "count capture")
  t.deepeq(r.lines, { "+HTTPREAD: " .. #body }, "the payload is no line")
  t.eq(r.final, "OK", "final")
  finish()
end)

t.test("counted URC payload inline, split across writes", function()
  local got = {}
  local p, finish = fake(function(m)
    answer(m, "AT+MSUB=\"t\",0", "\r\nOK\r\n\r\n+MSUB: \"t\",12 byte,ab\r\n")
    athost.sleep(10)
    assert(m:send("OK\r\nxyzw\r\n"))
    answer(m, "AT", "\r\nOK\r\n")
  end)
  p:on({ "^%+MSUB: \"([^\"]*)\",(%d+) byte,", count = 2 }, function(u)
    got[#got + 1] = u[1] .. "=" .. u.payload
  end)
  assert(p:cmd("AT+MSUB=\"t\",0"))
  local r = assert(p:cmd("AT"))
  t.deepeq(r.lines, {}, "payload lines are not AT's")
  t.deepeq(got, { "t=ab\r\nOK\r\nxyzw" }, "payload")
  finish()
end)

t.test("a 1 MiB exact read", function()
  local data = mebibyte()
  local p, finish = fake(function(m)
    answer(m, "AT+READ", "\r\nOK\r\n")
    require("ptymodem").send_pieces(m, data)
  end)
  assert(p:cmd("AT+READ"))
  local got = assert(p:read(1048576, { timeout = 60000 }))
  t.eq(#got, 1048576, "length")
  t.ok(got == data, "the content differs")
  t.eq(assert(p:readline()), "OK", "what follows the read")
  finish()
end)

t.test("reads keep line ends: binary after a read is intact", function()
  local p, finish = fake(function(m)
    assert(m:send("AB\r\nCD\0\n"))
  end)
  t.eq(assert(p:read(2)), "AB", "first read")
  t.eq(assert(p:read(6)), "\r\nCD\0\n", "second read")
  finish()
end)

t.test("recv returns what is there", function()
  local p, finish = fake(function(m)
    assert(m:send("0123456789"))
  end)
  local s = assert(p:recv(100))
  t.ok(#s >= 1 and #s <= 10, "1..10 bytes, got " .. #s)
  while #s < 10 do s = s .. assert(p:recv(100)) end
  t.eq(s, "0123456789", "bytes")
  t.fails("ETIMEDOUT", p:recv(100, { timeout = 100 }))
  finish()
end)

-- ---- noise and long lines ----------------------------------------------------

t.test("garbage and NUL bytes between lines", function()
  local p, finish = fake(function(m)
    answer(m, "AT+CGATT?", "\r\n\0\0\0\r\n\xff\xfe\xf8\r\n+CGATT: 1\r\n\1\2\27[0m\r\n"
      .. "\0\r\n\r\nOK\r\n")
    answer(m, "AT+CGMR", "\0\0\r\nAir720\r\n\x7f\r\nOK\r\n")
  end)
  local r = assert(p:cmd("AT+CGATT?"))
  t.deepeq(r.lines, { "+CGATT: 1" }, "lines")
  t.eq(r.final, "OK", "final")
  r = assert(p:cmd("AT+CGMR"))
  t.deepeq(r.lines, { "Air720" }, "lines")
  finish()
end)

t.test("a 100 KiB line arrives intact", function()
  local big = {}
  for i = 1, 100 * 1024 / 16 do big[#big + 1] = string.format("%015d,", i) end
  big = table.concat(big)
  local p, finish = fake(function(m)
    answer(m, "AT+BIG", "\r\n+BIG: " .. big .. "\r\n\r\nOK\r\n")
    assert(m:send("\r\n" .. big .. "\r\n"))
  end)
  local r = assert(p:cmd("AT+BIG"))
  t.eq(#r.lines, 1, "one line")
  t.ok(r.lines[1] == "+BIG: " .. big, "the line differs")
  local line = assert(p:readline())
  t.eq(#line, #big, "readline length")
  t.ok(line == big, "the readline differs")
  finish()
end)

-- ---- backlog -----------------------------------------------------------------

t.test("lines with no wait are kept for expect; a new command drops them", function()
  local p, finish = fake(function(m)
    assert(m:send("\r\nSTALE 1\r\n\r\nCONNECT OK\r\n\r\nSTALE 2\r\n"))
    answer(m, "AT+CGATT?", "\r\n+CGATT: 1\r\n\r\nOK\r\n")
  end)
  local mt = assert(p:expect("CONNECT OK"))
  t.eq(mt.line, "CONNECT OK", "kept line")
  local r = assert(p:cmd("AT+CGATT?"))
  t.deepeq(r.lines, { "+CGATT: 1" }, "the stale line is not a reply")
  finish()
end)

-- ---- failures ----------------------------------------------------------------

t.test("timeout: nil, message naming the command and last bytes, ETIMEDOUT", function()
  local p, finish = fake(function(m)
    assert(m:send("\r\n+CGREG: 0,2\r\n"))
    answer(m, "AT+CGATT?")
  end)
  assert(p:expect("+CGREG:"))
  local r, msg, code = p:cmd("AT+CGATT?", { timeout = 200 })
  t.eq(r, nil, "no result")
  t.eq(code, "ETIMEDOUT", "code")
  t.match(msg, "^ETIMEDOUT: ", "message prefix")
  plain_find(msg, "AT+CGATT?", "message names the command")
  plain_find(msg, "\\r\\n+CGREG: 0,2\\r\\n", "message shows the last bytes")
  plain_find(msg, "dut", "message names the port")
  msg = t.fails("ETIMEDOUT", p:read(10, { timeout = 100 }))
  plain_find(msg, "of 10 bytes", "read timeout")
  msg = t.fails("ETIMEDOUT", p:expect({ "CONNECT OK" }, { timeout = 100 }))
  plain_find(msg, "CONNECT OK", "expect timeout names the pattern")
  finish()
end)

t.test("a wait's timeout counts from the call, even after a busy stretch", function()
  local p, finish = fake(function(m)
    answer(m, "AT", "\r\nOK\r\n")
  end)
  local t0 = athost.now()
  while athost.now() - t0 < 600 do end     -- the flow computes for a while
  local r = assert(p:cmd("AT", { timeout = 500 }))
  t.eq(r.final, "OK", "final")
  finish()
end)

t.test("EOF when the peer closes a TCP connection", function()
  local l = assert(athost.listen("127.0.0.1", 0))
  local server = athost.spawn(function()
    local c = assert(l:accept { timeout = 5000 })
    assert(c:send("hello\r\nbye"))
    c:close()
    l:close()
  end)
  local c = assert(athost.connect("127.0.0.1", l.port))
  t.eq(assert(c:readline()), "hello", "line before EOF")
  local msg = t.fails("EOF", c:readline())
  plain_find(msg, "closed", "EOF message")
  t.eq(c.eof, true, "p.eof")
  -- writing to a peer that went away fails (and does not kill the process)
  for _ = 1, 3 do
    local v, _, code = c:cmd("AT")
    t.eq(v, nil, "cmd after EOF")
    t.ok(code == "EOF" or code == "EIO", "EOF or EIO, got " .. tostring(code))
  end
  c:close()
  server:join()
end)

t.test("athost.connect to an address in numbers: connected without a lookup, or refused", function()
  local l = assert(athost.listen("127.0.0.1", 0))
  local port = l.port
  local server = athost.spawn(function()
    local c = assert(l:accept { timeout = 5000 })
    assert(c:send("hello\r\n"))
    c:close()
  end)
  local a = assert(athost.connect("127.0.0.1", port))
  t.eq(assert(a:readline()), "hello", "connected")
  t.eq(a.name, "tcp:127.0.0.1:" .. port, "its name")
  a:close()
  server:join()
  l:close()
  local r, err, code = athost.connect("127.0.0.1", port)
  t.eq(r, nil, "a closed port")
  t.eq(code, "ECONNREFUSED", "refused")
  plain_find(err, "127.0.0.1:" .. port, "the message names the address")
end)

t.test("a second exclusive open of a pty slave is EBUSY", function()
  local m, path = assert(athost.pty())
  local p = assert(athost.open(path))
  local q, msg, code = athost.open(path)
  t.eq(q, nil, "second open")
  t.eq(code, "EBUSY", "code")
  plain_find(msg, "busy", "message")
  p:close()
  q = assert(athost.open(path), "open after close")
  q:close()
  m:close()
end)

t.test("misuse raises", function()
  local p, finish = fake(function() end)
  t.raises(function() p:expect("^(") end, "bad pattern")
  t.raises(function() p:cmd("AT", { reply = "^%" }) end, "bad pattern")
  t.raises(function() p:on("^[a", function() end) end, "bad pattern")
  t.raises(function() p:expect() end, "pattern")
  t.raises(function() p:expect(42) end, "pattern")
  t.raises(function() p:read(-1) end, "out of range")
  t.raises(function() coroutine.wrap(function() return p:readline() end)() end,
    "flow")
  -- two flows waiting on one port: the second raises
  local second = athost.spawn(function()
    local ok, err = pcall(p.readline, p)
    p:close()
    return ok, err
  end)
  local v, _, code = p:readline { timeout = 5000 }
  t.eq(v, nil, "the first waiter's readline")
  t.eq(code, "ECLOSED", "the first waiter fails when the port closes")
  local ok, err = second:join()
  t.eq(ok, false, "the second waiter raised")
  plain_find(err, "busy", "the second waiter's error")
  -- a closed port
  t.eq(p.closed, true, "p.closed")
  t.raises(function() p:cmd("AT") end, "closed")
  t.raises(function() p:readline() end, "closed")
  t.raises(function() p:send("x") end, "closed")
  t.raises(function() p:on("RING", function() end) end, "closed")
  finish()
end)

-- ---- secrets in the transcript ------------------------------------------------

-- ---- outcomes, echo, counts ------------------------------------------------

local CONNACK = { outcome = "CONNACK OK", outcome_fail = { "CONNACK FAIL", "+CME ERROR" },
  outcome_timeout = 300 }

t.test("an outcome URC after OK: r.outcome, one operation", function()
  local p, finish = fake(function(m)
    answer(m, "AT+MCONNECT=1,60", "\r\nOK\r\n")
    athost.sleep(20)
    m:send("\r\nCONNACK OK\r\n")
  end)
  local r = assert(p:cmd("AT+MCONNECT=1,60", CONNACK))
  t.eq(r.final, "OK", "final")
  t.eq(r.outcome.line, "CONNACK OK", "outcome")
  finish()
end)

t.test("an outcome URC before OK, and between echo and OK", function()
  local p, finish = fake(function(m)
    answer(m, "AT+MCONNECT=1,60", "\r\nCONNACK OK\r\n\r\nOK\r\n")
    answer(m, "AT+CLOUDSUB=/t,0", "AT+CLOUDSUB=/t,0\r\r\n+CLOUDSUBACK: <OK>\r\n\r\nOK\r\n")
  end)
  local r = assert(p:cmd("AT+MCONNECT=1,60", CONNACK))
  t.eq(r.outcome.line, "CONNACK OK", "outcome before OK")
  r = assert(p:cmd("AT+CLOUDSUB=/t,0", { outcome = "^%+CLOUDSUBACK: ?<?(%w+)>?" }))
  t.eq(r.outcome[1], "OK", "outcome capture")
  t.deepeq(r.lines, {}, "+CLOUDSUBACK is no reply line")
  finish()
end)

t.test("a failure outcome: nil, EOUTCOME naming the line, r", function()
  local p, finish = fake(function(m)
    answer(m, "AT+MCONNECT=1,60", "\r\nOK\r\n\r\n+CME ERROR: 767\r\n")
    answer(m, "AT+MCONNECT=1,60", "\r\n+CME ERROR: 3\r\n")
  end)
  local r, err, code, r2 = p:cmd("AT+MCONNECT=1,60", CONNACK)
  t.eq(r, nil, "no result")
  t.eq(code, "EOUTCOME", "code")
  plain_find(err, 'AT+MCONNECT failed: the module said "+CME ERROR: 767"', "message")
  t.eq(r2.outcome.line, "+CME ERROR: 767", "r.outcome")
  -- before OK, the same line is the command's own final result
  r, err, code = p:cmd("AT+MCONNECT=1,60", CONNACK)
  t.eq(code, "CME", "a final result before OK")
  finish()
end)

t.test("no outcome after OK: ETIMEDOUT naming the outcome awaited", function()
  local p, finish = fake(function(m)
    answer(m, "AT+MCONNECT=1,60", "\r\nOK\r\n\r\nSOMETHING ELSE\r\n")
  end)
  local r, err, code = p:cmd("AT+MCONNECT=1,60", CONNACK)
  t.eq(r, nil, "no result")
  t.eq(code, "ETIMEDOUT", "code")
  plain_find(err, 'no "CONNACK OK" after AT+MCONNECT\'s OK in', "message")
  plain_find(err, "SOMETHING ELSE", "what it said last")
  finish()
end)

t.test("another command's echo is EECHO, not a reply", function()
  local p, finish = fake(function(m)
    answer(m, "AT", "AT+CFUN=0\r\r\nOK\r\n")
    answer(m, "AT", "AT\r\r\nOK\r\n")
  end)
  local r, err, code = p:cmd("AT")
  t.eq(r, nil, "no result")
  t.eq(code, "EECHO", "code")
  plain_find(err, 'sent AT, the module echoed "AT+CFUN=0"', "message")
  r = assert(p:cmd("AT"))
  t.eq(r.final, "OK", "its own echo is fine")
  finish()
end)

t.test("an error a script gets names what the port said, secrets masked", function()
  local secret = "Err0rS3cret" .. athost.random(4, "hex")
  athost.secret(secret)
  local p, finish = fake(function(m)
    answer(m, "AT+KEY?", '\r\n+KEY: "' .. secret .. '"\r\n')   -- and no OK
  end)
  local r, err, code = p:cmd("AT+KEY?", { timeout = 300 })
  t.eq(code, "ETIMEDOUT", "code")
  plain_find(err, 'last said "\\r\\n+KEY: "***"\\r\\n"', "what it said, masked")
  t.nomatch(err, secret, "the error")
  finish()
end)

t.test("OK before the prompt its data waits for: EPROMPT, nothing sent", function()
  local p, finish = fake(function(m)
    answer(m, "AT+CLOUDPUB=/t,0,2", "\r\nOK\r\n")
    answer(m, "AT+NEXT", "\r\nOK\r\n")     -- "42" never came before it
  end)
  local r, err, code = p:cmd("AT+CLOUDPUB=/t,0,2", { prompt = ">", data = "42" })
  t.eq(r, nil, "no result")
  t.eq(code, "EPROMPT", "code")
  plain_find(err, 'AT+CLOUDPUB answered "OK" before the prompt its 2 bytes wait for', "message")
  assert(p:cmd("AT+NEXT"))
  finish()
end)

t.test("wrong counts: ECOUNT for a command, m.error for a URC handler", function()
  local p, finish = fake(function(m)
    answer(m, "AT+HTTPREAD", "\r\n+HTTPREAD: 2147483648\r\nabc\r\n\r\nOK\r\n")
    answer(m, "AT+HTTPREAD", "\r\n+HTTPREAD: -5\r\n\r\nOK\r\n")
    answer(m, "AT+HTTPREAD", "\r\n+HTTPREAD: 200\r\n" .. ("x"):rep(200) .. "\r\n\r\nOK\r\n")
    answer(m, "AT+GO", '\r\nOK\r\n\r\n+MSUB: "t",15 byte,68692C\r\n\r\n+MSUB: "t",2 byte,hi\r\n')
  end)
  local READ = { reply = { "^%+HTTPREAD: ?(%-?%d+)", count = 1, max = 100 } }
  local r, err, code = p:cmd("AT+HTTPREAD", READ)
  t.eq(code, "ECOUNT", "10 digits: code")
  plain_find(err, "AT+HTTPREAD: \"+HTTPREAD: 2147483648\" announced a byte count of 10 digits", "10 digits")
  r, err, code = p:cmd("AT+HTTPREAD", READ)
  t.eq(code, "ECOUNT", "negative: code")
  plain_find(err, "announced a negative byte count (-5)", "negative")
  r, err, code = p:cmd("AT+HTTPREAD", READ)
  t.eq(code, "ECOUNT", "above max: code")
  plain_find(err, "announced 200 bytes, more than the 100 expected at most", "above max")
  local got = {}
  p:on({ '^%+MSUB: "([^"]*)",(%d+) byte,', count = 2 }, function(mt)
    got[#got + 1] = mt.error or mt.payload
  end)
  assert(p:cmd("AT+GO"))
  local deadline = athost.now() + 5000
  while #got < 2 and athost.now() < deadline do athost.sleep(5) end
  t.eq(#got, 2, "both lines reached the handler")
  plain_find(got[1], "announced 15 bytes, but what came does not end after 15 bytes", "mismatch")
  t.eq(got[2], "hi", "the next message is whole")
  finish()
end)

local SECRET = "S3cr3tPassw0rd"
local DEVSECRET = "Dev1ceS3cretXYZ42"
local LATESECRET = "L4teS3cretQRS"
local UNREGISTERED = "Unr3gisteredT0ken77"
-- ThingsBoard's provisioning reply names its access token so.
local TB_TOKEN = "TbTok" .. athost.random(6, "hex")

local MODEM = [[
local athost = require("athost")
local args = ...
local m, path = assert(athost.pty { link = args.link, name = "modem" })
io.stdout:write("ready\n")
io.stdout:flush()
local function answer(want, reply)
  local line = assert(m:readline { timeout = 20000 })
  assert(line == want, "modem got " .. line)
  if reply then assert(m:send(reply)) end
end
answer('AT+MCONFIG="dev","user","]] .. SECRET .. [["', "\r\nOK\r\n")
answer("AT+PWD?", '\r\n+PWD: "]] .. SECRET .. [["\r\n\r\nOK\r\n')
local body = '{"deviceSecret":"]] .. DEVSECRET .. [["}'
answer("AT+HTTPREAD", "\r\n+HTTPREAD: " .. #body .. "\r\n" .. body .. "\r\n\r\nOK\r\n")
answer("AT+LATE?", '\r\n+LATE: "]] .. LATESECRET .. [["\r\n')
athost.sleep(50)
assert(m:send("\r\nOK\r\n"))
answer("AT+TOKEN?", '\r\n+TOKEN: {"iotId":"id1","iotToken":"]] .. UNREGISTERED .. [[","credentialsType":"ACCESS_TOKEN","credentialsValue":"]] .. TB_TOKEN .. [["}\r\n\r\nOK\r\n')
answer("AT+QUIT")
m:close()
]]

local DUT = [[
local athost = require("athost")
local args = ...
local p = assert(athost.open(args.port, { name = "dut" }))
athost.secret("]] .. SECRET .. [[")
assert(p:cmd('AT+MCONFIG="dev","user","]] .. SECRET .. [["'))
local r = assert(p:cmd("AT+PWD?"))
assert(r.lines[1] == '+PWD: "]] .. SECRET .. [["', r.lines[1])
r = assert(p:cmd("AT+HTTPREAD", { reply = { "^%+HTTPREAD: (%d+)", count = 1 } }))
athost.secret(athost.json.decode(r.payload).deviceSecret)
r = assert(p:cmd("AT+LATE?", { reply = '^%+LATE: "(.*)"' }))
athost.secret(r[1])
athost.log("the late secret is " .. r[1])
assert(p:cmd("AT+TOKEN?"))      -- never parsed, never registered
assert(p:sendline("AT+QUIT"))
p:close()
]]

t.test("registered secrets are *** in the transcript", function()
  local dir = t.tmpdir()
  local function write(name, s)
    local f = assert(io.open(dir .. "/" .. name, "w"))
    f:write(s)
    f:close()
  end
  write("modem.lua", MODEM)
  write("dut.lua", DUT)
  local link, log = dir .. "/ttyFAKE", dir .. "/transcript.log"
  local cmd = string.format(
    "%s %s/modem.lua link=%s | (read ready && %s -l %s %s/dut.lua port=%s 2>%s/stderr)",
    BIN, dir, link, BIN, log, dir, link, dir)
  local ok, how, code = os.execute(cmd)
  local tr = t.slurp(log) or ""
  local stderr = t.slurp(dir .. "/stderr") or ""
  os.execute("rm -rf '" .. dir .. "'")
  t.eq(code, 0, "the script's exit code (stderr: " .. stderr .. ")")
  t.ok(ok, "the script succeeded")
  t.nomatch(tr, SECRET, "transcript")
  t.nomatch(tr, DEVSECRET, "transcript")
  t.nomatch(tr, LATESECRET, "transcript")
  t.nomatch(tr, UNREGISTERED, "transcript (a JSON field named like a secret)")
  plain_find(tr, '"iotId":"id1","iotToken":"***"', "the field's value masked, the rest kept")
  t.nomatch(tr, TB_TOKEN, "transcript (ThingsBoard's credentialsValue)")
  plain_find(tr, '"credentialsType":"ACCESS_TOKEN","credentialsValue":"***"', "credentialsValue masked")
  t.nomatch(stderr, LATESECRET, "log on stderr")
  plain_find(tr, "***", "transcript masks")
  -- one record a line: time, port, direction, escaped bytes
  t.match(tr, "\n? *%d+%.%d%d%d dut > AT%+MCONFIG=\"dev\",\"user\",\"%*%*%*\"\\r\n",
    "sent record")
  t.match(tr, " *%d+%.%d%d%d dut < [^\n]*\\r\\nOK\\r\\n", "received record")
  t.match(tr, "\\r\\n%+PWD: \"%*%*%*\"\\r\\n", "received secret masked")
  t.match(tr, "{\"deviceSecret\":\"%*%*%*\"}", "device secret masked")
  t.match(tr, "%+LATE: \"%*%*%*\"", "late secret masked")
  for line in tr:gmatch("[^\n]+") do
    t.match(line, "^ *%d+%.%d%d%d %S+ [<>#] ", "record format")
  end
  t.nomatch(tr, "\r", "raw CR in the transcript")
end)

t.run()
