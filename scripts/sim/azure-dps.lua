-- The local Azure Device Provisioning Service (lib/athost/sim/azure_dps.lua)
-- as a program: a client of the broker that answers registrations and
-- operation-status polls, assigning devices to hub.
--
--   athost scripts/sim/azure-dps.lua broker_port=N username=U password=P \
--     hub=NAME.azure-devices.net [broker_host=127.0.0.1] [polls=1] \
--     [retry_after=1] [deny=regid,...] [state=FILE] [verbose=1]
--
-- Prints "ready" once it is subscribed, then answers until stopped.
local athost = require("athost")
local dps = require("athost.sim.azure_dps")

local args = ... or {}
assert(args.hub, "hub= is required")
local deny = {}
for s in (args.deny or ""):gmatch("[^,]+") do deny[s] = true end
local d = dps.new { hub = args.hub, polls = tonumber(args.polls),
  retry_after = tonumber(args.retry_after), deny = deny, state = args.state,
  log = args.verbose == "1" and function(s) athost.log(s) end or nil }
local r = d:start { host = args.broker_host or "127.0.0.1",
  port = tonumber(args.broker_port) or 1883, username = args.username,
  password = args.password and athost.secret(args.password) }
assert(r:ready(15000))
io.stdout:write("ready\n")
io.stdout:flush()
local _, why = r:run()
error(why, 0)
