-- Azure, AWS and Huawei IoTDA payload formulas against CLOUDS.md's
-- known-answer vectors. "checked": CLOUDS.md recomputed it and it equals a
-- published output; "computed": no published output exists, the value is
-- CLOUDS.md's own computation, pinned so a change shows.
local t = require("t")
local azure = require("athost.azure")
local aws = require("athost.aws")
local huawei = require("athost.huawei")

local HUB_KEY = "+XLy+MVZ+aTeOnVzN2kLeB16O+kSxmz6g3rS6fAf6rw="
local HUB_URI = "iot-hub-for-test.azure-devices.net/devices/iot-device-for-test"
local GROUP_KEY = "8isrFI1sGsIlvvFSSFRiMfCNzv21fjbE/+ah/lSh3lF8e2YG1Te7w1KpZhJFFXJrqYKi9yegxkqIChbqOS9Egw=="
local REG = "sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6"

t.test("Azure SAS, checked (Azure CLI TestSasTokenAuth): the encoded sr signed", function()
  local token, sig = azure.sas(HUB_URI, HUB_KEY, 1471940363)
  t.eq(sig, "SIumZ1ACqqPJZ2okHDlW9MSYKykEpqsQY3z6FMOICd4=", "sig")
  t.eq(token, "SharedAccessSignature sr=iot-hub-for-test.azure-devices.net%2Fdevices%2F"
    .. "iot-device-for-test&sig=SIumZ1ACqqPJZ2okHDlW9MSYKykEpqsQY3z6FMOICd4%3D&se=1471940363", "token")
  t.eq(azure.sas(HUB_URI, HUB_KEY, 1471940363, { skn = "iothubowner" }),
    token .. "&skn=iothubowner", "with a policy name: the same signature, skn appended")
end)

t.test("Azure SAS, computed: lower-case %2f in sr changes the signature", function()
  local _, sig = azure.sas(HUB_URI, HUB_KEY, 1471940363, { lower = true })
  t.eq(sig, "kpPd03nBPQvmGX6lLUYgpB+VZN9uuoqsIw+8g4CkkAY=", "sig")
end)

t.test("Azure signature of a raw URI, checked (Java SDK SignatureIT)", function()
  t.eq(azure.sign("q+DKVojmMz014RjAwpNGZbAkdOocSVWMKPOccLfUmLE=",
    "sdktesthub.private.azure-devices-int.net/devices/test8\n1462333672"),
    "ZrTYgp6uRmbDl4lzzewxFD9FoaNKIK7G2bdivDbtc9A=", "sig")
end)

t.test("Azure hub user name and token layout (azure-sdk-for-c test_az_iot_hub_client_sas.c)", function()
  local cid, user, pass = azure.hub_credentials("myiothub.azure-devices.net", "my_device",
    HUB_KEY, 1578941692)
  t.eq(cid, "my_device", "client id")
  t.eq(user, "myiothub.azure-devices.net/my_device/?api-version=2021-04-12", "user name")
  t.match(pass, "^SharedAccessSignature sr=myiothub%.azure%-devices%.net%%2Fdevices%%2Fmy_device"
    .. "&sig=[%w%%]+&se=1578941692$", "password layout")
  t.eq(select(2, azure.hub_credentials("h", "d", HUB_KEY, 1, "2020-09-30")),
    "h/d/?api-version=2020-09-30", "api_version is a parameter")
end)

t.test("DPS derived device key, checked (how-to-legacy-device-symm-key)", function()
  t.eq(azure.derive_key(GROUP_KEY, REG), "Jsm0lyGpjaVYVP2g3FnmnmG9dI/9qU24wNoykUmermc=", "key")
end)

t.test("DPS password, computed: lower-case sr as azure-sdk-for-c writes it", function()
  local cid, user, pass = azure.dps_credentials("0ne00002193", REG,
    "Jsm0lyGpjaVYVP2g3FnmnmG9dI/9qU24wNoykUmermc=", 1735689600, nil, true)
  t.eq(cid, REG, "client id")
  t.eq(user, "0ne00002193/registrations/" .. REG .. "/api-version=2019-03-31", "user name, no '?'")
  t.eq(pass, "SharedAccessSignature sr=0ne00002193%2fregistrations%2f" .. REG
    .. "&sig=3OKasYOZgLDDstlDAwfRwCDp%2F4Xe6x3c24sE6at2Kz4%3D&se=1735689600&skn=registration",
    "password")
end)

t.test("Azure and DPS topics", function()
  local tp = azure.topics("d1", { { "k 1", "a/b" } })
  t.eq(tp.events, "devices/d1/messages/events/k%201=a%2Fb", "events with properties")
  t.eq(tp.c2d, "devices/d1/messages/devicebound/#", "c2d")
  t.eq(azure.dps_register_topic("7"), "$dps/registrations/PUT/iotdps-register/?$rid=7", "register")
  t.eq(azure.dps_status_topic("8", "4.abc"),
    "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=8&operationId=4.abc", "status")
  local status, rid, retry = azure.dps_reply("$dps/registrations/res/202/?$rid=7&retry-after=3")
  t.eq(status, 202, "status") t.eq(rid, "7", "rid") t.eq(retry, 3, "retry-after")
  t.eq(azure.dps_reply("devices/x"), nil, "not a DPS reply")
  t.eq(azure.c2d_properties("devices/d1/messages/devicebound/%24.to=%2Fdevices&k=v", "d1")["$.to"],
    "/devices", "c2d properties decoded")
end)

t.test("AWS fleet provisioning topics and template names", function()
  t.eq(aws.CREATE, "$aws/certificates/create/json", "CreateKeysAndCertificate")
  t.eq(aws.register_topic("Tpl-1"), "$aws/provisioning-templates/Tpl-1/provision/json", "RegisterThing")
  t.raises(function() aws.check_template(string.rep("a", 37)) end, "1 to 36")
  t.raises(function() aws.check_template("a/#") end, "1 to 36")
  t.eq(aws.topic("dt/{thing}/telemetry", "t%1"), "dt/t%1/telemetry", "{thing}")
end)

t.test("Huawei IoTDA property report envelope and command response topic", function()
  t.eq(huawei.report('{"temperature":25}', "sensor"),
    '{"services":[{"service_id":"sensor","properties":{"temperature":25}}]}', "wrapped")
  local env = '{"services":[{"service_id":"s","properties":{"t":1}}]}'
  t.eq(huawei.report(env, "sensor"), env, "an envelope is sent as it is")
  t.raises(function() huawei.report("hello", "sensor") end, "JSON object")
  t.eq(huawei.command_request("$oc/devices/d1/sys/commands/request_id=42", "d1"), "42", "request id")
  t.eq(huawei.command_request("$oc/devices/d1/sys/commands/response/request_id=42", "d1"), nil,
    "a response is no request")
  t.eq(huawei.command_response_topic("d1", "42"), "$oc/devices/d1/sys/commands/response/request_id=42",
    "response topic")
end)

t.run()
