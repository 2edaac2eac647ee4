-- Many virtual Air720s in one process, for bench/station.sh: model i
-- serves a pty linked as DIR/ttyAIR<i>, with its own IMEI.
--
--   athost bench/modems.lua n=256 dir=/tmp/x [imei=86299141000000]
--       [brokers=ADDR:PORT,ADDR:PORT,...] [any model option]
--
-- Prints "ready N" once every link exists, then serves until SIGTERM.
-- brokers= spreads the models' MQTT connections over several brokers
-- (model i: broker number (i - 1) % #brokers + 1), whatever host the
-- flow names. Other key=value arguments (csq=, faults) go to every model.
local athost = require("athost")
local sim = require("athost.sim")
local core = require("athost.sim.core")

local args = ... or {}
local n = tonumber(args.n or "1")
local dir = args.dir
if not dir or not n or n < 1 then
  error("usage: athost bench/modems.lua n=N dir=DIR [imei=14 DIGITS] [model options]", 0)
end
local base = tonumber(args.imei or "86299141000000")
local brokers = {}
for b in (args.brokers or ""):gmatch("[^,]+") do brokers[#brokers + 1] = b end

local models = {}
for i = 1, n do
  local opts = {}
  for k, v in pairs(args) do
    if k ~= "n" and k ~= "dir" and k ~= "imei" and k ~= "brokers" then opts[k] = v end
  end
  if #brokers > 0 then opts.broker = brokers[(i - 1) % #brokers + 1] end
  opts.link = string.format("%s/ttyAIR%d", dir, i)
  opts.imei = core.luhn(string.format("%014d", base + i))
  models[i] = assert(sim.start("air720", opts))
end
print("ready " .. n)
io.stdout:flush()
athost.log(string.format("%d Air720 models on %s/ttyAIR1..%d", n, dir, n))
for _, m in ipairs(models) do m:wait() end
