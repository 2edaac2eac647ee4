-- The SIMCom MQTT AT commands (DIALECTS.md 2.1-2.4, A76xx/SIM7600) for
-- the virtual SIMCom modems: AT+CMQTTSTART/STOP, ACCQ/REL, SSLCFG, CFG,
-- WILLTOPIC/WILLMSG, CONNECT/DISC, SUB/SUBTOPIC, UNSUB/UNSUBTOPIC,
-- TOPIC/PAYLOAD/PUB, and the incoming +CMQTTRXSTART..RXEND blocks, over a
-- real MQTT connection (athost.sim.mqttlink) with the TLS of the SSL
-- context (athost.sim.simcom_ssl).
--
-- Choices where DIALECTS.md is silent (change them here, as data):
--   refusals:     every CMQTT command answers a plain ERROR when the
--                 service is not started, the client not acquired, a
--                 parameter out of range, or (SUB, UNSUB, PUB, DISC) the
--                 client not connected; such a command prompts for no
--                 bytes. Outcome codes (2.4) come only in outcome URCs.
--   QoS 2:        refused (the model's MQTT speaks QoS 0 and 1).
--   CONNECT:      errors 3 (TCP refused or unreachable), 17 (no TCP
--                 within 30 s), 25 (DNS), 26 (closed by the server before
--                 CONNACK), 27-31 (CONNACK refused 1-5), 32 (TLS
--                 handshake), 33 (a certificate the context needs is not
--                 in flash). A failed CONNECT clears CMQTTSSLCFG.
--   SUB/UNSUB:    one SUBSCRIBE per topic; "+CMQTTSUB: <idx>,0" once every
--                 SUBACK is in, error 1 when the broker refused one, 11
--                 when the link went first.
--   PUB:          "+CMQTTPUB: <idx>,0" at once at QoS 0, after the PUBACK
--                 at QoS 1; 17 when none came within pub_timeout, 11 when
--                 the link went first. Topic and payload are cleared.
--   link lost:    "+CMQTTCONNLOST: <idx>,<cause>": 1 the broker closed it
--                 (the fault drop), 2 a reset, 3 the network went (the
--                 fault pdp, AT+CFUN=0, ...). When the network goes the
--                 service stops: "+CMQTTNONET", the clients are released,
--                 AT+CMQTTSTART (which re-activates the PDP context) and
--                 AT+CMQTTACCQ start over.
--   RX block:     no +CMQTTRXPAYLOAD line for an empty payload (the
--                 totals still say 0).
-- Where DIALECTS.md lists two forms or says "unconfirmed", a knob
-- (M.knobs) has every reading.
local athost = require("athost")
local core = require("athost.sim.core")
local atparse = require("athost.sim.atparse")
local mqttlink = require("athost.sim.mqttlink")
local ssl = require("athost.sim.simcom_ssl")

local M = {}
local C = {}
M.commands = C

local set_params = core.set_params
local int = atparse.int

M.knobs = {
  { name = "rx_chunk", values = { "1500", "512", "whole", "random" }, default = "1500",
    doc = "the size of the +CMQTTRXTOPIC/+CMQTTRXPAYLOAD pieces of an incoming "
      .. "message: 1500 bytes (a 2039-byte payload came as 1500 first, "
      .. "DIALECTS.md 2.3), 512, the whole topic and payload at once, or "
      .. "random sizes of 1-1500" },
  { name = "rx_crlf", values = { "on", "off" }, default = "on",
    doc = "inside a +CMQTTRX block, CR LF after each piece's raw bytes, or "
      .. "the next +CMQTTRX... line right after the last byte (unconfirmed)" },
  { name = "rx_urc", values = { "off", "on" }, default = "off",
    doc = "an unrelated URC (+CTZV) inside a +CMQTTRX block, after the topic "
      .. "(\"other URCs inside a block: unconfirmed\")" },
  { name = "disc_order", values = { "after", "before" }, default = "after",
    doc = "AT+CMQTTDISC: OK then +CMQTTDISC: <idx>,0, or the URC first "
      .. "(documented in both orders), apart from the knob order" },
  { name = "connect_fail", values = { "ok", "error_after", "error_before", "bare" },
    default = "ok",
    doc = "a failed AT+CMQTTCONNECT: OK and +CMQTTCONNECT: <idx>,<err> (in "
      .. "the order the knob order says), ERROR then the URC, the URC then "
      .. "ERROR, or a bare ERROR (the four documented forms)" },
  { name = "accq_fail", values = { "code", "bare" }, default = "code",
    doc = "AT+CMQTTACCQ on a client in use: +CMQTTACCQ: <idx>,19 then ERROR, "
      .. "or a bare ERROR" },
}

M.limits = {
  clients = 2,
  client_id = 128,
  topic = 1024,
  payload = 10240,
  will = 1024,
  connect_ms = 30000,     -- TCP (and TLS) before error 17
  data_ms = 30000,        -- the bytes after a '>'
}

local CLIENT_MAX = M.limits.clients - 1

function M.reset(m)
  m.st.cmqtt = { started = false, clients = {}, sslcfg = {} }
end

---------------------------------------------------------------------------
-- Outcomes
---------------------------------------------------------------------------

-- One outcome line, settled once, whether the command waits for it yet
-- or not (a broker may answer before ok_then asks). p.start is what
-- m:ok_then / m:await take; p.resolve(line) settles it.
local function promise()
  local p = {}
  function p.resolve(line)
    if p.done then return end
    p.done, p.line = true, line
    if p.timer then p.timer:stop() end
    if p.cb then p.cb(line) end
  end
  function p.start(cb)
    if p.done then return cb(p.line) end
    p.cb = cb
  end
  return p
end

-- What a link's commands wait for, by key: a packet id (SUBACK, UNSUBACK,
-- PUBACK), "open", "connack", "closed". fn(ev), or fn(nil) when the link
-- goes first.
local function await(l, key, fn)
  l.waiting = l.waiting or {}
  l.waiting[key] = fn
