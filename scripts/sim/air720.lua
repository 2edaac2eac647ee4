-- A virtual Luat Air720 on a pty, served until SIGTERM.
--
--   athost scripts/sim/air720.lua link=/tmp/ttyAIR [broker=127.0.0.1:1883]
--       [hosts=name=addr:port,...] [imei=...] [faults: see athost.sim]
--   athost -p /tmp/ttyAIR -e 'print(assert(athost.port():cmd("AT")).final)'
--
-- Prints the pty slave's path (the link, if given, points to it).
require("athost.sim").serve("air720", ...)
