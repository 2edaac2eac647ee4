local t = require("t")
local athost = require("athost")
local http = require("athost.http11")

-- Waits for a task; raises with its error if it failed.
local function joined(task)
  local v, err, code = task:join()
  if code == "ETASK" then error("task failed: " .. tostring(err), 2) end
  return v
end

-- A server on a fresh loopback port, serving in a flow of its own; stop()
-- closes the listener and waits (bounded) for the serving loop to return.
local function server(handler, opts)
  local l = assert(athost.listen("127.0.0.1", 0))
  local errors = {}
  opts = opts or {}
  opts.on_error = function(status, why) errors[#errors + 1] = status .. " " .. why end
  local task = athost.spawn(http.serve, l, handler, opts)
  local s = { port = l.port, url = "http://127.0.0.1:" .. l.port, errors = errors }
  function s.stop()
    l:close()
    t.eq(joined(task), true, "serving loop ended cleanly")
  end
  return s
end

-- Sends raw bytes and returns everything the server answers until it
-- closes the connection (bounded by ms).
local function raw(port, bytes, ms)
  local c = assert(athost.connect("127.0.0.1", port))
  if bytes then assert(c:send(bytes)) end
  local got, deadline = {}, athost.now() + (ms or 3000)
  while true do
    local left = math.floor(deadline - athost.now())
    if left <= 0 then break end
    local s = c:recv(65536, { timeout = left })
    if not s then break end
    got[#got + 1] = s
  end
  c:close()
  return table.concat(got)
end

local function echo(req)
  return 200, { ["Content-Type"] = "application/json", ["X-Method"] = req.method },
    athost.json.encode { path = req.path, query = req.query, body = req.body,
      form = req.form or false, ua = req.headers["user-agent"] or false }
end

t.test("GET with a query reaches the handler decoded", function()
  local s = server(echo)
  local r = assert(http.request { url = s.url .. "/a%20b/c?x=1&y=h%C3%A9+llo",
    headers = { ["User-Agent"] = "athost-test" }, timeout = 3000 })
  t.eq(r.status, 200, "status")
  t.eq(r.reason, "OK", "reason")
  t.eq(r.headers["content-type"], "application/json", "lowercase header name")
  t.eq(r.headers["x-method"], "GET", "custom header")
  local j = athost.json.decode(r.body)
  t.eq(j.path, "/a b/c", "path")
  t.eq(j.query.x, "1", "query x")
  t.eq(j.query.y, "h\xC3\xA9 llo", "query y")
  t.eq(j.ua, "athost-test", "request header")
  t.eq(j.form, false, "no form on GET")
  s.stop()
end)

t.test("POST of a form: Content-Length, body and parsed form", function()
  local s = server(echo)
  local body = http.form_encode { { "productKey", "pk1" }, { "a b", "c&d=e" } }
  t.eq(body, "productKey=pk1&a+b=c%26d%3De", "form_encode keeps order")
  local r = assert(http.request { method = "POST", url = s.url .. "/auth",
    headers = { ["Content-Type"] = "application/x-www-form-urlencoded" },
    body = body, timeout = 3000 })
  t.eq(r.status, 200, "status")
  local j = athost.json.decode(r.body)
  t.eq(j.body, body, "body as sent")
  t.deepeq(j.form, { productKey = "pk1", ["a b"] = "c&d=e" }, "form")
  s.stop()
end)

t.test("handler status, headers and an empty body", function()
  local s = server(function() return 204, { ["X-A"] = "1" } end)
  local r = assert(http.request { url = s.url .. "/", timeout = 3000 })
  t.eq(r.status, 204, "status")
  t.eq(r.body, "", "body")
  t.eq(r.headers["x-a"], "1", "header")
  s.stop()
end)

-- A raw server that answers with the given bytes, split in pieces with a
-- pause between them so the client sees them arrive separately.
local function raw_server(pieces)
  local l = assert(athost.listen("127.0.0.1", 0))
  local task = athost.spawn(function()
    local c = assert(l:accept { timeout = 3000 })
    local head = ""
    while not head:find("\r\n\r\n", 1, true) do
      head = head .. assert(c:recv(4096, { timeout = 3000 }))
    end
    for i, p in ipairs(pieces) do
      if i > 1 then athost.sleep(20) end
      assert(c:send(p))
    end
    c:close()
    l:close()
    return head
  end)
  return "http://127.0.0.1:" .. l.port, task
end

t.test("chunked response, chunks split across reads and CRLFs", function()
  local url, task = raw_server {
    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Y: z\r\n\r\n5\r\nhel",
    "lo", "\r\n", "7;ext=1\r\n, world\r\n", "0\r\nTrailer: x\r\n\r\n" }
  local r = assert(http.request { url = url .. "/c", timeout = 3000 })
  t.eq(r.status, 200, "status")
  t.eq(r.body, "hello, world", "body")
  t.eq(r.headers["x-y"], "z", "header")
  local head = joined(task)
  t.match(head, "^GET /c HTTP/1.1\r\n", "request line")
  t.match(head, "\r\nConnection: close\r\n", "Connection: close sent")
end)

t.test("response delimited by the end of the stream", function()
  local url, task = raw_server { "HTTP/1.0 200 OK\r\n\r\nuntil ", "close" }
  local r = assert(http.request { url = url, timeout = 3000 })
  t.eq(r.body, "until close", "body")
  joined(task)
end)

t.test("a malformed chunked response is EPROTO", function()
  local url, task = raw_server {
    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n" }
  t.fails("EPROTO", http.request { url = url, timeout = 3000 })
  joined(task)
end)

t.test("a response that never comes is ETIMEDOUT, bounded", function()
  local l = assert(athost.listen("127.0.0.1", 0))
  local task = athost.spawn(function()
    local c = assert(l:accept { timeout = 3000 })
    c:recv(4096, { timeout = 3000 })
    athost.sleep(600)
    c:close()
  end)
  local t0 = athost.now()
  t.fails("ETIMEDOUT", http.request { url = "http://127.0.0.1:" .. l.port,
    timeout = 200 })
  t.ok(athost.now() - t0 < 550, "gave up after about 200 ms")
  joined(task)
  l:close()
end)

t.test("a refused connection fails with athost.connect's code", function()
  local l = assert(athost.listen("127.0.0.1", 0))
  local port = l.port
  l:close()
  local r, err, code = http.request { url = "http://127.0.0.1:" .. port }
  t.eq(r, nil, "no result")
  t.eq(code, "ECONNREFUSED", "code (" .. tostring(err) .. ")")
end)

t.test("the connect option replaces athost.connect", function()
  local s = server(echo)
  local seen
  local r = assert(http.request { url = "https://auth.example:8443/x",
    timeout = 3000, connect = function(host, port, is_https)
      seen = { host, port, is_https }
      return athost.connect("127.0.0.1", s.port)
    end })
  t.deepeq(seen, { "auth.example", 8443, true }, "connect arguments")
  t.eq(athost.json.decode(r.body).path, "/x", "served")
  s.stop()
end)

t.test("chunked request body is decoded", function()
  local s = server(echo)
  local out = raw(s.port, "POST /p HTTP/1.1\r\nHost: x\r\n"
    .. "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
  t.match(out, "^HTTP/1.1 200 OK\r\n", "status line")
  t.match(out, '"body":"abcde"', "body")
  s.stop()
end)

t.test("malformed requests get 400 and the server goes on", function()
  local s = server(echo)
  for _, bad in ipairs {
    "GARBAGE\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 12x\r\n\r\n",
    "GET / HTTP/1.1\r\n\r\n",
    "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
    "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nxyz\r\n",
    "\0\1\2\3\r\n\r\n",
  } do
    t.match(raw(s.port, bad), "^HTTP/1.1 400 Bad Request\r\n", string.format("%q", bad))
  end
  t.match(raw(s.port, "GET / HTTP/2.0\r\n\r\n"), "^HTTP/1.1 505 ", "version")
  local r = assert(http.request { url = s.url .. "/ok", timeout = 3000 })
  t.eq(r.status, 200, "still serving")
  t.eq(#s.errors, 8, "on_error saw every rejection")
  s.stop()
end)

t.test("oversized header fields and bodies get 413", function()
  local s = server(echo, { max_header = 1024, max_body = 2048 })
  t.match(raw(s.port, "GET /" .. string.rep("a", 2000) .. " HTTP/1.1\r\n\r\n"),
    "^HTTP/1.1 413 ", "long request line")
  t.match(raw(s.port, "GET / HTTP/1.1\r\nHost: x\r\n"
    .. string.rep("X-Pad: " .. string.rep("p", 100) .. "\r\n", 20) .. "\r\n"),
    "^HTTP/1.1 413 ", "many header fields")
  -- The body is refused on its announced length, while the client is still
  -- sending it: the client must still read the answer.
  local r = assert(http.request { method = "POST", url = s.url .. "/big",
    body = string.rep("b", 100000), timeout = 3000 })
  t.eq(r.status, 413, "big body")
  t.match(r.body, "100000 bytes", "says why")
  t.match(raw(s.port, "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    .. "900\r\n" .. string.rep("c", 0x900) .. "\r\n0\r\n\r\n"),
    "^HTTP/1.1 413 ", "big chunked body")
  r = assert(http.request { method = "POST", url = s.url .. "/fits",
    body = string.rep("b", 2048), timeout = 3000 })
  t.eq(r.status, 200, "a body at the limit")
  s.stop()
end)

t.test("a client that never sends times out; others are served meanwhile", function()
  local s = server(echo, { timeout = 400 })
  local t0 = athost.now()
  local silent = athost.spawn(raw, s.port, nil, 3000)
  local partial = athost.spawn(raw, s.port, "POST / HTTP/1.1\r\nHost: x\r\n"
    .. "Content-Length: 10\r\n\r\nabc", 3000)
  local r = assert(http.request { url = s.url .. "/meanwhile", timeout = 3000 })
  t.eq(r.status, 200, "served while two clients stall")
  t.ok(athost.now() - t0 < 300, "without waiting for their timeout")
  t.match(joined(silent), "^HTTP/1.1 408 ", "silent client")
  t.match(joined(partial), "^HTTP/1.1 408 ", "client stalling in the body")
  local waited = athost.now() - t0
  t.ok(waited >= 350 and waited < 2500, "after about 400 ms (" .. waited .. ")")
  r = assert(http.request { url = s.url .. "/after", timeout = 3000 })
  t.eq(r.status, 200, "still serving")
  s.stop()
end)

t.test("a client that leaves mid-request does not disturb the server", function()
  local s = server(echo)
  local c = assert(athost.connect("127.0.0.1", s.port))
  assert(c:send("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nab"))
  c:close()
  local r = assert(http.request { url = s.url .. "/", timeout = 3000 })
  t.eq(r.status, 200, "still serving")
  s.stop()
end)

t.test("a handler that raises gives 500; a bad return too", function()
  local n = 0
  local s = server(function(req)
    n = n + 1
    if req.path == "/raise" then error("boom") end
    if req.path == "/nothing" then return nil end
    return 200, {}, "fine"
  end)
  t.eq(assert(http.request { url = s.url .. "/raise", timeout = 3000 }).status,
    500, "raise")
  t.eq(assert(http.request { url = s.url .. "/nothing", timeout = 3000 }).status,
    500, "no status")
  local r = assert(http.request { url = s.url .. "/ok", timeout = 3000 })
  t.eq(r.body, "fine", "still serving")
  t.eq(n, 3, "handler calls")
  t.match(s.errors[1], "boom", "on_error saw the failure")
  s.stop()
end)

t.test("serve returns when its listener is closed", function()
  local l = assert(athost.listen("127.0.0.1", 0))
  local task = athost.spawn(http.serve, l, echo)
  athost.sleep(0)
  l:close()
  local ok, err = task:join()
  t.eq(err, nil, "no error")
  t.eq(ok, true, "serve returns true")
  t.ok(l.closed, "closed")
end)

t.test("urlencode, urldecode, form_decode", function()
  t.eq(http.urlencode("a b&c=d/é~-._"), "a%20b%26c%3Dd%2F%C3%A9~-._", "urlencode")
  t.eq(http.urldecode("a%20b%2fc%zz%4"), "a b/c%zz%4", "urldecode, bad escapes kept")
  local map, list = http.form_decode("a=1&b=x+y%21&a=2&flag&=e")
  t.deepeq(map, { a = "1", b = "x y!", flag = "", [""] = "e" }, "map, first wins")
  t.eq(#list, 5, "every pair listed")
  t.deepeq(list[3], { "a", "2" }, "repeat kept in the list")
  t.eq(http.form_encode { z = "1", a = "2 3" }, "a=2+3&z=1", "map sorted")
  local s = "k=" .. http.urlencode("\0\r\n+&=%")
  t.eq(http.form_decode(s).k, "\0\r\n+&=%", "round trip")
end)

t.test("parse_url", function()
  t.deepeq({ http.parse_url("http://h:81/p?q") }, { "http", "h", 81, "/p?q" }, "port")
  t.deepeq({ http.parse_url("HTTPS://u@h") }, { "https", "h", 443, "/" }, "default")
  t.deepeq({ http.parse_url("http://[::1]:8080?x") }, { "http", "::1", 8080, "/?x" }, "v6")
  t.eq(http.parse_url("ftp://h/"), nil, "scheme")
  t.eq(http.parse_url("http://h:99999/"), nil, "port range")
  t.raises(function() http.request { url = "nope" } end, "bad url", "misuse raises")
end)

t.run()
