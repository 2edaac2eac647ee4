-- The mosquitto fixture (tests/fixtures/broker.sh) from Lua tests.
--
--   local B = broker.start(dir)   -- B.PORT, B.TLS_PORT, B.CA, B.USER, ...
--   ...
--   broker.stop(dir)
local t = require("t")

local M = {}

-- broker.sh, found next to this file so tests may run from anywhere.
M.sh = (debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "tests/lib")
  .. "/../fixtures/broker.sh"

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function run(args)
  local f = assert(io.popen("bash " .. q(M.sh) .. " " .. args .. " 2>&1"))
  local out = f:read("a")
  return out, f:close()
end

-- Starts a broker in dir; returns its broker.env as a table without the
-- BROKER_ prefix, the ports as numbers. Raises with broker.sh's output.
function M.start(dir)
  local out, ok = run("start " .. q(dir))
  if not ok then error("broker.sh start failed:\n" .. out, 0) end
  local b = {}
  for k, v in (t.slurp(dir .. "/broker.env") or out):gmatch("BROKER_([%w_]+)=([^\n]*)") do
    b[k] = v:match("^'(.*)'$") or v
  end
  for _, k in ipairs({ "PORT", "TLS_PORT", "MTLS_PORT", "CERT_PORT", "PID" }) do
    b[k] = tonumber(b[k])
  end
  return b
end

function M.restart(dir) return run("restart " .. q(dir)) end
function M.stop(dir) return run("stop " .. q(dir)) end

return M
