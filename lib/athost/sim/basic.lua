-- The V.250 and 3GPP TS 27.007 commands every virtual modem answers the
-- same way: AT, ATE, ATI, ATZ/AT&F, AT+CMEE, identification (+CGMI, +CGMM,
-- +CGMR, +CGSN, +CIMI, +CCID), +CSQ, +CPIN?, registration (+CREG, +CGREG,
-- +CEREG), +CGATT, +CFUN, +CGDCONT, +CGACT. A dialect's own table is
-- looked up first (athost.sim.core), so a model overrides any of them.
-- The radio state they change is m.net = {cfun, attached, pdp, act_cid};
-- the PDP contexts defined with AT+CGDCONT are m.pdp_ctx (kept in NV, so
-- they survive a reboot). One data bearer: pdp is whether it is up,
-- act_cid which context carries it (default 1).
local atparse = require("athost.sim.atparse")

local M = {}

-- Errors a handler gives for the usual reasons (3GPP TS 27.007 9.2).
M.E_STATE, M.E_PARAM, M.E_FAILED = 3, 50, 767


local C = {}
M.commands = C

-- The parameters of a set command, or nil after answering the refusal.
local function params(m, c)
  local ps = atparse.params(c.rest)
  if not ps then m:fail(M.E_PARAM) end
  return ps
end
M.params = params

-- Parameters of a set command (AT+X=...) with min to max of them, or nil
-- after answering the refusal (ERROR for another form, 50 for a count).
function M.set_params(m, c, min, max)
  if c.op ~= "set" then
    m:error()
    return nil
  end
  -- (params(m, c) written out: a call less for every set command.)
  local ps = atparse.params(c.rest)
  if not ps then
    m:fail(M.E_PARAM)
    return nil
  end
  if #ps < min or #ps > (max or min) then
    m:fail(M.E_PARAM)
    return nil
  end
  return ps
end

C[""] = function(m) m:ok() end

C.E = function(m, c)
  local v = c.rest == "" and 0 or tonumber(c.rest)
  if v ~= 0 and v ~= 1 then return m:error() end
  m:ok()
  m.echo_on = v == 1
end

local function settings(m, c)
  if c.op == "read" then return m:error() end
  m.echo_on, m.cmee = m.dialect.echo ~= false and m:knob("echo_boot") == "on", 0
  m:ok()
end
C.Z, C["&F"] = settings, settings

-- A vendor's reset command (the Air720's AT+RESET, SIMCom's AT+CRESET):
-- OK, then a reboot that keeps the OK on the wire.
function M.restart(m, c)
  if c.op ~= "exec" then return m:error() end
  m:ok()
  m:reboot(true)
end

local function accept(m) m:ok() end
C["&W"], C.V, C.Q, C["&C"], C["&D"] = accept, accept, accept, accept, accept

C.I = function(m, c)
  if c.op ~= "exec" then return m:error() end
  for _, l in ipairs(m.dialect.ident.ati or {}) do m:info(l) end
  m:ok()
end

C["+CMEE"] = function(m, c)
  if c.op == "read" then
    m:info("+CMEE: " .. m.cmee)
    return m:ok()
  end
  local ps = params(m, c)
  if not ps then return end
  local v = atparse.int(ps[1] or { value = "0" }, 0, 2)
  if c.op ~= "set" or not v then return m:fail(M.E_PARAM) end
  m.cmee = v
  m:ok()
end

local function ident(field)
  return function(m, c)
    if c.op ~= "exec" then return m:error() end
    local v = field == "cgmr" and m.opts.version or m.dialect.ident[field]
    if field == "imei" then v = m.imei end
    m:info(v)
    m:ok()
  end
end
C["+CGMI"], C["+GMI"] = ident("cgmi"), ident("cgmi")
C["+CGMM"], C["+GMM"] = ident("cgmm"), ident("cgmm")
C["+CGMR"], C["+GMR"] = ident("cgmr"), ident("cgmr")
C["+CGSN"], C["+GSN"] = ident("imei"), ident("imei")
C["+CIMI"] = ident("imsi")

C["+CCID"] = function(m, c)
  if c.op ~= "exec" and c.op ~= "read" then return m:error() end
  m:info(m.dialect.ident.iccid)
  m:ok()
end
C["+ICCID"] = C["+CCID"]

C["+CSQ"] = function(m, c)
  if c.op ~= "exec" then return m:error() end
  m:info(string.format("+CSQ: %d,99", m.net.cfun == 1 and (tonumber(m.opts.csq) or 24) or 99))
  m:ok()
end

C["+CPIN"] = function(m, c)
  if c.op ~= "read" then return m:fail(M.E_STATE) end
  m:info("+CPIN: READY")
  m:ok()
end

local function reg(name)
  return function(m, c)
    if c.op == "set" then return m:ok() end
    if c.op ~= "read" then return m:error() end
    m:info(string.format("%s: 0,%d", name, m.net.attached and m.net.cfun == 1 and 1 or 0))
    m:ok()
  end
