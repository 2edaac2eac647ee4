-- An MQTT session through the module's AT commands (Luat AT+M*: references
-- 000, 001, 003): connect right after CONNECT OK, subscribe, publish with
-- the quoting rules or AT+MPUBEX, PUBACK at QoS 1, direct or cached
-- delivery, ASCII or HEX, and recovery after CLOSED and a lost bearer.
--
--   local s = mqttat.new(m, { host = h, port = 1883, tls = true,
--                              client_id = c, username = u, password = p })
--   s:connect()
--   s:subscribe("/pk/dn/user/get", 0)
--   s:publish("/pk/dn/user/update", "hello", 1)
--   s:listen(30000, function(msg) print(msg.topic, msg.payload) end)
--
-- Every command whose result is a URC (CONNECT OK, CONNACK OK, SUBACK,
-- UNSUBACK, PUBACK) is one m:cmd with `outcome`: the engine takes the URC
-- before or after OK, as firmware differs. What the module may say is the
-- profile's (m.profile.mqtt, m.profile.recovery); nothing here knows a
-- model.
local athost = require("athost")
local at = require("athost.at")

local M = {}
local S = {}
S.__index = S

local function list(v)
  if v == nil then return {} end
  if type(v) == "table" and v.count == nil then return v end
  return { v }
end

