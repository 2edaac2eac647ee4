-- The local AWS IoT fleet provisioning service (lib/athost/sim/aws_fleet.lua)
-- as a program: a client of the broker that answers CreateKeysAndCertificate
-- and RegisterThing.
--
--   athost scripts/sim/aws-fleet.lua broker_port=N username=U password=P \
--     ca_cert=ca.pem ca_key=ca.key templates=Name:Param+Param,... \
--     [broker_host=127.0.0.1] [thing_prefix=] [key_bits=2048] \
--     [deny=serial,...] [state=FILE] [workdir=DIR] [verbose=1]
--
-- Prints "ready" once it is subscribed, then answers until stopped.
local athost = require("athost")
local fleet = require("athost.sim.aws_fleet")

local args = ... or {}
local templates = {}
for item in (args.templates or ""):gmatch("[^,]+") do
  local name, params = item:match("^([^:]+):?(.*)$")
  local list = {}
  for p in params:gmatch("[^+]+") do list[#list + 1] = p end
  templates[name] = list
end
local deny = {}
for s in (args.deny or ""):gmatch("[^,]+") do deny[s] = true end
assert(args.ca_cert and args.ca_key, "ca_cert= and ca_key= are required")

local f = fleet.new { ca_cert = args.ca_cert, ca_key = args.ca_key,
  workdir = args.workdir or os.getenv("TMPDIR") or "/tmp", templates = templates,
  thing_prefix = args.thing_prefix, key_bits = tonumber(args.key_bits),
  deny = deny, state = args.state,
  log = args.verbose == "1" and function(s) athost.log(s) end or nil }
local r = f:start { host = args.broker_host or "127.0.0.1",
  port = tonumber(args.broker_port) or 1883, username = args.username,
  password = args.password and athost.secret(args.password) }
assert(r:ready(15000))
io.stdout:write("ready\n")
io.stdout:flush()
local _, why = r:run()
error(why, 0)
