-- HTTP over AT (AT+HTTPINIT ... AT+HTTPTERM), as reference 000 does it by
-- hand: the body length in AT+HTTPDATA is counted here, never by a person.
-- What differs between modules is the profile's http table: SIMCom sets
-- the type with "CONTENT" (content), names an SSL context for https
-- (ssl_ctx) and reads the body in chunks after OK (read_chunks, read_end).
--
--   local httpat = require("athost.httpat")
--   local status, body = httpat.post(m, url, form, "application/x-www-form-urlencoded")
local athost = require("athost")

local M = {}

-- Fails with the module's words and the step's command.
local function fail(what, err)
  error(string.format("%s: %s", what, err), 0)
end

-- A byte count as the module wrote it: the number, or nil and why it is
-- none (negative, 10 digits or more, above max).
local function count(s, max)
  local n = math.tointeger(tonumber(s))
  if not n then return nil, string.format("a count that is no number (%q)", tostring(s)) end
  if n < 0 then return nil, string.format("a negative count, %s bytes", s) end
  if #s >= 10 or n > max then
    return nil, string.format("%s bytes, more than the %d accepted", s, max)
  end
  return n
end

-- AT+HTTPREAD: the body +HTTPACTION announced (len bytes), as a counted
-- payload. Returns the body, or nil and what was wrong: the engine's
-- count errors, a count that is not len, a payload that did not come.
local function read(m, h, len, opts)
  local r, err = m:cmd(string.format(h.read, 0, len),
    { reply = h.read_reply, timeout = opts.timeout or 30000 })
  if not r then return nil, err end
  if not r.line then
    return nil, string.format("no +HTTPREAD line before %s (+HTTPACTION announced "
      .. "%d bytes)", r.final, len)
  end
  local n, why = count(r[1], h.read_reply.max)
  if not n then
    return nil, string.format("+HTTPREAD announced %s (the module said %q)", why, r.line)
  end
  if n ~= len then
    return nil, string.format("+HTTPREAD announced %d bytes where +HTTPACTION "
      .. "announced %d (the module said %q)", n, len, r.line)
  end
  if type(r.payload) ~= "string" or #r.payload ~= n then
    return nil, string.format("+HTTPREAD announced %d bytes, %s arrived before %s",
      n, r.payload and #r.payload .. " bytes" or "no payload", r.final)
  end
  return r.payload
end

-- The chunked form (h.read_chunks, SIMCom): AT+HTTPREAD=<offset>,<size>
-- answers OK (before or after the chunks), then "+HTTPREAD: <n>" and n
-- bytes, as often as it takes, then h.read_end ("+HTTPREAD: 0"). The
-- chunks are URCs of the command; their bytes must add up to size.
local function read_chunks(m, h, len, opts)
  local parts, got, bad = {}, 0, nil
  local ids = {}
  for _, pat in ipairs(h.read_chunks) do
    ids[#ids + 1] = m.port:on(pat, function(mt)
      if mt.error then
        bad = bad or mt.error
      elseif not bad then
        parts[#parts + 1] = mt.payload
        got = got + #mt.payload
      end
    end)
  end
  local function done(...)
    for _, id in ipairs(ids) do m.port:off(id) end
    return ...
  end
  local off, size = 0, h.read_size or len
  while off < len do
    local want = math.min(size, len - off)
    local cmd = string.format(h.read, off, want)
    local wait = opts.timeout or m:wait_ms("http_read")
    local r, err = m:cmd(cmd, { reply = false, outcome = h.read_end,
      outcome_fail = h.read_fail, timeout = wait, outcome_timeout = wait })
    if bad then return done(nil, bad) end
    if not r then
      return done(nil, string.format("%s (%d of the %d bytes +HTTPACTION announced "
        .. "had come)", err, got, len))
    end
    if got ~= off + want then
      return done(nil, string.format("%s brought %d bytes where %d were asked for "
        .. "(+HTTPACTION announced %d; the module ended with %q)", cmd, got - off,
        want, len, r.outcome and r.outcome.line or r.final))
    end
    off = off + want
  end
  return done(table.concat(parts))
end

local request

-- One request. Returns status (number), body; raises on a module-side
-- failure (ERROR, timeouts, 60x statuses). opts.seen(body), if given, is
-- called as soon as the body is read, before anything else is sent: the
-- transcript writes what was received at the next send, so a secret in the
-- body must be registered there to be masked. While it runs, an early end
-- of the run (Ctrl-C, SIGTERM) ends the module's HTTP session (h.term)
-- through athost.defer.
function M.request(m, method, url, body, content_type, opts)
  local h = m.profile.http
  local held = h and athost.defer(function()
    m:cmd(h.term, { timeout = 2000 })
  end, { timeout = (m.profile.waits or {}).cleanup or 5000, name = "the HTTP session" })
  local res = table.pack(pcall(request, m, method, url, body, content_type, opts))
  if held then held:cancel() end
  if not res[1] then error(res[2], 0) end
  return table.unpack(res, 2, res.n)
end

function request(m, method, url, body, content_type, opts)
  opts = opts or {}
  local h = m.profile.http
  if not h then
    error(m.profile.name .. " has no HTTP commands in its profile", 0)
  end
  local limit = m.profile.limits and m.profile.limits.http_data
  if body and limit and #body > limit then
    fail(string.format("HTTP body (%d bytes)", #body), string.format(
      "the %s takes at most %d bytes in one request", m.profile.name, limit))
  end
  -- A session left open by an earlier run would make HTTPINIT fail.
  m:cmd(h.term, { timeout = 2000 })
  local r, err = m:cmd(h.init)
  if not r then fail("HTTP init", err) end
  local function para(cmd)
    local ok, e = m:cmd(cmd)
    if not ok then
      m:cmd(h.term)
      fail("HTTP parameter", e)
    end
  end
  for _, cmd in ipairs(h.params or {}) do para(cmd) end
  -- A module that switches HTTPS on (AT+HTTPSSL) rather than reading it
  -- from the URL.
  if h.ssl then para(string.format(h.ssl, url:find("^https://") and 1 or 0)) end
  para(string.format(h.url, url))
  if content_type then
    -- AT+HTTPPARA="CONTENT" where the profile has it; else a header line.
    para(h.content and string.format(h.content, content_type)
      or string.format(h.header, "Content-Type: " .. content_type))
  end
  -- A module that takes HTTPS from the URL and its TLS settings from an
  -- SSL context named here (SIMCom's "SSLCFG").
  if h.ssl_ctx and url:find("^https://") then
    para(string.format(h.ssl_ctx, (m.profile.tls or {}).ctx or 0))
  end
  local action = method == "POST" and 1 or 0
  if body then
    r, err = m:cmd(string.format(h.data, #body, opts.data_ms or h.data_time or 20000),
      { prompt = h.data_prompt, data = body })
    if not r then
      m:cmd(h.term)
      fail(string.format("HTTP body (%d bytes)", #body), err)
    end
  end
  -- +HTTPACTION is the command's outcome: after OK (reference 000) or
  -- before it; the module may be busy with the request until then, so
  -- the whole wait is the command's.
  local wait = opts.timeout or m:wait_ms("http")
  r, err = m:cmd(string.format(h.action, action), { outcome = h.action_urc,
    outcome_fail = h.action_fail, timeout = wait, outcome_timeout = wait })
  if not r then
    m:cmd(h.term)
    fail("HTTP request to " .. url, err)
  end
  local a = r.outcome
  local status = tonumber(a[2])
  local len, why = count(a[3], h.read_reply.max)
  if not len then
    m:cmd(h.term)
    fail("HTTP request to " .. url, string.format("%s announced %s (the module said %q)",
      "+HTTPACTION", why, a.line))
  end
  -- HTTP has no status from 600 on: those are the module's own errors
  -- (600-606 on Luat, 60x and 7xx on SIMCom; h.errors names them).
  if status >= 600 then
    m:cmd(h.term)
    local name = h.errors and h.errors[status]
    fail("HTTP request to " .. url, string.format(
      "the module could not complete it (+HTTPACTION status %d%s)", status,
      name and (": " .. name) or ""))
  end
  local text = ""
  if len > 0 then
    text, err = (h.read_chunks and read_chunks or read)(m, h, len, opts)
    if not text then
      m:cmd(h.term)
      fail("HTTP read of " .. url, err)
    end
    if opts.seen then opts.seen(text) end
  end
  m:cmd(h.term)
  return status, text
end

function M.post(m, url, body, content_type, opts)
  return M.request(m, "POST", url, body, content_type, opts)
end

function M.get(m, url, opts)
  return M.request(m, "GET", url, nil, nil, opts)
end

return M
