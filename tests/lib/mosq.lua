-- mosquitto_sub / mosquitto_pub against the broker fixture (tests/lib/
-- broker.lua) and raw reads of a port, for the virtual-modem tests.
--
--   local mosq = require("mosq").new(B, DIR)  -- B: broker.start's table
--   local got = mosq.subscriber("a/b")        -- subscribed when it returns
--   mosq.publish("a/b", "bytes", 1)
--   got()  --> { topic, qos, retain, payload }
local t = require("t")
local athost = require("athost")

local M = {}

function M.shell(cmd)
  local f = assert(io.popen(cmd .. " 2>&1"))
  local out = f:read("a")
  local ok = f:close()
  return out, ok
end

-- Polls done(text of file) until it returns a value (at most 10 s).
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

-- Raw bytes after sending s, until `stop` shows up (or ms pass); and the
-- number of reads they took.
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

function M.new(B, DIR)
  local o = { shell = M.shell, wait_file = M.wait_file, raw = M.raw }

  function o.uid() return athost.random(4, "hex") end

  function o.args(port)
    return string.format("-h 127.0.0.1 -p %d -u %s -P %s", port or B.PORT, B.USER, B.PASS)
  end

  -- Starts mosquitto_sub on topic in the background and returns once it
  -- is subscribed (the broker's log shows its SUBACK); the returned
  -- function waits for the one message it then receives.
  function o.subscriber(topic)
    local id = "sub-" .. o.uid()
    local file = DIR .. "/" .. id
    os.execute(string.format("mosquitto_sub -i %s %s -t '%s' -q 1 -C 1 -W 15 "
      .. "-F 'MSG|%%t|%%q|%%r|%%x' > %s 2>&1 &", id, o.args(), topic, file))
    -- mosquitto_sub's own output is block-buffered; the broker's log is not.
    M.wait_file(B.DIR .. "/mosquitto.log", "mosquitto_sub subscribed", function(s)
      return s:find("Sending SUBACK to " .. id, 1, true)
    end)
    return function()
      return M.wait_file(file, "a message at mosquitto_sub", function(s)
        local tp, q, r, x = s:match("MSG|([^|\n]*)|(%d)|(%d)|(%x*)\n")
        if tp then
          return { topic = tp, qos = tonumber(q), retain = r == "1",
            payload = athost.unhex(x) }
        end
      end)
    end
  end

  -- mosquitto_pub of exactly these bytes.
  function o.publish(topic, payload, qos)
    local file = DIR .. "/pub-" .. o.uid()
    local f = assert(io.open(file, "wb"))
    f:write(payload)
    f:close()
    local out, ok = M.shell(string.format("mosquitto_pub %s -t '%s' -q %d -f %s",
      o.args(), topic, qos or 0, file))
    t.ok(ok, "mosquitto_pub: " .. out)
  end

  return o
end

return M
