-- China Mobile OneNET (Studio, OneJSON thing model) through the module, as
-- its MQTT device guide goes: a token signed with the device key (or the
-- product's access key), a property post, and a set_reply to every
-- property set.
--
--   athost clouds/onenet.lua -p /dev/ttyUSB0 product_id=PID device_name=DN device_key=KEY
--   athost clouds/onenet.lua -p /dev/ttyUSB0 product_id=PID product_key=KEY
--
-- With the product key the token's res is products/<pid> and the device
-- name is the IMEI unless given: one secret per product, which relies on
-- the product's auto-registration option.
local athost = require("athost")
local flow = require("athost.flow")
local modem = require("athost.modem")
local onenet = require("athost.onenet")
local session = require("athost.session")

local usage = "usage: athost clouds/onenet.lua -p PORT product_id=PID "
  .. "(device_key=KEY | product_key=KEY) [device_name=IMEI] [method=sha256|sha1|md5] "
  .. "[expiry=SECONDS] [post={...}] [listen=SECONDS [messages=N]] [tls=none|server ca=FILE] "
  .. "[handler=FILE.lua]"

local args = flow.params(..., {
  product_id = flow.REQUIRED, device_name = false, device_key = false,
  product_key = false, method = "sha256", expiry = "31536000", clock = false,
  mqtt_host = onenet.HOST, mqtt_port = false, tls = "none", ca = false,
  post = false, qos = "1", listen = "0", messages = false, handler = false,
  keepalive = "120", retries = false, apn = false, profile = false,
}, usage)
if not args.device_key and not args.product_key then
  athost.usage("give device_key= (the device's key) or product_key= (the product's "
    .. "access key); " .. usage)
end
if args.tls ~= "none" and args.tls ~= "server" then
  athost.usage("tls=" .. args.tls .. ": none or server (OneNET's own CA in ca=); " .. usage)
end
if args.tls == "server" and not args.ca then athost.usage("tls=server needs ca=FILE; " .. usage) end
onenet.method(args.method)
if args.post then flow.json_object("post", args.post) end
local handler = flow.handler(args.handler)
local pid = args.product_id
local key = athost.secret(args.device_key or args.product_key)
-- The token's expiry counts from this clock: the host's unless told.
local now = tonumber(args.clock) or os.time()
local ca = args.tls == "server" and flow.certificate(args.ca)

athost.step("bring-up")
local m = modem.open(athost.port(), { profile = args.profile })
local dn = args.device_name or m:imei()
athost.log(string.format("%s (%s), device %s/%s", m.profile.name, m.info.cgmr or "?", pid, dn))
athost.step("network")
m:network()

athost.step("token")
local et = now + flow.seconds(args.expiry)
local cid, user, token = onenet.credentials { product_id = pid, device_name = dn, key = key,
  et = et, method = args.method, product_level = not args.device_key }
athost.secret(token)
athost.log(string.format("res %s, method %s, valid until %s UTC",
  onenet.res(pid, args.device_key and dn or nil), args.method, os.date("!%Y-%m-%d %H:%M:%S", et)))

if ca then
  athost.step("upload CA")
  session.tls(m, { level = 1, ca = ca })
end

athost.step("connect")
-- Clean session, no will, no retain: the only way OneNET accepts.
local s = session.mqtt(m, { host = args.mqtt_host,
  port = tonumber(args.mqtt_port) or (args.tls == "none" and 1883 or 8883),
  tls = args.tls ~= "none", client_id = cid, username = user, password = token,
  keepalive = args.keepalive, retries = args.retries, apn = args.apn, clean = true })
s:connect()
if handler.on_connect then handler.on_connect(s, { product_id = pid, device_name = dn }) end

local topics = onenet.topics(pid, dn)
athost.step("subscribe")
s:subscribe(topics.set, 0)
s:subscribe(topics.post_reply, 0)

local qos = tonumber(args.qos)
if args.post then
  athost.step("post")
  local id = tostring(math.random(1, 99999999))
  s:publish(topics.post, onenet.post(id, args.post), qos)
  athost.log("posted properties to " .. topics.post .. ", id " .. id)
end

-- A property set is answered on set_reply with its id (code 200:
-- applied). A handler's on_set(params, session) may answer another code, msg.
local replied = 0
local function on_message(msg)
  if msg.topic ~= topics.set then return end
  local ok, v = pcall(athost.json.decode, msg.payload)
  if not ok or type(v) ~= "table" or v.id == nil then return end
  local code, text = 200, "success"
  if handler.on_set then
    code, text = handler.on_set(v.params, s)
    code, text = code or 200, text or "success"
  end
  s:publish(topics.set_reply, onenet.reply(tostring(v.id), code, text), qos)
  replied = replied + 1
  athost.log(string.format("set_reply %d to id %s", code, tostring(v.id)))
end
local received = flow.listen(s, args, handler, on_message, topics.set)

athost.step("disconnect")
s:disconnect()
flow.summary({ device = pid .. "/" .. dn, published = s.stats.published,
  received = received, replied = replied, reconnects = s.stats.recovered },
  { "device", "published", "received", "replied", "reconnects" })
