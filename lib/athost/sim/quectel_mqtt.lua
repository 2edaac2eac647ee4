-- Quectel's MQTT AT commands (DIALECTS.md 1.1-1.6) for the virtual Quectel
-- modules: AT+QMTCFG, AT+QMTOPEN, AT+QMTCONN, AT+QMTSUB/QMTUNS,
-- AT+QMTPUBEX and AT+QMTPUB (length, 0x1A-terminated and inline forms),
-- +QMTRECV in recv/mode 0 (with and without length) and 1 (buffered,
-- AT+QMTRECV), AT+QMTDISC/QMTCLOSE, and the link-loss URC +QMTSTAT. Six
-- clients (0-5), each a real MQTT 3.1.1 connection (athost.sim.mqttlink)
-- over TCP or TLS (the SSL context of AT+QMTCFG="ssl", athost.sim.
-- quectel_files). Each command answers OK (or a refusal) at once; what
-- the broker says comes later as the command's result URC.
--
-- The dialect provides bearer_up(m, cid): whether PDP context cid carries
-- data (AT+QMTOPEN's +QMTOPEN: <idx>,3 when not).
--
-- Choices where DIALECTS.md is silent (change them here, as data):
--   refusals:        a bad parameter +CME ERROR: 50, a client not open or
--                    not connected 3 (ERROR under AT+CMEE=0)
--   AT+QMTCFG:       every item is kept per client until power-off (1.1:
--                    "ssl" persists on EC200U; the others alike); with only
--                    "<item>",<idx> it reads back +QMTCFG: "<item>",<v>...
--                    "version" 3 connects with MQTT 3.1 ("MQIsdp"), 4 (the
--                    default) with 3.1.1
--   AT+QMTOPEN:      +QMTOPEN: <idx>,<result>: 2 while the client is open,
--                    3 its context is down, 4 the name does not resolve, 5
--                    refused, reset or the TLS handshake failed (or a file
--                    its SSL context needs is missing), -1 no connection
--                    within 15 s
--   AT+QMTCONN:      +QMTCONN: <idx>,0,<ret_code> from the real CONNACK;
--                    <idx>,2 when the link goes first. After a refusal the
--                    broker closes the link: +QMTSTAT: <idx>,1 follows.
--                    With AT+QMTCFG="aliauth" and no user name the module
--                    signs itself: client id "<id>|securemode=3 (2 over
--                    TLS),signmethod=hmacsha1|", user "<dn>&<pk>", password
--                    HMAC-SHA1(ds, "clientId<id>deviceName<dn>productKey<pk>")
--   QoS:             0 and 1 (athost.mqtt311); QoS 2 is refused (50) for
--                    publishing and asked as 1 when subscribing
--   AT+QMTSUB:       one SUBSCRIBE per topic; one URC when every SUBACK is
--                    in: +QMTSUB: <idx>,<msgid>,0,<granted>[,<granted>...]
--                    (128 for a refused topic)
--   publishing:      payloads of 0-4096 bytes; the data prompt ">" in the
--                    form the core knob `prompt` says; QoS 0 reports
--                    +QMTPUB(EX): <idx>,<msgid>,0 once sent, QoS 1 after
--                    the PUBACK, <idx>,<msgid>,2 when the link goes first;
--                    bytes not in within 20 s: ERROR, nothing sent; Esc
--                    after AT+QMTPUB's prompt: OK, nothing sent
--   receiving:       <msgid> is the PUBLISH's packet id (0 at QoS 0); in
--                    recv/mode 1 five slots (0-4) per client, kept until
--                    read or power-off; a message that finds none free is
--                    dropped
--   AT+QMTDISC:      sends DISCONNECT, +QMTDISC: <idx>,0 once the broker
--                    closed the link (or 2 s passed)
--   link loss:       +QMTSTAT: <idx>,1 when the broker closes the link, 2
--                    on a PINGREQ timeout, 4 on a CONNACK timeout; the
--                    knob qmtstat_code when the network drops it (fault
--                    drop; +QMTPING first with the knob qmtping); the
--                    client is then closed (QMTOPEN again)
--   radio off/reboot: every link closes without a word
local athost = require("athost")
local core = require("athost.sim.core")
local atparse = require("athost.sim.atparse")
local mqttlink = require("athost.sim.mqttlink")
local qfiles = require("athost.sim.quectel_files")

