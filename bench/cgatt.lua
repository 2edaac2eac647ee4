-- athost contender of the `make bench` harness (bench/run.sh).
--
--   ./athost bench/cgatt.lua path=/dev/pts/N n=10000
--
-- One warm-up AT+CGATT?, then n timed round trips through port:cmd(), each
-- reply checked to be exactly one line "+CGATT: 1" followed by OK.
-- Prints "athost: <rate> round trips/s, <cpu> us CPU a round trip" (os.clock:
-- the process's CPU time, user and system, over the timed loop).

local athost = require("athost")
local args = ... or {}

local path = assert(args.path, "usage: athost bench/cgatt.lua path=PTY [n=N]")
local n = tonumber(args.n or "10000")
assert(n and n >= 1 and n == math.floor(n), "n= must be a positive integer")

local port = assert(athost.open(path, { baud = 115200 }))

local function round_trip(i)
  local r, err = port:cmd("AT+CGATT?")
  if not r then
    error(string.format("round trip %d: AT+CGATT? failed: %s", i, tostring(err)), 0)
  end
  if r.final ~= "OK" or #r.lines ~= 1 or r.lines[1] ~= "+CGATT: 1" then
    error(string.format("round trip %d: unexpected reply: final=%s lines={%s}",
      i, tostring(r.final), table.concat(r.lines or {}, "|")), 0)
  end
end

round_trip(0) -- warm-up

local t0, c0 = athost.now(), os.clock()
for i = 1, n do
  round_trip(i)
end
local ms, cpu = athost.now() - t0, os.clock() - c0

print(string.format("athost: %.1f round trips/s, %.2f us CPU a round trip", n / (ms / 1000), cpu / n * 1e6))

-- Close the port if the API offers it, so that the host does not keep
-- waiting on an open handle.
local ok, close = pcall(function() return port.close end)
if ok and close then
  port:close()
end
