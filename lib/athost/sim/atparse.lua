-- AT command lines as a module parses them (ITU-T V.250, 3GPP TS 27.007),
-- for the virtual modems: the command's name and form, its parameters,
-- and the Luat \HH escapes. Pure Lua, no I/O; shared by every model.
--
--   local c = atparse.command('AT+MPUB="t",0,0,"a\\22b"')
--   -- c.name "+MPUB", c.op "set", c.rest '"t",0,0,"a\\22b"'
--   local ps = atparse.params(c.rest)
--   -- ps[1] = {value = "t", quoted = true}, ps[2] = {value = "0"}, ...
--   atparse.unescape(ps[4].value)   -- 'a"b'
local M = {}

-- Splits a command line (without its CR) into a table:
--   name  "+CGATT", "+MPUB", "&F", "E", "I", or "" for a bare AT;
--         upper case, as a module compares names case-insensitively
--   op    "exec" (AT+X), "read" (AT+X?), "test" (AT+X=?), "set" (AT+X=...)
--   rest  the parameter text of a set command; for basic commands the
--         digits after the letter ("0" in ATE0), op "set" when present
--   line  the line as given
-- Returns nil when the line is not an AT command at all (no AT prefix, or
-- trailing garbage after the name).
local function command(line)
  local body = line:match("^[Aa][Tt](.*)$")
  if not body or line:sub(1, 2) == "aT" or line:sub(1, 2) == "At" then
    return nil
  end
  if body == "" then return { name = "", op = "exec", rest = "", line = line } end
  local name, tail = body:match("^([%+%^%$%%%*#][%w_]+)(.*)$")
  if name then
    local c = { name = name:upper(), line = line, rest = "" }
    if tail == "" then
      c.op = "exec"
    elseif tail == "?" then
      c.op = "read"
    elseif tail == "=?" then
      c.op = "test"
    elseif tail:sub(1, 1) == "=" then
      c.op, c.rest = "set", tail:sub(2)
    else
      return nil
    end
    return c
  end
  -- Basic commands: one letter or &letter, an optional number, and
  -- (for a few) a query.
  local letter, num, q = body:match("^(&?%a)(%d*)(%??)$")
  if not letter then return nil end
  local c = { name = letter:upper(), line = line, rest = num }
  if q == "?" then
    c.op = "read"
  else
    c.op = num ~= "" and "set" or "exec"
  end
  return c
end

-- Parses are kept: the same lines come again and again (a station's
-- modems all answer the same commands), and a kept parse is a table
-- lookup instead of a few pattern matches and new strings. Short lines
-- only (longer ones carry data: a topic, a payload), and a few hundred
-- at most (then the store starts afresh). The tables returned are shared
-- between callers, which only read them.
local KEEP_LEN, KEEP_MAX = 48, 256

local function keeper(parse)
  local kept, n = {}, 0
  return function(s)
    local v = kept[s]
    if v ~= nil then return v or nil end
    local r, err = parse(s)
    if #s <= KEEP_LEN and (r or not err) then
      if n >= KEEP_MAX then kept, n = {}, 0 end
      kept[s], n = r or false, n + 1
    end
    return r, err
  end
end

M.command = keeper(command)

-- Parses a parameter list: comma-separated values, each either a quoted
-- string (commas allowed inside, no escapes: Luat's \HH are decoded by the
-- commands that take them) or bare text, trimmed of blanks. An empty list
-- gives {}; "a,,b" gives an empty middle parameter.
-- Returns the list of {value =, quoted =} or nil, what is wrong.
local function params(s)
  local out, i, n = {}, 1, #s
  if s:match("^%s*$") then return out end
  while true do
    i = s:find("[^ \t]", i) or n + 1
    local p
    if s:sub(i, i) == '"' then
      local j = s:find('"', i + 1, true)
      if not j then return nil, "unterminated string" end
      p = { value = s:sub(i + 1, j - 1), quoted = true }
      i = s:find("[^ \t]", j + 1) or n + 1
      local c = s:sub(i, i)
      if c ~= "," and c ~= "" then
        return nil, "text after a quoted string"
      end
    else
      local j = s:find(",", i, true) or n + 1
      local v = s:sub(i, j - 1):match("^(.-)[ \t]*$")
      if v:find('"', 1, true) then return nil, "stray quote" end
      p = { value = v, quoted = false }
      i = j
    end
    out[#out + 1] = p
    if i > n then return out end
    i = i + 1                       -- past the comma
    if i > n then
      out[#out + 1] = { value = "", quoted = false }
      return out
    end
  end
end

M.params = keeper(params)

-- An integer parameter in [lo, hi], or nil. Quoted numbers count too
-- (AT+MIPSTART="host","1883" in reference 003).
-- The values read are kept (false: not an integer), as parses are above:
-- the same few ("0", "1", "60", a port) come in every dialogue.
local ints, nints = {}, 0

function M.int(p, lo, hi)
  if not p then return nil end
  local s = p.value
  local v = ints[s]
  if v == nil then
    v = s:match("^%s*([%+%-]?%d+)%s*$")
    v = v and math.tointeger(tonumber(v)) or false
    if #s <= KEEP_LEN then
      if nints >= KEEP_MAX then ints, nints = {}, 0 end
      ints[s], nints = v, nints + 1
    end
  end
  if not v or (lo and v < lo) or (hi and v > hi) then return nil end
  return v
end

-- A string parameter, quoted or bare (MCONFIG takes both, reference 003);
-- nil when absent.
function M.str(p)
  return p and p.value
end

-- Decodes the Luat escapes inside AT+MPUB's quotes: \HH is the byte 0xHH
-- (\22 '"', \0D CR, \0A LF, \5C '\'). A backslash not followed by two hex
-- digits stands for itself.
function M.unescape(s)
  return (s:gsub("\\(%x%x)", function(h)
    return string.char(tonumber(h, 16))
  end))
end

-- The inverse for the bytes a quoted AT string cannot hold.
local escapes = { ['"'] = "\\22", ["\r"] = "\\0D", ["\n"] = "\\0A",
                  ["\\"] = "\\5C" }

function M.escape(s)
  return (s:gsub('["\r\n\\]', escapes))
end

-- Hex text (either case, even length) to bytes, or nil.
function M.unhex(h)
  if #h % 2 ~= 0 or h:find("%X") then return nil end
  return (h:gsub("%x%x", function(b) return string.char(tonumber(b, 16)) end))
end

-- Bytes to upper-case hex, as modules print HEX-mode payloads.
function M.hex(s)
  return (s:gsub(".", function(c) return string.format("%02X", c:byte()) end))
end

return M
