-- MQTT 3.1.1 codec and client session: byte-exact encodings, streaming
-- decoding, malformed input and the session's protocol duties, all without
-- a network (a fake transport and a fake clock).
local t = require("t")
local mqtt = require("athost.mqtt311")

-- Decodes a whole byte string; returns the packets, then the failure (if
-- any) that ended it.
local function decode_all(bytes)
  local d = mqtt.decoder()
  d:feed(bytes)
  local out = {}
  while true do
    local p, msg, code = d:next()
    if not p then return out, msg, code end
    out[#out + 1] = p
  end
end

local function decode_one(bytes)
  local ps, msg = decode_all(bytes)
  t.eq(msg, nil, "decode error")
  t.eq(#ps, 1, "packets decoded")
  return ps[1]
end

local function eproto(bytes, plain)
  local d = mqtt.decoder()
  d:feed(bytes)
  local msg = t.fails("EPROTO", d:next())
  t.match(msg, "^EPROTO: ", "message")
  if plain then t.ok(msg:find(plain, 1, true), "message " .. msg .. " mentions " .. plain) end
  return msg
end

---------------------------------------------------------------------------
-- Byte-exact encodings, assembled by hand from the spec's figures.
---------------------------------------------------------------------------

t.test("CONNECT: the spec's example variable header (3.1.2.11)", function()
  -- Flags 0xCE: user name, password, will QoS 1, will flag, clean session;
  -- keep alive 10.
  local got = mqtt.connect { client_id = "c", username = "u", password = "p",
    keepalive = 10, will = { topic = "w", payload = "x", qos = 1 } }
  t.eq(got, "\x10\x19" .. "\x00\x04MQTT\x04\xCE\x00\x0A"
    .. "\x00\x01c" .. "\x00\x01w\x00\x01x" .. "\x00\x01u\x00\x01p", "CONNECT")
end)

t.test("CONNECT with every flag set", function()
  local got = mqtt.connect { client_id = "c1", username = "u", password = "p",
    keepalive = 60, clean = true,
    will = { topic = "w/t", payload = "bye", qos = 1, retain = true } }
  t.eq(got, "\x10\x1E" .. "\x00\x04MQTT\x04\xEE\x00\x3C"
    .. "\x00\x02c1" .. "\x00\x03w/t\x00\x03bye" .. "\x00\x01u" .. "\x00\x01p",
    "CONNECT")
end)

t.test("CONNECT with no flags but clean session", function()
  t.eq(mqtt.connect { keepalive = 0 },
    "\x10\x0C\x00\x04MQTT\x04\x02\x00\x00\x00\x00", "minimal CONNECT")
  t.eq(mqtt.connect { client_id = "id", clean = false, keepalive = 300 },
    "\x10\x0E\x00\x04MQTT\x04\x00\x01\x2C\x00\x02id", "persistent session")
end)

t.test("CONNECT as MQTT 3.1 (version 3): protocol name MQIsdp, level 3", function()
  t.eq(mqtt.connect { client_id = "id", keepalive = 60, version = 3 },
    "\x10\x10\x00\x06MQIsdp\x03\x02\x00\x3C\x00\x02id", "3.1 CONNECT")
  t.raises(function() mqtt.connect { version = 5 } end, "version must be 3")
end)

t.test("PUBLISH QoS 0 and QoS 1", function()
  t.eq(mqtt.publish { topic = "a/b", payload = "hi" },
    "\x30\x07\x00\x03a/b" .. "hi", "QoS 0")
  t.eq(mqtt.publish { topic = "a/b", payload = "hi", qos = 1, id = 10 },
    "\x32\x09\x00\x03a/b\x00\x0A" .. "hi", "QoS 1")
  t.eq(mqtt.publish { topic = "a/b", payload = "hi", qos = 1, id = 0x1234,
    retain = true, dup = true },
    "\x3B\x09\x00\x03a/b\x12\x34" .. "hi", "QoS 1, dup, retain")
  t.eq(mqtt.publish { topic = "t" }, "\x30\x03\x00\x01t", "empty payload")
end)

t.test("SUBSCRIBE, UNSUBSCRIBE and the acks", function()
  t.eq(mqtt.subscribe(1, { { topic = "a/+", qos = 1 }, { topic = "b/#", qos = 0 } }),
    "\x82\x0E\x00\x01\x00\x03a/+\x01\x00\x03b/#\x00", "SUBSCRIBE")
  t.eq(mqtt.unsubscribe(2, { "a/+" }), "\xA2\x07\x00\x02\x00\x03a/+", "UNSUBSCRIBE")
  t.eq(mqtt.puback(7), "\x40\x02\x00\x07", "PUBACK")
  t.eq(mqtt.puback(65535), "\x40\x02\xFF\xFF", "PUBACK 65535")
  t.eq(mqtt.suback(1, { 1, 0x80 }), "\x90\x04\x00\x01\x01\x80", "SUBACK")
  t.eq(mqtt.unsuback(2), "\xB0\x02\x00\x02", "UNSUBACK")
  t.eq(mqtt.connack(true, 0), "\x20\x02\x01\x00", "CONNACK")
  t.eq(mqtt.connack(false, 5), "\x20\x02\x00\x05", "CONNACK refused")
end)

t.test("PINGREQ, PINGRESP, DISCONNECT", function()
  t.eq(mqtt.pingreq(), "\xC0\x00", "PINGREQ")
  t.eq(mqtt.pingresp(), "\xD0\x00", "PINGRESP")
  t.eq(mqtt.disconnect(), "\xE0\x00", "DISCONNECT")
end)

t.test("CONNACK reasons", function()
  t.eq(mqtt.CONNACK_REASONS[0], "connection accepted")
  t.eq(mqtt.CONNACK_REASONS[1], "unacceptable protocol version")
  t.eq(mqtt.CONNACK_REASONS[2], "identifier rejected")
  t.eq(mqtt.CONNACK_REASONS[3], "server unavailable")
  t.eq(mqtt.CONNACK_REASONS[4], "bad user name or password")
  t.eq(mqtt.CONNACK_REASONS[5], "not authorized")
end)

---------------------------------------------------------------------------
-- Remaining length
---------------------------------------------------------------------------

local LENGTHS = {
  { 0, "\x00" }, { 127, "\x7F" }, { 128, "\x80\x01" }, { 16383, "\xFF\x7F" },
  { 16384, "\x80\x80\x01" }, { 2097151, "\xFF\xFF\x7F" },
  { 2097152, "\x80\x80\x80\x01" }, { 268435455, "\xFF\xFF\xFF\x7F" },
}

t.test("remaining length varint at every boundary", function()
  for _, c in ipairs(LENGTHS) do
    t.eq(mqtt.encode_length(c[1]), c[2], "length " .. c[1])
  end
  t.raises(function() mqtt.encode_length(268435456) end, "remaining length")
  t.raises(function() mqtt.encode_length(-1) end, "remaining length")
end)

t.test("PUBLISH packets whose remaining length sits on a boundary", function()
  t.eq(mqtt.pingreq():sub(2), "\x00", "length 0")
  for _, c in ipairs(LENGTHS) do
    local n = c[1]
    if n >= 3 and n <= 2097152 then
      -- topic "a" costs 3 bytes of the remaining length
      local payload = string.rep("x", n - 3)
      local bytes = mqtt.publish { topic = "a", payload = payload }
      t.eq(bytes:sub(1, 1 + #c[2]), "\x30" .. c[2], "header for " .. n)
      t.eq(#bytes, 1 + #c[2] + n, "size for " .. n)
      local p = decode_one(bytes)
      t.eq(p.topic, "a", "topic for " .. n)
      t.eq(#p.payload, n - 3, "payload length for " .. n)
      t.ok(p.payload == payload, "payload for " .. n)
    end
  end
end)

t.test("a 4-byte remaining length waits for the body", function()
  local d = mqtt.decoder()
  d:feed("\x30\xFF\xFF\xFF\x7F\x00\x01a")
  t.eq(d:next(), nil, "incomplete packet")
  local p, msg = d:next()
  t.eq(p, nil)
  t.eq(msg, nil, "no error while waiting")
end)

---------------------------------------------------------------------------
-- Round trips
---------------------------------------------------------------------------

-- Each entry: encoded bytes and the table the decoder must give back.
local function samples()
  return {
    { mqtt.connect { client_id = "dev-1", keepalive = 120 },
      { type = "CONNECT", client_id = "dev-1", keepalive = 120, clean = true } },
    { mqtt.connect { client_id = "dev-2", username = "user", password = "\0\1pw",
        keepalive = 30, clean = false,
        will = { topic = "dev/2/status", payload = "offline", qos = 1, retain = true } },
      { type = "CONNECT", client_id = "dev-2", username = "user",
        password = "\0\1pw", keepalive = 30, clean = false,
        will = { topic = "dev/2/status", payload = "offline", qos = 1, retain = true } } },
    { mqtt.connack(false, 0), { type = "CONNACK", session_present = false, rc = 0 } },
    { mqtt.connack(true, 0), { type = "CONNACK", session_present = true, rc = 0 } },
    { mqtt.connack(false, 4), { type = "CONNACK", session_present = false, rc = 4 } },
    { mqtt.publish { topic = "a/b", payload = "hello" },
      { type = "PUBLISH", topic = "a/b", payload = "hello", qos = 0,
        retain = false, dup = false } },
    { mqtt.publish { topic = "é/ü", payload = "\0\255", qos = 1, id = 513,
        retain = true, dup = true },
      { type = "PUBLISH", topic = "é/ü", payload = "\0\255", qos = 1,
        retain = true, dup = true, id = 513 } },
    { mqtt.publish { topic = "q2", payload = "", qos = 2, id = 9 },
      { type = "PUBLISH", topic = "q2", payload = "", qos = 2, retain = false,
        dup = false, id = 9 } },
    { mqtt.puback(1), { type = "PUBACK", id = 1 } },
    { mqtt.pubrec(2), { type = "PUBREC", id = 2 } },
    { mqtt.pubrel(3), { type = "PUBREL", id = 3 } },
    { mqtt.pubcomp(4), { type = "PUBCOMP", id = 4 } },
    { mqtt.subscribe(65535, { { topic = "a/#", qos = 1 }, { topic = "+", qos = 0 },
        { topic = "#", qos = 2 } }),
      { type = "SUBSCRIBE", id = 65535, topics = { { topic = "a/#", qos = 1 },
        { topic = "+", qos = 0 }, { topic = "#", qos = 2 } } } },
    { mqtt.suback(65535, { 1, 0, 0x80 }),
      { type = "SUBACK", id = 65535, granted = { 1, 0, 0x80 } } },
    { mqtt.unsubscribe(6, { "a/#", "x/+/y" }),
      { type = "UNSUBSCRIBE", id = 6, topics = { "a/#", "x/+/y" } } },
    { mqtt.unsuback(6), { type = "UNSUBACK", id = 6 } },
    { mqtt.pingreq(), { type = "PINGREQ" } },
    { mqtt.pingresp(), { type = "PINGRESP" } },
    { mqtt.disconnect(), { type = "DISCONNECT" } },
  }
end

t.test("every packet type survives encode then decode", function()
  for i, s in ipairs(samples()) do
    t.deepeq(decode_one(s[1]), s[2], "sample " .. i)
  end
end)

local function stream()
  local bytes, want = {}, {}
  for _, s in ipairs(samples()) do
    bytes[#bytes + 1] = s[1]
    want[#want + 1] = s[2]
  end
  -- one packet with a 2-byte remaining length
  local big = string.rep("z", 300)
  bytes[#bytes + 1] = mqtt.publish { topic = "big", payload = big }
  want[#want + 1] = { type = "PUBLISH", topic = "big", payload = big, qos = 0,
    retain = false, dup = false }
  return table.concat(bytes), want
end

-- Feeds `bytes` in pieces of the given sizes, draining after each piece.
local function feed_pieces(bytes, sizes)
  local d, got, at = mqtt.decoder(), {}, 1
  for _, n in ipairs(sizes) do
    d:feed(bytes:sub(at, at + n - 1))
    at = at + n
    while true do
      local p, msg = d:next()
      t.eq(msg, nil, "decode error")
      if not p then break end
      got[#got + 1] = p
    end
  end
  t.eq(at, #bytes + 1, "all bytes fed")
  return got
end

t.test("all packets in one feed", function()
  local bytes, want = stream()
  t.deepeq(feed_pieces(bytes, { #bytes }), want, "packets")
end)

t.test("a stream fed one byte at a time", function()
  local bytes, want = stream()
  local sizes = {}
  for i = 1, #bytes do sizes[i] = 1 end
  t.deepeq(feed_pieces(bytes, sizes), want, "packets")
end)

t.test("a stream fed in random splits (fixed seed)", function()
  local bytes, want = stream()
  math.randomseed(20140101)
  for round = 1, 50 do
    local sizes, left = {}, #bytes
    while left > 0 do
      local n = math.min(left, math.random(0, 12) == 0 and 0 or math.random(1, 40))
      sizes[#sizes + 1] = n
      left = left - n
    end
    t.deepeq(feed_pieces(bytes, sizes), want, "round " .. round)
  end
end)

t.test("a stream split at every single byte boundary", function()
  local bytes, want = stream()
  for cut = 1, #bytes - 1 do
    t.deepeq(feed_pieces(bytes, { cut, #bytes - cut }), want, "cut at " .. cut)
  end
end)

t.test("a large packet trickling in byte by byte is not rescanned", function()
  -- Linear decoding takes about half a second here; joining the buffer on
  -- every byte copies ~550 GB, which takes over a minute.
  local payload = string.rep("p", 1024 * 1024)
  local bytes = mqtt.publish { topic = "t", payload = payload, qos = 1, id = 5 }
  local d, p = mqtt.decoder(), nil
  local start = os.clock()
  for i = 1, #bytes do
    d:feed(bytes:sub(i, i))
    p = d:next()
    if i < #bytes then t.eq(p, nil, "packet before byte " .. i) end
  end
  t.ok(p and p.payload == payload, "packet decoded")
  t.ok(os.clock() - start < 10, "decoding took " .. (os.clock() - start) .. " s")
end)

---------------------------------------------------------------------------
-- Malformed input
---------------------------------------------------------------------------

t.test("reserved packet types and reserved fixed-header flags", function()
  eproto("\x00\x00", "reserved packet type 0")
  eproto("\xF0\x00", "reserved packet type 15")
  eproto("\x41\x02\x00\x01", "reserved flags 0x1 in PUBACK")
  eproto("\x80\x06\x00\x01\x00\x01a\x00", "reserved flags 0x0 in SUBSCRIBE")
  eproto("\xA0\x05\x00\x01\x00\x01a", "in UNSUBSCRIBE")
  eproto("\x60\x02\x00\x01", "in PUBREL")
  eproto("\xC8\x00", "in PINGREQ")
  eproto("\xE1\x00", "in DISCONNECT")
  eproto("\x21\x02\x00\x00", "in CONNACK")
  -- flags are judged as soon as the first byte is there
  eproto("\x12", "in CONNECT")
end)

t.test("remaining length longer than 4 bytes", function()
  eproto("\x30\xFF\xFF\xFF\xFF\x01", "longer than 4 bytes")
  eproto("\x30\x80\x80\x80\x80", "longer than 4 bytes")
end)

t.test("PUBLISH QoS 3 and DUP on QoS 0", function()
  eproto("\x36\x05\x00\x01a\x00\x01", "QoS 3")
  eproto("\x37", "QoS 3")
  eproto("\x38\x03\x00\x01a", "DUP")
end)

t.test("truncated strings and fields", function()
  eproto("\x30\x04\x00\x05ab", "truncated topic")
  eproto("\x30\x01\x00", "truncated")
  eproto("\x32\x04\x00\x01a\x00", "truncated")
  eproto("\x10\x0C\x00\x04MQTT\x04\x02\x00\x00\x00\x05", "truncated client id")
  eproto("\x10\x0E\x00\x04MQTT\x04\x82\x00\x00\x00\x00\x00\x09", "truncated user name")
  eproto("\x82\x06\x00\x01\x00\x03a/", "truncated topic filter")
  eproto("\x82\x07\x00\x01\x00\x03a/b", "truncated")
end)

t.test("wrong lengths, packet id 0 and bad codes", function()
  eproto("\x40\x03\x00\x01\x00", "trailing bytes")
  eproto("\x40\x01\x00", "truncated")
  eproto("\x40\x02\x00\x00", "packet id 0")
  eproto("\x32\x05\x00\x01a\x00\x00", "packet id 0")
  eproto("\xD0\x01\x00", "trailing bytes")
  eproto("\x20\x02\x02\x00", "reserved CONNACK flags")
  eproto("\x90\x03\x00\x01\x03", "SUBACK return code 3")
  eproto("\x90\x02\x00\x01", "truncated")
  eproto("\x82\x06\x00\x01\x00\x01a\x03", "requested QoS 3")
end)

t.test("bad topics and CONNECT headers", function()
  eproto("\x30\x05\x00\x03a/#", "wildcard")
  eproto("\x30\x03\x00\x01\xFF", "not valid UTF-8")
  eproto("\x30\x03\x00\x01\x00", "U+0000")
  eproto("\x82\x07\x00\x01\x00\x02a#\x00", "'#'")
  eproto("\x10\x0C\x00\x04MQTX\x04\x02\x00\x00\x00\x00", "protocol name")
  eproto("\x10\x0C\x00\x04MQTT\x03\x02\x00\x00\x00\x00", "protocol level 3")
  eproto("\x10\x0C\x00\x04MQTT\x04\x03\x00\x00\x00\x00", "reserved CONNECT flag")
  eproto("\x10\x0C\x00\x04MQTT\x04\x1E\x00\x00\x00\x00", "will QoS 3")
  eproto("\x10\x0C\x00\x04MQTT\x04\x22\x00\x00\x00\x00", "without a will")
  eproto("\x10\x0F\x00\x04MQTT\x04\x42\x00\x00\x00\x00\x00\x01p", "password without")
end)

t.test("a protocol error is final for the decoder", function()
  local d = mqtt.decoder()
  d:feed(mqtt.pingresp() .. "\x00\x00" .. mqtt.pingresp())
  t.deepeq(d:next(), { type = "PINGRESP" }, "packet before the error")
  t.fails("EPROTO", d:next())
  d:feed(mqtt.pingresp())
  t.fails("EPROTO", d:next())
end)

t.test("misuse raises", function()
  t.raises(function() mqtt.publish { topic = "" } end, "empty topic")
  t.raises(function() mqtt.publish { topic = string.rep("t", 65536) } end, "65535")
  t.raises(function() mqtt.publish { topic = "a/+" } end, "wildcard")
  t.raises(function() mqtt.publish { topic = "a", qos = 3, id = 1 } end, "qos")
  t.raises(function() mqtt.publish { topic = "a", qos = 1 } end, "packet id")
  t.raises(function() mqtt.publish { topic = "a", qos = 1, id = 0 } end, "packet id")
  t.raises(function() mqtt.publish { topic = "a", qos = 1, id = 65536 } end, "packet id")
  t.raises(function() mqtt.publish { topic = "a", id = 1 } end, "no packet id")
  t.raises(function() mqtt.publish { topic = "a", dup = true } end, "dup")
  t.raises(function() mqtt.publish { topic = "a", payload = 5 } end, "payload")
  t.raises(function() mqtt.connect { password = "p" } end, "requires a username")
  t.raises(function() mqtt.connect { clean = false } end, "empty client_id")
  t.raises(function() mqtt.connect { keepalive = 65536 } end, "keepalive")
  t.raises(function() mqtt.connect { will = { topic = "" } } end, "empty topic")
  t.raises(function() mqtt.connect { client_id = "\xC0" } end, "UTF-8")
  t.raises(function() mqtt.subscribe(1, {}) end, "non-empty")
  t.raises(function() mqtt.subscribe(1, { { topic = "a/#/b" } }) end, "'#'")
  t.raises(function() mqtt.subscribe(1, { { topic = "a+" } }) end, "'+'")
  t.raises(function() mqtt.subscribe(1, { { topic = "a", qos = 3 } }) end, "qos")
  t.raises(function() mqtt.unsubscribe(1, { "" }) end, "empty topic filter")
  t.raises(function() mqtt.suback(1, { 3 }) end, "granted")
  t.raises(function() mqtt.connack(true, 5) end, "session_present")
  t.raises(function() mqtt.decoder():feed(nil) end, "string")
end)

---------------------------------------------------------------------------
-- Client session over a fake transport and clock
---------------------------------------------------------------------------

-- A session whose sent packets are decoded into `sent` and whose clock is
-- `clock.ms`.
local function harness()
  local h = { sent = {}, clock = { ms = 0 } }
  local d = mqtt.decoder()
  h.s = mqtt.session {
    send = function(bytes)
      d:feed(bytes)
      while true do
        local p, msg = d:next()
        assert(not msg, msg)
        if not p then break end
        h.sent[#h.sent + 1] = p
      end
    end,
    now = function() return h.clock.ms end,
  }
  function h.take()
    local s = h.sent
    h.sent = {}
    return s
  end
  return h
end

local function connected(opts)
  local h = harness()
  h.s:connect(opts or { client_id = "dev", keepalive = 60 })
  t.deepeq(h.s:input(mqtt.connack(false, 0)),
    { { type = "connack", rc = 0, session_present = false } }, "connack")
  h.take()
  return h
end

t.test("connect sends CONNECT and a CONNACK completes it", function()
  local h = harness()
  t.eq(h.s.state, "new", "state")
  t.raises(function() h.s:publish("a", "x") end, "session is new")
  h.s:connect { client_id = "dev", username = "u", password = "p", keepalive = 30 }
  t.eq(h.s.state, "connecting", "state")
  t.deepeq(h.take(), { { type = "CONNECT", client_id = "dev", username = "u",
    password = "p", keepalive = 30, clean = true } }, "sent")
  t.deepeq(h.s:input(mqtt.connack(true, 0)),
    { { type = "connack", rc = 0, session_present = true } }, "events")
  t.eq(h.s.state, "connected", "state")
  t.raises(function() h.s:connect { client_id = "dev" } end, "connected")
end)

t.test("a refused CONNACK closes the session", function()
  local h = harness()
  h.s:connect { client_id = "dev" }
  t.deepeq(h.s:input(mqtt.connack(false, 5)),
    { { type = "connack", rc = 5, session_present = false } }, "events")
  t.eq(h.s.state, "closed", "state")
  t.deepeq(h.s:input(mqtt.pingresp()), {}, "input after close")
end)

t.test("an incoming QoS 1 PUBLISH is acknowledged by the session", function()
  local h = connected()
  local ev = h.s:input(mqtt.publish { topic = "cmd/1", payload = "on", qos = 1,
    id = 77 } .. mqtt.publish { topic = "cmd/2", payload = "off", retain = true })
  t.deepeq(ev, {
    { type = "message", topic = "cmd/1", payload = "on", qos = 1, retain = false, id = 77 },
    { type = "message", topic = "cmd/2", payload = "off", qos = 0, retain = true },
  }, "events")
  t.deepeq(h.take(), { { type = "PUBACK", id = 77 } }, "sent")
end)

t.test("a QoS 1 publish stays in flight until its PUBACK", function()
  local h = connected()
  t.eq(h.s:publish("t/0", "zero"), nil, "QoS 0 id")
  local id = h.s:publish("t/1", "one", 1, true)
  t.eq(id, 1, "id")
  t.deepeq(h.take(), {
    { type = "PUBLISH", topic = "t/0", payload = "zero", qos = 0, retain = false, dup = false },
    { type = "PUBLISH", topic = "t/1", payload = "one", qos = 1, retain = true,
      dup = false, id = 1 },
  }, "sent")
  t.ok(h.s.inflight[1], "in flight")
  t.deepeq(h.s:input(mqtt.puback(1)), { { type = "puback", id = 1 } }, "events")
  t.eq(h.s.inflight[1], nil, "acknowledged")
  t.raises(function() h.s:publish("t", "x", 2) end, "qos")
end)

t.test("subscribe and unsubscribe get their acks", function()
  local h = connected()
  local sid = h.s:subscribe("dev/+/cmd", 1)
  local uid = h.s:unsubscribe("old/#")
  t.deepeq(h.take(), {
    { type = "SUBSCRIBE", id = sid, topics = { { topic = "dev/+/cmd", qos = 1 } } },
    { type = "UNSUBSCRIBE", id = uid, topics = { "old/#" } },
  }, "sent")
  t.ok(sid ~= uid, "distinct ids")
  t.deepeq(h.s:input(mqtt.suback(sid, { 1 }) .. mqtt.unsuback(uid)), {
    { type = "suback", id = sid, granted = { 1 } },
    { type = "unsuback", id = uid },
  }, "events")
  t.eq(next(h.s.pending), nil, "nothing pending")
end)

t.test("requests may go out before the CONNACK", function()
  local h = harness()
  h.s:connect { client_id = "dev" }
  local id = h.s:subscribe("a", 0)
  t.eq(#h.take(), 2, "CONNECT and SUBSCRIBE sent")
  t.deepeq(h.s:input(mqtt.connack(false, 0) .. mqtt.suback(id, { 0 })), {
    { type = "connack", rc = 0, session_present = false },
    { type = "suback", id = id, granted = { 0 } },
  }, "events")
end)

t.test("server protocol errors end the session with an error event", function()
  local cases = {
    { "\xF0\x00", "EPROTO: reserved packet type 15" },
    { mqtt.puback(9), "EPROTO: PUBACK for unknown packet id 9" },
    { mqtt.suback(9, { 0 }), "EPROTO: SUBACK for unknown packet id 9" },
    { mqtt.connack(false, 0), "EPROTO: second CONNACK" },
    { mqtt.pingreq(), "EPROTO: PINGREQ is not sent to clients" },
    { mqtt.publish { topic = "a", qos = 2, id = 1 }, "EPROTO: QoS 2 PUBLISH was never requested" },
  }
  for _, c in ipairs(cases) do
    local h = connected()
    local ev = h.s:input(mqtt.pingresp() .. c[1] .. mqtt.pingresp())
    t.deepeq(ev, { { type = "pingresp" }, { type = "error", message = c[2] } }, c[2])
    t.eq(h.s.state, "closed", "state after " .. c[2])
  end
  local h = harness()
  h.s:connect { client_id = "dev" }
  t.deepeq(h.s:input(mqtt.pingresp()),
    { { type = "error", message = "EPROTO: PINGRESP before CONNACK" } }, "before CONNACK")
end)

t.test("packet ids run 1..65535, wrap, skip ids in use, never 0", function()
  local h = connected()
  t.eq(h.s:publish("t", "held", 1), 1, "first id")
  for want = 2, 65535 do
    local id = h.s:publish("t", "", 1)
    if id ~= want then t.eq(id, want, "id") end
    h.s:input(mqtt.puback(id))
  end
  h.take()
  -- 1 is still in flight, so the wrap lands on 2
  t.eq(h.s:subscribe("a"), 2, "id after wrap")
  t.eq(h.s:publish("t", "", 1), 3, "next id")
  t.deepeq(h.s:input(mqtt.puback(1)), { { type = "puback", id = 1 } }, "old ack")
end)

t.test("keepalive: PINGREQ after 3/4 of it without sending", function()
  local h = connected { client_id = "dev", keepalive = 60 }
  h.clock.ms = 44999
  t.deepeq(h.s:tick(), {}, "tick")
  t.deepeq(h.take(), {}, "nothing sent yet")
  h.clock.ms = 45000
  t.deepeq(h.s:tick(), {}, "tick")
  t.deepeq(h.take(), { { type = "PINGREQ" } }, "ping")
  h.clock.ms = 50000
  t.deepeq(h.s:tick(), {}, "tick while the ping is out")
  t.deepeq(h.take(), {}, "no second ping")
  t.deepeq(h.s:input(mqtt.pingresp()), { { type = "pingresp" } }, "events")
  -- other traffic postpones the next ping
  h.clock.ms = 80000
  h.s:publish("t", "x")
  h.take()
  h.clock.ms = 124999
  h.s:tick()
  t.deepeq(h.take(), {}, "no ping 44.999 s after the publish")
  h.clock.ms = 125000
  h.s:tick()
  t.deepeq(h.take(), { { type = "PINGREQ" } }, "ping 45 s after the publish")
  t.eq(h.s.state, "connected", "state")
end)

t.test("keepalive: no PINGRESP within keepalive is a timeout", function()
  local h = connected { client_id = "dev", keepalive = 10 }
  h.clock.ms = 7500
  h.s:tick()
  t.deepeq(h.take(), { { type = "PINGREQ" } }, "ping")
  h.clock.ms = 17499
  t.deepeq(h.s:tick(), {}, "still waiting")
  h.clock.ms = 17500
  t.deepeq(h.s:tick(), { { type = "timeout",
    message = "ETIMEDOUT: no PINGRESP within 10 s" } }, "timeout")
  t.eq(h.s.state, "closed", "state")
  t.deepeq(h.s:tick(), {}, "closed sessions stay quiet")
  t.deepeq(h.take(), {}, "nothing sent")
end)

t.test("keepalive: a missing CONNACK times out; keepalive 0 never pings", function()
  local h = harness()
  h.s:connect { client_id = "dev", keepalive = 5 }
  h.clock.ms = 4999
  t.deepeq(h.s:tick(), {}, "waiting for CONNACK")
  h.clock.ms = 5000
  t.deepeq(h.s:tick(), { { type = "timeout",
    message = "ETIMEDOUT: no CONNACK within 5 s" } }, "timeout")
  local q = connected { client_id = "dev", keepalive = 0 }
  q.clock.ms = 10 ^ 9
  t.deepeq(q.s:tick(), {}, "tick")
  t.deepeq(q.take(), {}, "no ping")
end)

t.test("disconnect sends DISCONNECT once and closes", function()
  local h = connected()
  h.s:disconnect()
  t.deepeq(h.take(), { { type = "DISCONNECT" } }, "sent")
  t.eq(h.s.state, "closed", "state")
  h.s:disconnect()
  t.deepeq(h.take(), {}, "second disconnect sends nothing")
  t.raises(function() h.s:subscribe("a") end, "session is closed")
end)

t.test("reconnect with clean=false resends unacknowledged publishes", function()
  local h = connected { client_id = "dev", clean = false }
  local a = h.s:publish("t/a", "A", 1)
  local b = h.s:publish("t/b", "B", 1, true)
  h.s:input(mqtt.puback(a))
  h.s:subscribe("never/acked")
  h.s:disconnect()
  h.take()
  h.s:connect { client_id = "dev", clean = false }
  t.deepeq(h.s:input(mqtt.connack(true, 0)),
    { { type = "connack", rc = 0, session_present = true } }, "events")
  local sent = h.take()
  t.eq(sent[1].type, "CONNECT", "first packet")
  t.deepeq(sent[2], { type = "PUBLISH", topic = "t/b", payload = "B", qos = 1,
    retain = true, dup = true, id = b }, "resent publish")
  t.eq(#sent, 2, "packets sent")
  t.eq(next(h.s.pending), nil, "unacked subscribe forgotten")
  -- a clean reconnect drops the in-flight publish instead
  h.s:disconnect()
  h.s:connect { client_id = "dev" }
  h.s:input(mqtt.connack(false, 0))
  t.eq(#h.take(), 2, "DISCONNECT and CONNECT only")
  t.eq(next(h.s.inflight), nil, "in-flight cleared")
end)

t.run()
