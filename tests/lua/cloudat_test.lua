-- athost.cloudat against a fake ME3630 on a pty that answers as reference
-- 002 allows: +ALIAUTH and +CLOUDSUBACK before OK (its usage example) or
-- after it (its command reference), "<OK>" or "OK", +CLOUDPUBLISH with
-- or without the space; an all-digit message goes through the length
-- form; counts that fit no reading end listen() with an error.
local t = require("t")
local athost = require("athost")
local listen = require("listen")
local modem = require("athost.modem")
local cloudat = require("athost.cloudat")

local PK, DN, DS = "a1CloudAt", "dev-1", "Ds" .. athost.random(12, "hex")

-- Starts a fake module: fn(mp) runs as a flow on the pty master. Returns
-- a session on the slave (the ME3630 profile, or `profile`) and finish(),
-- which waits for fn, closes both sides and raises if fn raised.
local function fake(fn, profile)
  local mp, path = assert(athost.pty { name = "fake3630" })
  local task = athost.spawn(function() return pcall(fn, mp) end)
  local p = assert(athost.open(path, { name = "dut", timeout = 5000 }))
  local m = modem.new(p, { profile = "me3630", gap = "0" })
  if profile then m.profile = profile end
  local s = cloudat.new(m, { product_key = PK, device_name = DN, device_secret = DS })
  return s, function()
    local ok, err = task:join()
    p:close()
    mp:close()
    if not ok then error("fake module: " .. tostring(err), 2) end
  end
end

-- The module reads one command, checks it, answers.
local function answer(mp, want, reply)
  local line = assert(mp:readline { timeout = 5000 })
  if line ~= want then error(string.format("got %q, want %q", line, want), 2) end
  if reply then assert(mp:send(reply)) end
end

local function L(line) return "\r\n" .. line .. "\r\n" end
local OK = L("OK")
local AUTH = "AT+CLOUDAUTH=" .. PK .. "," .. DN .. "," .. DS

-- A copy of the ME3630 profile with the cloud fields in `cloud` changed.
local function profile_with(cloud)
  local base = require("athost.profiles.me3630")
  local p, c = {}, {}
  for k, v in pairs(base) do p[k] = v end
  for k, v in pairs(base.cloud) do c[k] = v end
  for k, v in pairs(cloud) do c[k] = v end
  p.cloud = c
  return p
end

---------------------------------------------------------------------------
-- AT+CLOUDAUTH and AT+CLOUDSUB: the outcome before or after OK
---------------------------------------------------------------------------

t.test("+ALIAUTH: OK and +CLOUDSUBACK after OK, and before it", function()
  for _, before in ipairs({ false, true }) do
    local function outcome(line) return before and L(line) .. OK or OK .. L(line) end
    local s, finish = fake(function(mp)
      answer(mp, AUTH, outcome("+ALIAUTH: OK"))
      answer(mp, "AT+CLOUDCONN", OK)
      answer(mp, "AT+CLOUDSUB=/t/a,0", outcome("+CLOUDSUBACK: <OK>"))
      answer(mp, "AT+CLOUDSUB=/t/b,1", outcome("+CLOUDSUBACK: OK"))
      answer(mp, "AT+CLOUDSUB=/t/c,0", outcome("+CLOUDSUBACK:OK"))
    end)
    t.ok(s:connect(), "connected")
    t.ok(s:subscribe("/t/a", 0), "<OK>")
    t.ok(s:subscribe("/t/b", 1), "OK")
    t.ok(s:subscribe("/t/c", 0), "OK without the space")
    t.deepeq(s.subs, { ["/t/a"] = 0, ["/t/b"] = 1, ["/t/c"] = 0 }, "subscriptions")
    finish()
  end
end)

