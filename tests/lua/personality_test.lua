-- The personality matrix: every cloud flow end to end, as a user runs it
-- (`athost clouds/X.lua -p 'sim:MODEL?personality=random:SEED&...'` as a
-- child process), against one real mosquitto and the local Aliyun auth
-- service, each run under a random personality of the virtual modem (all
-- its knobs drawn from the seed: outcome order, prompt form, echo,
-- unrelated URCs, split output, delays, noise, and each dialect's own).
--
-- Each run checks what a user checks: exit 0, the message the flow
-- publishes arrives at mosquitto_sub, the message mosquitto_pub sends
-- shows in the flow's output. A failure names the seed line the modem
-- printed (give the same personality= to reproduce it) with the tails of
-- the flow's stderr and transcript.
--
--   ATHOST_PATH=tests/lib:lib ./athost tests/lua/personality_test.lua
--   ATHOST_SEEDS=5,17 ...     those seeds instead of the fixed list (every
--                             flow configuration under each of them)
--   ATHOST_PARALLEL=4 ...     flows at a time (default 4)
--   T_FILTER='huawei' ...     only the runs whose name contains that
--   ATHOST_BIN=build/asan/athost ...    (the children too)
local t = require("t")
local flows = require("flows")
local shown, device_id = flows.shown, flows.device_id
local athost = require("athost")
local core = require("athost.sim.core")

local BIN = os.getenv("ATHOST_BIN") or "./athost"
local here = ((arg and arg[0]) or "tests/lua/x"):match("^(.*)/[^/]*$") or "."
local ROOT = here .. "/../.."
local BROKER_SH = ROOT .. "/tests/fixtures/broker.sh"
local DIR = t.tmpdir()
local B = {}                  -- BROKER_* from broker.env, without the prefix
local PARALLEL = tonumber(os.getenv("ATHOST_PARALLEL")) or 4
local FILTER = os.getenv("T_FILTER")

local proc = require("proc").new(DIR)
local q, shell, uid, poll = proc.q, proc.shell, proc.uid, proc.poll
local background, stop_running = proc.background, proc.stop_running

---------------------------------------------------------------------------
-- Seeds: a fixed list (reproducible), or ATHOST_SEEDS
---------------------------------------------------------------------------

-- One seed per run: 16 for clouds/mqtt.lua (one per tls x mode x
-- delivery), 8 for each other flow.
local FIXED = {
  mqtt = { 3, 29, 101, 257, 404, 777, 1024, 1999, 2718, 3141, 4096, 5150,
    6502, 8086, 9001, 12345 },
  aliyun_air720 = { 7, 42, 123, 555, 1001, 2024, 31337, 65535 },
  aliyun_me3630 = { 11, 64, 256, 999, 1337, 4242, 27182, 90210 },
  huawei = { 13, 99, 314, 1234, 2048, 7777, 16384, 54321 },
}

local given = {}
for s in (os.getenv("ATHOST_SEEDS") or ""):gmatch("%d+") do given[#given + 1] = tonumber(s) end

-- The seeds of flow `name`: the fixed ones, or the given ones.
local function seeds(name, n)
  if #given == 0 then return FIXED[name] end
  local out = {}
  for _, s in ipairs(given) do for _ = 1, n or 1 do out[#out + 1] = s end end
  return out
end

---------------------------------------------------------------------------
-- The broker's log, mosquitto_sub, mosquitto_pub
---------------------------------------------------------------------------

local function log_path() return B.DIR .. "/mosquitto.log" end

local function log_size()
  local f = io.open(log_path(), "rb")
  if not f then return 0 end
  local n = f:seek("end")
  f:close()
  return n
end

-- What the broker logged since byte `from`.
local function log_since(from)
  local f = io.open(log_path(), "rb")
  if not f then return "" end
  f:seek("set", from)
  local s = f:read("a") or ""
  f:close()
  return s
end

local function auth_args()
  return string.format("-h 127.0.0.1 -p %d -u %s -P %s", B.PORT, q(B.USER), q(B.PASS))
end

-- mosquitto_sub for one message on topic, known to be subscribed when
-- this returns; its wait() gives the message's exact bytes.
local function subscriber(topic)
  local id = "sub-" .. uid()
  local from = log_size()
  local base = background(string.format("timeout 150 stdbuf -oL mosquitto_sub -i %s %s "
    .. "-t %s -q 1 -C 1 -W 140 -F %%x", id, auth_args(), q(topic)), id)
  poll("mosquitto_sub's SUBACK", 20000, function()
    return log_since(from):find("Sending SUBACK to " .. id .. "\n", 1, true)
  end)
  return {
    got = function()
      local hex = (t.slurp(base .. ".out") or ""):match("^(%x*)\n")
      return hex and athost.unhex(hex)
    end,
    -- What the broker logged of this subscriber and of client cid, and
    -- mosquitto_sub's own exit and stderr: for a message that never came.
    story = function(cid)
      local lines = {}
      for l in log_since(from):gmatch("[^\n]+") do
        if l:find(id, 1, true) or l:find(cid, 1, true) then lines[#lines + 1] = "    " .. l end
      end
      return string.format("  ---- mosquitto_sub: exit %s, stderr %q\n  ---- broker log of %s "
        .. "and %s (tail)\n%s", (t.slurp(base .. ".rc") or ""):match("%d+") or "(running)",
        t.slurp(base .. ".err") or "", id, cid,
        table.concat(lines, "\n", math.max(1, #lines - 30)))
    end,
  }
end

local function publish(topic, payload)
  local file = DIR .. "/pub-" .. uid()
  local f = assert(io.open(file, "wb"))
  f:write(payload)
  f:close()
  local out, ok = shell(string.format("timeout 20 mosquitto_pub %s -t %s -q 1 -f %s",
    auth_args(), q(topic), file))
  if not ok then error("mosquitto_pub: " .. out, 0) end
end

-- The broker accepts device_id for the current UTC hour, as Huawei IoTDA
-- does (see flow_huawei_test.lua); near the end of an hour this waits for
-- the next one, so the flow started right after computes the same hour.
local function enroll_huawei(device_id, secret)
  local left = 3600 - os.time() % 3600
  if left < 30 then athost.sleep((left + 1) * 1000) end
  local hour = os.date("!%Y%m%d%H")
  local out, ok = shell(string.format("%s adduser %s %s %s", BROKER_SH, DIR,
    q(device_id), q(athost.hmac("sha256", hour, secret))))
  if not ok then error("broker.sh adduser: " .. out, 0) end
  return hour
end

---------------------------------------------------------------------------
-- A flow run under a personality
---------------------------------------------------------------------------

local function tail(s, n)
  local lines = {}
  for l in (s or ""):gmatch("[^\n]*\n?") do if l ~= "" then lines[#lines + 1] = l end end
  return table.concat(lines, "", math.max(1, #lines - n + 1))
end

-- The transcript's records of the flow's own port (and its notes), not
-- the virtual modem's side of the pty nor the modem's network links.
local function flow_records(tr)
  local out = {}
  for l in tr:gmatch("[^\n]+") do
    local name = l:match("^%s*[%d.]+ (%S+) ")
    if not name or not (name:find("%-sim$") or name:find("^tcp:")) then
      out[#out + 1] = l .. "\n"
    end
  end
  return table.concat(out)
end

-- Runs one flow both ways. o: flow (path under clouds/), spec (the -p
-- sim: spec, personality included), args {k = v}, cid (its MQTT client id
-- at the broker), up_topic/up (what it publishes), down_topic/down (sent
-- to it once subscribed; shown_topic: the topic it prints, default
-- down_topic). Raises with the seed line and the tails on failure.
local function run(o)
  local name = "flow-" .. uid()
  local tr = DIR .. "/" .. name .. ".tr"
  local base
  local function report(what)
    local err = base and t.slurp(base .. ".err") or ""
    local seed = err:match("(athost sim [^\n]*personality=random:[^\n]*)")
    return string.format("%s\n  seed: %s\n  -p %s\n  ---- stderr (tail)\n%s  ---- transcript (tail)\n%s",
      what, seed or "(no seed line on stderr)", o.spec, tail(err, 15),
      tail(flow_records(t.slurp(tr) or ""), 25))
  end
  local ok, err = pcall(function()
    local sub = subscriber(o.up_topic)
    local keys, words = {}, {}
    for k in pairs(o.args) do keys[#keys + 1] = k end
    table.sort(keys)
    for _, k in ipairs(keys) do words[#words + 1] = q(k .. "=" .. o.args[k]) end
    local from = log_size()
    base = background(string.format("timeout -s TERM 120 %s -l %s %s/clouds/%s -p %s %s",
      BIN, q(tr), ROOT, o.flow, q(o.spec), table.concat(words, " ")), name)
    local function rc()
      local s = t.slurp(base .. ".rc")
      return s and tonumber(s:match("%d+"))
    end
    -- The flow is subscribed once the broker sent it a SUBACK after its
    -- CONNACK (an earlier session's does not count).
    poll("the flow's SUBACK in the broker log", 90000, function()
      if rc() then error("the flow ended before it subscribed: exit " .. rc(), 0) end
      local s = log_since(from)
      local at = s:find("Sending CONNACK to " .. o.cid .. " ", 1, true)
      return at and s:find("Sending SUBACK to " .. o.cid .. "\n", at, true)
    end)
    publish(o.down_topic, o.down)
    local code = poll("the flow to end", 90000, rc)
    local out = t.slurp(base .. ".out") or ""
    if code ~= 0 then error("exit " .. code .. ", expected 0", 0) end
    local seed = o.spec:match("personality=(random:%d+)")
    if not (t.slurp(base .. ".err") or ""):find("personality=" .. seed .. ": ", 1, true) then
      error("no seed line for " .. seed .. " on the flow's stderr", 0)
    end
    local want = shown(o.shown_topic or o.down_topic, o.down)
    if not out:find(want, 1, true) then
      error(string.format("stdout: expected %q, got %q", want, out), 0)
    end
    local okp, got = pcall(poll, "the flow's message at mosquitto_sub", 20000, sub.got)
    if not okp then error(tostring(got) .. "\n" .. sub.story(o.cid), 0) end
    if got ~= o.up then
      error(string.format("mosquitto_sub got %q, expected %q", got, o.up), 0)
    end
    -- No secret in the transcript, whatever the personality split.
    local secrets = {}
    for _, v in ipairs(o.secrets or {}) do secrets[#secrets + 1] = v end
    if o.args.state_dir then
      local ls = io.popen("cat " .. q(o.args.state_dir) .. "/*.json 2>/dev/null")
      for ds in ls:read("a"):gmatch('"device_secret":"([^"]+)"') do secrets[#secrets + 1] = ds end
      ls:close()
    end
    local all = (t.slurp(tr) or "") .. (t.slurp(base .. ".err") or "") .. out
    for _, v in ipairs(secrets) do
      if all:find(v, 1, true) then
        error(string.format("a secret (%d characters) is in the transcript or output", #v), 0)
      end
    end
  end)
  if not ok then error(report(tostring(err)), 0) end
end

---------------------------------------------------------------------------
-- Runs in parallel: PARALLEL lanes, each runs its jobs in turn; a test
-- per job waits for its own and reports it.
---------------------------------------------------------------------------

local jobs = {}

local function job(name, fn)
  if FILTER and not name:find(FILTER, 1, true) then return end
  jobs[#jobs + 1] = { name = name, fn = fn }
end

local function start_jobs()
  for i, j in ipairs(jobs) do
    local before = jobs[i - PARALLEL]
    j.task = athost.spawn(function()
      if before then before.task:join() end
      local t0 = athost.now()
      local ok, err = pcall(j.fn)   -- run() names the seed and the tails
      j.ms = athost.now() - t0
      j.ok, j.err = ok, err
      return true
    end)
  end
  for _, j in ipairs(jobs) do
    t.test(j.name, function()
      j.task:join()
      if not j.ok then error(string.format("%s\n  (after %.1f s)", j.err, j.ms / 1000), 0) end
    end)
  end
end

---------------------------------------------------------------------------
-- clouds/mqtt.lua: every tls x mode x delivery, each under its own seed
---------------------------------------------------------------------------

local LEVELS = flows.levels(B)

local function mqtt_jobs()
  local combos = {}
  for _, tls in ipairs({ "none", "noverify", "server", "mutual" }) do
    for _, mode in ipairs({ "ascii", "hex" }) do
      for _, delivery in ipairs({ "direct", "cached" }) do
        combos[#combos + 1] = { tls = tls, mode = mode, delivery = delivery }
      end
    end
  end
  local list = {}
  if #given == 0 then
    for i, c in ipairs(combos) do list[#list + 1] = { c = c, seed = FIXED.mqtt[i] } end
  else
    for _, s in ipairs(given) do
      for _, c in ipairs(combos) do list[#list + 1] = { c = c, seed = s } end
    end
  end
  for i, x in ipairs(list) do
    local c, seed = x.c, x.seed
    -- QoS 1 for cached delivery (as a user sets it) and every other
    -- direct run: PUBACK is one more outcome whose order varies.
    local qos = (c.delivery == "cached" or i % 2 == 0) and 1 or 0
    job(string.format("mqtt.lua tls=%s mode=%s delivery=%s qos=%d personality=random:%d",
      c.tls, c.mode, c.delivery, qos, seed), function()
      local u = uid()
      local port, files = LEVELS[c.tls]()
      local args = { host = "127.0.0.1", port = port, tls = c.tls, client_id = "flow-" .. u,
        username = B.USER, password = B.PASS, subscribe = "athost/p/" .. u .. "/down",
        topic = "athost/p/" .. u .. "/up",
        publish = string.format("up %s/%s/%s {\"seed\":%d}", c.tls, c.mode, c.delivery, seed),
        listen = 60, messages = 1, mode = c.mode, delivery = c.delivery, qos = qos }
      for k, v in pairs(files) do args[k] = v end
      run { flow = "mqtt.lua", spec = "sim:air720?personality=random:" .. seed, args = args,
        cid = args.client_id, up_topic = args.topic, up = args.publish,
        secrets = { B.PASS }, down_topic = args.subscribe, down = "down to seed " .. seed .. " \"quoted\"" }
    end)
  end
end

---------------------------------------------------------------------------
-- clouds/aliyun.lua on the Air720 (registers over HTTPS, MQTT over TLS)
-- and on the ME3630 (its own AT+CLOUDAUTH, plain MQTT)
---------------------------------------------------------------------------

local PK = "a1Personality"
local REGION = "cn-shanghai"
local AUTH_HOST = "iot-auth." .. REGION .. ".aliyuncs.com"
local MQTT_HOST = PK .. ".iot-as-mqtt." .. REGION .. ".aliyuncs.com"
local PS = "Ps" .. athost.random(12, "hex")
local AUTH = {}               -- the auth service: port, err (its log)

local ME = {}                 -- ME3630 devices: { imei, ds } per run
local imei_base = math.random(0, 89999)

local function imei(prefix, i)
  return core.luhn(string.format("%s%06d", prefix, (imei_base + i) % 1000000))
end

local function auth_service(devices)
  local state = DIR .. "/auth.json"
  local name = "auth"
  local cmd = string.format("%s %s/scripts/sim/aliyun-auth.lua port=0 products=%s"
    .. " broker_host=%s broker_port=1883 tls_cert=%s tls_key=%s state=%s verbose=1 %s %s",
    BIN, ROOT, q(PK .. ":" .. PS), q(MQTT_HOST), q(B.DIR .. "/server.pem"),
    q(B.DIR .. "/server.key"), q(state), devices ~= "" and q("devices=" .. devices) or "",
    q("broker_adduser=bash " .. BROKER_SH .. " adduser " .. B.DIR))
  local base = background(cmd, name)
  AUTH.port = tonumber(poll("the auth service listening", 10000, function()
    if t.slurp(base .. ".rc") then error("the auth service ended: " .. (t.slurp(base .. ".err") or ""), 0) end
    return (t.slurp(base .. ".out") or ""):match("listening on https://127%.0%.0%.1:(%d+)")
  end))
end

local METHODS = { "hmacmd5", "hmacsha1", "hmacsha256" }

local function aliyun_jobs()
  for i, seed in ipairs(seeds("aliyun_air720")) do
    local method = METHODS[i % 3 + 1]
    job(string.format("aliyun.lua air720 sign_method=%s personality=random:%d", method, seed),
      function()
        local dn = imei("86299141", i)
        local hosts = AUTH_HOST .. "=127.0.0.1:" .. AUTH.port .. "," .. MQTT_HOST
          .. ":1883=127.0.0.1:" .. B.TLS_PORT
        local topic = "/" .. PK .. "/" .. dn .. "/user/"
        run { flow = "aliyun.lua",
          spec = string.format("sim:air720?personality=random:%d&imei=%s&hosts=%s", seed, dn, hosts),
          args = { product_key = PK, product_secret = PS, sign_method = method,
            state_dir = DIR .. "/state-" .. dn, publish = '{"temperature":21.5,"seed":' .. seed .. "}",
            listen = 60, messages = 1 },
          cid = dn, up_topic = topic .. "update", up = '{"temperature":21.5,"seed":' .. seed .. "}",
          secrets = { PS },
          down_topic = topic .. "get", down = "hello device " .. dn }
      end)
  end
  for i, seed in ipairs(seeds("aliyun_me3630")) do
    local d = { imei = imei("86701003", i), ds = "Dm" .. athost.random(15, "hex") }
    ME[#ME + 1] = d
    job(string.format("aliyun.lua me3630 personality=random:%d", seed), function()
      local topic = "/" .. PK .. "/" .. d.imei .. "/user/"
      run { flow = "aliyun.lua",
        spec = string.format("sim:me3630?personality=random:%d&imei=%s&hosts=%s&auth=%s", seed,
          d.imei, MQTT_HOST .. ":1883=127.0.0.1:" .. B.PORT, "https://127.0.0.1:" .. AUTH.port),
        args = { product_key = PK, device_secret = d.ds, state_dir = DIR .. "/state-" .. d.imei,
          publish = "temperature 21.5 seed " .. seed, listen = 60, messages = 1 },
        cid = d.imei, up_topic = topic .. "update", up = "temperature 21.5 seed " .. seed,
        secrets = { d.ds },
        down_topic = topic .. "get", down = "hello me3630 " .. d.imei }
    end)
  end
end

---------------------------------------------------------------------------
-- clouds/huawei.lua (the CA uploaded, hour-stamped credentials, TLS)
---------------------------------------------------------------------------

local function huawei_jobs()
  for i, seed in ipairs(seeds("huawei")) do
    local legacy = i % 2 == 0
    job(string.format("huawei.lua topics=%s personality=random:%d",
      legacy and "legacy" or "iotda", seed), function()
      local id, secret = device_id(), "secret-" .. athost.random(8, "hex")
      local hour = enroll_huawei(id, secret)
      local up, down, to
      if legacy then
        up = "/huawei/v1/devices/" .. id .. "/data/json"
        down = "/huawei/v1/devices/" .. id .. "/command/json"
        to = down
      else
        up = "$oc/devices/" .. id .. "/sys/properties/report"
        down = "$oc/devices/" .. id .. "/sys/commands/#"
        to = "$oc/devices/" .. id .. "/sys/commands/request_id=" .. uid()
      end
      local report = string.format('{"services":[{"service_id":"sensor","properties":'
        .. '{"seed":%d}}]}', seed)
      run { flow = "huawei.lua", spec = "sim:air720?personality=random:" .. seed,
        args = { device_id = id, secret = secret, host = legacy and "127.0.0.1" or "localhost",
          port = B.TLS_PORT, ca = B.CA, topics = legacy and "legacy" or "iotda",
          publish = report, listen = 60, messages = 1 },
        cid = id .. "_0_0_" .. hour, up_topic = up, up = report, secrets = { secret },
        down_topic = to, down = '{"command_name":"reboot","paras":{"seed":' .. seed .. "}}" }
    end)
  end
end

---------------------------------------------------------------------------

for k, v in pairs(require("broker").start(DIR)) do B[k] = v end

-- Interleaved, so that each lane gets a mix of long and short flows.
mqtt_jobs()
local n_mqtt = #jobs
aliyun_jobs()
huawei_jobs()
do
  local mq, rest = {}, {}
  for i, j in ipairs(jobs) do
    if i <= n_mqtt then mq[#mq + 1] = j else rest[#rest + 1] = j end
  end
  jobs = {}
  local a, b = 1, 1
  while a <= #mq or b <= #rest do
    if b <= #rest then jobs[#jobs + 1] = rest[b]; b = b + 1 end
    if a <= #mq then jobs[#jobs + 1] = mq[a]; a = a + 1 end
  end
end

local devices = {}
for _, d in ipairs(ME) do devices[#devices + 1] = PK .. ":" .. d.imei .. ":" .. d.ds end
if #devices > 0 or #jobs > 0 then auth_service(table.concat(devices, ",")) end

start_jobs()
local passed, err = pcall(t.run)
stop_running()
shell(BROKER_SH .. " stop " .. DIR)
shell("rm -rf " .. DIR)
if not passed then error(err, 0) end
