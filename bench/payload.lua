-- athost contender of bench/payload.sh (`make bench`): one counted payload
-- over a pty from bench/payload.c.
--
--   ./athost bench/payload.lua path=/dev/pts/N size=67108864 [mode=held|streamed]
--
-- held: port:cmd("AT+READ") with the counted reply pattern, the payload in
-- r.payload (one Lua string); streamed: the header by expect, then
-- port:read(size, {into = file}) to /dev/null, never held whole.
-- Prints "athost: <MiB/s> MiB/s".
local athost = require("athost")
local args = ... or {}
local path = assert(args.path, "usage: athost bench/payload.lua path=PTY size=N [mode=held|streamed]")
local size = assert(tonumber(args.size), "size= must be a number")
local mode = args.mode or "held"

local port = assert(athost.open(path, { baud = 115200, timeout = 120000 }))
local held
local t0 = athost.now()
if mode == "held" then
  local r = assert(port:cmd("AT+READ", { reply = { "^%+READ: (%d+)", count = 1, max = size } }))
  assert(#r.payload == size, "payload of " .. #r.payload .. " bytes")
  held = r.payload
else
  local sink = assert(io.open("/dev/null", "wb"))
  assert(port:send("AT+READ\r"))
  local m = assert(port:expect("^%+READ: (%d+)"))
  assert(tonumber(m[1]) == size)
  assert(port:read(size, { into = sink }) == size)
  assert(port:expect("OK"))
  sink:close()
end
local ms = athost.now() - t0
if held then
  -- The bytes, not only their count (after the timing): bench/payload.c
  -- repeats one 64 KiB block of a linear congruential sequence; 17 slices
  -- spread over the payload must each be that block.
  local x, t = 12345, {}
  for i = 1, 65536 do
    x = (x * 1103515245 + 12345) % 4294967296
    t[i] = string.char((x >> 16) & 0xff)
  end
  local block = table.concat(t)
  local blocks = size // 65536
  for k = 0, 16 do
    local b = (blocks > 0) and (k * (blocks - 1) // 16) or 0
    local want = block:sub(1, math.min(65536, size - b * 65536))
    assert(held:sub(b * 65536 + 1, b * 65536 + #want) == want,
      "payload bytes differ in block " .. b)
  end
end
print(string.format("athost: %.1f MiB/s", size / 1048576 / (ms / 1000)))
port:close()
