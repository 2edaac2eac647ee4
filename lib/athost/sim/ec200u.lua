-- A virtual Quectel EC200U (DIALECTS.md 1, 4.1, 4.2, 5): the dialect the
-- core (athost.sim.core) runs. Identification (AT+CGMI/CGMM/CGMR, ATI,
-- AT+QGMR), PDP contexts (AT+QICSGP, AT+QIACT, AT+QIDEACT, AT+CGPADDR),
-- and the Quectel command families: files and TLS contexts (athost.sim.
-- quectel_files), MQTT (athost.sim.quectel_mqtt), HTTP(S) (athost.sim.
-- quectel_http). Faults: drop (+QMTSTAT), pdp (+QIURC: "pdpdeact",<cid>)
-- and the core's reboot, silent, noise, split.
--
-- Choices where DIALECTS.md is silent (change them here, as data):
--   after power-on:  no autobaud, echo on (a fresh boot restores ATE1),
--                    AT+CMEE=0, the banner below
--   PDP:             context 1 is the attach bearer, up after power-on and
--                    after AT+CFUN=0/1 (its state is the core's m.net.pdp,
--                    shared with AT+CGACT); contexts 2-16 come up with
--                    AT+QIACT. AT+QICSGP settings survive a reboot (NV).
--                    AT+QIACT? lists the active ones as +QIACT: <cid>,1,
--                    <type>,"<ip>". Re-defining or re-activating an active
--                    context: the knob qiact_active
--   bearer loss:     +QIURC: "pdpdeact",<cid> for every active context; the
--                    MQTT clients on it close (knob pdp_qmtstat); AT+QIACT
--                    brings it back (AT+QIDEACT first is accepted too)
--   refusals:        +CME ERROR: <n> per AT+CMEE (text or number under
--                    AT+CMEE=2: knob cme_form); a context not up or a radio
--                    off 3, bad parameters 50; Quectel's file (4xx) and
--                    HTTP (7xx) codes stay numbers (no texts are known)
local core = require("athost.sim.core")
local atparse = require("athost.sim.atparse")
local qfiles = require("athost.sim.quectel_files")
local qmqtt = require("athost.sim.quectel_mqtt")
local qhttp = require("athost.sim.quectel_http")

local E_STATE, E_PARAM = core.E_STATE, core.E_PARAM
local set_params = core.set_params

local D = {
  name = "ec200u",
  autobaud = false,
  echo = true,
  banner = { "RDY", "+CFUN: 1", "+CPIN: READY", "+QUSIM: 1", "+QIND: SMS DONE" },
  ident = {
    cgmi = "Quectel", cgmm = "EC200U", cgmr = "EC200UCNAAR03A14M08",
    qgmr_suffix = "_01.200.01.200",
    imsi = "460080000000001", iccid = "89860823000000000001",
  },
  limits = { contexts = 16 },
  commands = {},
}
local C = D.commands
for _, family in ipairs({ qfiles, qmqtt, qhttp }) do
  for k, h in pairs(family.commands) do C[k] = h end
end

