-- Minimal test harness for athost's Lua tests.
--
-- A test file is an athost script:
--   local t = require("t")
--   t.test("a reply delivered one byte at a time", function() ... end)
--   t.run()          -- prints "N passed, N failed" and sets the exit code
--
-- Each test runs inside the script's flow, so it may wait on ports and
-- timers. A test fails when it raises; the helpers below raise with a message
-- that says what was expected and what was seen.
local M = {}

local tests = {}
local filter = os.getenv("T_FILTER")

function M.test(name, fn)
  tests[#tests + 1] = { name = name, fn = fn }
end

local function show(v)
  if type(v) == "string" then
    return string.format("%q", v):gsub("\\\n", "\\n")
  end
  return tostring(v)
end

function M.eq(got, want, what)
  if got ~= want then
    error(string.format("%s: expected %s, got %s", what or "value",
      show(want), show(got)), 2)
  end
end

function M.ok(v, what)
  if not v then
    error((what or "expected a true value") .. " (got " .. show(v) .. ")", 2)
  end
  return v
end

function M.match(s, pat, what)
  if type(s) ~= "string" or not s:find(pat) then
    error(string.format("%s: expected to match %s, got %s", what or "string",
      show(pat), show(s)), 2)
  end
end

function M.nomatch(s, pat, what)
  if type(s) == "string" and s:find(pat, 1, true) then
    error(string.format("%s: must not contain %s, got %s", what or "string",
      show(pat), show(s)), 2)
  end
end

-- Asserts that fn raises an error whose message contains `plain`.
function M.raises(fn, plain, what)
  local ok, err = pcall(fn)
  if ok then error((what or "call") .. ": expected an error", 2) end
  err = tostring(err)
  if plain and not err:find(plain, 1, true) then
    error(string.format("%s: error %s does not mention %s", what or "call",
      show(err), show(plain)), 2)
  end
  return err
end

-- Asserts that a call returned the (nil, message, code) failure triple.
function M.fails(code, ...)
  local v, msg, c = ...
  if v ~= nil then
    error("expected a failure " .. code .. ", got a result", 2)
  end
  if c ~= code then
    error(string.format("expected failure code %s, got %s (%s)", code,
      show(c), show(msg)), 2)
  end
  return msg
end

function M.deepeq(got, want, what, path)
  path = path or (what or "value")
  if type(want) ~= "table" or type(got) ~= "table" then
    if got ~= want then
      error(string.format("%s: expected %s, got %s", path, show(want),
        show(got)), 2)
    end
    return
  end
  for k, v in pairs(want) do M.deepeq(got[k], v, what, path .. "." .. tostring(k)) end
  for k in pairs(got) do
    if want[k] == nil then
      error(string.format("%s.%s: unexpected key", path, tostring(k)), 2)
    end
  end
end

-- Reads a whole file; nil if it does not exist.
function M.slurp(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

function M.tmpdir()
  local p = os.tmpname()
  os.remove(p)
  assert(os.execute("mkdir -p " .. p))
  return p
end

function M.run()
  local passed, failed = 0, 0
  local file = arg and arg[0] or "?"
  for _, tc in ipairs(tests) do
    if not filter or tc.name:find(filter, 1, true) then
      local ok, err = xpcall(tc.fn, debug.traceback)
      if ok then
        passed = passed + 1
        io.stdout:write("ok   ", tc.name, "\n")
      else
        failed = failed + 1
        io.stdout:write("FAIL ", tc.name, "\n  ", (tostring(err):gsub("\n", "\n  ")), "\n")
      end
      io.stdout:flush()
    end
  end
  io.stdout:write(string.format("%s: %d passed, %d failed\n", file:match("[^/]*$"),
    passed, failed))
  io.stdout:flush()
  if failed > 0 then error(failed .. " test(s) failed", 0) end
end

return M
