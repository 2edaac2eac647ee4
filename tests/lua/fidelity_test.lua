-- What a module does that no reference describes is reported, naming what
-- was expected and what came: here, another command's echo, on the
-- virtual Air720 and through the modem library as every flow uses it.
local t = require("t")
local athost = require("athost")
local modem = require("athost.modem")

local function find(s, what, label)
  if type(s) ~= "string" or not s:find(what, 1, true) then
    error(string.format("%s: %q does not contain %q", label, tostring(s), what), 2)
  end
end

t.test("a module echoing AT+CFUN=0 to our AT+CGATT? stops the flow, named", function()
  local p, sim = assert(athost.open("sim:air720?wrong_echo=AT%2BCGATT"))
  local m = modem.open(p)
  local ok, err = pcall(m.network, m)
  t.ok(not ok, "network() failed")
  find(err, 'attached: EECHO: sent AT+CGATT?, the module echoed "AT+CFUN=0"', "message")
  sim:close()
end)

t.test("the same with echo off: the wrong echo still shows", function()
  local p, sim = assert(athost.open("sim:air720?wrong_echo=AT%2BCSQ&echo_boot=off"))
  local m = modem.open(p)
  local r, err, code = m:cmd("AT+CSQ")
  t.eq(r, nil, "no result")
  t.eq(code, "EECHO", "code")
  find(err, 'the module echoed "AT+CFUN=0"', "message")
  r = assert(m:cmd("AT+CSQ"))
  t.eq(r.final, "OK", "the next command is answered")
  sim:close()
end)

t.run()
