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
  -- Polls for pattern in what was drawn since the last match. The last
  -- line (the prompt and the line being typed) is drawn again in place
  -- when the session prints above it, so a match there marks its start,
  -- not its end.
  function s.wait_screen(_, pat, what)
    return poll(what or ("the screen to show " .. pat), 10000, function()
      local scr = s.screen()
      local a, b = scr:find(pat, s.from)
      if a then
        s.from = math.min(b + 1, (scr:match("^.*\n()") or 1))
        return scr:sub(a, b)
      end
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

---------------------------------------------------------------------------
-- The escape key, against a fake module: the test plays the module on a
-- pty's master (athost -i opens the slave as a serial port) or behind a
-- Telnet COM-PORT-OPTION server (rfc2217:), keeps every byte that reached
-- it and answers as a module would.
---------------------------------------------------------------------------

-- Answers what a module answers: AT+CMGS="..." the SMS text prompt, then
-- the text ended by Ctrl-Z (+CMGS: and OK) or dropped by ESC (OK; 3GPP TS
-- 27.005 3.5.1); any other command OK.
local function answering(mod)
  local buf, in_sms = "", false
  return function(b)
    mod.got = mod.got .. b
    buf = buf .. b
    while true do
      if in_sms then
        local e = buf:find("[\26\27]")
        if not e then return end
        mod:say(buf:sub(e, e) == "\26" and "\r\n+CMGS: 7\r\n\r\nOK\r\n" or "\r\nOK\r\n")
        buf, in_sms = buf:sub(e + 1), false
      else
        local line, rest = buf:match("^([^\r]*)\r(.*)$")
        if not line then return end
        buf = rest
        if line:find("^AT%+CMGS=") then
          in_sms = true
          mod:say("\r\n> ")
        elseif line:find("^AT") then
          mod:say("\r\nOK\r\n")
        end
      end
    end
  end
end

-- A fake module on a pty: mod.path for -p, mod.got what reached it,
-- mod:say(bytes) what it sends.
local function pty_module()
  local m, slave = assert(athost.pty({ name = "module" }))
  local mod = { got = "", path = slave }
  function mod.say(_, bytes) assert(m:send(bytes)) end
  function mod.close() m:close() end
  local take = answering(mod)
  athost.spawn(function()
    while true do
      local b = m:recv(65536, { timeout = 0 })
      if not b then return end
      take(b)
    end
  end)
  return mod
end

-- A fake module behind an RFC 2217 server (as ser2net's telnet(rfc2217)
-- accepter is): it agrees to every option the client asks for, answers
-- each COM-PORT-OPTION command as a server does (the command + 100, the
-- value it took) and keeps the SET-CONTROL values in mod.controls, each
-- with the time it came ({value, ms}). mod.path: the rfc2217: spec.
local function rfc2217_module()
  local IAC, SB, SE, WILL, WONT, DO, DONT = 255, 250, 240, 251, 252, 253, 254
  local l = assert(athost.listen("127.0.0.1", 0))
  local mod = { got = "", controls = {}, path = "rfc2217:127.0.0.1:" .. l.port }
  local c
  local function raw(bytes) assert(c:send(bytes)) end
  function mod.say(_, bytes) raw((bytes:gsub("\255", "\255\255"))) end
  function mod.close() if c then c:close() end l:close() end
  local take = answering(mod)
  athost.spawn(function()
    c = l:accept({ timeout = 0 })
    if not c then return end
    local st, verb, sb, data = "data", nil, {}, {}
    while true do
      local b = c:recv(65536, { timeout = 0 })
      if not b then return end
      for i = 1, #b do
        local x = b:byte(i)
        if st == "data" then
          if x == IAC then st = "iac" else data[#data + 1] = string.char(x) end
        elseif st == "iac" then
          if x == IAC then data[#data + 1] = "\255" st = "data"
          elseif x >= WILL and x <= DONT then verb, st = x, "opt"
          elseif x == SB then sb, st = {}, "sb"
          else st = "data" end
        elseif st == "opt" then
          -- WILL x -> DO x, DO x -> WILL x; refusals are acknowledged.
          local answer = ({ [WILL] = DO, [DO] = WILL, [WONT] = DONT, [DONT] = WONT })[verb]
          raw(string.char(IAC, answer, x))
          st = "data"
        elseif st == "sb" then
          if x == IAC then st = "sbiac" else sb[#sb + 1] = x end
        elseif st == "sbiac" then
          if x == SE then
            if sb[1] == 44 and sb[2] then
              if sb[2] == 5 then mod.controls[#mod.controls + 1] = { sb[3], athost.now() } end
              local answer = { IAC, SB, 44, sb[2] + 100 }
              for j = 3, #sb do answer[#answer + 1] = sb[j] end
              answer[#answer + 1] = IAC
              answer[#answer + 1] = SE
              raw(string.char(table.unpack(answer)))
            end
            st = "data"
          else
            sb[#sb + 1] = x   -- IAC IAC inside: one 0xFF
            st = "sb"
          end
        end
      end
      if #data > 0 then take(table.concat(data)) data = {} end
    end
  end)
  return mod
end

test("a terminal: Ctrl-] z ends the SMS text typed at the prompt, Ctrl-] e cancels one", function()
  local mod = pty_module()
  local s = terminal(mod.path)
  s:wait_screen("AT> ", "the prompt")
  s:type('AT+CMGS="10086"\r')
  s:wait_screen("\n> ", "the module's text prompt")
  -- The text as a person types it at "> ", then Ctrl-] z: the text and
  -- Ctrl-Z reach the module, no line end between (it would be part of
  -- the message).
  s:type("hello")
  s:wait_screen("hello", "the text typed")
  s:type("\29z")
  s:wait_screen("AT> hello\n", "the text left on the screen as sent")
  s:wait_screen("%+CMGS: 7\nOK\n", "the module's answer to the message")
  t.eq(mod.got, 'AT+CMGS="10086"\rhello\26', "what reached the module")
  -- Again, cancelled with Ctrl-] e (ESC): the module drops the text.
  s:type('AT+CMGS="10086"\r')
  s:wait_screen("\n> ", "the text prompt again")
  s:type("oops")
  s:wait_screen("oops", "the text typed")
  s:type("\29e")
  s:wait_screen("\nOK\n", "the module's OK to ESC")
  t.eq(mod.got, 'AT+CMGS="10086"\rhello\26AT+CMGS="10086"\roops\27', "what reached the module")
  -- Ctrl-] z on an empty line, and after a line dropped with Ctrl-C:
  -- Ctrl-Z alone.
  local before = #mod.got
  s:type("AT+CFUN=0")
  s:wait_screen("AT%+CFUN=0", "the half-typed line")
  s:type("\3")
  s:wait_screen("%^C\nAT> ", "the line dropped, a new prompt")
  s:type("\29z")
  poll("Ctrl-Z at the module", 5000, function() return #mod.got > before, mod.got end)
  t.eq(mod.got:sub(before + 1), "\26", "Ctrl-Z alone")
  s:type("\29q")
  poll("the end of the session", 10000, s.rc)
  t.eq(s.rc(), 0, "exit code")
  s.close()
  mod.close()
end)

test("a terminal: Ctrl-] x hex view, Ctrl-] t timestamps, Ctrl-] ? the keys", function()
  local mod = pty_module()
  local s = terminal(mod.path)
  s:wait_screen("AT> ", "the prompt")
  s:type("\29x")
  s:wait_screen("hex view on\n", "hex view on")
  mod:say("\r\n+CREG: 1\r\n")
  s:wait_screen("< 0d 0a 2b 43 52 45 47 3a 20 31 0d 0a", "the URC's bytes in hex")
  t.nomatch(s.screen(), "\n%+CREG: 1\n", "not as text")
  s:type("\29x")
  s:wait_screen("hex view off\n", "hex view off")
  mod:say("\r\n+CREG: 2\r\n")
  s:wait_screen("%f[^\n]%+CREG: 2\n", "the next URC as text")
  t.nomatch(s.screen(), "32 0d 0a", "not in hex")
  s:type("\29t")
  s:wait_screen("timestamps on\n", "timestamps on")
  mod:say("\r\n+CREG: 3\r\n")
  s:wait_screen("%f[^\n]%[ *%d+%.%d%d%d%] %+CREG: 3\n", "the URC stamped")
  s:type("\29t")
  s:wait_screen("timestamps off\n", "timestamps off")
  mod:say("\r\n+CREG: 4\r\n")
  s:wait_screen("%f[^\n]%+CREG: 4\n", "the next URC without a stamp")
  s:type("\29?")
  s:wait_screen("Ctrl%-%] b +send a break\n.-Ctrl%-%] %? +this help", "the keys listed")
  s:type("\29k")
  s:wait_screen("Ctrl%-%] k: no such key", "an unknown key named")
  -- None of these keys reached the module.
  t.eq(mod.got, "", "nothing sent")
  s:type("\29q")
  poll("the end of the session", 10000, s.rc)
  t.eq(s.rc(), 0, "exit code")
  s.close()
  mod.close()
end)

test("a terminal on rfc2217: Ctrl-] b holds a break for a quarter second", function()
  local mod = rfc2217_module()
  local s = terminal(mod.path)
  s:wait_screen("AT> ", "the prompt")
  s:type("AT\r")
  s:wait_screen("\nOK\n", "OK to AT")
  t.deepeq(mod.controls, {}, "no SET-CONTROL before the key")
  s:type("\29b")
  s:wait_screen("break sent\n", "the break reported")
  poll("BREAK ON and OFF at the server", 5000, function()
    return #mod.controls == 2, #mod.controls
  end)
  t.eq(mod.controls[1][1], 5, "SET-CONTROL BREAK-ON (5) first")
  t.eq(mod.controls[2][1], 6, "then BREAK-OFF (6)")
  local held = mod.controls[2][2] - mod.controls[1][2]
  t.ok(held >= 200 and held < 1000, "held about 250 ms: " .. held)
  -- The port goes on.
  s:type("AT\r")
  s:wait_screen("\nOK\n", "OK to AT after the break")
  t.eq(mod.got, "AT\rAT\r", "only the commands reached the module as data")
  s:type("\29q")
  poll("the end of the session", 10000, s.rc)
  t.eq(s.rc(), 0, "exit code")
  s.close()
  mod.close()
end)

test("a terminal on a pty: Ctrl-] b reports the break sent", function()
  -- Linux's pty driver has no break_ctl: TIOCSBRK on either side succeeds
  -- and nothing reaches the other side (no byte, no packet-mode event), so
  -- on a pty the user can check only what the session prints, and that
  -- the port goes on; the break itself is checked on rfc2217: above.
  local mod = pty_module()
  local s = terminal(mod.path)
  s:wait_screen("AT> ", "the prompt")
  s:type("\29b")
  s:wait_screen("break sent\n", "the break reported")
  s:type("AT\r")
  s:wait_screen("\nOK\n", "OK to AT after the break")
  t.eq(mod.got, "AT\r", "no byte for the break")
  s:type("\29q")
  poll("the end of the session", 10000, s.rc)
  s.close()
  mod.close()
end)

t.run()
