-- clouds/huawei.lua end to end, as a user runs it: `athost clouds/huawei.lua
-- -p sim:air720 ...` as a child process on the virtual Air720, against one
-- real mosquitto (tests/fixtures/broker.sh) that accepts the device the way
-- IoTDA does: username = device id, password = HMAC-SHA256 keyed by the
-- current UTC hour. The CA goes up with AT+FSCREATE/AT+FSWRITE
-- (reference 001) and the module checks the broker against it;
-- mosquitto_sub and mosquitto_pub check that messages cross both ways on
-- the IoTDA and the legacy topics.
--
--   ATHOST_PATH=tests/lib:lib ./athost tests/lua/flow_huawei_test.lua
--   ATHOST_BIN=build/asan/athost ...    (the children too)
local t = require("t")
local flows = require("flows")
local shown, device_id = flows.shown, flows.device_id
local athost = require("athost")

local BIN = os.getenv("ATHOST_BIN") or "./athost"
local here = ((arg and arg[0]) or "tests/lua/x"):match("^(.*)/[^/]*$") or "."
local ROOT = here .. "/../.."
local BROKER_SH = ROOT .. "/tests/fixtures/broker.sh"
local FLOW = ROOT .. "/clouds/huawei.lua"
local EXPIRED_CA = ROOT .. "/tests/fixtures/huawei-ca-2016.pem"
local DIR = t.tmpdir()
local B = {}                  -- BROKER_* from broker.env, without the prefix

local proc = require("proc").new(DIR)
local q, shell, uid, poll = proc.q, proc.shell, proc.uid, proc.poll
local background, stop_running, test = proc.background, proc.stop_running, proc.test

---------------------------------------------------------------------------
-- The broker: its log, IoTDA-style users, mosquitto_sub, mosquitto_pub
---------------------------------------------------------------------------

local function broker_log() return t.slurp(B.DIR .. "/mosquitto.log") or "" end

-- Waits until the broker logged a SUBACK to client id since byte `from`
-- of its log; fails early when the process `run` (if given) has ended.
local function subacked(id, from, run)
  poll("a SUBACK to " .. id .. " in the broker log", 20000, function()
    if run and run.done() then
      error("the flow ended before it subscribed: exit " .. run.done()
        .. ", stderr:\n" .. (t.slurp(run.base .. ".err") or ""), 0)
    end
    local s = broker_log():sub(from + 1)
    return s:find("Sending SUBACK to " .. id .. "\n", 1, true), s:sub(-400)
  end)
end

-- The broker accepts device_id for the current UTC hour, as IoTDA does:
-- password = hex(HMAC-SHA256(key = "YYYYMMDDHH", msg = secret)). mosquitto
-- keeps one password per user, so close to the end of an hour this first
-- waits for the next one: the flow, started right after, then computes
-- the same hour. Returns the hour and the password.
local function enroll(device_id, secret)
  local left = 3600 - os.time() % 3600
  if left < 20 then athost.sleep((left + 1) * 1000) end
  local hour = os.date("!%Y%m%d%H")
  local password = athost.hmac("sha256", hour, secret)
  local out, ok = shell(string.format("%s adduser %s %s %s", BROKER_SH, DIR,
    q(device_id), q(password)))
  t.ok(ok, "broker.sh adduser: " .. out)
  return hour, password
end

local function auth()
  return string.format("-h 127.0.0.1 -p %d -u %s -P %s", B.PORT, q(B.USER), q(B.PASS))
end

-- mosquitto_sub on topic, started and known to be subscribed. Returns a
-- function that waits for the first message and returns its exact bytes.
local function subscriber(topic)
  local id = "sub-" .. uid()
  local from = #broker_log()
  local base = background(string.format("timeout 60 mosquitto_sub -i %s %s -t %s "
    .. "-q 1 -C 1 -W 55 -F %%x", id, auth(), q(topic)), id)
  subacked(id, from)
  return function()
    return poll("a message at mosquitto_sub on " .. topic, 20000, function()
      local hex = (t.slurp(base .. ".out") or ""):match("^(%x*)\n")
      return hex and athost.unhex(hex), t.slurp(base .. ".err")
    end)
  end
