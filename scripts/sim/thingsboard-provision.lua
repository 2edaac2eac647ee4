-- The local ThingsBoard provisioning service (lib/athost/sim/tb_provision.lua)
-- as a program:
--
--   athost scripts/sim/thingsboard-provision.lua host=127.0.0.1 port=N \
--     profiles=key:secret,... acl=FILE broker_pid=PID [username=U]
--
-- Prints "subscribed to /provision/request" once it serves, then one line
-- "provision request -> <status>" per request, until stopped.
local athost = require("athost")
local provision = require("athost.sim.tb_provision")
local simargs = require("athost.sim.args")

local args = ... or {}
provision.new {
  host = args.host or "127.0.0.1", port = assert(tonumber(args.port), "port=N"),
  profiles = simargs.list(args.profiles, 2, "profiles=key:secret,..."),
  acl = assert(args.acl, "acl=FILE"), broker_pid = assert(tonumber(args.broker_pid), "broker_pid=PID"),
  username = args.username,
  log = function(s) io.stdout:write(s, "\n") io.stdout:flush() end,
}:run()
