-- A module on a port: its profile (lib/athost/profiles/), commands with the
-- profile's timeouts, and the bring-up every flow starts with.
--
--   local modem = require("athost.modem")
--   local m = modem.open(athost.port())     -- autobaud, ATE0, CMEE, identify
--   m:network()                             -- SIM ready, registered, attached
--   m:bearer("CMIIOT")
--
-- Methods that can fail raise with a one-line message (flows stop there and
-- the host reports the step); m:cmd returns nil, message, code like
-- port:cmd for callers that handle failures themselves.
local athost = require("athost")
local at = require("athost.at")

local M = {}
local Modem = {}
Modem.__index = Modem

-- Detection tries these in order: a model whose words are more specific
-- comes before one whose words it shares ("AirM2M" is every Luat module).
M.known = { "ec200u", "air780e", "air720", "me3630", "a7670" }

function M.profile(name)
  local ok, p = pcall(require, "athost.profiles." .. name)
  if not ok then
    -- A name the user gave (profile=): a usage error, exit 2.
    athost.usage(string.format("unknown module profile %q (known: %s)", name,
      table.concat(M.known, ", ")))
  end
  return p
end

-- Wraps a port. opts.profile names the profile (default: detected).
function M.new(port, opts)
  opts = opts or {}
  local self = setmetatable({ port = port, opts = opts, info = {} }, Modem)
  if opts.profile then self.profile = M.profile(opts.profile) end
  return self
end

-- Wraps a port and brings the module up: autobaud, echo off, numeric
-- errors, identification.
function M.open(port, opts)
  local self = M.new(port, opts)
  self:autobaud(opts and opts.tries)
  -- Neither is in the references' dialogues: a module that refuses them
  -- still works (its echo is skipped, its errors are ERROR), so a refusal
  -- is noted, not fatal.
  self:optional(self.profile and self.profile.echo_off or "ATE0")
  self:identify()
  self:optional(self.profile.cmee)
  -- Who this DUT is, for a station's report and table (athost --ports
  -- names a DUT by its IMEI); read-only, and a module that will not say
  -- is no failure.
  local r = self:cmd("AT+CGSN", { reply = false })
  for _, l in ipairs(r and r.lines or {}) do
    self.info.imei = self.info.imei or l:match("(%d%d%d%d%d%d%d%d%d%d%d%d%d%d%d?%d?%d?)")
  end
  athost.emit("dut", { imei = self.info.imei, model = self.info.model,
    firmware = self.info.revision })
  return self
end

-- After a reset (AT+RESET, a watchdog): autobaud, echo off, numeric
-- errors, as at power-on; the profile is known already.
function Modem:restart(tries)
  self:autobaud(tries)
  self:optional(self.profile.echo_off or "ATE0")
  if self.profile.cmee then self:optional(self.profile.cmee) end
end

-- A command the dialogue can do without: its failure is logged.
function Modem:optional(cmd)
  local r, err = self:cmd(cmd)
  if not r then athost.log(string.format("%s refused (%s): going on", cmd, err)) end
  return r
end

function Modem:timeout(cmd)
  local t = self.profile and self.profile.timeouts or {}
  return t[at.name(cmd)] or t.default or 5000
end

function Modem:wait_ms(what)
  local w = self.profile and self.profile.waits or {}
  return self.opts[what .. "_timeout"] and tonumber(self.opts[what .. "_timeout"])
      or w[what] or 30000
end

-- port:cmd with the profile's timeout for this command, sent no sooner
-- than the profile's gap after the last final result: modules drop a
-- command that follows the previous OK too closely (PROTOCOLS.md: about
-- 20 ms). gap=0 turns that off.
function Modem:cmd(cmd, opts)
  opts = opts or {}
  if opts.timeout == nil then opts.timeout = self:timeout(cmd) end
  self:settle()
  local r, err, code, r2 = self.port:cmd(cmd, opts)
  self.last_final = athost.now()
  return r, err, code, r2
end

-- Waits out the profile's gap after the last final result; a dialect
-- that writes a command itself calls it first and sets last_final after.
function Modem:settle()
  local gap = tonumber(self.opts.gap) or (self.profile and self.profile.gap_ms) or 20
  if gap > 0 and self.last_final then
    local wait = self.last_final + gap - athost.now()
    if wait > 0 then athost.sleep(wait) end
  end
end

-- Like cmd, but raises on failure.
function Modem:must(cmd, opts)
  local r, err = self:cmd(cmd, opts)
  if not r then error(err, 0) end
  return r
end

function Modem:expect(pats, opts)
  return self.port:expect(pats, opts)
end

-- Sends an upper-case AT until the module answers (autobaud).
function Modem:autobaud(tries)
  tries = tonumber(tries) or 10
  local err
  for _ = 1, tries do
    local r
    r, err = self:cmd("AT", { timeout = 1000 })
    if r then return true end
  end
  error(string.format("the module does not answer AT (%d tries): %s", tries,
    err), 0)
end

-- An identification line without the command's name and the quotes some
-- modules add (+CGMI: "AirM2M" on the Air780E, DIALECTS.md §3), and the
-- "Revision: " a Quectel may put before its firmware name (§1.11).
local function bare(line)
  local v = line:gsub("^%+CGM[IMR]: ?", ""):gsub("^%+GM[IMR]: ?", "")
  v = v:match('^"(.*)"$') or v
  return (v:gsub("^Revision: ?", ""))
end