end

-- mosquitto_pub of exactly these bytes.
local function publish(topic, payload)
  local file = DIR .. "/pub-" .. uid()
  local f = assert(io.open(file, "wb"))
  f:write(payload)
  f:close()
  local out, ok = shell(string.format("mosquitto_pub %s -t %s -q 1 -f %s", auth(),
    q(topic), file))
  t.ok(ok, "mosquitto_pub: " .. out)
end

---------------------------------------------------------------------------
-- The flow as a child process, its transcript
---------------------------------------------------------------------------

-- Starts `athost -l TRANSCRIPT clouds/huawei.lua -p sim:air720 k=v...`.
-- run.done() is its exit code once it ended; run.wait() waits for that and
-- returns { rc, out, err, tr }.
local function flow(args)
  local name = "flow-" .. uid()
  local keys, words = {}, {}
  for k in pairs(args) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do words[#words + 1] = q(k .. "=" .. args[k]) end
  local tr = DIR .. "/" .. name .. ".tr"
  local run = { tr = tr }
  run.base = background(string.format("timeout -s TERM 60 %s -l %s %s -p sim:air720 %s",
    BIN, tr, FLOW, table.concat(words, " ")), name)
  function run.done()
    local rc = t.slurp(run.base .. ".rc")
    return rc and tonumber(rc:match("%d+"))
  end
  function run.wait(ms)
    local rc = poll("the flow to end", ms or 45000, run.done)
    return { rc = rc, out = t.slurp(run.base .. ".out") or "",
      err = t.slurp(run.base .. ".err") or "", tr = t.slurp(tr) }
  end
  return run
end

-- Transcript text as sent, without its escapes (\r \n \t \\ \xHH).
local ESC = { r = "\r", n = "\n", t = "\t", ["\\"] = "\\" }
local function unescape(s)
  return (s:gsub("\\(.)(%x?%x?)", function(c, h)
    if c == "x" then return string.char(tonumber(h, 16)) end
    return ESC[c] .. h
  end))
end

-- What the flow sent to the module, record by record, unescaped (its own
-- port: not the virtual modem's side nor its network links).
local function sent(tr)
  local out = {}
  for l in tr:gmatch("[^\n]+") do
    local name, s = l:match("^%s*[%d.]+ (%S+) > (.*)$")
    if name and not name:find("%-sim$") and not name:find("^tcp:") then
      out[#out + 1] = unescape(s)
    end
  end
  return out
end

local function has_sent(tr, plain)
  for _, s in ipairs(sent(tr)) do
    if s:find(plain, 1, true) then return s end
  end
end

-- The bytes sent after the AT+FSWRITE command line, up to the next command.
local function fswrite_data(tr)
  local data, on = {}, false
  for _, s in ipairs(sent(tr)) do
    if on and s:find("^AT") then break end
    if on then data[#data + 1] = s end
    if s:find("^AT%+FSWRITE=") then on = true end
  end
  return table.concat(data)
end

-- The lines of stderr that start with "athost:" (the one-line error).
local function errors(err)
  local out = {}
  for l in err:gmatch("[^\n]+") do
    if l:find("^athost:") then out[#out + 1] = l end
  end
  return out
end

---------------------------------------------------------------------------
-- Sessions
---------------------------------------------------------------------------

-- One session both ways: mosquitto_sub waits on `up`, the flow uploads the
-- CA, connects as the device, subscribes to its command topic, publishes
-- and listens; once the broker logged the flow's SUBACK, mosquitto_pub
-- sends a command to `down`. Checks what every session must show and
-- returns the run's result with the session's names.
local function session(o)
  local id, secret = device_id(), "secret-" .. athost.random(8, "hex")
  local up, down, to = o.up(id), o.down(id), o.command_topic(id)
  local report = string.format('{"services":[{"service_id":"sensor","properties":'
    .. '{"temperature":%d}}]}', math.random(0, 40))
  local command = '{"command_name":"reboot","paras":{"delay":"5"}}'
  local hour, password = enroll(id, secret)
  local cid = id .. "_0_0_" .. hour
  local received = subscriber(up)
  -- IoTDA: the command request is answered on .../commands/response/...
  local answered = o.response and subscriber(o.response(id))
  local from = #broker_log()
  local run = flow { device_id = id, secret = secret, host = o.host, port = B.TLS_PORT,
    ca = B.CA, topics = o.topics, publish = report, listen = 30, messages = 1 }
  subacked(cid, from, run)
  publish(to, command)
  local r = run.wait()
  t.eq(r.rc, 0, "exit code (stderr: " .. r.err .. ")")
  t.ok(r.tr, "a transcript")
  t.eq(r.out, shown(to, command), "stdout")
  t.eq(received(), report, "the report at mosquitto_sub, byte-exact")

  -- Reference 001: the CA file, then the MQTT dialogue with the hour-stamped
  -- credentials.
  local pem = assert(t.slurp(B.CA))
  t.eq(pem:sub(-1), "\n", "the CA file ends with a newline")
  local fswrite = t.ok(has_sent(r.tr, "AT+FSWRITE="), "AT+FSWRITE")
  t.eq(fswrite, string.format('AT+FSWRITE="server.crt",0,%d,15\r', #pem - 1),
    "AT+FSWRITE counts the PEM without its final newline")
  local data = fswrite_data(r.tr)
  t.eq(#data, #pem - 1, "bytes sent after the prompt")
  t.ok(data == pem:sub(1, -2), "the bytes after the prompt are the PEM")
  for _, s in ipairs({ 'AT+FSCREATE="server.crt"\r', 'AT+SSLCFG="cacert",88,"server.crt"\r',
    'AT+SSLCFG="seclevel",88,1\r',
    string.format('AT+MCONFIG="%s","%s","***"\r', cid, id),
    string.format('AT+SSLMIPSTART="%s",%d\r', o.host, B.TLS_PORT),
    string.format('AT+MSUB="%s",0\r', down) }) do
    t.ok(has_sent(r.tr, s), "the flow sent " .. s)
  end
  t.ok(broker_log():find(string.format("as %s (p2, c1, k60, u'%s')", cid, id), 1, true),
    "the broker logged client " .. cid .. " with user " .. id)
  t.match(r.err, "CA CN=athost test CA, valid until %d%d%d%d%-", "stderr")
  if answered then
    -- The command's answer, on the response topic of its request id.
    local rid = to:match("request_id=(.*)$")
    local reply = athost.json.decode(answered())
    t.eq(reply.result_code, 0, "the command response's result_code")
    t.match(r.err, "answered command request_id=" .. rid .. " %(result_code 0%)", "stderr")
  end
  -- The report, and on IoTDA the command response too: published 2 there
  -- (the flow answers every command request, as IoTDA expects), 1 on the
  -- legacy topics, which have no responses.
  t.match(r.err, string.format("published %d, received 1, reconnects 0", answered and 2 or 1),
    "summary")
  for what, s in pairs({ stdout = r.out, stderr = r.err, transcript = r.tr }) do
    t.ok(not s:find(secret, 1, true), what .. " shows the secret")
    t.ok(not s:find(password, 1, true), what .. " shows the password")
  end
  return r
end

-- With no hosts= table the virtual Air720 verifies the broker's
-- certificate against the name AT+SSLMIPSTART gave (with one, against the
-- address it maps to): the broker's has DNS:localhost and IP:127.0.0.1.
test("IoTDA topics: CA uploaded, hour-stamped credentials, both ways", function()
  session {
    host = "localhost", topics = "iotda",
    up = function(id) return "$oc/devices/" .. id .. "/sys/properties/report" end,
    down = function(id) return "$oc/devices/" .. id .. "/sys/commands/#" end,
    command_topic = function(id)
      return "$oc/devices/" .. id .. "/sys/commands/request_id=" .. uid()
    end,
    response = function(id) return "$oc/devices/" .. id .. "/sys/commands/response/#" end,
  }
end)

test("legacy topics of reference 001, broker named by its address", function()
  session {
    host = "127.0.0.1", topics = "legacy",
    up = function(id) return "/huawei/v1/devices/" .. id .. "/data/json" end,
    down = function(id) return "/huawei/v1/devices/" .. id .. "/command/json" end,
    command_topic = function(id) return "/huawei/v1/devices/" .. id .. "/command/json" end,
  }
end)

-- Properties without the envelope: the flow wraps them in
-- {"services":[{"service_id":...,"properties":...}]}, byte for byte.
test("IoTDA: a JSON object of properties is reported in the services envelope", function()
  local id, secret = device_id(), "secret-" .. athost.random(8, "hex")
  enroll(id, secret)
  local props = '{"temperature":' .. math.random(0, 40) .. ',"unit":"C"}'
  local received = subscriber("$oc/devices/" .. id .. "/sys/properties/report")
  local r = flow { device_id = id, secret = secret, host = "localhost", port = B.TLS_PORT,
    ca = B.CA, service_id = "Sensor", publish = props }.wait()
  t.eq(r.rc, 0, "exit code (stderr: " .. r.err .. ")")
  t.eq(received(), '{"services":[{"service_id":"Sensor","properties":' .. props .. "}]}",
    "the report at mosquitto_sub")
end)

---------------------------------------------------------------------------
-- Failures
---------------------------------------------------------------------------


local function failing(args)
  local all = { device_id = device_id(), secret = "secret-" .. uid(), host = "127.0.0.1",
    port = B.TLS_PORT, ca = B.CA }
  for k, v in pairs(args) do all[k] = v end
  local r = flow(all).wait()
  t.eq(r.rc, 1, "exit code (stderr: " .. r.err .. ")")
  local e = errors(r.err)
  t.eq(#e, 1, "one error line in " .. r.err)
  r.error = e[1]
  return r
end

test("IoTDA: text that is no JSON object is a usage error, before the module is touched", function()
  local r = flow { device_id = device_id(), secret = "s-" .. uid(), host = "127.0.0.1",
    port = B.TLS_PORT, ca = B.CA, publish = "hello" }.wait()
  t.eq(r.rc, 2, "exit code (stderr: " .. r.err .. ")")
  t.match(r.err, "publish= must be a JSON object of properties", "error")
  t.ok(not has_sent(r.tr or "", "AT+FSWRITE"), "nothing uploaded")
end)

test("the expired CA of reference 001: exit 1 before anything is uploaded", function()
  local r = failing { ca = EXPIRED_CA }
  t.match(r.error, '^athost: step "certificate" failed: .*expired on 2026%-05%-02', "error")
  t.ok(r.tr, "a transcript")
  t.ok(not has_sent(r.tr, "AT+FSWRITE"), "no AT+FSWRITE in the transcript")
  t.ok(not has_sent(r.tr, "AT+FSCREATE"), "no AT+FSCREATE in the transcript")
end)

test("a CA file that is not a certificate: exit 1, EINVAL", function()
  local bad = DIR .. "/bad-ca.pem"
  local f = assert(io.open(bad, "w"))
  f:write("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
  f:close()
  local r = failing { ca = bad }
  t.match(r.error, '^athost: step "certificate" failed: .*EINVAL', "error")
  t.ok(r.tr, "a transcript")
  t.ok(not has_sent(r.tr, "AT+FS"), "nothing uploaded")
end)

test("a wrong secret: the broker refuses, exit 1, step \"connect\"", function()
  local id = device_id()
  enroll(id, "the-right-secret")
  local secret = "wrong-" .. athost.random(8, "hex")
  local r = failing { device_id = id, secret = secret }
  t.match(r.error, '^athost: step "connect" failed: MQTT connect: the broker refused', "error")
  t.ok(r.tr, "a transcript")
  for what, s in pairs({ stderr = r.err, transcript = r.tr }) do
    t.ok(not s:find(secret, 1, true), what .. " shows the secret")
  end
end)

---------------------------------------------------------------------------

for k, v in pairs(require("broker").start(DIR)) do B[k] = v end

local passed, err = pcall(t.run)
stop_running()
shell(BROKER_SH .. " stop " .. DIR)
shell("rm -rf " .. DIR)
if not passed then error(err, 0) end