-- Knobs (athost.sim.core): the EC200U's own, then those of the command
-- families it takes.
D.knobs = {
  { name = "cgmr_prefix", values = { "none", "revision" }, default = "none",
    doc = "AT+CGMR's line: the revision alone (\"EC200UCNAAR03A14M08\") or "
      .. "with ATI's prefix (\"Revision: EC200UCNAAR03A14M08\"; DIALECTS.md "
      .. "1.11: unconfirmed on EC200U)" },
  { name = "qgmr_form", values = { "suffix", "bare" }, default = "suffix",
    doc = "AT+QGMR's line: the revision with a build suffix "
      .. "(\"EC200UCNAAR03A14M08_01.200.01.200\", as EG25's) or the revision "
      .. "alone (DIALECTS.md 1.11: EC200U's output unconfirmed)" },
  { name = "cme_form", values = { "text", "numeric", "mixed" }, default = "text",
    doc = "errors under AT+CMEE=2: \"+CME ERROR: operation not allowed\" "
      .. "(text where one is known), \"+CME ERROR: 3\" (numeric), or either "
      .. "at random per error, as on the same EC200U firmware (DIALECTS.md "
      .. "1.11)" },
  { name = "qiact_active", values = { "error", "ok" }, default = "error",
    doc = "AT+QIACT=<cid> and AT+QICSGP=<cid>,... while that context is "
      .. "already up (context 1 is, from attach): refused with +CME ERROR: 3 "
      .. "as on EC200U (DIALECTS.md 1.7), or OK with nothing changed" },
}
for _, family in ipairs({ qfiles, qmqtt, qhttp }) do
  for _, k in ipairs(family.knobs) do D.knobs[#D.knobs + 1] = k end
end

-- Under AT+CMEE=2 a number instead of the text (knob cme_form).
function D.cme_line(m, n)
  if m.cmee ~= 2 then return nil end
  local form = m:knob("cme_form")
  if form == "numeric" or (form == "mixed" and m.rand(2) == 1) then
    return "+CME ERROR: " .. n
  end
  return nil
end

---------------------------------------------------------------------------
-- Power, faults
---------------------------------------------------------------------------

function D.reset(m)
  m.st.act = {}               -- cid -> IP of an active context other than 1
  m.st.ip1 = string.format("10.%d.%d.%d", m.rand(256) - 1, m.rand(256) - 1, m.rand(252) + 1)
  qfiles.reset(m)
  qmqtt.reset(m)
  qhttp.reset(m)
end

function D.shutdown(m)
  qmqtt.shutdown(m)
end

-- The radio, attach or context 1 went away (AT+CFUN=0, AT+CGATT=0,
-- AT+CGACT=0): every context with it.
function D.net_down(m)
  m.st.act = {}
  qmqtt.net_down(m)
end

D.drop = qmqtt.drop

-- Whether context cid carries data.
local function radio_up(m) return m.net.cfun == 1 and m.net.attached end

function D.bearer_up(m, cid)
  if not radio_up(m) then return false end
  if cid == 1 then return m.net.pdp and true or false end
  return m.st.act[cid] ~= nil
end

-- The contexts up now, in order.
local function active(m)
  local cids = {}
  for cid = 1, D.limits.contexts do
    if D.bearer_up(m, cid) then cids[#cids + 1] = cid end
  end
  return cids
end

local function deactivate(m, cid, quiet)
  if cid == 1 then m.net.pdp = false else m.st.act[cid] = nil end
  qmqtt.pdp_deact(m, cid, quiet)
end

-- Fault pdp: the network deactivates every active context.
function D.pdp_deact(m)
  for _, cid in ipairs(active(m)) do
    m:urc(string.format('+QIURC: "pdpdeact",%d', cid))
    deactivate(m, cid)
  end
end

---------------------------------------------------------------------------
-- Identification
---------------------------------------------------------------------------

local function revision(m) return m.opts.version or D.ident.cgmr end

C.I = function(m, c)
  if c.op ~= "exec" then return m:error() end
  m:info(D.ident.cgmi)
  m:info(D.ident.cgmm)
  m:info("Revision: " .. revision(m))
  m:ok()
end

C["+CGMR"] = function(m, c)
  if c.op ~= "exec" then return m:error() end
  m:info((m:knob("cgmr_prefix") == "revision" and "Revision: " or "") .. revision(m))
  m:ok()
end
C["+GMR"] = C["+CGMR"]

C["+QGMR"] = function(m, c)
  if c.op ~= "exec" then return m:error() end
  m:info(revision(m) .. (m:knob("qgmr_form") == "suffix" and D.ident.qgmr_suffix or ""))
  m:ok()
end

---------------------------------------------------------------------------
-- PDP contexts
---------------------------------------------------------------------------

-- AT+QICSGP settings, cid -> {type, apn, user, pass, auth}; NV.
local function profile(m, cid)
  m.qicsgp = m.qicsgp or {}
  m.qicsgp[cid] = m.qicsgp[cid] or { type = 1, apn = "", user = "", pass = "", auth = 0 }
  return m.qicsgp[cid]
end

local function cid_param(p) return atparse.int(p, 1, D.limits.contexts) end

-- AT+QICSGP=<cid>[,<type>,"<apn>"[,"<user>","<pass>"[,<auth>]]]
C["+QICSGP"] = function(m, c)
  local ps = set_params(m, c, 1, 6)
  if not ps then return end
  local cid = cid_param(ps[1])
  if not cid or #ps == 2 or #ps == 4 then return m:fail(E_PARAM) end
  local p = profile(m, cid)
  if #ps == 1 then
    m:info(string.format('+QICSGP: %d,"%s","%s","%s",%d', p.type, p.apn, p.user, p.pass, p.auth))
    return m:ok()
  end
  local typ = atparse.int(ps[2], 1, 3)
  local auth = ps[6] and atparse.int(ps[6], 0, 3) or 0
  if not typ or not auth then return m:fail(E_PARAM) end
  if D.bearer_up(m, cid) then
    if m:knob("qiact_active") == "error" then return m:fail(E_STATE) end
    return m:ok()
  end
  m.qicsgp[cid] = { type = typ, apn = ps[3].value, user = ps[4] and ps[4].value or "",
    pass = ps[5] and ps[5].value or "", auth = auth }
  m:ok()
end

-- AT+QIACT=<cid> (AT+QIACT? lists the active contexts).
C["+QIACT"] = function(m, c)
  if c.op == "read" then
    for _, cid in ipairs(active(m)) do
      m:info(string.format('+QIACT: %d,1,%d,"%s"', cid, profile(m, cid).type,
        cid == 1 and m.st.ip1 or m.st.act[cid]))
    end
    return m:ok()
  end
  local ps = set_params(m, c, 1)
  if not ps then return end
  local cid = cid_param(ps[1])
  if not cid then return m:fail(E_PARAM) end
  if not radio_up(m) then return m:fail(E_STATE) end
  if D.bearer_up(m, cid) then
    if m:knob("qiact_active") == "error" then return m:fail(E_STATE) end
    return m:ok()
  end
  if cid == 1 then
    m.net.pdp, m.net.act_cid = true, 1
  else
    m.st.act[cid] = string.format("10.%d.%d.%d", m.rand(256) - 1, m.rand(256) - 1,
      m.rand(252) + 1)
  end
  m:ok()
end

-- AT+QIDEACT=<cid>: OK; the context's MQTT clients close without a word.
C["+QIDEACT"] = function(m, c)
  local ps = set_params(m, c, 1)
  if not ps then return end
  local cid = cid_param(ps[1])
  if not cid then return m:fail(E_PARAM) end
  m:ok()
  if D.bearer_up(m, cid) then deactivate(m, cid, true) end
end

-- AT+CGPADDR[=<cid>]: +CGPADDR: <cid>,"<ip>" ("0.0.0.0" while down).
C["+CGPADDR"] = function(m, c)
  local cids = {}
  if c.op == "set" then
    local ps = set_params(m, c, 1)
    if not ps then return end
    cids[1] = cid_param(ps[1])
    if not cids[1] then return m:fail(E_PARAM) end
  elseif c.op == "exec" then
    cids = { 1 }
    for cid in pairs(m.qicsgp or {}) do if cid ~= 1 then cids[#cids + 1] = cid end end
    table.sort(cids)
  else
    return m:error()
  end
  for _, cid in ipairs(cids) do
    local ip = D.bearer_up(m, cid) and (cid == 1 and m.st.ip1 or m.st.act[cid]) or "0.0.0.0"
    m:info(string.format('+CGPADDR: %d,"%s"', cid, ip))
  end
  m:ok()
end

return D
