-- athost -i: an interactive session on a port.
--
-- Type AT commands; whatever the module says (replies and URCs) is shown as
-- it arrives. A line starting with "!" runs as Lua with `port` and
-- `athost` in scope, e.g. `!print(athost.hmac("md5", "k", "m"))` or
-- `!port:cmd("AT+CGATT?")`. Ctrl-D ends the session.
local athost = require("athost")

local M = {}

-- Shows received bytes as text: CR LF becomes one newline, other control
-- bytes are escaped so garbage stays visible.
local function show(bytes)
  bytes = bytes:gsub("\r\n", "\n"):gsub("\r", "\n")
  bytes = bytes:gsub("[%z\1-\8\11-\31\127]", function(c)
    return string.format("\\x%02x", c:byte())
  end)
  io.stdout:write(bytes)
  io.stdout:flush()
end

local function run_lua(src, env)
  local chunk, err = load("return " .. src, "=(input)", "t", env)
  if not chunk then chunk, err = load(src, "=(input)", "t", env) end
  if not chunk then
    print("lua: " .. err)
    return
  end
  local res = table.pack(pcall(chunk))
  if not res[1] then
    print("lua: " .. tostring(res[2]))
    return
  end
  for i = 2, res.n do
    local v = res[i]
    if type(v) == "table" then v = athost.json.encode(v) end
    print(tostring(v))
  end
end

-- Input from a file (athost -i < commands.txt): one line at a time, each
-- once the module has been quiet for a moment, as a person would type.
local function file_lines(quiet_ms, last)
  return function()
    while athost.now() - last() < quiet_ms do
      athost.sleep(quiet_ms - (athost.now() - last()))
    end
    return io.stdin:read("l")
  end
end

function M.run(args)
  local port = athost.port()
  local stdin, _, code = athost.stdin()
  if not stdin and code ~= "ENOTSUP" then error(_, 0) end
  local env = setmetatable({ port = port, athost = athost }, { __index = _G })
  io.stderr:write(string.format("athost %s on %s: type AT commands, !lua, "
    .. "Ctrl-D to quit\n", athost.version, port.name))
  local last = athost.now()
  athost.spawn(function()
    while true do
      local bytes, err, code = port:recv(65536, { timeout = 0 })
      if not bytes then
        if code ~= "ECLOSED" then io.stderr:write(err, "\n") end
        return
      end
      last = athost.now()
      show(bytes)
    end
  end)
  local quiet = tonumber(args and args.quiet_ms) or 500
  local next_line = stdin and function() return stdin:readline({ timeout = 0 }) end
    or file_lines(200, function() return last end)
  while true do
    local line = next_line()
    if not line then break end
    if line:sub(1, 1) == "!" then
      run_lua(line:sub(2), env)
    elseif line ~= "" then
      assert(port:sendline(line))
    end
  end
  if stdin then stdin:close() end
  -- Input ended (a pipe, or Ctrl-D): let the module finish what it says.
  while athost.now() - last < quiet do
    athost.sleep(quiet - (athost.now() - last))
  end
  port:close()
  return true
end

return M
