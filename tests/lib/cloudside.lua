-- The cloud side of the Tencent, OneNET and ThingsBoard flow tests: what
-- the broker must accept, computed here a second time from CLOUDS.md and
-- not by lib/athost/{tencent,onenet}.lua, so a mistake there cannot be
-- mirrored; and the ThingsBoard broker, which authenticates by user name
-- alone.
local athost = require("athost")
local t = require("t")

local M = {}

local function write(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

-- Tencent key auth: username <pid><dn>;<sdkappid>;<connid>;<expiry>,
-- password hex(HMAC(base64decode(psk), username));<method>.
function M.tencent(pid, dn, psk, sdkappid, connid, expiry, method)
  local user = table.concat({ pid .. dn, sdkappid, connid, tostring(expiry) }, ";")
  local alg = ({ hmacsha1 = "sha1", hmacsha256 = "sha256" })[method]
  return user, athost.hmac(alg, assert(athost.unbase64(psk)), user) .. ";" .. method
end

-- OneNET: username = product id, password = version=2018-10-31&res=..&et=..
-- &method=..&sign=.., sign = base64(HMAC(base64decode(key),
-- et\nmethod\nres\nversion)) over the unencoded res, values percent-encoded
-- with nothing safe.
function M.onenet(pid, dn, key, et, method, product_level)
  local res = product_level and ("products/" .. pid) or ("products/" .. pid .. "/devices/" .. dn)
  local sign = athost.base64(athost.hmac(method, assert(athost.unbase64(key)),
    et .. "\n" .. method .. "\n" .. res .. "\n2018-10-31", "raw"))
  local function enc(s)
    return (s:gsub("[^A-Za-z0-9_.~-]", function(c) return ("%%%02X"):format(c:byte()) end))
  end
  return pid, "version=2018-10-31&res=" .. enc(res) .. "&et=" .. et .. "&method=" .. method
    .. "&sign=" .. enc(sign)
end

-- ThingsBoard's broker: mosquitto with no password file (a token is a
-- user name without a password, which mosquitto's password file cannot
-- hold) and an ACL: anonymous clients (the tests' own) may use every
-- topic, "provision" only the provisioning pair, a known token only
-- v1/devices/me/#; an unknown token gets no topic at all, so its
-- subscription is refused. tokens: the access tokens issued in advance.
-- Returns { port, pid, acl, log(), args } once it accepts connections.
function M.tb_broker(dir, proc, tokens)
  os.execute("mkdir -p " .. proc.q(dir))
  local acl = dir .. "/acl"
  local lines = { "topic readwrite #", "", "user provision", "topic write /provision/request",
    "topic read /provision/response" }
  for _, tok in ipairs(tokens or {}) do
    lines[#lines + 1] = "\nuser " .. tok .. "\ntopic readwrite v1/devices/me/#"
  end
  write(acl, table.concat(lines, "\n") .. "\n")
  for _ = 1, 5 do
    local l = assert(athost.listen("127.0.0.1", 0))
    local port = l.port
    l:close()
    local logf = dir .. "/mosquitto-" .. port .. ".log"
    write(dir .. "/tb.conf", table.concat({ "listener " .. port .. " 127.0.0.1",
      "allow_anonymous true", "acl_file " .. acl, "persistence false",
      "log_dest file " .. logf, "log_type all", "connection_messages true",
      -- As root mosquitto would become user mosquitto, who cannot write here.
      athost.uid() == 0 and "user root" or "" }, "\n") .. "\n")
    local base = proc.background("mosquitto -c " .. proc.q(dir .. "/tb.conf"), "tb-broker-" .. port)
    local up = pcall(proc.poll, "the ThingsBoard broker", 5000, function()
      if t.slurp(base .. ".rc") then error("mosquitto exited", 0) end
      return (t.slurp(logf) or ""):find("running", 1, true)
    end)
    if up then
      local b = { port = port, pid = tonumber(t.slurp(base .. ".pid"):match("%d+")), acl = acl,
        args = "-h 127.0.0.1 -p " .. port }
      function b.log() return t.slurp(logf) or "" end
      return b
    end
  end
  error("the ThingsBoard broker did not start", 0)
end

return M