local M = {}
local C = {}
M.commands = C

local E_STATE, E_PARAM = core.E_STATE, core.E_PARAM
local set_params = core.set_params

M.limits = {
  clients = 5,            -- client indexes 0..5
  host = 100,             -- AT+QMTOPEN host name
  payload = 4096,         -- bytes in one publish
  data_ms = 20000,        -- the bytes after the prompt
  slots = 5,              -- recv/mode 1 buffer per client (0..4)
  connect_ms = 15000,     -- TCP/TLS connect before +QMTOPEN: <idx>,-1
  disc_ms = 2000,         -- AT+QMTDISC: wait for the broker to close
}
local L = M.limits

M.knobs = {
  { name = "qmtclose_urc", values = { "none", "always" }, default = "none",
    doc = "EC200U: AT+QMTDISC also closes the socket, so a following "
      .. "AT+QMTCLOSE answers OK and never +QMTCLOSE (DIALECTS.md 1.2); "
      .. "always: the client stays open until AT+QMTCLOSE, which then "
      .. "reports +QMTCLOSE: <idx>,0 (and AT+QMTOPEN before it gets "
      .. "+QMTOPEN: <idx>,2), as on other Quectel modules" },
  { name = "qmtstat_code", values = { "1", "2", "7" }, default = "1",
    doc = "the <err> of +QMTSTAT: <idx>,<err> when the network drops the "
      .. "link (fault drop, and after +QIURC: \"pdpdeact\"): 1 closed by "
      .. "peer, 2 PINGREQ timeout or 7 link not alive (DIALECTS.md 1.6 "
      .. "lists them all; which one a module prints is unconfirmed)" },
  { name = "qmtping", values = { "off", "on" }, default = "off",
    doc = "when the network drops the link, \"+QMTPING: <idx>,1\" before its "
      .. "+QMTSTAT (several drivers take +QMTPING as link loss; DIALECTS.md "
      .. "1.6: its codes are unconfirmed) or +QMTSTAT alone" },
  { name = "pdp_qmtstat", values = { "on", "off" }, default = "on",
    doc = "after +QIURC: \"pdpdeact\",<cid>, each MQTT client on that "
      .. "context also reports +QMTSTAT: <idx>,<qmtstat_code> (on) or closes "
      .. "without a word (off: the bearer URC is the only sign)" },
}

---------------------------------------------------------------------------
-- Clients and their configuration
---------------------------------------------------------------------------

local function new_client()
  return { cfg = { version = 4, pdpcid = 1, ssl = 0, sslctx = 0,
    keepalive = 120, session = 1, pkt_timeout = 5, retries = 3, notice = 0,
    recv_mode = 0, recv_len = 0 }, slots = {} }
end

function M.reset(m)
  m.st.qmt = {}
  for i = 0, L.clients do m.st.qmt[i] = new_client() end
end

-- The client of parameter p (0..5), or nil.
local function client(m, p)
  local idx = atparse.int(p, 0, L.clients)
  return idx and m.st.qmt[idx], idx
end

-- The client of a command whose one parameter is its index, or nil after
-- answering the refusal.
local function only_client(m, c)
  local ps = set_params(m, c, 1)
  if not ps then return nil end
  local cl, idx = client(m, ps[1])
  if not cl then return m:fail(E_PARAM) end
  return cl, idx
end

-- How long a command waits for the broker's answer: the packet timeout
-- times the tries of AT+QMTCFG="timeout", and some.
local function ack_ms(cl)
  return cl.cfg.pkt_timeout * 1000 * (cl.cfg.retries + 1) + 5000
