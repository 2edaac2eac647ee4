-- A virtual SIMCom A7670 (A76xx; DIALECTS.md 2, 4.3, 4.4): the dialect the
-- core (athost.sim.core) runs. Identification (AT+CGMI, AT+CGMM, AT+CGMR,
-- ATI, AT+SIMCOMATI), PDP and sockets' network (AT+NETOPEN/NETCLOSE, the
-- 27.007 basics of athost.sim.basic), HTTP(S) (AT+HTTP*, real requests
-- through athost.http11), AT+CRESET; certificates and TLS contexts from
-- athost.sim.simcom_ssl, MQTT (AT+CMQTT*) from athost.sim.simcom_mqtt.
--
-- Choices where DIALECTS.md is silent (change them here, as data):
--   power-on:      no autobaud, echo on, AT+CMEE=0, the boot URCs of 2.6
--                  ("+CPIN: READY", "SMS DONE", "+CGEV: EPS PDN ACT 1",
--                  "+CGEV: ME PDN ACT 8,1"); the PDP context 1 is active
--   AT+NETOPEN:    OK then "+NETOPEN: 0"; 1 without radio or attach (it
--                  activates the PDP context); already open: ERROR.
--                  AT+NETCLOSE when not open: ERROR
--   bearer loss:   (the fault pdp) "+CGEV: NW PDN DEACT 1", then
--                  "+CIPEVENT: NETWORK CLOSED UNEXPECTEDLY" when NETOPEN
--                  was open, then MQTT's "+CMQTTCONNLOST: <idx>,3" and
--                  "+CMQTTNONET" (athost.sim.simcom_mqtt). AT+CMQTTSTART,
--                  AT+NETOPEN or AT+CGACT=1,1 bring the context back.
--   HTTP:          AT+HTTPINIT twice or AT+HTTPTERM without it: ERROR; a
--                  request while one runs: ERROR. Content-Type (CONTENT,
--                  default text/plain) goes with POST and PUT bodies;
--                  USERDATA's "Name: value" lines (separated by \r\n) are
--                  extra headers. HTTPS takes SSL context SSLCFG (else 0).
--                  AT+HTTPHEAD gives the status line and the response's
--                  header lines (names in lower case).
--   HTTP errors:   (knob http_errors) 7xx: 717 no network, 713 DNS, 714
--                  connect, 719 CA missing, 715 handshake, 705 timeout,
--                  706 anything else; 60x: 603 DNS, 601 for all others
local athost = require("athost")
local core = require("athost.sim.core")
local atparse = require("athost.sim.atparse")
local ssl = require("athost.sim.simcom_ssl")
local mqtt = require("athost.sim.simcom_mqtt")

local set_params = core.set_params
local int = atparse.int

local D = {
  name = "a7670",
  autobaud = false,
  echo = true,
  banner = { "+CPIN: READY", "SMS DONE", "+CGEV: EPS PDN ACT 1", "+CGEV: ME PDN ACT 8,1" },
  ident = {
    cgmi = "SIMCOM INCORPORATED", cgmr = "A124B01A7670M7",
    build = "A7670M7_B01V01_240722",
    imsi = "460001234567890", iccid = "89860012345678901234",
  },
  limits = {
    http_data = 153600,      -- AT+HTTPDATA bytes
    http_s = 60,             -- CONNECTTO and RECVTO when not given
  },
  commands = {},
}
local C = D.commands
local L = D.limits
for _, family in ipairs({ ssl.commands, mqtt.commands }) do
  for k, h in pairs(family) do C[k] = h end
end

