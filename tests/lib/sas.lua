-- The Azure shared access signature as the test's hub and DPS compute it
-- to enroll a device in the broker's password file: written here a second
-- time, from CLOUDS.md section 4, independently of lib/athost/azure.lua,
-- so a mistake in the flow's formula cannot also be the broker's.
local athost = require("athost")

local M = {}

-- RFC 3986 unreserved bytes stay, every other byte is %XX upper case
-- (Python's urllib.parse.quote(s, safe='')).
local function encode(s)
  local out = {}
  for i = 1, #s do
    local c = s:sub(i, i)
    if c:match("^[A-Za-z0-9_.~-]$") then out[#out + 1] = c
    else out[#out + 1] = string.format("%%%02X", c:byte()) end
  end
  return table.concat(out)
end
M.encode = encode

local function hmac_b64(key_b64, text)
  return athost.base64(athost.hmac("sha256", athost.unbase64(key_b64), text, "raw"))
end

-- The device key of a group enrollment for one registration id.
function M.device_key(group_key_b64, registration_id)
  return hmac_b64(group_key_b64, registration_id)
end

-- The token for resource uri, valid until se; lower: the resource's
-- %XX in lower case (the signed text is always what follows "sr=").
function M.token(uri, key_b64, se, skn, lower)
  local sr = encode(uri)
  if lower then sr = sr:gsub("%%%x%x", string.lower) end
  local sig = hmac_b64(key_b64, sr .. "\n" .. tostring(se))
  return "SharedAccessSignature sr=" .. sr .. "&sig=" .. encode(sig) .. "&se=" .. tostring(se)
    .. (skn and "&skn=" .. skn or "")
end

-- The broker entries (user name, password) of a device on a hub and on DPS.
function M.hub_entry(hub, device_id, key_b64, se, api)
  return hub .. "/" .. device_id .. "/?api-version=" .. (api or "2021-04-12"),
    M.token(hub .. "/devices/" .. device_id, key_b64, se)
end

function M.dps_entry(scope, registration_id, key_b64, se, api)
  return scope .. "/registrations/" .. registration_id .. "/api-version=" .. (api or "2019-03-31"),
    M.token(scope .. "/registrations/" .. registration_id, key_b64, se, "registration")
end

return M
