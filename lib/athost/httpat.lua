-- HTTP over AT (AT+HTTPINIT ... AT+HTTPTERM), as reference 000 does it by
-- hand: the body length in AT+HTTPDATA is counted here, never by a person.
--
--   local httpat = require("athost.httpat")
--   local status, body = httpat.post(m, url, form, "application/x-www-form-urlencoded")
local athost = require("athost")

local M = {}

-- Fails with the module's words and the step's command.
local function fail(what, err)
  error(string.format("%s: %s", what, err), 0)
end

-- One request. Returns status (number), body; raises on a module-side
-- failure (ERROR, timeouts, 60x statuses). opts.seen(body), if given, is
-- called as soon as the body is read, before anything else is sent: the
-- transcript writes what was received at the next send, so a secret in the
-- body must be registered there to be masked.
function M.request(m, method, url, body, content_type, opts)
  opts = opts or {}
  local h = m.profile.http
  if not h then
    error(m.profile.name .. " has no HTTP commands in its profile", 2)
  end
  -- A session left open by an earlier run would make HTTPINIT fail.
  m:cmd(h.term, { timeout = 2000 })
  local r, err = m:cmd(h.init)
  if not r then fail("HTTP init", err) end
  local function para(cmd)
    local ok, e = m:cmd(cmd)
    if not ok then
      m:cmd(h.term)
      fail("HTTP parameter", e)
    end
  end
  para(string.format(h.url, url))
  if content_type then
    para(string.format(h.header, "Content-Type: " .. content_type))
  end
  local action = method == "POST" and 1 or 0
  if body then
    r, err = m:cmd(string.format(h.data, #body, opts.data_ms or 20000),
      { prompt = h.data_prompt, data = body })
    if not r then
      m:cmd(h.term)
      fail(string.format("HTTP body (%d bytes)", #body), err)
    end
  end
  r, err = m:cmd(string.format(h.action, action))
  if not r then
    m:cmd(h.term)
    fail("HTTP request", err)
  end
  local a
  a, err = m.port:expect(h.action_urc, { timeout = opts.timeout or m:wait_ms("http"),
                                         abort = { "+CME ERROR", "ERROR" } })
  if not a then
    m:cmd(h.term)
    fail("HTTP request to " .. url, err)
  end
  local status, len = tonumber(a[2]), tonumber(a[3])
  if status >= 600 and status < 700 then
    m:cmd(h.term)
    fail("HTTP request to " .. url, string.format(
      "the module could not complete it (+HTTPACTION status %d)", status))
  end
  local text = ""
  if len > 0 then
    r, err = m:cmd(h.read, { reply = h.read_reply, timeout = opts.timeout or 30000 })
    if not r then
      m:cmd(h.term)
      fail("HTTP read", err)
    end
    text = r.payload or ""
    if opts.seen then opts.seen(text) end
  end
  m:cmd(h.term)
  return status, text
end

function M.post(m, url, body, content_type, opts)
  return M.request(m, "POST", url, body, content_type, opts)
end

function M.get(m, url, opts)
  return M.request(m, "GET", url, nil, nil, opts)
end

-- application/x-www-form-urlencoded, in the order given: { {k, v}, ... }.
function M.form(pairs_)
  local out = {}
  for _, kv in ipairs(pairs_) do
    local v = tostring(kv[2]):gsub("[^%w%-%._~]", function(c)
      return string.format("%%%02X", c:byte())
    end)
    out[#out + 1] = kv[1] .. "=" .. v
  end
  return table.concat(out, "&")
end

-- Decodes a JSON reply body; raises naming the request if it is not JSON.
function M.json(body, what)
  local ok, v = pcall(athost.json.decode, body)
  if not ok or type(v) ~= "table" then
    error(string.format("%s: the reply is not JSON: %q", what,
      body:sub(1, 120)), 0)
  end
  return v
end

return M
