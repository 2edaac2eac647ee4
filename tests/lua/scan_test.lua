-- `athost --scan` on ptys linked as ttyUSB*/ttyACM* in a fake /dev, with a
-- fake sysfs tree for their USB facts (ATHOST_DEV, ATHOST_SYSFS): the
-- port that answers is identified, a silent one is reported silent, one
-- that another program holds is reported busy and never written to.
local t = require("t")
local athost = require("athost")
local cli = require("cli")

local DIR = t.tmpdir()
local P = require("proc").new(DIR)
local q, poll = P.q, P.poll
local DEV, SYS = DIR .. "/dev", DIR .. "/sys"
local IMEI = "86299141983" .. string.format("%04d", math.random(0, 9999))

local function mkdirs(p) assert(os.execute("mkdir -p " .. q(p))) end
local function put(path, s)
  mkdirs(path:match("^(.*)/[^/]*$"))
  cli.write(path, s .. "\n")
end
local function link(target, at)
  mkdirs(at:match("^(.*)/[^/]*$"))
  assert(os.execute("ln -sfn " .. q(target) .. " " .. q(at)))
end

-- A USB module with two ttys (interfaces 0 and 2) and another with an
-- ACM port (interface 4), as the kernel lays them out.
local USB1 = SYS .. "/devices/pci0000:00/0000:00:14.0/usb1/1-2"
put(USB1 .. "/idVendor", "1286")
put(USB1 .. "/idProduct", "4e3d")
put(USB1 .. "/manufacturer", "AirM2M")
put(USB1 .. "/product", "Air720UG")
put(USB1 .. "/1-2:1.0/bInterfaceNumber", "00")
mkdirs(USB1 .. "/1-2:1.0/ttyUSB0")
put(USB1 .. "/1-2:1.2/bInterfaceNumber", "02")
mkdirs(USB1 .. "/1-2:1.2/ttyUSB2")
local USB2 = SYS .. "/devices/pci0000:00/0000:00:14.0/usb1/1-3"
put(USB2 .. "/idVendor", "2c7c")
put(USB2 .. "/idProduct", "0125")
put(USB2 .. "/product", "EC25")
put(USB2 .. "/1-3:1.4/bInterfaceNumber", "04")
link("../../../devices/pci0000:00/0000:00:14.0/usb1/1-2/1-2:1.0/ttyUSB0",
  SYS .. "/class/tty/ttyUSB0/device")
link("../../../devices/pci0000:00/0000:00:14.0/usb1/1-2/1-2:1.2/ttyUSB2",
  SYS .. "/class/tty/ttyUSB2/device")
link("../../../devices/pci0000:00/0000:00:14.0/usb1/1-3/1-3:1.4",
  SYS .. "/class/tty/ttyACM0/device")
link("../../ttyUSB2", DEV .. "/serial/by-id/usb-AirM2M_Air720UG-if02-port0")

local function scan(extra)
  local code, out, err
  cli.in_tmpdir(function(dir)
    code, out, err = cli.athost(dir, nil, string.format("ATHOST_DEV=%s ATHOST_SYSFS=%s %s --scan %s",
      q(DEV), q(SYS), cli.BIN, extra or "timeout=1500"))
  end)
  return code, out, err
end

