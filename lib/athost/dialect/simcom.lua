-- The SIMCom command family (A7670/A7600/A76xx, SIM7600): DIALECTS.md §2,
-- §4.3, §4.4, §5.
--   MQTT   AT+CMQTTSTART, ACCQ (server_type 1 for TLS), SSLCFG, CFG
--          "version" 4, CONNECT "tcp://host:port", SUB (one topic, ">"),
--          UNSUB, TOPIC + PAYLOAD (">" and the exact bytes) + PUB, DISC,
--          REL, STOP; incoming messages as +CMQTTRXSTART ... +CMQTTRXEND
--          blocks of counted pieces, joined into one message.
--   HTTP   athost.httpat with the profile's SIMCom fields (CONTENT, SSLCFG,
--          HTTPREAD=<off>,<size> answered OK first, then counted chunks).
--   files  AT+CCERTDOWN (certificates only; names end .pem or .der).
--   TLS    AT+CSSLCFG on the profile's SSL context.
-- The spellings are the profile's (lib/athost/profiles/a7670.lua).
--
-- The result of most CMQTT commands is a URC "+CMQTTxxx: <idx>,<err>",
-- documented before and after the final result (OK+URC, URC+OK,
-- ERROR+URC, URC+ERROR, bare ERROR): every form is read, and a failure
-- names its code from the §2.4 table.
local athost = require("athost")
local at = require("athost.at")
local base = require("athost.mqttsession")
local httpat = require("athost.httpat")

local D = {}
local S = base.class()
D.Session = S
local list, fail, reason = base.list, base.fail, base.reason

-- <err> of the CMQTT URCs (§2.4).
D.MQTT_ERRORS = {
  [0] = "ok", "failed", "bad UTF-8 string", "socket connect failed",
  "socket create failed", "socket close failed", "message receive failed",
  "network open failed", "network close failed", "network not opened",
  "client index error", "no connection", "invalid parameter",
  "not supported operation", "client is busy", "require connection failed",
  "socket sending failed", "timeout", "topic is empty", "client is used",
  "client not acquired", "client not released", "length out of range",
  "network is already opened", "packet failure", "DNS error",
  "socket is closed by server", "connection refused: unaccepted protocol version",
  "connection refused: identifier rejected", "connection refused: server unavailable",
  "connection refused: bad user name or password", "connection refused: not authorized",
  "handshake failed", "certificate not set", "open session failed",
  "disconnect from server failed",
}

-- "<code>: <meaning>" for a code the table knows, else the code.
function D.mqtt_error(code)
  code = tonumber(code)
  if not code then return nil end
  local what = D.MQTT_ERRORS[code]
  return what and string.format("%d: %s", code, what) or tostring(code)
end

---------------------------------------------------------------------------
-- TLS, files, HTTP
---------------------------------------------------------------------------

local function tls_profile(m)
  local t = m.profile.tls
  if not t then error(m.profile.name .. " has no TLS commands in its profile", 3) end
  return t
end

-- AT+CSSLCFG on the context (§2.5, §4.3): all TLS versions, the level as
-- authmode (0 none, 1 server, 2 server and client), the files, SNI on.
function D.tls(m, f)
  local t = tls_profile(m)
  local ctx = t.ctx or 0
  m:must(string.format(t.sslversion, ctx))
  m:must(string.format(t.authmode, ctx, f.level or 0))
  for _, role in ipairs({ "ca", "cert", "key" }) do
    if f[role] then
      m:must(string.format(t[({ ca = "cacert", cert = "clientcert",
        key = "clientkey" })[role]], ctx, f[role]))
    end
  end
  if t.sni then m:must(string.format(t.sni, ctx)) end
end

-- TLS without settings of athost.session: encrypt, verify nothing.
local function tls_default(m)
  if not m.tls then D.tls(m, { level = 0 }) end
end

-- The name AT+CCERTDOWN accepts for name: kept when it ends with one of
-- the profile's extensions, else its dots become "_" and the extension
-- is added ("ca.crt" -> "ca_crt.pem"), so no two names map to one.
function D.cert_name(m, name)
  local fs = m.profile.files
  local lower = name:lower()
  for _, ext in ipairs(fs.extensions) do
    if #lower > #ext and lower:sub(-#ext) == ext then return name end
  end
  return (name:gsub("%.", "_")) .. fs.map_extension
end

