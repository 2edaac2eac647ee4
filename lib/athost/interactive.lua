-- athost -i: an interactive session on a port, as comfortable as tio.
--
-- Type AT commands; whatever the module says is shown as it arrives:
-- replies to what you typed plainly (OK green, ERROR red on a terminal),
-- unsolicited lines (URCs) in yellow, or marked "[urc]" when stdout is
-- not a terminal. On a terminal, lines are edited with libedit (arrows,
-- history in $XDG_STATE_HOME/athost/history, mode 0600) and a line
-- arriving while you type is printed above the line, which stays as it
-- was; the module's echo of a typed line is not shown a second time.
--
-- A line starting with "!" runs as Lua with `port` and `athost` in scope,
-- e.g. `!port:cmd("AT+CGATT?")` or `!athost.hmac("md5", "k", "m")`;
-- `!help` lists everything. Ctrl-C aborts a "!" command that waits (or
-- drops the line being typed); Ctrl-] then a key: q quit, z send the
-- line typed and Ctrl-Z, e the line typed and ESC, b send a break, x hex
-- view, t timestamps. Ctrl-D quits.
-- From a pipe or a file the lines are read as typed, one at a time.
local athost = require("athost")

local M = {}

M.HELP = [[
  AT...        sent to the module; its answer is shown as it arrives
  !EXPR        Lua with port and athost in scope, its values printed:
               !port:cmd("AT+CGATT?")   !athost.hmac("md5", "key", "text")
  !help        this help
  Up, Down     earlier lines (history); Left, Right, Home, End edit
  Ctrl-C       abort a ! command that waits; at the prompt, drop the line
  Ctrl-D       quit
  Ctrl-] q     quit
  Ctrl-] z     send the line typed and Ctrl-Z (0x1a: ends an SMS or a data block)
  Ctrl-] e     send the line typed and ESC (0x1b: cancels a data prompt)
  Ctrl-] b     send a break
  Ctrl-] x     hex view of what arrives, on/off
  Ctrl-] t     timestamps, on/off
  Ctrl-] ?     this help
]]

local FINAL = { "^OK$", "^ERROR$", "^%+CME ERROR", "^%+CMS ERROR", "^NO CARRIER$",
  "^NO DIALTONE$", "^BUSY$", "^NO ANSWER$" }
local function final(line)
  for _, p in ipairs(FINAL) do if line:find(p) then return true end end
  return false
end

-- Control bytes escaped, so garbage stays visible and cannot drive the
-- terminal.
local function visible(s)
  return (s:gsub("[%z\1-\8\11-\31\127]", function(c)
    return string.format("\\x%02x", c:byte())
  end))
end

local function hex(s)
  return (s:gsub(".", function(c) return string.format("%02x ", c:byte()) end))
end

-- The history file: $XDG_STATE_HOME/athost/history, else
-- ~/.local/state/athost/history.
function M.history_path()
  local base = os.getenv("XDG_STATE_HOME")
  if not base or base == "" then
    local home = os.getenv("HOME")
    if not home or home == "" then return nil end
    base = home .. "/.local/state"
  end
  return base .. "/athost/history"
end

