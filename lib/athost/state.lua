-- What a provisioning step returns, kept between runs: the Aliyun device
-- secret, the AWS certificate and key, the Azure hub assignment. One JSON
-- file per device in a private state directory, written atomically and
-- readable by its owner only, so a later run reuses it instead of
-- provisioning again (which the clouds refuse or would duplicate).
--
--   local state = require("athost.state")
--   local dir = state.dir(args.state_dir)        -- fails early without one
--   local v = state.load(dir, "aws", template, serial)   -- table or nil
--   local path = state.save(dir, { fields }, "aws", template, serial)
local athost = require("athost")

local M = {}

-- The directory: dir if given, else $XDG_STATE_HOME/athost or
-- ~/.local/state/athost. Without HOME there is no private default: a
-- shared place such as /tmp would let anyone who can write there read or
-- plant a secret, so the caller must name one.
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
function M.check(dir)
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

-- dir/<part1>-<part2>-....json, each part reduced to [%w_-].
function M.path(dir, ...)
  local parts = {}
  for i = 1, select("#", ...) do
    parts[i] = (tostring((select(i, ...))):gsub("[^%w_-]", "_"))
  end
  return dir .. "/" .. table.concat(parts, "-") .. ".json"
end

-- The stored table of that name, or nil (none, or not JSON).
function M.load(dir, ...)
  if not M.check(dir) then return nil end
  local f = io.open(M.path(dir, ...), "rb")
  if not f then return nil end
  local ok, v = pcall(athost.json.decode, f:read("a"))
  f:close()
  if ok and type(v) == "table" then return v end
  return nil
end

local function sh_quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

-- Stores fields (a table) under that name, readable by its owner only
-- (0600 in a 0700 directory). athost.write_private writes a new file of a
-- fresh name (O_EXCL: nothing planted is opened), fsyncs it and renames it
-- over the old one, so the file is never partly written nor briefly
-- readable. Returns the path.
function M.save(dir, fields, ...)
  if not athost.stat(dir) then
    assert(os.execute("mkdir -p -m 700 " .. sh_quote(dir)),
      "cannot make the state directory " .. dir)
  end
  M.check(dir)
  return assert(athost.write_private(M.path(dir, ...),
    athost.json.encode(fields) .. "\n"))
end

return M
