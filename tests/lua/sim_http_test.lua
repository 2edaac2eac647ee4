-- The virtual Air720's HTTP commands under each reading of the knobs the
-- references leave open: +HTTPACTION after OK (reference 000) or before
-- it (core knob order), "+HTTPACTION: " or "+HTTPACTION:" and the same
-- for +HTTPREAD (knob http_space; DIALECTS.md §3 shows both), and an
-- +HTTPACTION printed twice (knob http_dup, an Air780E HTTPS example).
-- Raw AT commands against a local HTTP server.
--
--   ATHOST_PATH=tests/lib:lib ./athost tests/lua/sim_http_test.lua
local t = require("t")
local simtest = require("simtest")
local athost = require("athost")

-- A fresh virtual Air720 (options as a table), closed after fn.
local function with_modem(opts, fn) simtest.with_modem("air720", opts or {}, fn) end

-- Autobaud, echo off, numeric errors, the bearer.
local function up(p)
  simtest.up(p)
  simtest.bearer(p)
end

local http_server = simtest.http_server

local REPLY = '{"code":200,"data":{"iotId":"x1","iotToken":"t0k"},"message":"success"}'

-- AT+HTTPACTION=1 on a session to url: returns the +HTTPACTION lines in
-- the order they came, whether the first came before OK, and the result.
-- After OK the lines are read as they arrive (each within 10 s), until
-- `want` of them are in.
local function action(p, want)
  local r = assert(p:cmd("AT+HTTPACTION=1", { timeout = 10000 }))
  local lines, before = {}, false
  for _, l in ipairs(r.lines) do
    if l:find("^%+HTTPACTION:") then
      lines[#lines + 1] = l
      before = true
    end
  end
  while #lines < want do
    local mt = assert(p:expect("^%+HTTPACTION:", { timeout = 10000 }))
    lines[#lines + 1] = mt.line
  end
  return lines, before, r
end

-- One POST through AT+HTTP*, the +HTTPACTION lines checked against what
-- the knobs say; returns the AT+HTTPREAD result.
local function post(p, port, o)
  assert(p:cmd("AT+HTTPINIT"))
  assert(p:cmd(string.format('AT+HTTPPARA="URL","http://127.0.0.1:%d/auth/devicename"', port)))
  local body = "productKey=pk&deviceName=dn"
  assert(p:cmd(string.format("AT+HTTPDATA=%d,20000", #body),
    { prompt = "DOWNLOAD", data = body }))
  local sep = o.http_space == "tight" and "" or " "
  local want = "+HTTPACTION:" .. sep .. "1,200," .. #REPLY
  local n = o.http_dup == "on" and 2 or 1
  local lines, before = action(p, n)
  t.eq(before, o.order == "before", "+HTTPACTION before OK")
  t.deepeq(lines, n == 2 and { want, want } or { want }, "+HTTPACTION lines")
  local r = assert(p:cmd("AT+HTTPREAD", { reply = { "^%+HTTPREAD: ?(%d+)", count = 1 } }))
  t.eq(r.line, "+HTTPREAD:" .. sep .. #REPLY, "+HTTPREAD line")
  t.eq(r.payload, REPLY, "HTTPREAD body")
  assert(p:cmd("AT+HTTPTERM"))
  return r
end

---------------------------------------------------------------------------
-- Tests
---------------------------------------------------------------------------

t.test("every knob setting: order x http_space x http_dup", function()
  local port, seen, stop = http_server(function()
    return 200, { ["Content-Type"] = "application/json" }, REPLY
  end)
  local runs = 0
  for _, order in ipairs({ "after", "before" }) do
    for _, space in ipairs({ "space", "tight" }) do
      for _, dup in ipairs({ "off", "on" }) do
        local o = { order = order, http_space = space, http_dup = dup }
        with_modem(o, function(p)
          up(p)
          post(p, port, o)
        end)
        runs = runs + 1
      end
    end
  end
  t.eq(#seen, runs, "one request per run")
  stop()
end)

t.test("defaults: +HTTPACTION: after OK, once, with a space (reference 000)", function()
  local port, _, stop = http_server(function() return 200, {}, REPLY end)
  with_modem({}, function(p)
    up(p)
    post(p, port, { order = "after", http_space = "space", http_dup = "off" })
  end)
  stop()
end)

t.test("order=before: a 601 outcome comes before OK too", function()
  local l = assert(athost.listen("127.0.0.1", 0))
  local dead = l.port
  l:close()
  with_modem({ order = "before" }, function(p)
    up(p)
    assert(p:cmd("AT+HTTPINIT"))
    assert(p:cmd(string.format('AT+HTTPPARA="URL","http://127.0.0.1:%d/"', dead)))
    local lines, before, r = action(p, 1)
    t.eq(before, true, "before OK")
    t.eq(lines[1], "+HTTPACTION: 1,601,0", "connection refused")
    t.eq(r.final, "OK", "then OK")
  end)
end)

t.run()
