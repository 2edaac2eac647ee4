-- A virtual Luat Air780E / Air780EP (AirM2M LTE Cat.1 AT firmware,
-- DIALECTS.md 3 and 4.5): the Air720's command set, run by the Air720's
-- handlers (athost.sim.air720, athost.sim.luat_mqtt); what differs is
-- data here and knobs.
--
-- As documented (DIALECTS.md 3):
--   identification   AT+CGMI -> +CGMI: "AirM2M", AT+CGMM -> +CGMM:
--                    "Air780EP", AT+CGMR -> +CGMR: "AirM2M_780EP_V1007_LTE_AT",
--                    ATI -> AirM2M_780EP_V1007_LTE_AT (one line)
--   HTTP             AT+HTTPSSL=1 for HTTPS; AT+HTTPDATA at most 3356
--                    bytes (AT build) or 130048 (LSAT build), 1000-120000
--                    ms; +HTTPREAD: <len>, the bytes, OK
--   MQTT             topic <= 256 bytes, message <= 4100 (AT+MPUB,
--                    AT+MPUBEX, incoming), 4 cache slots; AT+MPUBEX also
--                    without <len> (ends at 0x1A or after 5 s idle)
--   bearer           lost: +CGEV: NW PDN DEACT 1 (or ME ...); back:
--                    +CGEV: ME PDN ACT 1,0
-- Where DIALECTS.md says "unconfirmed" or shows two forms, a knob has every
-- reading (D.knobs; README.md lists them). Not documented for the Air780E
-- and taken from the Air720 model: the power-on banner, autobaud, echo on
-- after power-on, the files (AT+FS*), AT+SSLCFG for context 88, the error
-- numbers.
local air720 = require("athost.sim.air720")
local luat_mqtt = require("athost.sim.luat_mqtt")

local D = setmetatable({
  name = "air780e",
  ident = {
    cgmi = "AirM2M", imsi = "460040000000001", iccid = "89860400000000000001",
  },
  limits = {
    http_data = 3356,         -- AT+HTTPDATA bytes, AT build (knob build)
    http_ms = 60000,
    fs_write = 10240,
    fs_name = 64,
  },
  mqtt_limits = {
    field = 256, topic = 256,
    mpub = 4100, mpubex = 4100, message = 4100,
    mpubex_ms = 20000,
    mpubex_idle = 5000,       -- AT+MPUBEX without <len>
    slots = 4,
    connect_ms = 15000,
  },
  commands = {},
}, { __index = air720 })
local C = D.commands
for k, h in pairs(air720.commands) do C[k] = h end

-- A knob of the Air720's list, shared, or (with v) a copy with another
-- default for this model.
local function air720_knob(name, v)
  for _, k in ipairs(air720.knobs) do
    if k.name == name then
      if not v then return k end
      return { name = k.name, values = k.values, default = v, doc = k.doc }
    end
  end
  error("air780e: the Air720 model has no knob " .. name)
end

