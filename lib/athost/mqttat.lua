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
local base = require("athost.mqttsession")

local M = {}
local S = base.class()
M.Session = S
local list, fail, said, reason = base.list, base.fail, base.said, base.reason

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

function M.new(m, o)
  local p = m.profile.mqtt
  if not p then
    error(m.profile.name .. " has no MQTT AT commands in its profile", 2)
  end
  local self = base.init(S, m, o)
  self.p = p
  self.limit = m.profile.limits and m.profile.limits.message or 4100
  self.mode, self.delivery = o.mode or "ascii", o.delivery or "direct"
  -- Incoming messages: in HEX mode a line pattern (hex digits cannot
  -- hold a line end) whose count is checked here; in ASCII a counted
  -- payload, capped at the profile's limit.
  if self.mode == "hex" then
    self.direct_pats = list(p.message_hex)
    self.cached_pats = list(p.cached_message_hex)
  else
    self.direct_pats = capped(p.message, self.limit)
    self.cached_pats = capped(p.cached_message, self.limit)
  end
  self.link_lost = list(p.closed)
  self.bearer_lost = list(self.rec.bearer_lost)
  self.listen_pats = self.delivery == "cached" and list(p.cached) or self.direct_pats
  for _, pat in ipairs(self.direct_pats) do
    self:on(pat, function(mt) self:incoming(mt) end)
  end
  self:on(p.cached, function(mt)
    self.queue[#self.queue + 1] = { slot = tonumber(mt[1]) }
  end)
  self:watch_losses()
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
    -- What came is still shown in the transcript: a secret in it is
    -- registered all the same (s.seen).
    if self.seen and mt.line then self.seen(topic, mt.line) end
    self.failed = self.failed or (what .. ": " .. why)
    return
  end
  self:deliver(topic, payload)
end

-- While listening: a slot notice (cached delivery) or a message.
function S:listened(mt)
  if self.delivery == "cached" then
    self.queue[#self.queue + 1] = { slot = tonumber(mt[1]) }
  else
    self:incoming(mt)
  end
end

---------------------------------------------------------------------------
-- Commands
---------------------------------------------------------------------------

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
  return true
end

-- +MQTTSTATU: 0 offline, 1 online, 2 TCP only.
function S:status()
  local p = self.p
  local r, err = self.m:cmd(p.status, { reply = p.status_reply })
  if not r then return nil, err end
  return tonumber(r[1])
end

---------------------------------------------------------------------------
-- Recovery (the ladder itself is athost.mqttsession's)
---------------------------------------------------------------------------

-- After CLOSED, as 003 does: ask the status (+MQTTSTATU :0), close
-- (its ERROR means already closed); then connect() again.
function S:relink()
  self:status()
  self.m:cmd(self.p.close)
end

-- Reference 003 after +PDP DEACT (or +CGEV: NW PDN DEACT): the cached
-- messages already announced are read first (the slots are RAM and a
-- reset would lose them), then AT+CIPSHUT ("SHUT OK" is its final, OK
-- also ends it).
function S:before_bearer()
  local rec = self.rec
  if self.delivery == "cached" then
    for _, msg in ipairs(self.queue) do
      if msg.slot then
        local ok, err = pcall(self.fetch, self)
        if not ok then athost.log("reading the cached messages first: " .. tostring(err)) end
        break
      end
    end
  end
  self.m:cmd(rec.shut or "AT+CIPSHUT", { final = list(rec.shut_ok or "SHUT OK") })
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

function S:disconnect()
  local p = self.p
  self.m:cmd(p.disconnect)
  self.m:cmd(p.close)
  self:off_all()
  self.connected = false
end

return M
