-- Child processes for end-to-end tests: run a program in the background
-- with its output, pid and exit code in files, poll for what it writes,
-- and stop whatever a test started when the test ends.
--
--   local proc = require("proc").new(dir)
--   proc.test("name", function() proc.background(cmd, "flow") ... end)
local t = require("t")
local athost = require("athost")

local M = {}

function M.new(DIR)
  local P = {}
  local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

  local function shell(cmd)
    local f = assert(io.popen(cmd .. " 2>&1"))
    local out = f:read("a")
    local ok = f:close()
    return out, ok
  end

  local function uid() return athost.random(4, "hex") end

  -- Calls fn every 20 ms until it returns a true value, for up to ms; the
  -- error names what was awaited and what fn's second result last showed.
  local function poll(what, ms, fn)
    local deadline = athost.now() + ms
    while true do
      local v, seen = fn()
      if v then return v end
      if athost.now() > deadline then
        error(string.format("%s: not within %d ms; last seen: %s", what, ms,
          tostring(seen)), 2)
      end
      athost.sleep(20)
    end
  end

  ---------------------------------------------------------------------------
  -- Background processes: each test's are stopped when it ends
  ---------------------------------------------------------------------------

  local running = {}

  -- Runs cmd in the background with its output in NAME.out/.err, its pid in
  -- NAME.pid and, once it ended, its exit code in NAME.rc.
  local function background(cmd, name)
    local base = DIR .. "/" .. name
    assert(os.execute(string.format("( %s >%s.out 2>%s.err </dev/null & echo $! >%s.pid; "
      .. "wait $!; echo $? >%s.rc ) >/dev/null 2>&1 </dev/null &", cmd, base, base,
      base, base)))
    local pid = poll("the pid of " .. name, 5000, function()
      return (t.slurp(base .. ".pid") or ""):match("^(%d+)\n")
    end)
    running[#running + 1] = { pid = pid, base = base }
    return base
  end

  local function stop_running()
    for _, p in ipairs(running) do
      if not t.slurp(p.base .. ".rc") then
        os.execute("kill -TERM " .. p.pid .. " 2>/dev/null")
        pcall(poll, "the end of " .. p.base, 5000, function()
          return t.slurp(p.base .. ".rc")
        end)
      end
    end
    running = {}
  end

  local function test(name, fn)
    t.test(name, function()
      local ok, err = xpcall(fn, debug.traceback)
      stop_running()
      if not ok then error(err, 0) end
    end)
  end

  P.q, P.shell, P.uid, P.poll = q, shell, uid, poll
  P.background, P.stop_running, P.test = background, stop_running, test
  return P
end

return M
