-- `athost --scan`: the serial ports of this machine and which of them
-- answers AT, as ModemManager's probing does, but read-only for the ports
-- others use.
--
-- A USB module exposes several ttys (diagnostics, GNSS/NMEA, modem, AT);
-- this finds them in /dev (ttyUSB*, ttyACM*, and the /dev/serial/by-id
-- names that point at them), reads the USB vendor:product and interface
-- number from sysfs, and sends each `AT`: the ones that answer are
-- identified as flows do (athost.modem: AT+CGMI/CGMM/CGMR/ATI, the
-- profile) with the IMEI (AT+CGSN). A port is opened the way athost
-- always opens one (an advisory flock and the tty's exclusive mode): one
-- that another program holds so is reported busy and left alone; no
-- command that changes the module's state is sent (not even ATE0).
--
-- ATHOST_DEV (default /dev) and ATHOST_SYSFS (default /sys) move both
-- roots, for tests (a fake sysfs tree and ptys linked as ttyUSB*).
local athost = require("athost")
local modem = require("athost.modem")

local M = {}

local function slurp(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s and s:match("^%s*(.-)%s*$")
end

local function dirname(p) return p:match("^(.*)/[^/]*$") or "/" end

-- The USB facts of tty NAME from sysfs: vendor, product ids, interface
-- number, manufacturer and product strings; {} when it is no USB tty.
function M.usb(sysfs, name)
  local dev = athost.realpath(sysfs .. "/class/tty/" .. name .. "/device")
  local u = {}
  local dir = dev
  while dir and #dir > #sysfs do
    if not u.interface then
      local n = slurp(dir .. "/bInterfaceNumber")
      if n then u.interface = tonumber(n, 16) end
    end
    local vid = slurp(dir .. "/idVendor")
    if vid then
      u.vendor_id, u.product_id = vid, slurp(dir .. "/idProduct")
      u.manufacturer, u.product = slurp(dir .. "/manufacturer"), slurp(dir .. "/product")
      u.serial = slurp(dir .. "/serial")
      break
    end
    dir = dirname(dir)
  end
  return u
end

-- The serial ports under dev: ttyUSB*, ttyACM* and what serial/by-id
-- names, each { name, path, by_id }. Sorted by kind and number.
function M.ports(dev)
  local list, byname = {}, {}
  local function add(name)
    if not byname[name] then
      byname[name] = { name = name, path = dev .. "/" .. name }
      list[#list + 1] = byname[name]
    end
    return byname[name]
  end
  for _, n in ipairs(athost.dir(dev) or {}) do
    if n:match("^ttyUSB%d+$") or n:match("^ttyACM%d+$") then add(n) end
  end
  local byid = dev .. "/serial/by-id"
  for _, n in ipairs(athost.dir(byid) or {}) do
    local target = athost.readlink(byid .. "/" .. n)
    local name = target and target:match("([^/]+)$")
    if name and (name:match("^ttyUSB%d+$") or name:match("^ttyACM%d+$")) then
      add(name).by_id = n
    end
  end
  table.sort(list, function(a, b)
    local ka, na = a.name:match("^(%a+)(%d+)$")
    local kb, nb = b.name:match("^(%a+)(%d+)$")
    if ka ~= kb then return ka > kb end -- ttyUSB before ttyACM
    return tonumber(na) < tonumber(nb)
  end)
  return list
end

-- Opens e.path, sends AT, and identifies what answers. Fills e.state:
-- "at" (answers), "silent", "busy" or "error" (e.note says why).
function M.probe(e, o)
  local p, err, code = athost.open(e.path, { baud = o.baud, timeout = o.timeout,
    name = e.name })
  if not p then
    if code == "EBUSY" then
      e.state, e.note = "busy", "in use by another program: not probed"
    else
      e.state, e.note = "error", err
    end
    return e
  end
  local answered
  for _ = 1, o.tries do
    if p:cmd("AT", { timeout = o.timeout }) then answered = true break end
  end
  if not answered then
    e.state, e.note = "silent", "no answer to AT"
    p:close()
    return e
  end
  e.state = "at"
  local m = modem.new(p, { gap = 0 })
  local ok, why = pcall(m.identify, m)
  e.manufacturer, e.model_name, e.firmware = m.info.cgmi, m.info.cgmm, m.info.cgmr
  e.profile = m.profile and m.profile.name
  if not ok then e.note = tostring(why) end
  local r = p:cmd("AT+CGSN", { timeout = 2000, reply = false })
  for _, l in ipairs(r and r.lines or {}) do
    e.imei = e.imei or l:match("(%d%d%d%d%d%d%d%d%d%d%d%d%d%d%d?%d?%d?)")
  end
  p:close()
  return e
end

local function describe(e)
  if e.state == "at" then
    local parts = { "answers AT" }
    if e.profile then parts[#parts + 1] = "profile " .. e.profile end
    local who = table.concat({ e.manufacturer or "", e.model_name or "" }, " "):match("^%s*(.-)%s*$")
    if who ~= "" then parts[#parts + 1] = who end
    if e.firmware then parts[#parts + 1] = "firmware " .. e.firmware end
    if e.imei then parts[#parts + 1] = "IMEI " .. e.imei end
    return table.concat(parts, ", ")
  end
  return e.state .. (e.note and (": " .. e.note) or "")
end

-- Runs the scan; args: baud=, timeout= (ms per AT), tries=.
function M.run(args)
  args = args or {}
  local dev = os.getenv("ATHOST_DEV") or "/dev"
  local sysfs = os.getenv("ATHOST_SYSFS") or "/sys"
  local o = { baud = tonumber(args.baud) or 115200, timeout = tonumber(args.timeout) or 500,
    tries = tonumber(args.tries) or 2 }
  local ports = M.ports(dev)
  if #ports == 0 then
    print("no serial ports (ttyUSB*, ttyACM*) in " .. dev)
    return
  end
  -- All at once: a silent port costs its timeouts once, not per port.
  local tasks = {}
  for i, e in ipairs(ports) do
    local u = M.usb(sysfs, e.name)
    for k, v in pairs(u) do e[k] = v end
    tasks[i] = athost.spawn(M.probe, e, o)
  end
  for _, tk in ipairs(tasks) do tk:join() end
  local answering = 0
  for _, e in ipairs(ports) do
    local usb = e.vendor_id and string.format("%s:%s", e.vendor_id, e.product_id or "?") or "-"
    local iface = e.interface and string.format("if%02d", e.interface) or "-"
    local product = table.concat({ e.manufacturer or "", e.product or "" }, " "):match("^%s*(.-)%s*$")
    print(string.format("%-16s %-10s %-5s %s%s", e.path, usb, iface,
      product ~= "" and product or "-", e.by_id and ("  (by-id: " .. e.by_id .. ")") or ""))
    print("    " .. describe(e))
    if e.state == "at" then answering = answering + 1 end
    athost.emit("port", { path = e.path, by_id = e.by_id, usb = e.vendor_id and usb or nil,
      interface = e.interface, product = product ~= "" and product or nil, state = e.state,
      note = e.note, profile = e.profile, manufacturer = e.manufacturer,
      model = e.model_name, firmware = e.firmware, imei = e.imei })
  end
  print(string.format("%d port(s), %d answering AT", #ports, answering))
end

return M
