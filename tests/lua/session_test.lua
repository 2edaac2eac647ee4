-- The one session interface (athost.session) and what it stands on: the
-- flows in clouds/ name no module and no command family; detection picks
-- each profile from the identification strings DIALECTS.md cites (with
-- +CGMx: prefixes and quotes); an unknown module names the profiles; a
-- missing capability is one clear message; every profile names a command
-- family that implements the interface.
local t = require("t")
local athost = require("athost")
local modem = require("athost.modem")
local session = require("athost.session")

local here = ((arg and arg[0]) or "tests/lua/x"):match("^(.*)/[^/]*$") or "."
local ROOT = here .. "/../.."

-- Every word that would tie a flow to a module or a command family.
local function forbidden()
  local words = { "AT+", "dialect", "athost.mqttat", "athost.cloudat", "athost.httpat",
    "athost.upload", "athost.profiles" }
  for _, name in ipairs(modem.known) do
    local p = modem.profile(name)
    words[#words + 1] = p.name
    words[#words + 1] = p.vendor
    words[#words + 1] = p.dialect
    for _, w in ipairs(p.detect) do words[#words + 1] = w end
  end
  for _, w in ipairs({ "Air7", "ME36", "Quectel", "SIMCom", "Gosuncn", "Luat",
    "EC200", "EC2", "BG9", "A76", "SIM7", "QMT", "CMQTT", "SSLCFG", "HTTPINIT" }) do
    words[#words + 1] = w
  end
  return words
end

t.test("the flows in clouds/ name no module and no command family", function()
  local f = assert(io.popen("ls " .. ROOT .. "/clouds/*.lua"))
  local n = 0
  for path in f:lines() do
    n = n + 1
    local text = t.slurp(path):lower()
    for _, w in ipairs(forbidden()) do
      local at = text:find(w:lower(), 1, true)
      if at then
        local line = select(2, text:sub(1, at):gsub("\n", "")) + 1
        error(string.format("%s:%d names %q", path, line, w), 0)
      end
    end
  end
  f:close()
  t.ok(n >= 3, "the flows were read (" .. n .. ")")
end)

t.test("every profile names a command family that implements the interface", function()
  for _, name in ipairs(modem.known) do
    local p = modem.profile(name)
    t.eq(p.name, name, "profile name")
    t.ok(p.dialect, name .. ": dialect")
    local d = session.dialect({ profile = p })
    for cap, fn in pairs({ mqtt = "mqtt", aliyun_mqtt = "mqtt", http = "http",
      files = "upload", tls = "tls" }) do
      if session.can({ profile = p }, cap) then
        t.eq(type(d[fn]), "function", name .. " can " .. cap .. ": " .. p.dialect .. "." .. fn)
      end
    end
  end
end)

-- A fake module answering identification with these lines (nil: ERROR).
local function identify(answers, profile)
  local mp, path = assert(athost.pty { name = "fakeid" })
  local task = athost.spawn(function()
    while true do
      local line = mp:readline({ timeout = 3000 })
      if not line then return end
      local a = answers[line]
      if a then
        assert(mp:send("\r\n" .. table.concat(a, "\r\n") .. "\r\n\r\nOK\r\n"))
      elseif line == "AT" or line == "ATE0" then
        assert(mp:send("\r\nOK\r\n"))
      else
        assert(mp:send("\r\nERROR\r\n"))
      end
    end
  end)
  local p = assert(athost.open(path, { name = "dut", timeout = 3000 }))
  local m = modem.new(p, { gap = "0", profile = profile })
  local ok, err = pcall(m.identify, m)
  p:close()
  mp:close()
  task:join()
  return ok and m.profile.name, ok and m or err
end

-- The strings DIALECTS.md cites for each module (§1.11, §2.8, §3) and
-- PROTOCOLS.md for the Air720 and the ME3630.
local CASES = {
  { "air720", { ["AT+CGMI"] = { "AirM2M" }, ["AT+CGMR"] = { "AirM2M_720_V461_LTE_AT" },
    ["ATI"] = { "AirM2M", "Air720", "Revision:AirM2M_720_V461_LTE_AT" } } },
  { "air780e", { ["AT+CGMI"] = { '+CGMI: "AirM2M"' }, ["AT+CGMM"] = { '+CGMM: "Air780EP"' },
    ["AT+CGMR"] = { '+CGMR: "AirM2M_780EP_V1007_LTE_AT"' }, ["ATI"] = { "AirM2M_780EP_V1007_LTE_AT" } } },
  { "me3630", { ["AT+CGMI"] = { "GOSUNCN" }, ["AT+CGMM"] = { "ME3630" },
    ["AT+CGMR"] = { "AL_ME3630C1CV1.0B01" } } },
  { "ec200u", { ["AT+CGMI"] = { "Quectel" }, ["AT+CGMM"] = { "EC200U" },
    ["AT+CGMR"] = { "Revision: EC200UCNAAR03A11M08" },
    ["ATI"] = { "Quectel", "EC200U", "Revision: EC200UCNAAR01A04M08" } } },
  { "a7670", { ["AT+CGMI"] = { "SIMCOM INCORPORATED" }, ["AT+CGMM"] = { "A7670G-LLSE" },
    ["ATI"] = { "Manufacturer: INCORPORATED", "Model: A7670G-LLSE",
      "Revision: A124B01A7670M7", "A7670M7_B01V01_240722" } } },
  -- A76xx firmware that says only "INCORPORATED" (DIALECTS.md 2.8).
  { "a7670", { ["ATI"] = { "Manufacturer: INCORPORATED", "Model: A7670E-LNXY-UBL",
    "Revision: A124B01A7670M7" } } },
}

for i, c in ipairs(CASES) do
  t.test("detection: " .. c[1] .. " from its identification strings (" .. i .. ")", function()
    local name, m = identify(c[2])
    t.eq(name, c[1], "profile (" .. tostring(m) .. ")")
  end)
end

t.test("detection: +CGMx: prefixes and quotes are stripped from what is kept", function()
  local _, m = identify(CASES[2][2])
  t.eq(m.info.cgmi, "AirM2M", "AT+CGMI")
  t.eq(m.info.cgmm, "Air780EP", "AT+CGMM")
  t.eq(m.info.cgmr, "AirM2M_780EP_V1007_LTE_AT", "AT+CGMR")
end)

t.test("an unknown module: one message with what it said and the profiles", function()
  local name, err = identify({ ["AT+CGMI"] = { "Acme Wireless" }, ["AT+CGMM"] = { "X100" } })
  t.eq(name, false, "no profile")
  t.match(err, '^unknown module %(AT%+CGMI/CGMM/CGMR/ATI said "Acme Wireless X100"%); '
    .. "give profile=NAME, one of: ", "message")
  for _, k in ipairs(modem.known) do t.match(err, k, "lists " .. k) end
end)

t.test("profile= overrides detection; an unknown name lists the known ones", function()
  local name = identify(CASES[1][2], "air780e")
  t.eq(name, "air780e", "profile=air780e on Air720 strings")
  local ok, err = pcall(modem.profile, "ec9999")
  t.eq(ok, false, "unknown profile raises")
  t.match(err, 'unknown module profile "ec9999" %(known: ', "message")
end)

t.test("a capability the profile lacks: one message naming model, capability and what it can", function()
  local m = { profile = modem.profile("me3630") }
  local ok, err = pcall(session.http, m, "POST", "https://x/", "a=1", "text/plain")
  t.eq(ok, false, "raises")
  t.eq(err, "the me3630 has no HTTP requests (its profile can: aliyun_mqtt)", "message")
  ok, err = pcall(session.mqtt, m, { host = "broker", port = 1883 })
  t.eq(err, "the me3630 has no MQTT to a broker of your choice (its profile can: aliyun_mqtt)",
    "mqtt to a broker")
  ok, err = pcall(session.tls, m, { level = 1, ca = "x" })
  t.match(err, "^the me3630 has no TLS", "tls")
end)

t.test("a derived profile keeps the base's fields and changes only its own", function()
  local a, b = modem.profile("air720"), modem.profile("air780e")
  t.eq(b.mqtt.connect, a.mqtt.connect, "MQTT commands shared")
  t.eq(b.http.read, a.http.read, "HTTP read shared")
  t.deepeq(b.http.params, { 'AT+HTTPPARA="CID",1' }, "its own HTTP parameter")
  t.eq(a.http.params, nil, "the base is unchanged")
  t.eq(b.min_version, nil, "a field removed")
  t.eq(a.min_version, 461, "...only in the derived one")
end)

t.run()
