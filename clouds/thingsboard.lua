-- ThingsBoard through the module, as its MQTT device API goes: connect
-- with the device's access token, publish telemetry, answer server-side
-- RPC requests. Without a token the device provisions itself with the
-- device profile's provisioning key and secret; the token it receives is
-- stored under state_dir and used on later runs.
--
--   athost clouds/thingsboard.lua -p /dev/ttyUSB0 host=tb.example access_token=TOKEN
--   athost clouds/thingsboard.lua -p /dev/ttyUSB0 host=tb.example provision_key=K provision_secret=S
local athost = require("athost")
local flow = require("athost.flow")
local modem = require("athost.modem")
local session = require("athost.session")
local state = require("athost.state")
local tb = require("athost.thingsboard")

local usage = "usage: athost clouds/thingsboard.lua -p PORT [host=mqtt.thingsboard.cloud] "
  .. "(access_token=T | provision_key=K provision_secret=S) [device_name=IMEI] "
  .. "[telemetry={...}] [listen=SECONDS [messages=N]] [tls=none|server ca=FILE] "
  .. "[state_dir=DIR] [handler=FILE.lua]"

local args = flow.params(..., {
  host = "mqtt.thingsboard.cloud", port = false, tls = "none", ca = false,
  access_token = false, provision_key = false, provision_secret = false,
  device_name = false, client_id = false, state_dir = false, provision_wait = "30",
  telemetry = false, qos = "1", listen = "0", messages = false, handler = false,
  keepalive = "60", retries = false, apn = false, profile = false,
}, usage)
if not args.access_token and not (args.provision_key and args.provision_secret) then
  athost.usage("give access_token= or provision_key= and provision_secret= "
    .. "(device self-provisioning); " .. usage)
end
if args.tls ~= "none" and args.tls ~= "server" then
  athost.usage("tls=" .. args.tls .. ": none or server; " .. usage)
end
if args.tls == "server" and not args.ca then athost.usage("tls=server needs ca=FILE; " .. usage) end
if args.telemetry then flow.json_object("telemetry", args.telemetry) end
local handler = flow.handler(args.handler)
local ca = args.tls == "server" and flow.certificate(args.ca)
local dir = not args.access_token and state.dir(args.state_dir)
if args.provision_secret then athost.secret(args.provision_secret) end
local port = tonumber(args.port) or (args.tls == "none" and 1883 or 8883)

athost.step("bring-up")
local m = modem.open(athost.port(), { profile = args.profile })
local dn = args.device_name or m:imei()
athost.log(string.format("%s (%s), device %s", m.profile.name, m.info.cgmr or "?", dn))
athost.step("network")
m:network()
if ca then
  athost.step("upload CA")
  session.tls(m, { level = 1, ca = ca })
end

local function mqtt(username, client_id)
  return session.mqtt(m, { host = args.host, port = port, tls = args.tls ~= "none",
    client_id = client_id, username = username, password = "",
    keepalive = args.keepalive, retries = args.retries, apn = args.apn })
end

local token, provisioned = args.access_token, false
if not token then
  local stored = state.load(dir, "thingsboard", args.host, dn)
  token = stored and stored.access_token and athost.secret(stored.access_token)
  if token then
    athost.log("using the access token stored in " .. dir)
  else
    -- The provisioning exchange: user "provision", the reply topic
    -- subscribed before the request goes out.
    athost.step("provision")
    local p = mqtt(tb.PROVISION_USER, args.client_id or dn)
    p:connect()
    p:subscribe(tb.PROVISION_RESPONSE, 1)
    p:publish(tb.PROVISION_REQUEST, tb.provision_request(args.provision_key,
      args.provision_secret, dn), 1)
    local reply
    p:listen(flow.seconds(args.provision_wait) * 1000, function(msg)
      if msg.topic ~= tb.PROVISION_RESPONSE then return end
      -- The token is masked before anything can show the reply.
      local ok, v = pcall(athost.json.decode, msg.payload)
      if ok and type(v) == "table" then
        local t = v.credentialsValue or v.accessToken
        if type(t) == "string" and t ~= "" then athost.secret(t) end
      end
      reply = msg.payload
      return false
    end)
    p:disconnect()
    if not reply then
      error(string.format("provisioning: no reply on %s within %s s", tb.PROVISION_RESPONSE,
        args.provision_wait), 0)
    end
    local why
    token, why = tb.provision_token(reply)
    if not token then error("provisioning refused: " .. why, 0) end
    provisioned = true
    athost.log("provisioned; access token stored in " .. state.save(dir,
      { host = args.host, device_name = dn, access_token = token }, "thingsboard", args.host, dn))
  end
end

athost.step("connect")
local s = mqtt(token, args.client_id or dn)
s:connect()
athost.log(string.format("connected to %s:%d", args.host, port))
if handler.on_connect then handler.on_connect(s, { device_name = dn }) end

athost.step("subscribe")
s:subscribe(tb.RPC_REQUEST, 1)

local qos = tonumber(args.qos)
if args.telemetry then
  athost.step("telemetry")
  s:publish(tb.TELEMETRY, args.telemetry, qos)
  athost.log("published to " .. tb.TELEMETRY)
end

-- Every RPC request is answered on rpc/response/<id>: by a handler's
-- on_rpc(method, params, session) (a JSON text or a table), else with
-- {"result":"ok"}.
local answered = 0
local function on_message(msg)
  local id = tb.rpc_id(msg.topic)
  if not id then return end
  local ok, v = pcall(athost.json.decode, msg.payload)
  local method = ok and type(v) == "table" and v.method or nil
  local answer = '{"result":"ok"}'
  if handler.on_rpc then
    local a = handler.on_rpc(method, ok and type(v) == "table" and v.params or nil, s)
    if type(a) == "table" then answer = athost.json.encode(a) elseif a then answer = tostring(a) end
  end
  s:publish(tb.rpc_response(id), answer, qos)
  answered = answered + 1
  athost.log(string.format("answered RPC %s (%s)", id, tostring(method)))
end
local received = flow.listen(s, args, handler, on_message, "v1/devices/me/rpc/request/+")

athost.step("disconnect")
s:disconnect()
flow.summary({ device = dn, provisioned = provisioned, published = s.stats.published,
  received = received, answered = answered, reconnects = s.stats.recovered },
  { "device", "provisioned", "published", "received", "answered", "reconnects" })
