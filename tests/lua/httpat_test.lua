-- athost.httpat against a fake module on a pty that answers the Air720's
-- HTTP dialogue (reference 000) in every reading the references allow,
-- and with counts that fit none: +HTTPACTION before or after OK, with
-- or without the space, repeated; +HTTPREAD counts that are too large,
-- negative or not what +HTTPACTION announced each give one error naming
-- the step, the count and what arrived.
local t = require("t")
local athost = require("athost")
local modem = require("athost.modem")
local httpat = require("athost.httpat")

local URL = "http://iot-auth.example.com/auth/devicename"
local BODY = '{"code":200,"data":{"iotId":"i1","iotToken":"tok"},"message":"ok"}'

-- A fake Air720 on a pty: answers each command with answers[name] (a
-- string, or a function(line) returning one; OK when absent) and ends
-- at the second AT+HTTPTERM (httpat sends one first, to clear an old
-- session). Returns the modem object, the commands it got, finish().
local function fake(answers)
  local mp, path = assert(athost.pty { name = "fake720" })
  local got = {}
  local task = athost.spawn(function()
    local terms = 0
    while terms < 2 do
      local line = mp:readline({ timeout = 10000 })
      if not line then return end
      got[#got + 1] = line
      local name = line:match("^(AT[^=?]*)")
      local a = answers[name]
      if type(a) == "function" then a = a(line) end
      if name == "AT+HTTPDATA" then
        assert(mp:send("\r\nDOWNLOAD\r\n"))
        assert(mp:read(tonumber(line:match("=(%d+)")), { timeout = 5000 }))
      end
      assert(mp:send(a or "\r\nOK\r\n"))
      if name == "AT+HTTPTERM" then terms = terms + 1 end
    end
  end)
  local p = assert(athost.open(path, { name = "dut", timeout = 5000 }))
  local m = modem.new(p, { profile = "air720", gap = "0" })
  return m, got, function()
    task:join()
    p:close()
    mp:close()
  end
end

local function action(line) return "\r\n" .. line .. "\r\n" end

-- GET through httpat with these answers to AT+HTTPACTION and
-- AT+HTTPREAD; returns ok, status or error, body.
local function get(act, read)
  local m, got, finish = fake { ["AT+HTTPACTION"] = act, ["AT+HTTPREAD"] = read }
  local ok, status, body = pcall(httpat.get, m, URL, { timeout = 3000 })
  finish()
  return ok, status, body, got
end

local function read_ok(count, body)
  return "\r\n+HTTPREAD: " .. count .. "\r\n" .. body .. "\r\n\r\nOK\r\n"
end

---------------------------------------------------------------------------
-- Every reading the references allow
---------------------------------------------------------------------------

t.test("+HTTPACTION after OK (reference 000)", function()
  local ok, status, body = get("\r\nOK\r\n" .. action("+HTTPACTION: 0,200," .. #BODY),
    read_ok(#BODY, BODY))
  t.ok(ok, "request: " .. tostring(status))
  t.eq(status, 200, "status")
  t.eq(body, BODY, "body")
end)

t.test("+HTTPACTION before OK", function()
  local ok, status, body = get(action("+HTTPACTION: 0,200," .. #BODY) .. "\r\nOK\r\n",
    read_ok(#BODY, BODY))
  t.ok(ok, "request: " .. tostring(status))
  t.eq(status, 200, "status")
  t.eq(body, BODY, "body")
end)

t.test("+HTTPACTION: and +HTTPREAD: without the space, +HTTPACTION twice (Air780E)", function()
  local line = "+HTTPACTION:0,200," .. #BODY
  for _, act in ipairs({ "\r\nOK\r\n" .. action(line) .. action(line),
                         action(line) .. action(line) .. "\r\nOK\r\n",
                         action(line) .. "\r\nOK\r\n" .. action(line) }) do
    local ok, status, body, got = get(act, "\r\n+HTTPREAD:" .. #BODY .. "\r\n" .. BODY
      .. "\r\n\r\nOK\r\n")
    t.ok(ok, "request: " .. tostring(status))
    t.eq(status, 200, "status")
    t.eq(body, BODY, "body")
    t.eq(got[#got], "AT+HTTPTERM", "the session ends")
  end
end)

t.test("an empty body: no AT+HTTPREAD", function()
  local ok, status, body, got = get("\r\nOK\r\n" .. action("+HTTPACTION: 0,204,0"), nil)
  t.ok(ok, "request: " .. tostring(status))
  t.eq(status, 204, "status")
  t.eq(body, "", "body")
  for _, l in ipairs(got) do t.ok(l ~= "AT+HTTPREAD", "no read") end
end)

---------------------------------------------------------------------------
-- Counts that fit no reading: one error each
---------------------------------------------------------------------------

local ACT = "\r\nOK\r\n" .. action("+HTTPACTION: 0,200," .. #BODY)

t.test("+HTTPREAD: 2147483648 is an error, not a success without payload", function()
  local ok, err = get(ACT, read_ok("2147483648", BODY))
  t.eq(ok, false, "the request failed")
  t.match(err, "^HTTP read of " .. URL:gsub("%p", "%%%0") .. ": ", "the step")
  t.match(err, "2147483648", "the count")
end)

t.test("+HTTPREAD: -5 is an error", function()
  local ok, err = get(ACT, read_ok("-5", BODY))
  t.eq(ok, false, "the request failed")
  t.match(err, "^HTTP read of ", "the step")
  t.match(err, "%-5", "the count")
end)

t.test("a +HTTPREAD count other than +HTTPACTION's is an error", function()
  local ok, err = get(ACT, read_ok(5, BODY:sub(1, 5)))
  t.eq(ok, false, "the request failed")
  t.match(err, "^HTTP read of ", "the step")
  t.match(err, "%+HTTPREAD announced 5 bytes where %+HTTPACTION announced " .. #BODY,
    "both counts")
  t.match(err, '"%+HTTPREAD: 5"', "what arrived")
end)

t.test("a +HTTPREAD count that does not frame the body is an error", function()
  -- More bytes than counted: the count ends mid-body, where no line end is.
  local ok, err = get(ACT, read_ok(#BODY, BODY .. "extra"))
  t.eq(ok, false, "the request failed")
  t.match(err, "^HTTP read of ", "the step")
  t.match(err, "ECOUNT", "a count error")
  t.match(err, tostring(#BODY), "the count")
end)

t.test("a count above the profile's limit is an error", function()
  local max = require("athost.profiles.air720").http.read_reply.max
  local ok, err = get(ACT, read_ok(max + 1, "x"))
  t.eq(ok, false, "the request failed")
  t.match(err, "^HTTP read of ", "the step")
  t.match(err, tostring(max + 1), "the count")
end)

t.test("a read that brings no +HTTPREAD line is an error", function()
  local ok, err = get(ACT, "\r\nOK\r\n")
  t.eq(ok, false, "the request failed")
  t.match(err, "^HTTP read of .*no %+HTTPREAD line before OK %(%+HTTPACTION announced "
    .. #BODY .. " bytes%)", "the message")
end)

t.test("+HTTPACTION announcing a negative or oversized length is an error", function()
  for _, n in ipairs({ "-3", "9999999999" }) do
    local ok, err, _, got = get("\r\nOK\r\n" .. action("+HTTPACTION: 0,200," .. n), nil)
    t.eq(ok, false, "the request failed")
    t.match(err, "^HTTP request to " .. URL:gsub("%p", "%%%0") .. ": %+HTTPACTION announced ",
      "the step")
    t.match(err, n:gsub("%p", "%%%0"), "the count")
    for _, l in ipairs(got) do t.ok(l ~= "AT+HTTPREAD", "no read") end
  end
end)

t.test("an error after AT+HTTPACTION's OK fails the request at once", function()
  local t0 = athost.now()
  local ok, err = get("\r\nOK\r\n\r\n+CME ERROR: 767\r\n", nil)
  t.eq(ok, false, "the request failed")
  t.match(err, "^HTTP request to .*%+CME ERROR: 767", "the module's words")
  t.ok(athost.now() - t0 < 2500, "before the timeout")
end)

t.run()
