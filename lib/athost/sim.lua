-- Virtual modems: a model of a cellular module that speaks its AT dialect
-- on a pty and does real networking (MQTT, HTTP, TLS) behind it.
--
--   local port, modem = athost.open("sim:air720?imei=862991419835241")
--   local modem = sim.start("air720", {link = "/tmp/ttyAIR"})  -- serve a pty
--
-- athost.open() calls M.open for specs starting with "sim:". The spec is
-- a model name with optional options, "air720?k=v&k=v"; opts.sim (a table)
-- adds more. The other athost.open options (baud, timeout, name, ...) are
-- for the returned port, the slave side of the pty.
--
-- Model options (strings as on the command line, or Lua values):
--   link=PATH           a symlink to the pty slave
--   imei=, version=     AT+CGSN and AT+CGMR (default: a fresh IMEI, V461)
--   csq=N               the RSSI AT+CSQ reports (default 24)
--   broker=ADDR:PORT    where MQTT connections to hosts not in `hosts` go
--   hosts=NAME=ADDR[:PORT],NAME:PORT=ADDR:PORT,...   (MQTT and HTTP)
--   boot=MS             time from power-on to the banner (default 0)
--   trace=1             log every command and URC
-- Knobs: what the references leave open, each with its readings (the
-- list: `athost scripts/sim/knobs.lua`, or README.md):
--   personality=default        every knob at its default (the default)
--   personality=random:SEED    every knob not given drawn from SEED; the
--                              line naming them goes to stderr
--   order=after|before         outcome URC after or before OK
--   prompt=bare|space|line     the data prompt ">", "> ", "\r\n> "
--   echo_boot=on|off           echo after power-on and ATZ
--   urcs=off|on                unrelated URCs (+CTZV, +CEREG: 1, ...)
--   split=off|on               output in writes of 1-7 bytes
--   delay=0|20|150             ms before each answer and each URC
--   noise=off|on               garbage before every line (also a fault)
--   ...and each model's own (athost.sim.air720, athost.sim.me3630,
--   athost.sim.ec200u and the athost.sim.quectel_* files it takes)
-- Faults (also methods of the model object, see athost.sim.core):
--   noise=1|WHEN        a line of garbage before every line (from WHEN on)
--   slow=MS             output one byte every MS milliseconds
--   echo=1              echo stuck on (ATE0 answered, ignored)
--   silent=1|WHEN       stop answering (from power-on, or at WHEN)
--   drop=WHEN           the MQTT link drops: CLOSED (A7670: +CMQTTCONNLOST,
--                       EC200U: +QMTSTAT)
--   pdp=WHEN            the bearer is lost: +PDP DEACT (A7670: +CGEV: NW
--                       PDN DEACT 1, +CMQTTCONNLOST, +CMQTTNONET; EC200U:
--                       +QIURC: "pdpdeact",<cid>)
--   reboot=WHEN         reboot: banner, state lost, autobaud again
--   refuse=AT+X[:N][;AT+Y:N]   answer those commands with +CME ERROR: N
--   wrong_echo=AT+X[#N]  echo "AT+CFUN=0" instead of that command (the
--                        first one, or the Nth), then answer it as usual
-- WHEN is milliseconds after power-on, or a command prefix: "AT+MSUB" (the
-- first one; "AT+MSUB#2" the second). reboot and silent then replace the
-- answer to that command; drop and pdp follow it.
--
-- The model object m: m.path (the slave), m.imei, m.files, m.st (state),
-- m:drop(), m:pdp_deact(), m:reboot(), m:noise(on), m:slow(ms|false),
-- m:echo(on), m:silent(on), m:refuse(prefix, n|nil), m:fault(name, v),
-- m:urc(line), m:close(), m:wait(), m.bugs (handler errors, normally {}).
local athost = require("athost")
local core = require("athost.sim.core")

local M = {}

M.models = { air720 = "athost.sim.air720", air780e = "athost.sim.air780e",
  me3630 = "athost.sim.me3630", a7670 = "athost.sim.a7670", ec200u = "athost.sim.ec200u" }

local function decode(s)
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

