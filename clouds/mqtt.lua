-- Any MQTT broker through the module (reference 003): plain TCP, TLS
-- without verification, one-way or mutual TLS; ASCII or HEX payloads;
-- direct or cached delivery.
--
--   athost clouds/mqtt.lua -p /dev/ttyUSB0 host=broker.example port=1883 \
--       client_id=dev1 subscribe=cmd/dev1 topic=data/dev1 publish=hello listen=30
local athost = require("athost")
local flow = require("athost.flow")
local modem = require("athost.modem")
local session = require("athost.session")

local usage = "usage: athost clouds/mqtt.lua -p PORT host=H [port=1883] "
  .. "client_id=ID [username=U password=P] [tls=none|noverify|server|mutual "
  .. "ca=FILE cert=FILE key=FILE] [mode=ascii|hex] [delivery=direct|cached] "
  .. "[subscribe=TOPIC] [topic=TOPIC publish=TEXT] [qos=0] [listen=SECONDS [messages=N]] "
  .. "[handler=FILE.lua]"

local args = flow.params(..., {
  host = flow.REQUIRED, port = false, client_id = flow.REQUIRED,
  username = "", password = "", tls = "none", ca = false, cert = false,
  key = false, mode = "ascii", delivery = "direct", subscribe = false,
  topic = false, publish = false, qos = "0", listen = "0", messages = false, handler = false,
  apn = false, profile = false, keepalive = "60", retries = false,
  count = "1",
}, usage)
local levels = { none = false, noverify = 0, server = 1, mutual = 2 }
local level = levels[args.tls]
if level == nil then athost.usage("tls=" .. args.tls .. ": " .. usage) end
if args.mode ~= "ascii" and args.mode ~= "hex" then athost.usage("mode=" .. args.mode .. ": " .. usage) end
if args.delivery ~= "direct" and args.delivery ~= "cached" then
  athost.usage("delivery=" .. args.delivery .. ": " .. usage)
end
if args.publish and not args.topic then athost.usage("publish= needs topic=; " .. usage) end
local handler = flow.handler(args.handler)

local function read(path, what)
  if not path then athost.usage(string.format("tls=%s needs %s=FILE; %s", args.tls, what, usage)) end
  local f = io.open(path, "rb")
  if not f then error("cannot read " .. path, 0) end
  local s = f:read("a")
  f:close()
  return s
end

-- Certificates are checked here, before they cross the serial line.
local tls = level and { level = level } or nil
local function cert(path, what)
  local pem = read(path, what)
  local c, err = athost.x509(pem)
  if not c then error(path .. ": " .. err, 0) end
  if c.expired then error(string.format("%s expired on %s: not uploading it", path, c.not_after), 0) end
  return pem
end
if level and level >= 1 then tls.ca = cert(args.ca, "ca") end
if level == 2 then
  tls.cert = cert(args.cert, "cert")
  tls.key = read(args.key, "key")
  athost.secret(tls.key)
end

athost.step("bring-up")
local m = modem.open(athost.port(), { profile = args.profile })
athost.step("network")
m:network()

if tls then
  athost.step("TLS set-up")
  session.tls(m, tls)
end

athost.step("connect")
local port = tonumber(args.port) or (level and 8883 or 1883)
local s = session.mqtt(m, { host = args.host, port = port, tls = level ~= false,
  client_id = args.client_id, username = args.username, password = args.password,
  mode = args.mode, delivery = args.delivery, keepalive = args.keepalive,
  retries = args.retries, apn = args.apn })
s:connect()
athost.log(string.format("connected to %s:%d (%s, %s, %s delivery)", args.host,
  port, args.tls == "none" and "plain TCP" or "TLS " .. args.tls, args.mode,
  args.delivery))
if handler.on_connect then handler.on_connect(s, args) end

if args.subscribe then
  athost.step("subscribe")
  s:subscribe(args.subscribe, tonumber(args.qos))
end
if args.publish then
  athost.step("publish")
  for i = 1, tonumber(args.count) or 1 do
    local text = args.publish:gsub("%%d", tostring(i))
    s:publish(args.topic, text, tonumber(args.qos))
  end
  athost.log("published to " .. args.topic)
end
local received = flow.listen(s, args, handler)
athost.step("disconnect")
s:disconnect()
flow.summary({ broker = args.host .. ":" .. port, published = s.stats.published,
  received = received, reconnects = s.stats.recovered },
  { "broker", "published", "received", "reconnects" })
