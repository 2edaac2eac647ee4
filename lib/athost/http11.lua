-- Minimal HTTP/1.1 over athost ports (RFC 9112): a client for one request
-- per connection, and a server loop that gives every connection a flow of
-- its own. Enough for the auth services the virtual modems and the tests
-- talk to; not a general web server.
--
-- Client:
--   local r, err, code = http.request{method = "POST", url = "http://h:p/x",
--     headers = {["Content-Type"] = "..."}, body = "...", timeout = ms,
--     connect = function(host, port, is_https) return port_or_nil_err end}
--   r = {status = 200, reason = "OK", headers = {lowercase = value}, body}
-- Failures return nil, "CODE: what", CODE: ETIMEDOUT, EOF, EPROTO (the
-- server broke the protocol), E2BIG (response over max_body), ENOTSUP
-- (https without port:tls), or what athost.connect returned.
--
-- Server:
--   http.serve(listener, function(req) return status, headers, body end,
--     {timeout = ms, max_header = n, max_body = n, on_error = fn})
-- req = {method, target, path, query (decoded table), raw_query, version,
-- headers (lowercase names), body, form (decoded body when it is
-- application/x-www-form-urlencoded), remote}. serve returns when the
-- listener is closed (returning true). A malformed request gets 400, oversized headers or
-- body 413, a client too slow to send its request within `timeout` 408, a
-- handler that raises 500; none of them disturbs the accepting flow.
--
-- Every connection carries exactly one request (Connection: close).
local athost = require("athost")

local M = {}

local concat, sort = table.concat, table.sort

M.MAX_HEADER = 16 * 1024     -- request/status line plus header fields
M.MAX_BODY = 1024 * 1024     -- server side
M.MAX_RESPONSE = 16 * 1024 * 1024
M.TIMEOUT = 10000            -- ms for a whole request or response

M.REASONS = {
  [100] = "Continue", [200] = "OK", [201] = "Created", [204] = "No Content",
  [301] = "Moved Permanently", [302] = "Found", [304] = "Not Modified",
  [400] = "Bad Request", [401] = "Unauthorized", [403] = "Forbidden",
  [404] = "Not Found", [405] = "Method Not Allowed",
  [408] = "Request Timeout", [411] = "Length Required",
  [413] = "Content Too Large", [414] = "URI Too Long",
  [431] = "Request Header Fields Too Large",
  [500] = "Internal Server Error", [501] = "Not Implemented",
  [502] = "Bad Gateway", [503] = "Service Unavailable",
  [505] = "HTTP Version Not Supported",
}

---------------------------------------------------------------------------
-- Encodings
---------------------------------------------------------------------------

-- Percent-encodes everything but the RFC 3986 unreserved characters.
function M.urlencode(s)
  s = tostring(s)
  return (s:gsub("[^%w%-%._~]", function(c)
    return string.format("%%%02X", c:byte())
  end))
end

-- Decodes %XX escapes; a malformed escape is left as it is.
function M.urldecode(s)
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

