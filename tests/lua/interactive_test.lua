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

---------------------------------------------------------------------------
-- On a terminal: athost -i as a child on a pty's slave (its controlling
-- terminal, in the usual cooked mode), the test typing on the master and
-- reading the screen there.
---------------------------------------------------------------------------

local athost = require("athost")
local DIR = t.tmpdir()
local proc = require("proc").new(DIR)
local q, poll, background, test = proc.q, proc.poll, proc.background, proc.test

-- Starts `athost -i -p SPEC` on a new pty; returns a session object:
-- s:type(keys), s:screen() (what was drawn, escapes and CRs removed),
-- s:wait_screen(pattern, what) polls for it after the last mark,
-- s:sent() the lines that reached the module (transcript), s.rc().
local function terminal(spec)
  local m, slave = assert(athost.pty({ name = "terminal" }))
  local s = { raw = "", from = 1, state = DIR .. "/state-" .. proc.uid() }
  local name = "tty-" .. proc.uid()
  s.tr = DIR .. "/" .. name .. ".tr"
  local script = DIR .. "/" .. name .. ".sh"
  local f = assert(io.open(script, "w"))
  f:write(string.format("exec setsid -c sh -c %s <%s >%s 2>%s\n", q(string.format(
    "stty sane rows 30 cols 120; XDG_STATE_HOME=%s exec %s -l %s -i -p %s",
    q(s.state), bin, q(s.tr), q(spec))), slave, slave, q(DIR .. "/" .. name .. ".stderr")))
  f:close()
  s.base = background("sh " .. q(script), name)
  s.err = DIR .. "/" .. name .. ".stderr"
  athost.spawn(function()
    while true do
      local b = m:recv(65536, { timeout = 0 })
      if not b then return end
      s.raw = s.raw .. b
    end
  end)
  function s.type(_, keys) assert(m:send(keys)) end
  -- What a terminal shows, as lines: CR, BS, LF, erase to the end of
  -- the line and cursor moves within a line (all that the editor uses
  -- to redraw a line) are applied.
  function s.screen()
    local lines, cur, x = {}, {}, 1
    local raw, i = s.raw, 1
    while i <= #raw do
      local c = raw:sub(i, i)
      if c == "\27" then
        local n, cmd, e = raw:match("^%[([%d;?]*)(%a)()", i + 1)
        if cmd then
          local k = tonumber(n) or 1
          if cmd == "K" then for j = x, #cur do cur[j] = nil end
          elseif cmd == "D" then x = math.max(1, x - k)
          elseif cmd == "C" then x = x + k
          elseif cmd == "G" then x = k end
          i = e
        else
          i = i + 2
        end
      else
        if c == "\r" then x = 1
        elseif c == "\n" then
          local out = {}
          for j = 1, #cur do out[j] = cur[j] or " " end
          lines[#lines + 1] = table.concat(out)
          cur, x = {}, 1
        elseif c == "\b" then x = math.max(1, x - 1)
        elseif c:byte() >= 32 then cur[x] = c x = x + 1 end
        i = i + 1
      end
    end
    local out = {}
    for j = 1, #cur do out[j] = cur[j] or " " end
    lines[#lines + 1] = table.concat(out)
    return table.concat(lines, "\n")
  end
  -- Polls for pattern in what was drawn since the last match.
  function s.wait_screen(_, pat, what)
    return poll(what or ("the screen to show " .. pat), 10000, function()
      local scr = s.screen()
      local a, b = scr:find(pat, s.from)
      if a then s.from = b + 1 return scr:sub(a, b) end
      return nil, scr:sub(s.from):sub(-400)
    end)
  end
  function s.sent()
    local out = {}
    for l in (t.slurp(s.tr) or ""):gmatch("[^\n]+") do
      local who, line = l:match("^%s*[%d.]+ (%S+) > (.*)\\r$")
      if who and not who:find("-sim", 1, true) then out[#out + 1] = line end
    end
    return out
  end
  function s.rc() return tonumber((t.slurp(s.base .. ".rc") or ""):match("%d+") or "") end
  function s.close() m:close() end
  return s
end

test("a terminal: echo shown once, Up recalls the last command, history kept 0600", function()
  local s = terminal("sim:air720")
  s:wait_screen("AT> ", "the prompt")
  t.match(t.slurp(s.err) or "", "Ctrl%-%] q", "the escape key is shown at the start")
  s:type("AT\r")
  s:wait_screen("\nOK\n", "OK to AT")
  s:type("AT+CGMR\r")
  s:wait_screen("AirM2M_720_V461_LTE_AT\nOK\n", "AT+CGMR's answer")
  -- The module echoes AT+CGMR; the line typed is on the screen already.
  for line in s.screen():gmatch("[^\n]+") do
    t.ok(line ~= "AT+CGMR" and line ~= "AT", "no echo line of its own: " .. line)
  end
  -- Up twice: AT+CGMR, then AT; Enter sends it.
  s:type("\27[A\27[A\r")
  s:wait_screen("\nOK\n", "OK to the recalled AT")
  t.deepeq(s.sent(), { "AT", "AT+CGMR", "AT" }, "what reached the module")
  local hist = s.state .. "/athost/history"
  local st = athost.stat(hist)
  t.ok(st, "the history file exists at $XDG_STATE_HOME/athost/history")
  t.eq(st.mode & 511, 384, "history mode 0600")
  t.match(t.slurp(hist) or "", "AT%+CGMR", "the typed lines are in it")
  -- Ctrl-] q quits.
  s:type("\29q")
  poll("the end of the session", 10000, s.rc)
  t.eq(s.rc(), 0, "exit code")
  s.close()
end)

test("a terminal: !help, !port:cmd, Ctrl-C aborts a waiting command, not the session", function()
  local s = terminal("sim:air720")
  s:wait_screen("AT> ", "the prompt")
  s:type("!help\r")
  s:wait_screen("Ctrl%-%] q +quit", "the help")
  t.nomatch(s.screen(), "\nnil\n", "not nil")
  s:type("AT\r")
  s:wait_screen("\nOK\n", "OK to AT")
  s:type('!port:cmd("AT+CGSN")\r')
  s:wait_screen('"final":"OK"', "the command's result as JSON")
  -- A command that waits for a minute; Ctrl-C ends it.
  s:type('!port:expect("NEVER", { timeout = 60000 })\r')
  poll("the expect to wait", 5000, function()
    return s.screen():find('NEVER", { timeout = 60000 })', 1, true)
  end)
  s:type("\3")
  s:wait_screen("aborted", "the abort")
  -- The session and the port go on.
  s:type("AT+CGMR\r")
  s:wait_screen("AirM2M_720_V461_LTE_AT\nOK\n", "AT+CGMR's answer after the abort")
  t.eq(s.rc(), nil, "the session goes on")
  -- Ctrl-C at the prompt drops the line typed, nothing is sent.
  s:type("AT+CFUN=0")
  s:wait_screen("AT%+CFUN=0", "the half-typed line")
  s:type("\3")
  s:wait_screen("%^C\nAT> ", "the line dropped, a new prompt")
  s:type("\4")
  poll("the end of the session after Ctrl-D", 10000, s.rc)
  t.eq(s.rc(), 0, "exit code")
  for _, l in ipairs(s.sent()) do t.ok(not l:find("CFUN"), "the dropped line was not sent") end
  s.close()
end)

test("a terminal: a URC arriving while a line is half typed leaves the line whole", function()
  -- boot=1500: after AT+RESET's OK the banner comes 1.5 s later, while
  -- the next line is being typed.
  local s = terminal("sim:air720?boot=1500")
  s:wait_screen("SMS Ready", "the power-on banner")
  s:type("AT\r")
  s:wait_screen("\nOK\n", "OK to AT")
  s:type("AT+RESET\r")
  s:wait_screen("\nOK\n", "OK to AT+RESET")
  s:type("AT+CG")
  s:wait_screen("RDY", "the banner after the reset")
  s:wait_screen("AT> AT%+CG", "the half-typed line drawn again below it")
  s:type("SN\r")
  poll("AT+CGSN sent", 5000, function() return s.sent()[3] end)
  t.deepeq(s.sent(), { "AT", "AT+RESET", "AT+CGSN" }, "the line reached the module whole")
  s:type("\29q")
  poll("the end of the session", 10000, s.rc)
  s.close()
end)

t.run()
