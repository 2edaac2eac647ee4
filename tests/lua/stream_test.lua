-- Big payloads: port:read(n, {into = sink}) streams the bytes to a file or
-- a function as they come (never held whole), and counted payloads and
-- reads bigger than the engine's usual buffer arrive intact. Through real
-- ptys, with a fake modem on the master (tests/lib/ptymodem.lua).
local t = require("t")
local athost = require("athost")

local fake = require("ptymodem").fake

-- n bytes that differ at every 256-byte block, with every byte value.
local function bytes(n)
  local block = {}
  for i = 0, 251 do block[#block + 1] = string.char((i * 7 + 13) % 256) end
  block = table.concat(block)
  local parts, len, i = {}, 0, 0
  while len < n do
    local s = string.pack(">I4", i) .. block
    parts[#parts + 1] = s
    len, i = len + #s, i + 1
  end
  return table.concat(parts):sub(1, n)
end

local send_pieces = require("ptymodem").send_pieces

t.test("read into a function: every byte once, in order, and the count", function()
  local data = bytes(3 * 1048576 + 17)
  local p, finish = fake(function(m) send_pieces(m, data) end)
  local chunks, calls = {}, 0
  local n = assert(p:read(#data, { timeout = 60000, into = function(chunk)
    calls = calls + 1
    chunks[#chunks + 1] = chunk
  end }))
  t.eq(n, #data, "the count returned")
  local got = table.concat(chunks)
  t.eq(#got, #data, "bytes the sink had")
  t.ok(got == data, "the content differs")
  t.ok(calls > 1, "the bytes came in one call: not streamed")
  t.eq(assert(p:readline()), "OK", "what follows the read")
  finish()
end)

t.test("read into a file: the file holds the bytes", function()
  local data = bytes(1048576 + 5)
  local path = os.tmpname()
  local p, finish = fake(function(m) send_pieces(m, data) end)
  local f = assert(io.open(path, "wb"))
  t.eq(assert(p:read(#data, { timeout = 60000, into = f })), #data, "the count")
  f:close()
  f = assert(io.open(path, "rb"))
  local got = f:read("a")
  f:close()
  os.remove(path)
  t.ok(got == data, "the file's content differs")
  t.eq(assert(p:readline()), "OK", "what follows the read")
  finish()
end)

t.test("a sink that fails ends the read with EIO naming its error", function()
  local p, finish = fake(function(m) send_pieces(m, bytes(200000)) end)
  local r, err, code = p:read(200000, { into = function() error("disk full", 0) end })
  t.eq(r, nil, "no count")
  t.eq(code, "EIO", "code")
  t.match(err, "disk full", "the sink's error")
  t.match(err, "of 200000 bytes", "how far it got")
  finish()
end)

t.test("a streamed read that times out says how many bytes came", function()
  local p, finish = fake(function(m) assert(m:send(bytes(1000))) end)
  local seen = 0
  local r, err, code = p:read(5000, { timeout = 300, into = function(c) seen = seen + #c end })
  t.eq(r, nil, "no count")
  t.eq(code, "ETIMEDOUT", "code")
  t.match(err, "1000 of 5000 bytes", "the count in the message")
  t.eq(seen, 1000, "bytes the sink had")
  finish()
end)

t.test("a sink that closes the port ends the read with ECLOSED", function()
  -- what fits in the pty: the modem's sends end though nobody reads
  local p, finish = fake(function(m) assert(m:send(bytes(3000))) end)
  local r, err, code = p:read(5000, { into = function() p:close() end })
  t.eq(r, nil, "no count")
  t.eq(code, "ECLOSED", "code")
  t.match(err, "closed while a flow waited", "message")
  finish()
end)

t.test("into must be a file or a function", function()
  local p, finish = fake(function() end)
  local ok, err = pcall(p.read, p, 10, { into = 42 })
  t.eq(ok, false, "accepted a number")
  t.match(err, "into must be an open file or a function", "message")
  finish()
end)

t.test("a counted payload of several MiB arrives whole", function()
  local data = bytes(5 * 1048576 + 3)
  local p, finish = fake(function(m)
    local line = assert(m:readline())
    assert(line == "AT+READ", line)
    assert(m:send("\r\n+READ: " .. #data .. "\r\n"))
    send_pieces(m, data)
  end)
  local r = assert(p:cmd("AT+READ", { timeout = 60000,
    reply = { "^%+READ: (%d+)", count = 1, max = 8 * 1048576 } }))
  t.eq(#r.payload, #data, "payload length")
  t.ok(r.payload == data, "the payload differs")
  t.eq(r.final, "OK", "final")
  finish()
end)

-- Above 1 MiB a payload becomes its string in the block it arrived in
-- (ath_chat_take): what came around it must be untouched.
t.test("a big counted URC among lines: payload whole, lines and URCs around it kept", function()
  local data = bytes(2 * 1048576 + 5)
  local p, finish = fake(function(m)
    local line = assert(m:readline())
    assert(line == "AT+CGATT?", line)
    assert(m:send("\r\n+CREG: 1\r\n+MSUB: \"t/1\"," .. #data .. " byte,"))
    for at = 1, #data, 65537 do assert(m:send(data:sub(at, at + 65536))) end
    assert(m:send("\r\n+CREG: 5\r\n\r\n+CGATT: 1\r\n\r\nOK\r\n"))
  end)
  local got, creg = {}, {}
  p:on({ "^%+MSUB: \"([^\"]*)\",(%d+) byte,", count = 2, max = 4 * 1048576,
    trailer = false }, function(m) got[#got + 1] = m end)
  p:on("^%+CREG: (%d)", function(m) creg[#creg + 1] = m[1] end)
  local r = assert(p:cmd("AT+CGATT?", { timeout = 60000 }))
  t.eq(#got, 1, "MSUB URCs")
  t.eq(got[1][1], "t/1", "topic")
  t.ok(got[1].payload == data, "the payload differs")
  t.eq(table.concat(creg, ","), "1,5", "the URCs around the payload")
  t.eq(r.lines[1], "+CGATT: 1", "the reply after the payload")
  t.eq(r.final, "OK", "final")
  finish()
end)

t.test("a big read held whole, then what follows it", function()
  local data = bytes(3 * 1048576 + 1)
  local p, finish = fake(function(m) send_pieces(m, data) end)
  local got = assert(p:read(#data, { timeout = 60000 }))
  t.eq(#got, #data, "length")
  t.ok(got == data, "the bytes differ")
  t.eq(assert(p:readline()), "OK", "what follows the read")
  got = nil
  collectgarbage() -- a taken block is freed as any string
  finish()
end)

t.test("send with wait = false: queued in order while another flow waits to drain", function()
  local big = bytes(300 * 1024) -- more than a pty holds: the sender waits
  local p, finish = fake(function(m)
    local want = #big + 8
    local got = assert(m:read(want, { timeout = 30000 }))
    return got
  end)
  local sender = athost.spawn(function() return p:send(big) end)
  -- The spawned flow runs when this one yields, until it waits for the
  -- port to drain: a zero sleep is the yield, not a delay.
  athost.sleep(0)
  t.eq(sender.done, nil, "the sender is not waiting: the pty took 300 KiB")
  t.eq(p:send("tail", { wait = false }), true, "no wait, no 'busy'")
  t.eq(p:send("-end", { wait = false }), true, "again")
  t.eq(sender:join(), true, "the waiting sender's result")
  local got = finish()
  t.eq(#got, #big + 8, "bytes the modem read")
  t.ok(got == big .. "tail-end", "the bytes out of order or changed")
end)

t.run()
