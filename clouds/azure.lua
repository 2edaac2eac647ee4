-- Azure IoT Hub over MQTT, as Microsoft's device guide connects a device:
-- TLS to <hub>.azure-devices.net:8883, client id = device id, the user name
-- with the api-version, a shared access signature from the device key as
-- the password; device-to-cloud messages on devices/<id>/messages/events/,
-- cloud-to-device messages on devices/<id>/messages/devicebound/#.
--
--   athost clouds/azure.lua -p /dev/ttyUSB0 hub=NAME.azure-devices.net \
--       device_id=ID device_key=KEY ca=DigiCertGlobalRootG2.pem
--   athost clouds/azure.lua -p /dev/ttyUSB0 id_scope=0ne... group_key=KEY \
--       ca=DigiCertGlobalRootG2.pem [registration_id=IMEI]
--
-- With an ID scope the device provisions itself through the Device
-- Provisioning Service (a symmetric-key group enrollment: its key derived
-- from the group key and the registration id, or device_key= of an
-- individual enrollment), polls until it is assigned, stores the hub and
-- device id (under state_dir) and connects there; later runs use the
-- stored assignment.
local athost = require("athost")
local azure = require("athost.azure")
local flow = require("athost.flow")
local modem = require("athost.modem")
local session = require("athost.session")
local state = require("athost.state")

local usage = "usage: athost clouds/azure.lua -p PORT ca=FILE "
  .. "(hub=HOST device_id=ID device_key=KEY | id_scope=SCOPE (group_key=KEY | "
  .. "device_key=KEY) [registration_id=IMEI] [dps_host=" .. azure.DPS_HOST .. "] "
  .. "[state_dir=DIR]) [port=8883] [ttl=3600] [now=UNIX_SECONDS] [api_version="
  .. azure.HUB_API .. "] [publish=TEXT] [properties=k=v&...] [qos=1] "
  .. "[listen=SECONDS [messages=N]] [handler=FILE.lua]"

local args = flow.params(..., {
  hub = false, device_id = false, device_key = false,
  id_scope = false, group_key = false, registration_id = false,
  dps_host = azure.DPS_HOST, dps_api_version = azure.DPS_API, state_dir = false,
  ca = false, tls = "server", port = "8883", ttl = "3600", now = false,
  api_version = azure.HUB_API, publish = false, properties = false, qos = "1",
  listen = "0", messages = false, handler = false, apn = false, profile = false,
  keepalive = "240", retries = false, reply_timeout = "30",
}, usage)
local dps = args.id_scope ~= nil
if dps then
  if not (args.group_key or args.device_key) then
    athost.usage("id_scope= needs group_key= (group enrollment) or device_key= "
      .. "(individual enrollment); " .. usage)
  end
elseif not (args.hub and args.device_id and args.device_key) then
  athost.usage("give hub=, device_id= and device_key=, or id_scope= with group_key= "
    .. "(Device Provisioning Service); " .. usage)
end
if args.tls ~= "server" and args.tls ~= "noverify" then
  athost.usage("tls=" .. args.tls .. ": Azure takes TLS only: server (verify with ca=) "
    .. "or noverify; " .. usage)
end
if args.tls == "server" and not args.ca then
  athost.usage("ca=FILE (DigiCert Global Root G2) to verify the hub, or tls=noverify; " .. usage)
end
for _, k in ipairs({ "device_key", "group_key" }) do
  if args[k] then athost.secret(args[k]) end
end
local handler = flow.handler(args.handler)
local dir = dps and state.dir(args.state_dir)
-- The clock the tokens are stamped with: now= stands in for a module
-- without a set clock (and lets a test pin the token).
local now = args.now and flow.seconds(args.now) or os.time()
local se = now + flow.seconds(args.ttl, 3600)

local ca
if args.ca then
  athost.step("certificate")
  local f = io.open(args.ca, "rb")
  if not f then error("cannot read the CA certificate " .. args.ca, 0) end
  ca = f:read("a")
  f:close()
  local c, err = athost.x509(ca)
  if not c then error(args.ca .. ": " .. err, 0) end
  if c.expired then error(string.format("%s expired on %s: not uploading it", args.ca, c.not_after), 0) end
  athost.log(string.format("CA %s, valid until %s", c.subject, c.not_after))
end

athost.step("bring-up")
local m = modem.open(athost.port(), { profile = args.profile })
athost.step("network")
m:network()
athost.step("TLS set-up")
session.tls(m, { level = args.tls == "server" and 1 or 0, ca = ca,
  names = { ca = "azure-ca.crt" } })

local function open(host, cid, user, password)
  athost.secret(password)
  local s = session.mqtt(m, { host = host, port = tonumber(args.port), tls = true,
    client_id = cid, username = user, password = password,
    keepalive = args.keepalive, retries = args.retries, apn = args.apn })
  local until_ = os.date("!%Y-%m-%dT%H:%M:%SZ", se)
  local ok, err = pcall(s.connect, s)
  if not ok then
    -- The hub and DPS refuse an expired token like a wrong one: say
    -- which it may be, by the system clock.
    local late = os.time() - se
    error(string.format("%s (SAS token valid until %s%s)", tostring(err), until_,
      late >= 0 and string.format(", expired by %d s by the system clock", late) or ""), 0)
  end
  athost.log(string.format("connected to %s as %s (token valid until %s)", host, cid, until_))
  return s
end

local hub, device_id, key = args.hub, args.device_id, args.device_key
local provisioned = false
if dps then
  local reg = args.registration_id or m:imei()
  key = args.device_key or azure.derive_key(args.group_key, reg)
  athost.secret(key)
  local stored = state.load(dir, "azure", args.id_scope, reg)
  if stored and stored.assigned_hub and stored.device_id then
    hub, device_id = stored.assigned_hub, stored.device_id
    athost.log(string.format("using the assignment to %s stored in %s", hub, dir))
  else
    athost.step("connect to DPS")
    local cid, user, password = azure.dps_credentials(args.id_scope, reg, key, se,
      args.dps_api_version)
    local s = open(args.dps_host, cid, user, password)
    athost.step("register")
    local st = azure.provision(s, reg, { timeout = flow.seconds(args.reply_timeout, 30) * 1000,
      log = athost.log })
    hub, device_id = st.assignedHub, st.deviceId
    local path = state.save(dir, { assigned_hub = hub, device_id = device_id,
      registration_id = reg, id_scope = args.id_scope }, "azure", args.id_scope, reg)
    athost.log(string.format("assigned to %s as %s; stored in %s", hub, device_id, path))
    athost.step("disconnect from DPS")
    s:disconnect()
    provisioned = true
  end
end

athost.step("connect to IoT Hub")
local cid, user, password = azure.hub_credentials(hub, device_id, key, se, args.api_version)
local s = open(hub, cid, user, password)
if handler.on_connect then handler.on_connect(s, { device_id = device_id, hub = hub }) end

local props = {}
for k, v in (args.properties or ""):gmatch("([^&=]+)=([^&]*)") do props[#props + 1] = { k, v } end
local topics = azure.topics(device_id, props)
athost.step("subscribe")
s:subscribe(topics.c2d, 1)
if args.publish then
  athost.step("publish")
  s:publish(topics.events, args.publish, tonumber(args.qos))
  athost.log("sent a device-to-cloud message on " .. topics.events)
end
local received = flow.listen(s, args, handler)
athost.step("disconnect")
s:disconnect()
flow.summary({ device = device_id, hub = hub, provisioned = provisioned,
  published = s.stats.published, received = received, reconnects = s.stats.recovered },
  { "device", "hub", "provisioned", "published", "received", "reconnects" })
