-- A virtual Luat Air720 (AirM2M LTE AT firmware V461, references 000, 001,
-- 003): the dialect the core (athost.sim.core) runs. Bearer (AT+SAPBR),
-- HTTP (AT+HTTP*, real requests through athost.http11), files (AT+FS*),
-- TLS settings and MQTT (athost.sim.luat_mqtt), AT+RESET.
--
-- Choices where the references are silent (change them here, as data):
--   after power-on:  autobaud (only an upper-case "AT" is answered), echo
--                    ON (flows send ATE0), AT+CMEE=0, the banner below
--   prompts:         ">" alone, no CR/LF, no space, for AT+FSWRITE and
--                    AT+MPUBEX (references 001, 003); "DOWNLOAD" as a line
--                    for AT+HTTPDATA (000)
--   data too slow:   after AT+HTTPDATA's ms / AT+FSWRITE's seconds the
--                    bytes so far are dropped and the answer is "ERROR";
--                    bytes beyond the count start the next command line
--                    (which then is not an AT command: "ERROR")
--   wrong states:    "+CME ERROR: 3" (CMEE=1) / "ERROR"; bad parameters 50
--   HTTP statuses:   601 no bearer or a network error (refused, reset,
--                    TLS, timeout), 603 DNS; HTTPACTION while one runs is
--                    refused (3)
--   +HTTPACTION:     after OK or before it (core knob order), with or
--                    without a space (knob http_space, +HTTPREAD too),
--                    once or twice (knob http_dup)
local athost = require("athost")
local core = require("athost.sim.core")
local atparse = require("athost.sim.atparse")
local luat_mqtt = require("athost.sim.luat_mqtt")

local E_STATE, E_PARAM = core.E_STATE, core.E_PARAM
local params = core.params

local D = {
  name = "air720",
  autobaud = true,
  echo = true,
  banner = { "RDY", "+CFUN: 1", "+CPIN: READY", "SMS Ready" },
  ident = {
    cgmi = "AirM2M", cgmm = "Air720", cgmr = "AirM2M_720_V461_LTE_AT",
    imsi = "460040000000001", iccid = "89860400000000000001",
  },
  shut_ok = "SHUT OK",
  limits = {
    http_data = 102400,       -- AT+HTTPDATA bytes
    http_ms = 60000,          -- one request, connect to last byte
    fs_write = 10240,         -- AT+FSWRITE bytes per call
    fs_name = 64,
  },
  commands = {},
}
local C = D.commands
for k, h in pairs(luat_mqtt.commands) do C[k] = h end

