-- A virtual Luat Air780E (Air780EP) on a pty, served until SIGTERM.
--
--   athost scripts/sim/air780e.lua link=/tmp/ttyAIR [broker=127.0.0.1:1883]
--       [hosts=name=addr:port,...] [imei=...] [knobs, faults: see athost.sim]
--   athost -p /tmp/ttyAIR -e 'print(assert(athost.port():cmd("AT")).final)'
--
-- Prints the pty slave's path (the link, if given, points to it).
require("athost.sim").serve("air780e", ...)
