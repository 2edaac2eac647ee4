-- One interface to what a module does for a flow — MQTT, HTTP, file
-- upload, TLS — whatever its commands. The module's profile names its
-- command family (profile.dialect: "luat", "gosuncn", "quectel",
-- "simcom"); lib/athost/dialect/<family>.lua implements the interface
-- for that family in one place. Flows call this and never name a model
-- or a family; what a module cannot do is a capability missing from its
-- profile (profile.can) and one clear message.
--
--   local session = require("athost.session")
--   session.tls(m, { level = 1, ca = pem })        -- upload + settings
--   local status, body = session.http(m, "POST", url, form, ctype)
--   local s = session.mqtt(m, { host = h, port = 8883, tls = true,
--     client_id = c, username = u, password = p })
--   s:connect() s:subscribe(t, 1) s:publish(t, "hi", 1)
--   s:listen(30000, function(msg) ... end) s:disconnect()
--
-- Capabilities (profile.can): mqtt (MQTT to any broker), aliyun_mqtt (the
-- module authenticates to Aliyun and speaks MQTT itself), http, files,
-- tls.
local athost = require("athost")

local M = {}

-- What each capability is, for the message when one is missing.
M.CAPABILITIES = {
  mqtt = "MQTT to a broker of your choice",
  aliyun_mqtt = "Aliyun's device auth and MQTT in the module",
  http = "HTTP requests",
  files = "files on the module",
  tls = "TLS",
}

-- The dialect module of m's profile.
function M.dialect(m)
  local name = m.profile.dialect
  if not name then
    error(string.format("profile %s names no command family (dialect=)", m.profile.name), 0)
  end
  local ok, d = pcall(require, "athost.dialect." .. name)
  if not ok then
    error(string.format("profile %s: command family %q: %s", m.profile.name, name, d), 0)
  end
  return d
end

function M.can(m, what)
  return (m.profile.can or {})[what] == true
end

-- Raises "the <model> cannot do <what> (<reason>)" unless it can.
function M.need(m, what, why)
  if M.can(m, what) then return end
  local have = {}
  for k in pairs(m.profile.can or {}) do have[#have + 1] = k end
  table.sort(have)
  error(string.format("the %s has no %s (its profile can: %s)%s", m.profile.name,
    M.CAPABILITIES[what] or what,
    #have > 0 and table.concat(have, ", ") or "nothing listed",
    why and (": " .. why) or ""), 0)
end

-- An MQTT session. o: host, port, tls (true: the settings of M.tls, or
-- none verified), client_id, username, password, keepalive, clean,
-- retries, backoff_ms, apn, on_reset, and for a module that speaks to
-- Aliyun itself o.aliyun = { product_key, device_name, device_secret }.
-- Dialect-specific options (mode=hex, delivery=cached on the Luat
-- family) pass through; a family without them ignores or refuses them.
function M.mqtt(m, o)
  if o.aliyun and not o.host then
    M.need(m, "aliyun_mqtt")
  else
    M.need(m, "mqtt")
  end
  return M.closed_at_end(m, M.dialect(m).mqtt(m, o), "the MQTT session")
end

-- How long closing a session may take when a run ends early (Ctrl-C,
-- SIGTERM, an error): the profile's waits.cleanup, default 5 s.
function M.cleanup_ms(m)
  return (m.profile and m.profile.waits or {}).cleanup or 5000
end

-- A session that is closed on the module if the run ends while it is
-- open: from connect() on, athost.defer holds its disconnect() (MQTT
-- disconnect and close), which the session's own disconnect() takes
-- back. Whatever the family, one place.
function M.closed_at_end(m, s, name)
  local connect, disconnect = s.connect, s.disconnect
  local held
  function s.disconnect(self, ...)
    if held then held:cancel() held = nil end
    return disconnect(self, ...)
  end
  function s.connect(self, ...)
    -- Before the first command: a cancel in the middle of connecting
    -- leaves a half-open link too.
    held = held or athost.defer(function(why)
      athost.log(string.format("%s: closing %s", why, name))
      held = nil
      disconnect(self)
    end, { timeout = M.cleanup_ms(m), name = name })
    return connect(self, ...)
  end
  return s
end

-- One HTTP request; returns status, body. opts: timeout (ms), seen(body)
-- (called as soon as the body is read, to register a secret in it).
function M.http(m, method, url, body, content_type, opts)
  M.need(m, "http")
  return M.dialect(m).http(m, method, url, body, content_type, opts or {})
end

-- Writes data to a file on the module; returns the name the module's
-- other commands know it by (a family may add a drive prefix or need an
-- extension).
function M.upload(m, name, data, opts)
  M.need(m, "files")
  return M.dialect(m).upload(m, name, data, opts or {})
end

-- TLS for the MQTT and HTTPS sessions that follow: cfg.level 0 (encrypt,
-- verify nothing), 1 (verify the server against cfg.ca), 2 (and present
-- cfg.cert with cfg.key); ca, cert, key are PEM texts, uploaded here
-- under cfg.names (defaults ca.crt, client.crt, client.key). A reset of
-- the module forgets the settings, not the files: sessions apply them
-- again after one.
function M.tls(m, cfg)
  M.need(m, "tls")
  local d = M.dialect(m)
  local names = cfg.names or {}
  local defaults = { ca = "ca.crt", cert = "client.crt", key = "client.key" }
  local files = { level = cfg.level or 0 }
  for _, role in ipairs({ "ca", "cert", "key" }) do
    if cfg[role] then
      files[role] = M.upload(m, names[role] or defaults[role], cfg[role],
        { secret = role == "key" })
    end
  end
  d.tls(m, files)
  m.tls = files
  m.after_reset = function(mm) d.tls(mm, files) end
  return files
end

-- application/x-www-form-urlencoded, in the order given: { {k, v}, ... }.
function M.form(pairs_)
  local out = {}
  for _, kv in ipairs(pairs_) do
    local v = tostring(kv[2]):gsub("[^%w%-%._~]", function(c)
      return string.format("%%%02X", c:byte())
    end)
    out[#out + 1] = kv[1] .. "=" .. v
  end
  return table.concat(out, "&")
end

-- Decodes a JSON reply body; raises naming the request if it is not JSON.
function M.json(body, what)
  local ok, v = pcall(athost.json.decode, body)
  if not ok or type(v) ~= "table" then
    error(string.format("%s: the reply is not JSON: %q", what,
      body:sub(1, 120)), 0)
  end
  return v
end

return M
