-- A virtual Gosuncn ME3630 on a pty, served until SIGTERM.
--
--   athost scripts/sim/me3630.lua link=/tmp/ttyME [auth=http://127.0.0.1:PORT]
--       [broker=127.0.0.1:1883] [hosts=name=addr:port,...] [imei=...]
--       [faults: see athost.sim]
--   athost -p /tmp/ttyME -e 'print(assert(athost.port():cmd("AT+CGMR")).lines[1])'
--
-- Prints the pty slave's path (the link, if given, points to it).
local athost = require("athost")
local sim = require("athost.sim")

local args = ... or {}

-- athost.sim lists the models it knows; older copies lack this one.
sim.models.me3630 = sim.models.me3630 or "athost.sim.me3630"

local m = assert(sim.start("me3630", args))
print(m.path)
io.stdout:flush()
athost.log(string.format("me3630 %s on %s%s", m.imei, m.path,
  m.link and (" (" .. m.link .. ")") or ""))
m:wait()
