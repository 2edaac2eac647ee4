-- The Luat (AirM2M) command family: Air720, Air780E/EP, Air724UG.
-- MQTT: AT+MCONFIG/MIPSTART/MCONNECT/MSUB/MPUB (athost.mqttat); HTTP:
-- AT+HTTPINIT/HTTPPARA/HTTPDATA/HTTPACTION/HTTPREAD (athost.httpat);
-- files: AT+FSCREATE/FSWRITE (athost.upload); TLS: AT+SSLCFG.
-- References 000, 001, 003; DIALECTS.md §3. The commands' spellings are
-- the profile's (lib/athost/profiles/air720.lua, air780e.lua).
local httpat = require("athost.httpat")
local mqttat = require("athost.mqttat")
local upload = require("athost.upload")

local D = {}

function D.mqtt(m, o)
  return mqttat.new(m, o)
end

function D.http(m, method, url, body, content_type, opts)
  return httpat.request(m, method, url, body, content_type, opts)
end

function D.upload(m, name, data, opts)
  upload.file(m, name, data, opts)
  return name
end

-- AT+SSLCFG: the files, then the level (references 001, 003).
function D.tls(m, f)
  local ssl = m.profile.ssl
  for _, role in ipairs({ "ca", "cert", "key" }) do
    if f[role] then
      m:must(string.format(ssl[({ ca = "cacert", cert = "clientcert",
        key = "clientkey" })[role]], f[role]))
    end
  end
  m:must(string.format(ssl.seclevel, f.level))
end

return D
