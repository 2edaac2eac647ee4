-- AWS IoT Core (CLOUDS.md section 3): the endpoint, topics, and fleet
-- provisioning by claim over an MQTT session of athost.session:
-- CreateKeysAndCertificate on $aws/certificates/create/json, then
-- RegisterThing on $aws/provisioning-templates/<template>/provision/json,
-- each answered on .../accepted or .../rejected of the same connection.
local athost = require("athost")

local M = {}

M.CREATE = "$aws/certificates/create/json"

function M.register_topic(template)
  return "$aws/provisioning-templates/" .. template .. "/provision/json"
end

-- The template name as the Fleet Provisioning library takes it: 1 to 36
-- characters of [%w_-] (a topic level, no wildcards).
function M.check_template(name)
  if not name:match("^[%w_%-]+$") or #name > 36 then
    error(string.format("template=%s: a provisioning template name is 1 to 36 "
      .. "letters, digits, '_' or '-'", name), 0)
  end
  return name
end

-- "{thing}" in a topic parameter is the thing name.
function M.topic(pattern, thing)
  return (pattern:gsub("{thing}", function() return thing end))
end

-- What a rejected reply says: "statusCode 400, errorCode X: message".
local function rejected(v)
  if type(v) ~= "table" then return "a reply that is not a JSON object" end
  local code = math.tointeger(v.statusCode) or v.statusCode
  return string.format("statusCode %s, errorCode %s: %s", tostring(code),
    tostring(v.errorCode), tostring(v.errorMessage))
end

-- One request/reply of the provisioning API on session s: subscribe to
-- topic/accepted and topic/rejected first (replies come on the same
-- connection only to a subscriber), publish the request, listen for one
-- of them. Returns the accepted reply (a table); raises naming what and
-- what AWS said. o.seen(payload) runs the moment a reply is read (to
-- register its secrets); o.limit, o.model: the module's largest incoming
-- message, for the message when a reply is larger.
function M.call(s, topic, request, what, o)
  o = o or {}
  local accepted, refused = topic .. "/accepted", topic .. "/rejected"
  s:subscribe(accepted, 1)
  s:subscribe(refused, 1)
  -- Secrets in a reply are registered as it is read (s.seen runs in the
  -- URC handler), before the transcript writes the bytes.
  s.seen = function(t, payload)
    if o.seen and (t == accepted or t == refused) then o.seen(payload) end
  end
  s:publish(topic, request, 1)
  local reply, on
  local ok, err = pcall(s.listen, s, o.timeout or 30000, function(msg)
    if msg.topic == accepted or msg.topic == refused then
      local dok, v = pcall(athost.json.decode, msg.payload)
      reply, on = dok and v or msg.payload, msg.topic
      return false
    end
  end)
  s.seen = nil
  if not ok then
    local n = tostring(err):match("announced (%d+) bytes, more than")
    if n and o.limit then
      error(string.format("%s: the reply is %s bytes, more than the %s takes in one "
        .. "message (its profile's limits.message = %d)", what, n, o.model or "module",
        o.limit), 0)
    end
    error(what .. ": " .. tostring(err), 0)
  end
  s:unsubscribe(accepted)
  s:unsubscribe(refused)
  if not on then
    error(string.format("%s: no reply on %s within %d s", what, accepted,
      (o.timeout or 30000) // 1000), 0)
  end
  if on == refused then error(what .. " rejected: " .. rejected(reply), 0) end
  if type(reply) ~= "table" then
    error(string.format("%s: the reply is not JSON: %q", what, tostring(reply):sub(1, 120)), 0)
  end
  return reply
end

-- Registers the private key and the ownership token of a
-- CreateKeysAndCertificate reply, as decoded and as the reply spells them
-- (JSON escapes: "\n" line ends, maybe "\/"), and each line of the key's
-- base64, so none shows however it is written.
function M.register_secrets(payload)
  for _, k in ipairs({ "privateKey", "certificateOwnershipToken" }) do
    -- PEM and base64 hold no quote: the value ends at the next one.
    local raw = payload:match('"' .. k .. '"%s*:%s*"([^"]*)"')
    if raw and raw ~= "" then athost.secret(raw) end
  end
  local ok, v = pcall(athost.json.decode, payload)
  if not ok or type(v) ~= "table" then return end
  for _, k in ipairs({ "privateKey", "certificateOwnershipToken" }) do
    if type(v[k]) == "string" and v[k] ~= "" then athost.secret(v[k]) end
  end
  if type(v.privateKey) == "string" then
    for line in v.privateKey:gmatch("[^\r\n]+") do
      if #line >= 16 and not line:find("^%-%-%-%-%-") then
        athost.secret(line)
        athost.secret((line:gsub("/", "\\/")))
      end
    end
  end
end

-- CreateKeysAndCertificate: the new certificate, its private key (a
-- secret, registered the moment it is read), its id and the ownership
-- token RegisterThing needs.
function M.create_keys(s, o)
  o = o or {}
  o.seen = M.register_secrets
  local v = M.call(s, M.CREATE, "{}", "create keys and certificate", o)
  for _, k in ipairs({ "certificateId", "certificatePem", "privateKey",
    "certificateOwnershipToken" }) do
    if type(v[k]) ~= "string" or v[k] == "" then
      error("create keys and certificate: the reply has no " .. k, 0)
    end
  end
  return v
end

-- RegisterThing with the ownership token and the template's parameters
-- (a table); returns the reply (thingName, deviceConfiguration).
function M.register_thing(s, template, token, parameters, o)
  local body = athost.json.encode({ certificateOwnershipToken = token,
    parameters = parameters or {} })
  local v = M.call(s, M.register_topic(M.check_template(template)), body,
    "register thing", o)
  if type(v.thingName) ~= "string" or v.thingName == "" then
    error("register thing: the reply has no thingName", 0)
  end
  return v
end

return M
