-- Profiles (lib/athost/profiles/*.lua) are data. A module that differs
-- from another in a few fields says only those:
--
--   return require("athost.profile").derive("air720", { name = "air780e", ... })
--
-- Tables merge key by key; a list (a table with [1]) or any other value
-- replaces the base's; profile.NONE removes a field.
local M = {}

M.NONE = setmetatable({}, { __tostring = function() return "NONE" end })

local function copy(v)
  if type(v) ~= "table" then return v end
  local out = {}
  for k, x in pairs(v) do out[k] = copy(x) end
  return out
end

local function merge(into, changes)
  for k, v in pairs(changes) do
    if v == M.NONE then
      into[k] = nil
    elseif type(v) == "table" and v[1] == nil and next(v) ~= nil
        and type(into[k]) == "table" and into[k][1] == nil then
      merge(into[k], v)
    else
      into[k] = copy(v)
    end
  end
  return into
end

function M.derive(base, changes)
  local b = require("athost.profiles." .. base)
  local p = merge(copy(b), changes)
  p.base = base
  return p
end

return M
