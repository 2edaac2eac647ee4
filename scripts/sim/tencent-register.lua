-- The local Tencent dynamic-registration service
-- (lib/athost/sim/tencent_dynreg.lua) as a program:
--
--   athost scripts/sim/tencent-register.lua port=0 products=pid:secret,... \
--     [devices=pid:dn:psk,...] [host=127.0.0.1] [tls_cert=PEM tls_key=PEM]
--
-- Prints "listening on [https://]<host>:<port>" once it accepts requests,
-- then one line "POST /register/dev -> <code>" per request, until stopped.
local athost = require("athost")
local dynreg = require("athost.sim.tencent_dynreg")
local simargs = require("athost.sim.args")

local args = ... or {}
local products = {}
for _, f in ipairs(simargs.list(args.products, 2, "products=pid:secret,...")) do
  products[f[1]] = f[2]
end
local reg = dynreg.new { products = products,
  devices = simargs.list(args.devices, 3, "devices=pid:dn:psk,..."),
  log = function(s) io.stdout:write(s, "\n") io.stdout:flush() end }
simargs.serve(reg, args)