end

---------------------------------------------------------------------------
-- Outcomes: a command's result URC waits on its link for the broker
---------------------------------------------------------------------------

-- done(line) receives the outcome; on link loss it receives fail_line.
local function await(l, key, done, fail_line)
  l.waiting = l.waiting or {}
  l.waiting[key] = { done = done, fail = fail_line }
end

local function settle(m, l, key, line, gen)
  local w = l.waiting and l.waiting[key]
  if w then
    l.waiting[key] = nil
    return w.done(line)
  end
  if line then m:urc(line, gen) end
end

-- The link is gone: every outcome still awaited is its failure line.
local function settle_all(l)
  local waiting = l.waiting or {}
  l.waiting = {}
  local keys = {}
  for k in pairs(waiting) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do waiting[k].done(waiting[k].fail) end
end

-- Closes a client's link without a word (reboot, radio off, QMTCLOSE).
local function close_link(cl)
  local l = cl.link
  if not l then return end
  cl.link, cl.opened = nil, false
  l:close()
  settle_all(l)
end

function M.shutdown(m)
  for i = 0, L.clients do close_link(m.st.qmt[i]) end
end
M.net_down = M.shutdown

-- The network takes client idx's link away: +QMTSTAT with the knob's code.
local function lose(m, idx)
  local cl = m.st.qmt[idx]
  local l = cl.link
  if not l then return end
  if l.state == "open" then
    if m:knob("qmtping") == "on" then m:urc(string.format("+QMTPING: %d,1", idx)) end
    l.stat_code = tonumber(m:knob("qmtstat_code"))
    return l:lose("EOF: dropped by the network")
  end
  cl.link = nil                         -- still connecting
  l:close()
  settle(m, l, "open", string.format("+QMTOPEN: %d,5", idx), m.gen)
  settle_all(l)
end

-- Fault drop: every open link goes.
function M.drop(m)
  for i = 0, L.clients do lose(m, i) end
end

