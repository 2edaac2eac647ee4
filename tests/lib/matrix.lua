-- The cloud flows end to end on one virtual modem model, as a user runs
-- them: `athost -l TRANSCRIPT clouds/<flow>.lua -p 'sim:<model>?...' k=v`
-- as a child process, against a real mosquitto (plain, TLS, mutual TLS)
-- and the local Aliyun auth service (HTTPS), messages checked on the
-- broker's side with mosquitto_sub and mosquitto_pub. A per-model suite
-- (tests/lua/flow_<model>_test.lua) is a list of these:
--
--   local X = require("matrix").new("ec200u")
--   X.test("mqtt tls=server qos=1", function() X.mqtt { tls = "server", qos = 1 } end)
--   X.test("aliyun twice", function() X.aliyun_twice {} end)
--   X.test("huawei", function() X.huawei {} end)
--   X.test("recovery", function() X.recovery { fault = "drop=AT%2BQMTPUBEX" } end)
--   X.run()
--
-- Every run is checked for secrets (passwords, product and device
-- secrets, tokens, the client key) in its stdout, stderr and transcript.
local t = require("t")
local athost = require("athost")
local flows = require("flows")

local M = {}

local REGION = "cn-shanghai"
local AUTH_HOST = "iot-auth." .. REGION .. ".aliyuncs.com"

