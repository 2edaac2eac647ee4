-- The athost command as a child process, in a temporary directory: what
-- the tests of the command line share.
local t = require("t")

local M = {}

-- The binary under test: ATHOST_BIN (tests/run.sh sets it for the plain
-- and the ASan builds), else the one running this test.
M.BIN = os.getenv("ATHOST_BIN") or (arg and arg[-1]) or "./athost"
-- The source tree (flows, scripts), from this file's place in it.
M.ROOT = (debug.getinfo(1, "S").source:match("^@(.*)/tests/lib/[^/]*$") or ".")

-- Runs fn(dir) in a fresh temporary directory and removes it afterwards.
function M.in_tmpdir(fn)
  local dir = t.tmpdir()
  local ok, err = xpcall(fn, debug.traceback, dir)
  os.execute("rm -rf '" .. dir .. "'")
  if not ok then error(err, 0) end
end

function M.write(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

-- Runs `athost ARGS` (ARGS already shell-quoted where needed) with its
-- output in dir; returns the exit code, stdout and stderr. With cmdline,
-- that shell command line is run instead (environment, then the binary).
function M.athost(dir, args, cmdline)
  local _, how, code = os.execute(string.format("%s >%s/out 2>%s/err",
    cmdline or (M.BIN .. " " .. args), dir, dir))
  local out, err = t.slurp(dir .. "/out") or "", t.slurp(dir .. "/err") or ""
  t.eq(how, "exit", "the command exited (stderr: " .. err .. ")")
  return code, out, err
end

return M
