-- Fuzz target: lib/athost/sim/atparse.lua, the virtual modems' reading of
-- an AT command line. The input is the line (first byte: which checks).
-- Invariants: command() gives nil or a well-formed table whose parts
-- spell the line; params() gives a list of {value, quoted} or nil and a
-- reason, never raises; a quoted value holds no quote; int() gives an
-- integer within its bounds or nil; unescape undoes escape, unhex undoes
-- hex.
local at = require("athost.sim.atparse")

local OPS = { exec = true, read = true, test = true, set = true }

return function(data)
  local line = data
  local c = at.command(line)
  if c then
    assert(OPS[c.op], "op " .. tostring(c.op))
    assert(c.line == line, "line")
    assert(c.name == c.name:upper(), "name in upper case")
    assert(type(c.rest) == "string", "rest")
    if c.op == "set" and c.name:find("^[%+%^%$%%%*#]") then
      assert(line:sub(-#c.rest - 1) == "=" .. c.rest or c.rest == "", "rest is the tail")
    end
  end
  local ps, why = at.params(c and c.rest or line)
  if ps then
    for _, p in ipairs(ps) do
      assert(type(p.value) == "string", "value")
      if p.quoted then
        assert(not p.value:find('"', 1, true), "a quote in a quoted value")
      end
      local v = at.int(p, -1000, 1000)
      assert(v == nil or (math.type(v) == "integer" and v >= -1000 and v <= 1000),
        "int out of bounds")
    end
  else
    assert(type(why) == "string", "params gives a reason")
  end
  assert(at.unescape(at.escape(line)) == line, "unescape(escape(s)) ~= s")
  assert(at.unhex(at.hex(line)) == line, "unhex(hex(s)) ~= s")
  local u = at.unhex(line)
  assert(u == nil or #u * 2 == #line, "unhex length")
end
