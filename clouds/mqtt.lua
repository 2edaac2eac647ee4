-- Any MQTT broker through the module (reference 003): plain TCP, TLS
-- without verification, one-way or mutual TLS; ASCII or HEX payloads;
-- direct or cached delivery.
--
--   athost clouds/mqtt.lua -p /dev/ttyUSB0 host=broker.example port=1883 \
--       client_id=dev1 subscribe=cmd/dev1 topic=data/dev1 publish=hello listen=30
local athost = require("athost")
local flow = require("athost.flow")
local modem = require("athost.modem")
local mqttat = require("athost.mqttat")
local upload = require("athost.upload")

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
if level == nil then error("tls=" .. args.tls .. ": " .. usage, 0) end
if args.mode ~= "ascii" and args.mode ~= "hex" then error("mode=" .. args.mode .. ": " .. usage, 0) end
if args.delivery ~= "direct" and args.delivery ~= "cached" then
  error("delivery=" .. args.delivery .. ": " .. usage, 0)
end
if args.publish and not args.topic then error("publish= needs topic=; " .. usage, 0) end
local handler = flow.handler(args.handler)

local function read(path, what)
  if not path then error(string.format("tls=%s needs %s=FILE; %s", args.tls, what, usage), 0) end
  local f = io.open(path, "rb")
  if not f then error("cannot read " .. path, 0) end
  local s = f:read("a")
  f:close()
  return s
end

-- Certificates are checked here, before they cross the serial line.
local files = {}
if level and level >= 1 then
  local pem = read(args.ca, "ca")
  local c, err = athost.x509(pem)
  if not c then error(args.ca .. ": " .. err, 0) end
  if c.expired then error(string.format("%s expired on %s: not uploading it", args.ca, c.not_after), 0) end
  files[#files + 1] = { "ca.crt", pem, "cacert" }
end
if level == 2 then
  local pem = read(args.cert, "cert")
  local c, err = athost.x509(pem)
  if not c then error(args.cert .. ": " .. err, 0) end
  if c.expired then error(string.format("%s expired on %s", args.cert, c.not_after), 0) end
  local key = read(args.key, "key")
  athost.secret(key)
  files[#files + 1] = { "client.crt", pem, "clientcert" }
  files[#files + 1] = { "client.key", key, "clientkey" }
end

athost.step("bring-up")
local m = modem.open(athost.port(), { profile = args.profile })
athost.step("network")
m:network()

-- The TLS settings name the uploaded files; a module reset (the last way
-- back after a lost bearer) forgets the settings, not the files.
local function tls_settings()
  for _, f in ipairs(files) do m:must(string.format(m.profile.ssl[f[3]], f[1])) end
  m:must(string.format(m.profile.ssl.seclevel, level))
end
if level then
  athost.step("TLS set-up")
  for _, f in ipairs(files) do upload.file(m, f[1], f[2]) end
  tls_settings()
end

athost.step("connect")
local port = tonumber(args.port) or (level and 8883 or 1883)
local session = mqttat.new(m, { host = args.host, port = port, tls = level ~= false,
  client_id = args.client_id, username = args.username, password = args.password,
  mode = args.mode, delivery = args.delivery, keepalive = args.keepalive,
  retries = args.retries, apn = args.apn, on_reset = level and tls_settings or nil })
session:connect()
athost.log(string.format("connected to %s:%d (%s, %s, %s delivery)", args.host,
  port, args.tls == "none" and "plain TCP" or "TLS " .. args.tls, args.mode,
  args.delivery))
if handler.on_connect then handler.on_connect(session, args) end

if args.subscribe then
  athost.step("subscribe")
  session:subscribe(args.subscribe, tonumber(args.qos))
end
if args.publish then
  athost.step("publish")
  for i = 1, tonumber(args.count) or 1 do
    local text = args.publish:gsub("%%d", tostring(i))
    session:publish(args.topic, text, tonumber(args.qos))
  end
  athost.log("published to " .. args.topic)
end
local received = 0
local listen = flow.seconds(args.listen, 0)
if listen > 0 then
  athost.step("listen")
  session:listen(listen * 1000, function(msg)
    received = received + 1
    flow.message(msg)
    if handler.on_message then handler.on_message(msg, session) end
    if args.messages and received >= tonumber(args.messages) then return false end
  end)
end
athost.step("disconnect")
session:disconnect()
flow.summary({ broker = args.host .. ":" .. port, published = session.stats.published,
  received = received, reconnects = session.stats.recovered },
  { "broker", "published", "received", "reconnects" })
