-- Quectel's file system and TLS contexts (DIALECTS.md 1.8, 1.9) for the
-- virtual Quectel modules: AT+QFUPL / AT+QFDEL / AT+QFLST on "UFS:" (flash,
-- m.files, survives reboots) and "RAM:" (lost on reboot), AT+QSSLCFG for
-- SSL contexts 0-5, and the port:tls options a context gives the MQTT and
-- HTTP(S) connections (M.tls_options): its seclevel really decides what
-- is verified, with the CA, certificate and key files it names.
--
-- Choices where DIALECTS.md is silent (change them here, as data):
--   names:        "UFS:x", "RAM:x" or a bare "x" (= "UFS:x"); AT+QFLST
--                 prints them with their "UFS:"/"RAM:" prefix
--   AT+QFUPL:     CONNECT as a line; the bytes not in within the timeout:
--                 +CME ERROR: 409 (write error) and no file; over the
--                 size limit 403 (drive full); a bad name 406; an existing
--                 name 407 (DIALECTS.md 1.8). ackmode 1: "A" after each
--                 1024 bytes. The timeout's unit and the checksum's
--                 algorithm are knobs (M.knobs).
--   AT+QSSLCFG:   every item of 1.9 is kept per context and read back with
--                 AT+QSSLCFG="<item>",<ctx>; sslversion, ciphersuite,
--                 ignorelocaltime, checkhost and negotiatetime are kept but
--                 change nothing on the wire (athost's TLS negotiates its
--                 own versions and suites); sni takes a number or a
--                 string (their type differs between sources).
--   seclevel:     0 no verification, 1 the server against the CA file, 2
--                 also our certificate and key; a file the level needs
--                 that is missing or empty fails the connection (the
--                 caller's own error: +QMTOPEN: <idx>,5, +QHTTPPOST: 710).
local athost = require("athost")
local atparse = require("athost.sim.atparse")
local core = require("athost.sim.core")

local M = {}
local C = {}
M.commands = C

-- Quectel's file errors (DIALECTS.md 1.8).
M.E = { input = 400, too_big = 401, full = 403, not_found = 405,
  bad_name = 406, exists = 407, write = 409 }

M.limits = {
  name = 80,               -- a file name without its prefix
  file = 512 * 1024,       -- one file
  ack_every = 1024,        -- ackmode 1
  contexts = 5,            -- SSL contexts 0..5
}

M.knobs = {
  { name = "qfupl_checksum", values = { "xor16", "sum16" }, default = "xor16",
    doc = "the checksum AT+QFUPL prints in hex after the upload: the 16-bit "
      .. "XOR of the data's big-endian words (Quectel's documents) or its "
      .. "16-bit byte sum (DIALECTS.md 1.8: the algorithm is unconfirmed)" },
  { name = "qfupl_unit", values = { "s", "ms" }, default = "s",
    doc = "the unit of AT+QFUPL's <timeout> for the data: seconds (BG96 "
      .. "drivers) or milliseconds (Quectel's SDK passes 20000; DIALECTS.md "
      .. "1.8: unconfirmed)" },
}

function M.reset(m)
  m.st.ram = {}             -- RAM: files
  m.st.ssl = {}             -- SSL context -> {item = value}
end

-- "UFS:ca.pem" / "RAM:x" / "ca.pem" -> the store (m.files or RAM), the
-- full name; nil for a name the module refuses.
local function where(m, name)
  if not name or name == "" then return nil end
  local drive, base = name:match("^(%u%u%u):(.*)$")
  if not drive then drive, base = "UFS", name end
  if (drive ~= "UFS" and drive ~= "RAM") or base == "" or #base > M.limits.name
      or base:find('[%c"\\/*?:]') then
    return nil
  end
  return drive == "RAM" and m.st.ram or m.files, drive .. ":" .. base
end

-- The content of a file named as AT+QSSLCFG names it, or nil.
function M.read(m, name)
  local store, full = where(m, name)
  if not store then return nil end
  -- m.files is shared with nothing else on a Quectel model: only "UFS:"
  -- keys live there.
  return store[full]
end

local function checksum(m, data)
  local v = 0
  if m:knob("qfupl_checksum") == "sum16" then
    for i = 1, #data do v = (v + data:byte(i)) & 0xffff end
  else
    for i = 1, #data, 2 do
      v = v ~ ((data:byte(i) << 8) | (data:byte(i + 1) or 0))
    end
  end
  return string.format("%x", v)
end
M.checksum = checksum

-- AT+QFUPL="<name>",<size>[,<timeout>[,<ackmode>]]: CONNECT, the bytes,
-- "+QFUPL: <size>,<checksum>", OK.
C["+QFUPL"] = function(m, c)
  local ps = core.set_params(m, c, 2, 4)
  if not ps then return end
  local store, full = where(m, ps[1].value)
  local size = atparse.int(ps[2], 1)
  local timeout = ps[3] and atparse.int(ps[3], 1, 65535) or 5
  local ack = ps[4] and atparse.int(ps[4], 0, 1) or 0
  if not size or not timeout or not ack then return m:fail(M.E.input) end
  if not store then return m:fail(M.E.bad_name) end
  if store[full] then return m:fail(M.E.exists) end
  if size > M.limits.file then return m:fail(M.E.full) end
  local ms = m:knob("qfupl_unit") == "ms" and timeout or timeout * 1000
  m:info("CONNECT")
  local parts, got = {}, 0
  local deadline = athost.now() + ms
  while got < size do
    local n = ack == 1 and math.min(M.limits.ack_every, size - got) or size - got
    local left = deadline - athost.now()
    local data = left > 0 and m:read_data(n, left)
    if not data then return m:fail(M.E.write) end
    parts[#parts + 1] = data
    got = got + n
    if ack == 1 and n == M.limits.ack_every then m:raw("A") end
  end
  local data = table.concat(parts)
  store[full] = data
  m:info(string.format("+QFUPL: %d,%s", size, checksum(m, data)))
  m:ok()
end

-- AT+QFDEL="<name>" ("*": every UFS file).
C["+QFDEL"] = function(m, c)
  local ps = core.set_params(m, c, 1)
  if not ps then return end
  if ps[1].value == "*" then
    for k in pairs(m.files) do m.files[k] = nil end
    return m:ok()
  end
  local store, full = where(m, ps[1].value)
  if not store then return m:fail(M.E.bad_name) end
  if not store[full] then return m:fail(M.E.not_found) end
  store[full] = nil
  m:ok()
end

-- A QFLST pattern ("*", "UFS:*", "RAM:ca*", "ca.pem") as a Lua pattern
-- over full names.
local function glob(pat)
  if not pat:match("^%u%u%u:") then pat = "UFS:" .. pat end
  return "^" .. pat:gsub("[%^%$%(%)%%%.%[%]%+%-%?]", "%%%0"):gsub("%*", ".*") .. "$"
end

-- AT+QFLST[="<pattern>"]: +QFLST: "<name>",<size> per file, OK.
C["+QFLST"] = function(m, c)
  local pat = "*"
  if c.op == "set" then
    local ps = core.set_params(m, c, 1)
    if not ps then return end
    pat = ps[1].value
  elseif c.op ~= "exec" then
    return m:error()
  end
  local names, lp = {}, glob(pat)
  for _, store in ipairs({ m.files, m.st.ram }) do
    for k, v in pairs(store) do
      if k:match(lp) then names[#names + 1] = { k, #v } end
    end
  end
  table.sort(names, function(a, b) return a[1] < b[1] end)
  for _, f in ipairs(names) do m:info(string.format('+QFLST: "%s",%d', f[1], f[2])) end
  m:ok()
end

---------------------------------------------------------------------------
-- AT+QSSLCFG="<item>",<ctx>[,<value>...]
---------------------------------------------------------------------------

-- Each item: how its value is checked and printed.
local function int_in(lo, hi)
  return function(p) return atparse.int(p, lo, hi) end
end
local function file_name(p)
  return p.quoted and p.value ~= "" and p.value or nil
end
local ITEMS = {
  sslversion = int_in(0, 4),
  ciphersuite = function(p)
    local h = p.value:match("^0[xX](%x%x?%x?%x?)$")
    return h and string.format("0X%04X", tonumber(h, 16))
  end,
  seclevel = int_in(0, 2),
  cacert = file_name, clientcert = file_name, clientkey = file_name,
  ignorelocaltime = int_in(0, 1),
  checkhost = int_in(0, 1),
  negotiatetime = int_in(10, 300),
  sni = function(p) return p.quoted and p.value or atparse.int(p, 0, 1) end,
}
local DEFAULTS = { sslversion = 4, ciphersuite = "0XFFFF", seclevel = 0,
  ignorelocaltime = 1, checkhost = 0, negotiatetime = 300, sni = 0 }

local function context(m, ctx)
  local s = m.st.ssl[ctx]
  if not s then
    s = {}
    m.st.ssl[ctx] = s
  end
  return s
end

C["+QSSLCFG"] = function(m, c)
  local ps = core.set_params(m, c, 2, 3)
  if not ps then return end
  local item, ctx = ps[1].value:lower(), atparse.int(ps[2], 0, M.limits.contexts)
  local check = ITEMS[item]
  if not check or not ctx then return m:fail(core.E_PARAM) end
  local s = context(m, ctx)
  if #ps == 2 then
    local v = s[item]
    if v == nil then v = DEFAULTS[item] end
    if v == nil then v = "" end
    if type(v) == "string" and item ~= "ciphersuite" then v = '"' .. v .. '"' end
    m:info(string.format('+QSSLCFG: "%s",%d,%s', item, ctx, tostring(v)))
    return m:ok()
  end
  local v = check(ps[3])
  if v == nil then return m:fail(core.E_PARAM) end
  s[item] = v
  m:ok()
end

-- The port:tls options of SSL context ctx, or nil, why. For a
-- connection to host (the name asked for) at addr (where it really goes;
-- remapped when the hosts table sent it elsewhere) they name the host
-- checked; without addr that is left to Core:connect.
function M.tls_options(m, ctx, host, addr, remapped)
  local s = m.st.ssl[ctx] or {}
  local level = s.seclevel or DEFAULTS.seclevel
  local o = { verify = level >= 1, hostname = addr and (remapped and addr or host) or nil }
  if level >= 1 then
    o.ca = s.cacert and M.read(m, s.cacert)
    if not o.ca or o.ca == "" then
      return nil, "SSL context " .. ctx .. ": no CA file " .. tostring(s.cacert)
    end
  end
  if level >= 2 then
    o.cert = s.clientcert and M.read(m, s.clientcert)
    o.key = s.clientkey and M.read(m, s.clientkey)
    if not o.cert or o.cert == "" or not o.key or o.key == "" then
      return nil, "SSL context " .. ctx .. ": no client certificate or key"
    end
  end
  return o
end

return M
