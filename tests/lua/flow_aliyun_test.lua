-- clouds/aliyun.lua end to end, run as a user runs it: a child process
-- `athost -l FILE clouds/aliyun.lua -p <pty> ...` against virtual modems,
-- the local Aliyun auth service (HTTPS) and a real mosquitto (TLS), all of
-- them separate processes. Messages are checked on the broker's side with
-- mosquitto_sub and mosquitto_pub; no run may show a secret.
local t = require("t")
local athost = require("athost")

local BIN = os.getenv("ATHOST_BIN") or "./athost"
local PK = "a1FlowAliyun"
local REGION = "cn-shanghai"
local AUTH_HOST = "iot-auth." .. REGION .. ".aliyuncs.com"
local MQTT_HOST = PK .. ".iot-as-mqtt." .. REGION .. ".aliyuncs.com"

-- Fresh secrets for every run of the file, long enough that finding one
-- in a transcript can only mean it leaked.
local PS = "Ps" .. athost.random(12, "hex")
local WRONG_PS = "Wps" .. athost.random(12, "hex")
local WRONG_DS = "Wds" .. athost.random(12, "hex")
local ME_IMEI, ME_DS = "867010030004421", "Dm" .. athost.random(15, "hex")
local KNOWN_DN, KNOWN_DS = "known-device-1", "Dk" .. athost.random(15, "hex")