local function concat(...)
  local out = {}
  for i = 1, select("#", ...) do
    for _, v in ipairs(list((select(i, ...)))) do out[#out + 1] = v end
  end
  return out
end

-- The counted patterns of pats with max = limit: a count above it is an
-- error of the engine (ECOUNT), never a read of that many bytes.
local function capped(pats, limit)
  local out = {}
  for _, pt in ipairs(list(pats)) do
    if type(pt) == "table" then
      out[#out + 1] = { pt[1], count = pt.count, max = pt.max or limit }
    else
      out[#out + 1] = pt
    end
  end
  return out
end

-- Whether a line matches one of pats as the engine matches them: a
-- "^..." Lua pattern, or a literal the line starts with.
local function any(line, pats)
  for _, pt in ipairs(list(pats)) do
    if type(pt) == "table" then pt = pt[1] end
    if pt:sub(1, 1) == "^" then
      if line:find(pt) then return true end
    elseif line:sub(1, #pt) == pt then
      return true
    end
  end
  return false
end

function M.new(m, o)
  local p = m.profile.mqtt
  if not p then
    error(m.profile.name .. " has no MQTT AT commands in its profile", 2)
  end
  local rec = m.profile.recovery or {}
  local limit = m.profile.limits and m.profile.limits.message or 4100
  local self = setmetatable({
    m = m, port = m.port, p = p, rec = rec, o = o, limit = limit,
    mode = o.mode or "ascii", delivery = o.delivery or "direct",
    keepalive = tonumber(o.keepalive) or 60,
    queue = {}, subs = {}, handlers = {}, lost = nil, connected = false,
    stats = { published = 0, received = 0, recovered = 0 },
  }, S)
  -- Incoming messages: in HEX mode a line pattern (hex digits cannot
  -- hold a line end) whose count is checked here; in ASCII a counted
  -- payload, capped at the profile's limit.
  if self.mode == "hex" then
    self.direct_pats = list(p.message_hex)
    self.cached_pats = list(p.cached_message_hex)
  else
    self.direct_pats = capped(p.message, limit)
    self.cached_pats = capped(p.cached_message, limit)
  end
  self.bearer_lost = list(rec.bearer_lost)
  local function on(pat, fn)
    self.handlers[#self.handlers + 1] = self.port:on(pat, fn)
  end
  for _, pat in ipairs(self.direct_pats) do
    on(pat, function(mt) self:incoming(mt) end)
  end
  on(p.cached, function(mt)
    self.queue[#self.queue + 1] = { slot = tonumber(mt[1]) }
  end)
  on(p.closed, function(mt)
    self.lost = self.lost or { kind = "link", why = mt.line }
  end)
  for _, pat in ipairs(self.bearer_lost) do
    on(pat, function(mt)
      if not self.lost or self.lost.kind ~= "bearer" then
        self.lost = { kind = "bearer", why = mt.line }
      end
    end)
  end
  return self
end

---------------------------------------------------------------------------
-- Incoming messages
---------------------------------------------------------------------------

-- HEX mode: the payload of a message line, or nil, why. <n> counts the
-- payload bytes or the hex characters (references never show which):
-- profile field hex_count = "bytes" | "chars" | "auto" (what fits the line).
function S:unhex(n_text, hex)
  local n = math.tointeger(tonumber(n_text))
  local limit = self.limit
  if not n or n < 0 or #n_text >= 10 then
    return nil, string.format("announced %q byte: not a count", n_text)
  end
  if n > 2 * limit then
    return nil, string.format("announced %d byte, above the limit of %d bytes "
      .. "(%d hex characters)", n, limit, 2 * limit)
  end
  if hex:find("%X") then
    return nil, string.format("announced %d byte but the payload is not hex: %q",
      n, hex:sub(1, 40))
  end
  local how = self.p.hex_count or "auto"
  local fits
  if how == "bytes" then fits = #hex == 2 * n
  elseif how == "chars" then fits = #hex == n
  else fits = #hex == 2 * n or #hex == n end
  if not fits then
    local want = how == "bytes" and tostring(2 * n) or how == "chars" and tostring(n)
      or string.format("%d or %d", n, 2 * n)
    return nil, string.format("announced %d byte but %d hex characters came (want %s)",
      n, #hex, want)
  end
  if #hex % 2 ~= 0 then
    return nil, string.format("announced %d byte: %d hex characters, an odd number",
      n, #hex)
  end
  local payload = athost.unhex(hex)
  if #payload > limit then
    return nil, string.format("announced %d byte: %d bytes, above the limit of %d",
      n, #payload, limit)
  end
  return payload
end

-- A matched +MSUB line (direct or read from the cache): queued, or the
-- failure kept for listen() to raise; never a half message.
function S:incoming(mt)
  local topic = mt[1] or "?"
  local what = string.format("incoming %s on %q", (mt.line or "+MSUB"):match("^(%+?%w+)") or "+MSUB",
    topic)
  local payload, why
  if mt.error then
    why = mt.error
  elseif self.mode == "hex" then
    payload, why = self:unhex(mt[2] or "", mt[3] or "")
  else
    payload = mt.payload
    if payload == nil then why = "no payload" end
  end
  if not payload then
    self.failed = self.failed or (what .. ": " .. why)
    return
  end
  self.queue[#self.queue + 1] = { topic = topic, payload = payload }
end

local function fail(what, err)
  error(what .. ": " .. tostring(err), 0)
end

---------------------------------------------------------------------------
-- Commands whose result is a URC
---------------------------------------------------------------------------

-- m:cmd for a command whose outcome is a URC (before or after OK): ok
-- and bad are the profile's outcome patterns, wait names the profile's
-- wait for the outcome after OK. (A module that holds OK until the
-- outcome is covered by the command's own timeout in the profile.) A lost
-- link or bearer aborts it, unless that line is one of its failures.
function S:request(cmd, ok, bad, wait, opts)
  local m, p = self.m, self.p
  opts = opts or {}
  opts.reply = false
  opts.outcome, opts.outcome_fail = ok, bad
  opts.outcome_timeout = m:wait_ms(wait)
  local failures, aborts = {}, {}
  for _, pt in ipairs(list(bad)) do failures[pt] = true end
  for _, pt in ipairs(concat(p.closed, self.bearer_lost)) do
    if not failures[pt] then aborts[#aborts + 1] = pt end
  end
  opts.abort = concat(opts.abort, aborts)
  return m:cmd(cmd, opts)
end

-- The line a failed request names ("CONNECT FAIL", "+PDP DEACT"), from
-- its outcome or its message.
local function said(err, r)
  if r and r.outcome and r.outcome.line then return r.outcome.line end
  return tostring(err):match('aborted on "(.-)"') or tostring(err):match('said "(.-)"')
end

-- The loss a request failed on: { kind = "link"|"bearer", why = line },
-- or nil when it failed for another reason.
function S:loss(err, code, r)
  if self.lost then return self.lost end
  local line = said(err, r) or ""
  if code == "EABORT" or code == "EOUTCOME" then
    if any(line, self.bearer_lost) then return { kind = "bearer", why = line } end
    if any(line, self.p.closed) then return { kind = "link", why = line } end
  elseif code == "EOF" then
    return { kind = "link", why = "EOF" }
  end
end

-- The message of a failed request without the engine's prefix.
local function reason(err)
  return (tostring(err):gsub("^EABORT: .- aborted on ", ""))
end

-- MCONFIG, (SSL)MIPSTART, CONNECT OK, MCONNECT at once, CONNACK OK.
function S:connect()
  local o, p, m = self.o, self.p, self.m
  -- An AT string cannot carry these; name the field, never its value
  -- (the password is a secret, and at.q would print it escaped).
  for _, f in ipairs({ "client_id", "username", "password" }) do
    if tostring(o[f] or ""):find('["\r\n]') then
      fail("AT+MCONFIG", f .. " contains a double quote or a line end")
    end
  end
  m:must(string.format(p.msgset, self.delivery == "cached" and 1 or 0))
  if self.mode == "hex" then
    m:must(string.format(p.mode, 1))
  else
    -- ASCII is the default (003): a module without AT+MQTTMODE (000 never
    -- sends it) is fine; one left in HEX mode by an earlier run is not.
    m:optional(string.format(p.mode, 0))
  end
  m:must(string.format(p.config, at.q(o.client_id), at.q(o.username or ""),
    at.q(o.password or "")))
  local start = string.format(o.tls and p.start_tls or p.start, at.q(o.host),
    tonumber(o.port))
  local r, err, code, r2 = self:request(start, p.connect_ok, p.connect_fail, "connect")
  if not r then
    if code == "EOUTCOME" or code == "EABORT" then
      fail(string.format("connecting to %s:%s", o.host, o.port),
        (said(err, r2) or reason(err)) .. " after " .. at.name(start))
    end
    fail("connecting to " .. o.host, err)
  end
  -- The server drops a link that does not send CONNECT soon (003): the
  -- next command is MCONNECT.
  r, err, code = self:request(string.format(p.connect, o.clean == false and 0 or 1,
    self.keepalive), p.connack_ok, p.connack_fail, "connack")
  if not r then
    if code == "EOUTCOME" or code == "CME" or code == "ERROR" then
      fail("MQTT connect: the broker refused", reason(err))
    end
    fail("MQTT connect", err)
  end
  self.connected, self.lost = true, nil
  return true
end

-- One subscribe attempt; returns true or nil, err, code, r.
function S:subscribe_once(topic, qos)
  local p = self.p
  local r, err, code, r2 = self:request(string.format(p.sub, at.q(topic), qos),
    p.suback, p.suback_fail, "suback")
  if not r then return nil, err, code, r2 end
  return true
end

-- Before a request: a loss already seen is recovered first.
function S:ready()
  athost.sleep(0)        -- URC handlers of bytes already read run first
  if self.lost then self:recover() end
end

-- Subscribes; after a lost link it recovers and tries once more.
function S:subscribe(topic, qos)
  qos = qos or 0
  self:ready()
  local ok, err, code, r = self:subscribe_once(topic, qos)
  local lost = not ok and self:loss(err, code, r)
  if lost then
    self.lost = lost
    self:recover()
    ok, err = self:subscribe_once(topic, qos)
  end
  if not ok then fail("subscribing to " .. topic, reason(err)) end
  self.subs[topic] = qos
  return true
end

function S:unsubscribe(topic)
  local p = self.p
  local r, err = self:request(string.format(p.unsub, at.q(topic)), p.unsuback,
    p.unsuback_fail, "suback")
  if not r then fail("unsubscribing from " .. topic, reason(err)) end
  self.subs[topic] = nil
  return true
end

-- One publish attempt; returns true or nil, err, code, r. QoS 1: PUBACK
-- is the outcome, awaited before the next publish (000).
function S:publish_once(topic, payload, qos, retain)
  local m, p = self.m, self.p
  local body = self.mode == "hex" and at.hex(payload) or at.mpub_escape(payload)
  local cmd, opts
  if (self.mode ~= "hex" and at.binary(payload)) or #body > m.profile.limits.mpub then
    cmd = string.format(p.pubex, at.q(topic), qos, retain and 1 or 0, #payload)
    opts = { prompt = ">", data = payload }
  else
    cmd = string.format(p.pub, at.q(topic), qos, retain and 1 or 0, at.q(body))
    opts = {}
  end
  local r, err, code, r2
  if qos > 0 then
    r, err, code, r2 = self:request(cmd, p.puback, p.puback_fail, "puback", opts)
  else
    -- No outcome: a loss that comes with the OK goes to the handlers.
    opts.reply = false
    r, err, code, r2 = m:cmd(cmd, opts)
  end
  if not r then return nil, err, code, r2 end
  self.stats.published = self.stats.published + 1
  return true
end

-- Publishes; after a lost link it recovers and tries once more.
function S:publish(topic, payload, qos, retain)
  qos = tonumber(qos) or 0
  self:ready()
  local ok, err, code, r = self:publish_once(topic, payload, qos, retain)
  if ok then return true end
  local lost = self:loss(err, code, r)
  if lost then
    self.lost = lost
    self:recover()
    ok, err = self:publish_once(topic, payload, qos, retain)
    if ok then return true end
  end
  fail("publishing to " .. topic, reason(err))
end

-- +MQTTSTATU: 0 offline, 1 online, 2 TCP only.
function S:status()
  local p = self.p
  local r, err = self.m:cmd(p.status, { reply = p.status_reply })
  if not r then return nil, err end
  return tonumber(r[1])
end

---------------------------------------------------------------------------
-- Recovery
---------------------------------------------------------------------------

-- MQTT again on a working bearer: connect, subscribe to every topic.
function S:reestablish()
  local ok, err = pcall(self.connect, self)
  if not ok then return nil, err end
  for topic, qos in pairs(self.subs) do
    local sok, serr = self:subscribe_once(topic, qos)
    if not sok then return nil, "subscribing to " .. topic .. ": " .. reason(serr) end
  end
  return true
end

-- After AT+RESET: autobaud, echo off, numeric errors, as at power-on;
-- then the caller's own settings lost with the reboot (o.on_reset).
function S:bring_up()
  local m = self.m
  m:restart(self.rec.reset_tries)
  if self.o.on_reset then self.o.on_reset(m) end
end

-- The commands of a rung, "%s" replaced by the APN.
function S:rung_commands(cmds)
  local apn = self.o.apn or self.m.profile.default_apn or ""
  local out = {}
  for i, c in ipairs(cmds) do
    out[i] = c:find("%s", 1, true) and string.format(c, apn) or c
  end
  return out
end

-- One rung of the profile's re-activation ladder: its commands in order,
-- a bring-up after a reboot, the network checks, then MQTT. Returns true
-- or nil, why.
function S:rung(cmds)
  local m = self.m
  for _, cmd in ipairs(self:rung_commands(cmds)) do
    local r, err = m:cmd(cmd)
    if not r then return nil, err end
  end
  local ok, err = pcall(function()
    if cmds.reboot then self:bring_up() end
    m:network()
  end)
  if not ok then return nil, err end
  return self:reestablish()
end

-- Reference 003 after +PDP DEACT (or +CGEV: NW PDN DEACT): the cached
-- messages already announced are read first (the slots are RAM and a
-- reset would lose them), AT+CIPSHUT, then the re-activation ladder,
-- each rung tried only when the one before it failed.
function S:restore_bearer()
  local m, rec = self.m, self.rec
  if self.delivery == "cached" then
    for _, msg in ipairs(self.queue) do
      if msg.slot then
        local ok, err = pcall(self.fetch, self)
        if not ok then athost.log("reading the cached messages first: " .. tostring(err)) end
        break
      end
    end
  end
  -- "SHUT OK" is its final (SIMCom style); OK also ends it.
  m:cmd(rec.shut or "AT+CIPSHUT", { final = list(rec.shut_ok or "SHUT OK") })
  local last
  for i, cmds in ipairs(rec.ladder or {}) do
    local ok, err = self:rung(cmds)
    if ok then return true end
    last = string.format("%s: %s", table.concat(self:rung_commands(cmds), ", "), tostring(err))
    athost.log(string.format("re-activation %d/%d failed (%s)", i, #rec.ladder, last))
  end
  return nil, last or "the profile has no re-activation ladder"
end

-- Reconnects after CLOSED (003: status, MIPCLOSE, from MCONFIG/MIPSTART)
-- or a lost bearer (restore_bearer), with a bounded backoff.
function S:recover()
  local lost = self.lost or { kind = "link", why = "link lost" }
  local m, p = self.m, self.p
  local tries = tonumber(self.o.retries) or 5
  local delay = tonumber(self.o.backoff_ms) or 1000
  athost.log("link lost (" .. lost.why .. "): reconnecting")
  local last
  for i = 1, tries do
    local ok, err
    if lost.kind == "bearer" then
      ok, err = self:restore_bearer()
    else
      self:status()                    -- 003 asks first: +MQTTSTATU :0
      m:cmd(p.close)                   -- its ERROR means already closed
      ok, err = self:reestablish()
    end
    if ok then
      self.lost = nil
      self.stats.recovered = self.stats.recovered + 1
      athost.log(string.format("reconnected (attempt %d)", i))
      return true
    end
    last = err
    -- A loss seen during this attempt decides what the next one does.
    if self.lost and self.lost.kind == "bearer" then lost = self.lost end
    if i < tries then
      athost.sleep(delay)
      delay = math.min(delay * 2, 30000)
    end
  end
  fail(string.format("reconnecting after %s (%d attempts)", lost.why, tries), last)
end

---------------------------------------------------------------------------
-- Reading messages
---------------------------------------------------------------------------

-- Reads the cached messages (AT+MQTTMSGGET prints every full slot and
-- frees them). A command keeps only its first reply's payload, so the
-- messages are taken as URCs while it runs; the slots queued so far are
-- all read by it.
function S:fetch()
  local p = self.p
  for i = #self.queue, 1, -1 do
    if self.queue[i].slot then table.remove(self.queue, i) end
  end
  local ids = {}
  for _, pat in ipairs(self.cached_pats) do
    ids[#ids + 1] = self.port:on(pat, function(mt) self:incoming(mt) end)
  end
  local r, err = self.m:cmd(p.msgget, { reply = false })
  for _, id in ipairs(ids) do self.port:off(id) end
  if not r then fail("reading cached messages", err) end
  if self.failed then fail("reading cached messages", self.failed) end
end

-- Delivers queued and arriving messages to fn for up to ms, or until fn
-- returns false. Returns how many were delivered. A message that cannot
-- be read (its count fits no reading) fails it with that message.
function S:listen(ms, fn)
  local p = self.p
  local deadline = athost.now() + ms
  local n = 0
  while true do
    -- URC handlers woken by the bytes that ended the last command run
    -- first: what they queue (a message, a lost link) is not waited for.
    athost.sleep(0)
    while #self.queue > 0 do
      local msg = table.remove(self.queue, 1)
      if msg.slot then
        self:fetch()
      else
        n = n + 1
        self.stats.received = self.stats.received + 1
        if fn(msg) == false then return n end
      end
    end
    if self.failed then fail("waiting for messages", self.failed) end
    if self.lost then self:recover() end
    local left = deadline - athost.now()
    if left <= 0 then return n end
    local alts = self.delivery == "cached" and list(p.cached) or self.direct_pats
    local mt, err, code = self.port:expect(alts, {
      abort = concat(p.closed, self.bearer_lost), timeout = math.ceil(left) })
    if mt then
      if self.delivery == "cached" then
        self.queue[#self.queue + 1] = { slot = tonumber(mt[1]) }
      else
        self:incoming(mt)
      end
    elseif code == "EABORT" then
      self.lost = self:loss(err, code) or { kind = "link", why = reason(err) }
    elseif code ~= "ETIMEDOUT" then
      fail("waiting for messages", err)
    end
  end
end

function S:disconnect()
  local p = self.p
  self.m:cmd(p.disconnect)
  self.m:cmd(p.close)
  for _, id in ipairs(self.handlers) do self.port:off(id) end
  self.handlers = {}
  self.connected = false
end

return M
