-- AT command helpers: quoting parameters and escaping payloads.
local athost = require("athost")

local M = {}

-- A quoted string parameter. AT strings cannot carry a double quote or a
-- line end: those raise (the caller picks an escape-aware command).
function M.q(s)
  s = tostring(s)
  if s:find('["\r\n]') then
    error(string.format("cannot quote %q in an AT command", s), 2)
  end
  return '"' .. s .. '"'
end

-- The Luat AT+MPUB escapes, inside the quotes (PROTOCOLS.md).
local mpub_escapes = { ['"'] = "\\22", ["\r"] = "\\0D", ["\n"] = "\\0A",
                       ["\\"] = "\\5C" }

function M.mpub_escape(s)
  return (s:gsub('["\r\n\\]', mpub_escapes))
end

function M.mpub_unescape(s)
  return (s:gsub("\\(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

-- Upper-case hex, as modules print HEX-mode payloads.
function M.hex(s)
  return athost.hex(s):upper()
end

-- Payloads that AT+MPUB cannot carry in ASCII mode even escaped: NUL and
-- other control bytes go through AT+MPUBEX.
function M.binary(s)
  return s:find("[%z\1-\8\11\12\14-\31\127]") ~= nil
end

-- Splits the parameters of a reply line ("+X: a,"b,c",3") into a list,
-- keeping quoted commas; quotes are removed.
function M.params(s)
  local out, i, n = {}, 1, #s
  while i <= n + 1 do
    if s:sub(i, i) == '"' then
      local j = s:find('"', i + 1, true) or n + 1
      out[#out + 1] = s:sub(i + 1, j - 1)
      i = (s:find(",", j, true) or n + 1) + 1
    else
      local j = s:find(",", i, true) or n + 1
      out[#out + 1] = s:sub(i, j - 1):match("^%s*(.-)%s*$")
      i = j + 1
    end
  end
  return out
end

-- Whether a line matches one of pats as the engine matches them: a
-- "^..." Lua pattern, or a literal the line starts with; a counted spec
-- by its pattern. pats: one spec or a list.
function M.any(line, pats)
  if type(pats) ~= "table" or pats.count ~= nil then pats = { pats } end
  for _, pt in ipairs(pats) do
    if type(pt) == "table" then pt = pt[1] end
    if pt:sub(1, 1) == "^" then
      if line:find(pt) then return true end
    elseif line:sub(1, #pt) == pt then
      return true
    end
  end
  return false
end

-- The command's name, for timeouts and messages: AT+CGATT? -> AT+CGATT.
function M.name(cmd)
  return cmd:match("^([Aa][Tt][%+%^%$%%]?[%w_]*)") or cmd
end

return M