D.knobs = {
  { name = "ident", values = { "prefixed", "bare" }, default = "prefixed",
    doc = "AT+CGMI/CGMM/CGMR answer '+CGMI: \"AirM2M\"' (the Air780E manual) "
      .. "or the bare text 'AirM2M' (DIALECTS.md 3: the prefix and quotes "
      .. "are optional)" },
  { name = "variant", values = { "Air780EP", "Air780E" }, default = "Air780EP",
    doc = "the part: AT+CGMM \"Air780EP\" and AT+CGMR/ATI "
      .. "\"AirM2M_780EP_V1007_LTE_AT\" (the manual's), or \"Air780E\" and "
      .. "\"AirM2M_780E_V1007_LTE_AT\" (by the same pattern, unconfirmed)" },
  { name = "sapbr", values = { "not_needed", "needed", "absent" },
    default = "not_needed",
    doc = "AT+SAPBR before HTTP (unconfirmed): not needed (accepted as on the "
      .. "Air720; the manual's examples have no SAPBR step), needed "
      .. "(+HTTPACTION: <m>,601 until AT+SAPBR=1,1), or absent (AT+SAPBR "
      .. "answers ERROR and is not needed)" },
  { name = "httpssl", values = { "needed", "url" }, default = "needed",
    doc = "an https:// URL needs AT+HTTPSSL=1 first (\"enables HTTPS\"; "
      .. "without it +HTTPACTION: <m>,601), or the URL's scheme alone decides" },
  { name = "build", values = { "at", "lsat" }, default = "at",
    doc = "the firmware build: AT (AT+HTTPDATA at most 3356 bytes) or LSAT "
      .. "(at most 130048)" },
  { name = "user_defined", values = { "headers", "ignored" }, default = "headers",
    doc = "AT+HTTPPARA=\"USER_DEFINED\",\"Name: value\" (semantics unconfirmed): "
      .. "request header lines, or ignored (only CONTENT sets Content-Type)" },
  { name = "pdp_urc", values = { "cgev", "me", "both", "me_pdp" }, default = "cgev",
    doc = "the bearer loss: \"+CGEV: NW PDN DEACT 1\", \"+CGEV: ME PDN DEACT 1\", "
      .. "or either followed by the Air720's \"+PDP DEACT\" (whether the "
      .. "Air780E still prints it is unconfirmed)" },
  { name = "pdn_act", values = { "on", "off" }, default = "on",
    doc = "the bearer's return (AT+CGACT=1, AT+CFUN=0 then 1) prints "
      .. "\"+CGEV: ME PDN ACT 1,0\" after OK, or nothing" },
  -- The manual's captured output has no space ("+HTTPACTION:0,200,1348").
  air720_knob("http_space", "tight"),
  air720_knob("http_dup"),
}
for _, k in ipairs(luat_mqtt.knobs) do
  if k.name ~= "pdp_urc" then D.knobs[#D.knobs + 1] = k end
end

function D.limit(m, k)
  if k == "http_data" and m:knob("build") == "lsat" then return 130048 end
  return D.limits[k]
end

-- HTTP goes out once the PDP context is up, unless the knob sapbr makes
-- the Air720's bearer step needed; an https:// URL may need HTTPSSL=1.
function D.http_ready(m, h)
  if not m:online() then return false end
  if m:knob("sapbr") == "needed" and not m.st.bearer.open then return false end
  local url = h.para.URL or ""
  if m:knob("httpssl") == "needed" and url:lower():find("^https://")
      and h.ssl ~= 1 then
    return false
  end
  return true
end

function D.net_up(m)
  if m:knob("pdn_act") == "on" then
    m:urc(string.format("+CGEV: ME PDN ACT %d,0", m.net.act_cid or 1))
  end
end

C["+SAPBR"] = function(m, c)
  if m:knob("sapbr") == "absent" then return m:error() end
  return air720.commands["+SAPBR"](m, c)
end

---------------------------------------------------------------------------
-- Identification
---------------------------------------------------------------------------

local function ident_text(m, field)
  local part = m:knob("variant")
  if field == "cgmi" then return D.ident.cgmi end
  if field == "cgmm" then return part end
  return m.opts.version or ("AirM2M_" .. part:sub(4) .. "_V1007_LTE_AT")
end

-- +CGMx: "<text>" (or the text alone, knob ident); AT+GMx bare.
local function ident(field, prefix)
  return function(m, c)
    if c.op ~= "exec" then return m:error() end
    local v = ident_text(m, field)
    if prefix and m:knob("ident") == "prefixed" then
      v = string.format('%s: "%s"', prefix, v)
    end
    m:info(v)
    m:ok()
  end
end
C["+CGMI"], C["+GMI"] = ident("cgmi", "+CGMI"), ident("cgmi")
C["+CGMM"], C["+GMM"] = ident("cgmm", "+CGMM"), ident("cgmm")
C["+CGMR"], C["+GMR"] = ident("cgmr", "+CGMR"), ident("cgmr")
C.I = ident("cgmr")

return D
