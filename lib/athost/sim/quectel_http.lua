-- Quectel's HTTP(S) AT commands (DIALECTS.md 1.10, 4.2) for the virtual
-- Quectel modules: AT+QHTTPCFG, AT+QHTTPURL, AT+QHTTPPOST, AT+QHTTPGET and
-- AT+QHTTPREAD, with real requests through athost.http11 (HTTPS with the
-- SSL context of "sslctxid", athost.sim.quectel_files).
--
-- The dialect provides bearer_up(m, cid) (the "contextid" must be up).
--
-- Choices where DIALECTS.md is silent (change them here, as data):
--   refusals (+CME ERROR: n per AT+CMEE): 730 a bad parameter or item,
--                  703 a request in progress, 711 a URL that is not
--                  http(s)://host..., 712 POST/GET before AT+QHTTPURL, 726
--                  the URL or body not in within its time, 705 AT+QHTTPREAD
--                  with no response to read (each response reads once)
--   "contenttype": an index 0-5: 0 application/x-www-form-urlencoded, 1
--                  text/plain, 2 application/octet-stream, 3
--                  multipart/form-data, 4 application/json, 5 image/jpeg
--                  (DIALECTS.md: the table is unconfirmed, 0 assumed). A
--                  quoted MIME string answers OK but the next POST fails
--                  with +QHTTPPOST: 730 (EC200U-HW)
--   "requestheader",1: the POST data is the whole request: request line,
--                  header lines, an empty line, the body (its method,
--                  path and headers are sent as given)
--   "responseheader",1: AT+QHTTPREAD prints the status line and the header
--                  lines (names in lower case) before the body
--   requests:      User-Agent "QUECTEL_MODULE"; outcome errors 709 the
--                  context is down, 714 DNS, 716 refused or reset, 710 the
--                  TLS handshake (or a missing file of the SSL context),
--                  702 no response within <resp_s>; their URC with or
--                  without the other fields is the knob qhttp_err
--   AT+QHTTPREAD:  CONNECT, the bytes, OK, +QHTTPREAD: 0 (that pair in the
--                  order the core knob `order` says)
local athost = require("athost")
local core = require("athost.sim.core")
local atparse = require("athost.sim.atparse")
local qfiles = require("athost.sim.quectel_files")
local http = require("athost.http11")

local M = {}
local C = {}
M.commands = C

local set_params = core.set_params

M.E = { busy = 703, no_request = 705, net_down = 709, net = 710, url = 711,
  no_url = 712, dns = 714, connect = 716, timeout = 702, input = 726,
  param = 730 }
local E = M.E

M.limits = { url = 700, body = 1024 * 1024 }

M.CONTENT_TYPES = { [0] = "application/x-www-form-urlencoded", "text/plain",
  "application/octet-stream", "multipart/form-data", "application/json", "image/jpeg" }

M.knobs = {
  { name = "qhttp_err", values = { "short", "long" }, default = "short",
    doc = "a failed request's URC: \"+QHTTPPOST: <err>\" alone or with the "
      .. "other fields zero, \"+QHTTPPOST: <err>,0,0\" (DIALECTS.md 1.10: "
      .. "whether they are missing on error is unconfirmed); +QHTTPGET alike" },
}

function M.reset(m)
  m.st.qhttp = { cfg = { contextid = 1, requestheader = 0, responseheader = 0,
    sslctxid = 1, contenttype = 0 } }
end

---------------------------------------------------------------------------
-- AT+QHTTPCFG="<item>"[,<value>]
---------------------------------------------------------------------------

local ITEMS = {
  contextid = { 1, 16 }, requestheader = { 0, 1 }, responseheader = { 0, 1 },
  sslctxid = { 0, 5 }, contenttype = { 0, 5 }, ["rspout/auto"] = { 0, 1 },
  closedind = { 0, 1 },
}

