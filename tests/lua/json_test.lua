-- `athost --json` prints valid JSON whatever bytes a script or a module
-- produced: a byte that is not part of valid UTF-8 is written \u00XX (the
-- character of the byte's value), valid UTF-8 passes unchanged. A NUL byte
-- cuts nothing: a log line keeps it (\u0000 in JSON, \x00 on stderr), an
-- error message (a C string) has it written \x00. Runs the athost command
-- as a child process, as a user does.
local t = require("t")
local athost = require("athost")
local cjson = athost.json

local cli = require("cli")
local BIN, in_tmpdir, write, athost_cmd = cli.BIN, cli.in_tmpdir, cli.write, cli.athost

-- Every line of out must be valid UTF-8 (Lua's strict utf8.len: no
-- overlong form, surrogate or code point above U+10FFFF) and a JSON object;
-- cjson alone would accept raw invalid bytes inside strings.
local function events(out)
  local r = {}
  for l in out:gmatch("[^\n]+") do
    t.ok(utf8.len(l) ~= nil, "not valid UTF-8: " .. l:gsub("[\128-\255]", function(c)
      return string.format("\\x%02x", c:byte())
    end))
    local ok, obj = pcall(cjson.decode, l)
    t.ok(ok and type(obj) == "table", "not a JSON object: " .. l)
    r[#r + 1] = obj
  end
  return r
end

local function find(evs, kind, pred)
  for _, e in ipairs(evs) do
    if e.event == kind and (pred == nil or pred(e)) then return e end
  end
end

-- Scripts get their bytes from a Lua string literal in decimal escapes, so
-- the script file itself holds only ASCII.
local function lit(s)
  return '"' .. s:gsub("[^%w ]", function(c)
    return string.format("\\%03d", c:byte())
  end) .. '"'
end

-- Each case: the bytes, and what a JSON reader gets back. \u{XX} in a Lua
-- literal is the UTF-8 of U+00XX: what \u00XX decodes to.
local CASES = {
  { "two invalid bytes", "a\xff\xfeb", "a\u{ff}\u{fe}b" },
  { "a lone continuation byte", "x\x80y", "x\u{80}y" },
  { "an overlong encoding of /", "\xc0\xaf", "\u{c0}\u{af}" },
  { "an overlong 3-byte form", "\xe0\x80\xaf.", "\u{e0}\u{80}\u{af}." },
  { "a truncated 3-byte sequence", "\xe4\xb8A", "\u{e4}\u{b8}A" },
  { "a truncated sequence at the end", "end\xe4\xb8", "end\u{e4}\u{b8}" },
  { "a surrogate", "\xed\xa0\x80", "\u{ed}\u{a0}\u{80}" },
  { "above U+10FFFF", "\xf4\x90\x80\x80", "\u{f4}\u{90}\u{80}\u{80}" },
  { "Chinese text and an emoji", "信号 中文 😀", "信号 中文 😀" },
  { "the largest code point", "\u{10FFFF}é", "\u{10FFFF}é" },
  { "valid next to invalid", "中\xff文", "中\u{ff}文" },
}

t.test("--json: a log line, an emitted event and an error with invalid UTF-8 are valid JSON", function()
  in_tmpdir(function(dir)
    for i, c in ipairs(CASES) do
      local what, bytes, want = c[1], c[2], c[3]
      write(dir .. "/u" .. i .. ".lua", string.format([[
local athost = require("athost")
local s = %s
athost.step("step " .. s)
athost.log("log", s)
athost.emit("e", { v = s, [s] = "key", list = { s } })
error("failed: " .. s, 0)
]], lit(bytes)))
      local code, out = athost_cmd(dir, "--json " .. dir .. "/u" .. i .. ".lua")
      t.eq(code, 1, what .. ": exit code")
      local evs = events(out)
      local log = find(evs, "log")
      t.eq(log and log.text, "log " .. want, what .. ": log text")
      local data = find(evs, "data")
      t.deepeq(data and data.data, { v = want, [want] = "key", list = { want } },
        what .. ": emitted data")
      local start = find(evs, "step", function(e) return e.state == "start" end)
      t.eq(start and start.name, "step " .. want, what .. ": step name")
      local stop = find(evs, "step", function(e) return e.state == "end" end)
      t.eq(stop and stop.error, "failed: " .. want, what .. ": step end error")
      local res = find(evs, "result")
      t.eq(res and res.error, 'step "step ' .. want .. '" failed: failed: ' .. want,
        what .. ": the result's error")
    end
  end)
end)

t.test("--json: a URC line with invalid bytes is valid JSON", function()
  in_tmpdir(function(dir)
    write(dir .. "/urc.lua", [[
local athost = require("athost")
local m, path = assert(athost.pty { name = "modem" })
local p = assert(athost.open(path, { name = "dut" }))
local got = false
p:on("^%+MSUB:", function() got = true end)
assert(m:send("\r\n+MSUB: \255\254\192\175\228\184 中文\r\n"))
local deadline = athost.now() + 5000
while not got and athost.now() < deadline do athost.sleep(10) end
assert(got, "the URC handler ran")
]])
    local code, out, err = athost_cmd(dir, "--json " .. dir .. "/urc.lua")
    t.eq(code, 0, "exit code (" .. err .. ")")
    local urc = find(events(out), "urc")
    t.eq(urc and urc.text, "+MSUB: \u{ff}\u{fe}\u{c0}\u{af}\u{e4}\u{b8} 中文", "the URC text")
  end)
end)

t.test("a NUL in athost.log text cuts nothing: \\u0000 in --json, \\x00 on stderr", function()
  in_tmpdir(function(dir)
    write(dir .. "/n.lua", [[
local athost = require("athost")
athost.log("before\0after", "and\0more")
athost.emit("a\0b", { v = "x\0y" })
]])
    local code, out = athost_cmd(dir, "--json " .. dir .. "/n.lua")
    t.eq(code, 0, "exit code")
    local evs = events(out)
    t.eq(find(evs, "log").text, "before\0after and\0more", "the log text, whole")
    t.eq(find(evs, "data").data.v, "x\0y", "emitted data, whole")
    t.eq(find(evs, "data").name, "a\\x00b", "the event's name, escaped")
    local err
    code, _, err = athost_cmd(dir, dir .. "/n.lua")
    t.eq(code, 0, "exit code without --json")
    t.match(err, "before\\x00after and\\x00more\n", "the printed log, escaped")
  end)
end)

t.test("a NUL in an error message cuts nothing: written \\x00", function()
  in_tmpdir(function(dir)
    write(dir .. "/e.lua", [[
local athost = require("athost")
athost.step("attach")
error("no network\0after the NUL", 0)
]])
    write(dir .. "/r.lua", [[
return false, "refused\0by the module"
]])
    local code, out = athost_cmd(dir, "--json " .. dir .. "/e.lua")
    t.eq(code, 1, "exit code")
    local evs = events(out)
    local stop = find(evs, "step", function(e) return e.state == "end" end)
    t.eq(stop.error, "no network\\x00after the NUL", "the step end's error")
    t.eq(find(evs, "result").error, 'step "attach" failed: no network\\x00after the NUL',
      "the result's error")
    local err
    code, _, err = athost_cmd(dir, dir .. "/e.lua")
    t.eq(code, 1, "exit code without --json")
    t.match(err, 'athost: step "attach" failed: no network\\x00after the NUL\n',
      "the final error line")
    code, out = athost_cmd(dir, "--json " .. dir .. "/r.lua")
    t.eq(code, 1, "a script returning false")
    t.eq(find(events(out), "result").error, "refused\\x00by the module",
      "the reason it returned")
    code, _, err = athost_cmd(dir, dir .. "/r.lua")
    t.match(err, "athost: refused\\x00by the module\n", "its final error line")
  end)
end)

t.test("secrets stay masked next to invalid bytes and NULs", function()
  in_tmpdir(function(dir)
    local secret = "Pr0dS3cretVWII9f"
    write(dir .. "/s.lua", [[
local athost = require("athost")
local args = ...
local s = args.product_secret
athost.log("\255" .. s .. "\0" .. s .. "\254")
athost.emit("auth", { token = "\255\254plain", v = "\228\184" .. s })
error("rejected\0" .. s .. "\255", 0)
]])
    local code, out, err = athost_cmd(dir, "--json " .. dir .. "/s.lua product_secret=" .. secret)
    t.eq(code, 1, "exit code")
    t.nomatch(out, secret, "--json output")
    t.nomatch(out, "plain", "a JSON field named like a secret")
    local evs = events(out)
    t.eq(find(evs, "log").text, "\u{ff}***\0***\u{fe}", "the log")
    t.deepeq(find(evs, "data").data, { token = "***", v = "\u{e4}\u{b8}***" }, "the data")
    t.eq(find(evs, "result").error, "rejected\\x00***\u{ff}", "the error")
    code, _, err = athost_cmd(dir, dir .. "/s.lua product_secret=" .. secret)
    t.eq(code, 1, "exit code without --json")
    t.nomatch(err, secret, "stderr")
    t.match(err, "athost: rejected\\x00%*%*%*\255\n", "the final error line")
  end)
end)

t.test("a secret is masked in the encodings athost puts it in, too", function()
  in_tmpdir(function(dir)
    local secret = 'p"w&d\r\n42' .. athost.random(3, "hex")
    local at = require("athost.at")
    local enc = { secret, athost.hex(secret), athost.hex(secret):upper(),
      athost.base64(secret), at.mpub_escape(secret),
      (secret:gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", c:byte()) end)) }
    local lines = {}
    for i, e in ipairs(enc) do lines[#lines + 1] = "athost.log(" .. lit("enc" .. i .. " " .. e) .. ")" end
    write(dir .. "/s.lua", "local athost = require('athost')\nathost.secret(" .. lit(secret)
      .. ")\n" .. table.concat(lines, "\n") .. "\nerror(" .. lit("failed with " .. enc[4]) .. ", 0)\n")
    local code, out, err = athost_cmd(dir, "--json " .. dir .. "/s.lua")
    t.eq(code, 1, "exit code (stderr: " .. err .. ")")
    for i, e in ipairs(enc) do
      t.ok(not (out .. err):find(e, 1, true), "encoding " .. i .. " in the output")
      t.ok(out:find("enc" .. i .. " ***", 1, true), "encoding " .. i .. " masked")
    end
  end)
end)

t.run()