-- Knobs (athost.sim.core): identification and HTTP here, then MQTT's.
D.knobs = {
  { name = "cgmm", values = { "A7670E-LNXY-UBL", "A7670G-LLSE", "A7608SA-H" },
    default = "A7670E-LNXY-UBL",
    doc = "the model AT+CGMM, ATI and AT+SIMCOMATI name: A76xx parts seen in "
      .. "the field (DIALECTS.md 2.8: match by prefix)" },
  { name = "simcomati", values = { "bare", "simcom" }, default = "bare",
    doc = "ATI and AT+SIMCOMATI print \"Manufacturer: INCORPORATED\" (A76xx "
      .. "firmware, DIALECTS.md 2.8) or \"Manufacturer: SIMCOM INCORPORATED\" "
      .. "(SIM7600, SIM7670G)" },
  { name = "cgmr_form", values = { "prefixed", "bare" }, default = "prefixed",
    doc = "AT+CGMR answers \"+CGMR: <revision>\" or the revision alone" },
  { name = "httpread_form", values = { "plain", "data" }, default = "plain",
    doc = "HTTPREAD and HTTPHEAD pieces as \"+HTTPREAD: <n>\" (A76xx) or "
      .. "\"+HTTPREAD: DATA,<n>\" / \"+HTTPHEAD: DATA,<n>\" (SIM7600)" },
  { name = "http_chunk", values = { "whole", "512", "random" }, default = "whole",
    doc = "AT+HTTPREAD=<off>,<size> sends the bytes as one +HTTPREAD piece, "
      .. "in pieces of 512, or of random sizes (\"chunks may repeat\")" },
  { name = "http_errors", values = { "7xx", "60x" }, default = "7xx",
    doc = "a failed AT+HTTPACTION reports the detailed 7xx codes (713 DNS, "
      .. "714 connect, 715 handshake, 717 no network, 719 CA missing, ...) "
      .. "or the 60x ones (601 network, 603 DNS)" },
  { name = "httpdata_unit", values = { "ms", "s" }, default = "ms",
    doc = "AT+HTTPDATA=<size>,<time>: <time> in milliseconds (the manual's "
      .. "example, drivers) or seconds (the manual's text); unconfirmed" },
}
for _, k in ipairs(mqtt.knobs) do D.knobs[#D.knobs + 1] = k end

function D.reset(m)
  m.st.netopen = false
  m.st.http = nil
  ssl.reset(m)
  mqtt.reset(m)
end

function D.shutdown(m)
  mqtt.shutdown(m)
  m.st.http = nil
end

-- The radio or the context went (AT+CFUN=0, AT+CGATT=0, AT+CGACT=0,1):
-- sockets and MQTT lose the network.
function D.net_down(m)
  if m.st.netopen then
    m.st.netopen = false
    m:urc("+CIPEVENT: NETWORK CLOSED UNEXPECTEDLY")
  end
  mqtt.network_lost(m)
end

D.drop = mqtt.drop

function D.pdp_deact(m)
  m:urc("+CGEV: NW PDN DEACT " .. (m.net.act_cid or 1))
  m.net.pdp = false
  D.net_down(m)
end

---------------------------------------------------------------------------
-- Identification, reset
---------------------------------------------------------------------------

local function revision(m) return m.opts.version or D.ident.cgmr end

local function manufacturer(m)
  return "Manufacturer: " .. (m:knob("simcomati") == "simcom" and "SIMCOM " or "")
    .. "INCORPORATED"
end

C["+CGMM"] = function(m, c)
  if c.op ~= "exec" then return m:error() end
  m:info(m:knob("cgmm"))
  m:ok()
end
C["+GMM"] = C["+CGMM"]

C["+CGMR"] = function(m, c)
  if c.op ~= "exec" then return m:error() end
  m:info((m:knob("cgmr_form") == "prefixed" and "+CGMR: " or "") .. revision(m))
  m:ok()
end
C["+GMR"] = C["+CGMR"]

C.I = function(m, c)
  if c.op ~= "exec" then return m:error() end
  m:info(manufacturer(m))
  m:info("Model: " .. m:knob("cgmm"))
  m:info("Revision: " .. revision(m))
  m:info("IMEI: " .. m.imei)
  m:info("+GCAP: +CGSM,+FCLASS,+DS")
  m:ok()
end

-- The A76xx form of DIALECTS.md 2.8 (a build line after Revision).
C["+SIMCOMATI"] = function(m, c)
  if c.op ~= "exec" then return m:error() end
  for _, l in ipairs({ manufacturer(m), "Model: " .. m:knob("cgmm"),
    "Revision: " .. revision(m), D.ident.build, "QCN:", "IMEI: " .. m.imei,
    "MEID:", "+GCAP: +CGSM,+FCLASS,+DS", "DeviceInfo:" }) do
    m:info(l)
  end
  m:ok()
end

C["+CICCID"] = function(m, c)
  if c.op ~= "exec" then return m:error() end
  m:info("+ICCID: " .. D.ident.iccid)
  m:ok()
end

C["+CRESET"] = core.restart

---------------------------------------------------------------------------
-- Network for sockets
---------------------------------------------------------------------------

C["+NETOPEN"] = function(m, c)
  if c.op == "read" then
    m:info("+NETOPEN: " .. (m.st.netopen and 1 or 0))
    return m:ok()
  end
  if c.op ~= "exec" or m.st.netopen then return m:error() end
  m:ok_then(function(done)
    if m.net.cfun ~= 1 or not m.net.attached then return done("+NETOPEN: 1") end
    m.net.pdp, m.st.netopen = true, true
    done("+NETOPEN: 0")
  end)
end

C["+NETCLOSE"] = function(m, c)
  if c.op ~= "exec" or not m.st.netopen then return m:error() end
  m.st.netopen = false
  m:ok_then(function(done) done("+NETCLOSE: 0") end)
end

---------------------------------------------------------------------------
-- HTTP(S)
---------------------------------------------------------------------------

local function ranged(lo, hi) return function(p) return int(p, lo, hi) end end
local function text(max) return function(p) return #p.value <= max and p.value or nil end end

local HTTP_PARA = {
  URL = function(p)
    local ok, http = pcall(require, "athost.http11")
    return ok and http.parse_url(p.value) and p.value or nil
  end,
  CONTENT = text(256), ACCEPT = text(256), USERDATA = text(256),
  SSLCFG = ranged(0, ssl.limits.ctx_max), CONNECTTO = ranged(20, 120),
  RECVTO = ranged(2, 120), READMODE = ranged(0, 1),
}

C["+HTTPINIT"] = function(m, c)
  if c.op ~= "exec" or m.st.http then return m:error() end
  m.st.http = { para = {} }
  m:ok()
end

C["+HTTPTERM"] = function(m, c)
  if c.op ~= "exec" or not m.st.http then return m:error() end
  m.st.http = nil
  m:ok()
end

C["+HTTPPARA"] = function(m, c)
  local ps = set_params(m, c, 2)
  if not ps then return end
  local h = m.st.http
  local key = ps[1].value:upper()
  local check = HTTP_PARA[key]
  local v = h and check and check(ps[2])
  if v == nil then return m:error() end
  h.para[key] = v
  m:ok()
end

-- AT+HTTPDATA=<size>,<time>: "DOWNLOAD", exactly size bytes, OK.
C["+HTTPDATA"] = function(m, c)
  local ps = set_params(m, c, 2)
  if not ps then return end
  local h = m.st.http
  local size, time = int(ps[1], 1, L.http_data), int(ps[2], 1, 65535)
  if not h or not size or not time then return m:error() end
  m:info("DOWNLOAD")
  local data = m:read_data(size, m:knob("httpdata_unit") == "s" and time * 1000 or time)
  if not data then return m:error() end
  h.data = data
  m:ok()
end

local METHODS = { [0] = "GET", [1] = "POST", [2] = "HEAD", [3] = "DELETE", [4] = "PUT" }

local ERRORS = {
  ["7xx"] = { nonet = 717, dns = 713, connect = 714, ca = 719, tls = 715,
    timeout = 705, other = 706 },
  ["60x"] = { nonet = 601, dns = 603, connect = 601, ca = 601, tls = 601,
    timeout = 601, other = 601 },
}

local function failure(why)
  why = tostring(why)
  if why:find("EAI_", 1, true) then return "dns" end
  if why:find("ETLS", 1, true) then return "tls" end
  if why:find("ETIMEDOUT", 1, true) then return "timeout" end
  if why:find("ECONNREFUSED", 1, true) or why:find("EHOSTUNREACH", 1, true)
      or why:find("ENETUNREACH", 1, true) then
    return "connect"
  end
  return "other"
end

-- "Name: value" lines of USERDATA, separated by CR LF (or a literal \r\n).
local function user_headers(s, into)
  s = s:gsub("\\r\\n", "\r\n")
  for line in s:gmatch("[^\r\n]+") do
    local k, v = line:match("^%s*([^:]+):%s*(.-)%s*$")
    if k then into[k] = v end
  end
end

-- The request; outcome(line) gives +HTTPACTION to ok_then, outcome(nil)
-- says there is none (rebooted, session gone).
local function http_action(m, h, method, gen, outcome)
  local codes = ERRORS[m:knob("http_errors")]
  local function done(status, r)
    if m.gen ~= gen or m.st.http ~= h then return outcome(nil) end
    local body = r and r.body or ""
    h.busy, h.response = false, { status = status, body = body, r = r }
    outcome(string.format("+HTTPACTION: %d,%d,%d", method, status, #body))
  end
  if not m:online() then return done(codes.nonet) end
  local http = require("athost.http11")
  local scheme = http.parse_url(h.para.URL)
  local tls
  if scheme == "https" then
    local why
    tls, why = ssl.tls_options(m, h.para.SSLCFG or 0)
    if not tls then
      if m.trace then athost.log(m.name .. " HTTPS: " .. why) end
      return done(codes.ca)
    end
  end
  local headers = {}
  local name = METHODS[method]
  if h.para.ACCEPT then headers.Accept = h.para.ACCEPT end
  if name == "POST" or name == "PUT" then
    headers["Content-Type"] = h.para.CONTENT or "text/plain"
  end
  user_headers(h.para.USERDATA or "", headers)
  local ok, r, err = pcall(http.request, {
    method = name, url = h.para.URL, headers = headers,
    body = (name == "POST" or name == "PUT") and (h.data or "") or nil,
    timeout = h.ms,
    connect = function(host, port, is_https)
      local o
      if is_https then
        o = {}
        for k, v in pairs(tls) do o[k] = v end
      end
      return m:connect(host, port, o, "http")
    end,
  })
  if not ok or not r then
    if m.trace then athost.log(m.name .. " HTTP: " .. tostring(ok and err or r)) end
    return done(codes[failure(ok and err or r)])
  end
  done(r.status, r)
end

C["+HTTPACTION"] = function(m, c)
  local ps = set_params(m, c, 1)
  if not ps then return end
  local h = m.st.http
  local method = int(ps[1], 0, 4)
  if not h or not method or not h.para.URL or h.busy then return m:error() end
  h.busy, h.response = true, nil
  -- Connect and receive timeouts, as one deadline for the request.
  h.ms = ((h.para.CONNECTTO or L.http_s) + (h.para.RECVTO or L.http_s)) * 1000
  local gen = m.gen
  m:ok_then(function(outcome)
    athost.spawn(http_action, m, h, method, gen, outcome)
  end, h.ms + 5000)
end

-- "+HTTPREAD: <n>" or "+HTTPREAD: DATA,<n>" (knob httpread_form).
local function piece(m, name, n)
  return name .. (m:knob("httpread_form") == "data" and ": DATA," or ": ") .. n
end

-- AT+HTTPREAD? -> +HTTPREAD: LEN,<len>. AT+HTTPREAD=<offset>,<size> ->
-- OK first, then the bytes in pieces (knob http_chunk), then
-- "+HTTPREAD: 0".
C["+HTTPREAD"] = function(m, c)
  local h = m.st.http
  local res = h and h.response
  if c.op == "read" then
    if not h then return m:error() end
    m:info("+HTTPREAD: LEN," .. (res and #res.body or 0))
    return m:ok()
  end
  local ps = set_params(m, c, 1, 2)
  if not ps then return end
  local off = #ps == 2 and int(ps[1], 0) or 0
  local size = int(ps[#ps], 1)
  if not res or not off or not size then return m:error() end
  local body = res.body:sub(off + 1, off + size)
  m:ok()
  local k, i = m:knob("http_chunk"), 1
  while i <= #body do
    local n = k == "whole" and #body or k == "random" and m.rand(700) or tonumber(k)
    local p = body:sub(i, i + n - 1)
    m:info(piece(m, "+HTTPREAD", #p))
    m:raw(p)
    i = i + n
  end
  m:info("+HTTPREAD: 0")
end

-- AT+HTTPHEAD: "+HTTPHEAD: <n>", the response header's n bytes, OK.
C["+HTTPHEAD"] = function(m, c)
  local h = m.st.http
  local r = h and h.response and h.response.r
  if c.op ~= "exec" or not r then return m:error() end
  local lines = { string.format("HTTP/1.1 %d %s", r.status, r.reason or "") }
  local names = {}
  for k in pairs(r.headers or {}) do names[#names + 1] = k end
  table.sort(names)
  for _, k in ipairs(names) do lines[#lines + 1] = k .. ": " .. r.headers[k] end
  local head = table.concat(lines, "\r\n") .. "\r\n\r\n"
  m:info(piece(m, "+HTTPHEAD", #head))
  m:raw(head)
  m:ok()
end

return D
