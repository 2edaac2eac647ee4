-- SIMCom certificates and TLS contexts (DIALECTS.md 2.5) for the virtual
-- SIMCom modems: AT+CCERTDOWN/CCERTLIST/CCERTDELE keep files in the
-- modem's flash (m.files, they survive reboots), AT+CSSLCFG sets SSL
-- contexts 0-9 (RAM: lost on reboot), and M.tls_options turns a context
-- into the port:tls options the MQTT and HTTP commands really connect
-- with, so a wrong CA, a missing client key or authmode 0 behave as on the
-- module.
--
-- Choices where DIALECTS.md is silent:
--   AT+CSSLCFG="cacert",<ctx>,"<name>" takes any valid name; a file that
--   is not there is found missing when the context is used (MQTT error
--   33, HTTP 719). A ".der" file is DER: the model wraps it as PEM
--   (CERTIFICATE, or PRIVATE KEY for a clientkey) before using it.
--   "sslversion" and "ignorelocaltime" are kept and shown, not enforced;
--   "enableSNI" is kept and shown: the name asked for is always sent (the
--   TLS layer sends the name it checks).
local athost = require("athost")
local core = require("athost.sim.core")
local atparse = require("athost.sim.atparse")

local M = {}
local C = {}
M.commands = C

local set_params = core.set_params

M.limits = {
  cert = 10240,            -- bytes of one AT+CCERTDOWN
  cert_ms = 60000,         -- for them to arrive after '>'
  ctx_max = 9,
}

-- A context as the module starts it ([A76] defaults).
local function fresh()
  return { sslversion = 4, authmode = 0, ignorelocaltime = 1,
    negotiatetime = 300, cacert = "", clientcert = "", clientkey = "",
    password = "", enableSNI = 0 }
end

function M.reset(m)
  m.st.sslctx = {}
end

function M.ctx(m, n)
  local s = m.st.sslctx[n]
  if not s then
    s = fresh()
    m.st.sslctx[n] = s
  end
  return s
end

-- 5-108 characters ending ".pem" or ".der", nothing a quoted AT string
-- or a file name cannot hold.
local function cert_name(p)
  local n = p and p.value
  if not n or #n < 5 or #n > 108 or n:find('[%c"/\\]') then return nil end
  local ext = n:sub(-4):lower()
  if ext ~= ".pem" and ext ~= ".der" then return nil end
  return n
end

-- The PEM text of a stored file (DER wrapped), or nil.
local function pem(m, name, label)
  local data = name ~= "" and m.files[name]
  if not data or data == "" then return nil end
  if name:sub(-4):lower() ~= ".der" then return data end
  local b64 = athost.base64(data)
  local lines = { "-----BEGIN " .. label .. "-----" }
  for i = 1, #b64, 64 do lines[#lines + 1] = b64:sub(i, i + 63) end
  lines[#lines + 1] = "-----END " .. label .. "-----"
  return table.concat(lines, "\n") .. "\n"
end

-- port:tls options for context n: authmode 0 encrypts only, 1 verifies
-- the server against cacert, 2 also presents clientcert/clientkey, 3
-- presents them without verifying the server. nil, why when a file the
-- mode needs is not there.
function M.tls_options(m, n)
  local s = M.ctx(m, n)
  local mode = s.authmode
  local o = { verify = mode == 1 or mode == 2, timeout = s.negotiatetime * 1000 }
  if mode == 1 or mode == 2 then
    o.ca = pem(m, s.cacert, "CERTIFICATE")
    if not o.ca then return nil, "no CA file \"" .. s.cacert .. "\"" end
  end
  if mode == 2 or mode == 3 then
    o.cert = pem(m, s.clientcert, "CERTIFICATE")
    o.key = pem(m, s.clientkey, "PRIVATE KEY")
    if not o.cert or not o.key then return nil, "no client certificate or key" end
  end
  return o
end

---------------------------------------------------------------------------
-- Certificates
---------------------------------------------------------------------------

-- AT+CCERTDOWN="<name>",<len>: '>', exactly len bytes, OK.
C["+CCERTDOWN"] = function(m, c)
  local ps = set_params(m, c, 2)
  if not ps then return end
  local name, len = cert_name(ps[1]), atparse.int(ps[2], 1, M.limits.cert)
  if not name or not len then return m:error() end
  m:prompt()
  local data = m:read_data(len, M.limits.cert_ms)
  if not data then return m:error() end
  m.files[name] = data
  m:ok()
end

C["+CCERTLIST"] = function(m, c)
  if c.op ~= "exec" then return m:error() end
  local names = {}
  for n in pairs(m.files) do names[#names + 1] = n end
  table.sort(names)
  for _, n in ipairs(names) do m:info('+CCERTLIST: "' .. n .. '"') end
  m:ok()
end

C["+CCERTDELE"] = function(m, c)
  local ps = set_params(m, c, 1)
  if not ps then return end
  local name = cert_name(ps[1])
  if not name or not m.files[name] then return m:error() end
  m.files[name] = nil
  m:ok()
end

---------------------------------------------------------------------------
-- AT+CSSLCFG
---------------------------------------------------------------------------

local RANGES = { sslversion = { 0, 4 }, authmode = { 0, 3 },
  ignorelocaltime = { 0, 1 }, negotiatetime = { 10, 300 }, enablesni = { 0, 1 } }
local FILES = { cacert = true, clientcert = true, clientkey = true, password = true }

local function show(m, n)
  local s = M.ctx(m, n)
  m:info(string.format('+CSSLCFG: %d,%d,%d,%d,%d,"%s","%s","%s","%s",%d', n,
    s.sslversion, s.authmode, s.ignorelocaltime, s.negotiatetime, s.cacert,
    s.clientcert, s.clientkey, s.password, s.enableSNI))
end

-- AT+CSSLCFG="<item>",<ctx>,<value>; AT+CSSLCFG=<ctx> shows a context
-- and AT+CSSLCFG? every one.
C["+CSSLCFG"] = function(m, c)
  if c.op == "read" then
    for n = 0, M.limits.ctx_max do show(m, n) end
    return m:ok()
  end
  local ps = set_params(m, c, 1, 3)
  if not ps then return end
  if #ps == 1 then
    local n = atparse.int(ps[1], 0, M.limits.ctx_max)
    if not n or ps[1].quoted then return m:error() end
    show(m, n)
    return m:ok()
  end
  if #ps ~= 3 or not ps[1].quoted then return m:error() end
  local item, n = ps[1].value:lower(), atparse.int(ps[2], 0, M.limits.ctx_max)
  if not n then return m:error() end
  local s = M.ctx(m, n)
  if FILES[item] then
    if item == "password" then
      if #ps[3].value > 64 then return m:error() end
    elseif not cert_name(ps[3]) then
      return m:error()
    end
    s[item] = ps[3].value
  elseif RANGES[item] then
    local v = atparse.int(ps[3], RANGES[item][1], RANGES[item][2])
    if not v then return m:error() end
    s[item == "enablesni" and "enableSNI" or item] = v
  else
    return m:error()
  end
  m:ok()
end

return M