-- application/x-www-form-urlencoded. t is either a list of {name, value}
-- pairs, encoded in that order, or a map, encoded with sorted names.
function M.form_encode(t)
  local out = {}
  local function add(k, v)
    out[#out + 1] = M.urlencode(k):gsub("%%20", "+") .. "="
      .. M.urlencode(v):gsub("%%20", "+")
  end
  if #t > 0 then
    for _, kv in ipairs(t) do add(kv[1], kv[2]) end
  else
    local keys = {}
    for k in pairs(t) do keys[#keys + 1] = k end
    sort(keys)
    for _, k in ipairs(keys) do add(k, t[k]) end
  end
  return concat(out, "&")
end

-- Decodes a form (or a query string). Returns a map name -> value (the
-- first of repeated names wins) and the list of {name, value} pairs in
-- order, so a caller can refuse repeated names.
function M.form_decode(s)
  local map, list = {}, {}
  for part in (s or ""):gmatch("[^&]+") do
    local k, v = part:match("^([^=]*)=?(.*)$")
    k = M.urldecode((k:gsub("+", " ")))
    v = M.urldecode((v:gsub("+", " ")))
    list[#list + 1] = { k, v }
    if map[k] == nil then map[k] = v end
  end
  return map, list
end

---------------------------------------------------------------------------
-- Buffered reading with a deadline
---------------------------------------------------------------------------

-- A reader keeps what recv returned beyond what was consumed. Every wait
-- is bounded by the reader's deadline (athost.now() based).
local Reader = {}
Reader.__index = Reader

local function reader(port, deadline)
  return setmetatable({ p = port, buf = "", deadline = deadline }, Reader)
end

-- Appends more bytes; nil, msg, code on timeout or end of stream.
function Reader:fill()
  local left = math.floor(self.deadline - athost.now())
  if left <= 0 then
    return nil, "ETIMEDOUT: no data from " .. self.p.name, "ETIMEDOUT"
  end
  local s, err, code = self.p:recv(65536, { timeout = left })
  if not s then return nil, err, code end
  self.buf = self.buf .. s
  return true
end

-- One line without its CRLF (a bare LF is accepted, RFC 9112 2.2). More
-- than `limit` bytes without a line end is E2BIG.
function Reader:line(limit)
  local from = 1
  while true do
    local i = self.buf:find("\n", from, true)
    if i then
      if i > limit + 1 then break end
      local line = self.buf:sub(1, i - 1)
      self.buf = self.buf:sub(i + 1)
      return (line:gsub("\r$", ""))
    end
    if #self.buf > limit then break end
    from = #self.buf + 1
    local ok, err, code = self:fill()
    if not ok then return nil, err, code end
  end
  return nil, "E2BIG: line longer than " .. limit .. " bytes", "E2BIG"
end

-- Exactly n bytes.
function Reader:bytes(n)
  while #self.buf < n do
    local ok, err, code = self:fill()
    if not ok then return nil, err, code end
  end
  local s = self.buf:sub(1, n)
  self.buf = self.buf:sub(n + 1)
  return s
end

-- Everything up to the end of the stream, at most limit bytes.
function Reader:rest(limit)
  while true do
    if #self.buf > limit then
      return nil, "E2BIG: body longer than " .. limit .. " bytes", "E2BIG"
    end
    local ok, err, code = self:fill()
    if not ok then
      if code == "EOF" then
        local s = self.buf
        self.buf = ""
        return s
      end
      return nil, err, code
    end
  end
end

---------------------------------------------------------------------------
-- Messages
---------------------------------------------------------------------------

local TOKEN = "^[!#$%%&'*+%-.^_`|~%w]+$"

-- Reads header fields up to the empty line into a table of lowercase
-- names (repeated fields joined with ", "). `budget` is what is left of
-- the header size limit. Returns headers, or nil, msg, code with code
-- E2BIG or EPROTO for a malformed field.
local function read_headers(r, budget)
  local h = {}
  for _ = 1, 200 do
    local line, err, code = r:line(budget)
    if not line then return nil, err, code end
    budget = budget - #line - 2
    if budget < 0 then
      return nil, "E2BIG: header fields too large", "E2BIG"
    end
    if line == "" then return h end
    local name, value = line:match("^([^:]+):[ \t]*(.-)[ \t]*$")
    if not name or not name:find(TOKEN) then
      return nil, "EPROTO: malformed header field " .. string.format("%q",
        line:sub(1, 80)), "EPROTO"
    end
    if value:find("[%z\r\n]") then
      return nil, "EPROTO: control character in header " .. name, "EPROTO"
    end
    name = name:lower()
    h[name] = h[name] and (h[name] .. ", " .. value) or value
  end
  return nil, "E2BIG: too many header fields", "E2BIG"
end

-- A chunked body (RFC 9112 7.1), trailers read and dropped.
local function read_chunked(r, limit)
  local parts, total = {}, 0
  while true do
    local line, err, code = r:line(1024)
    if not line then return nil, err, code end
    local hex = line:match("^(%x+)[ \t]*;?.*$")
    if not hex or #hex > 8 then
      return nil, "EPROTO: bad chunk size line", "EPROTO"
    end
    local n = tonumber(hex, 16)
    if n == 0 then break end
    total = total + n
    if total > limit then
      return nil, "E2BIG: body longer than " .. limit .. " bytes", "E2BIG"
    end
    local data
    data, err, code = r:bytes(n)
    if not data then return nil, err, code end
    parts[#parts + 1] = data
    line, err, code = r:line(2)
    if not line then return nil, err, code end
    if line ~= "" then return nil, "EPROTO: no CRLF after chunk", "EPROTO" end
  end
  local trailers, err, code = read_headers(r, 4096)
  if not trailers then return nil, err, code end
  return concat(parts)
end

-- Content-Length: one decimal value (repeats must agree); nil if absent,
-- false if malformed.
local function content_length(h)
  local v = h["content-length"]
  if v == nil then return nil end
  local n
  for piece in v:gmatch("[^,]+") do
    local d = piece:match("^%s*(%d+)%s*$")
    if not d or #d > 15 or (n and tonumber(d) ~= n) then return false end
    n = tonumber(d)
  end
  return n or false
end

-- Header lines from a map, sorted by name so messages are reproducible;
-- names set in `skip` (lowercase) are left out.
local function header_lines(headers, skip)
  local names, out = {}, {}
  for k in pairs(headers or {}) do names[#names + 1] = k end
  sort(names)
  for _, k in ipairs(names) do
    if not (skip and skip[k:lower()]) then
      local v = tostring(headers[k])
      if v:find("[\r\n]") or not k:find(TOKEN) then
        error("http11: bad header " .. k, 3)
      end
      out[#out + 1] = k .. ": " .. v .. "\r\n"
    end
  end
  return concat(out)
end

local function has(headers, name)
  for k in pairs(headers or {}) do
    if k:lower() == name then return true end
  end
  return false
end

---------------------------------------------------------------------------
-- Client
---------------------------------------------------------------------------

-- Splits an http(s) URL: scheme, host, port, target.
function M.parse_url(url)
  local scheme, rest = url:match("^(%a[%w+.-]*)://(.*)$")
  if not scheme then return nil end
  scheme = scheme:lower()
  if scheme ~= "http" and scheme ~= "https" then return nil end
  local authority, target = rest:match("^([^/?#]*)(.*)$")
  target = target:gsub("#.*$", "")
  if target == "" or target:sub(1, 1) == "?" then target = "/" .. target end
  authority = authority:gsub("^.*@", "")
  local host, port = authority:match("^%[([^%]]+)%]:?(%d*)$")
  if not host then host, port = authority:match("^([^:]+):?(%d*)$") end
  if not host or host == "" then return nil end
  port = tonumber(port) or (scheme == "https" and 443 or 80)
  if port < 1 or port > 65535 then return nil end
  return scheme, host, port, target
end

local function default_connect(host, port, is_https)
  local p, err, code = athost.connect(host, port)
  if not p then return nil, err, code end
  if not is_https then return p end
  if not p.tls then
    p:close()
    return nil, "ENOTSUP: https needs port:tls, which this host lacks",
      "ENOTSUP"
  end
  local ok
  ok, err, code = p:tls { hostname = host }
  if not ok then
    p:close()
    return nil, err, code
  end
  return type(ok) == "userdata" and ok or p
end

local function read_response(r, method, limit)
  local line, err, code, status, reason
  repeat
    line, err, code = r:line(M.MAX_HEADER)
    if not line then return nil, err, code end
    local version
    version, status, reason = line:match("^HTTP/(%d%.%d) (%d%d%d) ?(.*)$")
    if not version then
      return nil, "EPROTO: bad status line " .. string.format("%q",
        line:sub(1, 80)), "EPROTO"
    end
    status = tonumber(status)
    local h
    h, err, code = read_headers(r, M.MAX_HEADER)
    if not h then return nil, err, code end
    if status >= 200 or status == 101 then
      local res = { status = status, reason = reason, headers = h }
      local te, n = h["transfer-encoding"], content_length(h)
      if method == "HEAD" or status < 200 or status == 204
          or status == 304 then
        res.body = ""
      elseif te and te:lower():find("chunked") then
        res.body, err, code = read_chunked(r, limit)
      elseif n == false then
        return nil, "EPROTO: bad Content-Length", "EPROTO"
      elseif n then
        if n > limit then
          return nil, "E2BIG: body of " .. n .. " bytes", "E2BIG"
        end
        res.body, err, code = r:bytes(n)
      else
        res.body, err, code = r:rest(limit)
      end
      if not res.body then return nil, err, code end
      return res
    end
  until false
end

-- Sends one request and reads its response; see the top of this file.
-- Options besides those shown there: max_body (default M.MAX_RESPONSE).
function M.request(o)
  if type(o) ~= "table" or type(o.url) ~= "string" then
    error("http11: request needs {url = 'http://host:port/path', ...}", 2)
  end
  local scheme, host, port, target = M.parse_url(o.url)
  if not scheme then error("http11: bad url " .. o.url, 2) end
  local method = (o.method or (o.body and "POST" or "GET")):upper()
  local body = o.body or ""
  if type(body) ~= "string" then error("http11: body must be a string", 2) end
  local timeout = o.timeout or M.TIMEOUT
  local deadline = athost.now() + timeout
  local c, err, code = (o.connect or default_connect)(host, port,
    scheme == "https")
  if not c then return nil, err or "ECONNREFUSED: cannot connect", code end
  local default_port = scheme == "https" and 443 or 80
  local hosthdr = host:find(":", 1, true) and "[" .. host .. "]" or host
  if port ~= default_port then hosthdr = hosthdr .. ":" .. port end
  local head = { method, " ", target, " HTTP/1.1\r\n" }
  if not has(o.headers, "host") then head[#head + 1] = "Host: " .. hosthdr .. "\r\n" end
  head[#head + 1] = header_lines(o.headers, { ["content-length"] = true,
    connection = true, ["transfer-encoding"] = true })
  if #body > 0 or method == "POST" or method == "PUT" or method == "PATCH" then
    head[#head + 1] = "Content-Length: " .. #body .. "\r\n"
  end
  head[#head + 1] = "Connection: close\r\n\r\n"
  local ok
  ok, err, code = c:send(concat(head) .. body)
  local res
  if ok then
    res, err, code = read_response(reader(c, deadline), method,
      o.max_body or M.MAX_RESPONSE)
  end
  c:close()
  if not res then return nil, err, code end
  return res
end

---------------------------------------------------------------------------
-- Server
---------------------------------------------------------------------------

-- Serialises a response with a Content-Length and Connection: close.
function M.response(status, headers, body)
  body = body or ""
  local reason = M.REASONS[status] or "Status " .. status
  return concat {
    "HTTP/1.1 ", tostring(status), " ", reason, "\r\n",
    header_lines(headers, { ["content-length"] = true, connection = true,
      ["transfer-encoding"] = true }),
    "Content-Length: ", tostring(#body), "\r\n",
    "Connection: close\r\n\r\n", body,
  }
end

local function error_response(status, why)
  return M.response(status, { ["Content-Type"] = "text/plain" },
    (M.REASONS[status] or "error") .. ": " .. why .. "\n")
end

-- Reads one request from c. Returns req, or nil, status, why.
local function read_request(c, r, o)
  local line, err, code = r:line(o.max_header)
  if not line then
    if code == "E2BIG" then return nil, 413, "request line too long" end
    return nil, code == "ETIMEDOUT" and 408 or 0, err
  end
  local method, target, version = line:match("^(%S+) (%S+) HTTP/(%d%.%d)$")
  if not method or not method:find(TOKEN) then
    return nil, 400, "malformed request line"
  end
  if version:sub(1, 1) ~= "1" then return nil, 505, "HTTP/" .. version end
  local h
  h, err, code = read_headers(r, o.max_header - #line - 2)
  if not h then
    if code == "E2BIG" then return nil, 413, "header fields too large" end
    if code == "EPROTO" then return nil, 400, err end
    return nil, code == "ETIMEDOUT" and 408 or 0, err
  end
  if version == "1.1" and not h.host then return nil, 400, "no Host" end
  local te, n = h["transfer-encoding"], content_length(h)
  if te and n ~= nil then
    return nil, 400, "both Transfer-Encoding and Content-Length"
  end
  if n == false then return nil, 400, "bad Content-Length" end
  if te and te:lower() ~= "chunked" then
    return nil, 501, "Transfer-Encoding " .. te
  end
  if n and n > o.max_body then
    return nil, 413, "body of " .. n .. " bytes (at most " .. o.max_body .. ")"
  end
  if (h.expect or ""):lower() == "100-continue" and (te or (n or 0) > 0) then
    c:send("HTTP/1.1 100 Continue\r\n\r\n")
  end
  local body = ""
  if te then
    body, err, code = read_chunked(r, o.max_body)
  elseif n then
    body, err, code = r:bytes(n)
  end
  if not body then
    if code == "E2BIG" then return nil, 413, err end
    if code == "EPROTO" then return nil, 400, err end
    return nil, code == "ETIMEDOUT" and 408 or 0, err
  end
  local path, query = target:match("^([^?]*)%??(.*)$")
  local req = {
    method = method, target = target, version = version,
    path = M.urldecode(path), raw_query = query, query = M.form_decode(query),
    headers = h, body = body, remote = c.name,
  }
  local ctype = (h["content-type"] or ""):lower()
  if ctype:match("^%s*application/x%-www%-form%-urlencoded%s*;?") then
    req.form = M.form_decode(body)
  end
  return req
end

-- After an error response, reads (and drops) what the client still sends,
-- until it pauses for `idle` ms or `ms` have passed, so closing does not
-- reset the connection before the client has read the response.
local function linger(c, ms, idle)
  local deadline = athost.now() + ms
  while true do
    local left = math.min(idle, math.floor(deadline - athost.now()))
    if left <= 0 or not c:recv(65536, { timeout = left }) then return end
  end
end

local function serve_one(c, handler, o)
  local r = reader(c, athost.now() + o.timeout)
  local req, status, why = read_request(c, r, o)
  if not req then
    if status ~= 0 then
      if c:send(error_response(status, why)) then linger(c, 2000, 100) end
    end
    if o.on_error then o.on_error(status, why, c.name) end
    return
  end
  local ok, code, headers, body = pcall(handler, req)
  if not ok then
    if o.on_error then o.on_error(500, tostring(code), c.name) end
    c:send(error_response(500, "the handler failed"))
    return
  end
  if math.type(code) ~= "integer" or code < 100 or code > 999 then
    if o.on_error then o.on_error(500, "handler returned status "
      .. tostring(code), c.name) end
    c:send(error_response(500, "the handler returned no status"))
    return
  end
  if type(body) ~= "string" then body = body and tostring(body) or "" end
  if req.method == "HEAD" then body = "" end
  local resp_ok, resp = pcall(M.response, code, headers, body)
  if not resp_ok then
    if o.on_error then o.on_error(500, tostring(resp), c.name) end
    resp = error_response(500, "the handler returned a bad header")
  end
  c:send(resp)
end

local function connection(c, handler, o)
  if o.tls then
    -- HTTPS: the handshake first, on this connection's own flow.
    local ok, err = c:tls({ server = true, cert = o.tls.cert, key = o.tls.key,
      timeout = o.timeout })
    if not ok then
      if o.on_error then pcall(o.on_error, 0, err, c.name) end
      if not c.closed then c:close() end
      return
    end
  end
  local ok, err = pcall(serve_one, c, handler, o)
  if not ok and o.on_error then pcall(o.on_error, 500, tostring(err), c.name) end
  c:close()
end

-- Accepts connections on listener until it is closed, each served by a
-- flow of its own. Options: timeout (ms for the whole request, default
-- M.TIMEOUT), max_header, max_body, on_error(status, why, peer) to observe
-- rejected requests and handler failures, tls = {cert = PEM, key = PEM} to
-- serve HTTPS.
function M.serve(listener, handler, opts)
  if type(handler) ~= "function" then
    error("http11: serve needs a handler function", 2)
  end
  local o = {
    timeout = opts and opts.timeout or M.TIMEOUT,
    max_header = opts and opts.max_header or M.MAX_HEADER,
    max_body = opts and opts.max_body or M.MAX_BODY,
    on_error = opts and opts.on_error,
    tls = opts and opts.tls,
  }
  while not listener.closed do
    local ok, c, err = pcall(listener.accept, listener)
    if not ok or listener.closed then break end
    if c then
      athost.spawn(connection, c, handler, o)
    elseif o.on_error then
      pcall(o.on_error, 0, err, listener.name)
    end
  end
  return true
end

return M
