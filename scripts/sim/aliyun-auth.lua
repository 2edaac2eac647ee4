-- The local Aliyun auth service (lib/athost/sim/aliyun_auth.lua) as a
-- program, for demos and for tests in other languages:
--
--   athost scripts/sim/aliyun-auth.lua port=0 products=pk:secret,... \
--     [host=127.0.0.1] [state=FILE] [devices=pk:dn:secret,...] \
--     [broker_host=H broker_port=N] [broker_adduser=CMD] \
--     [tls_cert=PEM_FILE tls_key=PEM_FILE]
--
-- With tls_cert/tls_key it serves HTTPS, as the real endpoint does.
-- Prints "listening on <host>:<port>" once it accepts requests, then
-- serves until stopped (SIGINT/SIGTERM). broker_adduser=CMD runs
-- `CMD <iotId> <iotToken>` (e.g. `tests/fixtures/broker.sh adduser DIR`)
-- before every device-auth answer, so the MQTT broker accepts what the
-- device is told; the command runs in the background and only the request
-- that needs it waits. verbose=1 logs every answer.
local athost = require("athost")
local auth_mod = require("athost.sim.aliyun_auth")
local simargs = require("athost.sim.args")

local args = ... or {}

local products = {}
for _, f in ipairs(simargs.list(args.products, 2, "products=pk:secret,...")) do
  products[f[1]] = athost.secret(f[2])
end
local devices = {}
for _, f in ipairs(simargs.list(args.devices, 3, "devices=pk:dn:secret,...")) do
  devices[#devices + 1] = { productKey = f[1], deviceName = f[2],
    deviceSecret = athost.secret(f[3]) }
end

local on_credentials
if args.broker_adduser then
  on_credentials = function(user, pass)
    return auth_mod.shell(args.broker_adduser .. " " .. auth_mod.quote(user)
      .. " " .. auth_mod.quote(pass))
  end
end

local auth = auth_mod.new {
  products = products, devices = devices, state = args.state,
  broker = (args.broker_host or args.broker_port) and {
    host = args.broker_host, port = tonumber(args.broker_port) } or nil,
  on_credentials = on_credentials,
  log = args.verbose == "1" and function(s) athost.log(s) end or nil,
}
simargs.serve(auth, args)
