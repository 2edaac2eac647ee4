-- MQTT 3.1.1 (OASIS standard, 2014) packet codec and client session.
--
-- Pure Lua 5.4 and transport-agnostic: encoders return packet bytes, the
-- decoder takes bytes in whatever pieces the transport delivers, and the
-- session talks to the world only through the `send` and `now` functions it
-- is given. The virtual modems use it to implement the modules' MQTT AT
-- commands against a real broker; fake brokers in tests use the server-side
-- encoders and the decoder.
--
-- Errors follow the rest of athost: misuse (a bad argument, an invalid topic)
-- raises; malformed bytes from the peer give nil, "EPROTO: <what>", "EPROTO".
--
-- The codec covers every 3.1.1 packet type. The session implements QoS 0 and
-- 1 only: it never asks for QoS 2, so a QoS 2 PUBLISH reaching it is a
-- protocol error by the server.
local M = {}

local byte, char, sub, pack = string.byte, string.char, string.sub, string.pack
local concat = table.concat

-- Remaining length is a 1..4 byte varint (spec 2.2.3).
local MAX_REMAINING = 268435455
local MAX_STRING = 65535

M.CONNACK_REASONS = {
  [0] = "connection accepted",
  [1] = "unacceptable protocol version",
  [2] = "identifier rejected",
  [3] = "server unavailable",
  [4] = "bad user name or password",
  [5] = "not authorized",
}

local TYPES = {
  "CONNECT", "CONNACK", "PUBLISH", "PUBACK", "PUBREC", "PUBREL", "PUBCOMP",
  "SUBSCRIBE", "SUBACK", "UNSUBSCRIBE", "UNSUBACK", "PINGREQ", "PINGRESP",
  "DISCONNECT",
}

-- Fixed-header flags each type must carry (spec 2.2.2); PUBLISH is free.
local FLAGS = {
  CONNECT = 0, CONNACK = 0, PUBACK = 0, PUBREC = 0, PUBREL = 2, PUBCOMP = 0,
  SUBSCRIBE = 2, SUBACK = 0, UNSUBSCRIBE = 2, UNSUBACK = 0, PINGREQ = 0,
  PINGRESP = 0, DISCONNECT = 0,
}

---------------------------------------------------------------------------
-- Argument checks. Misuse raises at the caller of the public function.
---------------------------------------------------------------------------

local function check(cond, msg)
  if not cond then error("mqtt311: " .. msg, 3) end
end

local function check_id(id)
  check(math.type(id) == "integer" and id >= 1 and id <= 65535,
    "packet id must be an integer in 1..65535, got " .. tostring(id))
end

local function check_qos(qos, max)
  check(math.type(qos) == "integer" and qos >= 0 and qos <= max,
    "qos must be an integer in 0.." .. max .. ", got " .. tostring(qos))
end

-- A UTF-8 string field (spec 1.5.3): well formed, no U+0000, short enough
-- for its 2-byte length prefix. Returns nil or what is wrong, so the encoders
-- and the decoder share it.
local function bad_utf8(s)
  if #s > MAX_STRING then return "longer than 65535 bytes" end
  if not utf8.len(s) then return "not valid UTF-8" end
  if s:find("\0", 1, true) then return "contains U+0000" end
  return nil
end

-- Topic names in PUBLISH must not contain wildcards (spec 4.7.1).
local function bad_topic(s)
  if #s == 0 then return "empty topic" end
  local why = bad_utf8(s)
  if why then return "topic " .. why end
  if s:find("[#+]") then return "wildcard in topic name" end
  return nil
end

