-- Alibaba Cloud IoT (Aliyun): provision a device and talk MQTT through the
-- module: the dialogue of references 000 and 002, on any module with a profile.
--
--   athost clouds/aliyun.lua -p /dev/ttyUSB0 product_key=PK product_secret=PS
--   athost clouds/aliyun.lua -p /dev/ttyUSB0 product_key=PK device_name=DN device_secret=DS
--
-- With a product secret (one secret per product) the device registers
-- itself, and the device secret it receives is stored under state_dir and
-- used on later runs: Aliyun refuses to register an active device twice.
local athost = require("athost")
local aliyun = require("athost.aliyun")
local flow = require("athost.flow")
local modem = require("athost.modem")
local session = require("athost.session")

local usage = "usage: athost clouds/aliyun.lua -p PORT product_key=PK "
  .. "(product_secret=PS | device_secret=DS) [device_name=IMEI] "
  .. "[region=cn-shanghai] [sign_method=hmacmd5|hmacsha1|hmacsha256] "
  .. "[publish=TEXT] [qos=1] [listen=SECONDS [messages=N]] [state_dir=DIR] [handler=FILE.lua]"

local args = flow.params(..., {
  product_key = flow.REQUIRED, product_secret = false, device_secret = false,
  device_name = false, region = "cn-shanghai", sign_method = "hmacmd5",
  state_dir = false, apn = false, profile = false, publish = false,
  qos = "1", listen = "0", messages = false, topics = "user", handler = false,
  keepalive = "300", auth_base = false, mqtt_host = false, mqtt_port = false,
  retries = false,
}, usage)
if not args.product_secret and not args.device_secret then
  athost.usage("give product_secret= (one secret per product) or device_secret= "
    .. "(one secret per device); " .. usage)
end
local handler = flow.handler(args.handler)
local pk = args.product_key
-- Only a run that must find or store a device secret needs the state
-- directory; a missing one fails here, before the module is touched.
local dir = not args.device_secret and aliyun.state_dir(args.state_dir)

athost.step("bring-up")
local m = modem.open(athost.port(), { profile = args.profile })
local dn = args.device_name or m:imei()
athost.log(string.format("%s (%s), device %s", m.profile.name,
  m.info.cgmr or "?", dn))

athost.step("network")
m:network()
athost.step("bearer")
m:bearer(args.apn)

local ds = args.device_secret
local registered = false
if not ds then
  ds = aliyun.load_secret(dir, pk, dn)
  if ds then
    athost.log("using the device secret stored in " .. dir)
  else
    athost.step("register")
    session.need(m, "http", "it cannot register a device; give device_secret=")
    ds = aliyun.register(m, { product_key = pk, product_secret = args.product_secret,
      device_name = dn, region = args.region, sign_method = args.sign_method,
      auth_base = args.auth_base })
    registered = true
    athost.log("registered; device secret stored in "
      .. aliyun.save_secret(dir, pk, dn, ds))
  end
end

local s
if session.can(m, "mqtt") then
  athost.step("auth")
  local iot_id, token, host, port = aliyun.auth(m, { product_key = pk,
    device_name = dn, device_secret = ds, region = args.region,
    sign_method = args.sign_method, auth_base = args.auth_base })
  athost.log("iotId " .. iot_id)
  athost.step("connect")
  s = session.mqtt(m, {
    host = args.mqtt_host or host or aliyun.mqtt_host(pk, args.region),
    port = tonumber(args.mqtt_port) or port or 1883, tls = true,
    client_id = dn, username = iot_id, password = token,
    keepalive = args.keepalive, retries = args.retries, apn = args.apn })
else
  -- A module that authenticates to Aliyun itself (reference 002).
  athost.step("auth and connect")
  s = session.mqtt(m, { aliyun = { product_key = pk, device_name = dn,
    device_secret = ds } })
end
s:connect()
if handler.on_connect then handler.on_connect(s, { device_name = dn }) end

local base = "/" .. pk .. "/" .. dn .. (args.topics == "user" and "/user" or "")
athost.step("subscribe")
s:subscribe(base .. "/get", 0)

if args.publish then
  athost.step("publish")
  s:publish(base .. "/update", args.publish, tonumber(args.qos))
  athost.log("published to " .. base .. "/update")
end
local received = flow.listen(s, args, handler, nil, base .. "/get")
athost.step("disconnect")
s:disconnect()
flow.summary({ device = dn, registered = registered,
  published = s.stats.published, received = received,
  reconnects = s.stats.recovered },
  { "device", "registered", "published", "received", "reconnects" })
