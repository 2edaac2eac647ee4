-- What a provisioning step returned, kept between runs: a device secret
-- (Aliyun), a device PSK (Tencent), an access token (ThingsBoard). One
-- JSON file per device in a private state directory, written atomically,
-- readable by its owner only.
--
--   local dir = state.dir(args.state_dir)            -- checked later
--   local v = state.load(dir, "tencent", pid, dn)    -- table or nil
--   local path = state.save(dir, "tencent", pid, dn, { psk = psk })
local athost = require("athost")

local M = {}

-- The directory: dir if given, else $XDG_STATE_HOME/athost or
-- ~/.local/state/athost. Without HOME there is no private default: a
-- shared place such as /tmp would let anyone who can write there read or
-- plant the secret, so the caller must name one.
function M.dir(dir)
  if dir and dir ~= "" then return dir end
  local base = os.getenv("XDG_STATE_HOME")
  if not base or base == "" then
    local home = os.getenv("HOME")
    if not home or home == "" then
      error("no state directory for the device secret: neither XDG_STATE_HOME "
        .. "nor HOME is set (give state_dir=DIR)", 0)
    end
    base = home .. "/.local/state"
  end
  return base .. "/athost"
end

-- Refuses a state directory someone else could read or plant a secret in:
-- it must be a directory of the user's own, writable by no one else.
-- Returns dir, or nil when it does not exist.
local function check_dir(dir)
  local st = athost.stat(dir)
  if not st then return nil end
  if st.type ~= "dir" then
    error(string.format("state directory %s is not a directory", dir), 0)
  end
  if not st.mine then
    error(string.format("state directory %s belongs to uid %d, not to this "
      .. "user (uid %d): refusing to keep a device secret there", dir, st.uid,
      athost.uid()), 0)
  end
  if st.mode & 18 ~= 0 then   -- 0022: group or others may write
    error(string.format("state directory %s is writable by %s (mode %04o): "
      .. "refusing to keep a device secret there (chmod 700 it)", dir,
      st.mode & 16 ~= 0 and (st.mode & 2 ~= 0 and "group and others" or "group")
        or "others", st.mode), 0)
  end
  return dir
end

-- <dir>/<cloud>-<product>-<device>.json, names made safe for a path.
function M.path(dir, cloud, product, device)
  return string.format("%s/%s-%s-%s.json", dir, cloud, product:gsub("[^%w_-]", "_"),
    device:gsub("[^%w_-]", "_"))
end

-- The stored table of cloud/product/device, or nil. The caller registers
-- the secrets in it (athost.secret): only it knows which fields are.
function M.load(dir, cloud, product, device)
  if not check_dir(dir) then return nil end
  local f = io.open(M.path(dir, cloud, product, device), "rb")
  if not f then return nil end
  local ok, v = pcall(athost.json.decode, f:read("a"))
  f:close()
  if not ok or type(v) ~= "table" then return nil end
  return v
end

local function sh_quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

-- Stores t (0600 in a 0700 directory). athost.write_private writes a new
-- file of a fresh name (O_EXCL: nothing planted is opened), fsyncs it and
-- renames it over the old one, so the file is never partly written nor
-- briefly readable. Returns the path.
function M.save(dir, cloud, product, device, t)
  if not athost.stat(dir) then
    assert(os.execute("mkdir -p -m 700 " .. sh_quote(dir)),
      "cannot make the state directory " .. dir)
  end
  check_dir(dir)
  return assert(athost.write_private(M.path(dir, cloud, product, device),
    athost.json.encode(t) .. "\n"))
end

return M