-- Knobs (athost.sim.core): the Air720's own (HTTP, files), then those of
-- the Luat MQTT commands it takes from athost.sim.luat_mqtt.
D.knobs = {
  { name = "http_space", values = { "space", "tight" }, default = "space",
    doc = "+HTTPACTION and +HTTPREAD with a space after the colon "
      .. "(\"+HTTPACTION: 1,200,5\", reference 000) or without "
      .. "(\"+HTTPACTION:1,200,5\", the Air780E examples)" },
  { name = "http_dup", values = { "off", "on" }, default = "off",
    doc = "+HTTPACTION once, or twice in a row as an Air780E HTTPS "
      .. "example prints it" },
}
for _, k in ipairs(luat_mqtt.knobs) do D.knobs[#D.knobs + 1] = k end

-- A limit of this model: a related model (athost.sim.air780e) takes these
-- handlers and differs in data, or by a knob through dialect.limit(m, k).
local function limit(m, k)
  local d = m.dialect
  return d.limit and d.limit(m, k) or d.limits[k]
end

-- Whether an HTTP request may go out: the Air720 needs the SAPBR bearer
-- (reference 000); another model says otherwise in its dialect.
function D.http_ready(m)
  return m:online() and m.st.bearer.open
end

function D.reset(m)
  m.st.bearer = { open = false, para = {} }
  m.st.http = nil
  luat_mqtt.reset(m)
end

function D.shutdown(m)
  luat_mqtt.shutdown(m)
  m.st.http = nil
end

function D.net_down(m)
  luat_mqtt.net_down(m)
  m.st.bearer.open = false
end

D.drop = luat_mqtt.drop

function D.pdp_deact(m)
  luat_mqtt.pdp_deact(m)
  m.st.bearer.open = false
end

local set_params = core.set_params

---------------------------------------------------------------------------
-- Identity, reset
---------------------------------------------------------------------------

C.I = function(m, c)
  if c.op ~= "exec" then return m:error() end
  local id = m.dialect.ident
  m:info(id.cgmi)
  m:info(id.cgmm)
  m:info("Revision:" .. (m.opts.version or id.cgmr))
  m:ok()
end

C["+RESET"] = core.restart

---------------------------------------------------------------------------
-- Bearer: AT+SAPBR=<cmd>,<cid>[,"<tag>","<value>"]
---------------------------------------------------------------------------

C["+SAPBR"] = function(m, c)
  local ps = set_params(m, c, 2, 4)
  if not ps then return end
  local op, cid = atparse.int(ps[1], 0, 4), atparse.int(ps[2], 1, 3)
  if not op or not cid then return m:fail(E_PARAM) end
  local b = m.st.bearer
  if op == 3 then
    if #ps ~= 4 then return m:fail(E_PARAM) end
    b.para[ps[3].value:upper()] = ps[4].value
    return m:ok()
  elseif #ps ~= 2 then
    return m:fail(E_PARAM)
  elseif op == 1 then
    if b.open or not m:online() then return m:fail(E_STATE) end
    b.open = true
    b.ip = string.format("10.%d.%d.%d", math.random(0, 255),
      math.random(0, 255), math.random(2, 254))
  elseif op == 0 then
    if not b.open then return m:fail(E_STATE) end
    b.open = false
  elseif op == 2 then
    m:info(string.format('+SAPBR: %d,%d,"%s"', cid, b.open and 1 or 3,
      b.open and b.ip or "0.0.0.0"))
  else
    m:info('+SAPBR: CONTYPE: "' .. (b.para.CONTYPE or "GPRS") .. '"')
    m:info('+SAPBR: APN: "' .. (b.para.APN or "") .. '"')
  end
  m:ok()
end

---------------------------------------------------------------------------
-- HTTP
---------------------------------------------------------------------------

local HTTP_TAGS = { URL = true, USER_DEFINED = true, CONTENT = true,
  CID = true, UA = true, USERDATA = true, REDIR = true, TIMEOUT = true,
  BREAK = true, BREAKEND = true, PROIP = true, PROPORT = true }

C["+HTTPINIT"] = function(m, c)
  if c.op ~= "exec" then return m:error() end
  if m.st.http then return m:fail(E_STATE) end
  m.st.http = { para = {} }
  m:ok()
end

C["+HTTPTERM"] = function(m, c)
  if c.op ~= "exec" then return m:error() end
  if not m.st.http then return m:fail(E_STATE) end
  m.st.http = nil
  m:ok()
end

C["+HTTPSSL"] = function(m, c)
  local h = m.st.http
  if c.op == "read" then
    m:info("+HTTPSSL: " .. (h and h.ssl or 0))
    return m:ok()
  end
  local ps = set_params(m, c, 1)
  if not ps then return end
  local v = atparse.int(ps[1], 0, 1)
  if not h then return m:fail(E_STATE) end
  if not v then return m:fail(E_PARAM) end
  h.ssl = v
  m:ok()
end

C["+HTTPPARA"] = function(m, c)
  local ps = set_params(m, c, 2)
  if not ps then return end
  local h = m.st.http
  if not h then return m:fail(E_STATE) end
  local tag = ps[1].value:upper()
  if not HTTP_TAGS[tag] then return m:fail(E_PARAM) end
  h.para[tag] = ps[2].value
  m:ok()
end

-- AT+HTTPDATA=<len>,<ms>: "DOWNLOAD", then exactly len bytes within ms.
C["+HTTPDATA"] = function(m, c)
  local ps = set_params(m, c, 2)
  if not ps then return end
  local h = m.st.http
  if not h then return m:fail(E_STATE) end
  local len, ms = atparse.int(ps[1], 1, limit(m, "http_data")), atparse.int(ps[2], 1000, 120000)
  if not len or not ms then return m:fail(E_PARAM) end
  m:info("DOWNLOAD")
  local data = m:read_data(len, ms)
  if not data then return m:error() end
  h.data = data
  m:ok()
end

-- "Name: value" lines of USER_DEFINED, separated by CRLF (literal "\r\n"
-- or the \0D\0A escapes in the AT string).
local function user_headers(s, into)
  s = atparse.unescape(s):gsub("\\r\\n", "\r\n")
  for line in s:gmatch("[^\r\n]+") do
    local k, v = line:match("^%s*([^:]+):%s*(.-)%s*$")
    if k then into[k] = v end
  end
end

local METHODS = { [0] = "GET", [1] = "POST", [2] = "HEAD" }

-- "+HTTPACTION: " or "+HTTPACTION:" (knob http_space).
local function http_prefix(m, name)
  return name .. (m:knob("http_space") == "tight" and ":" or ": ")
end

-- The request; outcome(line) gives +HTTPACTION to ok_then (athost.sim.
-- core), and outcome(nil) says there is none (rebooted, session gone).
local function http_action(m, h, method, gen, outcome)
  local function done(status, body)
    if m.gen ~= gen or m.st.http ~= h then return outcome(nil) end
    body = body or ""
    h.busy, h.response = false, { status = status, body = body }
    local line = string.format("%s%d,%d,%d", http_prefix(m, "+HTTPACTION"),
      method, status, #body)
    outcome(line)
    if m:knob("http_dup") == "on" then m:urc(line, gen) end
  end
  if not m.dialect.http_ready(m, h) then return done(601) end
  local ok, http = pcall(require, "athost.http11")
  if not ok then
    io.stderr:write("athost sim: AT+HTTPACTION needs athost.http11: ", http, "\n")
    return done(601)
  end
  local headers = {}
  -- (The Air780E's knob user_defined=ignored drops them.)
  if m.kv.user_defined ~= "ignored" then user_headers(h.para.USER_DEFINED or "", headers) end
  if h.para.CONTENT then headers["Content-Type"] = h.para.CONTENT end
  if h.para.UA then headers["User-Agent"] = h.para.UA end
  local url = h.para.URL
  if not http.parse_url(url) then return done(601) end
  local r, err, code
  ok, r, err, code = pcall(http.request, {
    method = METHODS[method], url = url, headers = headers,
    body = method == 1 and (h.data or "") or nil,
    timeout = tonumber(h.para.TIMEOUT) and tonumber(h.para.TIMEOUT) * 1000 or limit(m, "http_ms"),
    connect = function(host, port, tls)
      return m:connect(host, port, tls and { verify = false } or nil, "http")
    end,
  })
  if not ok or not r then
    if m.trace then athost.log(m.name .. " HTTP: " .. tostring(ok and err or r)) end
    return done(tostring(code):match("^EAI_") and 603 or 601)
  end
  done(r.status, r.body)
end

C["+HTTPACTION"] = function(m, c)
  local ps = set_params(m, c, 1)
  if not ps then return end
  local h = m.st.http
  if not h then return m:fail(E_STATE) end
  local method = atparse.int(ps[1], 0, 2)
  if not method then return m:fail(E_PARAM) end
  if not h.para.URL or h.busy then return m:fail(E_STATE) end
  h.busy, h.response = true, nil
  local gen = m.gen
  m:ok_then(function(outcome)
    athost.spawn(http_action, m, h, method, gen, outcome)
  end, limit(m, "http_ms") + 5000)
end

-- AT+HTTPREAD[=<start>,<size>]: "+HTTPREAD: <len>", the bytes, OK.
C["+HTTPREAD"] = function(m, c)
  local h = m.st.http
  if c.op ~= "exec" and c.op ~= "set" then return m:error() end
  if not h or not h.response then return m:fail(E_STATE) end
  local body = h.response.body
  if c.op == "set" then
    local ps = params(m, c)
    if not ps then return end
    local start, size = atparse.int(ps[1], 0), atparse.int(ps[2], 1)
    if #ps ~= 2 or not start or not size then return m:fail(E_PARAM) end
    body = body:sub(start + 1, start + size)
  end
  m:info(http_prefix(m, "+HTTPREAD") .. #body)
  m:raw(body)
  m:ok()
end

---------------------------------------------------------------------------
-- Files (flash: they survive reboots)
---------------------------------------------------------------------------

local function fname(m, p)
  local n = p and p.value
  if not n or n == "" or #n > limit(m, "fs_name") or n:find('[%c"]') then return nil end
  return n
end

C["+FSCREATE"] = function(m, c)
  local ps = set_params(m, c, 1)
  if not ps then return end
  local n = fname(m, ps[1])
  if not n then return m:fail(E_PARAM) end
  m.files[n] = m.files[n] or ""
  m:ok()
end

-- AT+FSWRITE="<f>",<0 overwrite|1 append>,<len>,<timeout s>: ">", bytes.
C["+FSWRITE"] = function(m, c)
  local ps = set_params(m, c, 4)
  if not ps then return end
  local n = fname(m, ps[1])
  local mode, len = atparse.int(ps[2], 0, 1), atparse.int(ps[3], 1, limit(m, "fs_write"))
  local secs = atparse.int(ps[4], 1, 300)
  if not n or not mode or not len or not secs then return m:fail(E_PARAM) end
  if not m.files[n] then return m:fail(E_STATE) end
  m:prompt()
  local data = m:read_data(len, secs * 1000)
  if not data then return m:error() end
  m.files[n] = mode == 0 and data or m.files[n] .. data
  m:ok()
end

-- AT+FSREAD="<f>"[,<mode>,<len>,<pos>]: the bytes as one block, OK.
C["+FSREAD"] = function(m, c)
  local ps = set_params(m, c, 1, 4)
  if not ps then return end
  local n = fname(m, ps[1])
  local data = n and m.files[n]
  if not data then return m:fail(E_STATE) end
  if #ps == 4 then
    local len, pos = atparse.int(ps[3], 1), atparse.int(ps[4], 0)
    if not len or not pos then return m:fail(E_PARAM) end
    data = data:sub(pos + 1, pos + len)
  end
  m:raw("\r\n" .. data .. "\r\n")
  m:ok()
end

C["+FSDEL"] = function(m, c)
  local ps = set_params(m, c, 1)
  if not ps then return end
  local n = fname(m, ps[1])
  if not n or not m.files[n] then return m:fail(E_STATE) end
  m.files[n] = nil
  m:ok()
end

C["+FSFLSIZE"] = function(m, c)
  local ps = set_params(m, c, 1)
  if not ps then return end
  local n = fname(m, ps[1])
  if not n or not m.files[n] then return m:fail(E_STATE) end
  m:info("+FSFLSIZE: " .. #m.files[n])
  m:ok()
end

C["+FSLS"] = function(m, c)
  if c.op == "test" or c.op == "read" then return m:ok() end
  local names = {}
  for n in pairs(m.files) do names[#names + 1] = n end
  table.sort(names)
  for _, n in ipairs(names) do m:info(n) end
  m:ok()
end

return D