-- Topic filters: '+' fills a whole level, '#' only as the whole last level.
local function bad_filter(s)
  if #s == 0 then return "empty topic filter" end
  local why = bad_utf8(s)
  if why then return "topic filter " .. why end
  local levels = {}
  for level in (s .. "/"):gmatch("([^/]*)/") do levels[#levels + 1] = level end
  for i, level in ipairs(levels) do
    if level:find("#", 1, true) and (level ~= "#" or i < #levels) then
      return "'#' must be the whole last level of a topic filter"
    end
    if level:find("+", 1, true) and level ~= "+" then
      return "'+' must be a whole level of a topic filter"
    end
  end
  return nil
end

local function check_string(s, what)
  check(type(s) == "string", what .. " must be a string, got " .. type(s))
  local why = bad_utf8(s)
  check(not why, what .. " " .. (why or ""))
end

local function check_topic(s)
  check(type(s) == "string", "topic must be a string, got " .. type(s))
  local why = bad_topic(s)
  check(not why, why)
end

local function check_filter(s)
  check(type(s) == "string", "topic filter must be a string, got " .. type(s))
  local why = bad_filter(s)
  check(not why, why)
end

---------------------------------------------------------------------------
-- Encoders
---------------------------------------------------------------------------

-- Encodes n as the fixed header's remaining-length varint. Public so fake
-- brokers can hand-assemble packets, well formed or not.
function M.encode_length(n)
  check(math.type(n) == "integer" and n >= 0 and n <= MAX_REMAINING,
    "remaining length must be an integer in 0.." .. MAX_REMAINING
      .. ", got " .. tostring(n))
  local out = {}
  repeat
    local b = n % 128
    n = n // 128
    if n > 0 then b = b | 0x80 end
    out[#out + 1] = b
  until n == 0
  return char(table.unpack(out))
end

local function packet(b1, body)
  if #body > MAX_REMAINING then
    error("mqtt311: packet larger than " .. MAX_REMAINING .. " bytes", 3)
  end
  return char(b1) .. M.encode_length(#body) .. body
end

local function id_only(b1, id)
  return char(b1, 2, id >> 8, id & 0xFF)
end

-- CONNECT. opts: client_id (string, default ""; empty needs clean),
-- username, password (password only with a username, spec 3.1.2.9),
-- keepalive seconds (default 60, 0 disables), clean (default true),
-- will = {topic, payload (<= 65535 bytes), qos (default 0), retain},
-- version 4 (3.1.1, the default) or 3 (MQTT 3.1: protocol name "MQIsdp",
-- level 3, which SIMCom modules speak unless told otherwise; the packet
-- is otherwise the same).
function M.connect(opts)
  check(type(opts) == "table", "connect options must be a table")
  local client_id = opts.client_id or ""
  check_string(client_id, "client_id")
  local clean = opts.clean ~= false
  check(clean or #client_id > 0,
    "an empty client_id requires clean=true (spec 3.1.3-7)")
  local keepalive = opts.keepalive or 60
  check(math.type(keepalive) == "integer" and keepalive >= 0
    and keepalive <= 65535, "keepalive must be an integer in 0..65535")
  local version = opts.version or 4
  check(version == 3 or version == 4, "version must be 3 (MQTT 3.1) or 4 (3.1.1)")
  local flags = clean and 0x02 or 0
  local payload = { pack(">s2", client_id) }
  local will = opts.will
  if will ~= nil then
    check(type(will) == "table", "will must be a table")
    check_topic(will.topic)
    local wp = will.payload or ""
    check(type(wp) == "string" and #wp <= MAX_STRING,
      "will payload must be a string of at most 65535 bytes")
    local wq = will.qos or 0
    check_qos(wq, 2)
    flags = flags | 0x04 | (wq << 3) | (will.retain and 0x20 or 0)
    payload[#payload + 1] = pack(">s2s2", will.topic, wp)
  end
  if opts.username ~= nil then
    check_string(opts.username, "username")
    flags = flags | 0x80
    payload[#payload + 1] = pack(">s2", opts.username)
  end
  if opts.password ~= nil then
    check(opts.username ~= nil, "a password requires a username")
    check(type(opts.password) == "string" and #opts.password <= MAX_STRING,
      "password must be a string of at most 65535 bytes")
    flags = flags | 0x40
    payload[#payload + 1] = pack(">s2", opts.password)
  end
  return packet(0x10, pack(">s2BBI2", version == 3 and "MQIsdp" or "MQTT",
    version, flags, keepalive)
    .. concat(payload))
end

-- PUBLISH. opts: topic, payload (default ""), qos 0..2 (default 0), retain,
-- dup (not with QoS 0, spec 3.3.1-2), id (required exactly when qos > 0).
function M.publish(opts)
  check(type(opts) == "table", "publish options must be a table")
  check_topic(opts.topic)
  local payload = opts.payload or ""
  check(type(payload) == "string" and #payload <= MAX_REMAINING,
    "payload must be a string of at most " .. MAX_REMAINING .. " bytes")
  local qos = opts.qos or 0
  check_qos(qos, 2)
  local b1 = 0x30 | (qos << 1) | (opts.retain and 1 or 0)
  local head
  if qos == 0 then
    check(not opts.dup, "dup must be false for QoS 0")
    check(opts.id == nil, "a QoS 0 PUBLISH has no packet id")
    head = pack(">s2", opts.topic)
  else
    check_id(opts.id)
    b1 = b1 | (opts.dup and 0x08 or 0)
    head = pack(">s2I2", opts.topic, opts.id)
  end
  return packet(b1, head .. payload)
end

function M.puback(id) check_id(id); return id_only(0x40, id) end
function M.pubrec(id) check_id(id); return id_only(0x50, id) end
function M.pubrel(id) check_id(id); return id_only(0x62, id) end
function M.pubcomp(id) check_id(id); return id_only(0x70, id) end

-- SUBSCRIBE with at least one {topic=filter, qos=0..2}.
function M.subscribe(id, topics)
  check_id(id)
  check(type(topics) == "table" and #topics > 0,
    "subscribe needs a non-empty list of {topic=, qos=}")
  local body = { pack(">I2", id) }
  for _, s in ipairs(topics) do
    check(type(s) == "table", "subscribe entries must be {topic=, qos=}")
    check_filter(s.topic)
    local qos = s.qos or 0
    check_qos(qos, 2)
    body[#body + 1] = pack(">s2B", s.topic, qos)
  end
  return packet(0x82, concat(body))
end

-- UNSUBSCRIBE with at least one topic filter string.
function M.unsubscribe(id, topics)
  check_id(id)
  check(type(topics) == "table" and #topics > 0,
    "unsubscribe needs a non-empty list of topic filters")
  local body = { pack(">I2", id) }
  for _, f in ipairs(topics) do
    check_filter(f)
    body[#body + 1] = pack(">s2", f)
  end
  return packet(0xA2, concat(body))
end

function M.pingreq() return "\xC0\x00" end
function M.pingresp() return "\xD0\x00" end
function M.disconnect() return "\xE0\x00" end

-- CONNACK. A refusal cannot claim a session (spec 3.2.2-4).
function M.connack(session_present, rc)
  check(math.type(rc) == "integer" and rc >= 0 and rc <= 255,
    "connack rc must be an integer in 0..255")
  check(not (session_present and rc ~= 0),
    "session_present must be false when rc is not 0")
  return char(0x20, 2, session_present and 1 or 0, rc)
end

-- SUBACK; granted entries are 0, 1, 2 or 0x80 (failure).
function M.suback(id, granted)
  check_id(id)
  check(type(granted) == "table" and #granted > 0,
    "suback needs a non-empty list of granted QoS")
  local body = { pack(">I2", id) }
  for _, g in ipairs(granted) do
    check(g == 0 or g == 1 or g == 2 or g == 0x80,
      "granted QoS must be 0, 1, 2 or 0x80, got " .. tostring(g))
    body[#body + 1] = char(g)
  end
  return packet(0x90, concat(body))
end

function M.unsuback(id) check_id(id); return id_only(0xB0, id) end

---------------------------------------------------------------------------
-- Decoder
---------------------------------------------------------------------------

-- Body parsers read from `r` = {s = body, i = next index} and raise a
-- {eproto = what} table on malformed input; next() turns it into the
-- nil, message, code triple.
local function bad(what) error({ eproto = what }, 0) end

local function u8(r)
  local b = byte(r.s, r.i)
  if not b then bad("truncated packet") end
  r.i = r.i + 1
  return b
end

local function u16(r)
  local hi, lo = byte(r.s, r.i, r.i + 1)
  if not lo then bad("truncated packet") end
  r.i = r.i + 2
  return (hi << 8) | lo
end

local function id16(r)
  local id = u16(r)
  if id == 0 then bad("packet id 0") end
  return id
end

-- A 2-byte-length-prefixed field; utf8 says whether it must be a UTF-8
-- string (spec 1.5.3) rather than binary data.
local function field(r, what, utf8_required)
  local n = u16(r)
  local v = sub(r.s, r.i, r.i + n - 1)
  if #v < n then bad("truncated " .. what) end
  r.i = r.i + n
  if utf8_required then
    local why = bad_utf8(v)
    if why then bad(what .. " " .. why) end
  end
  return v
end

local function done(r)
  if r.i <= #r.s then bad("trailing bytes") end
end

local function rest(r) return sub(r.s, r.i) end

local parse = {}

function parse.CONNECT(r)
  local name = field(r, "protocol name", true)
  if name ~= "MQTT" then bad("protocol name " .. string.format("%q", name)) end
  local level = u8(r)
  if level ~= 4 then bad("protocol level " .. level) end
  local flags, keepalive = u8(r), u16(r)
  if flags & 0x01 ~= 0 then bad("reserved CONNECT flag set") end
  local p = { type = "CONNECT", keepalive = keepalive,
    clean = flags & 0x02 ~= 0 }
  p.client_id = field(r, "client id", true)
  local wq = (flags >> 3) & 3
  if flags & 0x04 ~= 0 then
    if wq == 3 then bad("will QoS 3") end
    p.will = { topic = field(r, "will topic", true),
      payload = field(r, "will payload"), qos = wq,
      retain = flags & 0x20 ~= 0 }
    local why = bad_topic(p.will.topic)
    if why then bad("will " .. why) end
  elseif flags & 0x38 ~= 0 then
    bad("will QoS or retain without a will")
  end
  if flags & 0x80 ~= 0 then p.username = field(r, "user name", true) end
  if flags & 0x40 ~= 0 then
    if not p.username then bad("password without user name") end
    p.password = field(r, "password")
  end
  done(r)
  return p
end

function parse.CONNACK(r)
  local ack, rc = u8(r), u8(r)
  if ack & 0xFE ~= 0 then bad("reserved CONNACK flags set") end
  done(r)
  return { type = "CONNACK", session_present = ack == 1, rc = rc }
end

function parse.PUBLISH(r, flags)
  local qos = (flags >> 1) & 3
  local dup = flags & 0x08 ~= 0
  if qos == 0 and dup then bad("DUP set on a QoS 0 PUBLISH") end
  local p = { type = "PUBLISH", qos = qos, dup = dup,
    retain = flags & 0x01 ~= 0 }
  p.topic = field(r, "topic", true)
  local why = bad_topic(p.topic)
  if why then bad(why) end
  if qos > 0 then p.id = id16(r) end
  p.payload = rest(r)
  return p
end

local function ack_parser(name)
  return function(r)
    local p = { type = name, id = id16(r) }
    done(r)
    return p
  end
end
for _, name in ipairs { "PUBACK", "PUBREC", "PUBREL", "PUBCOMP", "UNSUBACK" } do
  parse[name] = ack_parser(name)
end

function parse.SUBSCRIBE(r)
  local p = { type = "SUBSCRIBE", id = id16(r), topics = {} }
  repeat
    local topic = field(r, "topic filter", true)
    local why = bad_filter(topic)
    if why then bad(why) end
    local qos = u8(r)
    if qos > 2 then bad("requested QoS " .. qos) end
    p.topics[#p.topics + 1] = { topic = topic, qos = qos }
  until r.i > #r.s
  return p
end

function parse.SUBACK(r)
  local p = { type = "SUBACK", id = id16(r), granted = {} }
  repeat
    local g = u8(r)
    if g > 2 and g ~= 0x80 then bad("SUBACK return code " .. g) end
    p.granted[#p.granted + 1] = g
  until r.i > #r.s
  return p
end

function parse.UNSUBSCRIBE(r)
  local p = { type = "UNSUBSCRIBE", id = id16(r), topics = {} }
  repeat
    local topic = field(r, "topic filter", true)
    local why = bad_filter(topic)
    if why then bad(why) end
    p.topics[#p.topics + 1] = topic
  until r.i > #r.s
  return p
end

local function empty_parser(name)
  return function(r)
    done(r)
    return { type = name }
  end
end
for _, name in ipairs { "PINGREQ", "PINGRESP", "DISCONNECT" } do
  parse[name] = empty_parser(name)
end

local Decoder = {}
Decoder.__index = Decoder

-- Unconsumed input is `buf` from index `pos` on, plus `chunks` fed since
-- (`queued` bytes). Chunks are joined only once `need` bytes are there, so
-- a packet trickling in byte by byte is copied a bounded number of times
-- rather than once per byte, and joining drops the consumed prefix.
function M.decoder()
  return setmetatable({ buf = "", pos = 1, chunks = {}, queued = 0,
    need = 1 }, Decoder)
end

-- Appends bytes. Input after a protocol error is dropped: the stream cannot
-- be resynchronised.
function Decoder:feed(bytes)
  check(type(bytes) == "string", "feed expects a string, got " .. type(bytes))
  if self.err or #bytes == 0 then return end
  self.chunks[#self.chunks + 1] = bytes
  self.queued = self.queued + #bytes
end

function Decoder:fail(what)
  self.err = "EPROTO: " .. what
  self.buf, self.pos, self.chunks, self.queued = "", 1, {}, 0
  return nil, self.err, "EPROTO"
end

-- Returns the next complete packet, nil when more bytes are needed, or
-- nil, "EPROTO: <what>", "EPROTO" on malformed input (and from then on).
function Decoder:next()
  if self.err then return nil, self.err, "EPROTO" end
  local have = #self.buf - self.pos + 1 + self.queued
  if have < self.need then return nil end
  if self.queued > 0 then
    self.buf = sub(self.buf, self.pos) .. concat(self.chunks)
    self.pos, self.chunks, self.queued = 1, {}, 0
  end
  local buf, pos = self.buf, self.pos
  local b1 = byte(buf, pos)
  local name = TYPES[b1 >> 4]
  if not name then return self:fail("reserved packet type " .. (b1 >> 4)) end
  local flags = b1 & 0x0F
  if FLAGS[name] and flags ~= FLAGS[name] then
    return self:fail(string.format("reserved flags 0x%X in %s", flags, name))
  end
  if name == "PUBLISH" and flags & 0x06 == 0x06 then
    return self:fail("PUBLISH with QoS 3")
  end
  local len, mult, i = 0, 1, pos + 1
  while true do
    local b = byte(buf, i)
    if not b then
      self.need = i - pos + 1
      return nil
    end
    len = len + (b & 0x7F) * mult
    if b < 0x80 then break end
    if i - pos == 4 then
      return self:fail("remaining length longer than 4 bytes")
    end
    mult, i = mult * 128, i + 1
  end
  local total = i - pos + 1 + len
  if have < total then
    self.need = total
    return nil
  end
  self.pos, self.need = pos + total, 1
  if self.pos > #buf then self.buf, self.pos = "", 1 end
  local r = { s = sub(buf, i + 1, i + len), i = 1 }
  local ok, p = pcall(parse[name], r, flags)
  if not ok then
    if type(p) == "table" and p.eproto then return self:fail(p.eproto) end
    error(p, 0)
  end
  return p
end

---------------------------------------------------------------------------
-- Client session
---------------------------------------------------------------------------

local Session = {}
Session.__index = Session

-- A client session over some byte transport. env.send(bytes) writes to the
-- transport; env.now() returns a monotonic time in milliseconds. The caller
-- feeds received bytes to s:input(), calls s:tick() every second or so, and
-- closes the transport when an event says the session is over (an error, a
-- timeout, a refused connack), at which point s.state is "closed".
--
-- Fields the caller may read: state ("new", "connecting", "connected",
-- "closed"); inflight[id] = {topic, payload, qos, retain, seq} for QoS 1
-- publishes not yet acknowledged, seq giving their order; pending[id] =
-- "subscribe" or "unsubscribe" for requests not yet acknowledged.
function M.session(env)
  check(type(env) == "table" and type(env.send) == "function"
    and type(env.now) == "function",
    "session needs {send = function(bytes), now = function() -> ms}")
  return setmetatable({ send_fn = env.send, now = env.now, state = "new",
    next_id = 1, seq = 0, inflight = {}, pending = {}, keepalive = 0 },
    Session)
end

function Session:send(bytes)
  self.last_sent = self.now()
  self.send_fn(bytes)
end

local function check_open(s)
  check(s.state == "connecting" or s.state == "connected",
    "session is " .. s.state .. ", not connecting or connected")
end

-- Packet ids cycle through 1..65535, skipping ids still awaiting an ack.
function Session:alloc_id()
  for _ = 1, 65535 do
    local id = self.next_id
    self.next_id = id % 65535 + 1
    if not self.inflight[id] and not self.pending[id] then return id end
  end
  error("mqtt311: all 65535 packet ids are awaiting acknowledgement", 3)
end

-- Sends CONNECT (opts as for M.connect). Allowed on a new session, or on a
-- closed one over a fresh transport: with clean=false the unacknowledged
-- QoS 1 publishes are sent again after the CONNACK, as spec 4.4 requires.
-- Unacknowledged (un)subscribes are forgotten either way.
function Session:connect(opts)
  check(self.state == "new" or self.state == "closed",
    "connect on a session that is " .. self.state)
  local bytes = M.connect(opts)
  self.clean = opts.clean ~= false
  self.keepalive = opts.keepalive or 60
  if self.clean then self.inflight = {} end
  self.pending = {}
  self.decoder = M.decoder()
  self.ping_at = nil
  self.state = "connecting"
  self:send(bytes)
  self.connect_at = self.last_sent
end

-- Sends SUBSCRIBE for one filter at QoS 0 or 1; returns the packet id.
-- MQTT allows requests before the CONNACK, so "connecting" is enough.
function Session:subscribe(topic, qos)
  check_open(self)
  qos = qos or 0
  check_qos(qos, 1)
  local id = self:alloc_id()
  local bytes = M.subscribe(id, { { topic = topic, qos = qos } })
  self.pending[id] = "subscribe"
  self:send(bytes)
  return id
end

-- Sends UNSUBSCRIBE for one filter; returns the packet id.
function Session:unsubscribe(topic)
  check_open(self)
  local id = self:alloc_id()
  local bytes = M.unsubscribe(id, { topic })
  self.pending[id] = "unsubscribe"
  self:send(bytes)
  return id
end

-- Sends PUBLISH; returns the packet id for QoS 1, which stays in
-- s.inflight until its PUBACK, or nil for QoS 0.
function Session:publish(topic, payload, qos, retain)
  check_open(self)
  qos = qos or 0
  check_qos(qos, 1)
  local msg = { topic = topic, payload = payload or "", qos = qos,
    retain = retain or false }
  if qos == 0 then
    self:send(M.publish(msg))
    return nil
  end
  local id = self:alloc_id()
  msg.id = id
  local bytes = M.publish(msg)
  msg.id = nil
  self.seq = self.seq + 1
  msg.seq = self.seq
  self.inflight[id] = msg
  self:send(bytes)
  return id
end

-- Sends DISCONNECT if connecting or connected; the session is then closed.
-- In-flight publishes are kept for a later connect with clean=false.
function Session:disconnect()
  if self.state == "connecting" or self.state == "connected" then
    self:send(M.disconnect())
  end
  self.state = "closed"
end

local function resend_inflight(s)
  local ids = {}
  for id in pairs(s.inflight) do ids[#ids + 1] = id end
  table.sort(ids, function(a, b)
    return s.inflight[a].seq < s.inflight[b].seq
  end)
  for _, id in ipairs(ids) do
    local m = s.inflight[id]
    s:send(M.publish { topic = m.topic, payload = m.payload, qos = m.qos,
      retain = m.retain, dup = true, id = id })
  end
end

-- Handles one packet from the server; returns an event, or nil plus an
-- EPROTO message when the server broke the protocol.
local function handle(s, p)
  local t = p.type
  if s.state == "connecting" and t ~= "CONNACK" then
    return nil, "EPROTO: " .. t .. " before CONNACK"
  end
  if t == "CONNACK" then
    if s.state ~= "connecting" then return nil, "EPROTO: second CONNACK" end
    if p.rc == 0 then
      s.state = "connected"
      if not s.clean then resend_inflight(s) end
    else
      s.state = "closed"
    end
    return { type = "connack", rc = p.rc, session_present = p.session_present }
  elseif t == "PUBLISH" then
    if p.qos > 1 then
      return nil, "EPROTO: QoS 2 PUBLISH was never requested"
    end
    if p.qos == 1 then s:send(M.puback(p.id)) end
    -- id: the packet id of a QoS 1 message (modules print it: +QMTRECV).
    return { type = "message", topic = p.topic, payload = p.payload,
      qos = p.qos, retain = p.retain, id = p.id }
  elseif t == "PUBACK" then
    if not s.inflight[p.id] then
      return nil, "EPROTO: PUBACK for unknown packet id " .. p.id
    end
    s.inflight[p.id] = nil
    return { type = "puback", id = p.id }
  elseif t == "SUBACK" or t == "UNSUBACK" then
    local kind = t == "SUBACK" and "subscribe" or "unsubscribe"
    if s.pending[p.id] ~= kind then
      return nil, "EPROTO: " .. t .. " for unknown packet id " .. p.id
    end
    s.pending[p.id] = nil
    if t == "UNSUBACK" then return { type = "unsuback", id = p.id } end
    -- One topic per SUBSCRIBE here, so one return code.
    if #p.granted ~= 1 then
      return nil, "EPROTO: SUBACK with " .. #p.granted
        .. " return codes for 1 topic"
    end
    return { type = "suback", id = p.id, granted = p.granted }
  elseif t == "PINGRESP" then
    s.ping_at = nil
    return { type = "pingresp" }
  end
  return nil, "EPROTO: " .. t .. " is not sent to clients"
end

-- Feeds bytes received from the transport; returns the list of events they
-- complete, in order. A protocol error ends the list with an error event
-- and closes the session; input to a closed session is ignored.
function Session:input(bytes)
  local events = {}
  if self.state ~= "connecting" and self.state ~= "connected" then
    return events
  end
  self.decoder:feed(bytes)
  while self.state == "connecting" or self.state == "connected" do
    local p, err = self.decoder:next()
    if err then
      events[#events + 1] = { type = "error", message = err }
      self.state = "closed"
      break
    elseif not p then
      break
    end
    local ev, perr = handle(self, p)
    if not ev then
      events[#events + 1] = { type = "error", message = perr }
      self.state = "closed"
      break
    end
    events[#events + 1] = ev
  end
  return events
end

-- Keepalive (spec 3.1.2.10): a PINGREQ once nothing has been sent for 3/4
-- of the keepalive, so the server, which waits 1.5 times it, never gives up
-- on a live client. A missing PINGRESP (or CONNACK) after a whole keepalive
-- closes the session with a timeout event. Returns a list of events.
function Session:tick()
  local ka = self.keepalive * 1000
  if ka == 0 then return {} end
  local now = self.now()
  if self.state == "connecting" and now - self.connect_at >= ka then
    self.state = "closed"
    return { { type = "timeout",
      message = "ETIMEDOUT: no CONNACK within " .. self.keepalive .. " s" } }
  elseif self.state ~= "connected" then
    return {}
  end
  if self.ping_at then
    if now - self.ping_at >= ka then
      self.state = "closed"
      return { { type = "timeout",
        message = "ETIMEDOUT: no PINGRESP within " .. self.keepalive .. " s" } }
    end
  elseif now - self.last_sent >= ka * 3 // 4 then
    self:send(M.pingreq())
    self.ping_at = self.last_sent
  end
  return {}
end

return M