function M.run(args)
  args = args or {}
  local port = athost.port()
  local ed, why, code = athost.editor({ prompt = "", history = M.history_path() })
  if not ed and code ~= "ENOTTY" then error(why, 0) end
  local color = ed ~= nil and athost.isatty(1)
  local S = { hex = false, ts = false, in_cmd = false, echo = nil, pending = "" }
  local C = color and { reply = "", ok = "\27[32m", err = "\27[31m", urc = "\27[33m",
    info = "\27[2m", off = "\27[0m" } or nil

  local function out(text)
    if ed then ed:print(text) else io.stdout:write(text) io.stdout:flush() end
  end
  local function stamp()
    return S.ts and string.format("[%9.3f] ", athost.now() / 1000) or ""
  end
  local function info(text)
    out(C and (C.info .. text .. C.off .. "\n") or (text .. "\n"))
  end

  -- One received line: the echo of the line just typed is dropped on a
  -- terminal (the editor shows it already); a reply or final result
  -- belongs to the command typed last, anything else is a URC.
  local function show_line(line)
    if ed and S.echo and line == S.echo then S.echo = nil return end
    local kind
    if S.in_cmd then
      if final(line) then
        S.in_cmd = false
        kind = line == "OK" and "ok" or "err"
      else
        kind = "reply"
      end
    else
      kind = "urc"
    end
    S.echo = nil
    local text = visible(line)
    if C then
      out(stamp() .. C[kind] .. text .. (C[kind] ~= "" and C.off or "") .. "\n")
    else
      out(stamp() .. (kind == "urc" and "[urc] " or "") .. text .. "\n")
    end
  end

  local function received(bytes)
    if S.hex then out(stamp() .. "< " .. hex(bytes) .. "\n") end
    local s = S.pending .. bytes
    for line, sep in s:gmatch("([^\r\n]*)([\r\n])") do
      if line ~= "" and not S.hex then show_line(line) end
      local _ = sep
    end
    S.pending = s:match("[^\r\n]*$")
    -- A data prompt ("> ") comes without a line end: show it now.
    if S.pending:find("^%s*>%s*$") then
      if not S.hex then out(stamp() .. S.pending .. "\n") end
      S.pending = ""
    end
  end

  -- The receiver: a flow reading the port, paused while a ! command
  -- uses it (port:cmd waits on the same port).
  local receiver
  local function start_receiver()
    receiver = athost.spawn(function()
      while true do
        local bytes, err, code = port:recv(65536, { timeout = S.pending ~= "" and 300 or 0 })
        if bytes then
          received(bytes)
        elseif code == "ETIMEDOUT" then
          -- A line without its end for a while: show what came.
          if S.pending ~= "" and not S.hex then show_line(S.pending) end
          S.pending = ""
        else
          if code ~= "ECLOSED" then io.stderr:write(err, "\n") end
          return
        end
      end
    end)
  end

  local env = setmetatable({ port = port, athost = athost }, { __index = _G })
  env.help = function() out(M.HELP) end

  -- !EXPR in a task of its own, so that Ctrl-C can abort it where it
  -- waits; the receiver steps aside while it runs.
  local busy
  local function run_lua(src)
    if src:match("^%s*help%s*$") or src:match("^%s*help%(%)%s*$") then
      out(M.HELP)
      return
    end
    local chunk, err = load("return " .. src, "=(input)", "t", env)
    if not chunk then chunk, err = load(src, "=(input)", "t", env) end
    if not chunk then
      out("lua: " .. err .. "\n")
      return
    end
    receiver:cancel()
    busy = athost.spawn(function() return table.pack(pcall(chunk)) end)
    local res, jerr = busy:join()
    busy = nil
    start_receiver()
    if not res then
      info("aborted (" .. tostring(jerr) .. ")")
      return
    end
    if not res[1] then
      out("lua: " .. tostring(res[2]) .. "\n")
      return
    end
    for i = 2, res.n do
      local v = res[i]
      if type(v) == "table" then
        local ok, j = pcall(athost.json.encode, v)
        v = ok and j or tostring(v)
      end
      out(tostring(v) .. "\n")
    end
  end

  local function send(line)
    S.in_cmd = line:upper():find("^AT") ~= nil or S.in_cmd
    S.echo = line
    local ok, err = port:sendline(line)
    if not ok then info(tostring(err)) end
  end

  -- A line typed (or read from a pipe): Lua after "!", else sent.
  local function typed(line)
    if line:sub(1, 1) == "!" then
      run_lua(line:sub(2))
    elseif line ~= "" then
      send(line)
    end
  end

  -- Ctrl-Z and ESC end or drop what was typed at a data prompt ("> "):
  -- the line being typed goes out first, as it is, with no line end (one
  -- would be part of the SMS or the data block). The module's echo of it
  -- is not shown again.
  local function after_typed(key)
    return function()
      local text = ed and ed:take() or ""
      if text ~= "" then S.echo = text end
      local ok, err = port:send(text .. key)
      if not ok then info(tostring(err)) end
    end
  end

  local quit = false
  local ESCAPES = {
    q = function() quit = true end,
    z = after_typed("\26"),
    e = after_typed("\27"),
    b = function()
      -- A break of a quarter second, as tio sends.
      local ok, err = port:set({ brk = true })
      if ok then
        athost.sleep(250)
        ok, err = port:set({ brk = false })
      end
      info(ok and "break sent" or tostring(err))
    end,
    x = function() S.hex = not S.hex info("hex view " .. (S.hex and "on" or "off")) end,
    t = function() S.ts = not S.ts info("timestamps " .. (S.ts and "on" or "off")) end,
    ["?"] = function() out(M.HELP) end,
  }

  -- Ctrl-C: the ! command waiting is aborted; at the prompt the line is
  -- dropped; from a pipe with nothing waiting, the session ends.
  local stdin
  athost.on_interrupt(function()
    if busy then
      busy:cancel()
    elseif ed then
      ed:clear()
    else
      quit = true
      if stdin then stdin:close() end
    end
  end)

  io.stderr:write(string.format("athost %s on %s: type AT commands, !help for help, "
    .. "Ctrl-] q or Ctrl-D to quit\n", athost.version, port.name))
  start_receiver()

  if ed then
    ed:prompt("AT> ")
    while not quit do
      local kind, v = ed:read()
      if kind == "eof" then break end
      if kind == "escape" then
        local f = ESCAPES[v:lower()]
        if f then f() else info("Ctrl-] " .. visible(v) .. ": no such key (Ctrl-] ? lists them)") end
      else
        typed(v)
      end
    end
    ed:close()
  else
    -- Input from a pipe or a file: one line at a time, each once the
    -- module has been quiet for a moment, as a person would type.
    local code2
    stdin, _, code2 = athost.stdin()
    if not stdin and code2 ~= "ENOTSUP" then error(_, 0) end
    local last = athost.now()
    local inner = received
    received = function(bytes) last = athost.now() inner(bytes) end
    local function next_line()
      if stdin then return stdin:readline({ timeout = 0 }) end
      return io.stdin:read("l")
    end
    while not quit do
      local line = next_line()
      if not line then break end
      -- As a person would type: once the module has been quiet for a
      -- moment and has answered the command before (for up to 5 s).
      local since = athost.now()
      while athost.now() - last < 200 or (S.in_cmd and athost.now() - since < 5000) do
        athost.sleep(math.max(20, 200 - (athost.now() - last)))
      end
      typed(line)
    end
    if stdin then pcall(stdin.close, stdin) end
    -- Input ended (a pipe, or Ctrl-D): let the module finish what it says.
    local quiet = tonumber(args.quiet_ms) or 500
    while athost.now() - last < quiet do athost.sleep(quiet - (athost.now() - last)) end
  end
  athost.on_interrupt(nil)
  receiver:cancel()
  port:close()
  return true
end

return M
