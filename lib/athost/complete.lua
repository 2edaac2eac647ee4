-- What shell completion asks athost (`athost --params SCRIPT`): a flow's
-- parameters, read from its source without running it.
--
-- A flow declares its parameters as the spec table of
-- `flow.params(..., { name = default, ... }, usage)`; its usage text shows
-- the values a parameter takes where there are few (`tls=none|noverify|
-- server|mutual`). Prints one word a line: `name=`, or `name=value` for
-- each value the usage lists.
local M = {}

-- The keys of the first table constructor after flow.params(...,
function M.spec_keys(src)
  local at = src:find("flow%.params%s*%(%s*%.%.%.%s*,%s*{")
  if not at then return {} end
  local open = src:find("{", at, true)
  local depth, i, keys = 0, open, {}
  local start = open
  -- Walk to the matching brace, taking `name =` at depth 1 only.
  while i <= #src do
    local c = src:sub(i, i)
    if c == "{" then depth = depth + 1
    elseif c == "}" then
      depth = depth - 1
      if depth == 0 then break end
    elseif c == '"' or c == "'" then
      local j = i + 1
      while j <= #src and src:sub(j, j) ~= c do
        if src:sub(j, j) == "\\" then j = j + 1 end
        j = j + 1
      end
      i = j
    elseif c == "-" and src:sub(i, i + 1) == "--" then
      i = (src:find("\n", i, true) or #src)
    end
    i = i + 1
  end
  local body = src:sub(start + 1, i - 1)
  -- Only depth-1 keys: blank out nested tables first.
  local flat = body:gsub("%b{}", "{}")
  for k in flat:gmatch("([%a_][%w_]*)%s*=[^=]") do keys[#keys + 1] = k end
  table.sort(keys)
  return keys
end

-- The completion words of the flow at path.
function M.words(path)
  local f = io.open(path, "rb")
  if not f then return {} end
  local src = f:read("a")
  f:close()
  local out = {}
  for _, k in ipairs(M.spec_keys(src)) do
    local vals = src:match("[%s%[%(]" .. k .. "=([%w_%-]+|[%w_%-|]+)")
    if vals then
      for v in vals:gmatch("[^|]+") do out[#out + 1] = k .. "=" .. v end
    else
      out[#out + 1] = k .. "="
    end
  end
  return out
end

function M.params(args)
  for _, w in ipairs(M.words(args and args.script or "")) do print(w) end
end

return M
