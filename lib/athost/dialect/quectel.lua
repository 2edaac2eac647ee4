-- The Quectel command family (EC200U, EC2x/EG2x, BG95/96), DIALECTS.md §1,
-- §4.1, §4.2. MQTT: AT+QMTCFG/QMTOPEN/QMTCONN/QMTSUB/QMTUNS/QMTPUBEX (or
-- QMTPUB)/QMTRECV/QMTDISC/QMTCLOSE; HTTP: AT+QHTTPCFG/QHTTPURL/QHTTPPOST/
-- QHTTPGET/QHTTPREAD; files: AT+QFDEL and AT+QFUPL; TLS: AT+QSSLCFG and
-- AT+QMTCFG="ssl". What §1 leaves open is the profile's choice
-- (lib/athost/profiles/ec200u.lua): the publish form, the receive
-- patterns, the loss lines, the error codes and texts, the contexts.
local athost = require("athost")
local at = require("athost.at")
local base = require("athost.mqttsession")

local D = {}
local list, fail, said, reason = base.list, base.fail, base.said, base.reason

-- What the result codes mean, for the messages (§1.2, §1.3, §1.6, §1.10).
D.OPEN = { [-1] = "failed to open the network", [0] = "opened",
  [1] = "wrong parameter", [2] = "client index occupied",
  [3] = "PDP activation failed", [4] = "DNS failure",
  [5] = "network connection error" }
D.RESULT = { [0] = "sent and acknowledged", [1] = "retransmitted",
  [2] = "send failed" }
D.CONNACK = { [0] = "accepted", [1] = "unacceptable protocol version",
  [2] = "client id rejected", [3] = "server unavailable",
  [4] = "bad user name or password", [5] = "not authorised" }
D.HTTP = { [701] = "unknown error", [702] = "timeout", [703] = "busy",
  [704] = "UART busy", [705] = "no request", [706] = "network busy",
  [707] = "network open failed", [708] = "no network configuration",
  [709] = "network deactivated", [710] = "network error", [711] = "URL error",
  [712] = "empty URL", [713] = "IP address error", [714] = "DNS error",
  [715] = "socket create error", [716] = "socket connect error",
  [717] = "socket read error", [718] = "socket write error",
  [719] = "socket closed", [720] = "data encode error",
  [721] = "data decode error", [722] = "read timeout",
  [723] = "response failed", [726] = "input timeout",
  [727] = "wait-data timeout", [728] = "response timeout",
  [729] = "out of memory", [730] = "bad parameter" }

-- A profile pattern (or counted spec) with <idx> and <cid> filled in.
local function fill(pat, idx, cid)
  if type(pat) == "table" then
    local out = {}
    for k, v in pairs(pat) do out[k] = v end
    out[1] = fill(pat[1], idx, cid)
    return out
  end
  return (pat:gsub("<idx>", tostring(idx)):gsub("<cid>", tostring(cid)))
end

local function fill_all(pats, idx, cid)
  local out = {}
  for i, pt in ipairs(list(pats)) do out[i] = fill(pt, idx, cid) end
  return out
end

-- Whether a failed command's error is one of codes: numbers (+CME ERROR:
-- n) and texts (found in the lower-cased error, for AT+CMEE=2).
local function is_error(r, err, codes)
  local cme = r and r.cme
  for _, c in ipairs(codes or {}) do
    if type(c) == "number" then
      if tonumber(cme) == c then return true end
    elseif tostring(cme or err):lower():find(c, 1, true) then
      return true
    end
  end
  return false
end

-- A 7xx HTTP error named: "703 (busy)".
local function http_error(code)
  local n = tonumber(code)
  return string.format("%s (%s)", tostring(code), D.HTTP[n] or "unknown code")
end

---------------------------------------------------------------------------
-- TLS (§1.9)
---------------------------------------------------------------------------

