-- Probes a module: who it is and whether it is ready for data.
--
--   athost scripts/probe.lua -p /dev/ttyUSB0
--
-- The profile line is the module's profile as athost.modem detects it
-- (each profile's `detect` words in AT+CGMI / AT+CGMM / AT+CGMR / ATI);
-- manufacturer, model and revision are AT+CGMI / AT+CGMM / AT+CGMR as
-- athost.modem reads them: the optional "+CGMx: " prefix and quotes
-- removed (the Air780E's '+CGMM: "Air780EP"', DIALECTS.md 3).
local athost = require("athost")
local modem = require("athost.modem")

local args = ...
local port = athost.port()

athost.step("autobaud")
local m = modem.new(port, { profile = args.profile })
m:autobaud(args.tries)
m:cmd("ATE0")

athost.step("identify")
local ok, err = pcall(m.identify, m)
local info = { port = port.name }
info.manufacturer = m.info.cgmi
info.model = m.info.cgmm
info.revision = m.info.cgmr
info.ati = m.info.ati
info.profile = ok and m.profile.name or ("unknown: " .. tostring(err))

athost.step("status")
local function query(cmd, pattern)
  local r = port:cmd(cmd, { timeout = 3000, reply = pattern and ("^" .. pattern) or false })
  if not r then return nil end
  return r.line or r.lines[1]
end
local imei = port:cmd("AT+CGSN", { timeout = 3000, reply = false })
info.imei = imei and table.concat(imei.lines, " "):match("(%d+)")
info.sim = query("AT+CPIN?", "%+CPIN:")
info.signal = query("AT+CSQ", "%+CSQ:")
info.registration = query("AT+CGREG?", "%+CGREG:")
info.attached = query("AT+CGATT?", "%+CGATT:")

local order = { "port", "profile", "manufacturer", "model", "revision", "ati", "imei",
  "sim", "signal", "registration", "attached" }
for _, k in ipairs(order) do
  print(string.format("%-13s %s", k, info[k] == nil and "-" or tostring(info[k])))
end
athost.emit("probe", info)
return ok