function D.upload(m, name, data, opts)
  local fs = m.profile.files
  local lim = m.profile.limits
  local mapped = D.cert_name(m, name)
  local what = string.format("uploading %s", name)
  if mapped ~= name then what = what .. " as " .. mapped end
  if mapped:find('["\r\n]') then fail(what, "the name holds a double quote or a line end") end
  if #mapped < 5 or #mapped > (lim.cert_name or 108) then
    fail(what, string.format("the name must be 5-%d characters", lim.cert_name or 108))
  end
  if #data < 1 or #data > (lim.cert or 10240) then
    fail(what, string.format("%d bytes; the %s takes 1-%d", #data, m.profile.name,
      lim.cert or 10240))
  end
  local r, err = m:cmd(string.format(fs.certdown, mapped, #data),
    { prompt = m.profile.mqtt.prompt or ">", data = data })
  if not r then fail(what, err) end
  return mapped
end

-- httpat with the profile's fields; an https URL without TLS settings of
-- athost.session gets the context encrypting without verification.
function D.http(m, method, url, body, content_type, opts)
  if url:find("^https://") then tls_default(m) end
  return httpat.request(m, method, url, body, content_type, opts)
end

---------------------------------------------------------------------------
-- The MQTT session
---------------------------------------------------------------------------

-- The profile's pattern(s) with {idx} replaced by the client index.
local function idx_pats(v, idx)
  local out = {}
  for _, pt in ipairs(list(v)) do out[#out + 1] = (pt:gsub("{idx}", tostring(idx))) end
  return out
end

function D.mqtt(m, o)
  local p = m.profile.mqtt
  if not p then error(m.profile.name .. " has no MQTT AT commands in its profile", 2) end
  -- Options of another family that would change what arrives.
  if o.mode and o.mode ~= "ascii" then
    fail("MQTT session", string.format("mode=%s: the %s delivers the bytes as they "
      .. "are (no HEX mode)", o.mode, m.profile.name))
  end
  if o.delivery and o.delivery ~= "direct" then
    fail("MQTT session", string.format("delivery=%s: the %s delivers every message "
      .. "at once (no cached mode)", o.delivery, m.profile.name))
  end
  local self = base.init(S, m, o)
  self.p = p
  self.idx = tonumber(o.idx) or p.idx or 0
  self.lim = m.profile.limits or {}
  self.pats = {}
  for _, k in ipairs({ "start_ok", "start_fail", "stop_ok", "stop_fail", "accq_fail",
    "connect_ok", "connect_fail", "suback", "suback_fail", "unsuback", "unsuback_fail",
    "puback", "puback_fail", "disc_ok", "disc_fail" }) do
    self.pats[k] = idx_pats(p[k], self.idx)
  end
  self.link_lost = list(p.link_lost)
  self.bearer_lost = list(self.rec.bearer_lost)
  self.blocks = {}
  local topic_max, payload_max = self.lim.topic or 1024, self.lim.payload or 10240
  local trailer = p.rx_trailer
  if trailer == nil then trailer = false end
  self:on(p.rx_start, function(mt) self:rx_start(mt) end)
  self:on({ p.rx_topic, count = 2, max = topic_max, trailer = trailer },
    function(mt) self:rx_piece("topic", mt) end)
  self:on({ p.rx_payload, count = 2, max = payload_max, trailer = trailer },
    function(mt) self:rx_piece("payload", mt) end)
  -- listen() waits for the end of a block; the pieces before it are the
  -- handlers' (they run before the listening flow wakes). An end that
  -- reaches the handler while listen() waits came after the one the wait
  -- took, which closes the older block: it is held until then (settle).
  self.held_ends = {}
  self:on(p.rx_end, function(mt)
    if self.listening then
      self.held_ends[#self.held_ends + 1] = mt
    else
      self:rx_end(mt)
    end
  end)
  self.listen_pats = list(p.rx_end)
  self:watch_losses()
  return self
end

---------------------------------------------------------------------------
-- Incoming blocks (§2.3)
---------------------------------------------------------------------------
-- Each line of a block runs a handler, in the order the lines came, except
-- the +CMQTTRXEND that listen() itself waits for: its flow wakes after the
-- handlers of the bytes that came with it, which may already hold the
-- next block's start. So the blocks of a client are a queue: pieces go to
-- the newest block, the n-th +CMQTTRXEND closes the n-th block. A start
-- while the newest block still lacks bytes means that block was cut.
-- Other URCs between the lines of a block are handled as themselves
-- (the raw bytes are read by count, never as lines); a lost link or
-- bearer drops the blocks still open, with a log line (their rest will
-- not come).

-- The blocks of client idx, oldest first.
function S:queue_of(idx)
  local q = self.blocks[idx]
  if not q then
    q = {}
    self.blocks[idx] = q
  end
  return q
end

local function complete(b)
  return b.tn == b.tt and b.pn == b.pt
end

-- A block that cannot become a message: listen() raises this, naming
-- what was expected and what came; never a part of the message.
function S:rx_fail(b, why)
  local topic = b and table.concat(b.topic) or ""
  if b then b.bad = true end
  self.failed = self.failed or string.format("incoming message%s (client %s): %s",
    topic ~= "" and string.format(" on %q", topic) or "", tostring(b and b.idx or "?"), why)
end

function S:rx_start(mt)
  local idx = tonumber(mt[1])
  local q = self:queue_of(idx)
  local last = q[#q]
  if last and not last.bad and not complete(last) then
    self:rx_fail(last, string.format("%q began a new block before %q had its "
      .. "bytes (%d of %d topic and %d of %d payload bytes came)", mt.line, last.line,
      last.tn, last.tt, last.pn, last.pt))
  end
  local b = { idx = idx, line = mt.line, tt = tonumber(mt[2]), pt = tonumber(mt[3]),
    topic = {}, payload = {}, tn = 0, pn = 0 }
  q[#q + 1] = b
  local tmax, pmax = self.lim.topic or 1024, self.lim.payload or 10240
  if b.tt < 1 or b.tt > tmax or b.pt < 0 or b.pt > pmax then
    self:rx_fail(b, string.format("%q announced a %d-byte topic and a %d-byte "
      .. "payload (the %s takes 1-%d and 0-%d)", mt.line, b.tt, b.pt, self.m.profile.name,
      tmax, pmax))
  end
end

function S:rx_piece(kind, mt)
  local idx = tonumber(mt[1])
  local q = self:queue_of(idx)
  local b = q[#q]
  if not b then
    self.failed = self.failed or string.format("incoming message (client %s): %q "
      .. "came outside a +CMQTTRXSTART block", tostring(idx), mt.line)
    return
  end
  if b.bad then return end
  if mt.error then return self:rx_fail(b, mt.error) end
  local t = b[kind]
  t[#t + 1] = mt.payload
  if kind == "topic" then b.tn = b.tn + #mt.payload else b.pn = b.pn + #mt.payload end
end

function S:rx_end(mt)
  local idx = tonumber(mt[1])
  local b = table.remove(self:queue_of(idx), 1)
  if not b then
    self.failed = self.failed or string.format("incoming message (client %s): %q "
      .. "without +CMQTTRXSTART", tostring(idx), mt.line)
    return
  end
  if b.bad then return end
  if not complete(b) then
    return self:rx_fail(b, string.format("%q announced a %d-byte topic and a %d-byte "
      .. "payload; the pieces brought %d and %d bytes", b.line, b.tt, b.pt, b.tn, b.pn))
  end
  local topic = table.concat(b.topic)
  if idx ~= self.idx then
    athost.log(string.format("a message for MQTT client %d on %q: not this session's",
      idx, topic))
    return
  end
  self:deliver(topic, table.concat(b.payload))
end

function S:listened(mt)
  self:rx_end(mt)
end

function S:settle()
  local held = self.held_ends
  self.held_ends = {}
  for _, mt in ipairs(held) do self:rx_end(mt) end
end

-- The blocks still open when the link went: their rest will not come.
function S:drop_blocks(why)
  for idx, q in pairs(self.blocks) do
    for _, b in ipairs(q) do
      if not b.bad then
        athost.log(string.format("an incoming message (client %d, %s) was cut by %s: "
          .. "dropped", idx, b.line, why))
      end
    end
  end
  self.blocks = {}
end

---------------------------------------------------------------------------
-- Commands
---------------------------------------------------------------------------

-- The first line of lines matching one of pats, and its captures.
local function find(lines, pats)
  for _, l in ipairs(lines or {}) do
    for _, pt in ipairs(list(pats)) do
      local c = l:match(pt)
      if c then return l, c end
    end
  end
end

-- A command whose result is "+CMQTTxxx: <idx>,<err>" (ok/bad patterns),
-- in every documented order. Returns r, or nil, message, code, r where
-- the message names the module's line and its error code.
function S:op(cmd, ok, bad, wait, opts)
  local r, err, code, r2 = self:request(cmd, ok, bad, wait or "error_urc", opts)
  if r then return r end
  local line, c
  if code == "EOUTCOME" and r2 and r2.outcome then
    line = r2.outcome.line
    c = r2.outcome[1]
    -- URC then ERROR: the final result is still to come; take it, so
    -- that it does not answer the next command.
    if not r2.final then self.port:final({ timeout = self.m:wait_ms("error_urc") }) end
  elseif code == "ERROR" or code == "CME" then
    -- ERROR with the URC before it (a reply line) or after it.
    line, c = find(r2 and r2.lines, bad)
    if not line and #list(bad) > 0 then
      local mt = self.port:expect(bad, { timeout = self.m:wait_ms("error_urc") })
      if mt then line, c = mt.line, mt[1] end
    end
  end
  if line then
    err = string.format('%s: the module said "%s" (%s)', at.name(cmd), line,
      D.mqtt_error(c) or "?")
    if self.p.lost_codes and self.p.lost_codes[tonumber(c)] then
      self:lose("link", line)
    end
  end
  return nil, err, code, r2
end

-- An operation that must succeed: raises naming what.
function S:must_op(what, cmd, ok, bad, wait, opts)
  local r, err = self:op(cmd, ok, bad, wait, opts)
  if not r then fail(what, reason(err)) end
  return r
end

-- AT+CMQTTSTART; "already started" (ERROR, or +CMQTTSTART: 23) is fine.
function S:start()
  local p = self.p
  local r, err, code, r2 = self:request(p.start, self.pats.start_ok, self.pats.start_fail,
    "start")
  if r then return true end
  local line = (r2 and r2.outcome and r2.outcome.line) or (code == "ERROR" and "ERROR")
  if line and base.any(line, p.start_tolerate) then
    if r2 and r2.outcome and not r2.final then
      self.port:final({ timeout = self.m:wait_ms("error_urc") })
    end
    return true
  end
  fail("starting the MQTT service", reason(err))
end

-- Commands that clear what an earlier session left; their refusals mean
-- "nothing to clear".
function S:quiet(cmd, ok, bad, wait)
  local r, err = self:op(cmd, ok, bad, wait)
  if not r then athost.log(string.format("%s: %s (going on)", at.name(cmd), reason(err))) end
  return r
end

function S:release()
  self:quiet(string.format(self.p.rel, self.idx))
end

-- wait: the profile's wait for +CMQTTDISC ("disc"; "disc_lost" after a
-- lost link, when the module may have nothing left to answer).
function S:disc(wait)
  local p = self.p
  return self:quiet(string.format(p.disc, self.idx, p.disc_timeout or 120),
    self.pats.disc_ok, self.pats.disc_fail, wait or "disc")
end

function S:stop()
  return self:quiet(self.p.stop, self.pats.stop_ok, self.pats.stop_fail, "stop")
end

-- AT+CMQTTACCQ; a client left by another session (19, "client is used",
-- or a bare ERROR, which §2.1 also documents and which names no reason)
-- is disconnected and released, then acquired again, once.
function S:acquire(tls)
  local p, o = self.p, self.o
  local cmd = string.format(p.accq, self.idx, at.q(o.client_id), tls and 1 or 0)
  local r, err, code = self:op(cmd, nil, self.pats.accq_fail)
  local named = tostring(err):match("%((%d+):")
  if not r and p.accq_used and (tonumber(named) == p.accq_used
      or (not named and (code == "ERROR" or code == "CME"))) then
    self:disc()
    self:release()
    r, err = self:op(cmd, nil, self.pats.accq_fail)
  end
  if not r then fail("acquiring MQTT client " .. self.idx, reason(err)) end
end

-- START, REL, ACCQ, (SSLCFG), CFG version 4, CONNECT and its outcome.
function S:connect()
  local o, p, m, lim = self.o, self.p, self.m, self.lim
  local host, port = tostring(o.host or ""), tonumber(o.port) or 1883
  local what = string.format("connecting to %s:%d", host, port)
  -- An AT string cannot carry these; name the field, never its value.
  for _, f in ipairs({ "client_id", "username", "password" }) do
    local v = tostring(o[f] or "")
    if v:find('["\r\n]') then fail(what, f .. " contains a double quote or a line end") end
    local max = f == "client_id" and (lim.client_id or 128) or (lim.credential or 256)
    if #v > max then fail(what, string.format("%s is %d bytes; the %s takes at most %d",
      f, #v, m.profile.name, max)) end
  end
  if tostring(o.client_id or "") == "" then fail(what, "client_id is empty") end
  local address = string.format(p.address, host, port)
  if host:find('["\r\n]') or #address > (lim.address or 256) then
    fail(what, string.format("the address %q is not one the %s takes", address,
      m.profile.name))
  end
  self:start()
  -- A client left acquired by an earlier run (§2.1: drivers release first).
  self:release()
  if o.tls then tls_default(m) end
  self:acquire(o.tls)
  if o.tls then
    m:must(string.format(p.sslcfg, self.idx, (m.profile.tls or {}).ctx or 0))
  end
  -- 3.1 is the default: 3.1.1 is asked for after ACCQ (REL clears it).
  m:must(string.format(p.version, self.idx))
  local cmd = string.format(p.connect, self.idx, at.q(address), self.keepalive,
    o.clean == false and 0 or 1)
  local user, pass = tostring(o.username or ""), tostring(o.password or "")
  if user ~= "" then
    cmd = cmd .. "," .. at.q(user)
    if pass ~= "" then cmd = cmd .. "," .. at.q(pass) end
  end
  self:must_op(what, cmd, self.pats.connect_ok, self.pats.connect_fail, "connect")
  self.connected, self.lost = true, nil
  return true
end

-- The bytes after a ">" prompt, checked against a limit first.
function S:check(what, kind, s, max)
  if #s < 1 or #s > max then
    return nil, string.format("%s: a %d-byte %s; the %s takes 1-%d", what, #s, kind,
      self.m.profile.name, max)
  end
  return true
end

-- One subscribe attempt (one topic, one step): ">", the topic, OK, then
-- +CMQTTSUB: <idx>,0.
function S:subscribe_once(topic, qos)
  local p = self.p
  local ok, why = self:check("AT+CMQTTSUB", "topic", topic, self.lim.topic or 1024)
  if not ok then fail("subscribing to " .. topic, why) end
  return self:op(string.format(p.sub, self.idx, #topic, qos), self.pats.suback,
    self.pats.suback_fail, "suback", { prompt = p.prompt, data = topic })
end

function S:unsubscribe(topic)
  local p = self.p
  local what = "unsubscribing from " .. topic
  local ok, why = self:check("AT+CMQTTUNSUB", "topic", topic, self.lim.topic or 1024)
  if not ok then fail(what, why) end
  self:ready()
  if p.unsub_steps == 1 then
    self:must_op(what, string.format(p.unsub_one, self.idx, #topic), self.pats.unsuback,
      self.pats.unsuback_fail, "suback", { prompt = p.prompt, data = topic })
  else
    self:must_op(what, string.format(p.unsubtopic, self.idx, #topic), nil, nil, nil,
      { prompt = p.prompt, data = topic })
    self:must_op(what, string.format(p.unsub, self.idx), self.pats.unsuback,
      self.pats.unsuback_fail, "suback")
  end
  self.subs[topic] = nil
  return true
end

-- One publish attempt: the topic and the payload after their prompts,
-- exactly their bytes, then AT+CMQTTPUB and +CMQTTPUB: <idx>,0. An empty
-- payload skips AT+CMQTTPAYLOAD (it takes 1-10240 bytes; PUB clears it).
function S:publish_once(topic, payload, qos, retain)
  local p = self.p
  local ok, why = self:check("AT+CMQTTTOPIC", "topic", topic, self.lim.topic or 1024)
  if ok and #payload > 0 then
    ok, why = self:check("AT+CMQTTPAYLOAD", "payload", payload, self.lim.payload or 10240)
  end
  if not ok then fail("publishing to " .. topic, why) end
  local r, err, code, r2 = self:op(string.format(p.topic, self.idx, #topic), nil, nil, nil,
    { prompt = p.prompt, data = topic })
  if not r then return nil, err, code, r2 end
  if #payload > 0 then
    r, err, code, r2 = self:op(string.format(p.payload, self.idx, #payload), nil, nil, nil,
      { prompt = p.prompt, data = payload })
    if not r then return nil, err, code, r2 end
  end
  local cmd = string.format(retain and p.pub_retain or p.pub, self.idx, qos,
    p.pub_timeout or 60)
  return self:op(cmd, self.pats.puback, self.pats.puback_fail, "puback")
end

---------------------------------------------------------------------------
-- Recovery (the ladder itself is athost.mqttsession's)
---------------------------------------------------------------------------

-- After +CMQTTCONNLOST / +CMQTTPING: the client is disconnected and
-- released; after +CMQTTNONET the service is stopped too (connect()
-- starts it again).
function S:relink()
  local why = self.lost and self.lost.why or ""
  self:drop_blocks(why)
  self:disc("disc_lost")
  self:release()
  if base.any(why, self.p.restart) then self:stop() end
end

-- After a lost bearer, before the ladder: client and service released,
-- so that AT+CMQTTSTART brings the context up again afterwards.
function S:before_bearer()
  self:drop_blocks(self.lost and self.lost.why or "the bearer loss")
  self:disc("disc_lost")
  self:release()
  self:stop()
end

function S:disconnect()
  self:disc()
  self:release()
  self:stop()
  self:off_all()
  self.connected = false
end

return D
