-- scripts/probe.lua against each virtual modem: the profile it detects and
-- the identification it prints (the "+CGMx: " prefix and quotes removed).
-- A model whose virtual modem is not in athost.sim.models yet is left out;
-- one whose profile is not in lib/athost/profiles/ yet has its profile
-- line left unchecked (said in the output), the rest checked.
--
--   ATHOST_PATH=tests/lib:lib ./athost tests/lua/probe_test.lua
local t = require("t")
local sim = require("athost.sim")

local BIN = os.getenv("ATHOST_BIN") or "./athost"
local here = ((arg and arg[0]) or "tests/lua/x"):match("^(.*)/[^/]*$") or "."
local ROOT = here .. "/../.."

-- What each module says (DIALECTS.md 1.11, 2.8, 3; PROTOCOLS.md), as
-- Lua patterns of probe's lines.
local MODELS = {
  { "air720", manufacturer = "^AirM2M$", model = "^Air720$",
    revision = "^AirM2M_720_V%d+_LTE_AT$" },
  { "me3630", manufacturer = "^GOSUNCN$", model = "^ME3630$", revision = "ME3630" },
  { "air780e", manufacturer = "^AirM2M$", model = "^Air780EP$",
    revision = "^AirM2M_780EP_V%d+_LTE_AT$" },
  { "air780e", query = "ident=bare&variant=Air780E", manufacturer = "^AirM2M$",
    model = "^Air780E$", revision = "^AirM2M_780E_V%d+_LTE_AT$" },
  { "ec200u", manufacturer = "^Quectel$", model = "^EC200U", revision = "EC200U" },
  { "a7670", manufacturer = "^SIMCOM INCORPORATED$", model = "^A7670" },
}

-- probe's "key  value" lines of `athost scripts/probe.lua -p sim:SPEC`.
local function probe(spec)
  local f = assert(io.popen(string.format("ATHOST_PATH=%s/lib %s %s/scripts/probe.lua -p '%s' 2>&1",
    ROOT, BIN, ROOT, spec)))
  local out = f:read("a")
  local ok = f:close()
  local kv = {}
  for k, v in out:gmatch("\n?([%w_]+) +([^\n]*)") do kv[k] = kv[k] or v end
  return kv, out, ok
end

local function has_profile(name)
  return package.searchpath("athost.profiles." .. name, package.path) ~= nil
end

for _, c in ipairs(MODELS) do
  local name = c[1]
  if not sim.models[name] then
    print("pending: no virtual " .. name .. " (sim:" .. name .. ") yet")
  else
    local spec = "sim:" .. name .. (c.query and "?" .. c.query or "")
    t.test("probe -p " .. spec, function()
      local kv, out, ok = probe(spec)
      t.ok(ok, "probe's exit status:\n" .. out)
      for _, k in ipairs({ "manufacturer", "model", "revision" }) do
        if c[k] then t.match(kv[k] or "", c[k], k .. " in\n" .. out) end
        t.nomatch(kv[k] or "", '^%+CGM%u: ', k .. ": no +CGMx: prefix left")
        t.nomatch(kv[k] or "", '"', k .. ": no quotes left")
      end
      if has_profile(name) then
        t.eq(kv.profile, name, "the detected profile in\n" .. out)
      else
        print("pending: no profile " .. name .. " yet; probe says profile " .. tostring(kv.profile))
      end
    end)
  end
end

t.run()
