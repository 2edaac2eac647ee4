-- What every MQTT session through a module's AT commands shares, whatever
-- the command family: the message queue, requests whose result is a URC,
-- telling a lost link from a lost bearer, recovery with a bounded backoff
-- and the profile's re-activation ladder, retrying a subscribe or publish
-- once after a recovery, and listening. A dialect (lib/athost/dialect/)
-- makes its session class with M.class() and supplies the commands:
--
--   S:connect()                          open the link and connect (raises)
--   S:subscribe_once(topic, qos)         true | nil, err, code, r
--   S:publish_once(topic, payload, qos, retain)   true | nil, err, code, r
--   S:unsubscribe(topic), S:disconnect()
--   S:relink()          optional: what a lost link needs before connect()
--                       again (close the old one)
--   S:fetch(entry)      optional: read messages the module holds (queue
--                       entries { slot = n } stand for them; entry is
--                       the one listen() took)
--   S:before_bearer()   optional: what to do before the ladder (read
--                       what the module holds; shut its sockets)
--   S:listened(mt)      a match of self.listen_pats while listening
--   S:probe(err, code, r)  optional: a failed request that named no loss
--                       may still be one (a send failed under a link whose
--                       loss URC is still on the way): ask the module;
--                       returns the loss, as Base:loss, or nil
--   S:settle()          optional: after a listen wait ends (after
--                       listened(mt), if it took a line), the work the
--                       URC handlers held back while self.listening was
--                       set: they saw only lines after the one the wait
--                       took, as the port wakes its waiter last
--
-- A caller may set s.seen = function(topic, payload): it runs the moment
-- a message is read (in the URC handler, before the transcript writes the
-- bytes), so a secret in it is registered before anything shows it.
--
-- and sets, in its constructor after M.init: self.listen_pats (what
-- listen() waits for), self.link_lost and self.bearer_lost (pattern lists
-- of the lines that mean each loss). Nothing here knows a command.
local athost = require("athost")
local at = require("athost.at")

local M = {}
local Base = {}
Base.__index = Base
M.Base = Base

-- A list from a pattern or a list of them (a counted spec is one pattern).
function M.list(v)
  if v == nil then return {} end
  if type(v) == "table" and v.count == nil then return v end
  return { v }
end
local list = M.list

function M.concat(...)
  local out = {}
  for i = 1, select("#", ...) do
    for _, v in ipairs(list((select(i, ...)))) do out[#out + 1] = v end
  end
  return out
end
local concat = M.concat

-- Whether a line matches one of pats as the engine matches them.
M.any = at.any
local any = M.any

function M.fail(what, err)
  error(what .. ": " .. tostring(err), 0)
end
local fail = M.fail

-- A session class for a dialect: its methods first, then Base's.
function M.class()
  local S = setmetatable({}, { __index = Base })
  S.__index = S
  return S
end

-- The fields every session has; o is the caller's options (host, port,
-- tls, client_id, username, password, keepalive, retries, backoff_ms,
-- apn, on_reset).
function M.init(S, m, o)
  return setmetatable({
    m = m, port = m.port, o = o, rec = m.profile.recovery or {},
    keepalive = tonumber(o.keepalive) or 60,
    queue = {}, subs = {}, handlers = {}, lost = nil, connected = false,
    link_lost = {}, bearer_lost = {}, listen_pats = {},
    stats = { published = 0, received = 0, recovered = 0 },
  }, S)
end

