-- Fuzz target: lib/athost/mqtt311.lua decoding what a peer sends. The
-- first byte picks the cutting and the mode: the bare decoder (the same
-- packets whether the bytes come whole or in pieces; every packet it
-- returns that an encoder can write decodes back to itself) or a client
-- session after CONNECT, SUBSCRIBE and a QoS 1 PUBLISH (events well formed,
-- a protocol error closes it). Malformed bytes must give nil, "EPROTO: ...",
-- "EPROTO", never raise.
local split = require("split")
local mqtt = require("athost.mqtt311")

-- All packets of a byte stream fed in pieces; then the error, if any.
local function decode(pieces)
  local d, out = mqtt.decoder(), {}
  for _, s in ipairs(pieces) do
    d:feed(s)
    while true do
      local p, err, code = d:next()
      if err then
        assert(code == "EPROTO" and err:find("^EPROTO: "), "error " .. tostring(err))
        out.err = err
        return out
      end
      if not p then break end
      out[#out + 1] = p
    end
  end
  return out
end

-- The encoder's spelling of a decoded packet, or nil where none applies.
local function encode(p)
  local t = p.type
  if t == "PUBLISH" then
    return mqtt.publish { topic = p.topic, payload = p.payload, qos = p.qos,
      retain = p.retain, dup = p.dup, id = p.id }
  elseif t == "CONNACK" then
    if p.session_present and p.rc ~= 0 then return nil end
    return mqtt.connack(p.session_present, p.rc)
  elseif t == "PUBACK" then return mqtt.puback(p.id)
  elseif t == "PUBREC" then return mqtt.pubrec(p.id)
  elseif t == "PUBREL" then return mqtt.pubrel(p.id)
  elseif t == "PUBCOMP" then return mqtt.pubcomp(p.id)
  elseif t == "UNSUBACK" then return mqtt.unsuback(p.id)
  elseif t == "SUBACK" then return mqtt.suback(p.id, p.granted)
  elseif t == "SUBSCRIBE" then return mqtt.subscribe(p.id, p.topics)
  elseif t == "UNSUBSCRIBE" then return mqtt.unsubscribe(p.id, p.topics)
  elseif t == "PINGREQ" then return mqtt.pingreq()
  elseif t == "PINGRESP" then return mqtt.pingresp()
  elseif t == "DISCONNECT" then return mqtt.disconnect()
  end
end

local function decoder(bytes, seed)
  local whole = decode({ bytes })
  local cut = decode(split.pieces(bytes, seed))
  assert(split.deepeq(whole, cut), "the packets depend on the cutting")
  for _, p in ipairs(whole) do
    -- an encoder may refuse what the decoder lets through (a topic the
    -- session would not send): only what it writes must come back
    local ok, bytes2 = pcall(encode, p)
    if ok and bytes2 then
      local again = decode({ bytes2 })
      assert(#again == 1 and not again.err and split.deepeq(again[1], p),
        p.type .. " does not decode back to itself")
    end
  end
end

local KINDS = { connack = true, message = true, puback = true, suback = true,
  unsuback = true, pingresp = true, error = true }

local function session(bytes, seed)
  local sent, now = {}, 0
  local s = mqtt.session { send = function(b) sent[#sent + 1] = b end,
    now = function() return now end }
  s:connect { client_id = "fuzz", keepalive = 60, clean = seed % 4 ~= 0 }
  s:subscribe("a/b", 1)
  s:publish("a/b", "x", 1)
  for _, piece in ipairs(split.pieces(bytes, seed)) do
    local evs = s:input(piece)
    for i, ev in ipairs(evs) do
      assert(KINDS[ev.type], "event " .. tostring(ev.type))
      if ev.type == "error" then
        assert(i == #evs and s.state == "closed", "an error ends the session")
        assert(ev.message:find("^EPROTO: "), ev.message)
      end
    end
    now = now + 1000
    s:tick()
  end
end

return function(data)
  if #data == 0 then return end
  local b = data:byte(1)
  if b % 2 == 0 then decoder(data:sub(2), b) else session(data:sub(2), b) end
end