local function q(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function size(path)
  local f = io.open(path, "rb")
  if not f then return 0 end
  local n = f:seek("end")
  f:close()
  return n
end

-- What was appended to path since byte `from`.
local function since(path, from)
  local f = io.open(path, "rb")
  if not f then return "" end
  f:seek("set", from or 0)
  local s = f:read("a")
  f:close()
  return s or ""
end

-- Polls fn() every 20 ms until it returns a value (returned) or ms pass
-- (raises, naming what). For external processes only: nothing in this
-- process could tell us sooner.
local function wait_for(what, ms, fn)
  local deadline = athost.now() + ms
  while true do
    local v = fn()
    if v then return v end
    if athost.now() > deadline then
      error(string.format("gave up after %d ms waiting for %s", ms, what), 2)
    end
    athost.sleep(20)
  end
end

---------------------------------------------------------------------------
-- Processes: each runs in the background with its pid and, once it ends,
-- its exit status in files; what is still running at the end is killed.
---------------------------------------------------------------------------

local dir = t.tmpdir()
local procs = {}
local broker = {}

local cleanup <close> = setmetatable({}, { __close = function()
  local killed = {}
  for _, p in ipairs(procs) do
    if p.pid and not t.slurp(p.base .. ".rc") then
      os.execute("kill " .. p.pid .. " 2>/dev/null")
      killed[#killed + 1] = q(p.base .. ".rc")
    end
  end
  -- Their exit statuses arrive once they are gone (5 s at most), so
  -- nothing writes into dir while it is removed.
  os.execute("for i in $(seq 50); do ok=1; for f in " .. table.concat(killed, " ")
    .. "; do [ -e \"$f\" ] || ok=0; done; [ $ok = 1 ] && break; sleep 0.1; done")
  os.execute("bash tests/fixtures/broker.sh stop " .. q(dir .. "/broker")
    .. " >/dev/null 2>&1")
  os.execute("rm -rf " .. q(dir))
end })

-- Starts `cmd` (already quoted) with stdout in NAME.out, stderr in
-- NAME.err; returns the process: base, pid, out, err.
local function start(name, cmd)
  local p = { base = dir .. "/" .. name }
  p.out, p.err = p.base .. ".out", p.base .. ".err"
  procs[#procs + 1] = p
  assert(os.execute(string.format("( %s >%s 2>%s </dev/null & echo $! >%s;"
    .. " wait $!; echo $? >%s ) >/dev/null 2>&1 </dev/null &", cmd, q(p.out),
    q(p.err), q(p.base .. ".pid"), q(p.base .. ".rc"))), "cannot start " .. name)
  p.pid = wait_for(name .. "'s pid", 5000, function()
    return (t.slurp(p.base .. ".pid") or ""):match("^(%d+)\n")
  end)
  return p
end

-- The exit status of p, or nil while it runs.
local function status(p)
  local rc = (t.slurp(p.base .. ".rc") or ""):match("^(%d+)\n")
  return rc and tonumber(rc)
end

local function ended(p, what, ms)
  return wait_for(what, ms, function() return status(p) end)
end

---------------------------------------------------------------------------
-- Fixtures shared by all tests: the broker, the auth service
---------------------------------------------------------------------------

for k, v in pairs(require("broker").start(dir .. "/broker")) do broker[k] = v end
local BROKER_LOG = broker.DIR .. "/mosquitto.log"

-- An auth service (scripts/sim/aliyun-auth.lua, HTTPS with the broker's
-- server certificate); adduser: the MQTT users it issues are added to the
-- broker first. Returns the process with .port, .state (its JSON file).
local function auth_service(name, adduser, extra)
  local state = dir .. "/" .. name .. ".json"
  local cmd = string.format("%s scripts/sim/aliyun-auth.lua port=0 products=%s"
    .. " broker_host=%s broker_port=1883 tls_cert=%s tls_key=%s state=%s verbose=1 %s",
    BIN, q(PK .. ":" .. PS), q(MQTT_HOST), q(broker.DIR .. "/server.pem"),
    q(broker.DIR .. "/server.key"), q(state), extra or "")
  if adduser then
    cmd = cmd .. " " .. q("broker_adduser=bash tests/fixtures/broker.sh adduser "
      .. q(broker.DIR))
  end
  local p = start(name, cmd)
  p.port = tonumber(wait_for(name .. " listening", 10000, function()
    if status(p) then error(name .. " ended: " .. (t.slurp(p.err) or ""), 0) end
    return (t.slurp(p.out) or ""):match("listening on https://127%.0%.0%.1:(%d+)")
  end))
  p.state = state
  return p
end

local auth = auth_service("auth", true, q("devices=" .. PK .. ":" .. ME_IMEI .. ":"
  .. ME_DS .. "," .. PK .. ":" .. KNOWN_DN .. ":" .. KNOWN_DS))
local auth_states = { auth.state }

-- The auth service's log (verbose=1 answers) is on its stderr.
local function auth_log() return t.slurp(auth.err) or "" end

-- Every secret the runs could show: the product secrets, the wrong ones,
-- and each device secret and token the auth services hold.
local function secrets()
  local list = { PS, WRONG_PS, WRONG_DS, ME_DS, KNOWN_DS }
  for _, path in ipairs(auth_states) do
    local ok, st = pcall(athost.json.decode, t.slurp(path) or "")
    for _, d in pairs(ok and type(st) == "table" and st.devices or {}) do
      list[#list + 1] = d.deviceSecret
      if d.iotToken then list[#list + 1] = d.iotToken end
    end
  end
  return list
end

---------------------------------------------------------------------------
-- Virtual modems, the cloud side, the flow
---------------------------------------------------------------------------

local nsims = 0

-- A virtual modem (scripts/sim/<model>.lua) on a linked pty, its hosts=
-- pointing the Aliyun names at the local services. opts: model (air720),
-- auth (the auth service process), mqtt_port (the broker's TLS port; the
-- ME3630 speaks plain MQTT), imei, fault ("silent=AT+HTTPINIT"), knobs
-- (a list of "name=value" model options). Returns the link's path.
local function modem(opts)
  nsims = nsims + 1
  local model = opts.model or "air720"
  local a = opts.auth or auth
  local link = dir .. "/tty" .. nsims
  local hosts = MQTT_HOST .. ":1883=127.0.0.1:" .. (opts.mqtt_port or broker.TLS_PORT)
  local extra = ""
  if model == "me3630" then
    extra = q("auth=https://127.0.0.1:" .. a.port)
  else
    hosts = AUTH_HOST .. "=127.0.0.1:" .. a.port .. "," .. hosts
  end
  for _, k in ipairs(opts.knobs or {}) do extra = extra .. " " .. q(k) end
  local p = start("sim" .. nsims, string.format("%s scripts/sim/%s.lua link=%s imei=%s"
    .. " hosts=%s %s %s", BIN, model, q(link), q(opts.imei), q(hosts), extra,
    opts.fault and q(opts.fault) or ""))
  wait_for(model .. " sim " .. nsims, 10000, function()
    if status(p) then error("the sim ended: " .. (t.slurp(p.err) or ""), 0) end
    return (t.slurp(p.out) or ""):find("^/dev/pts/")
  end)
  return link
end

local nsubs = 0

-- mosquitto_sub for one message on topic, started and subscribed (the
-- broker has sent its SUBACK) before this returns.
local function subscriber(topic)
  nsubs = nsubs + 1
  local id = "flow-test-sub-" .. nsubs
  local mark = size(BROKER_LOG)
  local p = start(id, string.format("mosquitto_sub -h 127.0.0.1 -p %s -u %s -P %s"
    .. " -i %s -t %s -q 1 -C 1 -W 30 -F %s", broker.PORT, q(broker.USER),
    q(broker.PASS), id, q(topic), q("%t|%p")))
  wait_for("mosquitto_sub's SUBACK", 10000, function()
    if status(p) then error("mosquitto_sub ended: " .. (t.slurp(p.err) or ""), 0) end
    return since(BROKER_LOG, mark):find("Sending SUBACK to " .. id .. "\n", 1, true)
  end)
  return p
end

-- What the subscriber received ("topic|payload\n"), once it has.
local function received(sub)
  local rc = ended(sub, "mosquitto_sub to receive its message", 15000)
  t.eq(rc, 0, "mosquitto_sub exit status (" .. (t.slurp(sub.err) or "") .. ")")
  return t.slurp(sub.out)
end

local function publish(topic, text)
  t.ok(os.execute(string.format("timeout 10 mosquitto_pub -h 127.0.0.1 -p %s -u %s"
    .. " -P %s -t %s -q 1 -m %s", broker.PORT, q(broker.USER), q(broker.PASS),
    q(topic), q(text))), "mosquitto_pub")
end

local nruns = 0

-- Starts `athost -l TRANSCRIPT clouds/aliyun.lua -p link args...`.
local function flow(link, args)
  nruns = nruns + 1
  local argv = {}
  for _, a in ipairs(args) do argv[#argv + 1] = q(a) end
  local mark = size(BROKER_LOG) -- before the flow can connect
  local r = start("flow" .. nruns, string.format("%s -l %s clouds/aliyun.lua -p %s %s",
    BIN, q(dir .. "/flow" .. nruns .. ".log"), q(link), table.concat(argv, " ")))
  r.transcript = dir .. "/flow" .. nruns .. ".log"
  r.broker_mark = mark
  return r
end

-- Waits for the flow to end: r.code, r.out, r.err, r.tr (the transcript),
-- r.fail (its failure line). Every run is checked for secrets here.
local function finish(r)
  r.code = ended(r, "the flow to end", 60000)
  r.out, r.err = t.slurp(r.out) or "", t.slurp(r.err) or ""
  r.tr = t.slurp(r.transcript) or ""
  t.ok(#r.tr > 0, "the flow wrote a transcript")
  local show = { stdout = r.out, stderr = r.err, transcript = r.tr }
  for _, s in ipairs(secrets()) do
    for what, text in pairs(show) do t.nomatch(text, s, "the flow's " .. what) end
  end
  local fails = {}
  for l in r.err:gmatch("[^\n]+") do
    if l:find("^athost:") then fails[#fails + 1] = l end
  end
  t.ok(#fails <= 1, "at most one failure line: " .. r.err)
  r.fail = fails[1]
  return r
end

-- Waits until the broker logs the device's SUBSCRIBE to its get topic and
-- its SUBACK; fails at once if the flow ended first.
local function device_subscribed(r, dn, topic)
  wait_for("the device's SUBSCRIBE to " .. topic, 30000, function()
    if status(r) then
      error("the flow ended before it subscribed: " .. (t.slurp(r.err) or ""), 0)
    end
    local log = since(BROKER_LOG, r.broker_mark)
    local at = log:find("Received SUBSCRIBE from " .. dn .. "\n", 1, true)
    at = at and log:find("\t" .. topic .. " (QoS 0)\n", at, true)
    return at and log:find("Sending SUBACK to " .. dn .. "\n", at, true)
  end)
end

-- A successful session, both ways: mosquitto_sub waits on the update
-- topic, the flow connects, subscribes and publishes, mosquitto_pub sends
-- to the get topic once the device is subscribed; the flow prints that
-- message and ends (listen=30 messages=1). Returns the finished run.
local function both_ways(link, dn, args)
  local base = "/" .. PK .. "/" .. dn .. "/user"
  local up = '{"temperature":21.5,"run":"' .. athost.random(4, "hex") .. '"}'
  local down = "hello from the cloud " .. athost.random(4, "hex")
  local sub = subscriber(base .. "/update")
  local all = { "product_key=" .. PK, "publish=" .. up, "listen=30", "messages=1" }
  for _, a in ipairs(args) do all[#all + 1] = a end
  local r = flow(link, all)
  device_subscribed(r, dn, base .. "/get")
  publish(base .. "/get", down)
  finish(r)
  t.eq(r.code, 0, "exit status (stderr: " .. r.err .. ")")
  t.eq(r.fail, nil, "failure line")
  t.match(r.out, "message on " .. base:gsub("%p", "%%%0") .. "/get: "
    .. down:gsub("%p", "%%%0") .. "\n", "the flow's stdout")
  t.eq(received(sub), base .. "/update|" .. up .. "\n", "what mosquitto_sub received")
  t.match(r.err, "done: device " .. dn .. ",.* published 1, received 1", "summary")
  return r
end

-- True if stderr shows the step starting: "[  0.003] register".
local function step(r, name)
  return ("\n" .. r.err):find("\n%[%s*[%d.]+%] " .. name .. "\n") ~= nil
end

local function count(s, plain)
  local n, at = 0, 1
  while true do
    at = s:find(plain, at, true)
    if not at then return n end
    n, at = n + 1, at + 1
  end
end

-- The device secret the auth service issued to dn (its state file).
local function issued(dn)
  local st = athost.json.decode(t.slurp(auth.state))
  local d = st.devices[PK .. "/" .. dn]
  return d and d.deviceSecret, d
end

local function mode(path)
  local f = assert(io.popen("stat -c %a " .. q(path)))
  local m = f:read("l")
  f:close()
  return m
end

-- A first run with a product secret: registers, stores the secret,
-- auths, connects over TLS, messages both ways.
local function provision(imei, method)
  local link = modem { imei = imei }
  local state = dir .. "/state-" .. imei
  local regs = count(auth_log(), "POST /auth/register/device -> {\"code\":200")
  local r = both_ways(link, imei, { "product_secret=" .. PS, "state_dir=" .. state,
    "sign_method=" .. method })
  t.ok(step(r, "register"), "a register step: " .. r.err)
  t.match(r.err, "registered; device secret stored in ", "stderr")
  t.match(r.err, "registered true", "summary")
  t.eq(count(auth_log(), "POST /auth/register/device -> {\"code\":200"), regs + 1,
    "registrations the auth service answered")
  local reg = ({ hmacmd5 = "HmacMD5", hmacsha1 = "HmacSHA1", hmacsha256 = "HmacSHA256" })[method]
  t.match(r.tr, "&signMethod=" .. reg, "the registration's sign method")
  t.match(r.tr, "&signmethod=" .. method, "the device auth's sign method")
  t.match(r.tr, '"deviceSecret":"%*%*%*"', "the secret is masked in the reply")
  t.match(r.tr, 'AT%+SSLMIPSTART="' .. MQTT_HOST:gsub("%p", "%%%0") .. '",1883',
    "MQTT over TLS")
  local path = state .. "/aliyun-" .. PK .. "-" .. imei .. ".json"
  local ds = issued(imei)
  t.ok(ds, "the auth service knows the device")
  local stored = athost.json.decode(t.ok(t.slurp(path), "the stored secret " .. path))
  t.eq(stored.device_secret, ds, "the stored secret is the one issued")
  t.eq(mode(path), "600", "the stored secret's file mode")
  t.eq(mode(state), "700", "the state directory's mode")
  return link, state, r
end

---------------------------------------------------------------------------
-- Tests
---------------------------------------------------------------------------

t.test("Air720, product secret, hmacmd5: registers, stores, auths, both ways", function()
  provision("862991419830011", "hmacmd5")
end)

t.test("Air720, product secret, hmacsha1: registers, stores, auths, both ways", function()
  provision("862991419830029", "hmacsha1")
end)

t.test("Air720, product secret, hmacsha256: registers, stores, auths, both ways", function()
  provision("862991419830037", "hmacsha256")
end)

t.test("a second run reuses the stored secret; registering again is refused", function()
  local imei = "862991419830045"
  local link, state = provision(imei, "hmacmd5")
  local log_mark = #auth_log()
  local r = both_ways(link, imei, { "product_secret=" .. PS, "state_dir=" .. state })
  t.ok(not step(r, "register"), "no register step: " .. r.err)
  t.match(r.err, "using the device secret stored in " .. state:gsub("%p", "%%%0"), "stderr")
  t.match(r.err, "registered false", "summary")
  t.nomatch(r.tr, "/auth/register/device", "the transcript")
  local log = auth_log():sub(log_mark + 1)
  t.nomatch(log, "/auth/register/device", "the auth service's log")
  t.match(log, "POST /auth/devicename %-> {\"code\":200", "the auth service's log")

  -- Without the stored secret the flow would have to register again: the
  -- service refuses an active device.
  r = finish(flow(link, { "product_key=" .. PK, "product_secret=" .. PS,
    "state_dir=" .. dir .. "/empty-state", "publish=x" }))
  t.eq(r.code, 1, "exit status")
  t.eq(r.fail, 'athost: step "register" failed: registration refused: code 6289 '
    .. "device already active", "failure line")
  t.match(auth_log():sub(log_mark + 1), "POST /auth/register/device %-> "
    .. "{\"code\":6289", "the auth service refused")
  t.eq(t.slurp(dir .. "/empty-state/aliyun-" .. PK .. "-" .. imei .. ".json"), nil,
    "nothing stored")
end)

t.test("ME3630 with a device secret: AT+CLOUDAUTH, both ways", function()
  local link = modem { model = "me3630", imei = ME_IMEI, mqtt_port = broker.PORT }
  local r = both_ways(link, ME_IMEI, { "device_secret=" .. ME_DS,
    "state_dir=" .. dir .. "/state-me3630" })
  t.ok(step(r, "auth and connect"), "the ME3630's own auth step: " .. r.err)
  t.ok(not step(r, "register"), "no register step")
  t.match(r.tr, "AT%+CLOUDAUTH=" .. PK .. "," .. ME_IMEI .. ",%*%*%*\\r", "AT+CLOUDAUTH")
  t.match(r.tr, "%+CLOUDPUBLISH: ", "the message came as +CLOUDPUBLISH")
  t.nomatch(r.tr, "AT+HTTP", "the transcript")
end)

t.test("ME3630 with only a product secret: it cannot register, step register", function()
  local link = modem { model = "me3630", imei = "867010030004439", mqtt_port = broker.PORT }
  local r = finish(flow(link, { "product_key=" .. PK, "product_secret=" .. PS,
    "state_dir=" .. dir .. "/state-me3630-ps" }))
  t.eq(r.code, 1, "exit status")
  t.eq(r.fail, 'athost: step "register" failed: the me3630 has no HTTP requests '
    .. "(its profile can: aliyun_mqtt): it cannot register a device; give device_secret=",
    "failure line")
  t.nomatch(r.tr, "AT+CLOUDAUTH", "the transcript")
end)

t.test("a wrong product secret: registration refused, step register", function()
  local imei = "862991419830052"
  local link = modem { imei = imei }
  local state = dir .. "/state-wrong-ps"
  local r = finish(flow(link, { "product_key=" .. PK, "product_secret=" .. WRONG_PS,
    "state_dir=" .. state, "publish=x" }))
  t.eq(r.code, 1, "exit status")
  t.eq(r.fail, 'athost: step "register" failed: registration refused: code 6205 '
    .. "sign check error", "failure line")
  t.eq(t.slurp(state .. "/aliyun-" .. PK .. "-" .. imei .. ".json"), nil, "nothing stored")
  t.eq(issued(imei), nil, "no device created")
end)

t.test("a wrong device secret: device auth refused, step auth", function()
  local link = modem { imei = "862991419830060" }
  local r = finish(flow(link, { "product_key=" .. PK, "device_name=" .. KNOWN_DN,
    "device_secret=" .. WRONG_DS, "state_dir=" .. dir .. "/state-wrong-ds" }))
  t.eq(r.code, 1, "exit status")
  t.eq(r.fail, 'athost: step "auth" failed: device auth refused: code 6205 '
    .. "sign check error", "failure line")
  t.ok(not step(r, "register"), "no register step")
  t.match(r.tr, "/auth/devicename", "the device auth request")
  t.nomatch(r.tr, "AT+MCONFIG", "the transcript (it never connects)")
end)

t.test("a broker that refuses the issued credentials: step connect", function()
  -- This auth service does not add its users to the broker.
  local auth2 = auth_service("auth2", false)
  auth_states[#auth_states + 1] = auth2.state
  local imei = "862991419830078"
  local link = modem { imei = imei, auth = auth2 }
  local r = flow(link, { "product_key=" .. PK, "product_secret=" .. PS,
    "state_dir=" .. dir .. "/state-refused", "publish=x" })
  finish(r)
  t.eq(r.code, 1, "exit status")
  t.match(r.fail, '^athost: step "connect" failed: .*refused', "failure line")
  t.ok(step(r, "auth"), "it got as far as auth")
  t.match(since(BROKER_LOG, r.broker_mark), "not authorised", "the broker's log")
end)

t.test("a module that stops answering: ETIMEDOUT at AT+HTTPINIT, step register", function()
  local link = modem { imei = "862991419830086", fault = "silent=AT+HTTPINIT" }
  local r = finish(flow(link, { "product_key=" .. PK, "product_secret=" .. PS,
    "state_dir=" .. dir .. "/state-silent", "publish=x" }))
  t.eq(r.code, 1, "exit status")
  t.match(r.fail, '^athost: step "register" failed: .*ETIMEDOUT: no final result to '
    .. "AT%+HTTPINIT in %d+ ms", "failure line")
end)

---------------------------------------------------------------------------
-- Every reading of the outcome order and spelling (issue 8): the virtual
-- modems' knobs set each way the references allow
---------------------------------------------------------------------------

-- Checks in the transcript that the outcome line (a Lua pattern) came
-- before OK (order=before) or not (after): the transcript writes what
-- the module said as escaped text, "\r\n<line>\r\n\r\nOK\r\n".
local function outcome_order(tr, pat, knobs)
  local before = tr:find(pat .. "\\r\\n\\r\\nOK\\r\\n") ~= nil
  local want = knobs[1] == "order=before"
  t.eq(before, want, pat .. " before OK with " .. knobs[1])
end

t.test("Air720, +HTTPACTION before/after OK, without the space, repeated", function()
  for i, knobs in ipairs({ { "order=before", "http_space=tight", "http_dup=on" },
                           { "order=after", "http_space=tight", "http_dup=on" },
                           { "order=before", "http_space=space", "http_dup=off" } }) do
    local imei = "86299141983010" .. i
    local link = modem { imei = imei, knobs = knobs }
    local r = both_ways(link, imei, { "product_secret=" .. PS,
      "state_dir=" .. dir .. "/state-knobs-" .. i })
    t.ok(step(r, "register"), "registered through AT+HTTP*: " .. table.concat(knobs, " "))
    local sep = knobs[2] == "http_space=tight" and "" or " "
    t.match(r.tr, "%+HTTPACTION:" .. sep .. "1,200,", "the +HTTPACTION spelling")
    outcome_order(r.tr, "%+HTTPACTION:" .. sep .. "1,200,%d+", knobs)
  end
end)

t.test("ME3630, +ALIAUTH/+CLOUDSUBACK before and after OK, <OK>, +CLOUDPUBLISH:", function()
  for i, knobs in ipairs({ { "order=before", "suback_text=angle", "urc_space=tight" },
                           { "order=after", "suback_text=angle", "urc_space=tight" },
                           { "order=before", "suback_text=ok", "urc_space=space" } }) do
    local link = modem { model = "me3630", imei = ME_IMEI, mqtt_port = broker.PORT,
      knobs = knobs }
    local r = both_ways(link, ME_IMEI, { "device_secret=" .. ME_DS,
      "state_dir=" .. dir .. "/state-me3630-knobs" })
    local sub = knobs[2] == "suback_text=angle" and "<OK>" or "OK"
    t.match(r.tr, "%+CLOUDSUBACK: " .. sub, "the +CLOUDSUBACK spelling: " .. knobs[2])
    local sep = knobs[3] == "urc_space=tight" and "" or " "
    t.match(r.tr, "%+CLOUDPUBLISH:" .. sep .. "0,", "the +CLOUDPUBLISH spelling")
    outcome_order(r.tr, "%+ALIAUTH: OK", knobs)
    outcome_order(r.tr, "%+CLOUDSUBACK: " .. sub:gsub("%p", "%%%0"), knobs)
  end
end)

t.test("ME3630, publish=42 (a message the module reads as a length) arrives as 42", function()
  local link = modem { model = "me3630", imei = ME_IMEI, mqtt_port = broker.PORT }
  local up = "/" .. PK .. "/" .. ME_IMEI .. "/user/update"
  local sub = subscriber(up)
  local r = finish(flow(link, { "product_key=" .. PK, "device_secret=" .. ME_DS,
    "state_dir=" .. dir .. "/state-me3630-42", "publish=42" }))
  t.eq(r.code, 0, "exit status (stderr: " .. r.err .. ")")
  t.eq(received(sub), up .. "|42\n", "what mosquitto_sub received")
  t.match(r.tr, "AT%+CLOUDPUB=" .. up:gsub("%p", "%%%0") .. ",1,2\\r", "the length form")
end)

t.test("8 random personalities each: Air720 (HTTP auth) and ME3630, both ways", function()
  -- Seeds fixed so a failure reproduces; the sim prints what each drew.
  for _, seed in ipairs({ 1, 2, 3, 5, 8, 13, 21, 34 }) do
    local p = "personality=random:" .. seed
    local link = modem { imei = "862991419830200", knobs = { p } }
    -- The ME3630's device, authenticated through AT+HTTP* here.
    local ok, err = pcall(both_ways, link, ME_IMEI, { "device_name=" .. ME_IMEI,
      "device_secret=" .. ME_DS, "state_dir=" .. dir .. "/state-seeds" })
    t.ok(ok, "Air720 " .. p .. ": " .. tostring(err) .. " " .. (t.slurp(dir .. "/sim"
      .. nsims .. ".err") or ""))
    link = modem { model = "me3630", imei = ME_IMEI, mqtt_port = broker.PORT, knobs = { p } }
    ok, err = pcall(both_ways, link, ME_IMEI, { "device_secret=" .. ME_DS,
      "state_dir=" .. dir .. "/state-me3630-seeds" })
    t.ok(ok, "ME3630 " .. p .. ": " .. tostring(err) .. " " .. (t.slurp(dir .. "/sim"
      .. nsims .. ".err") or ""))
  end
end)

t.run()