P.test("--scan: the AT port identified, a silent port, a busy port left alone", function()
  -- ttyUSB2: a virtual Air720 (another process), the AT port.
  local sim = P.background(string.format("%s %s/scripts/sim/air720.lua link=%s imei=%s",
    cli.BIN, cli.ROOT, q(DEV .. "/ttyUSB2"), IMEI), "sim")
  poll("the virtual modem's pty", 15000, function()
    return (t.slurp(sim .. ".out") or ""):find("\n"), t.slurp(sim .. ".err")
  end)
  -- ttyUSB0: a port that never answers (a module's diagnostics port).
  local silent = assert(athost.pty { link = DEV .. "/ttyUSB0" })
  -- ttyACM0: held by another program (here this test, as athost holds a
  -- port: flock and exclusive mode).
  local busy_master = assert(athost.pty { link = DEV .. "/ttyACM0" })
  local holder = assert(athost.open(DEV .. "/ttyACM0"))

  local code, out, err = scan()
  t.eq(code, 0, "exit code (stderr: " .. err .. ")")
  local lines = {}
  for l in out:gmatch("[^\n]+") do lines[#lines + 1] = l end
  -- in port order: ttyUSB0, ttyUSB2, ttyACM0, each with its result below
  t.match(lines[1], "^" .. DEV:gsub("%p", "%%%0") .. "/ttyUSB0%s+1286:4e3d%s+if00%s+AirM2M Air720UG$",
    "ttyUSB0's line")
  t.match(lines[2], "^%s+silent: no answer to AT$", "ttyUSB0 is silent")
  t.match(lines[3], "/ttyUSB2%s+1286:4e3d%s+if02%s+AirM2M Air720UG  %(by%-id: usb%-AirM2M_Air720UG%-if02%-port0%)$",
    "ttyUSB2's line with its by-id name")
  t.match(lines[4], "^%s+answers AT, profile air720, ", "ttyUSB2 answers")
  t.match(lines[4], "firmware %S+", "the firmware")
  t.match(lines[4], "IMEI " .. IMEI .. "$", "the IMEI")
  t.match(lines[5], "/ttyACM0%s+2c7c:0125%s+if04%s+EC25$", "ttyACM0's line")
  t.match(lines[6], "^%s+busy: in use by another program: not probed$", "ttyACM0 is busy")
  t.eq(lines[7], "3 port(s), 1 answering AT", "the summary")

  -- What reached the ports: AT on the silent one, nothing on the busy one.
  local got = assert(silent:recv(100, { timeout = 1000 }))
  t.match(got, "^AT\r", "the probe sent AT to the silent port")
  t.eq(busy_master.pending, 0, "bytes that reached the busy port")
  local r = busy_master:recv(100, { timeout = 200 })
  t.eq(r, nil, "nothing arrives at the busy port")
  -- and its holder goes on undisturbed
  assert(holder:send("still mine\r\n"))
  t.eq(assert(busy_master:readline()), "still mine", "the holder's port still works")
  holder:close()
  silent:close()
  busy_master:close()
end)

P.test("--scan --json: one event a port", function()
  local sim = P.background(string.format("%s %s/scripts/sim/air720.lua link=%s imei=%s",
    cli.BIN, cli.ROOT, q(DEV .. "/ttyUSB2"), IMEI), "sim2")
  poll("the virtual modem's pty", 15000, function()
    return (t.slurp(sim .. ".out") or ""):find("\n"), t.slurp(sim .. ".err")
  end)
  os.remove(DEV .. "/ttyUSB0")
  os.remove(DEV .. "/ttyACM0")
  local code, out, err = scan("--json timeout=1500")
  t.eq(code, 0, "exit code (stderr: " .. err .. ")")
  local ev
  for l in out:gmatch("[^\n]+") do
    local ok, e = pcall(athost.json.decode, l)
    if ok and type(e) == "table" and e.event == "data" and e.name == "port" then ev = e.data end
  end
  t.ok(ev, "a port event in: " .. out)
  t.eq(ev.path, DEV .. "/ttyUSB2", "path")
  t.eq(ev.usb, "1286:4e3d", "usb")
  t.eq(ev.interface, 2, "interface")
  t.eq(ev.state, "at", "state")
  t.eq(ev.profile, "air720", "profile")
  t.eq(ev.imei, IMEI, "imei")
end)

P.test("--scan with no ports says so", function()
  local empty = DIR .. "/empty"
  mkdirs(empty)
  local code, out
  cli.in_tmpdir(function(dir)
    code, out = cli.athost(dir, nil, string.format("ATHOST_DEV=%s ATHOST_SYSFS=%s %s --scan",
      q(empty), q(SYS), cli.BIN))
  end)
  t.eq(code, 0, "exit code")
  t.match(out, "no serial ports", "stdout")
end)

local ok, err = pcall(t.run)
os.execute("rm -rf " .. q(DIR))
if not ok then error(err, 0) end
