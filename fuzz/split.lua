-- What the Lua fuzz targets share: the fuzzer's bytes cut into a list of
-- pieces (the transport's reads), and a recursive equality for results.
local M = {}

-- Pieces of s whose lengths come from a generator seeded with seed (1 to
-- 64 bytes, a few long ones): the same input always cuts the same way.
function M.pieces(s, seed)
  local out, i, x = {}, 1, seed * 2654435761 % 4294967296 + 1
  while i <= #s do
    x = (x * 1103515245 + 12345) % 2147483648
    local n = x % 8 == 0 and 1 + x % 997 or 1 + (x >> 8) % 64
    out[#out + 1] = s:sub(i, i + n - 1)
    i = i + n
  end
  return out
end

function M.deepeq(a, b)
  if type(a) ~= "table" or type(b) ~= "table" then return a == b end
  for k, v in pairs(a) do
    if not M.deepeq(v, b[k]) then return false end
  end
  for k in pairs(b) do
    if a[k] == nil then return false end
  end
  return true
end

return M