-- Configures the profile's SSL context: all versions and suites, the
-- level, the files. Returns the context.
local function ssl_context(m, level, files)
  local t = m.profile.tls
  local function cfg(item, v)
    local r, err = m:cmd(string.format('AT+QSSLCFG="%s",%d,%s', item, t.ctx, v))
    if not r then fail("TLS setting " .. item, err) end
  end
  cfg("sslversion", t.sslversion)
  cfg("ciphersuite", t.ciphersuite)
  cfg("seclevel", level)
  for _, role in ipairs({ "ca", "cert", "key" }) do
    if files[role] then
      cfg(({ ca = "cacert", cert = "clientcert", key = "clientkey" })[role],
        at.q(files[role]))
    end
  end
  return t.ctx
end

function D.tls(m, f)
  ssl_context(m, f.level or 0, f)
end

-- The context of a TLS session: the one athost.session configured, or
-- (o.tls without it) one that encrypts and verifies nothing.
local function tls_ctx(m)
  if m.tls then return m.profile.tls.ctx end
  return ssl_context(m, 0, {})
end

---------------------------------------------------------------------------
-- Files (§1.8)
---------------------------------------------------------------------------

-- Quectel's 16-bit XOR over the data as 16-bit words, big-endian (big)
-- or little-endian; an odd last byte is padded with 0.
function D.xor16(data, big)
  local x = 0
  for i = 1, #data, 2 do
    local a, b = data:byte(i, i + 1)
    b = b or 0
    x = x ~ (big and (a << 8 | b) or (b << 8 | a))
  end
  return x
end

