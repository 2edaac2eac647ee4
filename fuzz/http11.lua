-- Fuzz target: lib/athost/http11.lua reading what a peer sends. The first
-- byte picks the side and the cutting: even, the server reads a request
-- (http.serve on a listener that hands out one connection); odd, the
-- client reads a response to a GET or a HEAD (http.request with a connect
-- function). The rest is what the peer sends, delivered in pieces.
-- Invariants: nothing raises inside the codec; the server answers a
-- request it accepts with the handler's response and rejects the others
-- with one of its documented statuses; the client returns a response or
-- one of its documented error codes; a body's length is what its
-- Content-Length said.
local split = require("split")

-- The codec's view of athost: a clock that moves on every look (so every
-- deadline passes eventually) and flows that run at once.
local clock = 0
package.loaded.athost = {
  now = function() clock = clock + 1; return clock end,
  spawn = function(fn, ...) return fn(...) end,
}
local http = require("athost.http11")

local function conn(pieces)
  local c, i = { name = "peer", closed = false, sent = {} }, 0
  function c.recv(_, n)
    i = i + 1
    local s = pieces[i]
    if s == nil then return nil, "EOF: peer closed", "EOF" end
    assert(#s <= n, "more than recv asked for")
    return s
  end
  function c.send(_, s) c.sent[#c.sent + 1] = s; return true end
  function c.close() c.closed = true end
  return c
end

local REJECT = { [0] = true, [400] = true, [408] = true, [413] = true,
  [501] = true, [505] = true }
local CLIENT_CODES = { ETIMEDOUT = true, EOF = true, EPROTO = true, E2BIG = true }

local function server(bytes, seed)
  local c = conn(split.pieces(bytes, seed))
  local listener, handed, failure = { name = "listener", closed = false }, false, nil
  function listener.accept()
    if handed then listener.closed = true; return nil, "closed" end
    handed = true
    return c
  end
  local served = 0
  http.serve(listener, function(req)
    served = served + 1
    assert(type(req.method) == "string" and req.method:find("^[!#$%%&'*+%-.^_`|~%w]+$"),
      "method")
    assert(req.version:find("^1%.%d$"), "version " .. tostring(req.version))
    assert(type(req.body) == "string" and type(req.query) == "table", "body, query")
    local n = req.headers["content-length"]
    if n and not req.headers["transfer-encoding"] then
      assert(#req.body == tonumber(n:match("%d+")), "body length " .. #req.body)
    end
    return 200, { ["X-Fuzz"] = "1" }, "ok"
  end, { max_header = 2048, max_body = 4096, timeout = 10000,
    on_error = function(status, why)
      if not REJECT[status] then failure = status .. ": " .. tostring(why) end
    end })
  assert(not failure, "the server failed: " .. tostring(failure))
  assert(c.closed, "the connection was not closed")
  if served > 0 then
    assert(c.sent[#c.sent]:find("^HTTP/1%.1 200 OK\r\n"), "the handler's response")
  end
  for _, s in ipairs(c.sent) do
    assert(s:find("^HTTP/1%.1 %d%d%d "), "a response starts with a status line")
  end
end

local function client(bytes, seed, method)
  local c = conn(split.pieces(bytes, seed))
  local r, err, code = http.request { url = "http://example.test:8080/x?a=1",
    method = method, connect = function() return c end, timeout = 10000,
    max_body = 8192 }
  assert(c.closed, "the connection was not closed")
  if r then
    assert(math.type(r.status) == "integer" and r.status >= 100, "status")
    assert(type(r.body) == "string" and type(r.headers) == "table", "body")
    assert(#r.body <= 8192, "a body over max_body")
    if method == "HEAD" then assert(r.body == "", "a HEAD response's body") end
  else
    assert(CLIENT_CODES[code], "error code " .. tostring(code))
    assert(type(err) == "string" and err:sub(1, #code + 1) == code .. ":", "message")
  end
end

return function(data)
  if #data == 0 then return end
  local b = data:byte(1)
  local bytes = data:sub(2)
  if b % 2 == 0 then
    server(bytes, b)
  else
    client(bytes, b, b % 4 == 1 and "GET" or "HEAD")
  end
end
