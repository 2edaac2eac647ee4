-- Tencent Cloud IoT Explorer through the module, as its device guide goes:
-- key authentication over MQTT with the device PSK, the data template's
-- property topics, a `report`, and a `control_reply` to every `control`.
--
--   athost clouds/tencent.lua -p /dev/ttyUSB0 product_id=PID device_name=DN device_psk=PSK
--   athost clouds/tencent.lua -p /dev/ttyUSB0 product_id=PID product_secret=PS
--
-- With the product secret (dynamic registration) the device registers
-- itself over the module's HTTP commands once; the PSK it receives is
-- stored under state_dir and used on later runs.
local athost = require("athost")
local flow = require("athost.flow")
local modem = require("athost.modem")
local session = require("athost.session")
local state = require("athost.state")
local tencent = require("athost.tencent")

local usage = "usage: athost clouds/tencent.lua -p PORT product_id=PID "
  .. "(device_psk=PSK | product_secret=PS) [device_name=IMEI] [sdkappid=12010126] "
  .. "[sign_method=hmacsha256|hmacsha1] [report={...}] [listen=SECONDS [messages=N]] "
  .. "[state_dir=DIR] [handler=FILE.lua]"

local args = flow.params(..., {
  product_id = flow.REQUIRED, device_name = false, device_psk = false,
  product_secret = false, sdkappid = tencent.SDKAPPID, sign_method = "hmacsha256",
  region = false, mqtt_host = false, mqtt_port = false, tls = "none", ca = false,
  connid = false, expiry = "31536000", clock = false, register_url = tencent.REGISTER_URL,
  register_type = "application/json; charset=UTF-8", state_dir = false,
  report = false, qos = "0", listen = "0", messages = false, handler = false,
  keepalive = "240", retries = false, apn = false, profile = false,
}, usage)
if not args.device_psk and not args.product_secret then
  athost.usage("give device_psk= (key authentication) or product_secret= "
    .. "(dynamic registration); " .. usage)
end
if args.tls ~= "none" and args.tls ~= "noverify" and args.tls ~= "server" then
  athost.usage("tls=" .. args.tls .. ": none, noverify or server; " .. usage)
end
if args.tls == "server" and not args.ca then athost.usage("tls=server needs ca=FILE; " .. usage) end
tencent.method(args.sign_method)
if args.report then flow.json_object("report", args.report) end
local handler = flow.handler(args.handler)
local pid = args.product_id
-- The token's expiry counts from this clock: the host's unless told.
local now = tonumber(args.clock) or os.time()
local ca = args.tls == "server" and flow.certificate(args.ca)
local dir = not args.device_psk and state.dir(args.state_dir)

athost.step("bring-up")
local m = modem.open(athost.port(), { profile = args.profile })
local dn = args.device_name or m:imei()
athost.log(string.format("%s (%s), device %s/%s", m.profile.name, m.info.cgmr or "?", pid, dn))
athost.step("network")
m:network()

local psk, registered = args.device_psk, false
if not psk then
  local stored = state.load(dir, "tencent", pid, dn)
  psk = stored and stored.device_psk and athost.secret(stored.device_psk)
  if psk then
    athost.log("using the device PSK stored in " .. dir)
  else
    athost.step("register")
    session.need(m, "http", "it cannot register a device; give device_psk=")
    m:bearer(args.apn)
    psk = tencent.register(m, { product_id = pid, device_name = dn,
      product_secret = args.product_secret, url = args.register_url,
      content_type = args.register_type, timestamp = now })
    registered = true
    athost.log("registered; device PSK stored in " .. state.save(dir,
      { product_id = pid, device_name = dn, device_psk = psk }, "tencent", pid, dn))
  end
end

if ca then
  athost.step("upload CA")
  session.tls(m, { level = 1, ca = ca })
end

athost.step("connect")
local cid, user, password = tencent.credentials { product_id = pid, device_name = dn,
  device_psk = psk, sdkappid = args.sdkappid, connid = args.connid,
  expiry = now + flow.seconds(args.expiry), sign_method = args.sign_method }
athost.secret(password)
local s = session.mqtt(m, {
  host = args.mqtt_host or tencent.mqtt_host(pid, args.region),
  port = tonumber(args.mqtt_port) or (args.tls == "none" and 1883 or 8883),
  tls = args.tls ~= "none", client_id = cid, username = user, password = password,
  keepalive = args.keepalive, retries = args.retries, apn = args.apn })
s:connect()
athost.log("client id " .. cid)
if handler.on_connect then handler.on_connect(s, { product_id = pid, device_name = dn }) end

local topics = tencent.topics(pid, dn)
athost.step("subscribe")
s:subscribe(topics.down, 0)

if args.report then
  athost.step("report")
  local token = "athost-" .. athost.random(4, "hex")
  s:publish(topics.up, tencent.report(token, args.report), tonumber(args.qos))
  athost.log("reported to " .. topics.up .. ", clientToken " .. token)
end

-- The cloud's `control` carries property values to set; the device
-- answers `control_reply` with the same clientToken (code 0: done). A
-- handler's on_control(params, session) may answer another code, status.
local replied = 0
local function on_message(msg)
  local ok, v = pcall(athost.json.decode, msg.payload)
  if not ok or type(v) ~= "table" or v.method ~= "control" then return end
  local code, status = 0, "ok"
  if handler.on_control then
    code, status = handler.on_control(v.params, s)
    code, status = code or 0, status or "ok"
  end
  s:publish(topics.up, tencent.control_reply(tostring(v.clientToken or ""), code, status),
    tonumber(args.qos))
  replied = replied + 1
  athost.log(string.format("control_reply %d to clientToken %s", code, tostring(v.clientToken)))
end
local received = flow.listen(s, args, handler, on_message, topics.down)

athost.step("disconnect")
s:disconnect()
flow.summary({ device = pid .. "/" .. dn, registered = registered,
  published = s.stats.published, received = received, replied = replied,
  reconnects = s.stats.recovered },
  { "device", "registered", "published", "received", "replied", "reconnects" })