t.test("+ALIAUTH: FAIL before or after OK: device auth refused, no secret shown", function()
  for _, reply in ipairs({ L("+ALIAUTH: FAIL") .. OK, OK .. L("+ALIAUTH: FAIL"),
                           OK .. L("+CME ERROR: 767") }) do
    local s, finish = fake(function(mp) answer(mp, AUTH, reply) end)
    local ok, err = pcall(s.connect, s)
    finish()
    t.eq(ok, false, "refused")
    t.match(err, '^device auth refused: the module said "%+', "the step")
    t.match(err, reply:match("(%+[^\r]*)"):gsub("%p", "%%%0"), "the module's line")
    t.nomatch(err, DS, "the secret")
  end
  -- Before OK, a +CME ERROR is the command's own final result.
  local s, finish = fake(function(mp) answer(mp, AUTH, L("+CME ERROR: 30")) end)
  local ok, err = pcall(s.connect, s)
  finish()
  t.eq(ok, false, "refused")
  t.match(err, "^device auth: %+CME ERROR: 30", "the step and the module's words")
  t.nomatch(err, DS, "the secret")
end)

t.test("+CMD ERROR and an unknown +CLOUDSUBACK code: subscribing refused", function()
  for _, reply in ipairs({ L("+CMD ERROR: 128") .. OK, OK .. L("+CMD ERROR: 128"),
                           L("+CLOUDSUBACK: 128") .. OK, OK .. L("+CLOUDSUBACK: <FAIL>") }) do
    local s, finish = fake(function(mp) answer(mp, "AT+CLOUDSUB=/t/x,0", reply) end)
    local ok, err = pcall(s.subscribe, s, "/t/x", 0)
    finish()
    t.eq(ok, false, "refused: " .. reply)
    t.match(err, '^subscribing to /t/x refused: the module said "'
      .. reply:match("(%+[^\r]*)"):gsub("%p", "%%%0") .. '"', "the step and the line")
    t.eq(s.subs["/t/x"], nil, "not subscribed")
  end
end)

t.test("no +CLOUDSUBACK after OK: a timeout naming the command", function()
  local m, path = assert(athost.pty { name = "fake3630" })
  local task = athost.spawn(function() answer(m, "AT+CLOUDSUB=/t/x,0", OK) end)
  local p = assert(athost.open(path, { name = "dut", timeout = 5000 }))
  local md = modem.new(p, { profile = "me3630", gap = "0", suback_timeout = "300" })
  local s = cloudat.new(md, { product_key = PK, device_name = DN, device_secret = DS })
  local ok, err = pcall(s.subscribe, s, "/t/x", 0)
  task:join()
  p:close()
  m:close()
  t.eq(ok, false, "failed")
  t.match(err, "^subscribing to /t/x: ETIMEDOUT: .*CLOUDSUB", "the step and the command")
end)

---------------------------------------------------------------------------
-- AT+CLOUDPUB: a message the module would misread goes by its length
---------------------------------------------------------------------------

-- The module after AT+CLOUDPUB=<topic>,<qos>,<n>: the prompt, n bytes, OK.
local function length_form(mp, want, prompt, n)
  answer(mp, want, prompt)
  local data = assert(mp:read(n, { timeout = 5000 }))
  assert(mp:send(OK))
  return data
end

t.test("publish: text in the line; digits, quotes, line ends by length", function()
  local got = {}
  local s, finish = fake(function(mp)
    answer(mp, "AT+CLOUDPUB=/t/u,0,hello, world", OK)
    got[1] = length_form(mp, "AT+CLOUDPUB=/t/u,1,2", ">", 2)
    got[2] = length_form(mp, "AT+CLOUDPUB=/t/u,0,4", "> ", 4)
    got[3] = length_form(mp, "AT+CLOUDPUB=/t/u,0,7", "\r\n> ", 7)
    got[4] = length_form(mp, "AT+CLOUDPUB=/t/u,0,1", ">", 1)
  end)
  t.ok(s:publish("/t/u", "hello, world", 0), "text")
  t.ok(s:publish("/t/u", 42, 1), "a number")
  t.ok(s:publish("/t/u", '"hi"', 0), "in quotes")
  t.ok(s:publish("/t/u", "a\r\nb c\n", 0), "line ends")
  t.ok(s:publish("/t/u", "0", 0), "one digit")
  finish()
  t.deepeq(got, { "42", '"hi"', "a\r\nb c\n", "0" }, "the bytes after the prompt")
  t.eq(s.stats.published, 5, "published")
end)