-- Reads AT+CGMI, AT+CGMM, AT+CGMR and ATI, picks the profile (the first
-- of M.known one of whose detect words is in the answers; profile=
-- overrides), checks the firmware.
function Modem:identify()
  local text = {}
  for _, c in ipairs({ "AT+CGMI", "AT+CGMM", "AT+CGMR", "ATI" }) do
    local r = self:cmd(c, { timeout = 2000, reply = false })
    if r then
      local lines = {}
      for i, l in ipairs(r.lines) do lines[i] = bare(l) end
      local s = table.concat(lines, " ")
      text[#text + 1] = s
      self.info[c == "ATI" and "ati" or c:sub(4):lower()] = s
    end
  end
  self.info.revision = self.info.cgmr
  local all = table.concat(text, " ")
  if not self.profile then
    for _, name in ipairs(M.known) do
      local p = M.profile(name)
      for _, word in ipairs(p.detect) do
        if all:find(word, 1, true) then self.profile = p break end
      end
      if self.profile then break end
    end
  end
  if not self.profile then
    error(string.format("unknown module (AT+CGMI/CGMM/CGMR/ATI said %q); give "
      .. "profile=NAME, one of: %s", all, table.concat(M.known, ", ")), 0)
  end
  self.info.model = self.profile.name
  local p = self.profile
  if p.min_version and self.info.cgmr then
    local v = tonumber(self.info.cgmr:match(p.version))
    if v and v < p.min_version then
      error(string.format("firmware %s is too old: %s needs V%d or later",
        self.info.cgmr, p.name, p.min_version), 0)
    end
  end
  return self.profile
end

-- The IMEI (AT+CGSN): the first line of 14-17 digits.
function Modem:imei()
  if self.info.imei then return self.info.imei end
  local r = self:must("AT+CGSN", { reply = false })
  for _, l in ipairs(r.lines) do
    local d = l:match("(%d%d%d%d%d%d%d%d%d%d%d%d%d%d%d?%d?%d?)")
    if d then
      self.info.imei = d
      return d
    end
  end
  error("AT+CGSN gave no IMEI: " .. table.concat(r.lines, " "), 0)
end

-- Polls a query until its reply satisfies ok(capture) or the deadline.
local function poll(self, q, ok, what, ms)
  local deadline = athost.now() + ms
  local last
  -- Each query is short; the wait is the loop's: it reports its progress
  -- every 10 s ("waiting for registered (AT+CREG?): 10 s of 120 s").
  local progress <close> = athost.waiting(string.format("%s (%s)", what, q.cmd), ms)
  while true do
    local r, err, code = self:cmd(q.cmd, { reply = q.pattern })
    if r then
      last = r.line or r.lines[1] or r.final
      if ok(r) then return r end
    elseif code == "EECHO" then
      -- Another command's echo: the module is out of step with us (or a
      -- second program talks to it); asking again would hide that.
      error(string.format("%s: %s", what, err), 0)
    else
      last = err
    end
    if athost.now() >= deadline then
      error(string.format("%s: not after %d s (%s said %q)", what,
        ms // 1000, q.cmd, tostring(last)), 0)
    end
    athost.sleep(1000)
  end
end

function Modem:sim_ready()
  local s = self.profile.sim_ready
  return poll(self, { cmd = s.cmd }, function(r)
    for _, l in ipairs(r.lines) do
      if l:find(s.ok, 1, true) then return true end
    end
  end, "SIM ready", 10000)
end

-- SIM ready, registered, attached: the network part of every flow.
function Modem:network()
  local p = self.profile
  self:sim_ready()
  local reg = p.registration
  poll(self, reg, function(r) return r[1] and reg.ok[r[1]] end,
    "registered", self:wait_ms("registration"))
  if p.attach then
    local a = p.attach
    poll(self, a, function(r) return r[1] == a.ok end, "attached",
      self:wait_ms("attach"))
  end
  return true
end

-- Activates the data bearer (AT+SAPBR on the Air720, ECM dialing on the
-- ME3630, AT+QICSGP/AT+QIACT on the EC200U). Already active is fine: the
-- profile's bearer_query says so first, and its bearer_tolerate lists
-- the refusals that mean it.
function Modem:bearer(apn)
  local p = self.profile
  apn = apn or p.default_apn
  local function active()
    local q = p.bearer_query
    local r = q and self:cmd(q.cmd, { reply = q.pattern })
    return r and r.line and r[1] == q.ok, r
  end
  if p.bearer_query and active() then return true end
  local tolerated
  for _, c in ipairs(p.bearer) do
    local cmd = c:find("%s", 1, true) and string.format(c, apn) or c
    local r, err = self:cmd(cmd, { reply = false })
    if not r and p.bearer_optional then
      -- The rest of the sequence would be refused alike.
      athost.log(string.format("%s refused (%s): going on, the bearer is the attach's", cmd, err))
      return true
    elseif not r and p.bearer_tolerate and at.any(tostring(err), p.bearer_tolerate) then
      -- "Already active" (a Quectel on LTE, DIALECTS.md §1.7) has no
      -- known wording: the query below decides when it can.
      athost.log(string.format("%s refused (%s): taken as already active", cmd, err))
      tolerated = cmd
    elseif not r then
      error(err, 0)
    end
    if r and p.bearer_reply then
      local seen = false
      for _, l in ipairs(r.lines) do
        if l:find(p.bearer_reply, 1, true) then seen = true end
      end
      if not seen then
        error(string.format("%s did not answer %s (said %q)", cmd,
          p.bearer_reply, table.concat(r.lines, " ")), 0)
      end
    end
  end
  if tolerated and p.bearer_query then
    local up, r = active()
    -- Only an answer that names the context as down overrides.
    if not up and r and r.line then
      error(string.format("%s refused and %s says the bearer is down (%q)",
        tolerated, p.bearer_query.cmd, r.line), 0)
    end
  end
  return true
end

return M
