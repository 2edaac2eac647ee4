-- ThingsBoard's device API helpers (lib/athost/thingsboard.lua): no
-- crypto and no vectors (CLOUDS.md 5), the provisioning exchange's two
-- reply spellings and its refusals.
local t = require("t")
local tb = require("athost.thingsboard")

t.test("provisioning request in the docs' field order", function()
  t.eq(tb.provision_request("k1", "s1", "DEVICE_NAME"),
    '{"deviceName":"DEVICE_NAME","provisionDeviceKey":"k1","provisionDeviceSecret":"s1"}', "named")
  t.eq(tb.provision_request("k1", "s1"), '{"provisionDeviceKey":"k1","provisionDeviceSecret":"s1"}',
    "deviceName optional")
end)

t.test("provisioning reply: both SUCCESS spellings give the token", function()
  t.eq(tb.provision_token('{"status":"SUCCESS","credentialsType":"ACCESS_TOKEN",'
    .. '"credentialsValue":"sLzc0gDAZPkGMzFVTyUY"}'), "sLzc0gDAZPkGMzFVTyUY", "current docs")
  t.eq(tb.provision_token('{"provisionDeviceStatus":"SUCCESS","credentialsType":"ACCESS_TOKEN",'
    .. '"accessToken":"abc123"}'), "abc123", "older docs")
end)

t.test("provisioning reply: refusals say what the cloud said", function()
  local tok, why = tb.provision_token('{"status":"NOT_FOUND","errorMsg":"Provision data was not found!"}')
  t.eq(tok, nil, "no token")
  t.eq(why, "status NOT_FOUND: Provision data was not found!", "why")
  tok, why = tb.provision_token('{"provisionDeviceStatus":"FAILURE"}')
  t.eq(why, "status FAILURE", "older spelling")
  tok, why = tb.provision_token("<html>")
  t.match(why, "not JSON", "not JSON")
  tok, why = tb.provision_token('{"status":"SUCCESS","credentialsType":"X509_CERTIFICATE","credentialsValue":"x"}')
  t.match(why, "X509_CERTIFICATE", "other credential types")
  tok, why = tb.provision_token('{"status":"SUCCESS"}')
  t.eq(why, "SUCCESS without an access token", "no token")
end)

t.test("RPC topics", function()
  t.eq(tb.rpc_id("v1/devices/me/rpc/request/42"), "42", "id")
  t.eq(tb.rpc_id("v1/devices/me/attributes"), nil, "not an RPC")
  t.eq(tb.rpc_response("42"), "v1/devices/me/rpc/response/42", "response")
end)

t.run()
