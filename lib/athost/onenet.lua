-- China Mobile OneNET (new platform, CLOUDS.md 2): the MQTT token and the
-- OneJSON thing-model topics and envelopes.
local athost = require("athost")

local M = {}

M.VERSION = "2018-10-31"
M.HOST = "mqtts.heclouds.com"

local METHODS = { md5 = true, sha1 = true, sha256 = true }

function M.method(name)
  local m = (name or "sha256"):lower()
  if not METHODS[m] then
    error(string.format("method %q: use md5, sha1 or sha256", tostring(name)), 0)
  end
  return m
end

-- Percent-encoding with uppercase hex, nothing safe (Python quote(s, safe='')).
function M.quote(s)
  return (s:gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", c:byte()) end))
end

-- products/<pid>/devices/<dn> for a device key, products/<pid> for the
-- product key (one secret per product).
function M.res(pid, dn)
  if dn then return "products/" .. pid .. "/devices/" .. dn end
  return "products/" .. pid
end

-- sign = base64(HMAC_method(base64decode(key), et\nmethod\nres\nversion)),
-- over the unencoded res.
function M.sign(key, res, et, method)
  method = M.method(method)
  local k, err = athost.unbase64(key)
  if not k then error("the OneNET key is not base64: " .. err, 0) end
  return athost.base64(athost.hmac(method, k, string.format("%s\n%s\n%s\n%s", et,
    method, res, M.VERSION), "raw"))
end

-- version=2018-10-31&res=<quote(res)>&et=<et>&method=<m>&sign=<quote(sign)>
function M.token(key, res, et, method)
  method = M.method(method)
  return string.format("version=%s&res=%s&et=%s&method=%s&sign=%s", M.VERSION,
    M.quote(res), et, method, M.quote(M.sign(key, res, et, method)))
end

-- clientId = device name, username = product id, password = the token.
function M.credentials(o)
  local res = M.res(o.product_id, not o.product_level and o.device_name or nil)
  return o.device_name, o.product_id, M.token(o.key, res, o.et, o.method)
end

function M.topics(pid, dn)
  local base = "$sys/" .. pid .. "/" .. dn .. "/thing/property/"
  return { post = base .. "post", post_reply = base .. "post/reply",
    set = base .. "set", set_reply = base .. "set_reply" }
end

-- {"id":..,"version":"1.0","params":{"<k>":{"value":..},...}} from a JSON
-- object of plain values ({"Power":"on"}), each wrapped as OneJSON wants.
function M.post(id, values, time_ms)
  local v = athost.json.decode(values)
  local keys, parts = {}, {}
  for k in pairs(v) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do
    local item = '{"value":' .. athost.json.encode(v[k])
      .. (time_ms and (',"time":' .. string.format("%d", time_ms)) or "") .. "}"
    parts[#parts + 1] = athost.json.encode(k) .. ":" .. item
  end
  return string.format('{"id":%s,"version":"1.0","params":{%s}}', athost.json.encode(id),
    table.concat(parts, ","))
end

function M.reply(id, code, msg)
  return string.format('{"id":%s,"code":%d,"msg":%s}', athost.json.encode(id), code,
    athost.json.encode(msg))
end

return M