-- A URC handler kept until disconnect().
function Base:on(pat, fn)
  self.handlers[#self.handlers + 1] = self.port:on(pat, fn)
end

function Base:off_all()
  for _, id in ipairs(self.handlers) do self.port:off(id) end
  self.handlers = {}
end

-- A message for listen(), or the failure listen() raises (a count that
-- fit no reading): never half a message.
function Base:deliver(topic, payload, why)
  if payload == nil then
    self.failed = self.failed or string.format("incoming message on %q: %s",
      tostring(topic or "?"), why or "no payload")
    return
  end
  if self.seen then self.seen(topic, payload) end
  self.queue[#self.queue + 1] = { topic = topic, payload = payload }
end

-- Notes a loss seen by a URC handler; a bearer loss outranks a link loss.
function Base:lose(kind, why)
  if not self.lost or (kind == "bearer" and self.lost.kind ~= "bearer") then
    self.lost = { kind = kind, why = why }
  end
end

-- Registers the handlers of the loss patterns.
function Base:watch_losses()
  for _, pat in ipairs(self.link_lost) do
    self:on(pat, function(mt) self:lose("link", mt.line) end)
  end
  for _, pat in ipairs(self.bearer_lost) do
    self:on(pat, function(mt) self:lose("bearer", mt.line) end)
  end
end

-- m:cmd for a command whose outcome is a URC (before or after OK): ok and
-- bad are the outcome patterns, wait names the profile's wait for the
-- outcome after OK. A lost link or bearer aborts it, unless that line is
-- one of its failures.
function Base:request(cmd, ok, bad, wait, opts)
  opts = opts or {}
  if opts.reply == nil then opts.reply = false end
  opts.outcome, opts.outcome_fail = ok, bad
  opts.outcome_timeout = self.m:wait_ms(wait)
  local failures, aborts = {}, {}
  for _, pt in ipairs(list(bad)) do failures[pt] = true end
  for _, pt in ipairs(concat(self.link_lost, self.bearer_lost)) do
    if not failures[pt] then aborts[#aborts + 1] = pt end
  end
  opts.abort = concat(opts.abort, aborts)
  return self.m:cmd(cmd, opts)
end

-- The line a failed request names ("CONNECT FAIL", "+PDP DEACT"), from
-- its outcome or its message.
function M.said(err, r)
  if r and r.outcome and r.outcome.line then return r.outcome.line end
  -- Up to the last quote: the line may hold quotes (+QIURC: "pdpdeact",1).
  return tostring(err):match('aborted on "(.*)"') or tostring(err):match('said "(.*)"')
end
local said = M.said

-- The message of a failed request without the engine's prefix.
function M.reason(err)
  return (tostring(err):gsub("^EABORT: .- aborted on ", ""))
end
local reason = M.reason

-- The loss a request failed on: { kind = "link"|"bearer", why = line },
-- or nil when it failed for another reason.
function Base:loss(err, code, r)
  local line = said(err, r) or ""
  local found
  if code == "EABORT" or code == "EOUTCOME" then
    if any(line, self.bearer_lost) then
      found = { kind = "bearer", why = line }
    elseif any(line, self.link_lost) then
      found = { kind = "link", why = line }
    end
  elseif code == "EOF" then
    found = { kind = "link", why = "EOF" }
  end
  -- A loss a handler saw (the link's URC right after the bearer's line
  -- that ended the request) counts too; a bearer loss outranks a link's.
  if self.lost and not (found and found.kind == "bearer" and self.lost.kind ~= "bearer") then
    return self.lost
  end
  return found
end

-- Before a request: a loss already seen is recovered first.
function Base:ready()
  athost.sleep(0)        -- URC handlers of bytes already read run first
  if self.lost then self:recover() end
end

-- Runs once(...); after a lost link or bearer, recovers and runs it once
-- more. Raises with what, naming the reason.
function Base:retried(what, once, ...)
  self:ready()
  local ok, err, code, r = once(self, ...)
  if ok then return true end
  local lost = self:loss(err, code, r)
  if not lost and self.probe then lost = self:probe(err, code, r) end
  if lost then
    self.lost = lost
    self:recover()
    ok, err = once(self, ...)
    if ok then return true end
  end
  fail(what, reason(err))
end

function Base:subscribe(topic, qos)
  qos = tonumber(qos) or 0
  self:retried("subscribing to " .. topic, self.subscribe_once, topic, qos)
  self.subs[topic] = qos
  return true
end

function Base:publish(topic, payload, qos, retain)
  qos = tonumber(qos) or 0
  self:retried("publishing to " .. topic, self.publish_once, topic,
    tostring(payload), qos, retain)
  self.stats.published = self.stats.published + 1
  return true
end

---------------------------------------------------------------------------
-- Recovery
---------------------------------------------------------------------------

-- MQTT again on a working bearer: connect, subscribe to every topic.
function Base:reestablish()
  local ok, err = pcall(self.connect, self)
  if not ok then return nil, err end
  for topic, qos in pairs(self.subs) do
    local sok, serr = self:subscribe_once(topic, qos)
    if not sok then return nil, "subscribing to " .. topic .. ": " .. reason(serr) end
  end
  return true
end

-- After a reboot: autobaud, echo off, numeric errors, as at power-on;
-- then the settings lost with it (the TLS settings of athost.session,
-- the caller's o.on_reset).
function Base:bring_up()
  local m = self.m
  m:restart(self.rec.reset_tries)
  if m.after_reset then m.after_reset(m) end
  if self.o.on_reset then self.o.on_reset(m) end
end

-- The commands of a rung, "%s" replaced by the APN.
function Base:rung_commands(cmds)
  local apn = self.o.apn or self.m.profile.default_apn or ""
  local out = {}
  for i, c in ipairs(cmds) do
    out[i] = c:find("%s", 1, true) and string.format(c, apn) or c
  end
  return out
end

-- One rung of the profile's re-activation ladder: its commands in order
-- (a rung's `tolerate` patterns: answers that count as done, such as
-- "already active"), a bring-up after a reboot, the network checks, then
-- MQTT. Returns true or nil, why.
function Base:rung(cmds)
  local m = self.m
  for _, cmd in ipairs(self:rung_commands(cmds)) do
    local r, err = m:cmd(cmd)
    if not r and not (cmds.tolerate and any(tostring(err), cmds.tolerate)) then
      return nil, err
    end
  end
  local ok, err = pcall(function()
    if cmds.reboot then self:bring_up() end
    m:network()
  end)
  if not ok then return nil, err end
  return self:reestablish()
end

-- After a lost bearer: the dialect's preparation (before_bearer), then
-- the profile's re-activation ladder, each rung tried only when the one
-- before it failed.
function Base:restore_bearer()
  if self.before_bearer then self:before_bearer() end
  local rec = self.rec
  local last
  for i, cmds in ipairs(rec.ladder or {}) do
    local ok, err = self:rung(cmds)
    if ok then return true end
    last = string.format("%s: %s", table.concat(self:rung_commands(cmds), ", "), tostring(err))
    athost.log(string.format("re-activation %d/%d failed (%s)", i, #rec.ladder, last))
  end
  return nil, last or "the profile has no re-activation ladder"
end

-- Reconnects after a lost link (relink, then connect) or a lost bearer
-- (restore_bearer), with a bounded backoff.
function Base:recover()
  local lost = self.lost or { kind = "link", why = "link lost" }
  local tries = tonumber(self.o.retries) or 5
  local delay = tonumber(self.o.backoff_ms) or 1000
  athost.log("link lost (" .. lost.why .. "): reconnecting")
  local last
  for i = 1, tries do
    local ok, err
    if lost.kind == "bearer" then
      ok, err = self:restore_bearer()
    else
      if self.relink then self:relink() end
      ok, err = self:reestablish()
    end
    if ok then
      self.lost = nil
      self.stats.recovered = self.stats.recovered + 1
      athost.log(string.format("reconnected (attempt %d)", i))
      return true
    end
    last = err
    -- A loss seen during this attempt decides what the next one does.
    if self.lost and self.lost.kind == "bearer" then lost = self.lost end
    if i < tries then
      athost.sleep(delay)
      delay = math.min(delay * 2, 30000)
    end
  end
  fail(string.format("reconnecting after %s (%d attempts)", lost.why, tries), last)
end

---------------------------------------------------------------------------
-- Listening
---------------------------------------------------------------------------

-- Delivers queued and arriving messages to fn for up to ms, or until fn
-- returns false. Returns how many were delivered. A message that cannot
-- be read (its count fits no reading) fails it with that message.
function Base:listen(ms, fn)
  local deadline = athost.now() + ms
  local n = 0
  if self.listening then
    -- A listen canceled in its wait (Ctrl-C at athost -i) left the flag
    -- set: what the handlers held back since then is taken now.
    self.listening = false
    if self.settle then self:settle() end
  end
  while true do
    -- URC handlers woken by the bytes that ended the last command run
    -- first: what they queue (a message, a lost link) is not waited for.
    athost.sleep(0)
    while #self.queue > 0 do
      local msg = table.remove(self.queue, 1)
      if msg.slot then
        self:fetch(msg)
      else
        n = n + 1
        self.stats.received = self.stats.received + 1
        if fn(msg) == false then return n end
      end
    end
    if self.failed then fail("waiting for messages", self.failed) end
    if self.lost then
      -- What arrives with the recovery's last answers (a message after
      -- the resubscribe) is queued: delivered at the top, not waited for.
      self:recover()
    else
      local left = deadline - athost.now()
      if left <= 0 then return n end
      self.listening = true
      local mt, err, code = self.port:expect(self.listen_pats, {
        abort = concat(self.link_lost, self.bearer_lost), timeout = math.ceil(left),
        progress = false })  -- listening is the point here, not a stall
      self.listening = false
      -- A wait is woken after the URC handlers of the same read: what
      -- they queued meanwhile came after mt's line, and goes after it.
      local later = self.queue
      self.queue = {}
      if mt then self:listened(mt) end
      if self.settle then self:settle() end
      table.move(later, 1, #later, #self.queue + 1, self.queue)
      if code == "EABORT" then
        self.lost = self:loss(err, code) or { kind = "link", why = reason(err) }
      elseif not mt and code ~= "ETIMEDOUT" then
        fail("waiting for messages", err)
      end
    end
  end
end

return M