C["+QHTTPCFG"] = function(m, c)
  local ps = set_params(m, c, 1, 2)
  if not ps then return end
  local item = ps[1].value:lower()
  local range = ITEMS[item]
  if not range then return m:fail(E.param) end
  local cfg = m.st.qhttp.cfg
  if #ps == 1 then
    local v = cfg[item] or 0
    if cfg.mime and item == "contenttype" then v = '"' .. cfg.mime .. '"' end
    m:info(string.format('+QHTTPCFG: "%s",%s', item, tostring(v)))
    return m:ok()
  end
  if item == "contenttype" and ps[2].quoted and ps[2].value ~= "" then
    cfg.mime = ps[2].value                -- accepted; the POST fails (EC200U-HW)
    return m:ok()
  end
  local v = atparse.int(ps[2], range[1], range[2])
  if not v then return m:fail(E.param) end
  cfg[item] = v
  if item == "contenttype" then cfg.mime = nil end
  m:ok()
end

---------------------------------------------------------------------------
-- AT+QHTTPURL=<len>,<timeout_s>: CONNECT, the URL, OK
---------------------------------------------------------------------------

-- CONNECT, then len bytes within secs: the bytes, or nil after the refusal.
local function input(m, len, secs)
  m:info("CONNECT")
  local data = m:read_data(len, secs * 1000)
  if not data then return m:fail(E.input) end
  return data
end

C["+QHTTPURL"] = function(m, c)
  local h = m.st.qhttp
  if c.op == "read" then
    if h.url then m:info('+QHTTPURL: "' .. h.url .. '"') end
    return m:ok()
  end
  local ps = set_params(m, c, 1, 2)
  if not ps then return end
  local len = atparse.int(ps[1], 1, M.limits.url)
  local secs = ps[2] and atparse.int(ps[2], 1, 65535) or 60
  if not len or not secs then return m:fail(E.param) end
  if h.busy then return m:fail(E.busy) end
  local url = input(m, len, secs)
  if not url then return end
  if not http.parse_url(url) then return m:fail(E.url) end
  h.url, h.response = url, nil
  m:ok()
end

---------------------------------------------------------------------------
-- Requests
---------------------------------------------------------------------------

-- "POST /x HTTP/1.1\r\nA: b\r\n\r\nbody" -> method, target, headers, body
-- (requestheader 1); nil when it is no request.
local function own_request(data)
  local head, body = data:match("^(.-)\r?\n\r?\n(.*)$")
  if not head then return nil end
  local first, rest = head:match("^([^\r\n]*)\r?\n?(.*)$")
  local method, target = first:match("^(%u+) (%S+) HTTP/1%.[01]$")
  if not method then return nil end
  local headers = {}
  for line in rest:gmatch("[^\r\n]+") do
    local k, v = line:match("^([^:]+):%s*(.-)%s*$")
    if not k then return nil end
    headers[k] = v
  end
  return method, target, headers, body
end

-- The outcome URC of a failed request (knob qhttp_err).
local function err_line(m, name, err)
  if m:knob("qhttp_err") == "long" then return string.format("%s: %d,0,0", name, err) end
  return string.format("%s: %d", name, err)
end

-- athost.http11 failure codes -> Quectel's <err>.
local function http_err(code, msg)
  code, msg = tostring(code), tostring(msg)
  if code:match("^EAI_") or msg:find("EAI_", 1, true) then return E.dns end
  if code == "ETIMEDOUT" then return E.timeout end
  if code == "ETLS" or msg:find("TLS", 1, true) then return E.net end
  return E.connect
end

