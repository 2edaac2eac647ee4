-- The ME3630's own Aliyun commands (reference 002): AT+CLOUDAUTH,
-- AT+CLOUDCONN, AT+CLOUDSUB, AT+CLOUDPUB, +CLOUDPUBLISH. The same session
-- interface as athost.mqttat, so a flow's tail does not care which.
local athost = require("athost")

local M = {}
local S = {}
S.__index = S

function M.new(m, o)
  local c = m.profile.cloud
  if not c then error(m.profile.name .. " has no cloud commands", 2) end
  local self = setmetatable({ m = m, port = m.port, c = c, o = o, queue = {},
    subs = {}, stats = { published = 0, received = 0, recovered = 0 } }, S)
  self.urc = self.port:on(c.message, function(mt) self:take(mt) end)
  return self
end

local function fail(what, err)
  error(what .. ": " .. tostring(err), 0)
end

-- An incoming +CLOUDPUBLISH: queued, or, when its count did not fit what
-- arrived (the engine set mt.error), kept as the error listen() raises.
function S:take(mt)
  if mt.error then
    self.error = self.error or mt.error
  else
    self.queue[#self.queue + 1] = { topic = mt[2], payload = mt.payload }
  end
end

local function check(self, what, s, limit)
  if #s > limit then
    fail(what, string.format("%d bytes, the %s takes at most %d", #s,
      self.m.profile.name, limit))
  end
end

-- A topic goes in the command line: a line end would cut it.
local function check_topic(self, what, topic)
  check(self, what, topic, self.m.profile.limits.topic)
  if topic:find("[\r\n]") then fail(what, "a topic cannot hold a line end") end
end

-- A command whose result is an outcome line (before or after its OK): the
-- match, or a raise naming the step (`refused` after it when the module
-- said a failure outcome, quoted; never the command, which may hold a
-- secret).
local function outcome(self, what, refused, cmd, ok, bad, o)
  o.outcome, o.outcome_fail = ok, bad
  local r, err, code, r2 = self.m:cmd(cmd, o)
  if r then return r.outcome end
  if code == "EOUTCOME" and r2 and r2.outcome then
    fail(what .. refused, string.format("the module said %q", r2.outcome.line))
  end
  fail(what, err)
end

-- AT+CLOUDAUTH (+ALIAUTH: OK), then AT+CLOUDCONN.
function S:connect()
  local o, c, m = self.o, self.c, self.m
  -- The module may hold its OK until the service answered (reference
  -- 002's example order), so the whole wait is the command's too.
  local wait = m:wait_ms("auth")
  outcome(self, "device auth", " refused", string.format(c.auth, o.product_key,
    o.device_name, o.device_secret), c.auth_ok, c.auth_fail,
    { timeout = math.max(m:timeout("AT+CLOUDAUTH"), wait), outcome_timeout = wait })
  local r, err = m:cmd(c.conn)
  if not r then fail("MQTT connect", err) end
  return true
end

function S:subscribe(topic, qos)
  local c, m = self.c, self.m
  local what = "subscribing to " .. topic
  check_topic(self, "topic " .. topic, topic)
  local wait = m:wait_ms("suback")
  local mt = outcome(self, what, " refused", string.format(c.sub, topic, qos or 0),
    c.suback, c.suback_fail, { timeout = math.max(m:timeout("AT+CLOUDSUB"), wait),
      outcome_timeout = wait })
  -- +CLOUDSUBACK: <code>: reference 002 shows only OK ("<OK>" in its
  -- example); another code is no success it describes.
  local code = (mt[1] or ""):gsub("^<(.*)>$", "%1")
  if code ~= c.suback_code then
    fail(what .. " refused", string.format("the module said %q where +CLOUDSUBACK "
      .. "was expected to say %s", mt.line, c.suback_code))
  end
  self.subs[topic] = qos or 0
  return true
end

-- How AT+CLOUDPUB must carry payload: "text" in the command line, or
-- "length" (the length form: the module reads an all-digit message as a
-- byte count, reference 002, strips quotes around one, and a line end
-- would end the command); nil, why when it cannot be sent.
local function pub_form(c, payload)
  local special = payload:match("^%s*%d+%s*$") and "of digits only"
    or payload:match('^%s*".*"%s*$') and "in quotes"
    or payload:find("[\r\n]") and "with a line end"
  if not special then return "text" end
  if c.numeric_payload == "refuse" or not c.pub_length then
    return nil, string.format("a message %s would be misread by AT+CLOUDPUB "
      .. "(a message of digits is a length, reference 002), and the profile %s",
      special, c.pub_length and 'says numeric_payload = "refuse"' or "has no length form")
  end
  return "length"
end

function S:publish(topic, payload, qos)
  local c, m = self.c, self.m
  local what = "publishing to " .. topic
  payload = tostring(payload)
  check_topic(self, what, topic)
  check(self, what, payload, m.profile.limits.payload)
  local form, why = pub_form(c, payload)
  if not form then fail(what, why) end
  qos = tonumber(qos) or 0
  local r, err
  if form == "text" then
    r, err = m:cmd(string.format(c.pub, topic, qos, payload), { reply = false })
  else
    r, err = m:cmd(string.format(c.pub_length, topic, qos, #payload),
      { prompt = c.pub_prompt, data = payload, reply = false })
  end
  if not r then fail(what, err) end
  self.stats.published = self.stats.published + 1
  return true
end

function S:listen(ms, fn)
  local deadline = athost.now() + ms
  local n = 0
  while true do
    while #self.queue > 0 do
      n = n + 1
      self.stats.received = self.stats.received + 1
      if fn(table.remove(self.queue, 1)) == false then return n end
    end
    local left = deadline - athost.now()
    if left <= 0 then return n end
    if self.error then fail("waiting for messages", self.error) end
    local mt, err, code = self.port:expect(self.c.message,
      { timeout = math.ceil(left), progress = false })
    if mt then
      -- A wait is woken after the URC handlers of the same read: what
      -- they queued meanwhile came after mt's line, and goes after it.
      local later = self.queue
      self.queue = {}
      self:take(mt)
      table.move(later, 1, #later, #self.queue + 1, self.queue)
    elseif code ~= "ETIMEDOUT" then
      fail("waiting for messages", err)
    end
  end
end

function S:disconnect()
  self.m:cmd(self.c.disconn)
  self.port:off(self.urc)
end

return M
