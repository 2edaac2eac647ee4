-- AWS IoT Core over MQTT with mutual TLS, as the AWS IoT developer guide
-- connects a device: trust Amazon's root CA, present the device
-- certificate and its private key (uploaded to the module), client id =
-- the thing name, no user name or password.
--
--   athost clouds/aws.lua -p /dev/ttyUSB0 endpoint=PREFIX-ats.iot.REGION.amazonaws.com \
--       ca=AmazonRootCA1.pem cert=device.pem.crt key=private.pem.key thing=NAME
--   athost clouds/aws.lua -p /dev/ttyUSB0 endpoint=... ca=AmazonRootCA1.pem \
--       claim_cert=claim.pem.crt claim_key=claim.private.key template=NAME [serial=SN]
--
-- With a claim certificate the device provisions itself (fleet
-- provisioning by claim): connected with the claim, it asks for a new
-- key and certificate ($aws/certificates/create/json), registers the thing
-- with the template (RegisterThing), stores what it received (0600, under
-- state_dir) and reconnects with it; later runs use the stored one.
local athost = require("athost")
local aws = require("athost.aws")
local flow = require("athost.flow")
local modem = require("athost.modem")
local session = require("athost.session")
local state = require("athost.state")

local usage = "usage: athost clouds/aws.lua -p PORT endpoint=HOST ca=FILE "
  .. "(cert=FILE key=FILE thing=NAME | claim_cert=FILE claim_key=FILE template=NAME "
  .. "[serial=SN] [parameters=JSON] [state_dir=DIR]) [port=8883] "
  .. "[topic=dt/{thing}/telemetry] [subscribe=cmd/{thing}/#] [publish=TEXT] [qos=1] "
  .. "[listen=SECONDS [messages=N]] [handler=FILE.lua]"

local args = flow.params(..., {
  endpoint = flow.REQUIRED, port = "8883", ca = flow.REQUIRED,
  cert = false, key = false, thing = false,
  claim_cert = false, claim_key = false, template = false, serial = false,
  parameters = false, state_dir = false,
  topic = "dt/{thing}/telemetry", subscribe = "cmd/{thing}/#", publish = false,
  qos = "1", listen = "0", messages = false, handler = false, apn = false,
  profile = false, keepalive = "300", retries = false, delivery = false,
  reply_timeout = "30",
}, usage)
local claim = args.claim_cert or args.claim_key or args.template
if claim then
  if not (args.claim_cert and args.claim_key and args.template) then
    athost.usage("fleet provisioning needs claim_cert=, claim_key= and template=; " .. usage)
  end
  local ok, err = pcall(aws.check_template, args.template)
  if not ok then athost.usage(err .. "; " .. usage) end
elseif not (args.cert and args.key and args.thing) then
  athost.usage("give cert=, key= and thing= (a registered device) or claim_cert=, "
    .. "claim_key= and template= (fleet provisioning); " .. usage)
end
local parameters = {}
if args.parameters then
  local ok, v = pcall(athost.json.decode, args.parameters)
  if not ok or type(v) ~= "table" then
    athost.usage("parameters= must be a JSON object of the template's parameters: "
      .. args.parameters)
  end
  parameters = v
end
local handler = flow.handler(args.handler)
local dir = claim and state.dir(args.state_dir)

athost.step("certificates")
local function read(path)
  local f = io.open(path, "rb")
  if not f then error("cannot read " .. path, 0) end
  local s = f:read("a")
  f:close()
  return s
end
-- Certificates are checked here, before they cross the serial line.
local function cert(path)
  local pem = read(path)
  local c, err = athost.x509(pem)
  if not c then error(path .. ": " .. err, 0) end
  if c.expired then error(string.format("%s expired on %s: not uploading it", path, c.not_after), 0) end
  return pem, c
end
local ca, ca_info = cert(args.ca)
athost.log(string.format("CA %s, valid until %s", ca_info.subject, ca_info.not_after))
local first = claim and { cert = cert(args.claim_cert), key = athost.secret(read(args.claim_key)) }
  or { cert = cert(args.cert), key = athost.secret(read(args.key)) }

athost.step("bring-up")
local m = modem.open(athost.port(), { profile = args.profile })
athost.step("network")
m:network()

local function connect(files, client_id, what)
  athost.step("TLS set-up" .. what)
  session.tls(m, { level = 2, ca = ca, cert = files.cert, key = files.key,
    names = { ca = "aws-ca.crt", cert = files.name .. ".crt", key = files.name .. ".key" } })
  athost.step("connect" .. what)
  local s = session.mqtt(m, { host = args.endpoint, port = tonumber(args.port),
    tls = true, client_id = client_id, username = "", password = "",
    keepalive = args.keepalive, retries = args.retries, apn = args.apn,
    delivery = args.delivery })
  s:connect()
  athost.log(string.format("connected to %s:%s as %s", args.endpoint, args.port, client_id))
  return s
end

local thing, device, provisioned = args.thing, first, false
if claim then
  local serial = args.serial or parameters.SerialNumber or m:imei()
  if parameters.SerialNumber == nil then parameters.SerialNumber = serial end
  local stored = state.load(dir, "aws", args.template, serial)
  if stored and stored.thing_name and stored.certificate_pem and stored.private_key then
    athost.secret(stored.private_key)
    thing = stored.thing_name
    device = { cert = stored.certificate_pem, key = stored.private_key }
    athost.log("using the certificate of " .. thing .. " stored in " .. dir)
  else
    first.name = "claim"
    local s = connect(first, serial, " (claim)")
    local limit = m.profile.limits and m.profile.limits.message
    local o = { timeout = flow.seconds(args.reply_timeout, 30) * 1000, limit = limit,
      model = m.profile.name }
    athost.step("create keys and certificate")
    local created = aws.create_keys(s, o)
    athost.log("certificate " .. created.certificateId)
    athost.step("register thing")
    local reg = aws.register_thing(s, args.template, created.certificateOwnershipToken,
      parameters, o)
    thing = reg.thingName
    local path = state.save(dir, { thing_name = thing, certificate_id = created.certificateId,
      certificate_pem = created.certificatePem, private_key = created.privateKey,
      template = args.template, serial = serial }, "aws", args.template, serial)
    athost.log(string.format("registered thing %s; certificate and key stored in %s", thing, path))
    athost.step("disconnect (claim)")
    s:disconnect()
    device = { cert = created.certificatePem, key = created.privateKey }
    provisioned = true
  end
end

device.name = "device"
local s = connect(device, thing, "")
if handler.on_connect then handler.on_connect(s, { thing = thing }) end

local topic_up = aws.topic(args.topic, thing)
if args.subscribe ~= "" then
  athost.step("subscribe")
  s:subscribe(aws.topic(args.subscribe, thing), 1)
end
if args.publish then
  athost.step("publish")
  s:publish(topic_up, args.publish, tonumber(args.qos))
  athost.log("published to " .. topic_up)
end
local received = flow.listen(s, args, handler)
athost.step("disconnect")
s:disconnect()
flow.summary({ thing = thing, provisioned = provisioned, published = s.stats.published,
  received = received, reconnects = s.stats.recovered },
  { "thing", "provisioned", "published", "received", "reconnects" })
