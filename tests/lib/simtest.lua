-- What the tests of the virtual modems share: a fresh model to drive with
-- raw AT commands, and the bring-up every flow starts with.
local t = require("t")
local athost = require("athost")

local M = {}

-- Runs fn(port, model) on a fresh virtual `model` and closes it, also when
-- fn fails; the model must not have hit a bug of its own. sim: the model
-- options, as a query ("order=before&split=on") or a table.
function M.with_modem(model, sim, fn)
  local spec, o = "sim:" .. model, { timeout = 5000 }
  if type(sim) == "string" then spec = spec .. "?" .. sim else o.sim = sim end
  local p, m = assert(athost.open(spec, o))
  local ok, err = xpcall(fn, debug.traceback, p, m)
  m:close()
  if not ok then error(err, 0) end
  t.eq(#m.bugs, 0, "model errors: " .. table.concat(m.bugs, "\n"))
end

-- Autobaud, echo off, numeric errors: what every flow starts with.
function M.up(p)
  assert(p:cmd("AT", { timeout = 2000 }))
  assert(p:cmd("ATE0"))
  assert(p:cmd("AT+CMEE=1"))
end

-- The Air720's HTTP bearer (AT+SAPBR), as reference 000 opens it.
function M.bearer(p)
  assert(p:cmd('AT+SAPBR=3,1,"CONTYPE","GPRS"'))
  assert(p:cmd('AT+SAPBR=3,1,"APN","CMIIOT"'))
  assert(p:cmd("AT+SAPBR=1,1"))
end

-- A local HTTP server; returns its port, the requests it saw, a stopper.
-- opts go to athost.http11's serve ({tls = {cert =, key =}}: HTTPS).
function M.http_server(reply, opts)
  local l = assert(athost.listen("127.0.0.1", 0))
  local seen = {}
  athost.spawn(require("athost.http11").serve, l, function(req)
    seen[#seen + 1] = req
    return reply(req)
  end, opts)
  return l.port, seen, function() l:close() end
end

-- Raw bytes from p after sending s (nil: send nothing), until `stop`
-- shows up or ms pass (default 3000): the bytes and the number of reads.
function M.raw(p, s, stop, ms)
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

-- Polls file until done(its text) returns a value (within 10 s).
function M.wait_file(file, what, done)
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

-- mosquitto_sub and mosquitto_pub against the broker B (tests/lib/broker.lua)
-- with files in dir: { sub = function(topic) -> wait() -> msg, pub =
-- function(topic, payload, qos, retain) }.
function M.mosquitto(B, dir)
  local args = string.format("-h 127.0.0.1 -p %d -u %s -P %s", B.PORT, B.USER, B.PASS)
  local mq = {}
  -- Starts mosquitto_sub on topic in the background and returns once it
  -- is subscribed (the broker's log shows its SUBACK); the returned
  -- function waits for the one message it then receives: {topic, qos,
  -- retain, payload}.
  function mq.sub(topic)
    local id = "sub-" .. athost.random(4, "hex")
    local file = dir .. "/" .. id
    os.execute(string.format("mosquitto_sub -i %s %s -t '%s' -q 1 -C 1 -W 15 "
      .. "-F 'MSG|%%t|%%q|%%r|%%x' > %s 2>&1 &", id, args, topic, file))
    -- mosquitto_sub's own output is block-buffered; the broker's log is not.
    M.wait_file(B.DIR .. "/mosquitto.log", "mosquitto_sub subscribed", function(s)
      return s:find("Sending SUBACK to " .. id, 1, true)
    end)
    return function()
      return M.wait_file(file, "a message at mosquitto_sub", function(s)
        local tp, q, r, x = s:match("MSG|([^|\n]*)|(%d)|(%d)|(%x*)")
        if tp then
          return { topic = tp, qos = tonumber(q), retain = r == "1",
            payload = athost.unhex(x) }
        end
      end)
    end
  end
  -- mosquitto_pub of exactly these bytes.
  function mq.pub(topic, payload, qos, retain)
    local file = dir .. "/pub-" .. athost.random(4, "hex")
    local f = assert(io.open(file, "wb"))
    f:write(payload)
    f:close()
    local sh = assert(io.popen(string.format("mosquitto_pub %s -t '%s' -q %d %s -f %s 2>&1",
      args, topic, qos or 0, retain and "-r" or "", file)))
    local out = sh:read("a")
    t.ok(sh:close(), "mosquitto_pub: " .. out)
  end
  return mq
end

return M
