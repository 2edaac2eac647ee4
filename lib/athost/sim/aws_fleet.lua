-- A local stand-in for AWS IoT fleet provisioning by claim (CLOUDS.md
-- section 3; docs fleet-provision-api.html), answering on the local
-- broker as AWS answers a device connected with a claim certificate:
--
--   $aws/certificates/create/json -> .../accepted with a fresh RSA key and a
--     certificate signed by the test CA (openssl), its certificateId (the
--     SHA-256 of its DER, as AWS's are) and an ownership token;
--   $aws/provisioning-templates/<name>/provision/json (RegisterThing) ->
--     .../accepted { deviceConfiguration, thingName } when the template
--     exists, the token is one it issued and not yet used, and every
--     parameter the template declares is given; else .../rejected
--     { statusCode, errorCode, errorMessage }.
--
-- The certificate's subject is CN=<a fresh name>, which the broker's
-- certificate listener (use_identity_as_username) takes as the user name:
-- the state file maps it to the certificate and the thing, so a test can
-- tell which certificate a device connected with.
--
--   local f = require("athost.sim.aws_fleet").new {
--     ca_cert = "ca.pem", ca_key = "ca.key", workdir = DIR,
--     templates = { FleetTemplate = { "SerialNumber" } },
--     thing_prefix = "athost-", key_bits = 2048, deny = { ["sn-9"] = true },
--     state = "fleet.json", log = fn }
--   f:start { host, port, username, password }
local athost = require("athost")
local responder = require("athost.sim.responder")
local shell = require("athost.sim.aliyun_auth").shell

local M = {}
local F = {}
F.__index = F

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function slurp(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

function M.new(o)
  return setmetatable({ o = o, certs = {}, tokens = {}, things = {},
    log = o.log or function() end }, F)
end

function F:save()
  if not self.o.state then return end
  assert(athost.write_private(self.o.state, athost.json.encode({
    certificates = self.certs, things = self.things }) .. "\n"))
end

-- A key and a certificate signed by the test CA: PEM texts and the name
-- in its subject; nil, why when openssl fails.
function F:mint()
  local base = self.o.workdir .. "/cert-" .. athost.random(6, "hex")
  local cn = "thing-cert-" .. athost.random(6, "hex")
  local ok, err = shell(string.format(
    "openssl genrsa -traditional -out %s %d && "
      .. "openssl req -new -key %s -subj %s -out %s && "
      .. "openssl x509 -req -in %s -CA %s -CAkey %s -set_serial 0x%s -days 30 -sha256 -out %s",
    q(base .. ".key"), self.o.key_bits or 2048, q(base .. ".key"), q("/CN=" .. cn),
    q(base .. ".csr"), q(base .. ".csr"), q(self.o.ca_cert), q(self.o.ca_key),
    athost.random(8, "hex"), q(base .. ".pem")), { timeout = 60000 })
  if not ok then return nil, err end
  local key, pem = slurp(base .. ".key"), slurp(base .. ".pem")
  os.remove(base .. ".key")
  os.remove(base .. ".csr")
  os.remove(base .. ".pem")
  return athost.secret(key), pem, cn
end

local function der_id(pem)
  local b64 = pem:match("%-%-%-%-%-BEGIN CERTIFICATE%-%-%-%-%-(.-)%-%-%-%-%-END")
  return athost.digest("sha256", athost.unbase64((b64 or ""):gsub("%s", "")))
end

local function rejected(r, topic, status, code, message)
  r:reply(topic .. "/rejected", athost.json.encode({ statusCode = status,
    errorCode = code, errorMessage = message }))
end

function F:create(r, topic)
  local key, pem, cn = self:mint()
  if not key then
    self.log("minting: " .. tostring(pem))
    return rejected(r, topic, 500, "InternalFailure", "could not create a certificate")
  end
  local id = der_id(pem)
  -- About 600 bytes, as AWS's are: the reply is then the size a device
  -- must take (CLOUDS.md: 3.5-4.5 KiB with a 2048-bit key).
  local token = athost.secret(athost.base64(athost.random(450)))
  self.certs[id] = { cn = cn, status = "PENDING_ACTIVATION" }
  self.tokens[token] = id
  self:save()
  r:reply(topic .. "/accepted", athost.json.encode({ certificateId = id,
    certificatePem = pem, privateKey = key, certificateOwnershipToken = token }))
end

function F:register(r, topic, template, payload)
  local ok, v = pcall(athost.json.decode, payload)
  if not ok or type(v) ~= "table" then
    return rejected(r, topic, 400, "InvalidPayload", "the request is not JSON")
  end
  local declared = (self.o.templates or {})[template]
  if not declared then
    return rejected(r, topic, 404, "ResourceNotFoundException",
      "Template " .. template .. " does not exist")
  end
  local id = self.tokens[v.certificateOwnershipToken or ""]
  if not id then
    return rejected(r, topic, 400, "InvalidCertificateOwnershipToken",
      "Certificate ownership token is invalid or was used already")
  end
  local params = type(v.parameters) == "table" and v.parameters or {}
  for _, name in ipairs(declared) do
    if type(params[name]) ~= "string" or params[name] == "" then
      return rejected(r, topic, 400, "InvalidParameters",
        "Missing required parameter " .. name)
    end
  end
  local serial = params.SerialNumber or params[declared[1] or ""] or id:sub(1, 12)
  if (self.o.deny or {})[serial] then
    return rejected(r, topic, 403, "AccessDeniedException",
      "Provisioning of " .. serial .. " was denied by the pre-provisioning hook")
  end
  self.tokens[v.certificateOwnershipToken] = nil
  local thing = (self.o.thing_prefix or "") .. serial
  self.certs[id].status, self.certs[id].thing = "ACTIVE", thing
  self.things[thing] = { certificateId = id, parameters = params }
  self:save()
  r:reply(topic .. "/accepted", athost.json.encode({ thingName = thing,
    deviceConfiguration = { template = template } }))
end

-- Connects to the broker (b: host, port, username, password) and answers;
-- returns the responder (r:ready(), r:run()).
function F:start(b)
  local create = "$aws/certificates/create/json"
  return responder.start { host = b.host, port = b.port, username = b.username,
    password = b.password, client_id = "aws-fleet-" .. athost.random(3, "hex"),
    log = self.o.log,
    topics = { create, "$aws/provisioning-templates/+/provision/json" },
    handle = function(r, topic, payload)
      self.log(topic .. " -> " .. #payload .. " bytes")
      if topic == create then return self:create(r, topic) end
      local template = topic:match("^%$aws/provisioning%-templates/([^/]+)/provision/json$")
      if template then return self:register(r, topic, template, payload) end
    end }
end

return M