-- AT+QFDEL (a missing file is fine), AT+QFUPL, CONNECT, the bytes,
-- +QFUPL: <size>,<checksum>, OK; an existing file (407) once more after
-- deleting it. Returns the name the module knows ("UFS:<name>").
function D.upload(m, name, data, opts)
  local f = m.profile.files
  local fname = name:find("^%u+:") and name or f.drive .. name
  local what = string.format("uploading %s (%d bytes)", fname, #data)
  local function delete()
    local r, err, _, r2 = m:cmd("AT+QFDEL=" .. at.q(fname))
    if not r and not is_error(r2, err, f.not_found) then
      fail("deleting " .. fname .. " before the upload", err)
    end
  end
  local function put()
    local cmd = string.format("AT+QFUPL=%s,%d", at.q(fname), #data)
    if f.timeout then cmd = cmd .. "," .. f.timeout end
    return m:cmd(cmd, { prompt = "CONNECT", data = data,
      reply = "^%+QFUPL: ?(%d+),(%x+)" })
  end
  delete()
  local r, err, _, r2 = put()
  if not r and is_error(r2, err, f.exists) then
    athost.log(string.format("%s exists after AT+QFDEL (%s): deleting it again", fname, err))
    delete()
    r, err = put()
  end
  if not r then fail(what, err) end
  if not r.line then
    fail(what, string.format("no +QFUPL: <size>,<checksum> before %s (the module said %q)",
      r.final, table.concat(r.lines, " ")))
  end
  local size = tonumber(r[1])
  if size ~= #data then
    fail(what, string.format("the module stored %d bytes where %d were sent (it said %q)",
      size, #data, r.line))
  end
  if f.checksum == "xor16" then
    local got = tonumber(r[2], 16)
    local be, le = D.xor16(data, true), D.xor16(data, false)
    if got ~= be and got ~= le then
      fail(what, string.format("checksum %s, the data's 16-bit XOR is %04x (or %04x "
        .. "little-endian) (the module said %q)", r[2], be, le, r.line))
    end
  end
  return fname
end

---------------------------------------------------------------------------
-- HTTP (§1.10, §4.2)
---------------------------------------------------------------------------

-- AT+QHTTPREAD → CONNECT → body → OK → +QHTTPREAD: <err>. The body has
-- no count of its own, so the dialogue is read raw here: len bytes after
-- CONNECT when +QHTTPPOST/GET gave the length, else up to the OK that
-- +QHTTPREAD follows. Lines before CONNECT other than the echo are
-- logged and passed over. Returns the body or raises naming the step.
local function read_body(m, len, opts, url)
  local h, port = m.profile.http, m.port
  local cmd = string.format("AT+QHTTPREAD=%d", h.read_s)
  local what = "HTTP read of " .. url
  local deadline = athost.now() + (opts.timeout or m:timeout(cmd))
  local buf, pos = "", 1
  local function more(expected)
    local left = deadline - athost.now()
    local s, err
    if left > 0 then s, err = port:recv(65536, { timeout = math.ceil(left) }) end
    if not s then
      fail(what, string.format("%s: waiting for %s, %s (the module said %q)", cmd,
        expected, err or "timed out", buf:sub(-80)))
    end
    buf = buf .. s
  end
  -- The next line from pos: its text, or nil when it has not ended yet.
  local function line()
    local s, e = buf:find("[\r\n]", pos)
    if not s then return nil end
    local l = buf:sub(pos, s - 1)
    pos = e + 1
    return l
  end
  local function skip_ends()
    while buf:sub(pos, pos):find("^[\r\n]$") do pos = pos + 1 end
  end
  -- Line noise (control bytes, bytes UTF-8 never has), skipped between
  -- lines as the chat engine skips it.
  local function noise(l)
    return l:find("[%z\1-\8\11-\31\127\192\193\245-\255]") ~= nil
  end
  -- "+QHTTPREAD: <err>": a failure ends the read here, named.
  local function read_err(l)
    local e = l:match("^%+QHTTPREAD: ?(%-?%d+)$")
    if e and tonumber(e) ~= 0 then fail(what, "+QHTTPREAD: " .. http_error(e)) end
    return e
  end
  m:settle()
  port:flush()
  assert(port:sendline(cmd))
  -- Up to CONNECT (or OK: nothing to read).
  local seen_ok, seen_err = false, nil
  while true do
    skip_ends()
    local save = pos
    local l = line()
    if not l then
      pos = save
      more("CONNECT")
    elseif l == "CONNECT" then
      -- Its line end: CR LF, CR or LF, wherever the bytes were split.
      if buf:sub(pos - 1, pos - 1) == "\r" then
        while #buf < pos do more("the line end after CONNECT") end
        if buf:sub(pos, pos) == "\n" then pos = pos + 1 end
      end
      break
    elseif l == "OK" then
      seen_ok = true
      break
    elseif read_err(l) then
      seen_err = true
    elseif l == "ERROR" or l:find("^%+CME ERROR:") then
      local code = l:match("^%+CME ERROR: ?(%d+)$")
      fail(what, string.format("%s at %s%s", l, cmd,
        code and D.HTTP[tonumber(code)] and " (" .. D.HTTP[tonumber(code)] .. ")" or ""))
    elseif l ~= cmd and not noise(l) then
      athost.log(string.format("before CONNECT of %s: %q passed over", cmd, l))
    end
  end
  local body = ""
  if not seen_ok then
    if len then
      while #buf - pos + 1 < len do
        more(string.format("the %d bytes announced (%d came)", len, #buf - pos + 1))
      end
      body = buf:sub(pos, pos + len - 1)
      pos = pos + len
      -- Then OK or +QHTTPREAD: anything else means the count fits no
      -- reading of what came.
      while true do
        skip_ends()
        local save = pos
        local l = line()
        if not l then
          pos = save
          more("OK after the body")
        elseif not noise(l) then
          if l ~= "OK" and not read_err(l) then
            fail(what, string.format("expected OK or +QHTTPREAD after the %d bytes "
              .. "announced, the module said %q (the count does not frame the body)", len, l))
          end
          pos = save                   -- read again below
          break
        end
      end
    else
      -- Up to the first line end that OK and +QHTTPREAD: <err> follow,
      -- in either order. CONNECT's own line end may be that one (an
      -- empty body).
      local from = math.max(pos - 2, 1)
      -- Whether more bytes could still make rest such an end: fewer than
      -- two whole lines after it, all of the characters those lines use.
      local function could_end(r)
        local lines = 0
        for l in r:sub(3):gmatch("([^\r\n]+)[\r\n]") do lines = lines + 1 end
        return lines < 2 and #r < 64 and not r:find("[^OK%+QHTTPREAD: %-%d\r\n]")
      end
      while true do
        local s0 = buf:find("\r\n", from, true)
        local rest = s0 and buf:sub(s0)
        if rest and (rest:find("^\r\nOK\r\n[\r\n]*%+QHTTPREAD: ?%-?%d+[\r\n]")
            or rest:find("^\r\n%+QHTTPREAD: ?%-?%d+\r?\n[\r\n]*OK[\r\n]")) then
          body = s0 >= pos and buf:sub(pos, s0 - 1) or ""
          pos = s0
          break
        elseif rest and not could_end(rest) then
          from = s0 + 1                -- a line end inside the body
        else
          -- Too little after it to tell: wait for the rest.
          if #buf - pos > h.max_body + 64 then
            fail(what, string.format("no OK within %d bytes of body", h.max_body))
          end
          more("OK and +QHTTPREAD after the body")
        end
      end
    end
  end
  -- OK and +QHTTPREAD: <err> (in either order); other lines passed over.
  while not (seen_ok and seen_err) do
    skip_ends()
    local save = pos
    local l = line()
    if not l then
      pos = save
      more(seen_ok and "+QHTTPREAD: <err>" or "OK")
    elseif l == "OK" and not seen_ok then
      seen_ok = true
    elseif not seen_err and read_err(l) then
      seen_err = true
    elseif not noise(l) then
      athost.log(string.format("after the body of %s: %q passed over", cmd, l))
    end
  end
  skip_ends()
  if pos <= #buf then
    athost.log(string.format("after %s: %q passed over", cmd, buf:sub(pos, pos + 80)))
  end
  m.last_final = athost.now()
  return body
end

-- One request: the settings, the URL, POST (the body after CONNECT) or
-- GET, +QHTTPPOST/+QHTTPGET: <err>[,<status>,<len>], the read.
function D.http(m, method, url, body, content_type, opts)
  opts = opts or {}
  local h = m.profile.http
  local what = "HTTP request to " .. url
  local function set(cmd)
    local r, err = m:cmd(cmd)
    if not r then fail("HTTP setting", err) end
  end
  set(string.format('AT+QHTTPCFG="contextid",%d', h.contextid))
  for _, c in ipairs(h.config or {}) do set("AT+QHTTPCFG=" .. c) end
  if content_type then
    local n = (h.content_types or {})[content_type]
      or (h.content_types or {})[content_type:match("^%s*([^;%s]+)"):lower()]
    if not n then
      fail(what, string.format("the %s takes the content type as an index "
        .. "(AT+QHTTPCFG=\"contenttype\",<n>) and its index of %q is unknown: "
        .. "add it to the profile's http.content_types", m.profile.name, content_type))
    end
    set(string.format('AT+QHTTPCFG="contenttype",%d', n))
  end
  if url:find("^[Hh][Tt][Tt][Pp][Ss]://") then
    set(string.format('AT+QHTTPCFG="sslctxid",%d', tls_ctx(m)))
  end
  local cmd = string.format("AT+QHTTPURL=%d,%d", #url, h.url_s)
  local r, err = m:cmd(cmd, { prompt = "CONNECT", data = url,
    timeout = opts.timeout or m:timeout(cmd) })
  if not r then fail("HTTP URL " .. url, err) end
  local name, copts
  if method == "POST" then
    body = body or ""
    name = "+QHTTPPOST"
    cmd = string.format("AT+QHTTPPOST=%d,%d,%d", #body, h.input_s, h.response_s)
    copts = { prompt = "CONNECT", data = body }
  else
    name = "+QHTTPGET"
    cmd = string.format("AT+QHTTPGET=%d", h.response_s)
    copts = {}
  end
  copts.outcome = "^%" .. name .. ": ?(%-?%d+)"
  copts.timeout = opts.timeout or m:timeout(cmd)
  copts.outcome_timeout = opts.timeout or m:wait_ms("http")
  local r2
  r, err, _, r2 = m:cmd(cmd, copts)
  if not r then
    local code = r2 and tonumber(r2.cme)
    if code and D.HTTP[code] then err = err .. " (" .. D.HTTP[code] .. ")" end
    fail(what, err)
  end
  local line = r.outcome.line
  local f = at.params(line:match(": ?(.*)$"))
  if tonumber(f[1]) ~= 0 then
    fail(what, string.format("the module said %q: %s", line, http_error(f[1])))
  end
  local status = math.tointeger(tonumber(f[2]))
  if not status then
    fail(what, string.format("the module said %q: no HTTP status", line))
  end
  -- The length may be missing (a chunked reply): read up to OK then.
  local len
  if f[3] and f[3] ~= "" then
    len = math.tointeger(tonumber(f[3]))
    if not len or len < 0 or #f[3] >= 10 or len > h.max_body then
      fail(what, string.format("the module said %q: a length that is no count of "
        .. "at most %d bytes", line, h.max_body))
    end
  end
  local text = ""
  if len ~= 0 then text = read_body(m, len, opts, url) end
  if opts.seen then opts.seen(text) end
  return status, text
end

---------------------------------------------------------------------------
-- MQTT (§1.1-§1.6, §4.1)
---------------------------------------------------------------------------

local S = base.class()
D.Session = S

-- Counted specs with max = limit: a count above it is the engine's error.
local function capped(pats, limit)
  local out = {}
  for i, pt in ipairs(list(pats)) do
    out[i] = { pt[1], count = pt.count, trailer = pt.trailer, max = pt.max or limit }
  end
  return out
end

function D.mqtt(m, o)
  local p = m.profile.mqtt
  if o.mode and o.mode ~= "ascii" then
    error(string.format("mode=%s: the %s has no such payload mode (its payloads "
      .. "are raw bytes)", o.mode, m.profile.name), 0)
  end
  local delivery = o.delivery or "direct"
  if delivery ~= "direct" and delivery ~= "cached" then
    error(string.format("delivery=%s: direct or cached", delivery), 0)
  end
  local self = base.init(S, m, o)
  self.p, self.msgid = p, 0
  self.idx = p.client or 0
  -- delivery=cached is the module's buffered mode (recv/mode 1).
  self.cached = delivery == "cached"
  local cid = p.pdpcid or 1
  local function f(v) return fill_all(v, self.idx, cid) end
  self.pats = {
    capped(f(p.message), m.profile.limits.message)[1],
    f(p.notice)[1], f(p.message_bare)[1], f(p.message_unframed)[1],
  }
  self.link_lost = f(p.link_lost)
  self.bearer_lost = f(self.rec.bearer_lost)
  self.listen_pats = self.pats
  -- The order matters: a URC goes to the first handler it matches, and
  -- the last pattern takes every +QMTRECV line of this client.
  for i, pat in ipairs(self.pats) do
    self:on(pat, function(mt) self:incoming(mt, i) end)
  end
  -- Late answers of this session's own closing commands (§1.2): taken,
  -- never read as another command's reply.
  for _, c in ipairs({ "+QMTCLOSE", "+QMTDISC" }) do
    self:on(string.format("^%%%s: %d,", c, self.idx), function() end)
  end
  self:watch_losses()
  return self
end

---------------------------------------------------------------------------
-- Incoming messages (§1.5)
---------------------------------------------------------------------------

-- A +QMTRECV line matched by pattern i of self.pats: a message, a slot
-- notice, or one that cannot be framed (kept for listen() to raise).
function S:incoming(mt, i)
  if i == 1 then
    if mt.error then
      self.failed = self.failed or string.format("incoming +QMTRECV on %q: %s",
        tostring(mt[2]), mt.error)
      return
    end
    self:deliver(mt[2], mt.payload)
  elseif i == 2 then
    self.queue[#self.queue + 1] = { slot = tonumber(mt[1]) }
  elseif i == 3 then
    self:deliver(mt[2], mt[3])
  else
    self.failed = self.failed or string.format("incoming message %q cannot be framed: "
      .. "expected +QMTRECV: %d,<msgid>,\"<topic>\",<len>,\"<payload>\" or a payload "
      .. "in quotes that ends the line (one holding a line end needs the length "
      .. "form, AT+QMTCFG=\"recv/mode\",%d,<mode>,1)", mt.line:sub(1, 120), self.idx, self.idx)
  end
end

function S:listened(mt)
  self:incoming(mt, mt.index)
end

-- Buffered mode: reads the slot listen() took and every other one
-- announced so far (AT+QMTRECV=<idx>,<recv_id>); the messages come as
-- +QMTRECV lines, taken by the handlers while the command runs.
function S:fetch(entry)
  local slots = {}
  if entry and entry.slot then slots[1] = entry.slot end
  for i = 1, #self.queue do
    if self.queue[i].slot then slots[#slots + 1] = self.queue[i].slot end
  end
  for i = #self.queue, 1, -1 do
    if self.queue[i].slot then table.remove(self.queue, i) end
  end
  for _, id in ipairs(slots) do
    local r, err = self.m:cmd(string.format("AT+QMTRECV=%d,%d", self.idx, id),
      { reply = false })
    if not r then fail("reading buffered message " .. id, err) end
  end
  athost.sleep(0)        -- the handlers of the last bytes run first
  if self.failed then fail("reading buffered messages", self.failed) end
end

---------------------------------------------------------------------------
-- Commands
---------------------------------------------------------------------------

function S:next_id()
  self.msgid = self.msgid % 65535 + 1
  return self.msgid
end

-- An outcome pattern pair for "+<name>: <idx>,<msgid>,<result>": result
-- 0 succeeds, 1 (a retransmission notice) is passed over, any other
-- fails.
function S:result_pats(name, id)
  local head = string.format("^%%+%s: %d,%d,", name, self.idx, id)
  return head .. "0", head .. "[%-02-9]"
end

-- A refused request's message, with the result named.
local function refused(err, r)
  local line = said(err, r)
  if not line then return reason(err) end
  local res = tonumber(at.params(line:match(": ?(.*)$") or "")[3])
  return string.format('refused: the module said "%s" (%s)', line,
    D.RESULT[res] or "unknown result")
end

-- AT+QMTCFG: "ssl" every time (EC200U keeps it until power cycle),
-- version, pdpcid, keepalive, session, recv/mode; then open and connect.
function S:connect()
  local o, p, m, idx = self.o, self.p, self.m, self.idx
  -- An AT string cannot carry these; name the field, never its value.
  for _, k in ipairs({ "client_id", "username", "password" }) do
    if tostring(o[k] or ""):find('["\r\n]') then
      fail("AT+QMTCONN", k .. " contains a double quote or a line end")
    end
  end
  local function cfg(fmt, ...)
    local r, err = m:cmd("AT+QMTCFG=" .. string.format(fmt, ...))
    if not r then fail("MQTT settings", err) end
  end
  if o.tls then
    cfg('"ssl",%d,1,%d', idx, tls_ctx(m))
  else
    cfg('"ssl",%d,0', idx)
  end
  cfg('"version",%d,%d', idx, p.version or 4)
  cfg('"pdpcid",%d,%d', idx, p.pdpcid or 1)
  cfg('"keepalive",%d,%d', idx, self.keepalive)
  cfg('"session",%d,%d', idx, o.clean == false and 0 or 1)
  cfg('"recv/mode",%d,%d,%d', idx, self.cached and 1 or 0,
    p.recv_length == false and 0 or 1)
  -- A loss seen so far belongs to the old link; one from here on (even
  -- with the +QMTCONN that ends this) is this link's.
  self.lost = nil
  self:open(false)
  self:login()
  self.connected = true
  return true
end

-- QMTDISC and QMTCLOSE whatever they answer: a stale client goes, and
-- +QMTCLOSE is never waited for (EC200U sends none after QMTDISC).
function S:close_client()
  local m, idx = self.m, self.idx
  m:cmd(string.format("AT+QMTDISC=%d", idx), { reply = false,
    outcome = string.format("^%%+QMTDISC: %d,", idx), outcome_timeout = m:wait_ms("disc") })
  m:cmd(string.format("AT+QMTCLOSE=%d", idx), { reply = false })
end

-- AT+QMTOPEN → OK → +QMTOPEN: <idx>,<result>. Result 2 (the index
-- occupied, typical after a stale session): close it, open once more.
function S:open(again)
  local o, idx = self.o, self.idx
  local what = string.format("connecting to %s:%s", o.host, o.port)
  local r, err, code, r2 = self:request(string.format("AT+QMTOPEN=%d,%s,%d", idx,
    at.q(o.host), tonumber(o.port)), string.format("^%%+QMTOPEN: %d,(%%-?%%d+)", idx),
    nil, "open")
  if not r then
    if code == "EABORT" then fail(what, said(err, r2) or reason(err)) end
    fail(what, err)
  end
  local res = tonumber(r.outcome[1])
  if res == 0 then return end
  for _, b in ipairs(self.p.open_bearer_lost or {}) do
    -- The context is gone (a pdpdeact missed or never sent): the next
    -- recovery attempt climbs the bearer ladder.
    if res == b then self:lose("bearer", r.outcome.line) end
  end
  if res == 2 and not again then
    athost.log(string.format("%s (%s): closing the stale client, opening again",
      r.outcome.line, D.OPEN[2]))
    self:close_client()
    return self:open(true)
  end
  fail(what, string.format("the module said %q (%s)", r.outcome.line,
    D.OPEN[res] or "unknown result"))
end

-- AT+QMTCONN → OK → +QMTCONN: <idx>,<result>[,<ret_code>]: connected
-- only with result 0 and CONNACK code 0.
function S:login()
  local o, idx = self.o, self.idx
  local cmd = string.format("AT+QMTCONN=%d,%s", idx, at.q(o.client_id))
  if (o.username or "") ~= "" or (o.password or "") ~= "" then
    cmd = cmd .. "," .. at.q(o.username or "") .. "," .. at.q(o.password or "")
  end
  local r, err, code, r2 = self:request(cmd,
    string.format("^%%+QMTCONN: %d,(%%-?%%d+),?(%%-?%%d*)", idx), nil, "connack")
  if not r then
    if code == "EABORT" then fail("MQTT connect", said(err, r2) or reason(err)) end
    fail("MQTT connect", err)
  end
  local line = r.outcome.line
  local res, rc = tonumber(r.outcome[1]), tonumber(r.outcome[2])
  if res ~= 0 then
    fail("MQTT connect", string.format("the module said %q (%s)", line,
      D.RESULT[res] or "unknown result"))
  end
  if rc ~= 0 then
    fail("MQTT connect: the broker refused", string.format("the module said %q (%s)",
      line, rc and string.format("CONNACK code %d: %s", rc, D.CONNACK[rc] or "unknown")
        or "no CONNACK code"))
  end
end

-- One subscribe attempt; returns true or nil, err, code, r. A granted QoS
-- of 128 is the broker's refusal.
function S:subscribe_once(topic, qos)
  local id = self:next_id()
  local ok, bad = self:result_pats("QMTSUB", id)
  local r, err, code, r2 = self:request(string.format("AT+QMTSUB=%d,%d,%s,%d",
    self.idx, id, at.q(topic), qos), ok, bad, "suback")
  if not r then
    if code == "EOUTCOME" then return nil, refused(err, r2), code, r2 end
    return nil, err, code, r2
  end
  local granted = at.params(r.outcome.line:match(": ?(.*)$"))[4]
  if tonumber(granted) == 128 then
    return nil, string.format('refused by the broker: the module said "%s" (granted '
      .. "QoS 128)", r.outcome.line)
  end
  return true
end

function S:unsubscribe(topic)
  local id = self:next_id()
  local ok, bad = self:result_pats("QMTUNS", id)
  local r, err, code, r2 = self:request(string.format("AT+QMTUNS=%d,%d,%s",
    self.idx, id, at.q(topic)), ok, bad, "suback")
  if not r then
    fail("unsubscribing from " .. topic, code == "EOUTCOME" and refused(err, r2)
      or reason(err))
  end
  self.subs[topic] = nil
  return true
end

-- One publish attempt: the command with the length, the > prompt, exactly
-- the bytes, OK, then the result URC (awaited before the next publish,
-- at every QoS); msgid 0 iff QoS 0.
function S:publish_once(topic, payload, qos, retain)
  local m = self.m
  local limit = m.profile.limits.publish
  if limit and #payload > limit then
    return nil, string.format("%d bytes, the %s takes at most %d in one message",
      #payload, m.profile.name, limit)
  end
  local name = self.p.publish == "pub" and "QMTPUB" or "QMTPUBEX"
  local id = qos > 0 and self:next_id() or 0
  local ok, bad = self:result_pats(name, id)
  local r, err, code, r2 = self:request(string.format("AT+%s=%d,%d,%d,%d,%s,%d", name,
    self.idx, id, qos, retain and 1 or 0, at.q(topic), #payload), ok, bad, "puback",
    { prompt = ">", data = payload })
  if not r then
    if code == "EOUTCOME" then return nil, refused(err, r2), code, r2 end
    return nil, err, code, r2
  end
  return true
end

---------------------------------------------------------------------------
-- Recovery (the ladder itself is athost.mqttsession's)
---------------------------------------------------------------------------

-- A subscribe or publish whose result is 2 (send failed, §1.3): the
-- socket may have closed under the send, its +QMTSTAT still on the way
-- (a module reports the result first). AT+QMTCONN? (§1.2) tells: a
-- +QMTSTAT while asking, or the client in any state but 3 (connected) or
-- not listed, is a lost link; connected, the packet failed on its own.
function S:probe(err, code, r)
  local line = code == "EOUTCOME" and said(err, r)
  if not line or tonumber(at.params(line:match(": ?(.*)$") or "")[3]) ~= 2 then
    return nil
  end
  local q, qerr, qcode, qr = self.m:cmd("AT+QMTCONN?", {
    abort = base.concat(self.link_lost, self.bearer_lost) })
  if not q then
    return self:loss(qerr, qcode, qr)   -- a loss line ended it, or nothing known
  end
  if self.lost then return self.lost end
  for _, l in ipairs(q.lines) do
    local idx, state = l:match("^%+QMTCONN: ?(%d+),(%d+)")
    if tonumber(idx) == self.idx then
      if tonumber(state) == 3 then return nil end
      return { kind = "link", why = string.format("%s, then %s", line, l) }
    end
  end
  return { kind = "link", why = string.format("%s, then AT+QMTCONN? without client %d",
    line, self.idx) }
end

-- After +QMTSTAT: close the client (its answer does not matter), then
-- connect() again.
function S:relink()
  self.m:cmd(string.format("AT+QMTCLOSE=%d", self.idx), { reply = false })
end

-- After a lost bearer: the buffered messages already announced are read
-- first (a reset would lose them), the client is closed.
function S:before_bearer()
  if self.cached then
    for _, msg in ipairs(self.queue) do
      if msg.slot then
        local ok, err = pcall(self.fetch, self)
        if not ok then athost.log("reading the buffered messages first: " .. tostring(err)) end
        break
      end
    end
  end
  self:relink()
end

-- QMTDISC (its URC awaited briefly), QMTCLOSE when the profile says the
-- module needs it (never waited for).
function S:disconnect()
  local m, idx = self.m, self.idx
  m:cmd(string.format("AT+QMTDISC=%d", idx), { reply = false,
    outcome = string.format("^%%+QMTDISC: %d,", idx), outcome_timeout = m:wait_ms("disc") })
  if self.p.close_after_disc then
    m:cmd(string.format("AT+QMTCLOSE=%d", idx), { reply = false })
  end
  self:off_all()
  self.connected = false
end

return D