end
C["+CREG"], C["+CGREG"], C["+CEREG"] = reg("+CREG"), reg("+CGREG"), reg("+CEREG")

C["+CGATT"] = function(m, c)
  if c.op == "read" then
    m:info("+CGATT: " .. ((m.net.attached and m.net.cfun == 1) and 1 or 0))
    return m:ok()
  end
  local ps = params(m, c)
  if not ps then return end
  local v = atparse.int(ps[1], 0, 1)
  if c.op ~= "set" or not v then return m:fail(M.E_PARAM) end
  if v == 1 and m.net.cfun ~= 1 then return m:fail(M.E_STATE) end
  m:ok()
  m.net.attached = v == 1
  if v == 0 then m:net_down() end
end

-- AT+CFUN=0 takes the radio (and the PDP context) away; AT+CFUN=1 from
-- another mode brings them back with the default context (reference 003's
-- second way after +PDP DEACT). AT+CFUN=1 while already 1 changes nothing.
C["+CFUN"] = function(m, c)
  if c.op == "read" then
    m:info("+CFUN: " .. m.net.cfun)
    return m:ok()
  end
  local ps = params(m, c)
  if not ps then return end
  local v, rst = atparse.int(ps[1], 0, 4), atparse.int(ps[2] or { value = "0" }, 0, 1)
  if c.op ~= "set" or not v or not rst then return m:fail(M.E_PARAM) end
  m:ok()
  if rst == 1 then return m:reboot(true) end
  if v == 1 then
    if m.net.cfun ~= 1 then
      m.net = { cfun = 1, attached = true, pdp = true }
      m:net_up()
    end
  else
    m.net.cfun = v
    m:net_down()
  end
end

-- The defined PDP contexts, cid -> {type, apn}; cid 1 is there from the
-- factory (reference 003: "a PDP context is active after registration").
local function contexts(m)
  m.pdp_ctx = m.pdp_ctx or { [1] = { type = "IP", apn = m.apn or "" } }
  return m.pdp_ctx
end

local PDP_TYPES = { IP = true, IPV6 = true, IPV4V6 = true }

-- AT+CGDCONT=<cid>[,"<type>"[,"<apn>"]]: defines (or, with the cid
-- alone, undefines) a context; AT+CGDCONT? lists them.
C["+CGDCONT"] = function(m, c)
  local ctx = contexts(m)
  if c.op == "read" then
    local cids = {}
    for cid in pairs(ctx) do cids[#cids + 1] = cid end
    table.sort(cids)
    for _, cid in ipairs(cids) do
      local up = m.net.pdp and (m.net.act_cid or 1) == cid
      m:info(string.format('+CGDCONT: %d,"%s","%s","%s",0,0', cid, ctx[cid].type,
        ctx[cid].apn, up and "10.0.0.2" or "0.0.0.0"))
    end
    return m:ok()
  end
  if c.op ~= "set" then return m:ok() end
  local ps = params(m, c)
  if not ps then return end
  local cid = atparse.int(ps[1], 1, 24)
  if not cid or #ps > 7 then return m:fail(M.E_PARAM) end
  if #ps == 1 then
    ctx[cid] = nil
    return m:ok()
  end
  local typ = ps[2].value:upper()
  if not PDP_TYPES[typ] then return m:fail(M.E_PARAM) end
  ctx[cid] = { type = typ, apn = ps[3] and ps[3].value or "" }
  m:ok()
end

-- AT+CGACT=<state>[,<cid>]: activates a defined context (the bearer comes
-- back, reference 003's first way after +PDP DEACT) or deactivates it. A
-- model with the knob cgact=refuse (athost.sim.luat_mqtt) refuses to
-- activate, as some firmware does: then only AT+CFUN=0/1 or a reset help.
C["+CGACT"] = function(m, c)
  local ctx = contexts(m)
  if c.op == "read" then
    local cids = {}
    for cid in pairs(ctx) do cids[#cids + 1] = cid end
    table.sort(cids)
    for _, cid in ipairs(cids) do
      local up = m.net.pdp and (m.net.act_cid or 1) == cid
      m:info(string.format("+CGACT: %d,%d", cid, up and 1 or 0))
    end
    return m:ok()
  end
  local ps = params(m, c)
  if not ps then return end
  local v = atparse.int(ps[1], 0, 1)
  local cid = ps[2] and atparse.int(ps[2], 1, 24)
  if c.op ~= "set" or not v or (ps[2] and not cid) then return m:fail(M.E_PARAM) end
  cid = cid or m.net.act_cid or 1
  if not ctx[cid] then return m:fail(M.E_STATE) end
  if v == 1 then
    if not (m.net.cfun == 1 and m.net.attached) then return m:fail(M.E_STATE) end
    if m.kv and m.kv.cgact == "refuse" then return m:fail(M.E_FAILED) end
    m:ok()
    local was = m.net.pdp
    m.net.pdp, m.net.act_cid = true, cid
    if not was then m:net_up() end
    return
  end
  m:ok()
  if m.net.pdp and (m.net.act_cid or 1) == cid then
    m.net.pdp = false
    m:net_down()
  end
end

return M
