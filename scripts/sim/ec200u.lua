-- A virtual Quectel EC200U on a pty, served until SIGTERM.
--
--   athost scripts/sim/ec200u.lua link=/tmp/ttyQ [broker=127.0.0.1:1883]
--       [hosts=name=addr:port,...] [imei=...] [faults: see athost.sim]
--   athost -p /tmp/ttyQ -e 'print(assert(athost.port():cmd("AT")).final)'
--
-- Prints the pty slave's path (the link, if given, points to it).
local athost = require("athost")
local sim = require("athost.sim")

local args = ... or {}

local m = assert(sim.start("ec200u", args))
print(m.path)
io.stdout:flush()
athost.log(string.format("ec200u %s on %s%s", m.imei, m.path,
  m.link and (" (" .. m.link .. ")") or ""))
m:wait()