-- Runs the request of h; outcome(line) gets the URC (name "+QHTTPPOST" or
-- "+QHTTPGET"), or nil when the modem rebooted meanwhile.
local function request(m, h, name, req, resp_s, gen, outcome)
  local function done(line)
    h.busy = false
    if m.gen ~= gen or m.st.qhttp ~= h then return outcome(nil) end
    outcome(line)
  end
  local cfg = h.cfg
  if req.mime then return done(err_line(m, name, E.param)) end
  if not m.dialect.bearer_up(m, cfg.contextid) then return done(err_line(m, name, E.net_down)) end
  local url = h.url
  if req.target then
    local scheme, host, port = http.parse_url(url)
    url = string.format("%s://%s:%d%s", scheme, host:find(":", 1, true) and "[" .. host .. "]"
      or host, port, req.target)
  end
  local tls_err
  local ok, r, err, code = pcall(http.request, {
    method = req.method, url = url, headers = req.headers, body = req.body,
    timeout = resp_s * 1000,
    connect = function(host, port, is_https)
      local topts
      if is_https then
        topts, tls_err = qfiles.tls_options(m, cfg.sslctxid, host)
        if not topts then return nil, "ETLS: " .. tls_err, "ETLS" end
      end
      return m:connect(host, port, topts, "http")
    end,
  })
  if not ok or not r then
    if m.trace then athost.log(m.name .. " HTTP: " .. tostring(ok and err or r)) end
    return done(err_line(m, name, ok and http_err(code, err) or E.net))
  end
  local head = {}
  if cfg.responseheader == 1 then
    local names = {}
    for k in pairs(r.headers) do names[#names + 1] = k end
    table.sort(names)
    head[1] = string.format("HTTP/1.1 %d %s\r\n", r.status, r.reason or "")
    for _, k in ipairs(names) do head[#head + 1] = k .. ": " .. r.headers[k] .. "\r\n" end
    head[#head + 1] = "\r\n"
  end
  h.response = table.concat(head) .. r.body
  done(string.format("%s: 0,%d,%d", name, r.status, #r.body))
end

-- Starts the request (OK or the outcome first, knob order).
local function start(m, h, name, req, resp_s)
  h.busy, h.response = true, nil
  local gen = m.gen
  m:ok_then(function(outcome)
    athost.spawn(request, m, h, name, req, resp_s, gen, outcome)
  end, resp_s * 1000 + 5000)
end

local function ready(m, h)
  if h.busy then return m:fail(E.busy) end
  if not h.url then return m:fail(E.no_url) end
  return true
end

-- AT+QHTTPPOST=<len>,<input_s>,<resp_s>: CONNECT, the body, OK, then
-- +QHTTPPOST: 0,<status>,<content_len>.
C["+QHTTPPOST"] = function(m, c)
  local ps = set_params(m, c, 1, 3)
  if not ps then return end
  local len = atparse.int(ps[1], 1, M.limits.body)
  local in_s = ps[2] and atparse.int(ps[2], 1, 65535) or 60
  local resp_s = ps[3] and atparse.int(ps[3], 1, 65535) or 60
  if not len or not in_s or not resp_s then return m:fail(E.param) end
  local h = m.st.qhttp
  if not ready(m, h) then return end
  local data = input(m, len, in_s)
  if not data then return end
  local req = { method = "POST", body = data, mime = h.cfg.mime }
  if h.cfg.requestheader == 1 then
    req.method, req.target, req.headers, req.body = own_request(data)
    if not req.method then return m:fail(E.param) end
  else
    req.headers = { ["Content-Type"] = M.CONTENT_TYPES[h.cfg.contenttype],
      ["User-Agent"] = "QUECTEL_MODULE", Accept = "*/*" }
  end
  start(m, h, "+QHTTPPOST", req, resp_s)
end

-- AT+QHTTPGET[=<resp_s>]: OK, then +QHTTPGET: 0,<status>,<content_len>.
C["+QHTTPGET"] = function(m, c)
  local ps = c.op == "exec" and {} or set_params(m, c, 1, 3)
  if not ps then return end
  local resp_s = ps[1] and atparse.int(ps[1], 1, 65535) or 60
  if not resp_s then return m:fail(E.param) end
  local h = m.st.qhttp
  if not ready(m, h) then return end
  start(m, h, "+QHTTPGET", { method = "GET",
    headers = { ["User-Agent"] = "QUECTEL_MODULE", Accept = "*/*" } }, resp_s)
end

-- AT+QHTTPREAD[=<wait_s>]: CONNECT, the response, OK, +QHTTPREAD: 0.
C["+QHTTPREAD"] = function(m, c)
  local ps = c.op == "exec" and {} or set_params(m, c, 1)
  if not ps then return end
  if ps[1] and not atparse.int(ps[1], 1, 65535) then return m:fail(E.param) end
  local h = m.st.qhttp
  if h.busy then return m:fail(E.busy) end
  if not h.response then return m:fail(E.no_request) end
  local body = h.response
  h.response = nil
  m:info("CONNECT")
  m:raw(body)
  m:ok_then(function(done) done("+QHTTPREAD: 0") end)
end

return M