-- Every knob of every model, one row per knob: { name, values, default,
-- doc, models = {names}, all = true for the core's (every model has
-- them) }, the core's first, then by name and models.
function M.knob_rows()
  local names = {}
  for k in pairs(M.models) do names[#names + 1] = k end
  table.sort(names)
  local rows, by = {}, {}
  local core_knob = {}
  for _, k in ipairs(core.knobs) do core_knob[k] = true end
  for _, name in ipairs(names) do
    for _, k in ipairs(core.all_knobs(require(M.models[name]))) do
      local r = by[k]
      if not r then
        r = { name = k.name, values = k.values, default = k.default, doc = k.doc,
          models = {}, all = core_knob[k] or nil, order = #rows }
        by[k] = r
        rows[#rows + 1] = r
      end
      r.models[#r.models + 1] = name
    end
  end
  table.sort(rows, function(a, b)
    if (a.all or false) ~= (b.all or false) then return a.all or false end
    if a.all then return a.order < b.order end
    if a.name ~= b.name then return a.name < b.name end
    return table.concat(a.models, ",") < table.concat(b.models, ",")
  end)
  return rows
end

-- The knobs as a Markdown table (README.md's, scripts/sim/knobs.lua).
function M.knob_table()
  local function cell(s) return (tostring(s):gsub("|", "\\|"):gsub("\n", " ")) end
  local out = { "| knob | models | values | default | what it varies |",
    "|---|---|---|---|---|" }
  for _, r in ipairs(M.knob_rows()) do
    local vals = {}
    for i, v in ipairs(r.values) do vals[i] = "`" .. v .. "`" end
    out[#out + 1] = string.format("| `%s` | %s | %s | `%s` | %s |", r.name,
      r.all and "all" or table.concat(r.models, ", "), table.concat(vals, " "),
      r.default, cell(r.doc or ""))
  end
  return table.concat(out, "\n") .. "\n"
end

-- "air720?k=v&k2=v2" -> "air720", {k = "v", k2 = "v2"} (%XX decoded).
function M.parse_spec(spec)
  local name, query = spec:match("^([%w_%-]+)%??(.*)$")
  if not name then return nil, "sim: bad spec '" .. spec .. "'" end
  local opts = {}
  for item in query:gmatch("[^&]+") do
    local k, v = item:match("^([^=]+)=(.*)$")
    if k then opts[decode(k)] = decode(v) else opts[decode(item)] = "1" end
  end
  return name, opts
end

-- Starts model `name` on a new pty; returns the model object (m.path is
-- the slave's path) or nil, message, code.
function M.start(name, opts)
  opts = opts or {}
  local mod = M.models[name]
  if not mod then
    local known = {}
    for k in pairs(M.models) do known[#known + 1] = k end
    table.sort(known)
    return nil, string.format("sim: unknown model '%s' (known: %s)", tostring(name),
      table.concat(known, ", ")), "ENOENT"
  end
  local m = core.new(require(mod), opts)
  local master, path, code = athost.pty { link = opts.link, name = m.name .. "-sim" }
  if not master then return nil, path, code end
  -- What the model says is what the port under test receives, recorded
  -- there once the flow has seen it (so its secrets are masked): a record
  -- of the model's own side would print them before.
  master:set { transcript = false }
  m.path, m.link = path, opts.link
  m:attach(master)
  return m
end

-- What scripts/sim/<model>.lua does: starts model `name` with the
-- command line's options, prints the pty slave's path (the link, if
-- given, points to it), logs the model, and serves until SIGTERM.
function M.serve(name, args)
  local m = assert(M.start(name, args or {}))
  print(m.path)
  io.stdout:flush()
  athost.log(string.format("%s %s on %s%s", name, m.imei, m.path,
    m.link and (" (" .. m.link .. ")") or ""))
  m:wait()
end

-- athost.open("sim:SPEC", opts): the slave side of a new virtual modem,
-- opened like a device, and the model object.
function M.open(spec, opts)
  local name, mopts = M.parse_spec(spec)
  if not name then return nil, mopts, "EINVAL" end
  local popts = {}
  for k, v in pairs(opts or {}) do
    if k == "sim" then
      for sk, sv in pairs(v) do mopts[sk] = sv end
    else
      popts[k] = v
    end
  end
  local m, err, code = M.start(name, mopts)
  if not m then return nil, err, code end
  popts.name = popts.name or name
  local p
  p, err, code = athost.open(m.path, popts)
  if not p then
    m:close()
    return nil, err, code
  end
  m.client = p
  return p, m
end

return M
