-- A virtual SIMCom A7670 on a pty, served until SIGTERM.
--
--   athost scripts/sim/a7670.lua link=/tmp/ttyA76 [broker=127.0.0.1:1883]
--       [hosts=name=addr:port,...] [imei=...] [faults: see athost.sim]
--   athost -p /tmp/ttyA76 -e 'print(assert(athost.port():cmd("AT")).final)'
--
-- Prints the pty slave's path (the link, if given, points to it).
local athost = require("athost")
local sim = require("athost.sim")

local args = ... or {}

local m = assert(sim.start("a7670", args))
print(m.path)
io.stdout:flush()
athost.log(string.format("a7670 %s on %s%s", m.imei, m.path,
  m.link and (" (" .. m.link .. ")") or ""))
m:wait()