function M.new(model, defaults)
  defaults = defaults or {}
  local X = { model = model }
  local BIN = os.getenv("ATHOST_BIN") or "./athost"
  local here = ((arg and arg[0]) or "tests/lua/x"):match("^(.*)/[^/]*$") or "."
  local ROOT = here .. "/../.."
  local DIR = t.tmpdir()
  local proc = require("proc").new(DIR)
  local q, shell, uid, poll = proc.q, proc.shell, proc.uid, proc.poll
  local background = proc.background
  -- Services that outlive one test (the auth service): stopped by X.run.
  local lasting = require("proc").new(DIR)
  X.dir, X.q, X.uid, X.poll = DIR, q, uid, poll

  local B = require("broker").start(DIR .. "/broker")
  X.broker = B
  local function broker_log() return t.slurp(B.DIR .. "/mosquitto.log") or "" end
  local LEVELS = flows.levels(B)

  local secrets = { B.PASS }
  function X.secret(s) secrets[#secrets + 1] = s end
  local key = t.slurp(B.CLIENT_KEY)
  if key then
    -- A window from the middle of the key: the PEM header is no secret.
    X.secret(key:sub(200, 260))
  end

  -- The auth service, started when an Aliyun test first needs it.
  local auth
  local PK = "a1Matrix" .. model:gsub("%W", ""):sub(1, 6)
  local PS = "Ps" .. athost.random(12, "hex")
  X.secret(PS)
  local function auth_service()
    if auth then return auth end
    local state = DIR .. "/auth.json"
    local base = lasting.background(string.format("%s %s/scripts/sim/aliyun-auth.lua port=0 "
      .. "products=%s broker_host=%s broker_port=1883 tls_cert=%s tls_key=%s state=%s %s",
      BIN, ROOT, q(PK .. ":" .. PS), q(PK .. ".iot-as-mqtt." .. REGION .. ".aliyuncs.com"),
      q(B.DIR .. "/server.pem"), q(B.DIR .. "/server.key"), q(state),
      q("broker_adduser=bash " .. ROOT .. "/tests/fixtures/broker.sh adduser " .. B.DIR)),
      "auth")
    local port = poll("the auth service listening", 10000, function()
      local out = t.slurp(base .. ".out") or ""
      return tonumber(out:match("listening on https://127%.0%.0%.1:(%d+)")),
        t.slurp(base .. ".err")
    end)
    auth = { port = port, state = state, base = base }
    return auth
  end
  -- Device secrets and tokens the auth service issued (its state file).
  local function issued()
    local out = {}
    if not auth then return out end
    local ok, st = pcall(athost.json.decode, t.slurp(auth.state) or "")
    for _, d in pairs(ok and type(st) == "table" and st.devices or {}) do
      out[#out + 1] = d.deviceSecret
      if d.iotToken then out[#out + 1] = d.iotToken end
    end
    return out
  end

  ---------------------------------------------------------------------------
  -- mosquitto_sub, mosquitto_pub
  ---------------------------------------------------------------------------

  -- Waits until the broker logged, since byte `from`, its connects-th
  -- CONNACK to id and a SUBACK after it; fails early if run ended.
  -- logf: the log of another broker (default this matrix's).
  local function subscribed(id, from, connects, run, logf)
    poll(string.format("CONNACK #%d and then SUBACK to %s in the broker log",
      connects or 1, id), 30000, function()
      if run and run.done() then
        error("the flow ended before it subscribed: exit " .. run.done()
          .. ", stderr:\n" .. (t.slurp(run.base .. ".err") or "")
          .. "\nthe transcript's end:\n" .. (t.slurp(run.tr or "") or ""):sub(-2500), 0)
      end
      local s = (logf or broker_log)():sub(from + 1)
      local at = 0
      for _ = 1, connects or 1 do
        at = s:find("Sending CONNACK to " .. id .. " ", at + 1, true)
        if not at then return false, s:sub(-400) end
      end
      return s:find("Sending SUBACK to " .. id .. "\n", at, true), s:sub(-400)
    end)
  end
  X.subscribed = subscribed

  local function auth_args()
    return string.format("-h 127.0.0.1 -p %d -u %s -P %s", B.PORT, q(B.USER), q(B.PASS))
  end

  -- mosquitto_sub on topic, subscribed when this returns; the result
  -- waits until pred(payloads) holds and returns the exact payloads.
  -- via: another broker { args = mosquitto_sub's -h -p -u -P, log = fn }.
  function X.subscriber(topic, via)
    local id = "sub-" .. uid()
    local logf = via and via.log or broker_log
    local from = #logf()
    local base = background(string.format("timeout 90 stdbuf -oL mosquitto_sub -i %s %s "
      .. "-t %s -q 1 -W 85 -F %%x", id, via and via.args or auth_args(), q(topic)), id)
    subscribed(id, from, 1, nil, logf)
    return function(pred, what)
      return poll(what or "messages at mosquitto_sub", 30000, function()
        local got = {}
        for hex in (t.slurp(base .. ".out") or ""):gmatch("(%x*)\n") do
          got[#got + 1] = athost.unhex(hex)
        end
        if pred(got) then return got end
        return nil, #got .. " message(s): " .. table.concat(got, " | "):sub(1, 300)
      end)
    end
  end

  -- mosquitto_pub of exactly these bytes.
  function X.publish(topic, payload, via)
    local file = DIR .. "/pub-" .. uid()
    local f = assert(io.open(file, "wb"))
    f:write(payload)
    f:close()
    local out, ok = shell(string.format("mosquitto_pub %s -t %s -q 1 -f %s",
      via and via.args or auth_args(), q(topic), file))
    t.ok(ok, "mosquitto_pub: " .. out)
  end

  ---------------------------------------------------------------------------
  -- The flow as a child process
  ---------------------------------------------------------------------------

  -- The port spec of the virtual modem: model options (a table, values
  -- as on a command line) after the defaults of this matrix.
  function X.spec(sim)
    local o, keys = {}, {}
    for k, v in pairs(defaults.sim or {}) do o[k] = v end
    for k, v in pairs(sim or {}) do o[k] = v end
    for k in pairs(o) do keys[#keys + 1] = k end
    table.sort(keys)
    local parts = {}
    for _, k in ipairs(keys) do
      parts[#parts + 1] = k .. "=" .. tostring(o[k]):gsub("[%%&?=+ ]", function(c)
        return string.format("%%%02X", c:byte())
      end)
    end
    return "sim:" .. model .. (#parts > 0 and "?" .. table.concat(parts, "&") or "")
  end

  -- Starts clouds/<name>.lua on the model; run.done() is its exit code
  -- once it ended, run.wait() returns { rc, out, err, tr } after
  -- checking them for secrets.
  -- opts.port: another port spec than the model's sim: (an rfc2217:
  -- port in front of a virtual modem served elsewhere).
  function X.flow(name, args, sim, opts)
    local id = "flow-" .. uid()
    -- opts.path: a directory searched first for athost modules (a test's
    -- own profile).
    local env = opts and opts.path and ("ATHOST_PATH=" .. q(opts.path .. ":"
      .. (os.getenv("ATHOST_PATH") or "lib")) .. " ") or ""
    local keys, words = {}, {}
    for k, v in pairs(args) do if v ~= false then keys[#keys + 1] = k end end
    table.sort(keys)
    for _, k in ipairs(keys) do words[#words + 1] = q(k .. "=" .. args[k]) end
    local tr = DIR .. "/" .. id .. ".tr"
    local run = { tr = tr }
    run.base = background(string.format("%stimeout -s TERM 90 %s -l %s %s/clouds/%s.lua -p %s %s",
      env, BIN, tr, ROOT, name, q(opts and opts.port or X.spec(sim)),
      table.concat(words, " ")), id)
    function run.done()
      local rc = t.slurp(run.base .. ".rc")
      return rc and tonumber(rc:match("%d+"))
    end
    function run.wait(ms)
      local rc = poll("the flow to end", ms or 80000, run.done)
      local r = { rc = rc, out = t.slurp(run.base .. ".out") or "",
        err = t.slurp(run.base .. ".err") or "", tr = t.slurp(tr) or "" }
      local all = {}
      for _, s in ipairs(secrets) do all[#all + 1] = s end
      for _, s in ipairs(issued()) do all[#all + 1] = s end
      -- run.secrets: a list, or a function giving one once the run ended
      -- (what it stored).
      local more = run.secrets
      if type(more) == "function" then more = more() end
      for _, s in ipairs(more or {}) do all[#all + 1] = s end
      for _, s in ipairs(all) do
        for _, what in ipairs({ "out", "err", "tr" }) do
          t.ok(not r[what]:find(s, 1, true), "a secret in the flow's " .. what)
        end
      end
      return r
    end
    return run
  end

  local function ok_run(r)
    t.eq(r.rc, 0, "exit code (stderr: " .. r.err:sub(-1500) .. "\nthe transcript's end:\n"
      .. r.tr:sub(-2500) .. ")")
  end

  ---------------------------------------------------------------------------
  -- The checks
  ---------------------------------------------------------------------------

  -- clouds/mqtt.lua, both ways: mosquitto_sub waits on `up`; the flow
  -- subscribes to `down`, publishes o.up (o.count times) and listens for
  -- one message, which mosquitto_pub sends once the broker logged the
  -- flow's SUBACK. o: tls (none|noverify|server|mutual), qos, up, down,
  -- args (more flow parameters), sim (model options), port (instead of
  -- the model's sim: spec), connects (the
  -- CONNACK to wait for), arrives (what mosquitto_sub must see; default
  -- o.up). Returns the run's result.
  function X.mqtt(o)
    local u = uid()
    local up, down = "athost/m/" .. u .. "/up", "athost/m/" .. u .. "/down"
    local cid = "m-" .. model .. "-" .. u
    local tls = o.tls or "none"
    local port, files = LEVELS[tls]()
    local payload_up = o.up or string.format("up %s qos %d from %s", tls, o.qos or 0, model)
    local payload_down = o.down or string.format("down %s qos %d to %s", tls, o.qos or 0, model)
    local args = { host = "127.0.0.1", port = port, tls = tls, client_id = cid,
      username = B.USER, password = B.PASS, subscribe = down, topic = up,
      publish = payload_up, listen = 40, messages = 1, qos = o.qos or 0 }
    for k, v in pairs(files) do args[k] = v end
    for k, v in pairs(o.args or {}) do args[k] = v end
    local received = X.subscriber(up)
    local from = #broker_log()
    local run = X.flow("mqtt", args, o.sim, { port = o.port })
    subscribed(cid, from, o.connects, run)
    X.publish(down, payload_down)
    local r = run.wait()
    ok_run(r)
    t.eq(r.out, flows.shown(down, payload_down), "stdout: the message from mosquitto_pub")
    local want = o.arrives or payload_up:gsub("%%d", "1")
    r.received = received(function(ps)
      for _, p in ipairs(ps) do if p == want then return true end end
    end, "the flow's publish at mosquitto_sub")
    r.up, r.down, r.cid = up, down, cid
    return r
  end

  -- clouds/aliyun.lua with a product secret, twice on one device: the
  -- first run registers over the module's HTTP commands and stores the
  -- device secret, the second uses the stored one. Messages both ways
  -- each time.
  function X.aliyun_twice(o)
    o = o or {}
    local a = auth_service()
    local dn = "86" .. string.format("%013d", math.random(0, 9999999999999))
    local state = DIR .. "/state-" .. uid()
    local sim = { imei = dn,
      hosts = AUTH_HOST .. "=127.0.0.1:" .. a.port .. "," .. PK .. ".iot-as-mqtt."
        .. REGION .. ".aliyuncs.com:1883=127.0.0.1:" .. B.TLS_PORT }
    for k, v in pairs(o.sim or {}) do sim[k] = v end
    local base = "/" .. PK .. "/" .. dn .. "/user"
    local runs = {}
    for i = 1, 2 do
      local up = '{"run":' .. i .. ',"n":"' .. uid() .. '"}'
      local down = "to " .. model .. " run " .. i .. " " .. uid()
      local received = X.subscriber(base .. "/update")
      local from = #broker_log()
      local run = X.flow("aliyun", { product_key = PK, product_secret = PS,
        state_dir = state, publish = up, listen = 40, messages = 1 }, sim)
      -- The MQTT client id is the device name.
      subscribed(dn, from, 1, run)
      X.publish(base .. "/get", down)
      local r = run.wait()
      ok_run(r)
      t.eq(r.out, flows.shown(base .. "/get", down), "run " .. i .. ": stdout")
      received(function(ps)
        for _, p in ipairs(ps) do if p == up then return true end end
      end, "run " .. i .. ": the flow's publish at mosquitto_sub")
      t.match(r.err, "done: device " .. dn .. ", registered " .. tostring(i == 1),
        "run " .. i .. ": summary")
      runs[i] = r
    end
    t.match(runs[2].err, "using the device secret stored in", "run 2 used the stored secret")
    t.nomatch(runs[2].err, "\n%[%s*[%d.]+%] register\n", "run 2 did not register")
    return runs
  end

  -- The broker accepts device_id for the current UTC hour, as IoTDA does.
  local function enroll(device_id, secret)
    local left = 3600 - os.time() % 3600
    if left < 30 then athost.sleep((left + 1) * 1000) end
    local password = athost.hmac("sha256", os.date("!%Y%m%d%H"), secret)
    local out, ok = shell(string.format("bash %s/tests/fixtures/broker.sh adduser %s %s %s",
      ROOT, B.DIR, q(device_id), q(password)))
    t.ok(ok, "broker.sh adduser: " .. out)
  end

  -- clouds/huawei.lua with the CA uploaded and verified by the module;
  -- messages both ways on the IoTDA topics.
  function X.huawei(o)
    o = o or {}
    local id, secret = flows.device_id(), "secret-" .. athost.random(8, "hex")
    X.secret(secret)
    enroll(id, secret)
    local report = '{"services":[{"service_id":"s","properties":{"t":' .. math.random(99) .. '}}]}'
    local down = '{"paras":{"from":"' .. model .. '"}}'
    local received = X.subscriber("$oc/devices/" .. id .. "/sys/properties/report")
    local answered = X.subscriber("$oc/devices/" .. id .. "/sys/commands/response/#")
    local from = #broker_log()
    local run = X.flow("huawei", { device_id = id, secret = secret, host = "localhost",
      port = B.TLS_PORT, ca = B.CA, publish = report, listen = 40, messages = 1 }, o.sim)
    local cid = id .. "_0_0_"
    poll("the device's SUBACK", 30000, function()
      if run.done() then error("the flow ended: " .. (t.slurp(run.base .. ".err") or ""), 0) end
      local s = broker_log():sub(from + 1)
      return s:find("Sending SUBACK to " .. cid, 1, true), s:sub(-300)
    end)
    local topic = "$oc/devices/" .. id .. "/sys/commands/request_id=" .. uid()
    X.publish(topic, down)
    local r = run.wait()
    ok_run(r)
    t.eq(r.out, flows.shown(topic, down), "stdout")
    received(function(ps) return ps[1] == report end, "the report at mosquitto_sub")
    -- IoTDA's command answered on the response topic of its request id.
    local reply = answered(function(ps) return #ps > 0 end, "the command response")[1]
    t.match(reply, '"result_code":0', "the command response")
    t.match(r.err, "CA CN=athost test CA", "the CA was checked")
    return r
  end

  -- clouds/mqtt.lua with a fault that loses the link or the bearer after
  -- the first publish (o.fault, e.g. "drop=AT+QMTPUBEX"): the second
  -- publish arrives, the summary counts one reconnect.
  function X.recovery(o)
    local sim = { }
    local k, v = o.fault:match("^([^=]+)=(.*)$")
    sim[k] = v
    for kk, vv in pairs(o.sim or {}) do sim[kk] = vv end
    local r = X.mqtt { qos = o.qos or 1, up = "after the loss %d", tls = o.tls,
      arrives = "after the loss 2", sim = sim, connects = 2,
      args = { count = 2 } }
    t.match(r.err, "link lost %(", "the flow saw the loss")
    t.match(r.err, "published 2, received 1, reconnects 1", "summary")
    return r
  end

  ---------------------------------------------------------------------------
  -- Shared by the clouds with a provisioning service on the broker
  ---------------------------------------------------------------------------

  -- A 15-digit IMEI, the device's default serial / registration id.
  local function imei()
    return "86" .. string.format("%013d", math.random(0, 9999999999999))
  end
  X.imei = imei

  -- Starts scripts/sim/<script>.lua as a client of the broker (plain
  -- port, the fixture's user) with more k=v words; returns its base path
  -- once it printed "ready". It is stopped when the test ends.
  local function responder(script, words)
    local base = background(string.format("%s %s/scripts/sim/%s.lua broker_port=%d "
      .. "username=%s password=%s verbose=1 %s", BIN, ROOT, script, B.PORT, q(B.USER),
      q(B.PASS), words), script .. "-" .. uid())
    poll(script .. " ready", 15000, function()
      return (t.slurp(base .. ".out") or ""):find("ready\n", 1, true), t.slurp(base .. ".err")
    end)
    return base
  end

  -- A finished run that failed: exit 1 and one "athost:" line, returned.
  local function failed(r)
    t.eq(r.rc, 1, "exit code (stderr: " .. r.err:sub(-1500) .. ")")
    local lines = {}
    for l in r.err:gmatch("[^\n]+") do
      if l:find("^athost:") then lines[#lines + 1] = l end
    end
    t.eq(#lines, 1, "one error line in " .. r.err:sub(-1500))
    return lines[1]
  end
  X.failed = failed

  -- A run of clouds/<flow>.lua both ways: mosquitto_sub waits on `up`,
  -- mosquitto_pub sends `down` to `down_topic` once the broker logged the
  -- connects-th CONNACK to client id `cid` and a SUBACK after it; exit 0,
  -- stdout is that message, `payload` arrived. Returns the result.
  local function both_ways(name, args, sim, o)
    local received = X.subscriber(o.up)
    local from = #broker_log()
    local run = X.flow(name, args, sim)
    run.secrets = o.secrets
    subscribed(o.cid, from, o.connects or 1, run)
    X.publish(o.down_topic, o.down)
    local r = run.wait()
    ok_run(r)
    t.eq(r.out, flows.shown(o.down_topic, o.down), "stdout: the message from mosquitto_pub")
    received(function(ps)
      for _, p in ipairs(ps) do if p == o.payload then return true end end
    end, "the flow's message at mosquitto_sub")
    return r
  end

  -- A Lua pattern matching s literally.
  local function esc(s) return (s:gsub("%p", "%%%0")) end
  X.esc = esc

  local function mode_of(path)
    return io.popen("stat -c %a " .. q(path)):read("l")
  end

  ---------------------------------------------------------------------------
  -- AWS IoT Core: mutual TLS on the certificate listener, fleet provisioning
  ---------------------------------------------------------------------------

  local AWS_ENDPOINT = "a1b2c3example-ats.iot.eu-west-1.amazonaws.com"
  X.AWS_ENDPOINT = AWS_ENDPOINT
  local claim

  -- The claim certificate (signed by the test CA, as AWS signs the one a
  -- user creates for a template) and its key, made once.
  local function claim_files()
    if claim then return claim end
    local d = DIR .. "/aws"
    local out, ok = shell(string.format("( mkdir -p %s && cd %s && openssl req -new -newkey rsa:2048 "
      .. "-nodes -subj /CN=athost-claim -keyout claim.key -out claim.csr && openssl x509 -req "
      .. "-in claim.csr -CA %s -CAkey %s -days 5 -sha256 -out claim.pem && openssl genrsa "
      .. "-out other.key 2048 )", q(d), q(d), q(B.CA), q(B.DIR .. "/ca.key")))
    t.ok(ok, "openssl: " .. out)
    claim = { cert = d .. "/claim.pem", key = d .. "/claim.key", other_key = d .. "/other.key" }
    local k = t.slurp(claim.key)
    X.secret(k:sub(200, 260))
    X.secret(t.slurp(claim.other_key):sub(200, 260))
    return claim
  end

  -- The fleet provisioning service with templates AthostFleet (declares
  -- SerialNumber) and the serials of o.deny refused by its hook.
  local function aws_fleet(o)
    local state = DIR .. "/fleet-" .. uid() .. ".json"
    responder("aws-fleet", string.format("ca_cert=%s ca_key=%s templates=AthostFleet:SerialNumber "
      .. "thing_prefix=athost- state=%s workdir=%s %s", q(B.CA), q(B.DIR .. "/ca.key"), q(state),
      q(DIR), o.deny and "deny=" .. q(o.deny) or ""))
    return state
  end

  local function aws_args(c, extra)
    local a = { endpoint = AWS_ENDPOINT, ca = B.CA, claim_cert = c.cert, claim_key = c.key,
      template = "AthostFleet" }
    for k, v in pairs(extra or {}) do a[k] = v end
    return a
  end

  local function aws_sim(serial, o)
    local sim = { imei = serial, hosts = AWS_ENDPOINT .. "=127.0.0.1:" .. B.CERT_PORT }
    for k, v in pairs(o.sim or {}) do sim[k] = v end
    return sim
  end

  -- Base64 lines of a PEM key (without '/', which JSON may escape): what
  -- must never show.
  local function key_lines(pem)
    local out = {}
    for l in (pem or ""):gmatch("[^\n]+") do
      if #l >= 40 and not l:find("[/-]") then out[#out + 1] = l end
    end
    return out
  end

  -- clouds/aws.lua with a claim certificate, twice on one device: run 1
  -- provisions (create keys and certificate, RegisterThing) and stores the
  -- certificate and key, run 2 uses the stored ones. Each run connects as
  -- the thing with the new certificate (the broker logs its CN as the
  -- user) and messages cross both ways.
  function X.aws_twice(o)
    o = o or {}
    local c = claim_files()
    local fleet = aws_fleet {}
    local serial = imei()
    local thing = "athost-" .. serial
    local state = DIR .. "/state-" .. uid()
    local stored = state .. "/aws-AthostFleet-" .. serial .. ".json"
    local runs = {}
    for i = 1, 2 do
      local up = '{"temperature":' .. (20 + i) .. ',"run":' .. i .. "}"
      local down = '{"reboot":' .. i .. ',"n":"' .. uid() .. '"}'
      local r = both_ways("aws", aws_args(c, { state_dir = state, publish = up, listen = 40,
        messages = 1 }), aws_sim(serial, o), { up = "dt/" .. thing .. "/telemetry",
        cid = thing, down_topic = "cmd/" .. thing .. "/reboot", down = down, payload = up,
        secrets = function()
          local ok, v = pcall(athost.json.decode, t.slurp(stored) or "")
          return ok and type(v) == "table" and key_lines(v.private_key) or {}
        end })
      t.match(r.err, "done: thing " .. esc(thing) .. ", provisioned " .. tostring(i == 1), "run " .. i .. ": summary")
      runs[i] = r
    end
    -- What was stored: the thing, its certificate and key, for the owner only.
    local v = athost.json.decode(t.slurp(stored))
    t.eq(v.thing_name, thing, "the stored thing name")
    t.match(v.private_key, "^%-%-%-%-%-BEGIN RSA PRIVATE KEY%-%-%-%-%-\n", "the stored key, un-escaped")
    t.eq(mode_of(stored), "600", "the stored file's mode")
    -- The broker took the new certificate (its CN) for the thing's connection.
    local f = athost.json.decode(t.slurp(fleet))
    local cert = f.certificates[v.certificate_id]
    t.ok(cert, "the stored certificate is one the service issued")
    t.eq(cert.thing, thing, "issued to the thing")
    t.eq(cert.status, "ACTIVE", "activated by RegisterThing")
    local _, logins = broker_log():gsub(" as " .. esc(thing) .. " %(p2, c1, k300, u'"
      .. esc(cert.cn) .. "'%)", "")
    t.eq(logins, 2, "the broker logged the thing with the new certificate's CN, both runs")
    t.match(runs[1].err, "create keys and certificate\n", "run 1 created a certificate")
    t.match(runs[2].err, "using the certificate of " .. esc(thing) .. " stored in", "run 2 used the stored one")
    t.nomatch(runs[2].err, "create keys and certificate", "run 2 did not provision")
    return runs
  end

  -- clouds/aws.lua with a registered device's certificate and key (the
  -- broker's client certificate, CN athost-client, is the thing).
  function X.aws_device(o)
    o = o or {}
    local up, down = '{"state":"on","model":"' .. model .. '"}', '{"cmd":"' .. uid() .. '"}'
    return both_ways("aws", { endpoint = AWS_ENDPOINT, ca = B.CA, cert = B.CLIENT_CERT,
      key = B.CLIENT_KEY, thing = "athost-client", publish = up, listen = 40, messages = 1 },
      aws_sim(imei(), o), { up = "dt/athost-client/telemetry", cid = "athost-client",
      down_topic = "cmd/athost-client/x", down = down, payload = up })
  end

  -- clouds/aws.lua failing: o.kind = "wrong key" (the certificate with
  -- another key: the TLS handshake fails), "refused" (the template's hook
  -- refuses the serial), "too big" (a module that takes 2 KiB messages
  -- gets the 3.5 KiB CreateKeysAndCertificate reply). Returns the error line.
  function X.aws_fail(o)
    local c = claim_files()
    local serial = imei()
    local args, opts
    if o.kind == "wrong key" then
      args = { endpoint = AWS_ENDPOINT, ca = B.CA, cert = B.CLIENT_CERT, key = c.other_key,
        thing = "athost-client" }
    else
      aws_fleet { deny = o.kind == "refused" and serial or nil }
      args = aws_args(c, { state_dir = DIR .. "/state-" .. uid() })
      if o.kind == "too big" then
        local pdir = DIR .. "/profiles-" .. uid()
        os.execute("mkdir -p " .. q(pdir .. "/athost/profiles"))
        local f = assert(io.open(pdir .. "/athost/profiles/small_rx.lua", "w"))
        f:write(string.format('return require("athost.profile").derive(%q, { name = "%s-2k", '
          .. "limits = { message = 2048 } })\n", model, model))
        f:close()
        args.profile = "small_rx"
        opts = { path = pdir }
      end
    end
    local r = X.flow("aws", args, aws_sim(serial, o), opts).wait()
    return failed(r), r
  end

  ---------------------------------------------------------------------------
  -- Azure: DPS and IoT Hub on the TLS listener, SAS tokens in the password file
  ---------------------------------------------------------------------------

  local AZ_HUB = "athost-test.azure-devices.net"
  local AZ_DPS = "global.azure-devices-provisioning.net"
  X.AZ_HUB = AZ_HUB
  local sas = require("sas")

  local function enroll_user(user, password)
    local out, ok = shell(string.format("bash %s/tests/fixtures/broker.sh adduser %s %s %s",
      ROOT, B.DIR, q(user), q(password)))
    t.ok(ok, "broker.sh adduser: " .. out)
  end

  -- The hub accepts a token only until its expiry: an expired one is
  -- never enrolled (what the broker then holds for the device is a token
  -- valid an hour from now, as any other the hub would accept).
  local function enroll_hub(device_id, key, se)
    if se <= os.time() then se = os.time() + 3600 end
    enroll_user(sas.hub_entry(AZ_HUB, device_id, key, se))
  end
  X.enroll_hub = enroll_hub

  local function azure_sim(reg, o)
    local sim = { imei = reg, hosts = AZ_DPS .. "=127.0.0.1:" .. B.TLS_PORT .. ","
      .. AZ_HUB .. "=127.0.0.1:" .. B.TLS_PORT }
    for k, v in pairs(o.sim or {}) do sim[k] = v end
    return sim
  end

  local function azure_dps(o)
    local state = DIR .. "/dps-" .. uid() .. ".json"
    responder("azure-dps", string.format("hub=%s polls=1 retry_after=1 state=%s %s", AZ_HUB,
      q(state), o.deny and "deny=" .. q(o.deny) or ""))
    return state
  end

  -- clouds/azure.lua with an ID scope and a group key, twice on one
  -- device: run 1 connects to DPS, registers, polls until assigned and
  -- stores the assignment, run 2 uses it. Device-to-cloud and
  -- cloud-to-device messages each time; the tokens are pinned by now=.
  function X.azure_twice(o)
    o = o or {}
    local dps = azure_dps {}
    local reg = imei()
    local group = athost.base64(athost.random(64))
    local scope = "0ne" .. athost.random(4, "hex"):upper()
    local now = os.time()
    local se = now + 3600
    local key = sas.device_key(group, reg)
    local dps_user, dps_pass = sas.dps_entry(scope, reg, key, se)
    enroll_user(dps_user, dps_pass)
    local hub_user, hub_pass = sas.hub_entry(AZ_HUB, reg, key, se)
    enroll_user(hub_user, hub_pass)
    for _, s in ipairs({ group, key, dps_pass, hub_pass }) do X.secret(s) end
    local state = DIR .. "/state-" .. uid()
    local runs = {}
    for i = 1, 2 do
      local up = '{"temperature":' .. (20 + i) .. ',"run":' .. i .. "}"
      local down = "c2d " .. i .. " " .. uid()
      local c2d = "devices/" .. reg .. "/messages/devicebound/%24.to=%2Fdevices%2F" .. reg
        .. "%2Fmessages%2FdeviceBound&run=" .. i
      local r = both_ways("azure", { id_scope = scope, group_key = group, ca = B.CA,
        now = now, ttl = 3600, state_dir = state, publish = up, properties = "src=athost",
        listen = 40, messages = 1 }, azure_sim(reg, o), { up = "devices/" .. reg
        .. "/messages/events/#", cid = reg, connects = i == 1 and 2 or 1, down_topic = c2d,
        down = down, payload = up })
      t.match(r.err, "done: device " .. reg .. ", hub " .. esc(AZ_HUB) .. ", provisioned "
        .. tostring(i == 1), "run " .. i .. ": summary")
      runs[i] = r
    end
    t.match(runs[1].err, "assigning, asking again in 1 s", "run 1 polled the operation")
    t.match(runs[1].err, "assigned to " .. esc(AZ_HUB) .. " as " .. reg, "run 1 was assigned")
    t.match(runs[2].err, "using the assignment to " .. esc(AZ_HUB) .. " stored in", "run 2 used it")
    t.nomatch(runs[2].err, "connect to DPS", "run 2 did not provision")
    local stored = state .. "/azure-" .. scope .. "-" .. reg .. ".json"
    t.eq(mode_of(stored), "600", "the stored file's mode")
    local d = athost.json.decode(t.slurp(dps))
    t.eq(d.devices[reg].registrations, 1, "DPS registered the device once")
    -- The broker logged the DPS and the hub user names of the device.
    local log = broker_log()
    t.ok(log:find("u'" .. dps_user .. "'", 1, true), "the DPS connection's user name")
    t.ok(log:find("u'" .. hub_user .. "'", 1, true), "the hub connection's user name")
    return runs
  end

  -- clouds/azure.lua failing: o.kind = "wrong key" (a device key the hub
  -- does not know), "expired" (now= two hours back: the token expired an
  -- hour ago), "refused" (DPS refuses the registration id). Returns the
  -- error line.
  function X.azure_fail(o)
    local reg = imei()
    local key = athost.base64(athost.random(32))
    X.secret(key)
    local now = os.time()
    local args
    if o.kind == "refused" then
      azure_dps { deny = reg }
      local group = athost.base64(athost.random(64))
      X.secret(group)
      local scope = "0ne" .. athost.random(4, "hex"):upper()
      local dkey = sas.device_key(group, reg)
      enroll_user(sas.dps_entry(scope, reg, dkey, now + 3600))
      args = { id_scope = scope, group_key = group, now = now, ttl = 3600,
        state_dir = DIR .. "/state-" .. uid() }
    else
      enroll_hub(reg, key, now + 3600)
      args = { hub = AZ_HUB, device_id = reg, now = now, ttl = 3600,
        device_key = o.kind == "wrong key" and athost.base64(athost.random(32)) or key }
      if o.kind == "expired" then args.now = now - 7200 end
      X.secret(args.device_key)
    end
    args.ca = B.CA
    local r = X.flow("azure", args, azure_sim(reg, o)).wait()
    return failed(r), r
  end

  ---------------------------------------------------------------------------
  -- Tencent, OneNET, ThingsBoard (tests/lib/cloudside.lua: what each
  -- cloud accepts, written a second time; the local Tencent registration
  -- service and ThingsBoard provisioning responder are Lua on athost)
  ---------------------------------------------------------------------------

  local cloudside = require("cloudside")

  -- Makes the broker accept user/password, as the cloud accepts a token
  -- that has not expired: an expired one (et at or before now) is not
  -- enrolled, so the broker refuses it as the cloud would.
  local function enroll_token(user, password, et)
    if et and tonumber(et) <= os.time() then return false end
    enroll_user(user, password)
    return true
  end

  -- A flow run that must fail: exit 1, one error line naming the step
  -- and what the cloud said.
  -- said: a pattern, or a list of them of which one must match (how a
  -- module words the broker's refusal differs).
  function X.fails(r, step, said)
    local line = failed(r)
    t.match(line, 'step "' .. step .. '" failed', "the failing step")
    local any = false
    for _, p in ipairs(type(said) == "table" and said or { said }) do
      any = any or line:find(p) ~= nil
    end
    t.ok(any, "what the cloud said: " .. line .. " (expected one of: "
      .. (type(said) == "table" and table.concat(said, " | ") or said) .. ")")
  end
  -- The Air720 reports a refused CONNECT as +CME ERROR: 767, the A7670
  -- with the CONNACK's reason.
  local REFUSED = { "the broker refused", "not authori[sz]ed" }

  -- A local service started once for the whole matrix: its port, from
  -- its "listening on" line.
  local services = {}
  local function service(name, cmd, pattern)
    if services[name] then return services[name] end
    local base = lasting.background(cmd, name)
    local port = poll(name .. " listening", 10000, function()
      local v = (t.slurp(base .. ".out") or ""):match(pattern)
      return v and (tonumber(v) or v), t.slurp(base .. ".err")
    end)
    services[name] = { port = port, base = base,
      out = function() return t.slurp(base .. ".out") or "" end }
    return services[name]
  end

  local TC_PID, TC_PS = "TCM" .. athost.random(4, "hex"):upper(), "Tps" .. athost.random(12, "hex")
  local TC_REG = "ap-guangzhou.gateway.tencentdevices.com"
  X.secret(TC_PS)
  local tc_devices = {}
  local function tencent_register()
    -- Devices created in the console before the service starts: each
    -- gets the PSK named here when it registers.
    local list = {}
    for _, d in ipairs(tc_devices) do list[#list + 1] = TC_PID .. ":" .. d.dn .. ":" .. d.psk end
    return service("tencent-register", string.format("%s %s/scripts/sim/tencent-register.lua "
      .. "port=0 products=%s devices=%s tls_cert=%s tls_key=%s", BIN, ROOT, q(TC_PID .. ":" .. TC_PS),
      q(table.concat(list, ",")), q(B.DIR .. "/server.pem"), q(B.DIR .. "/server.key")),
      "listening on https://127%.0%.0%.1:(%d+)")
  end

  -- A Tencent device: its name, PSK and the options the flow connects with.
  function X.tencent_device(o)
    o = o or {}
    local d = { dn = o.dn or imei(), psk = athost.base64(athost.random(16)),
      connid = athost.random(3, "hex"):sub(1, 5), clock = o.clock or os.time(),
      expiry = o.expiry or 3600, sdkappid = o.sdkappid or "12010126",
      method = o.sign_method or "hmacsha256" }
    X.secret(d.psk)
    tc_devices[#tc_devices + 1] = d
    local user, password = cloudside.tencent(TC_PID, d.dn, d.psk, d.sdkappid, d.connid,
      d.clock + d.expiry, d.method)
    X.secret(password)
    d.enrolled = enroll_token(user, password, d.clock + d.expiry)
    return d
  end

  local function tencent_sim(d, sim)
    local o = { imei = d.dn, hosts = TC_PID .. ".iotcloud.tencentdevices.com:1883=127.0.0.1:" .. B.PORT }
    if services["tencent-register"] then
      o.hosts = o.hosts .. "," .. TC_REG .. "=127.0.0.1:" .. services["tencent-register"].port
    end
    for k, v in pairs(sim or {}) do o[k] = v end
    return o
  end

  -- clouds/tencent.lua once: the flow reports and listens; a `control`
  -- from mosquitto_pub is answered with control_reply; both the report
  -- and the reply arrive at mosquitto_sub in Tencent's envelope.
  -- o: device (X.tencent_device), args (more flow parameters), sim.
  function X.tencent(o)
    local d = o.device
    local up, down = "$thing/up/property/" .. TC_PID .. "/" .. d.dn,
      "$thing/down/property/" .. TC_PID .. "/" .. d.dn
    local args = { product_id = TC_PID, connid = d.connid, clock = d.clock, expiry = d.expiry,
      sdkappid = d.sdkappid, sign_method = d.method, report = '{"power_switch":1}',
      listen = 40, messages = 1 }
    for k, v in pairs(o.args or {}) do args[k] = v end
    local received = X.subscriber(up)
    local from = #broker_log()
    local run = X.flow("tencent", args, tencent_sim(d, o.sim))
    if o.fails then return run.wait() end
    subscribed(TC_PID .. d.dn, from, 1, run)
    local token = "c-" .. uid()
    local control = '{"method":"control","clientToken":"' .. token .. '","params":{"power_switch":0}}'
    X.publish(down, control)
    local r = run.wait()
    ok_run(r)
    t.eq(r.out, flows.shown(down, control), "stdout: the control from mosquitto_pub")
    local got = received(function(ps) return #ps >= 2 end, "report and control_reply at mosquitto_sub")
    local report = athost.json.decode(got[1])
    t.eq(report.method, "report", "report method")
    t.match(report.clientToken, "^athost%-%x+$", "report clientToken")
    t.eq(math.tointeger(report.params.power_switch), 1, "report params")
    t.eq(got[2], '{"method":"control_reply","clientToken":"' .. token .. '","code":0,"status":"ok"}',
      "control_reply with the control's clientToken")
    t.match(r.err, "replied 1", "summary")
    return r
  end

  -- clouds/tencent.lua with the product secret, twice on one device: run
  -- 1 registers over the module's HTTPS (the local service answers with
  -- the PSK, AES-encrypted) and stores the PSK; run 2 uses the stored one.
  function X.tencent_twice(o)
    o = o or {}
    local d = X.tencent_device()
    local reg = tencent_register()
    local state = DIR .. "/state-" .. uid()
    local runs = {}
    for i = 1, 2 do
      runs[i] = X.tencent { device = d, sim = o.sim, args = { product_secret = TC_PS,
        state_dir = state } }
      t.match(runs[i].err, "registered " .. tostring(i == 1), "run " .. i .. ": summary")
    end
    t.match(runs[2].err, "using the device PSK stored in", "run 2 used the stored PSK")
    local _, n = reg.out():gsub("POST /register/dev %-> 0\n", "")
    t.ok(n >= 1, "the service registered the device")
    t.nomatch(runs[2].err, '\n%[%s*[%d.]+%] register\n', "run 2 did not register")
    local st = athost.stat(state .. "/tencent-" .. TC_PID .. "-" .. d.dn .. ".json")
    t.ok(st and st.mode == 384, "the PSK file is 0600")
    return runs
  end

  -- Tencent failures: a wrong PSK, an expired token, a refused registration.
  function X.tencent_failures(o)
    o = o or {}
    local d = X.tencent_device()
    local r = X.tencent { device = d, sim = o.sim, fails = true,
      args = { device_psk = athost.base64(athost.random(16)) } }
    X.fails(r, "connect", REFUSED)
    local old = X.tencent_device { clock = os.time() - 7200, expiry = 3600 }
    t.eq(old.enrolled, false, "the expired token is not accepted by the cloud")
    r = X.tencent { device = old, sim = o.sim, fails = true, args = { device_psk = old.psk } }
    X.fails(r, "connect", REFUSED)
    tencent_register()
    r = X.tencent { device = X.tencent_device(), sim = o.sim, fails = true,
      args = { product_secret = "Wrong" .. TC_PS, state_dir = DIR .. "/state-" .. uid() } }
    X.fails(r, "register", "registration refused: code 1003 signature check failed")
  end

  -- clouds/onenet.lua: a OneJSON property post and a set answered with
  -- set_reply, both at mosquitto_sub. o: product (product-level key),
  -- clock/expiry, key (what the flow is given), fails, sim.
  local ON_PID = tostring(math.random(100000000, 999999999))
  function X.onenet(o)
    o = o or {}
    local dn = imei()
    local key = athost.base64(athost.random(32))
    X.secret(key)
    local clock, expiry = o.clock or os.time(), o.expiry or 3600
    local user, token = cloudside.onenet(ON_PID, dn, key, clock + expiry, o.method or "sha256",
      o.product)
    X.secret(token)
    enroll_token(user, token, clock + expiry)
    local base = "$sys/" .. ON_PID .. "/" .. dn .. "/thing/property/"
    local args = { product_id = ON_PID, device_name = dn, clock = clock, expiry = expiry,
      method = o.method, post = '{"Power":"on"}', listen = 40, messages = 1 }
    args[o.product and "product_key" or "device_key"] = o.key or key
    local sim = { hosts = "mqtts.heclouds.com:1883=127.0.0.1:" .. B.PORT }
    for k, v in pairs(o.sim or {}) do sim[k] = v end
    local received = X.subscriber(base .. "#")
    local from = #broker_log()
    local run = X.flow("onenet", args, sim)
    if o.fails then return run.wait() end
    subscribed(dn, from, 1, run)
    local id = uid()
    local set = '{"id":"' .. id .. '","version":"1.0","params":{"Power":"off"}}'
    X.publish(base .. "set", set)
    local r = run.wait()
    ok_run(r)
    t.eq(r.out, flows.shown(base .. "set", set), "stdout: the set from mosquitto_pub")
    local reply = '{"id":"' .. id .. '","code":200,"msg":"success"}'
    local got = received(function(ps) return #ps >= 3 end, "post, set and set_reply at mosquitto_sub")
    local post
    for _, p in ipairs(got) do
      if p ~= set and p ~= reply then post = athost.json.decode(p) end
    end
    t.eq(post.version, "1.0", "post version")
    t.match(post.id, "^%d+$", "post id")
    t.eq(post.params.Power.value, "on", "post params in OneJSON")
    t.ok(got[1] == set or got[2] == set, "the set itself")
    t.eq(got[3], reply, "set_reply with the set's id, after the set")
    return r
  end

  -- OneNET failures: a wrong key, an expired token.
  function X.onenet_failures(o)
    o = o or {}
    local r = X.onenet { key = athost.base64(athost.random(32)), fails = true, sim = o.sim }
    X.fails(r, "connect", REFUSED)
    r = X.onenet { clock = os.time() - 7200, expiry = 3600, fails = true, sim = o.sim }
    X.fails(r, "connect", REFUSED)
  end

  -- ThingsBoard: its own broker (cloudside.tb_broker) with one access
  -- token issued in advance, and the provisioning responder.
  local TB_TOKEN = "Tb" .. athost.random(9, "hex")
  local TB_KEY, TB_SECRET = "pk-" .. uid(), "ps-" .. athost.random(10, "hex")
  X.secret(TB_TOKEN)
  X.secret(TB_SECRET)
  X.tb_token = TB_TOKEN
  local tb
  local function tb_cloud()
    if tb then return tb end
    tb = cloudside.tb_broker(DIR .. "/tb", lasting, { TB_TOKEN })
    tb.provision = service("tb-provision", string.format("%s %s/scripts/sim/thingsboard-provision.lua "
      .. "port=%d profiles=%s acl=%s broker_pid=%d", BIN, ROOT, tb.port, q(TB_KEY .. ":" .. TB_SECRET),
      q(tb.acl), tb.pid), "(subscribed) to /provision/request")
    return tb
  end
  -- Tokens the responder issued: read from its ACL file.
  local function tb_issued()
    local out = {}
    for tok in ((tb and t.slurp(tb.acl)) or ""):gmatch("user (%w+)\n") do
      if tok ~= "provision" then out[#out + 1] = tok end
    end
    return out
  end

  -- clouds/thingsboard.lua once: telemetry at mosquitto_sub, an RPC
  -- request from mosquitto_pub answered on rpc/response/<id>.
  -- o: args, connects (CONNACKs to wait for: 2 when provisioning), fails, sim.
  function X.thingsboard(o)
    local c = tb_cloud()
    local dn = o.dn or imei()
    local args = { host = "tb.example", device_name = dn, telemetry = '{"temperature":25}',
      listen = 40, messages = 1 }
    for k, v in pairs(o.args or {}) do args[k] = v end
    local sim = { hosts = "tb.example:1883=127.0.0.1:" .. c.port }
    for k, v in pairs(o.sim or {}) do sim[k] = v end
    local rid = tostring(math.random(1, 99999))
    local telemetry = X.subscriber("v1/devices/me/telemetry", c)
    local response = X.subscriber("v1/devices/me/rpc/response/" .. rid, c)
    local from = #c.log()
    local run = X.flow("thingsboard", args, sim)
    run.secrets = tb_issued()
    if o.fails then
      local r = run.wait()
      return r
    end
    subscribed(dn, from, o.connects or 1, run, c.log)
    local rpc = '{"method":"setGpio","params":{"pin":7,"value":1}}'
    X.publish("v1/devices/me/rpc/request/" .. rid, rpc, c)
    run.secrets = tb_issued()
    local r = run.wait()
    ok_run(r)
    t.eq(r.out, flows.shown("v1/devices/me/rpc/request/" .. rid, rpc), "stdout: the RPC request")
    telemetry(function(ps) return ps[1] == '{"temperature":25}' end, "telemetry at mosquitto_sub")
    response(function(ps) return ps[1] == '{"result":"ok"}' end, "the RPC response")
    t.match(r.err, "answered 1", "summary")
    return r
  end

  -- Provisioning once, the stored token on the second run.
  function X.thingsboard_twice(o)
    o = o or {}
    local dn, state = imei(), DIR .. "/state-" .. uid()
    local runs = {}
    for i = 1, 2 do
      runs[i] = X.thingsboard { dn = dn, sim = o.sim, connects = i == 1 and 2 or 1,
        args = { provision_key = TB_KEY, provision_secret = TB_SECRET, state_dir = state } }
      t.match(runs[i].err, "provisioned " .. tostring(i == 1), "run " .. i .. ": summary")
    end
    t.match(runs[2].err, "using the access token stored in", "run 2 used the stored token")
    local _, n = tb.provision.out():gsub("provision request %-> SUCCESS\n", "")
    t.ok(n >= 1, "the responder provisioned the device")
    local st = athost.stat(state .. "/thingsboard-tb_example-" .. dn .. ".json")
    t.ok(st and st.mode == 384, "the token file is 0600")
    return runs
  end

  -- ThingsBoard failure: a refused provisioning. (An unknown access
  -- token is not tested: ThingsBoard refuses it at CONNECT, but mosquitto
  -- cannot check a user name that comes without a password, and its ACL
  -- only drops the messages.)
  function X.thingsboard_failures(o)
    o = o or {}
    local r = X.thingsboard { fails = true, sim = o.sim, args = { provision_key = TB_KEY,
      provision_secret = "wrong-" .. uid(), state_dir = DIR .. "/state-" .. uid() } }
    X.fails(r, "provision", "provisioning refused: status NOT_FOUND: Provision data was not found!")
  end

  X.test = proc.test
  function X.run()
    local ok, err = pcall(t.run)
    proc.stop_running()
    lasting.stop_running()
    require("broker").stop(DIR .. "/broker")
    os.execute("rm -rf " .. q(DIR))
    if not ok then error(err, 0) end
  end
  return X
end

return M
