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
-- opts go to athost.http11.serve (tls = {cert = PEM, key = PEM}: HTTPS).
function M.http_server(reply, opts)
  local l = assert(athost.listen("127.0.0.1", 0))
  local seen = {}
  athost.spawn(require("athost.http11").serve, l, function(req)
    seen[#seen + 1] = req
    return reply(req)
  end, opts)
  return l.port, seen, function() l:close() end
end

-- `athost scripts/sim/<model>.lua link=...` serves a separate `athost -p
-- link`, and `athost -p sim:<model>` works: each answers AT+CGSN with the
-- IMEI given. root: the source tree; dir: a scratch directory.
function M.standalone(root, dir, model)
  local mosq = require("mosq")
  local link, out, pidf = dir .. "/tty-" .. model, dir .. "/sim.out", dir .. "/sim.pid"
  assert(os.execute(string.format("%s/athost %s/scripts/sim/%s.lua link=%s "
    .. "imei=861234567890123 > %s 2>&1 & echo $! > %s", root, root, model, link, out, pidf)))
  local pid = mosq.wait_file(pidf, "pid", function(s) return s:match("%d+") end)
  local ok, err = pcall(function()
    mosq.wait_file(out, "the slave path", function(s) return s:find("/dev/pts/") end)
    local chunk = "local p = require('athost').port() assert(p:cmd('AT')) "
      .. "print(assert(p:cmd('AT+CGSN')).lines[1])"
    local res, okc = mosq.shell(string.format("%s/athost -p %s -e \"%s\"", root, link, chunk))
    t.ok(okc, "client: " .. res)
    t.match(res, "861234567890123", "IMEI from the standalone modem")
    res, okc = mosq.shell(string.format("%s/athost -p 'sim:%s?imei=869999999999999' -e \"%s\"",
      root, model, chunk))
    t.ok(okc, "-p sim: " .. res)
    t.match(res, "869999999999999", "IMEI from -p sim:" .. model)
  end)
  os.execute("kill -TERM " .. pid)
  mosq.wait_file(out, "the simulator to exit", function()
    return not os.execute("kill -0 " .. pid .. " 2>/dev/null")
  end)
  if not ok then error(err, 0) end
end

-- The one request a local server saw: a form POST to path with body.
function M.form_post(seen, path, body)
  t.eq(#seen, 1, "requests")
  t.eq(seen[1].method, "POST", "method")
  t.eq(seen[1].path, path, "path")
  t.eq(seen[1].headers["content-type"], "application/x-www-form-urlencoded", "header")
  t.eq(seen[1].body, body, "body")
end

return M
