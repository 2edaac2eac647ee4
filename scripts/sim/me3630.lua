-- A virtual Gosuncn ME3630 on a pty, served until SIGTERM.
--
--   athost scripts/sim/me3630.lua link=/tmp/ttyME [auth=http://127.0.0.1:PORT]
--       [broker=127.0.0.1:1883] [hosts=name=addr:port,...] [imei=...]
--       [faults: see athost.sim]
--   athost -p /tmp/ttyME -e 'print(assert(athost.port():cmd("AT+CGMR")).lines[1])'
--
-- Prints the pty slave's path (the link, if given, points to it).
require("athost.sim").serve("me3630", ...)