t.test("numeric_payload=refuse: a digit message refused before sending", function()
  local s, finish = fake(function(mp)
    answer(mp, "AT+CLOUDPUB=/t/u,0,4x2", OK)
  end, profile_with { numeric_payload = "refuse" })
  local ok, err = pcall(s.publish, s, "/t/u", "42", 0)
  t.eq(ok, false, "refused")
  t.match(err, "^publishing to /t/u: a message of digits only would be misread by "
    .. 'AT%+CLOUDPUB .*numeric_payload = "refuse"', "the message")
  t.ok(s:publish("/t/u", "4x2", 0), "the next one goes out")   -- nothing was sent before it
  finish()
  t.eq(s.stats.published, 1, "published")
end)

t.test("publish: a payload over the limit is refused before sending", function()
  local s, finish = fake(function() end)
  local ok, err = pcall(s.publish, s, "/t/u", string.rep("9", 256), 0)
  finish()
  t.eq(ok, false, "refused")
  t.match(err, "^publishing to /t/u: 256 bytes, the me3630 takes at most 255", "message")
end)

---------------------------------------------------------------------------
-- +CLOUDPUBLISH
---------------------------------------------------------------------------

t.test("+CLOUDPUBLISH with and without the space, commas and CR LF in the payload", function()
  local s, finish = fake(function(mp)
    answer(mp, "AT", OK .. L("+CLOUDPUBLISH:0,/t/d,11,hello world"))
    assert(mp:send(L("+CLOUDPUBLISH: 3,/t/d,8,a,b\r\nc,d")))
  end)
  -- The first message comes with AT's OK, when the session's handler is
  -- in place (a URC before it would have no taker).
  assert(s.m:cmd("AT"))
  local msgs = {}
  local n = s:listen(5000, function(msg)
    msgs[#msgs + 1] = msg.topic .. "|" .. msg.payload
    if #msgs == 2 then return false end
  end)
  finish()
  t.eq(n, 2, "messages")
  t.deepeq(msgs, { "/t/d|hello world", "/t/d|a,b\r\nc,d" }, "topic and payload")
end)

t.test("messages keep their order when the listen wait takes one and the handler the next", function()
  -- The wait is woken after the URC handler of the same read, so the
  -- line after the one it took reaches the session first: listen must
  -- still hand them over in the order they came.
  local s, finish = fake(function(mp)
    answer(mp, "AT", OK .. L("+CLOUDPUBLISH:0,/t/d,1,a"))
    answer(mp, "AT")   -- sent from the listen callback: the wait is in progress
    assert(mp:send(L("+CLOUDPUBLISH:0,/t/d,1,b") .. L("+CLOUDPUBLISH:0,/t/d,1,c")))
  end)
  assert(s.m:cmd("AT"))
  local msgs = listen.poking(s, 3)
  finish()
  t.deepeq(msgs, { "a", "b", "c" }, "messages in the order they came")
end)

t.test("+CLOUDPUBLISH counts that fit no reading end listen() with the error", function()
  local max = require("athost.profiles.me3630").cloud.message.max
  for _, bad in ipairs({ "-5,hello", "2147483648,hello", (max + 1) .. ",x",
                         "3,hello" }) do
    local s, finish = fake(function(mp)
      answer(mp, "AT", OK .. L("+CLOUDPUBLISH: 0,/t/d," .. bad))
    end)
    assert(s.m:cmd("AT"))
    local t0 = athost.now()
    local ok, err = pcall(s.listen, s, 5000, function() end)
    finish()
    t.eq(ok, false, "listen failed: " .. bad)
    t.match(err, "^waiting for messages: ", "the step")
    t.match(err, '"%+CLOUDPUBLISH: 0,/t/d,' .. bad:gsub("%p", "%%%0") .. '" announced',
      "the line and its count")
    t.ok(athost.now() - t0 < 4000, "at once, not at the end of listen")
  end
end)

t.run()
