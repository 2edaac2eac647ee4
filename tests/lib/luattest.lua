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

  local function mosq_args(port)
    return string.format("-h 127.0.0.1 -p %d -u %s -P %s", port or B.PORT,
      B.USER, B.PASS)
  end

  local function wait_file(file, what, done)
    local deadline = athost.now() + 10000
    while true do
      local s = t.slurp(file) or ""
      local r = done(s)
      if r then return r end
      if athost.now() > deadline then
        error(string.format("%s: not within 10 s; %s holds %q", what, file, s), 3)
      end
      athost.sleep(20)
    end
  end

  -- Starts mosquitto_sub on topic in the background and returns once it is
  -- subscribed (its debug output shows the SUBACK); the returned function
  -- waits for the one message it then receives.
  local function subscriber(topic)
    local id = "sub-" .. uid()
    local file = DIR .. "/" .. id
    os.execute(string.format("mosquitto_sub -i %s %s -t '%s' -q 1 -C 1 -W 15 "
      .. "-F 'MSG|%%t|%%q|%%r|%%x' > %s 2>&1 &", id, mosq_args(), topic, file))
    -- mosquitto_sub's own output is block-buffered; the broker's log is not.
    wait_file(B.DIR .. "/mosquitto.log", "mosquitto_sub subscribed", function(s)
      return s:find("Sending SUBACK to " .. id, 1, true)
    end)
    return function()
      return wait_file(file, "a message at mosquitto_sub", function(s)
        local tp, q, r, x = s:match("MSG|([^|\n]*)|(%d)|(%d)|(%x*)")
        if tp then
          return { topic = tp, qos = tonumber(q), retain = r == "1",
            payload = athost.unhex(x) }
        end
      end)
    end
  end

  -- mosquitto_pub of exactly these bytes.
  local function publish(topic, payload, qos)
    local file = DIR .. "/pub-" .. uid()
    local f = assert(io.open(file, "wb"))
    f:write(payload)
    f:close()
    local out, ok = shell(string.format("mosquitto_pub %s -t '%s' -q %d -f %s",
      mosq_args(), topic, qos or 0, file))
    t.ok(ok, "mosquitto_pub: " .. out)
  end

  local MSUB = { '^%+MSUB: "([^"]*)",(%d+) byte,', count = 2 }

  local function topic() return "athost/sim/" .. uid() end

  -- Raw bytes after sending s, until `stop` shows up (or ms pass).
  local function raw(p, s, stop, ms)
    p:flush()
    if s then assert(p:send(s)) end
    local got, chunks, deadline = "", 0, athost.now() + (ms or 3000)
    while not got:find(stop, 1, true) do
      local left = deadline - athost.now()
      if left <= 0 then break end
      local d = p:recv(4096, { timeout = math.ceil(left) })
      if not d then break end
      got, chunks = got .. d, chunks + 1
    end
    return got, chunks
  end

  local function upload(p, name, data)
    assert(p:cmd(string.format('AT+FSCREATE="%s"', name)))
    assert(p:cmd(string.format('AT+FSWRITE="%s",0,%d,15', name, #data),
      { prompt = ">", data = data }))
  end

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
