-- The Luat MQTT AT commands (references 000, 001, 003; PROTOCOLS.md) for
-- virtual modems of the Luat family: AT+MCONFIG, AT+(SSL)MIPSTART,
-- AT+MCONNECT, AT+MSUB/MUNSUB, AT+MPUB/MPUBEX, AT+MQTTMSGSET/MQTTMSGGET,
-- AT+MQTTMODE, AT+MQTTSTATU, AT+MDISCONNECT, AT+MIPCLOSE, AT+CIPSHUT, and
-- the link faults (CLOSED, +PDP DEACT). Each command answers at once; the
-- broker's answer comes later as a URC, as on the module.
--
-- Wording chosen where the references are silent:
--   a refused CONNACK:  the line "+CME ERROR: 767" (AT+CMEE=1), its text
--                       (=2) or "ERROR" (=0) as MCONNECT's outcome, then
--                       "CLOSED" when the broker drops the link
--   a refused SUBSCRIBE (granted 0x80): the same line instead of SUBACK
--   AT+CIPSHUT:         "SHUT OK" (dialect.shut_ok), like SIMCom's; it
--                       closes the links and leaves the PDP context down:
--                       reference 003 brings it back with AT+CGDCONT=5,...
--                       and AT+CGACT=1,5, AT+CFUN=0/1 or AT+RESET
--   cached delivery:    4 slots in RAM: they survive AT+CIPSHUT and
--                       AT+CFUN, not a reboot; a message that finds no
--                       free slot is dropped
-- Where the references leave a choice open, a knob (M.knobs) has every
-- reading: the order of OK and the outcome URC (core's `order`), what
-- "<n> byte" counts in HEX mode, " byte" itself, the cached topic's
-- quotes, AT+MQTTSTATU's spacing, the bearer-loss URC and whether
-- AT+CGACT can bring the context back (athost.sim.basic).
local athost = require("athost")
local core = require("athost.sim.core")
local atparse = require("athost.sim.atparse")
local mqttlink = require("athost.sim.mqttlink")

local M = {}
local C = {}
M.commands = C

local E_STATE, E_PARAM, E_FAILED = core.E_STATE, core.E_PARAM, core.E_FAILED
local params = core.params

-- Knobs (athost.sim.core) of the MQTT commands, for every Luat model.
M.knobs = {
  { name = "hex_count", values = { "chars", "bytes" }, default = "chars",
    doc = "HEX mode (AT+MQTTMODE=1): the <n> of an incoming \"+MSUB: ...,<n> "
      .. "byte,<hex>\" counts the hex characters or the payload bytes "
      .. "(reference 003 never shows a hex incoming line); direct and cached" },
  { name = "msub_len", values = { "byte", "bare" }, default = "byte",
    doc = "an incoming message's count as \",<n> byte,\" (reference 003) or "
      .. "\",<n>,\" (MQTTMSGSET.md of the Air780E, DIALECTS.md 3)" },
  { name = "cached_topic", values = { "bare", "quoted" }, default = "bare",
    doc = "AT+MQTTMSGGET prints the topic unquoted (reference 003) or quoted" },
  { name = "statu", values = { "space", "plain" }, default = "space",
    doc = "\"+MQTTSTATU :0\" (reference 003) or \"+MQTTSTATU: 0\"" },
  { name = "pdp_urc", values = { "pdp", "cgev", "both" }, default = "pdp",
    doc = "the bearer loss is announced as \"+PDP DEACT\" (reference 003), "
      .. "\"+CGEV: NW PDN DEACT 1\" (Air780E, DIALECTS.md 3) or both" },
  { name = "cgact", values = { "ok", "refuse" }, default = "ok",
    doc = "AT+CGACT=1,<cid> re-activates a defined context, or is refused "
      .. "with +CME ERROR (a flow must then cycle AT+CFUN=0/1)" },
}

-- The Air720's limits; a model of the family gives its own table as
-- dialect.mqtt_limits (athost.sim.air780e). topic and message are
-- optional: without them topics and incoming messages are not limited.
M.limits = {
  field = 256,            -- each AT+MCONFIG field
  mpub = 4100,            -- bytes in AT+MPUB's message
  mpubex = 10240,         -- bytes after AT+MPUBEX's prompt
  mpubex_ms = 20000,      -- to send them
  slots = 4,              -- AT+MQTTMSGSET=1 cache
  connect_ms = 15000,     -- TCP/TLS connect before CONNECT FAIL
  -- topic = 256,         -- bytes of a topic (MSUB, MPUB, MPUBEX)
  -- message = 4100,      -- bytes of an incoming message (longer: dropped)
  -- mpubex_idle = 5000,  -- AT+MPUBEX without <len>: ends after this idle
}

local function lim(m) return m.dialect.mqtt_limits or M.limits end

-- A topic the model takes: not empty, within the model's limit.
local function topic_ok(m, t)
  local max = lim(m).topic
  return t ~= "" and (not max or #t <= max)
end

-- What the bearer loss prints, by the reading of the knob pdp_urc (%d:
-- the context's cid). A model offers those its firmware may print.
M.PDP_URCS = {
  pdp = { "+PDP DEACT" },
  cgev = { "+CGEV: NW PDN DEACT %d" },
  both = { "+CGEV: NW PDN DEACT %d", "+PDP DEACT" },
  me = { "+CGEV: ME PDN DEACT %d" },
  me_pdp = { "+CGEV: ME PDN DEACT %d", "+PDP DEACT" },
}

function M.reset(m)
  m.st.mqtt = { msgset = 0, mode = 0, slots = {} }
  m.st.ssl = {}
end

-- Outcomes a command waits for on a link (athost.sim.core ok_then):
-- kind "connect" (CONNECT OK/FAIL), "connack", "suback", "unsuback",
-- "puback"; the broker answers each kind in order, so first come, first
-- served.
local function await(l, kind, done)
  l.waiting = l.waiting or {}
  local w = l.waiting[kind] or {}
  l.waiting[kind] = w
  w[#w + 1] = done
end

-- The outcome of kind: to the command that waits for it, else a URC.
local function settle(m, l, kind, line, gen)
  local w = l.waiting and l.waiting[kind]
  local done = w and table.remove(w, 1)
  if done then return done(line) end
  if line then m:urc(line, gen) end
end

-- The link is gone: the outcomes still awaited never come.
local function settle_all(l)
  local waiting = l.waiting or {}
  l.waiting = {}
  for _, w in pairs(waiting) do
    for _, done in ipairs(w) do done(nil) end
  end
end

-- Closes the link without a word (reboot, MIPCLOSE, CIPSHUT, radio off).
local function close_link(m)
  local q = m.st.mqtt
  if q and q.link then
    local l = q.link
    q.link = nil
    l:close()
    settle_all(l)
  end
end
M.shutdown = close_link
M.net_down = close_link

-- The link drops under the modem: "CLOSED" (or CONNECT FAIL if it was
-- still connecting).
function M.drop(m)
  local l = m.st.mqtt.link
  if l and l.state == "open" then
    l:lose("EOF: dropped by a fault")
  elseif l and l.state == "connecting" then
    l:close()
    m.st.mqtt.link = nil
    settle(m, l, "connect", "CONNECT FAIL", m.gen)
    settle_all(l)
  end
end

-- The bearer is lost: "+PDP DEACT" and/or "+CGEV: NW PDN DEACT 1" (knob
-- pdp_urc, M.PDP_URCS); MQTT and HTTP need the context again (reference
-- 003).
function M.pdp_deact(m)
  for _, line in ipairs(M.PDP_URCS[m:knob("pdp_urc")]) do
    m:urc(line:format(m.net.act_cid or 1))
  end
  m.net.pdp = false
  close_link(m)
end

---------------------------------------------------------------------------
-- Link events -> URCs
---------------------------------------------------------------------------

-- "+MSUB: <topic>,<n> byte,<payload>" as the knobs say: in HEX mode the
-- payload is hex and <n> counts its characters or the bytes (hex_count);
-- " byte" may be missing (msub_len); the topic is quoted when quoted.
local function msub_line(m, q, topic, payload, quoted)
  local body, n = payload, #payload
  if q.mode == 1 then
    body = atparse.hex(payload)
    n = m:knob("hex_count") == "bytes" and #payload or #body
  end
  return string.format("+MSUB: %s,%d%s,%s", quoted and '"' .. topic .. '"' or topic,
    n, m:knob("msub_len") == "byte" and " byte" or "", body)
end

local function deliver(m, q, ev, gen)
  -- Longer than the model takes (Air780E: 4100 B, MSUB.md): what the
  -- module does then is not documented; this one drops it.
  local max = lim(m).message
  if max and #ev.payload > max then return end
  if q.msgset == 0 then
    return m:urc(msub_line(m, q, ev.topic, ev.payload, true), gen)
  end
  for slot = 0, lim(m).slots - 1 do
    if not q.slots[slot] then
      q.slots[slot] = { topic = ev.topic, payload = ev.payload }
      return m:urc("+MSUB: " .. slot, gen)
    end
  end
end

local function on_event(m, q, l, ev, gen)
  if m.gen ~= gen or q.link ~= l then return end     -- rebooted, replaced
  local t = ev.type
  if t == "open" then
    settle(m, l, "connect", "CONNECT OK", gen)
  elseif t == "fail" then
    q.link = nil
    settle(m, l, "connect", "CONNECT FAIL", gen)
    settle_all(l)
  elseif t == "connack" then
    l.refused = ev.rc ~= 0
    settle(m, l, "connack", ev.rc == 0 and "CONNACK OK" or m:cme_line(E_FAILED), gen)
  elseif t == "message" then
    deliver(m, q, ev, gen)
  elseif t == "puback" then
    settle(m, l, "puback", "PUBACK", gen)
  elseif t == "suback" then
    settle(m, l, "suback", ev.granted[1] == 0x80 and m:cme_line(E_FAILED) or "SUBACK", gen)
  elseif t == "unsuback" then
    settle(m, l, "unsuback", "UNSUBACK", gen)
  elseif t == "closed" then
    settle_all(l)
    -- After MDISCONNECT the link stays until MIPCLOSE (reference 003).
    if not l.expected then
      q.link = nil
      if l.refused then
        -- The broker closes right after its refusal: the module reports
        -- the refusal (written by MCONNECT's command flow, order=before)
        -- before the link's end.
        athost.timer(20, function() m:urc("CLOSED", gen) end)
      else
        m:urc("CLOSED", gen)
      end
    end
  end
end

---------------------------------------------------------------------------
-- Commands
---------------------------------------------------------------------------

local set_params = core.set_params

local function connected_link(m)
  local l = m.st.mqtt.link
  return l and l:connected() and l or nil
end

C["+MCONFIG"] = function(m, c)
  local ps = set_params(m, c, 3, 7)
  if not ps then return end
  if #ps ~= 3 and #ps ~= 7 then return m:fail(E_PARAM) end
  for _, p in ipairs(ps) do
    if #p.value > lim(m).field then return m:fail(E_PARAM) end
  end
  local user, pwd = ps[2].value, ps[3].value
  local cfg = { client_id = ps[1].value,
    username = user ~= "" and user or nil, password = pwd ~= "" and pwd or nil }
  if cfg.password and not cfg.username then cfg.username = "" end
  if #ps == 7 then
    local wq, wr = atparse.int(ps[4], 0, 2), atparse.int(ps[5], 0, 1)
    if not wq or not wr or ps[6].value == "" then return m:fail(E_PARAM) end
    cfg.will = { qos = wq, retain = wr == 1, topic = ps[6].value,
      payload = ps[7].value }
  end
  m.st.mqtt.cfg = cfg
  m:ok()
end

-- TLS options for SSL context 88 (AT+SSLCFG): seclevel 0 no checks, 1 the
-- broker against the CA file, 2 also our certificate. nil, why when a
-- configured file is missing.
local function tls_options(m)
  local s = m.st.ssl and m.st.ssl[88] or {}
  local level = s.seclevel or 0
  local o = { verify = level >= 1 }
  if level >= 1 then
    o.ca = s.cacert and m.files[s.cacert]
    if not o.ca or o.ca == "" then return nil, "no CA file" end
  end
  if level >= 2 then
    o.cert = s.clientcert and m.files[s.clientcert]
    o.key = s.clientkey and m.files[s.clientkey]
    if not o.cert or not o.key then return nil, "no client certificate or key" end
  end
  return o
end

-- AT+(SSL)MIPSTART: OK and CONNECT OK | CONNECT FAIL | ALREADY CONNECT,
-- in the order the knob `order` says. No active PDP context: refused.
local function mipstart(tls)
  return function(m, c)
    local ps = set_params(m, c, 2)
    if not ps then return end
    local host, port = ps[1].value, atparse.int(ps[2], 1, 65535)
    if host == "" or not port then return m:fail(E_PARAM) end
    local q = m.st.mqtt
    local l = q.link
    if l and l.state == "open" and not l.expected then
      return m:ok_then(function(done) done("ALREADY CONNECT") end)
    end
    if l and l.state == "connecting" then return m:fail(E_STATE) end
    if not m:online() then return m:fail(E_STATE) end
    if l then close_link(m) end
    local addr, p, remapped = m:resolve(host, port, "mqtt")
    local topts, why
    if tls then
      topts, why = tls_options(m)
      if not topts then
        if m.trace then require("athost").log(m.name .. " TLS: " .. why) end
        return m:ok_then(function(done) done("CONNECT FAIL") end)
      end
      topts.hostname = remapped and addr or host
    end
    local gen = m.gen
    m:ok_then(function(done)
      -- The link's flow starts later (athost.spawn): no event before await.
      q.link = mqttlink.open { host = addr, port = p, tls = topts,
        timeout = lim(m).connect_ms,
        on = function(link, ev) on_event(m, q, link, ev, gen) end }
      await(q.link, "connect", done)
    end, lim(m).connect_ms + 5000)
  end
end
C["+MIPSTART"] = mipstart(false)
C["+SSLMIPSTART"] = mipstart(true)

-- Session calls (connect, subscribe, publish) queue their packet without
-- yielding, so the waiter is in place before the broker can answer.
C["+MCONNECT"] = function(m, c)
  local ps = set_params(m, c, 2)
  if not ps then return end
  local clean, ka = atparse.int(ps[1], 0, 1), atparse.int(ps[2], 0, 65535)
  if not clean or not ka then return m:fail(E_PARAM) end
  local q = m.st.mqtt
  local l = q.link
  if not l or l.state ~= "open" or l.expected
      or l.session.state == "connecting" or l.session.state == "connected" then
    return m:fail(E_STATE)
  end
  local cfg = q.cfg or { client_id = m.imei }
  local ok = l:connect { client_id = cfg.client_id, username = cfg.username,
    password = cfg.password, keepalive = ka, clean = clean == 1, will = cfg.will }
  if not ok then return m:fail(E_PARAM) end
  m:ok_then(function(done) await(l, "connack", done) end)
end

C["+MSUB"] = function(m, c)
  local ps = set_params(m, c, 2)
  if not ps then return end
  local qos = atparse.int(ps[2], 0, 1)
  if not qos or not topic_ok(m, ps[1].value) then return m:fail(E_PARAM) end
  local l = connected_link(m)
  if not l then return m:fail(E_STATE) end
  if not l:subscribe(ps[1].value, qos) then return m:fail(E_PARAM) end
  m:ok_then(function(done) await(l, "suback", done) end)
end

C["+MUNSUB"] = function(m, c)
  local ps = set_params(m, c, 1)
  if not ps then return end
  local l = connected_link(m)
  if not l then return m:fail(E_STATE) end
  if not l:unsubscribe(ps[1].value) then return m:fail(E_PARAM) end
  m:ok_then(function(done) await(l, "unsuback", done) end)
end

-- QoS 1: PUBACK is the outcome (000); QoS 0 has none.
local function publish(m, l, topic, payload, qos, retain)
  if not l:publish(topic, payload, qos, retain == 1) then return m:fail(E_PARAM) end
  if qos == 0 then return m:ok() end
  m:ok_then(function(done) await(l, "puback", done) end)
end

C["+MPUB"] = function(m, c)
  local ps = set_params(m, c, 4)
  if not ps then return end
  local qos, retain = atparse.int(ps[2], 0, 1), atparse.int(ps[3], 0, 1)
  -- The message must be quoted; its \HH escapes are decoded (or, in HEX
  -- mode, it is hex).
  if not qos or not retain or not ps[4].quoted or not topic_ok(m, ps[1].value) then
    return m:fail(E_PARAM)
  end
  local q = m.st.mqtt
  local payload
  if q.mode == 1 then
    payload = atparse.unhex(ps[4].value)
  else
    payload = atparse.unescape(ps[4].value)
  end
  if not payload or #payload > lim(m).mpub then return m:fail(E_PARAM) end
  local l = connected_link(m)
  if not l then return m:fail(E_STATE) end
  publish(m, l, ps[1].value, payload, qos, retain)
end

-- AT+MPUBEX=<topic>,<qos>,<retain>,<len>: ">", then exactly len bytes.
-- A model with limits.mpubex_idle (the Air780E) also takes it without
-- <len>: the message then ends at 0x1A (not sent) or after that many ms
-- without a byte; nothing at all, or more than limits.mpubex, is ERROR.
C["+MPUBEX"] = function(m, c)
  local L = lim(m)
  local ps = set_params(m, c, L.mpubex_idle and 3 or 4, 4)
  if not ps then return end
  local qos, retain = atparse.int(ps[2], 0, 1), atparse.int(ps[3], 0, 1)
  local len = ps[4] and atparse.int(ps[4], 1, L.mpubex)
  if not qos or not retain or (ps[4] and not len) then return m:fail(E_PARAM) end
  if not topic_ok(m, ps[1].value) then return m:fail(E_PARAM) end
  if not connected_link(m) then return m:fail(E_STATE) end
  m:prompt()
  local payload
  if len then
    payload = m:read_data(len, L.mpubex_ms)
  else
    payload = m:read_until_idle("\x1a", L.mpubex_idle, L.mpubex)
  end
  if not payload or payload == "" then return m:error() end
  local l = connected_link(m)
  if not l then return m:fail(E_STATE) end
  publish(m, l, ps[1].value, payload, qos, retain)
end

local function switch(field)
  local name = "+" .. field:upper()
  return function(m, c)
    local q = m.st.mqtt
    local key = field == "mqttmsgset" and "msgset" or "mode"
    if c.op == "read" then
      m:info(name .. ": " .. q[key])
      return m:ok()
    end
    local ps = set_params(m, c, 1)
    if not ps then return end
    local v = atparse.int(ps[1], 0, 1)
    if not v then return m:fail(E_PARAM) end
    q[key] = v
    m:ok()
  end
end
C["+MQTTMSGSET"] = switch("mqttmsgset")
C["+MQTTMODE"] = switch("mqttmode")

-- Reference 003: "+MQTTMSGGET: <slot>,VALID|INVALID" for each slot; the
-- exec form prints the cached messages (topic unquoted) and frees them.
C["+MQTTMSGGET"] = function(m, c)
  local q = m.st.mqtt
  if c.op == "read" then
    for slot = 0, lim(m).slots - 1 do
      m:info(string.format("+MQTTMSGGET: %d,%s", slot,
        q.slots[slot] and "VALID" or "INVALID"))
    end
    return m:ok()
  end
  if c.op ~= "exec" then return m:error() end
  local quoted = m:knob("cached_topic") == "quoted"
  for slot = 0, lim(m).slots - 1 do
    local msg = q.slots[slot]
    if msg then
      m:info(msub_line(m, q, msg.topic, msg.payload, quoted))
      q.slots[slot] = nil
    end
  end
  m:ok()
end

-- "+MQTTSTATU :<0 offline|1 online|2 TCP only>" (space before the colon,
-- reference 003) or "+MQTTSTATU: <n>" (knob statu).
C["+MQTTSTATU"] = function(m, c)
  if c.op ~= "exec" then return m:error() end
  local l, s = m.st.mqtt.link, 0
  if l and l.state == "open" then
    s = (l.session.state == "connected" and not l.expected) and 1 or 2
  end
  m:info((m:knob("statu") == "space" and "+MQTTSTATU :" or "+MQTTSTATU: ") .. s)
  m:ok()
end

C["+MDISCONNECT"] = function(m, c)
  if c.op ~= "exec" then return m:error() end
  local l = connected_link(m)
  if not l then return m:fail(E_STATE) end
  l.expected = true        -- the broker closes the link: no CLOSED
  l:disconnect()
  m:ok()
end

C["+MIPCLOSE"] = function(m, c)
  if c.op ~= "exec" then return m:error() end
  if not m.st.mqtt.link then return m:fail(E_STATE) end
  close_link(m)
  m:ok()
end

-- Closes every link (reference 003's recovery after +PDP DEACT starts
-- here). The PDP context stays as it is: down after +PDP DEACT, until
-- AT+CGACT, AT+CFUN=0/1 or AT+RESET brings it back (athost.sim.basic).
C["+CIPSHUT"] = function(m, c)
  if c.op ~= "exec" then return m:error() end
  close_link(m)
  m:info(m.dialect.shut_ok or "SHUT OK")
end

C["+SSLCFG"] = function(m, c)
  if c.op == "read" then return m:ok() end
  local ps = set_params(m, c, 3)
  if not ps then return end
  local what, ctx = ps[1].value:lower(), atparse.int(ps[2], 0, 255)
  if not ctx then return m:fail(E_PARAM) end
  m.st.ssl = m.st.ssl or {}
  local s = m.st.ssl[ctx] or {}
  m.st.ssl[ctx] = s
  if what == "cacert" or what == "clientcert" or what == "clientkey" then
    if ps[3].value == "" then return m:fail(E_PARAM) end
    s[what] = ps[3].value
  elseif what == "seclevel" then
    local v = atparse.int(ps[3], 0, 2)
    if not v then return m:fail(E_PARAM) end
    s.seclevel = v
  elseif what == "sslversion" or what == "ciphersuite"
      or what == "ignorelocaltime" or what == "negotiatetime" then
    s[what] = ps[3].value
  else
    return m:fail(E_PARAM)
  end
  m:ok()
end

return M
