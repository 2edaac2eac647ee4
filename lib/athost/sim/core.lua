-- What every virtual modem shares: an AT interpreter on the master side of
-- a pty (autobaud, echo, framing, CMEE, the 27.007 basics), the network
-- state behind it, the host table, and the faults a test can inject.
--
-- A model (athost.sim.air720, athost.sim.me3630) is a *dialect*:
--   { name, banner = {lines}, ident = {cgmi, cgmm, cgmr, ati = {lines}},
--     autobaud = true, echo = true, commands = {["+X"] = handler},
--     tests_handled = false (true: handlers also get AT+X=?, else OK),
--     reset(m)      fresh model state in m.st after a (re)boot
--     shutdown(m)   close links and flows quietly (reboot, close)
--     net_down(m)   the radio or the PDP context went away (CFUN=0, ...)
--     net_up(m)     it came back (CGACT=1, CFUN=1 after another mode)
--     drop(m), pdp_deact(m)   the link and bearer faults }
--
-- Handlers: handler(m, c), c from atparse.command. A handler answers with
-- m:info(line)... and one final: m:ok(), m:fail(n) (a refusal: "+CME
-- ERROR: n" with AT+CMEE=1, its text with 2, else "ERROR"), m:error()
-- (always "ERROR"). Handlers run in order in the modem's command flow and
-- may wait there for raw bytes (m:read_data). What a handler says after
-- the modem rebooted under it is dropped.
--
-- Input: a command line ends at CR (an LF right after it is skipped);
-- before the first upper-case "AT" of an autobauding model nothing is
-- answered; after it a line that is not an AT command gets "ERROR".
-- Output goes through one ordered queue (athost.sim.outq), each line
-- framed "\r\n<line>\r\n".
local athost = require("athost")
local atparse = require("athost.sim.atparse")
local basic = require("athost.sim.basic")
local outq = require("athost.sim.outq")

local M = {}
local Core = {}
local find, sub, byte = string.find, string.sub, string.byte
Core.__index = Core
M.Core = Core

M.CME_TEXT = {
  [3] = "operation not allowed", [4] = "operation not supported",
  [10] = "SIM not inserted", [50] = "incorrect parameters",
  [100] = "unknown", [767] = "operation failed",
}

-- Errors a handler gives for the usual reasons (3GPP TS 27.007 9.2), the
-- parameter parser that answers its own refusal, the basic commands.
M.E_STATE, M.E_PARAM, M.E_FAILED = basic.E_STATE, basic.E_PARAM, basic.E_FAILED
M.params = basic.params
M.set_params = basic.set_params
M.commands = basic.commands
M.restart = basic.restart

---------------------------------------------------------------------------
-- Options
---------------------------------------------------------------------------

local function truthy(v)
  return v == true or v == "1" or v == "true" or v == "on" or v == "yes"
end

-- IMEIs: TAC 86299141 (an Air720's, reference 000), a serial, Luhn digit.
local imei_base = math.random(0, 899999)
local imei_count = 0

function M.luhn(digits)
  local sum = 0
  for i = 1, #digits do
    -- (A digit's value from its byte: no one-byte string per digit. Any
    -- other byte takes the old way, which raises as it always did.)
    local d = byte(digits, i) - 48
    if d < 0 or d > 9 then d = tonumber(digits:sub(i, i)) end
    if i % 2 == 0 then
      d = d * 2
      if d > 9 then d = d - 9 end
    end
    sum = sum + d
  end
  return digits .. tostring((10 - sum % 10) % 10)
end

function M.new_imei()
  imei_count = imei_count + 1
  return M.luhn(string.format("86299141%06d", (imei_base + imei_count) % 1000000))
end

-- "name=addr:port,name2=addr" (or a table) -> { [lower name] = "addr:port" }.
local function parse_hosts(v)
  local t = {}
  if type(v) == "table" then
    for k, a in pairs(v) do t[tostring(k):lower()] = tostring(a) end
  elseif type(v) == "string" then
    for item in v:gmatch("[^,%s]+") do
      local k, a = item:match("^([^=]+)=(.+)$")
      if not k then error("sim: bad hosts entry '" .. item .. "' (want name=addr[:port])", 0) end
      t[k:lower()] = a
    end
  end
  return t
end

-- "127.0.0.1:1883", "[::1]:1883", "localhost" -> addr, port or nil.
-- The splits are kept by string (a few dozen at most, then afresh): every
-- MIPSTART of a station's modems splits the same broker option or two.
local splits, nsplits = {}, 0

function M.split_hostport(s)
  local kept = splits[s]
  if kept then return kept[1], kept[2] end
  local a, p = s:match("^%[(.+)%]:(%d+)$")
  if not a then a, p = s:match("^([^:]+):(%d+)$") end
  if a then p = tonumber(p) else a, p = s:match("^%[(.+)%]$") or s, nil end
  if nsplits >= 64 then splits, nsplits = {}, 0 end
  splits[s], nsplits = { a, p }, nsplits + 1
  return a, p
end

-- "<when>" of a fault: a command prefix ("AT+MSUB", "AT+MSUB#2" for the
-- second one) or milliseconds after the modem starts.
local function parse_when(v)
  v = tostring(v)
  local prefix, nth = v:match("^([Aa][Tt].-)#(%d+)$")
  if not prefix and v:match("^[Aa][Tt]") then prefix, nth = v, "1" end
  if prefix then return { prefix = prefix:upper(), nth = tonumber(nth), seen = 0 } end
  local ms = tonumber(v)
  if not ms then error("sim: bad fault time '" .. v .. "' (ms or AT command)", 0) end
  return { ms = ms }
end

---------------------------------------------------------------------------
-- Knobs: where the references are silent or firmware is known to differ
---------------------------------------------------------------------------

-- A knob is one behaviour a reference leaves open, with every reading it
-- allows: { name, values = {...}, default = v, doc = "..." }. The core's
-- own knobs are below; a dialect lists its own in dialect.knobs (a model
-- that takes a command family from another file, such as athost.sim.
-- luat_mqtt, appends that file's knobs to its own). A knob's value comes
-- from the model option of the same name, else from the personality
-- (personality=random:SEED draws every knob not given from SEED), else
-- from its default. Values are strings, as on the command line.
M.knobs = {
  { name = "order", values = { "after", "before" }, default = "after",
    doc = "a command whose result is a URC (CONNECT OK, CONNACK OK, SUBACK, "
      .. "PUBACK, +HTTPACTION, +ALIAUTH, +CLOUDSUBACK, +CMQTTCONNECT, "
      .. "+CMQTTSUB, +CMQTTPUB, +NETOPEN, +QMTOPEN, +QMTCONN, +QMTSUB, "
      .. "+QMTPUB(EX), +QHTTPPOST, ...): OK first and the URC later, or the "
      .. "URC first and then OK" },
  { name = "prompt", values = { "bare", "space", "line" }, default = "bare",
    doc = "the data prompt of AT+FSWRITE, AT+MPUBEX, AT+CLOUDPUB, "
      .. "AT+CCERTDOWN, AT+CMQTTTOPIC and the other CMQTT data, AT+QMTPUBEX, "
      .. "AT+QMTPUB: \">\" "
      .. "alone, \"> \" with a space, or \"\\r\\n> \" on a line of its own" },
  { name = "echo_boot", values = { "on", "off" }, default = "on",
    doc = "command echo after power-on and ATZ (flows send ATE0)" },
  { name = "urcs", values = { "off", "on" }, default = "off",
    doc = "unrelated URCs a real module prints between answers: time zone "
      .. "(+CTZV, +CTZE, *PSUTTZ, DST), signal (+CSQN) and registration "
      .. "(+CREG: 1, +CEREG: 1, only while registered) notices, after about "
      .. "one final result in four and before about one URC in four that "
      .. "comes while no command runs; never inside an answer, never with "
      .. "the prefix of a command flows send" },
  { name = "split", values = { "off", "on" }, default = "off",
    doc = "output in writes of 1-7 bytes, 1 ms apart (about the line "
      .. "rate at 115200 baud) so the host reads them apart" },
  { name = "delay", values = { "0", "20", "150" }, default = "0",
    doc = "milliseconds before each answer (after the echo, after the data "
      .. "of a prompt) and before each URC" },
  { name = "noise", values = { "off", "on" }, default = "off", free = true,
    doc = "a line of garbage bytes (a NUL first) before every line; also "
      .. "the fault noise=1 or noise=WHEN (from that time or command on)" },
}

-- The unrelated URCs of urcs=on (%d: the modem's RSSI). None has the
-- prefix of a command the flows send (+CGREG, +CSQ: and +ZPAS are theirs),
-- starts with AT, holds 14 digits in a row (an IMEI to AT+CGSN) or reads
-- as a final result: a line a flow must ignore whenever it comes, as it
-- must on a real module. The registration ones only while registered.
M.UNRELATED = {
  "+CTZV: +32",
  '+CTZE: "+32",0,"2024/05/02,10:20:30"',
  '*PSUTTZ: 2024,5,2,10,20,30,"+32",0',
  "DST: 0",
  "+CSQN: %d,99",
  { "+CREG: 1", registered = true },
  { "+CEREG: 1", registered = true },
}

-- xorshift32: a generator of its own, so drawing knobs does not disturb
-- math.random and the same seed gives the same personality everywhere.
-- salt (a string) makes an independent stream of the same seed: each
-- knob draws from its own (a knob added later changes no other knob's
-- value for a seed), and the modem's own randomness (chunk sizes, which
-- URC) from another.
-- The state a stream starts from, by salt and seed: every model of a
-- station starts the same "modem" stream of seed 0, so it is worked out
-- once (a few hundred kept, then the store starts afresh).
local starts, nstarts = {}, 0

local function prng(seed, salt)
  local x0 = (tonumber(seed) or 0) % 4294967296
  salt = salt or ""
  local by_seed = starts[salt]
  local x = by_seed and by_seed[x0]
  if not x then
    x = x0
    for i = 1, #salt do               -- FNV-1a over the salt
      x = ((x ~ salt:byte(i)) * 16777619) & 0xffffffff
    end
    if x == 0 then x = 2463534242 end
    for _ = 1, 8 do                   -- near seeds, far streams
      x = x ~ ((x << 13) & 0xffffffff)
      x = x ~ (x >> 17)
      x = x ~ ((x << 5) & 0xffffffff)
    end
    if nstarts >= 256 then starts, nstarts = {}, 0 end
    by_seed = starts[salt] or {}
    starts[salt], by_seed[x0], nstarts = by_seed, x, nstarts + 1
  end
  return function(n)
    x = x ~ ((x << 13) & 0xffffffff)
    x = x ~ (x >> 17)
    x = x ~ ((x << 5) & 0xffffffff)
    return x % n + 1
  end
end
M.prng = prng

-- Every knob of a dialect: the core's, then the dialect's, in order.
function M.all_knobs(dialect)
  local all = {}
  for _, k in ipairs(M.knobs) do all[#all + 1] = k end
  for _, k in ipairs(dialect.knobs or {}) do all[#all + 1] = k end
  return all
end

-- The knobs of a model whose options name none of them, without a random
-- personality, all at their defaults: built by a constructor made once per
-- dialect, so the table is made at its size in one go (grown a key at a
-- time through some 20 knobs it was rehashed at every power of two, at
-- every model start). Remade when the dialect's knob lists change.
local defaults_of = setmetatable({}, { __mode = "k" })   -- dialect -> maker

local function defaults_maker(dialect)
  local dk = dialect.knobs
  local nd, nc = dk and #dk or 0, #M.knobs
  local e = defaults_of[dialect]
  if e and e.dk == dk and e.nd == nd and e.nc == nc then return e end
  local src, vals, names = { "local v = ... return function() return {" }, {}, {}
  local function add(k)
    vals[#vals + 1] = k.default
    names[k.name] = true
    src[#src + 1] = string.format("[%q] = v[%d],", k.name, #vals)
  end
  for _, k in ipairs(M.knobs) do add(k) end
  for _, k in ipairs(dk or {}) do add(k) end
  src[#src + 1] = "} end"
  e = { make = assert(load(table.concat(src), "=knobs", "t"))(vals),
    names = names, dk = dk, nd = nd, nc = nc }
  defaults_of[dialect] = e
  return e
end

-- Resolves every knob of the dialect from opts: returns { name = value },
-- for a random personality the line that names it, and the seed (a
-- number; 0 without a random personality).
function M.resolve_knobs(dialect, opts)
  local kv, drawn = {}, {}
  local p = opts.personality and tostring(opts.personality) or "default"
  local seed = p:match("^random:(%d+)$")
  if p ~= "default" and not seed then
    error("sim: bad personality '" .. p .. "' (default or random:SEED)", 0)
  end
  if not seed and getmetatable(opts) == nil then
    local e = defaults_maker(dialect)
    local names, given = e.names, false
    for k in pairs(opts) do
      if names[k] then given = true break end
    end
    if not given then return e.make(), nil, 0 end
  end
  -- (The core's knobs, then the dialect's, as all_knobs lists them,
  -- without making the list; the line's words only for a random one.)
  local function resolve(k)
    local v = opts[k.name]
    if v ~= nil then
      v = tostring(v)
      local ok = false
      for _, a in ipairs(k.values) do if a == v then ok = true end end
      if not ok and not k.free then
        error(string.format("sim: knob %s=%s is none of %s", k.name, v,
          table.concat(k.values, "|")), 0)
      end
    elseif seed then
      v = k.values[prng(seed, k.name)(#k.values)]
    else
      v = k.default
    end
    kv[k.name] = v
    if seed then drawn[#drawn + 1] = k.name .. "=" .. v end
  end
  for _, k in ipairs(M.knobs) do resolve(k) end
  for _, k in ipairs(dialect.knobs or {}) do resolve(k) end
  local line = seed and string.format("personality=random:%s: %s", seed,
    table.concat(drawn, " "))
  return kv, line, tonumber(seed) or 0
end

---------------------------------------------------------------------------
-- The model object
---------------------------------------------------------------------------

-- The handlers of a dialect: its own over the basic ones, one table a
-- dialect that all its models read (hot in the cache however many models
-- a process runs); a model's own table (m.commands) starts empty and
-- holds what is set on that model alone (a test's stand-in handler).
local handlers = setmetatable({}, { __mode = "k" })   -- dialect -> metatable

local function commands_of(dialect)
  local mt = handlers[dialect]
  if not mt then
    local t = setmetatable({}, { __index = M.commands })
    for k, h in pairs(dialect.commands or {}) do t[k] = h end
    mt = { __index = t }
    handlers[dialect] = mt
  end
  return setmetatable({}, mt)
end

-- (The fields a model gets at once, from its options, are in its table's
-- constructor, which makes the table at its size: set one by one after it,
-- they rehashed it at every model start. The order of what may raise or
-- count is as it was: the IMEI, the hosts, then the knobs.)
function M.new(dialect, opts)
  opts = opts or {}
  local name = opts.name or dialect.name
  local imei = opts.imei or M.new_imei()
  local hosts = parse_hosts(opts.hosts)
  local kv, personality, seed = M.resolve_knobs(dialect, opts)
  local self = setmetatable({
    dialect = dialect, opts = opts, name = name,
    imei = imei,
    boot_ms = tonumber(opts.boot) or 0,
    max_line = dialect.max_line or 8192,
    hosts = hosts,
    files = {},               -- flash: survives reboots
    gen = 0, cmd_gen = 0,
    ibuf = "", refusals = {}, triggers = {}, bugs = {},
    commands = commands_of(dialect),
    kv = kv, personality = personality,
    -- What knobs vary at random (chunk sizes, which URC, when) comes from
    -- the personality's seed too, so a failure reproduces.
    rand = prng(seed, "modem"),
    delay_ms = tonumber(kv.delay) or 0,
    broker = opts.broker and tostring(opts.broker) or nil,
    trace = truthy(opts.trace),
  }, Core)
  if personality then
    io.stderr:write("athost sim ", name, ": ", personality, "\n")
  end
  return self
end

-- Starts serving on port (the pty master): boots and reads commands.
function Core:attach(port)
  local o = self.opts
  self.port = port
  self.port_recv = port.recv   -- (looked up once: a port's fields are a C lookup each)
  self.out = outq.new(port)
  if self:knob("split") == "on" then
    self.out:split(function() return self.rand(7) end)
  end
  self:boot()
  self.task = athost.spawn(self.run, self)
  if tonumber(o.slow) then self:slow(tonumber(o.slow)) end
  self.timers = {}
  for _, k in ipairs({ "echo", "silent", "noise", "drop", "pdp", "reboot" }) do
    local v = o[k]
    if k == "noise" then                       -- a knob (drawn) and a fault
      v = self:knob("noise")
      if v == "off" then v = nil end
    end
    local state = k == "echo" or k == "silent" or k == "noise"
    if state and truthy(v) then
      self:fault(k, true)                      -- on from power-on
    elseif v ~= nil and v ~= false and v ~= "0" and v ~= "" then
      local w = parse_when(v)
      w.fault = k
      if w.ms then
        self.timers[#self.timers + 1] = athost.timer(w.ms, function()
          if not self.closed then self:fault(k, true) end
        end)
      else
        self.triggers[#self.triggers + 1] = w
      end
    end
  end
  if o.wrong_echo then
    -- A module out of step (or a second program on its port): the echo of
    -- that command is another one's.
    self.wrong_echo = parse_when(o.wrong_echo)
    if not self.wrong_echo.prefix then
      error("sim: wrong_echo takes a command prefix, not a time", 0)
    end
  end
  if o.refuse then
    for item in tostring(o.refuse):gmatch("[^;]+") do
      local prefix, n = item:match("^(.-):(%d+)$")
      self:refuse(prefix or item, tonumber(n) or M.E_STATE)
    end
  end
  return self
end

-- Power-on: state lost (files kept), autobaud, echo on, the banner.
function Core:boot()
  local d = self.dialect
  self.synced = not d.autobaud
  self.echo_on = d.echo ~= false and self:knob("echo_boot") == "on"
  self.cmee = 0
  self.net = { cfun = 1, attached = true, pdp = true }
  self.st = {}
  if d.reset then d.reset(self) end
  self.booting = true
  local gen = self.gen
  athost.timer(self.boot_ms, function()
    if self.gen ~= gen or self.closed then return end
    self.booting = false
    for _, l in ipairs(d.banner or {}) do self:urc(l, gen) end
  end)
end

-- Restarts now (a watchdog, a brown-out): queued output is lost unless
-- keep_output (AT+RESET answers OK first).
function Core:reboot(keep_output)
  if self.closed then return end
  self.gen = self.gen + 1
  if not keep_output then self.out:clear() end
  if self.dialect.shutdown then self.dialect.shutdown(self) end
  self.ibuf = ""
  self:boot()
end

function Core:close()
  if self.closed then return end
  self.gen = self.gen + 1
  if self.dialect.shutdown then self.dialect.shutdown(self) end
  self.closed = true
  for _, t in ipairs(self.timers or {}) do t:stop() end
  self.out:close()
  if self.client and not self.client.closed then self.client:close() end
  if not self.port.closed then self.port:close() end
end

-- Waits until the modem is closed (the standalone script serves forever).
function Core:wait()
  return self.task:join()
end

-- The value of a knob (a string); raises for a knob the model lacks.
function Core:knob(name)
  local v = self.kv[name]
  if v == nil then error("sim: no knob '" .. tostring(name) .. "'", 2) end
  return v
end

---------------------------------------------------------------------------
-- Output
---------------------------------------------------------------------------

local NOISE = { "\0", "\x1b", "\xff", "\xfe", "\x80", "~", "\x11", "\x7f", "#" }

-- Writes s; wait (ms) before it, or, for the first write of an answer,
-- the delay knob's (armed by dispatch and read_data).
function Core:write(s, wait)
  if self.silenced then return end
  if self.answer_wait then
    wait, self.answer_wait = wait or self.answer_wait, nil
  end
  self.out:write(s, wait)
end

-- "\r\n<line>\r\n"; when the noise fault is on, a line of garbage before
-- it ("\r\n<garbage>\r\n<line>\r\n"): noise *between* lines, so bytes
-- counted by a header (+HTTPREAD: n) are still followed by their line
-- end, which hosts check to tell a wrong count.
function Core:frame(line, wait)
  local pre = ""
  if self.noisy then
    local n = { "\r\n\0" }   -- a control byte: hosts drop such a line
    for i = 2, self.rand(5) + 1 do n[i] = NOISE[self.rand(#NOISE)] end
    pre = table.concat(n)
  end
  self:write(pre .. "\r\n" .. line .. "\r\n", wait)
end

-- With urcs=on, now and then one of M.UNRELATED (1 in `one_in`).
function Core:unrelated(one_in)
  if self.kv.urcs ~= "on" or self.rand(one_in) ~= 1 then return end
  local u = M.UNRELATED[self.rand(#M.UNRELATED)]
  if type(u) == "table" then
    if not self:online() then return end
    u = u[1]
  end
  self:frame(u:format(tonumber(self.opts.csq) or 24))
end

local function live(self) return self.cmd_gen == self.gen and not self.closed end

-- A final result code, then maybe an unrelated URC (the module is idle
-- until the next command: a URC here is what real modules print).
local function final(self, line)
  self:frame(line)
  self:unrelated(4)
end

-- What a command says, the answers of every command: live(), frame()
-- and write() done in place, the framed finals made once. (A modem
-- answers a few lines per command and a station runs a thousand modems:
-- the calls were most of what an answer cost.) Noise, silence and the
-- answer's delay take the general way; the bytes are the same.
local OK_LINE, ERROR_LINE = "\r\nOK\r\n", "\r\nERROR\r\n"

local add_held = outq.add_held

-- (While the command flow holds the queue and nothing is queued, paced
-- or split, the line joins what is held with no method call; any other
-- case takes outq's write, as before.)
function Core:info(line)
  if self.cmd_gen ~= self.gen or self.closed then return end
  if self.noisy or self.silenced or self.answer_wait then return self:frame(line) end
  local out = self.out
  if not add_held(out, line, true) then out:write("\r\n" .. line .. "\r\n") end
end

-- OK or ERROR (line: framed), as final() writes a final result code.
local function ok_or_error(self, word, line)
  if self.cmd_gen ~= self.gen or self.closed then return end
  if self.noisy or self.silenced or self.answer_wait then
    self:frame(word)
  else
    local out = self.out
    if not add_held(out, line) then out:write(line) end
  end
  if self.kv.urcs == "on" then self:unrelated(4) end
end

function Core:ok() return ok_or_error(self, "OK", OK_LINE) end

function Core:error() return ok_or_error(self, "ERROR", ERROR_LINE) end

function Core:raw(s) if live(self) then self:write(s) end end

-- The data prompt ("> " by default ">"), in the form the knob says.
function Core:prompt(p)
  local form = self:knob("prompt")
  p = p or ">"
  if form == "space" then p = p .. " " elseif form == "line" then p = "\r\n" .. p .. " " end
  self:raw(p)
end

-- The refusal line for error n under the current AT+CMEE. A dialect's
-- cme_line(m, n) may answer first (its own texts, numeric codes under
-- AT+CMEE=2); nil leaves it to the 27.007 default here.
function Core:cme_line(n)
  local own = self.dialect.cme_line and self.dialect.cme_line(self, n)
  if own then return own end
  if self.cmee == 1 then return "+CME ERROR: " .. n end
  if self.cmee == 2 then return "+CME ERROR: " .. (M.CME_TEXT[n] or tostring(n)) end
  return "ERROR"
end

function Core:fail(n)
  if live(self) then final(self, self:cme_line(n or M.E_STATE)) end
end

-- Runs start(done) and holds the command flow until done(line) is called
-- (at most ms, default 60 s): the module is busy, no next command is
-- read. Returns true, line (nil: no outcome line) once done was called;
-- false when the time ran out or the modem rebooted or closed under it.
-- A done(line) that comes after that goes to late(line) (if given).
-- (A model-internal poll: the flows under test never see its timing.)
function Core:await(start, ms, late)
  local gen = self.gen
  local got, answered = nil, false
  start(function(line)
    if answered then
      if late then late(line) end
      return
    end
    got = { line = line }
  end)
  local deadline = athost.now() + (ms or 60000)
  if not got then self.out:release() end   -- what the command said so far
  while not got and self.gen == gen and not self.closed
      and athost.now() < deadline do
    athost.sleep(1)
  end
  answered = true
  if not got or self.gen ~= gen then return false end
  return true, got.line
end

-- A command whose result is a URC, in the order the knob `order` says
-- (or `order`, "after" or "before", when the dialect's own knob decides
-- for this command). start(done) begins the work and calls done(line)
-- once, now or later, with the outcome line (nil: no outcome line).
-- order=after: OK now, the outcome as a URC when it comes. order=before:
-- the command flow waits for it (at most ms, default 60 s; then OK, and
-- the outcome later as a URC), writes it, then OK; an outcome that is
-- itself a final result ("ERROR", "+CME ERROR: n") is then the only
-- answer.
function Core:ok_then(start, ms, order)
  local gen = self.gen
  if (order or self.kv.order or self:knob("order")) ~= "before" then
    self:ok()
    return start(function(line) if line then self:urc(line, gen) end end)
  end
  local done, line = self:await(start, ms, function(l)
    if l then self:urc(l, gen) end
  end)
  if self.gen ~= gen then return end
  if done and line then
    self:info(line)
    if line == "ERROR" or line:find("^%+CME ERROR") then return end
  end
  self:ok()
end

-- An unsolicited line; gen (optional) is the boot it belongs to.
function Core:urc(line, gen)
  if self.closed or (gen and gen ~= self.gen) then return end
  if self.trace then athost.log(self.name .. " urc " .. line) end
  if not self.in_cmd and self.kv.urcs == "on" then self:unrelated(4) end
  self:frame(line, self.delay_ms)
end

---------------------------------------------------------------------------
-- Input
---------------------------------------------------------------------------

local RECV_NOW = { timeout = 0 }

-- One read from the port into ibuf; nil, code when the port is gone.
-- While booting or silent, what arrives is lost.
function Core:fill(timeout)
  local port = self.port
  if self.closed or port.closed then return nil, "ECLOSED" end
  -- The answer so far goes out before we wait (release() does nothing
  -- when nothing is held: the command flow released after its answer).
  local out = self.out
  if out.held ~= nil then out:release() end
  local data, _, code = self.port_recv(port, 65536,
    (timeout and timeout ~= 0) and { timeout = timeout } or RECV_NOW)
  if not data then return nil, code end
  if not self.booting and not self.silenced then
    local buf = self.ibuf
    self.ibuf = buf == "" and data or buf .. data
  end
  return true
end

-- The next line up to CR (V.250 S3), an LF right after it skipped; false
-- for a line longer than the modem's buffer; nil when the port is gone.
local function next_line(self)
  while true do
    local buf = self.ibuf
    -- (Between commands the buffer is mostly empty: straight to the read.)
    local i = buf ~= "" and find(buf, "\r", 1, true)
    if i then
      local line = sub(buf, 1, i - 1)
      -- (Most reads hold one line, its CR last: nothing left.)
      local n = #buf
      if i == n then
        self.ibuf = ""
      else
        local j = byte(buf, i + 1) == 10 and i + 2 or i + 1
        self.ibuf = j > n and "" or sub(buf, j)
      end
      if self.overflow then
        self.overflow = false
        return false, line
      end
      return line
    end
    if #self.ibuf > self.max_line then
      self.ibuf, self.overflow = "", true
    end
    -- self:fill(0), written out: once per command.
    local port = self.port
    if self.closed or port.closed then return nil end
    local out = self.out
    if out.held ~= nil then out:release() end
    local data = self.port_recv(port, 65536, RECV_NOW)
    if not data then return nil end
    if not self.booting and not self.silenced then
      buf = self.ibuf
      self.ibuf = buf == "" and data or buf .. data
    end
  end
end

Core.next_line = next_line

-- Raw input after a prompt: reads until take(ibuf) returns the bytes it
-- wants (and a second value), or ms pass. Returns what take returned
-- (those bytes consumed), or nil, "ETIMEDOUT" (what came is discarded, as
-- a module does), nil, why when take gives up (nil, why: the input is
-- discarded), or nil, "EREBOOT" / "ECLOSED".
function Core:read_raw(take, ms)
  local gen = self.gen
  local deadline = athost.now() + ms
  while true do
    local n, extra, why = take(self.ibuf)
    if n then
      local data = self.ibuf:sub(1, n)
      self.ibuf = self.ibuf:sub(n + 1 + (extra and #extra or 0))
      self.answer_wait = self.delay_ms > 0 and self.delay_ms or nil
      return data, extra
    elseif why then
      self.ibuf = ""
      return nil, why
    end
    local left = deadline - athost.now()
    if left <= 0 then
      self.ibuf = ""
      return nil, "ETIMEDOUT"
    end
    local ok, code = self:fill(math.max(1, math.ceil(left)))
    if self.gen ~= gen then return nil, "EREBOOT" end
    if not ok and code ~= "ETIMEDOUT" then return nil, code end
  end
end

-- Exactly n raw bytes within ms (the data after DOWNLOAD or '>'): the
-- bytes, or nil, "ETIMEDOUT" / "EREBOOT" / "ECLOSED" (read_raw).
function Core:read_data(n, ms)
  return self:read_raw(function(buf) if #buf >= n then return n end end, ms)
end

-- Raw bytes up to a terminator within ms (Quectel's AT+QMTPUB without a
-- length ends at 0x1A and Esc cancels; Luat's AT+MPUBEX without one ends
-- at 0x1A): stops is a Lua pattern class of single bytes ("[\26\27]").
-- Returns the bytes before it and the terminator (consumed), or nil,
-- "E2BIG" after max bytes with none, or nil, "ETIMEDOUT" / "EREBOOT" /
-- "ECLOSED" (read_raw).
function Core:read_until(stops, max, ms)
  return self:read_raw(function(buf)
    local i = buf:find(stops)
    if i and i <= max + 1 then return i - 1, buf:sub(i, i) end
    if #buf > max then return nil, nil, "E2BIG" end
  end, ms)
end

-- Raw bytes up to the byte `stop` (not kept), or until idle_ms pass
-- without a byte (Luat AT+MPUBEX without <len>): the bytes, or nil,
-- "ETOOLONG" once more than max came (they are discarded, the rest of the
-- message starts the next command line, as with read_data's overflow),
-- or nil, "EREBOOT" / "ECLOSED".
function Core:read_until_idle(stop, idle_ms, max)
  local gen = self.gen
  while true do
    local i = self.ibuf:find(stop, 1, true)
    if (i and i - 1 > max) or (not i and #self.ibuf > max) then
      self.ibuf = self.ibuf:sub((i or max) + 1)
      return nil, "ETOOLONG"
    end
    if i then
      local data = self.ibuf:sub(1, i - 1)
      self.ibuf = self.ibuf:sub(i + 1)
      self.answer_wait = self.delay_ms > 0 and self.delay_ms or nil
      return data
    end
    local ok, code = self:fill(idle_ms)
    if self.gen ~= gen then return nil, "EREBOOT" end
    if not ok then
      if code ~= "ETIMEDOUT" then return nil, code end
      local data = self.ibuf
      self.ibuf = ""
      self.answer_wait = self.delay_ms > 0 and self.delay_ms or nil
      return data
    end
  end
end

-- Fires the command triggers armed for line; returns the faults to apply
-- after the answer.
function Core:triggered(line)
  local up, after = line:upper(), nil
  for _, w in ipairs(self.triggers) do
    if not w.done and up:sub(1, #w.prefix) == w.prefix then
      w.seen = w.seen + 1
      if w.seen == w.nth then
        w.done = true
        if w.fault == "drop" or w.fault == "pdp" then
          after = after or {}
          after[#after + 1] = w.fault
        else
          self:fault(w.fault, true)
        end
      end
    end
  end
  return after
end

local function dispatch(self, line, too_long)
  local b = byte(line, 1)
  if b and (b <= 32 or b == 127) then line = line:gsub("^[%c ]+", "") end
  if not self.synced then
    -- Autobaud: only an upper-case AT is recognised (reference 000).
    if line ~= "AT" or too_long then return end
    self.synced = true
  end
  self.cmd_gen = self.gen
  self.answer_wait = nil
  local we = self.wrong_echo
  if we and not we.done and line:upper():sub(1, #we.prefix) == we.prefix then
    we.seen = we.seen + 1
    if we.seen == we.nth then
      we.done = true
      self:raw("AT+CFUN=0\r")
    end
  elseif self.echo_on or self.echo_stuck then
    self:raw(line .. "\r")
  end
  -- The answer (whatever the handler writes first) after the delay knob's
  -- ms; the echo came at once, as the characters arrived.
  self.answer_wait = self.delay_ms > 0 and self.delay_ms or nil
  if too_long then return self:error() end
  if line == "" then return end
  if self.trace then athost.log(self.name .. " cmd " .. line) end
  local gen = self.gen
  local after = self.triggers[1] and self:triggered(line)
  if self.gen ~= gen or self.silenced then return end   -- rebooted or hung
  if self.refusing then          -- (next(self.refusals), kept by refuse())
    local up = line:upper()
    for prefix, n in pairs(self.refusals) do
      if up:sub(1, #prefix) == prefix then return self:fail(n) end
    end
  end
  local c = atparse.command(line)
  local h = c and self.commands[c.name]
  if not h then
    self:error()
  elseif c.op == "test" and not self.dialect.tests_handled then
    self:ok()
  else
    self.in_cmd = true          -- no unrelated URC inside its answer
    h(self, c)
  end
  self.in_cmd = false
  if after then
    for _, f in ipairs(after) do self:fault(f, true) end
  end
end

Core.dispatch = dispatch

-- The command flow: lines in, answers out, until the modem is closed.
-- (next_line, dispatch and the queue's hold and release are called as
-- locals, the hold made in place: once per command each, and a method
-- looked up on a model goes through its metatable.)
local traceback, release = debug.traceback, outq.release

function Core:run()
  while not self.closed do
    local line, extra = next_line(self)
    if line == nil then break end
    -- The answer's lines collect and go out as one write (athost.sim.
    -- outq), released when the answer is complete or the command waits.
    local out = self.out
    if out.held == nil then out.held = "" end          -- out:hold()
    local ok, err = xpcall(dispatch, traceback, self,
      line or extra, line == false)
    if not ok then
      -- A bug in a model must not end the host's run: report, answer, go on.
      self.bugs[#self.bugs + 1] = err
      self.in_cmd = false
      io.stderr:write("athost sim ", self.name, ": ", err, "\n")
      self:error()
    end
    release(self.out)
  end
end

---------------------------------------------------------------------------
-- Faults
---------------------------------------------------------------------------

function Core:noise(on) self.noisy = on and true or false end

function Core:slow(ms) self.out:pace(tonumber(ms)) end

-- Echo stuck on: AT+ATE0 is answered but the echo stays.
function Core:echo(on) self.echo_stuck = on and true or false end

-- Stops answering: input is read and ignored, nothing is written.
function Core:silent(on)
  self.silenced = on and true or false
  if self.silenced then
    self.out:clear()
    self.ibuf = ""
  end
end

-- Answers commands starting with prefix with a refusal (+CME ERROR: n);
-- cme nil stops refusing them.
function Core:refuse(prefix, cme)
  self.refusals[prefix:upper()] = cme and (tonumber(cme) or M.E_STATE) or nil
  self.refusing = next(self.refusals) ~= nil
end

function Core:drop()
  if self.dialect.drop then self.dialect.drop(self) end
end

function Core:pdp_deact()
  if self.dialect.pdp_deact then self.dialect.pdp_deact(self) end
end

-- A fault by its option name: noise, slow, echo, silent (value on/off or
-- ms), drop, pdp, reboot (value ignored: now).
function Core:fault(name, value)
  if name == "noise" then return self:noise(value)
  elseif name == "slow" then return self:slow(value)
  elseif name == "echo" then return self:echo(value)
  elseif name == "silent" then return self:silent(value)
  elseif name == "drop" then return self:drop()
  elseif name == "pdp" then return self:pdp_deact()
  elseif name == "reboot" then return self:reboot()
  elseif name == "refuse" then return self:refuse(value[1], value[2])
  end
  error("sim: unknown fault '" .. tostring(name) .. "'", 2)
end

---------------------------------------------------------------------------
-- Network state and hosts
---------------------------------------------------------------------------

-- Where a connection to host:port really goes: the hosts table (by
-- "name:port", then "name"), then for MQTT the broker option, then the
-- name itself. Returns addr, port, remapped.
function Core:resolve(host, port, kind)
  local key = host:lower()
  local v = self.hosts[key .. ":" .. port] or self.hosts[key]
  if not v and kind == "mqtt" then v = self.broker end
  if not v then return host, port, false end
  local a, p = M.split_hostport(v)
  return a, p or port, true
end

-- A connected port to host:port through the hosts table, with TLS when
-- tls is a port:tls options table (its hostname defaults to the name
-- asked for, or to the address when the table remapped it). Returns the
-- port or nil, message, code.
function Core:connect(host, port, tls, kind)
  local addr, p, remapped = self:resolve(host, port, kind)
  local c, err, code = athost.connect(addr, p)
  if not c then return nil, err, code end
  c:set { transcript = false }   -- the model's network, not the dialogue
  if not tls then return c end
  if not c.tls then
    c:close()
    return nil, "ENOTSUP: this host has no port:tls", "ENOTSUP"
  end
  tls.hostname = tls.hostname or (remapped and addr or host)
  local ok
  ok, err, code = c:tls(tls)
  if not ok then
    if not c.closed then c:close() end
    return nil, err, code
  end
  return type(ok) == "userdata" and ok or c
end

-- Data can flow: radio on, attached, PDP context active.
function Core:online()
  local n = self.net
  return n.cfun == 1 and n.attached and n.pdp
end

function Core:net_down()
  if self.dialect.net_down then self.dialect.net_down(self) end
end

-- The PDP context came back (AT+CGACT=1, AT+CFUN=1): a model may say so.
function Core:net_up()
  if self.dialect.net_up then self.dialect.net_up(self) end
end

return M
