-- rfc2217:HOST:PORT ports against a real ser2net (telnet(rfc2217)
-- accepter) fronting a virtual Air720 served on a pty by another athost:
-- an AT dialogue, line settings that reach the device, bytes 0xFF both
-- ways, scripts/probe.lua and clouds/mqtt.lua end to end, and the errors a
-- user meets (nothing listening, a raw TCP server).
local t = require("t")
local athost = require("athost")
local cli = require("cli")

local X = require("matrix").new("air720")
local DIR, q, uid, poll = X.dir, X.q, X.uid, X.poll
local P = require("proc").new(DIR)
local BIN, ROOT = cli.BIN, cli.ROOT
local IMEI = "862991419835" .. string.format("%03d", math.random(0, 999))

local function free_port()
  local l = assert(athost.listen("127.0.0.1", 0))
  local n = l.port
  l:close()
  return n
end

-- What stty says of the device's speed (ser2net's view: the termios it
-- set on the pty), as a number.
local function device_speed(link)
  local out = P.shell("stty -F " .. q(link))
  return tonumber(out:match("speed (%d+) baud")), out
end

-- A virtual Air720 on a pty and ser2net in front of it; returns the
-- rfc2217: spec and the pty's link. Both stop when the test ends.
local function rig()
  local id = uid()
  local link = DIR .. "/tty-" .. id
  local sim = P.background(string.format("%s %s/scripts/sim/air720.lua link=%s imei=%s",
    BIN, ROOT, q(link), IMEI), "sim-" .. id)
  poll("the virtual modem's pty", 15000, function()
    return (t.slurp(sim .. ".out") or ""):find("\n"), t.slurp(sim .. ".err")
  end)
  local port = free_port()
  local yaml = DIR .. "/ser2net-" .. id .. ".yaml"
  cli.write(yaml, string.format([[
connection: &dut
  accepter: telnet(rfc2217),tcp,127.0.0.1,%d
  connector: serialdev,%s,115200n81,local
  options:
    kickolduser: true
]], port, link))
  local s2n = P.background(string.format("ser2net -n -u -c %s -P %s/ser2net-%s.pid",
    q(yaml), DIR, id), "ser2net-" .. id)
  poll("ser2net listening on " .. port, 15000, function()
    if t.slurp(s2n .. ".rc") then
      error("ser2net ended: " .. (t.slurp(s2n .. ".err") or ""), 0)
    end
    local out = P.shell("ss -ltnH")
    return out:find("127%.0%.0%.1:" .. port .. "%s"), out
  end)
  return "rfc2217:127.0.0.1:" .. port, link
end

P.test("an AT dialogue; the baud rate reaches the device through ser2net", function()
  local spec, link = rig()
  local p = assert(athost.open(spec, { baud = 57600, timeout = 5000 }))
  t.eq(p.name, spec, "the port's name")
  t.eq(p.remote.baud, 57600, "the baud rate ser2net answered")
  t.eq(p.remote.databits, 8, "data bits ser2net answered")
  t.eq(p.remote.parity, "none", "parity ser2net answered")
  t.eq(p.remote.stopbits, 1, "stop bits ser2net answered")
  t.eq(device_speed(link), 57600, "the device's speed while connected")
  local r = assert(p:cmd("AT"))
  t.eq(r.final, "OK", "AT")
  r = assert(p:cmd("AT+CGSN", { reply = "^(%d+)$" }))
  t.eq(r[1], IMEI, "the IMEI through ser2net")
  -- A change later: SET-BAUDRATE on the open connection.
  assert(p:set { baud = 9600, parity = "even" })
  poll("ser2net's answer to SET-BAUDRATE 9600", 5000, function()
    return p.remote.baud == 9600, p.remote.baud
  end)
  t.eq(p.remote.parity, "even", "parity after p:set")
  t.eq(device_speed(link), 9600, "the device's speed after p:set")
  -- DTR/RTS, a break and a purge are accepted by the server.
  assert(p:set { dtr = true, rts = false })
  assert(p:set { brk = true })
  assert(p:set { brk = false })
  assert(p:set { purge = "both" })
  t.eq(assert(p:cmd("AT")).final, "OK", "AT after the control commands")
  p:close()
end)

P.test("bytes 0xFF cross both ways in an AT dialogue", function()
  local spec = rig()
  local p = assert(athost.open(spec))
  assert(p:cmd("AT")) -- the module's autobaud sees AT first
  assert(p:cmd("ATE1"))
  -- The echo carries the line back: 0xFF out (doubled on the wire) and
  -- back (IAC IAC from ser2net).
  local line = "AT+X=\"\255\255a\255\""
  assert(p:sendline(line))
  local got = assert(p:readline())
  t.eq(got, line, "the echo of a line with three 0xFF")
  local fin = assert(p:readline())
  t.eq(fin, "ERROR", "the module's answer to an unknown command")
  assert(p:cmd("ATE0"))
  p:close()
end)

P.test("scripts/probe.lua over rfc2217 identifies the module", function()
  local spec = rig()
  cli.in_tmpdir(function(dir)
    local code, out, err = cli.athost(dir, "-b 115200 " .. ROOT .. "/scripts/probe.lua -p " .. q(spec))
    t.eq(code, 0, "exit code (stderr: " .. err .. ")")
    t.match(out, "profile%s+air720", "the profile")
    t.match(out, "imei%s+" .. IMEI, "the IMEI")
    t.match(out, "port%s+" .. spec:gsub("%p", "%%%0"), "the port")
  end)
end)

P.test("clouds/mqtt.lua over rfc2217: messages with 0xFF both ways", function()
  local spec = rig()
  local r = X.mqtt { port = spec, qos = 1, up = "up \255\254 via ser2net " .. uid(),
    down = "down \255 via ser2net \255\255" }
  t.match(r.tr, "rfc2217:127.0.0.1", "the transcript names the rfc2217 port")
end)

P.test("errors: nothing listening exits 3; a raw TCP server is no RFC 2217 server", function()
  local port = free_port()
  cli.in_tmpdir(function(dir)
    local code, _, err = cli.athost(dir, "-p rfc2217:127.0.0.1:" .. port
      .. " -e 'require(\"athost\").port()'")
    t.eq(code, 3, "exit code")
    t.match(err, "ECONNREFUSED", "the message")
    t.match(err, "rfc2217:127.0.0.1:" .. port, "the message names the port")
  end)
  -- A listener that never speaks Telnet: the open fails at its timeout
  -- and says why.
  local l = assert(athost.listen("127.0.0.1", 0))
  local p, err, code = athost.open("rfc2217:127.0.0.1:" .. l.port, { timeout = 300 })
  t.eq(p, nil, "no port")
  t.eq(code, "ETIMEDOUT", "code")
  t.match(err, "RFC 2217 negotiation", "the message says what did not happen")
  l:close()
  t.raises(function() athost.open("rfc2217:127.0.0.1:1", { parity = "x" }) end,
    "parity", "a bad option raises")
end)

X.run()
