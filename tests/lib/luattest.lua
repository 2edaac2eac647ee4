-- Raw AT dialogues with the Luat MQTT commands (virtual Air720, Air780E)
-- in front of the mosquitto fixture (tests/lib/broker.lua), and the
-- mosquitto clients that check what reached the broker.
--
--   local B, DIR = {}, t.tmpdir()          -- B filled by broker.start(DIR)
--   local L = require("luattest").new(B, DIR)
--   L.mqtt_up(p, { tls = true, port = B.TLS_PORT })
--   local got = L.subscriber(topic) ... got().payload
local t = require("t")
local athost = require("athost")

local M = {}

-- The helpers for broker B (BROKER_* of broker.env without the prefix;
-- read when called, so it may be filled later) and temp dir DIR.
function M.new(B, DIR)
  local P = require("proc").new(DIR)
  local shell, uid = P.shell, P.uid

  -- Waits for pat; a line in opts.abort fails the test, naming it.
  local function must_expect(p, pat, opts)
    opts = opts or {}
    return assert(p:expect(pat, { abort = opts.abort, timeout = opts.timeout or 10000 }))
  end

  local CONNECT_FAIL = { "CONNECT FAIL", "CLOSED", "+CME ERROR", "ERROR" }

  -- MCONFIG, (SSL)MIPSTART, CONNECT OK, MCONNECT, CONNACK OK.
  local function mqtt_up(p, o)
    o = o or {}
    assert(p:cmd(string.format('AT+MCONFIG="%s","%s","%s"', o.client_id or
      "sim-" .. uid(), o.user or B.USER, o.pass or B.PASS)))
    assert(p:cmd(string.format('AT+%s="%s",%d', o.tls and "SSLMIPSTART" or
      "MIPSTART", o.host or "127.0.0.1", o.port or B.PORT)))
    must_expect(p, "CONNECT OK", { abort = CONNECT_FAIL })
    assert(p:cmd("AT+MCONNECT=1," .. (o.keepalive or 60)))
    must_expect(p, "CONNACK OK", { abort = { "+CME ERROR", "ERROR", "CLOSED" } })
  end

  local function mqtt_status(p)
    return assert(p:cmd("AT+MQTTSTATU", { reply = "^%+MQTTSTATU :(%d)$" }))[1]
  end

  -- The mosquitto clients and raw reads are tests/lib/mosq.lua's.
  local mosq = require("mosq")
  local mq = mosq.new(B, DIR)
  local wait_file, raw = mosq.wait_file, mosq.raw
  local subscriber, publish, mosq_args = mq.subscriber, mq.publish, mq.args

  -- Runs `athost scripts/sim/<model>.lua link=... <args>` in the
  -- background, calls fn(link) once it printed its pty, and stops it.
  local function serve_script(root, model, args, fn)
    local link, out, pidf = DIR .. "/tty-" .. model, DIR .. "/" .. model .. ".out",
      DIR .. "/" .. model .. ".pid"
    assert(os.execute(string.format("%s/athost %s/scripts/sim/%s.lua link=%s %s > %s 2>&1 "
      .. "& echo $! > %s", root, root, model, link, args, out, pidf)))
    local pid = wait_file(pidf, "pid", function(s) return s:match("%d+") end)
    local ok, err = pcall(function()
      wait_file(out, "the slave path", function(s) return s:find("/dev/pts/") end)
      fn(link)
    end)
    os.execute("kill -TERM " .. pid)
    wait_file(out, "the simulator to exit", function()
      return not os.execute("kill -0 " .. pid .. " 2>/dev/null")
    end)
    if not ok then error(err, 0) end
  end

  local MSUB = { '^%+MSUB: "([^"]*)",(%d+) byte,', count = 2 }

  local function topic() return "athost/sim/" .. uid() end

  local function upload(p, name, data)
    assert(p:cmd(string.format('AT+FSCREATE="%s"', name)))
    assert(p:cmd(string.format('AT+FSWRITE="%s",0,%d,15', name, #data),
      { prompt = ">", data = data }))
  end

  return { serve_script = serve_script, shell = shell, uid = uid, must_expect = must_expect,
    CONNECT_FAIL = CONNECT_FAIL, mqtt_up = mqtt_up, mqtt_status = mqtt_status,
    mosq_args = mosq_args, wait_file = wait_file, subscriber = subscriber,
    publish = publish, MSUB = MSUB, topic = topic, raw = raw, upload = upload }
end

-- Starts the broker in DIR into B, runs the suite's tests, stops the
-- broker and removes DIR, also when the tests fail.
function M.run(B, DIR)
  local broker = require("broker")
  for k, v in pairs(broker.start(DIR)) do B[k] = v end
  local passed, err = pcall(t.run)
  broker.stop(DIR)
  os.execute("rm -rf '" .. DIR:gsub("'", "'\\''") .. "'")
  if not passed then error(err, 0) end
end

return M
