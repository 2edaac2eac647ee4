-- A virtual Gosuncn ME3630 (firmware AL_ME3630C1CV1.0B01, reference 002):
-- the dialect the core (athost.sim.core) runs. SIM and network queries
-- (AT+CPIN?, AT+ZPAS?), the ECM data call (AT+ZECMCALL), and the module's
-- own Aliyun commands: AT+CLOUDAUTH authenticates against the auth
-- service with a real HTTP request (POST /auth/devicename, HmacMD5,
-- clientId = deviceName), AT+CLOUDCONN opens a real MQTT connection with
-- the iotId/iotToken it got, AT+CLOUDSUB/CLOUDUNSUB/CLOUDPUB/CLOUDDISCONN
-- drive it, and messages arrive as +CLOUDPUBLISH.
--
-- Model options (besides the core's, see athost.sim):
--   auth=URL     the auth service: "http://127.0.0.1:8080", or host:port
--                (plain HTTP); default https://iot-auth.<region>.aliyuncs.com
--   region=      for the default auth and broker names (cn-shanghai)
--   broker=, hosts=   where MQTT and HTTP connections really go (core)
--
-- Choices where reference 002 is silent (change them here, as data):
--   power-on:      no autobaud, echo on, no banner, AT+CMEE=0
--   AT+CLOUDAUTH:  OK means "parameters accepted" (each at most 64 bytes,
--                  else ERROR / +CME ERROR: 50; 3 while authenticating or
--                  connected). The outcome is one line: +ALIAUTH: OK,
--                  +ALIAUTH: FAIL (the service answered with a code other
--                  than 200, or an HTTP error status), or +CME ERROR: <n>
--                  whatever AT+CMEE says: 30 no data call (AT+ZECMCALL=1
--                  first), 31 no answer in time, 767 service unreachable
--                  or its answer unreadable. The request carries
--                  timestamp and resources=mqtt; the broker named in the
--                  answer is the one AT+CLOUDCONN uses. Whether OK or the
--                  outcome comes first is the core knob `order` (the
--                  command reference says OK first, the usage example
--                  prints +ALIAUTH: OK first); before OK, a +CME ERROR is
--                  the only answer.
--   AT+CLOUDCONN:  the answer waits for the broker: OK after CONNACK 0;
--                  +CME ERROR: 767 (ERROR under CMEE=0) when the broker
--                  refuses or cannot be reached, 31 on no CONNACK in time;
--                  3 without a successful AT+CLOUDAUTH or when connected.
--   AT+CLOUDSUB:   one SUBSCRIBE per topic; OK (the parameters are
--                  accepted) and, when every SUBACK is in, one outcome
--                  line: "+CLOUDSUBACK: OK" (knob suback_text=angle:
--                  "+CLOUDSUBACK: <OK>" as the usage example prints it)
--                  or "+CMD ERROR: <code>": 128 refused by the broker, 31
--                  no SUBACK in time, 767 connection lost. In the order
--                  the knob `order` says; suback_first=1 is an old name
--                  for order=before.
--   AT+CLOUDUNSUB: OK once the UNSUBACK is in (+CME ERROR: 31 without).
--   AT+CLOUDPUB:   topic <= 64 bytes, payload < 256 bytes, else ERROR. The
--                  message is the rest of the line (commas included),
--                  quotes stripped; a bare number N is a length: ">" and
--                  then exactly N raw bytes ("用户输入指定长度"). QoS 1 answers
--                  OK after PUBACK.
--   +CLOUDPUBLISH: <packId>,<topic>,<len>,<payload bytes>: packId 0 for QoS
--                  0 (reference 002), else a per-connection counter; a
--                  space after the colon or not is the knob urc_space
--                  (the usage example prints none).
--   link lost:     the URC "+CLOUDCONN: LOST"; AT+CLOUDCONN reconnects
--                  with the same token. AT+CLOUDDISCONN forgets the token
--                  (reference 002: authenticate again).
--   extended forms (Neoway/Fibocom relatives): AT+CLOUDAUTH=<pk>,<dn>,<ds>
--                  [,<auth host or URL>[,<port>]], AT+CLOUDCONN=<keepalive
--                  30..1200>[,<clean 0|1>[,<MQTT version: 4 only>]].
local athost = require("athost")
local core = require("athost.sim.core")
local atparse = require("athost.sim.atparse")
local mqttlink = require("athost.sim.mqttlink")

local E_STATE, E_PARAM, E_FAILED = core.E_STATE, core.E_PARAM, core.E_FAILED
local E_NONET, E_TIMEOUT = 30, 31
local params = core.params

local function truthy(v)
  return v == true or v == "1" or v == "true" or v == "on" or v == "yes"
end

local D = {
  name = "me3630",
  autobaud = false,
  echo = true,
  banner = {},
  ident = {
    cgmi = "GOSUNCN", cgmm = "ME3630", cgmr = "AL_ME3630C1CV1.0B01",
    imsi = "460110000000001", iccid = "89860311000000000001",
  },
  limits = {
    auth_field = 64,          -- each AT+CLOUDAUTH parameter
    topic = 64,               -- AT+CLOUDPUB topic
    payload = 255,            -- AT+CLOUDPUB message ("小于 256")
    topics = 8,               -- AT+CLOUDSUB pairs
    auth_ms = 20000,          -- the auth request, connect to last byte
    conn_ms = 20000,          -- AT+CLOUDCONN until CONNACK
    ack_ms = 10000,           -- SUBACK, UNSUBACK, PUBACK
    data_ms = 10000,          -- the raw bytes after AT+CLOUDPUB's ">"
    keepalive = 60,
  },
  urc = {
    auth_ok = "+ALIAUTH: OK", auth_fail = "+ALIAUTH: FAIL",
    suback = "+CLOUDSUBACK: OK", cmd_error = "+CMD ERROR: ",
    lost = "+CLOUDCONN: LOST", publish = "+CLOUDPUBLISH: ",
    ecm_up = "+ZECMCALL: CONNECT", ecm_down = "+ZECMCALL: DISCONNECT",
  },
  commands = {},
  -- Knobs (athost.sim.core) where reference 002 is silent or contradicts
  -- itself.
  knobs = {
    { name = "suback_text", values = { "ok", "angle" }, default = "ok",
      doc = "AT+CLOUDSUB's success line: \"+CLOUDSUBACK: OK\" or, as "
        .. "reference 002's usage example prints it, \"+CLOUDSUBACK: <OK>\"" },
    { name = "urc_space", values = { "space", "tight" }, default = "space",
      doc = "an incoming message: \"+CLOUDPUBLISH: 0,<topic>,...\" (the "
        .. "command reference) or \"+CLOUDPUBLISH:0,<topic>,...\" (the usage "
        .. "example)" },
  },
}
local C = D.commands
local L, U = D.limits, D.urc

function D.reset(m)
  m.st.ecm = false
  m.st.cloud = { subs = {} }
  -- suback_first=1, the option before the knob existed, is order=before.
  if truthy(m.opts.suback_first) and m.opts.order == nil then
    m.kv.order = "before"
  end
end

-- The lines whose wording a knob chooses.
local function suback_line(m)
  return m:knob("suback_text") == "angle" and "+CLOUDSUBACK: <OK>" or U.suback
end

local function publish_prefix(m)
  return m:knob("urc_space") == "tight" and (U.publish:gsub(" $", "")) or U.publish
end

local sub_done      -- with AT+CLOUDSUB below

-- Subscriptions still waiting for their SUBACK will not get it.
local function fail_subs(m, cl)
  local groups = {}
  for _, g in pairs(cl.subs or {}) do groups[g] = true end
  for g in pairs(groups) do sub_done(m, cl, g, E_FAILED) end
end

-- Closes the MQTT link without a word; what waits on it fails.
local function close_link(m)
  local cl = m.st.cloud
  if cl and cl.link then
    cl.link:close()
    cl.link = nil
  end
  if cl and cl.pending then cl.pending.fail(E_FAILED) end
  if cl then fail_subs(m, cl) end
end

function D.shutdown(m)
  close_link(m)
  m.st.cloud = { subs = {} }
end

function D.net_down(m)
  m.st.ecm = false
  close_link(m)
end

function D.drop(m)
  local l = m.st.cloud.link
  if l and l.state == "open" then
    l:lose("EOF: dropped by a fault")
  elseif l then
    close_link(m)
  end
end

function D.pdp_deact(m)
  if not m.st.ecm then return end
  m.st.ecm = false
  m.net.pdp = false
  m:urc(U.ecm_down)
  D.drop(m)
end

-- Data can flow: the radio is on and the ECM call is up.
local function online(m)
  return m:online() and m.st.ecm
end

---------------------------------------------------------------------------
-- Commands that answer later
---------------------------------------------------------------------------

-- Starts a command whose answer comes from the network: one at a time.
-- done(lines...) answers them and OK; fail(n) answers +CME ERROR: n (or
-- ERROR, per AT+CMEE). The first of them (or the timeout, which calls
-- on_timeout) wins; after a reboot none says anything.
local function pending(m, ms, on_timeout)
  local cl, gen = m.st.cloud, m.gen
  local p = {}
  local function finish()
    if cl.pending ~= p then return false end
    cl.pending = nil
    if p.timer then p.timer:stop() end
    return m.gen == gen
  end
  function p.done(...)
    if not finish() then return end
    for _, l in ipairs({ ... }) do m:info(l) end
    m:ok()
  end
  function p.fail(n) if finish() then m:fail(n) end end
  cl.pending = p
  p.timer = athost.timer(ms, function() if cl.pending == p then on_timeout(p) end end)
  return p
end

local function busy(m)
  if m.st.cloud.pending then
    m:fail(E_STATE)
    return true
  end
  return false
end

---------------------------------------------------------------------------
-- Identity, SIM, network, the ECM call
---------------------------------------------------------------------------

C.I = function(m, c)
  if c.op ~= "exec" then return m:error() end
  m:info("Manufacturer: " .. D.ident.cgmi)
  m:info("Model: " .. D.ident.cgmm)
  m:info("Revision: " .. (m.opts.version or D.ident.cgmr))
  m:info("IMEI: " .. m.imei)
  m:info("+GCAP: +CGSM,+DS,+ES")
  m:ok()
end

C["+ZPAS"] = function(m, c)
  if c.op ~= "read" and c.op ~= "exec" then return m:error() end
  if m.net.cfun == 1 and m.net.attached then
    m:info('+ZPAS: "LTE","CS_PS","FDD"')
  else
    m:info('+ZPAS: "NO SERVICE","CS_ONLY"')
  end
  m:ok()
end

-- AT+ZECMCALL=1 brings the data call up: "+ZECMCALL: CONNECT", OK
-- (reference 002); =0 takes it down. AT+ZECMCALL? says 1 or 0.
C["+ZECMCALL"] = function(m, c)
  if c.op == "read" then
    m:info("+ZECMCALL: " .. (m.st.ecm and 1 or 0))
    return m:ok()
  end
  if c.op ~= "set" then return m:error() end
  local ps = params(m, c)
  if not ps then return end
  local v = atparse.int(ps[1], 0, 1)
  if #ps ~= 1 or not v then return m:fail(E_PARAM) end
  if v == 1 then
    if not (m.net.cfun == 1 and m.net.attached) then return m:fail(E_NONET) end
    m.net.pdp, m.st.ecm = true, true
    m:info(U.ecm_up)
  else
    m.st.ecm = false
    close_link(m)
    m:info(U.ecm_down)
  end
  m:ok()
end

---------------------------------------------------------------------------
-- AT+CLOUDAUTH=<pk>,<dn>,<ds>[,<auth host or URL>[,<port>]]
---------------------------------------------------------------------------

-- The auth service's base URL for this request: the command's host (a
-- name, host:port or a URL; https unless it says otherwise) and port, else
-- the auth= option, else the real service. nil for what is not a URL.
local function auth_url(m, host, port)
  local http = require("athost.http11")
  local base = host ~= nil and host ~= "" and host or m.opts.auth
  local default_scheme = host and host ~= "" and "https://" or "http://"
  if not base or base == "" then
    base = "https://iot-auth." .. (m.opts.region or "cn-shanghai") .. ".aliyuncs.com"
  elseif not base:find("://", 1, true) then
    base = default_scheme .. base
  end
  local scheme, h, p, path = http.parse_url(base)
  if not scheme then return nil end
  h = h:find(":", 1, true) and "[" .. h .. "]" or h
  return scheme .. "://" .. h .. ":" .. (port or p) .. path:gsub("/$", "")
end

-- The auth request; done(line) gives its outcome (athost.sim.core's
-- ok_then), once, unless the modem rebooted or a newer request replaced it.
local function authenticate(m, cl, a, gen, done)
  local function urc(line)
    if m.gen == gen and cl.authing == a then
      cl.authing = nil
      done(line)
    end
  end
  local function cme(n) urc("+CME ERROR: " .. n) end
  if not online(m) then return cme(E_NONET) end
  local http = require("athost.http11")
  local ts = tostring(os.time() * 1000)
  local p = { clientId = a.dn, deviceName = a.dn, productKey = a.pk, timestamp = ts }
  local sign = athost.hmac("md5", a.ds, "clientId" .. a.dn .. "deviceName" .. a.dn
    .. "productKey" .. a.pk .. "timestamp" .. ts)
  local body = http.form_encode { { "productKey", p.productKey },
    { "deviceName", p.deviceName }, { "clientId", p.clientId },
    { "timestamp", ts }, { "signmethod", "hmacmd5" }, { "sign", sign },
    { "resources", "mqtt" } }
  local ok, r, err, code = pcall(http.request, {
    method = "POST", url = a.url .. "/auth/devicename", body = body,
    headers = { ["Content-Type"] = "application/x-www-form-urlencoded" },
    timeout = L.auth_ms,
    connect = function(host, port, tls)
      return m:connect(host, port, tls and { verify = false } or nil, "http")
    end,
  })
  if not ok or not r then
    if m.trace then athost.log(m.name .. " CLOUDAUTH: " .. tostring(ok and err or r)) end
    return cme(code == "ETIMEDOUT" and E_TIMEOUT or E_FAILED)
  end
  if r.status ~= 200 then return urc(U.auth_fail) end
  local jok, j = pcall(athost.json.decode, r.body)
  if not jok or type(j) ~= "table" then return cme(E_FAILED) end
  if j.code ~= 200 or type(j.data) ~= "table" or type(j.data.iotId) ~= "string"
      or type(j.data.iotToken) ~= "string" then
    if m.trace then athost.log(m.name .. " CLOUDAUTH: " .. r.body) end
    return urc(U.auth_fail)
  end
  local mq = type(j.data.resources) == "table" and j.data.resources.mqtt or {}
  if m.gen ~= gen or cl.authing ~= a then return end
  cl.auth = {
    pk = a.pk, dn = a.dn, client_id = a.dn, iot_id = j.data.iotId,
    iot_token = athost.secret(j.data.iotToken),
    host = type(mq.host) == "string" and mq.host
      or (a.pk .. ".iot-as-mqtt." .. (m.opts.region or "cn-shanghai") .. ".aliyuncs.com"),
    port = math.tointeger(mq.port) or 1883,
  }
  urc(U.auth_ok)
end

C["+CLOUDAUTH"] = function(m, c)
  if c.op == "read" then
    local a = m.st.cloud.auth
    m:info(a and string.format('+CLOUDAUTH: "%s","%s"', a.pk, a.dn) or "+CLOUDAUTH: 0")
    return m:ok()
  end
  if c.op ~= "set" then return m:error() end
  local ps = params(m, c)
  if not ps then return end
  if #ps < 3 or #ps > 5 then return m:fail(E_PARAM) end
  for i = 1, 3 do
    local v = ps[i].value
    if v == "" or #v > L.auth_field or v:find("[%c%s]") then return m:fail(E_PARAM) end
  end
  local port = ps[5] and atparse.int(ps[5], 1, 65535)
  if ps[5] and not port then return m:fail(E_PARAM) end
  local cl = m.st.cloud
  if busy(m) then return end
  if cl.authing or cl.link then return m:fail(E_STATE) end
  local url = auth_url(m, ps[4] and ps[4].value, port)
  if not url then return m:fail(E_PARAM) end
  local a = { pk = ps[1].value, dn = ps[2].value, ds = athost.secret(ps[3].value),
    url = url }
  cl.auth, cl.authing = nil, a
  local gen = m.gen
  m:ok_then(function(done)
    athost.spawn(authenticate, m, cl, a, gen, done)
  end, L.auth_ms + 5000)
end

---------------------------------------------------------------------------
-- AT+CLOUDCONN[=<keepalive>[,<clean>[,<version>]]]
---------------------------------------------------------------------------

local function on_event(m, cl, l, ev, gen)
  if m.gen ~= gen or cl.link ~= l then return end
  local p, t = cl.pending, ev.type
  if t == "open" then
    local ok = l:connect(cl.connect_opts)
    if not ok and p then p.fail(E_FAILED) end
  elseif t == "fail" then
    cl.link = nil
    if p then p.fail(E_FAILED) end
  elseif t == "connack" then
    if p and p.kind == "conn" then
      if ev.rc == 0 then
        cl.packid = 0
        p.done()
      else
        cl.link = nil
        l:close()
        p.fail(E_FAILED)
      end
    end
  elseif t == "message" then
    local id = 0
    if ev.qos > 0 then
      cl.packid = cl.packid % 65535 + 1
      id = cl.packid
    end
    m:urc(publish_prefix(m) .. id .. "," .. ev.topic .. "," .. #ev.payload .. "," .. ev.payload, gen)
  elseif t == "suback" then
    local g = cl.subs[ev.id]
    if g then
      cl.subs[ev.id] = nil
      g.left = g.left - 1
      if ev.granted[1] == 0x80 then g.refused = true end
      if g.left == 0 then sub_done(m, cl, g, g.refused and 128 or nil) end
    end
  elseif t == "unsuback" then
    if p and p.kind == "unsub" and p.id == ev.id then p.done() end
  elseif t == "puback" then
    if p and p.kind == "pub" and p.id == ev.id then p.done() end
  elseif t == "closed" then
    cl.link = nil
    if p then p.fail(E_FAILED) end
    fail_subs(m, cl)
    if not l.expected then m:urc(U.lost, gen) end
  end
end

C["+CLOUDCONN"] = function(m, c)
  local ka, clean = L.keepalive, true
  if c.op == "set" then
    local ps = params(m, c)
    if not ps then return end
    ka = atparse.int(ps[1], 30, 1200)
    local cs = ps[2] and atparse.int(ps[2], 0, 1)
    local ver = ps[3] and atparse.int(ps[3], 4, 4)
    if #ps > 3 or not ka or (ps[2] and not cs) or (ps[3] and not ver) then
      return m:fail(E_PARAM)
    end
    clean = cs ~= 0
  elseif c.op == "read" then
    local l = m.st.cloud.link
    m:info("+CLOUDCONN: " .. ((l and l:connected()) and 1 or 0))
    return m:ok()
  elseif c.op ~= "exec" then
    return m:error()
  end
  local cl = m.st.cloud
  if busy(m) then return end
  if not cl.auth or cl.link then return m:fail(E_STATE) end
  if not online(m) then return m:fail(E_NONET) end
  local a = cl.auth
  cl.connect_opts = { client_id = a.client_id, username = a.iot_id,
    password = a.iot_token, keepalive = ka, clean = clean }
  local p = pending(m, L.conn_ms, function(p)
    p.fail(E_TIMEOUT)
    close_link(m)
  end)
  p.kind = "conn"
  local addr, port = m:resolve(a.host, a.port, "mqtt")
  local gen = m.gen
  cl.link = mqttlink.open { host = addr, port = port, timeout = L.conn_ms,
    on = function(link, ev) on_event(m, cl, link, ev, gen) end }
end

local function connected(m)
  local l = m.st.cloud.link
  return l and l:connected() and l or nil
end

---------------------------------------------------------------------------
-- AT+CLOUDSUB=<t1>,<q1>[,<t2>,<q2>...], AT+CLOUDUNSUB=<t>
---------------------------------------------------------------------------

-- The SUBACKs of one AT+CLOUDSUB are in (or will not come): one outcome
-- line for them all, given to the command's ok_then (kept until it asks).
function sub_done(m, cl, g, code)
  if g.over then return end
  g.over = true
  g.timer:stop()
  for id in pairs(g.ids) do cl.subs[id] = nil end
  local line = code and U.cmd_error .. code or suback_line(m)
  if g.done then g.done(line) else g.result = line end
end

C["+CLOUDSUB"] = function(m, c)
  if c.op ~= "set" then return m:error() end
  local ps = params(m, c)
  if not ps then return end
  if #ps == 0 or #ps % 2 ~= 0 or #ps / 2 > L.topics then return m:fail(E_PARAM) end
  local subs = {}
  for i = 1, #ps, 2 do
    local qos = atparse.int(ps[i + 1], 0, 1)
    if ps[i].value == "" or not qos then return m:fail(E_PARAM) end
    subs[#subs + 1] = { ps[i].value, qos }
  end
  if busy(m) then return end
  local l = connected(m)
  if not l then return m:fail(E_STATE) end
  local cl = m.st.cloud
  local g = { ids = {}, left = 0, gen = m.gen }
  for _, s in ipairs(subs) do
    local id = l:subscribe(s[1], s[2])
    if not id then
      for prev in pairs(g.ids) do cl.subs[prev] = nil end
      return m:fail(E_PARAM)
    end
    g.ids[id], g.left, cl.subs[id] = true, g.left + 1, g
  end
  g.timer = athost.timer(L.ack_ms, function() sub_done(m, cl, g, E_TIMEOUT) end)
  m:ok_then(function(done)
    g.done = done
    if g.result then done(g.result) end
  end, L.ack_ms + 1000)
end

C["+CLOUDUNSUB"] = function(m, c)
  if c.op ~= "set" then return m:error() end
  local ps = params(m, c)
  if not ps then return end
  if #ps ~= 1 or ps[1].value == "" then return m:fail(E_PARAM) end
  if busy(m) then return end
  local l = connected(m)
  if not l then return m:fail(E_STATE) end
  local p = pending(m, L.ack_ms, function(p) p.fail(E_TIMEOUT) end)
  p.kind = "unsub"
  p.id = l:unsubscribe(ps[1].value)
  if not p.id then p.fail(E_PARAM) end
end

---------------------------------------------------------------------------
-- AT+CLOUDPUB=<topic>,<qos>,<message | length>
---------------------------------------------------------------------------

local function publish(m, l, topic, qos, payload)
  if qos == 0 then
    if not l:publish(topic, payload, 0) then return m:fail(E_PARAM) end
    return m:ok()
  end
  local p = pending(m, L.ack_ms, function(p) p.fail(E_TIMEOUT) end)
  p.kind = "pub"
  p.id = l:publish(topic, payload, 1)
  if not p.id then p.fail(E_PARAM) end
end

-- The topic and QoS are the first two parameters; the message is the
-- rest of the line, so it may hold commas.
C["+CLOUDPUB"] = function(m, c)
  if c.op ~= "set" then return m:error() end
  local head, msg = c.rest:match("^([^,]*,[^,]*),(.*)$")
  local ps = head and atparse.params(head)
  if not ps then return m:fail(E_PARAM) end
  local topic, qos = ps[1].value, atparse.int(ps[2], 0, 1)
  if topic == "" or #topic > L.topic or not qos then return m:fail(E_PARAM) end
  local length
  local quoted = msg:match('^%s*"(.*)"%s*$')
  if quoted then
    msg = quoted
  elseif msg:match("^%s*%d+%s*$") then
    length = tonumber(msg)
  end
  if (length or #msg) > L.payload or length == 0 then return m:fail(E_PARAM) end
  if busy(m) then return end
  if not connected(m) then return m:fail(E_STATE) end
  if length then
    m:prompt()
    msg = m:read_data(length, L.data_ms)
    if not msg then return m:error() end
  end
  local l = connected(m)
  if not l then return m:fail(E_STATE) end
  publish(m, l, topic, qos, msg)
end

---------------------------------------------------------------------------
-- AT+CLOUDDISCONN
---------------------------------------------------------------------------

C["+CLOUDDISCONN"] = function(m, c)
  if c.op ~= "exec" then return m:error() end
  local cl = m.st.cloud
  if busy(m) then return end
  if not cl.link and not cl.auth then return m:fail(E_STATE) end
  local l = cl.link
  if l then
    l.expected = true
    if l:connected() then l:disconnect() end
    close_link(m)
  end
  cl.auth = nil
  m:ok()
end

return D
