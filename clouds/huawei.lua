-- Huawei Cloud IoTDA over MQTTS through the module, the dialogue of
-- reference 001: check the CA certificate, upload it to the module and
-- make it the one TLS verifies the server with, then MQTT with the
-- hour-stamped credentials. On IoTDA's topics, properties are reported in
-- the {"services":[...]} envelope and every command request
-- ($oc/devices/<id>/sys/commands/request_id=<rid>) is answered on
-- .../sys/commands/response/request_id=<rid>, as IoTDA's device guide
-- asks; the legacy topics of reference 001 carry the text as it is.
--
--   athost clouds/huawei.lua -p /dev/ttyUSB0 device_id=ID secret=S host=H ca=ca.pem \
--       service_id=Sensor publish='{"temperature":25}' listen=60
local athost = require("athost")
local flow = require("athost.flow")
local huawei = require("athost.huawei")
local modem = require("athost.modem")
local session = require("athost.session")

local usage = "usage: athost clouds/huawei.lua -p PORT device_id=ID secret=S "
  .. "host=HOST [port=8883] ca=FILE [topics=iotda|legacy] [publish=JSON|TEXT "
  .. "[service_id=ID]] [listen=SECONDS [messages=N]] [handler=FILE.lua]"

local args = flow.params(..., {
  device_id = flow.REQUIRED, secret = flow.REQUIRED, host = flow.REQUIRED,
  port = "8883", ca = flow.REQUIRED, topics = "iotda", publish = false,
  qos = "0", listen = "0", messages = false, handler = false, apn = false, profile = false,
  keepalive = "60", ca_name = "server.crt", retries = false, service_id = false,
}, usage)
local iotda = args.topics ~= "legacy"
-- IoTDA takes property reports in its envelope, checked before the
-- module is touched.
local report = args.publish
if iotda and report then
  local ok, v = pcall(huawei.report, report, args.service_id or "")
  if not ok then athost.usage(v .. "; " .. usage) end
  if v ~= args.publish and not args.service_id then
    athost.usage("service_id= (a service of the product model) is needed to report "
      .. "properties; or give a whole {\"services\":[...]} report; " .. usage)
  end
  report = v
end
local handler = flow.handler(args.handler)

athost.step("certificate")
local f = io.open(args.ca, "rb")
if not f then error("cannot read the CA certificate " .. args.ca, 0) end
local pem = f:read("a")
f:close()
local cert, err = athost.x509(pem)
if not cert then error(args.ca .. ": " .. err, 0) end
if cert.expired then
  error(string.format("%s expired on %s (%s): not uploading it", args.ca,
    cert.not_after, cert.subject), 0)
end
if cert.not_yet_valid then
  error(string.format("%s is not valid before %s: not uploading it", args.ca,
    cert.not_before), 0)
end
athost.log(string.format("CA %s, valid until %s", cert.subject, cert.not_after))

athost.step("bring-up")
local m = modem.open(athost.port(), { profile = args.profile })
athost.step("network")
m:network()

athost.step("upload CA")
-- The PEM without its final newline, as reference 001 counts it.
session.tls(m, { level = 1, ca = pem:gsub("\r?\n$", ""), names = { ca = args.ca_name } })

athost.step("connect")
local cid, user, password = huawei.credentials(args.device_id, args.secret)
athost.secret(password)
athost.log("client id " .. cid)
local s = session.mqtt(m, { host = args.host, port = tonumber(args.port),
  tls = true, client_id = cid, username = user, password = password,
  keepalive = args.keepalive, retries = args.retries, apn = args.apn })
s:connect()
if handler.on_connect then handler.on_connect(s, { device_id = args.device_id }) end

local topics = huawei.topics(args.device_id, args.topics)
athost.step("subscribe")
s:subscribe(topics.down, 0)

local received = 0
if args.publish then
  athost.step("publish")
  s:publish(topics.up, report, tonumber(args.qos))
  athost.log("published to " .. topics.up)
end
local listen = flow.seconds(args.listen, 0)
if listen > 0 then
  athost.step("listen")
  s:listen(listen * 1000, function(msg)
    -- Our own answers come back on the subscription (commands/#).
    if iotda and msg.topic:find("/sys/commands/response/", 1, true) then return end
    received = received + 1
    flow.message(msg)
    if handler.on_message then handler.on_message(msg, s) end
    local rid = iotda and huawei.command_request(msg.topic, args.device_id)
    if rid then
      -- handler.on_command(msg, session) -> result_code, paras: the answer;
      -- without one the command is acknowledged as done.
      local code, paras
      if handler.on_command then code, paras = handler.on_command(msg, s) end
      s:publish(huawei.command_response_topic(args.device_id, rid),
        huawei.command_response(code or 0, paras), tonumber(args.qos))
      athost.log(string.format("answered command request_id=%s (result_code %d)", rid, code or 0))
    end
    if args.messages and received >= tonumber(args.messages) then return false end
  end)
end
athost.step("disconnect")
s:disconnect()
flow.summary({ device = args.device_id, published = s.stats.published,
  received = received, reconnects = s.stats.recovered },
  { "device", "published", "received", "reconnects" })
