-- A fake modem on a pty for tests of the chat engine: fn(m) runs as a
-- flow on the pty master m (reading commands with readline, answering with
-- send), and the test opens the slave path with athost.open as a script
-- opens /dev/ttyUSB0.
local athost = require("athost")

local M = {}

-- Starts the modem. Returns the port a script would use (the slave,
-- opened by path) and finish(), which waits for the modem's dialogue to
-- end, closes both sides and returns what fn returned (raising if fn
-- raised); then the master and the slave's path.
function M.fake(fn, opts)
  local m, path = assert(athost.pty { name = "modem" })
  local task = athost.spawn(function() return pcall(fn, m) end)
  local o = { name = "dut", timeout = 5000 }
  for k, v in pairs(opts or {}) do o[k] = v end
  local p = assert(athost.open(path, o))
  local function finish()
    local ok, a, b = task:join()
    if not p.closed then p:close() end
    m:close()
    if not ok then error("fake modem: " .. tostring(a), 2) end
    return a, b
  end
  return p, finish, m, path
end

-- The modem sends data in pieces of uneven sizes (a byte, most of a
-- page, more than 64 KiB, ...), then the final OK.
function M.send_pieces(m, data)
  local at, sizes, k = 1, { 1, 4093, 65537, 7, 100003 }, 0
  while at <= #data do
    k = k + 1
    local n = sizes[(k - 1) % #sizes + 1]
    assert(m:send(data:sub(at, at + n - 1)))
    at = at + n
  end
  assert(m:send("\r\nOK\r\n"))
end

return M