end

local function settle(l, key, ev)
  local fn = l.waiting and l.waiting[key]
  if fn then
    l.waiting[key] = nil
    fn(ev)
  end
end

local function settle_all(l)
  local w = l.waiting or {}
  l.waiting = {}
  for _, fn in pairs(w) do fn(nil) end
end

---------------------------------------------------------------------------
-- Receiving
---------------------------------------------------------------------------

-- s in pieces of the knob rx_chunk's size.
local function pieces(m, s)
  local k = m:knob("rx_chunk")
  local out, i = {}, 1
  while i <= #s do
    local n = k == "whole" and #s or k == "random" and m.rand(1500) or tonumber(k)
    out[#out + 1] = s:sub(i, i + n - 1)
    i = i + n
  end
  return out
end

-- The block of 2.3: the start line as a URC, then the rest in one write
-- so nothing comes between its lines (but rx_urc's line).
local function rx_block(m, idx, topic, payload, gen)
  if m.gen ~= gen or m.closed then return end
  local tail = m:knob("rx_crlf") == "on" and "\r\n" or ""
  local parts = {}
  for _, p in ipairs(pieces(m, topic)) do
    parts[#parts + 1] = string.format("+CMQTTRXTOPIC: %d,%d\r\n", idx, #p) .. p .. tail
  end
  if m:knob("rx_urc") == "on" then parts[#parts + 1] = "\r\n" .. core.UNRELATED[1] .. "\r\n" end
  for _, p in ipairs(pieces(m, payload)) do
    parts[#parts + 1] = string.format("+CMQTTRXPAYLOAD: %d,%d\r\n", idx, #p) .. p .. tail
  end
  parts[#parts + 1] = string.format("+CMQTTRXEND: %d\r\n", idx)
  m:urc(string.format("+CMQTTRXSTART: %d,%d,%d", idx, #topic, #payload), gen)
  m:write(table.concat(parts))
end

---------------------------------------------------------------------------
-- Link events
---------------------------------------------------------------------------

local function on_event(m, cl, l, ev, gen)
  if m.gen ~= gen or cl.link ~= l then return end     -- rebooted, replaced
  local t = ev.type
  if t == "open" or t == "fail" then
    if t == "fail" then cl.link = nil end
    settle(l, "open", ev)
    if t == "fail" then settle_all(l) end
  elseif t == "connack" then
    settle(l, "connack", ev)
  elseif t == "message" then
    rx_block(m, cl.idx, ev.topic, ev.payload, gen)
  elseif t == "puback" or t == "suback" or t == "unsuback" then
    settle(l, ev.id, ev)
  elseif t == "closed" then
    cl.link = nil
    settle_all(l)
    if l.up and not l.expected then
      local why = tostring(ev.message)
      m:urc(string.format("+CMQTTCONNLOST: %d,%d", cl.idx,
        why:find("ECONNRESET", 1, true) and 2 or 1), gen)
    end
  end
end

-- Ends a client's link without an event.
local function close_link(cl)
  local l = cl.link
  if not l then return end
  cl.link = nil
  l:close()
  settle_all(l)
end

function M.shutdown(m)
  for _, cl in pairs(m.st.cmqtt.clients) do close_link(cl) end
end

-- The fault drop: the broker's side goes (+CMQTTCONNLOST: <idx>,1).
function M.drop(m)
  for _, cl in pairs(m.st.cmqtt.clients) do
    if cl.link then cl.link:lose("EOF: dropped by a fault") end
  end
end

-- The network went (the bearer, the radio): every link is lost with cause
-- 3, and the service stops (+CMQTTNONET).
function M.network_lost(m)
  local q = m.st.cmqtt
  for idx = 0, CLIENT_MAX do
    local cl = q.clients[idx]
    local l = cl and cl.link
    if l then
      close_link(cl)
      if l.up then m:urc(string.format("+CMQTTCONNLOST: %d,3", idx)) end
    end
  end
  if q.started then
    m:urc("+CMQTTNONET")
    M.reset(m)
  end
end

---------------------------------------------------------------------------
-- Service and clients
---------------------------------------------------------------------------

-- The client of parameter p once the service runs and it is acquired.
local function client(m, p)
  local q = m.st.cmqtt
  local idx = int(p, 0, CLIENT_MAX)
  if not q.started or not idx then return nil end
  return q.clients[idx], idx
end

local function connected(cl)
  return cl and cl.link and cl.link.up and cl.link:connected() and cl.link or nil
end

-- AT+CMQTTSTART: OK, +CMQTTSTART: 0 (it activates the PDP context); 7
-- (network) without radio or attach. Already started: ERROR.
C["+CMQTTSTART"] = function(m, c)
  if c.op ~= "exec" then return m:error() end
  local q = m.st.cmqtt
  if q.started then return m:error() end
  m:ok_then(function(done)
    if m.net.cfun ~= 1 or not m.net.attached then return done("+CMQTTSTART: 7") end
    m.net.pdp, q.started = true, true
    done("+CMQTTSTART: 0")
  end)
end

-- AT+CMQTTSTOP: after every client is released.
C["+CMQTTSTOP"] = function(m, c)
  if c.op ~= "exec" then return m:error() end
  local q = m.st.cmqtt
  if not q.started or next(q.clients) then return m:error() end
  m:ok_then(function(done)
    M.reset(m)
    done("+CMQTTSTOP: 0")
  end)
end

C["+CMQTTACCQ"] = function(m, c)
  local q = m.st.cmqtt
  if c.op == "read" then
    if not q.started then return m:error() end
    for idx = 0, CLIENT_MAX do
      local cl = q.clients[idx]
      m:info(string.format('+CMQTTACCQ: %d,"%s",%d', idx, cl and cl.id or "",
        cl and cl.server_type or 0))
    end
    return m:ok()
  end
  local ps = set_params(m, c, 2, 3)
  if not ps then return end
  local idx = int(ps[1], 0, CLIENT_MAX)
  local id = ps[2].value
  local st = ps[3] and int(ps[3], 0, 1) or 0
  if not q.started or not idx or #id < 1 or #id > M.limits.client_id or not st then
    return m:error()
  end
  if q.clients[idx] then
    if m:knob("accq_fail") == "code" then m:info(string.format("+CMQTTACCQ: %d,19", idx)) end
    return m:error()
  end
  q.clients[idx] = { idx = idx, id = id, server_type = st, subs = {}, unsubs = {},
    cfg = { version = 3, checkUTF8 = 1, optimeout = 120 } }
  m:ok()
end

C["+CMQTTREL"] = function(m, c)
  local ps = set_params(m, c, 1)
  if not ps then return end
  local cl, idx = client(m, ps[1])
  if not cl or cl.link then return m:error() end
  m.st.cmqtt.clients[idx] = nil
  m:ok()
end

-- AT+CMQTTSSLCFG=<idx>,<ctx>: allowed before ACCQ (drivers send it first).
C["+CMQTTSSLCFG"] = function(m, c)
  local q = m.st.cmqtt
  local ps = set_params(m, c, 2)
  if not ps then return end
  local idx, n = int(ps[1], 0, CLIENT_MAX), int(ps[2], 0, ssl.limits.ctx_max)
  if not q.started or not idx or not n then return m:error() end
  q.sslcfg[idx] = n
  m:ok()
end

local CFG = { version = { 3, 4 }, checkutf8 = { 0, 1 }, optimeout = { 20, 120 },
  argtopic = { 0, 1 } }
local CFG_KEY = { checkutf8 = "checkUTF8" }

-- AT+CMQTTCFG="<item>",<idx>,...: set after ACCQ, cleared by REL.
-- "aliauth" is kept, not used (the host gives the credentials).
C["+CMQTTCFG"] = function(m, c)
  local ps = set_params(m, c, 3, 5)
  if not ps then return end
  local item = ps[1].value:lower()
  local cl = client(m, ps[2])
  if not cl or not ps[1].quoted then return m:error() end
  if item == "aliauth" then
    if #ps ~= 5 then return m:error() end
    cl.cfg.aliauth = { ps[3].value, ps[4].value, ps[5].value }
    return m:ok()
  end
  local r = CFG[item]
  local v = r and #ps == 3 and int(ps[3], r[1], r[2])
  if not v then return m:error() end
  cl.cfg[CFG_KEY[item] or item] = v
  m:ok()
end

-- '>' then exactly len bytes; nil after answering ERROR when they do not
-- come in time.
local function data(m, len)
  m:prompt()
  local d = m:read_data(len, M.limits.data_ms)
  if not d then m:error() end
  return d
end

-- AT+CMQTT<X>=<idx>,<len>[,<qos>]: the bytes go to the client's field.
local function counted(field, max, with_qos)
  return function(m, c)
    local ps = set_params(m, c, with_qos and 3 or 2)
    if not ps then return end
    local cl = client(m, ps[1])
    local len = int(ps[2], 1, max)
    local qos = with_qos and int(ps[3], 0, 1)
    if not cl or not len or (with_qos and not qos) then return m:error() end
    local d = data(m, len)
    if not d then return end
    field(cl, d, qos)
    m:ok()
  end
end

C["+CMQTTWILLTOPIC"] = counted(function(cl, d) cl.will_topic = d end, M.limits.will)
C["+CMQTTWILLMSG"] = counted(function(cl, d, qos)
  cl.will_msg, cl.will_qos = d, qos
end, M.limits.will, true)
C["+CMQTTTOPIC"] = counted(function(cl, d) cl.topic = d end, M.limits.topic)
C["+CMQTTPAYLOAD"] = counted(function(cl, d) cl.payload = d end, M.limits.payload)
C["+CMQTTSUBTOPIC"] = counted(function(cl, d, qos)
  cl.subs[#cl.subs + 1] = { topic = d, qos = qos }
end, M.limits.topic, true)
C["+CMQTTUNSUBTOPIC"] = counted(function(cl, d)
  cl.unsubs[#cl.unsubs + 1] = { topic = d }
end, M.limits.topic)

---------------------------------------------------------------------------
-- Connect, disconnect
---------------------------------------------------------------------------

local function fail_code(why)
  why = tostring(why)
  if why:find("ETLS", 1, true) then return 32 end
  if why:find("EAI_", 1, true) then return 25 end
  if why:find("ETIMEDOUT", 1, true) then return 17 end
  return 3
end

-- Opens the link and sends CONNECT; p.resolve gets the outcome line.
local function start_connect(m, cl, o, p)
  local q, gen = m.st.cmqtt, m.gen
  local function finish(err)
    if err ~= 0 then
      q.sslcfg[cl.idx] = nil              -- cleared by a failed CONNECT
      if cl.link then close_link(cl) end
    end
    p.resolve(string.format("+CMQTTCONNECT: %d,%d", cl.idx, err))
  end
  local l = mqttlink.open { host = o.addr, port = o.port, tls = o.tls,
    timeout = M.limits.connect_ms,
    on = function(link, ev) on_event(m, cl, link, ev, gen) end }
  cl.link = l
  await(l, "open", function(ev)
    if not ev or ev.type == "fail" then return finish(fail_code(ev and ev.message)) end
    local will
    if cl.will_topic and cl.will_msg then
      will = { topic = cl.will_topic, payload = cl.will_msg, qos = cl.will_qos }
    end
    await(l, "connack", function(ack)
      if not ack then return finish(26) end
      if ack.rc ~= 0 then return finish(ack.rc <= 5 and 26 + ack.rc or 1) end
      l.up = true
      finish(0)
    end)
    if not l:connect { client_id = cl.id, username = o.user, password = o.pass,
        keepalive = o.keepalive, clean = o.clean, will = will,
        version = cl.cfg.version } then
      settle(l, "connack", nil)
    end
  end)
end

-- A CONNECT's outcome in the form the knobs say: success and the form
-- "ok" as ok_then; the other forms wait for the outcome, then answer a
-- failure with ERROR (and the URC after, before, or none).
local function answer_connect(m, p)
  local form = m:knob("connect_fail")
  local ms = M.limits.connect_ms + 15000
  if form == "ok" then return m:ok_then(p.start, ms) end
  local gen = m.gen
  local done, line = m:await(p.start, ms, function(l) m:urc(l, gen) end)
  if m.gen ~= gen then return end
  if not done or line:match(",0$") then
    return m:ok_then(function(cb) cb(done and line or nil) end)
  end
  if form == "error_before" then m:info(line) end
  m:error()
  if form == "error_after" then m:urc(line, gen) end
end

-- AT+CMQTTCONNECT=<idx>,"tcp://<host>[:<port>]",<keepalive>,<clean>
-- [,"<user>"[,"<pass>"]]: TLS comes from ACCQ's server_type.
C["+CMQTTCONNECT"] = function(m, c)
  local q = m.st.cmqtt
  if c.op == "read" then
    if not q.started then return m:error() end
    for idx = 0, CLIENT_MAX do
      local cl = q.clients[idx]
      if connected(cl) then
        m:info(string.format('+CMQTTCONNECT: %d,"%s",%d,%d', idx, cl.server,
          cl.keepalive, cl.clean and 1 or 0))
      else
        m:info("+CMQTTCONNECT: " .. idx)
      end
    end
    return m:ok()
  end
  local ps = set_params(m, c, 4, 6)
  if not ps then return end
  local cl = client(m, ps[1])
  local server = ps[2].value
  local hostport = server:match("^[Tt][Cc][Pp]://(.+)$")
  local ka, clean = int(ps[3], 1, 64800), int(ps[4], 0, 1)
  local user, pass = ps[5] and ps[5].value, ps[6] and ps[6].value
  if not cl or not hostport or #server < 9 or #server > 256 or not ka or not clean
      or (user and (#user < 1 or #user > 256)) or (pass and (#pass < 1 or #pass > 256)) then
    return m:error()
  end
  if cl.link then return m:error() end            -- connected or connecting
  local host, port = core.split_hostport(hostport)
  if host == "" or (port and (port < 1 or port > 65535)) then return m:error() end
  port = port or 1883
  cl.server, cl.keepalive, cl.clean = server, ka, clean == 1
  local p = promise()
  local addr, rport, remapped = m:resolve(host, port, "mqtt")
  local o = { addr = addr, port = rport, keepalive = ka, clean = clean == 1,
    user = user, pass = pass }
  if cl.server_type == 1 then
    local n = q.sslcfg[cl.idx] or cl.idx
    local why
    o.tls, why = ssl.tls_options(m, n)
    if not o.tls then
      if m.trace then athost.log(m.name .. " TLS: " .. why) end
      q.sslcfg[cl.idx] = nil
      p.resolve(string.format("+CMQTTCONNECT: %d,33", cl.idx))
    else
      o.tls.hostname = remapped and addr or host
    end
  end
  if not p.done then start_connect(m, cl, o, p) end
  answer_connect(m, p)
end

-- AT+CMQTTDISC=<idx>,<timeout s>: DISCONNECT, the broker closes, then
-- +CMQTTDISC: <idx>,0 in the order the knob disc_order says.
-- AT+CMQTTDISC? says 0 (connected) or 1 for each client.
C["+CMQTTDISC"] = function(m, c)
  local q = m.st.cmqtt
  if c.op == "read" then
    if not q.started then return m:error() end
    for idx = 0, CLIENT_MAX do
      m:info(string.format("+CMQTTDISC: %d,%d", idx, connected(q.clients[idx]) and 0 or 1))
    end
    return m:ok()
  end
  local ps = set_params(m, c, 2)
  if not ps then return end
  local cl, idx = client(m, ps[1])
  local secs = int(ps[2], 1, 180)
  local l = connected(cl)
  if not l or not secs then return m:error() end
  q.sslcfg[idx] = nil
  local p = promise()
  local line = string.format("+CMQTTDISC: %d,0", idx)
  l.expected = true
  await(l, "closed", function() p.resolve(line) end)
  l:disconnect()
  p.timer = athost.timer(secs * 1000, function()
    if cl.link == l then close_link(cl) end
    p.resolve(line)
  end)
  m:ok_then(p.start, secs * 1000 + 5000, m:knob("disc_order"))
end

---------------------------------------------------------------------------
-- Subscribe, publish
---------------------------------------------------------------------------

-- Sends one request per item (send(l, item) -> packet id) and answers
-- "<name>: <idx>,<err>" once every acknowledgement is in.
local function requests(m, cl, l, name, items, send)
  local ids = {}
  for _, it in ipairs(items) do
    local id = send(l, it)
    if not id then return m:error() end
    ids[#ids + 1] = id
  end
  local p, left, err = promise(), #ids, 0
  for _, id in ipairs(ids) do
    await(l, id, function(ev)
      if not ev then
        err = 11
      elseif ev.granted and ev.granted[1] == 0x80 and err == 0 then
        err = 1
      end
      left = left - 1
      if left == 0 then p.resolve(string.format("%s: %d,%d", name, cl.idx, err)) end
    end)
  end
  m:ok_then(p.start)
end

-- AT+CMQTTSUB and AT+CMQTTUNSUB: one step, "=<idx>,<len>[,<qos>],<dup>"
-- (SUB: dup optional) then '>' and the topic; or "=<idx>[,<dup>]" for the
-- topics AT+CMQTTSUBTOPIC / UNSUBTOPIC gave (cl[list]).
local function subscription(name, list, with_qos, send)
  return function(m, c)
    local ps = set_params(m, c, 1, with_qos and 4 or 3)
    if not ps then return end
    local cl = client(m, ps[1])
    if not cl then return m:error() end
    local items
    if #ps >= 3 then
      local len = int(ps[2], 1, M.limits.topic)
      local qos = with_qos and int(ps[3], 0, 1)
      local dup = ps[with_qos and 4 or 3]
      if not len or (with_qos and not qos) or (dup and not int(dup, 0, 1))
          or not connected(cl) then
        return m:error()
      end
      local d = data(m, len)
      if not d then return end
      items = { { topic = d, qos = qos } }
    else
      if (ps[2] and not int(ps[2], 0, 1)) or #cl[list] == 0 or not connected(cl) then
        return m:error()
      end
      items, cl[list] = cl[list], {}
    end
    local l = connected(cl)
    if not l then return m:error() end
    requests(m, cl, l, name, items, send)
  end
end

C["+CMQTTSUB"] = subscription("+CMQTTSUB", "subs", true,
  function(l, it) return l:subscribe(it.topic, it.qos) end)
C["+CMQTTUNSUB"] = subscription("+CMQTTUNSUB", "unsubs", false,
  function(l, it) return l:unsubscribe(it.topic) end)

-- AT+CMQTTPUB=<idx>,<qos>,<pub_timeout>[,<retain>[,<dup>]]: the topic and
-- payload given before (then cleared).
C["+CMQTTPUB"] = function(m, c)
  local ps = set_params(m, c, 3, 5)
  if not ps then return end
  local cl = client(m, ps[1])
  local qos, secs = int(ps[2], 0, 1), int(ps[3], 1, 180)
  local retain = ps[4] and int(ps[4], 0, 1) or 0
  if not cl or not qos or not secs or not retain or (ps[5] and not int(ps[5], 0, 1)) then
    return m:error()
  end
  local l = connected(cl)
  if not l or not cl.topic then return m:error() end
  local topic, payload = cl.topic, cl.payload or ""
  cl.topic, cl.payload = nil, nil
  local id = l:publish(topic, payload, qos, retain == 1)
  if not id then return m:error() end
  local p = promise()
  local function line(err) return string.format("+CMQTTPUB: %d,%d", cl.idx, err) end
  if qos == 0 then
    p.resolve(line(0))
  else
    await(l, id, function(ev) p.resolve(line(ev and 0 or 11)) end)
    p.timer = athost.timer(secs * 1000, function() p.resolve(line(17)) end)
  end
  m:ok_then(p.start, secs * 1000 + 5000)
end

return M