-- The bearer of context cid is gone: its clients' links with it, with
-- +QMTSTAT (knob pdp_qmtstat) unless quiet (the host's AT+QIDEACT).
function M.pdp_deact(m, cid, quiet)
  for i = 0, L.clients do
    local cl = m.st.qmt[i]
    if cl.link and cl.cfg.pdpcid == cid then
      if not quiet and m:knob("pdp_qmtstat") == "on" then lose(m, i) else close_link(cl) end
    end
  end
end

---------------------------------------------------------------------------
-- Link events -> URCs
---------------------------------------------------------------------------

-- An incoming message as +QMTRECV prints it (recv/mode's length flag).
local function recv_line(cl, idx, msg)
  if cl.cfg.recv_len == 1 then
    return string.format('+QMTRECV: %d,%d,"%s",%d,"%s"', idx, msg.id, msg.topic,
      #msg.payload, msg.payload)
  end
  return string.format('+QMTRECV: %d,%d,"%s","%s"', idx, msg.id, msg.topic, msg.payload)
end

local function deliver(m, cl, idx, ev, gen)
  local msg = { id = ev.id or 0, topic = ev.topic, payload = ev.payload }
  if cl.cfg.recv_mode == 0 then return m:urc(recv_line(cl, idx, msg), gen) end
  for slot = 0, L.slots - 1 do
    if not cl.slots[slot] then
      cl.slots[slot] = msg
      return m:urc(string.format("+QMTRECV: %d,%d", idx, slot), gen)
    end
  end
end

-- Why the session ended -> +QMTSTAT's <err> (DIALECTS.md 1.6).
local function stat_code(l)
  if l.stat_code then return l.stat_code end
  local why = tostring(l.why)
  if why:find("no PINGRESP", 1, true) then return 2 end
  if why:find("no CONNACK", 1, true) then return 4 end
  return 1
end

-- A connection failure -> +QMTOPEN's <result>.
local function open_code(why)
  why = tostring(why)
  if why:find("EAI_", 1, true) then return 4 end
  if why:find("ETIMEDOUT", 1, true) then return -1 end
  return 5
end

local function on_event(m, cl, idx, l, ev, gen)
  if m.gen ~= gen or cl.link ~= l then return end     -- rebooted, replaced
  local t = ev.type
  if t == "open" then
    cl.opened = true
    settle(m, l, "open", string.format("+QMTOPEN: %d,0", idx), gen)
  elseif t == "fail" then
    cl.link = nil
    settle(m, l, "open", string.format("+QMTOPEN: %d,%d", idx, open_code(ev.message)), gen)
    settle_all(l)
  elseif t == "connack" then
    l.refused = ev.rc ~= 0
    settle(m, l, "connack", string.format("+QMTCONN: %d,0,%d", idx, ev.rc), gen)
  elseif t == "message" then
    deliver(m, cl, idx, ev, gen)
  elseif t == "puback" then
    settle(m, l, "pub:" .. ev.id, nil, gen)
  elseif t == "suback" then
    settle(m, l, "sub:" .. ev.id, ev.granted[1], gen)
  elseif t == "unsuback" then
    settle(m, l, "uns:" .. ev.id, true, gen)
  elseif t == "closed" then
    cl.link = nil
    if not l.expected or m:knob("qmtclose_urc") == "none" then cl.opened = false end
    settle_all(l)
    if l.expected then return end        -- after AT+QMTDISC: no URC
    local line = string.format("+QMTSTAT: %d,%d", idx, stat_code(l))
    if l.refused then
      -- The broker closes right after its refusal: the module reports the
      -- refusal (perhaps written by QMTCONN's command flow, order=before)
      -- before the link's end.
      athost.timer(20, function() m:urc(line, gen) end)
    else
      m:urc(line, gen)
    end
  end
end

---------------------------------------------------------------------------
-- AT+QMTCFG="<item>",<idx>[,...]
---------------------------------------------------------------------------

local function ints(ps, from, ranges)
  local out = {}
  for i, r in ipairs(ranges) do
    local v = atparse.int(ps[from + i - 1], r[1], r[2])
    if not v then return nil end
    out[i] = v
  end
  return out
end

-- An item of integers only: cfg fields and their ranges, all required.
local function numbers(fields, ranges)
  return {
    get = function(g)
      local out = {}
      for i, f in ipairs(fields) do out[i] = g[f] end
      return out
    end,
    set = function(g, ps)
      local v = #ps == 2 + #fields and ints(ps, 3, ranges)
      if not v then return nil end
      for i, f in ipairs(fields) do g[f] = v[i] end
      return true
    end }
end

-- Each item: its read-back values, and set(cfg, ps) -> true or nil.
local CFG = {
  version = numbers({ "version" }, { { 3, 4 } }),
  pdpcid = numbers({ "pdpcid" }, { { 1, 16 } }),
  keepalive = numbers({ "keepalive" }, { { 0, 3600 } }),
  session = numbers({ "session" }, { { 0, 1 } }),
  timeout = numbers({ "pkt_timeout", "retries", "notice" }, { { 1, 60 }, { 0, 10 }, { 0, 1 } }),
  ssl = {
    get = function(g) return { g.ssl, g.sslctx } end,
    set = function(g, ps)
      local en = atparse.int(ps[3], 0, 1)
      local ctx = ps[4] and atparse.int(ps[4], 0, 5)
      if not en or #ps > 4 or (ps[4] and not ctx) or (en == 1 and not ctx) then return nil end
      g.ssl, g.sslctx = en, ctx or g.sslctx
      return true
    end },
  will = {
    get = function(g)
      local w = g.will
      if not w then return { 0 } end
      return { 1, w.qos, w.retain and 1 or 0, '"' .. w.topic .. '"', '"' .. w.payload .. '"' }
    end,
    set = function(g, ps)
      local flag = atparse.int(ps[3], 0, 1)
      if flag == 0 and #ps == 3 then g.will = nil return true end
      if flag ~= 1 or #ps ~= 7 then return nil end
      local v = ints(ps, 4, { { 0, 2 }, { 0, 1 } })
      local topic, msg = ps[6].value, ps[7].value
      if not v or topic == "" or #topic > 255 or #msg > 255 then return nil end
      g.will = { qos = math.min(v[1], 1), retain = v[2] == 1, topic = topic, payload = msg }
      return true
    end },
  ["recv/mode"] = {
    get = function(g) return { g.recv_mode, g.recv_len } end,
    set = function(g, ps)
      local mode = atparse.int(ps[3], 0, 1)
      local len = ps[4] and atparse.int(ps[4], 0, 1)
      if not mode or #ps > 4 or (ps[4] and not len) then return nil end
      g.recv_mode, g.recv_len = mode, len or g.recv_len
      return true
    end },
  aliauth = {
    get = function(g)
      local a = g.aliauth or { "", "", "" }
      return { '"' .. a[1] .. '"', '"' .. a[2] .. '"', '"' .. a[3] .. '"' }
    end,
    set = function(g, ps)
      if #ps ~= 5 then return nil end
      local a = { ps[3].value, ps[4].value, ps[5].value }
      g.aliauth = (a[1] ~= "" or a[2] ~= "" or a[3] ~= "") and a or nil
      return true
    end },
}

C["+QMTCFG"] = function(m, c)
  local ps = set_params(m, c, 2, 7)
  if not ps then return end
  local item = CFG[ps[1].value:lower()]
  local cl = client(m, ps[2])
  if not item or not cl then return m:fail(E_PARAM) end
  if #ps == 2 then
    local vals = item.get(cl.cfg)
    for i, v in ipairs(vals) do vals[i] = tostring(v) end
    m:info(string.format('+QMTCFG: "%s",%s', ps[1].value:lower(), table.concat(vals, ",")))
    return m:ok()
  end
  if not item.set(cl.cfg, ps) then return m:fail(E_PARAM) end
  m:ok()
end

---------------------------------------------------------------------------
-- Open, connect, disconnect, close
---------------------------------------------------------------------------

-- AT+QMTOPEN=<idx>,"<host>",<port>: OK, then +QMTOPEN: <idx>,<result>.
C["+QMTOPEN"] = function(m, c)
  if c.op == "read" then
    for i = 0, L.clients do
      local cl = m.st.qmt[i]
      if cl.link and cl.link.state == "open" then
        m:info(string.format('+QMTOPEN: %d,"%s",%d', i, cl.host, cl.port))
      end
    end
    return m:ok()
  end
  local ps = set_params(m, c, 3)
  if not ps then return end
  local cl, idx = client(m, ps[1])
  local host, port = ps[2].value, atparse.int(ps[3], 1, 65535)
  if not cl or host == "" or #host > L.host or not port then return m:fail(E_PARAM) end
  local function result(n)
    return m:ok_then(function(done) done(string.format("+QMTOPEN: %d,%d", idx, n)) end)
  end
  if cl.link or cl.opened then return result(2) end
  if not m.dialect.bearer_up(m, cl.cfg.pdpcid) then return result(3) end
  local addr, p, remapped = m:resolve(host, port, "mqtt")
  local topts
  if cl.cfg.ssl == 1 then
    local why
    topts, why = qfiles.tls_options(m, cl.cfg.sslctx, host, addr, remapped)
    if not topts then
      if m.trace then athost.log(m.name .. " TLS: " .. why) end
      return result(5)
    end
  end
  cl.host, cl.port = host, port
  local gen = m.gen
  m:ok_then(function(done)
    -- The link's flow starts later (athost.spawn): no event before await.
    local l = mqttlink.open { host = addr, port = p, tls = topts, timeout = L.connect_ms,
      on = function(link, ev) on_event(m, cl, idx, link, ev, gen) end }
    cl.link = l
    await(l, "open", done, string.format("+QMTOPEN: %d,-1", idx))
  end, L.connect_ms + 5000)
end

-- Aliyun's MQTT credentials from AT+QMTCFG="aliauth" (see the top).
local function aliauth(cl, client_id)
  local pk, dn, ds = table.unpack(cl.cfg.aliauth)
  local extra = string.format("securemode=%d,signmethod=hmacsha1", cl.cfg.ssl == 1 and 2 or 3)
  return client_id .. "|" .. extra .. "|", dn .. "&" .. pk, athost.hmac("sha1", ds,
    "clientId" .. client_id .. "deviceName" .. dn .. "productKey" .. pk)
end

-- AT+QMTCONN=<idx>,"<clientid>"[,"<user>"[,"<pass>"]]: OK, then
-- +QMTCONN: <idx>,0,<ret_code>. AT+QMTCONN? lists the clients' states.
C["+QMTCONN"] = function(m, c)
  if c.op == "read" then
    for i = 0, L.clients do
      local l = m.st.qmt[i].link
      if l and l.state == "open" then
        local s = l.session.state
        local n = l.expected and 4 or s == "connecting" and 2 or s == "connected" and 3 or 1
        m:info(string.format("+QMTCONN: %d,%d", i, n))
      end
    end
    return m:ok()
  end
  local ps = set_params(m, c, 2, 4)
  if not ps then return end
  local cl, idx = client(m, ps[1])
  if not cl or ps[2].value == "" then return m:fail(E_PARAM) end
  local l = cl.link
  if not l or l.state ~= "open" or l.expected or l.session.state ~= "new" then
    return m:fail(E_STATE)
  end
  local cid, user, pass = ps[2].value, ps[3] and ps[3].value, ps[4] and ps[4].value
  if not user and cl.cfg.aliauth then cid, user, pass = aliauth(cl, cid) end
  if pass and not user then user = "" end
  local ok = l:connect { client_id = cid, username = user, password = pass,
    keepalive = cl.cfg.keepalive, clean = cl.cfg.session == 1, will = cl.cfg.will,
    version = cl.cfg.version }
  if not ok then return m:fail(E_PARAM) end
  m:ok_then(function(done)
    await(l, "connack", done, string.format("+QMTCONN: %d,2", idx))
  end, ack_ms(cl))
end

-- AT+QMTDISC=<idx>: DISCONNECT; +QMTDISC: <idx>,0 once the link is gone.
C["+QMTDISC"] = function(m, c)
  local cl, idx = only_client(m, c)
  if not cl then return end
  local l = cl.link
  if not l or l.state ~= "open" or l.expected then return m:fail(E_STATE) end
  l.expected = true                 -- no +QMTSTAT for this close
  local line = string.format("+QMTDISC: %d,0", idx)
  m:ok_then(function(done)
    await(l, "disc", done, line)
    l:disconnect()
    -- The broker closes the socket on DISCONNECT; if it does not, the
    -- module does.
    athost.timer(L.disc_ms, function()
      if cl.link == l then l:lose("closed by the module after DISCONNECT") end
    end)
  end, L.disc_ms + 1000)
end

-- AT+QMTCLOSE=<idx>: OK, then +QMTCLOSE: <idx>,0, unless (knob
-- qmtclose_urc=none, EC200U) there was no socket left to close.
C["+QMTCLOSE"] = function(m, c)
  local cl, idx = only_client(m, c)
  if not cl then return end
  local had = cl.link ~= nil or cl.opened
  close_link(cl)
  cl.opened = false
  if not had and m:knob("qmtclose_urc") == "none" then return m:ok() end
  m:ok_then(function(done) done(string.format("+QMTCLOSE: %d,0", idx)) end)
end

---------------------------------------------------------------------------
-- Subscribe, unsubscribe
---------------------------------------------------------------------------

local function connected_link(cl)
  local l = cl and cl.link
  return l and l:connected() and not l.expected and l or nil
end

-- One request per item on l (send(l, item) -> its packet id, the key
-- prefix of its answer), then one outcome when every answer is in:
-- line(answers), or fail_line when the link goes first. An item the
-- session refuses ends the list; the first one refused is the command's
-- refusal.
local function each_then(m, l, items, send, prefix, line, fail_line)
  local keys = {}
  for i, item in ipairs(items) do
    local id = send(l, item)
    if not id then
      if i == 1 then return m:fail(E_PARAM) end
      break
    end
    keys[#keys + 1] = prefix .. id
  end
  m:ok_then(function(done)
    local answers, left = {}, #keys
    for i, key in ipairs(keys) do
      await(l, key, function(a)
        if left == 0 then return end
        if a == fail_line then
          left = 0
          return done(fail_line)
        end
        answers[i] = a
        left = left - 1
        if left == 0 then done(line(answers)) end
      end, fail_line)
    end
  end)
end

-- AT+QMTSUB=<idx>,<msgid>,"<topic>",<qos>[,"<topic>",<qos>...]
C["+QMTSUB"] = function(m, c)
  local ps = set_params(m, c, 4, 2 + 2 * 16)
  if not ps then return end
  local cl, idx = client(m, ps[1])
  local msgid = atparse.int(ps[2], 1, 65535)
  if not cl or not msgid or #ps % 2 ~= 0 then return m:fail(E_PARAM) end
  local subs = {}
  for i = 3, #ps, 2 do
    local qos = atparse.int(ps[i + 1], 0, 2)
    if ps[i].value == "" or not qos then return m:fail(E_PARAM) end
    subs[#subs + 1] = { ps[i].value, math.min(qos, 1) }
  end
  local l = connected_link(cl)
  if not l then return m:fail(E_STATE) end
  each_then(m, l, subs, function(link, s) return link:subscribe(s[1], s[2]) end, "sub:",
    function(granted)
      return string.format("+QMTSUB: %d,%d,0,%s", idx, msgid, table.concat(granted, ","))
    end, string.format("+QMTSUB: %d,%d,2", idx, msgid))
end

-- AT+QMTUNS=<idx>,<msgid>,"<topic>"[,"<topic>"...]
C["+QMTUNS"] = function(m, c)
  local ps = set_params(m, c, 3, 2 + 16)
  if not ps then return end
  local cl, idx = client(m, ps[1])
  local msgid = atparse.int(ps[2], 1, 65535)
  if not cl or not msgid then return m:fail(E_PARAM) end
  local topics = {}
  for i = 3, #ps do
    if ps[i].value == "" then return m:fail(E_PARAM) end
    topics[#topics + 1] = ps[i].value
  end
  local l = connected_link(cl)
  if not l then return m:fail(E_STATE) end
  each_then(m, l, topics, function(link, t) return link:unsubscribe(t) end, "uns:",
    function() return string.format("+QMTUNS: %d,%d,0", idx, msgid) end,
    string.format("+QMTUNS: %d,%d,2", idx, msgid))
end

---------------------------------------------------------------------------
-- Publish: AT+QMTPUBEX and AT+QMTPUB
---------------------------------------------------------------------------

-- The checked head of a publish command: client, index, msgid, qos,
-- retain, topic; nil after answering the refusal.
local function pub_head(m, ps)
  local cl, idx = client(m, ps[1])
  local msgid, qos = atparse.int(ps[2], 0, 65535), atparse.int(ps[3], 0, 1)
  local retain = atparse.int(ps[4], 0, 1)
  -- msgid 0 iff QoS 0 (DIALECTS.md 1.4).
  if not cl or not msgid or not qos or not retain or ps[5].value == ""
      or (qos == 0) ~= (msgid == 0) then
    return m:fail(E_PARAM)
  end
  if not connected_link(cl) then return m:fail(E_STATE) end
  return cl, idx, msgid, qos, retain, ps[5].value
end

-- Sends the message; the result URC (name "+QMTPUB" or "+QMTPUBEX") at
-- once for QoS 0, after the PUBACK for QoS 1.
local function publish(m, name, cl, idx, msgid, qos, retain, topic, payload)
  local l = connected_link(cl)
  if not l then return m:fail(E_STATE) end
  local id = l:publish(topic, payload, qos, retain == 1)
  if not id then return m:fail(E_PARAM) end
  local ok_line = string.format("%s: %d,%d,0", name, idx, msgid)
  if qos == 0 then return m:ok_then(function(done) done(ok_line) end) end
  m:ok_then(function(done)
    await(l, "pub:" .. id, function(line) done(line or ok_line) end,
      string.format("%s: %d,%d,2", name, idx, msgid))
  end, ack_ms(cl))
end

-- The payload of a publish command's 6th parameter: inline when quoted
-- (Quectel's SDK), else a length: ">" and exactly that many bytes.
local function counted_or_inline(m, p)
  if p.quoted then
    if #p.value > L.payload then return m:fail(E_PARAM) end
    return p.value
  end
  local len = atparse.int(p, 0, L.payload)
  if not len then return m:fail(E_PARAM) end
  m:prompt()
  local data = m:read_data(len, L.data_ms)
  if not data then return m:error() end
  return data
end

-- AT+QMTPUBEX=<idx>,<msgid>,<qos>,<retain>,"<topic>",<len>|"<msg>"
C["+QMTPUBEX"] = function(m, c)
  local ps = set_params(m, c, 6)
  if not ps then return end
  local cl, idx, msgid, qos, retain, topic = pub_head(m, ps)
  if not cl then return end
  local payload = counted_or_inline(m, ps[6])
  if payload then publish(m, "+QMTPUBEX", cl, idx, msgid, qos, retain, topic, payload) end
end

local CTRL_Z, ESC = "\26", "\27"

-- AT+QMTPUB=<idx>,<msgid>,<qos>,<retain>,"<topic>"[,<len>|"<msg>"]: without
-- the 6th parameter the bytes after ">" end at Ctrl-Z; Esc cancels.
C["+QMTPUB"] = function(m, c)
  local ps = set_params(m, c, 5, 6)
  if not ps then return end
  local cl, idx, msgid, qos, retain, topic = pub_head(m, ps)
  if not cl then return end
  local payload
  if ps[6] then
    payload = counted_or_inline(m, ps[6])
  else
    m:prompt()
    local data, stop = m:read_until("[" .. CTRL_Z .. ESC .. "]", L.payload, L.data_ms)
    if not data then return m:error() end
    if stop == ESC then return m:ok() end
    payload = data
  end
  if payload then publish(m, "+QMTPUB", cl, idx, msgid, qos, retain, topic, payload) end
end

---------------------------------------------------------------------------
-- Buffered receiving: AT+QMTRECV? and AT+QMTRECV=<idx>[,<recv_id>]
---------------------------------------------------------------------------

C["+QMTRECV"] = function(m, c)
  if c.op == "read" then
    for i = 0, L.clients do
      local cl, any = m.st.qmt[i], false
      local s = {}
      for slot = 0, L.slots - 1 do
        s[#s + 1] = cl.slots[slot] and 1 or 0
        any = any or cl.slots[slot] ~= nil
      end
      if any or (cl.link and cl.cfg.recv_mode == 1) then
        m:info(string.format("+QMTRECV: %d,%s", i, table.concat(s, ",")))
      end
    end
    return m:ok()
  end
  local ps = set_params(m, c, 1, 2)
  if not ps then return end
  local cl, idx = client(m, ps[1])
  local one = ps[2] and atparse.int(ps[2], 0, L.slots - 1)
  if not cl or (ps[2] and not one) then return m:fail(E_PARAM) end
  for slot = one or 0, one or L.slots - 1 do
    local msg = cl.slots[slot]
    if msg then
      cl.slots[slot] = nil
      m:info(recv_line(cl, idx, msg))
    end
  end
  m:ok()
end

return M
