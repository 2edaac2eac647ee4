-- TLS over TCP ports: port:tls(opts) as client and server, on real sockets
-- on 127.0.0.1, with certificates the openssl command makes for each run.
local t = require("t")
local athost = require("athost")

-- ---- certificates --------------------------------------------------------

local OPENSSL_CNF = [[
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca_ext]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[server_ext]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost,IP:127.0.0.1
[client_ext]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
]]

local function sh(dir, cmd)
  t.ok(os.execute("cd '" .. dir .. "' && " .. cmd .. " >/dev/null 2>&1"),
    "command " .. cmd)
end

local function newkey(name)
  return "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "
    .. name .. ".key"
end

-- A self-signed CA: name.pem, name.key.
local function make_ca(dir, name, cn)
  sh(dir, "openssl req -x509 -config openssl.cnf -extensions ca_ext "
    .. newkey(name) .. " -out " .. name .. ".pem -days 2 -subj '/CN=" .. cn
    .. "'")
end

-- A certificate the CA ca signs, with extensions ext.
local function make_cert(dir, name, cn, ca, ext, serial)
  sh(dir, "openssl req -new -config openssl.cnf " .. newkey(name)
    .. " -out " .. name .. ".csr -subj '/CN=" .. cn .. "'")
  sh(dir, "openssl x509 -req -in " .. name .. ".csr -CA " .. ca .. ".pem"
    .. " -CAkey " .. ca .. ".key -set_serial " .. serial .. " -days 2"
    .. " -extfile openssl.cnf -extensions " .. ext .. " -out " .. name
    .. ".pem")
end

-- Makes the PEMs of the run once: ca, server (CN=localhost, SAN
-- DNS:localhost, IP:127.0.0.1), client, and an unrelated other_ca, as
-- { ca = pem, ca_key = pem, server = pem, server_key = pem, ... }.
local pki
local function certs()
  if pki then return pki end
  local dir = t.tmpdir()
  local ok, err = pcall(function()
    local f = assert(io.open(dir .. "/openssl.cnf", "w"))
    f:write(OPENSSL_CNF)
    f:close()
    make_ca(dir, "ca", "athost test CA")
    make_ca(dir, "other_ca", "athost unrelated CA")
    make_cert(dir, "server", "localhost", "ca", "server_ext", 2)
    make_cert(dir, "client", "athost test client", "ca", "client_ext", 3)
    pki = {}
    for _, name in ipairs({ "ca", "other_ca", "server", "client" }) do
      pki[name] = t.ok(t.slurp(dir .. "/" .. name .. ".pem"), name .. ".pem")
      pki[name .. "_key"] = t.ok(t.slurp(dir .. "/" .. name .. ".key"),
        name .. ".key")
    end
  end)
  os.execute("rm -rf '" .. dir .. "'")
  if not ok then error(err, 0) end
  return pki
end

-- Runs fn(dir) in a temporary directory holding the PEMs as files
-- (ca.pem, client.key, ...), and removes it afterwards.
local function with_files(fn)
  local p, dir = certs(), t.tmpdir()
  for name, pem in pairs(p) do
    local f = assert(io.open(dir .. "/" .. name:gsub("_key$", ".key")
      :gsub("^(%w+)$", "%1.pem"), "w"))
    f:write(pem)
    f:close()
  end
  local ok, err = xpcall(fn, debug.traceback, dir)
  os.execute("rm -rf '" .. dir .. "'")
  if not ok then error(err, 0) end
end

-- ---- a TLS server in a flow of its own -----------------------------------

-- Listens on a free port, accepts one connection, runs c:tls(opts) and,
-- when that succeeds, serve(c). Returns the port number and the task,
-- whose join() gives { ok, err, code, info } of the server's tls().
local function server(opts, serve)
  local l = assert(athost.listen("127.0.0.1", 0))
  local task = athost.spawn(function()
    local c = assert(l:accept({ timeout = 5000 }))
    l:close()
    local ok, err, code = c:tls(opts)
    local r = { ok = ok, err = err, code = code }
    if ok then
      r.info = c:tls_info()
      if serve then serve(c) end
      c:close()
    end
    return r
  end)
  return l.port, task
end

local function server_opts(extra)
  local p = certs()
  local o = { server = true, cert = p.server, key = p.server_key }
  for k, v in pairs(extra or {}) do o[k] = v end
  return o
end

-- Greets, then sends back every line until the peer closes.
local function echo_lines(c)
  assert(c:sendline("welcome"))
  while true do
    local line = c:readline()
    if not line then return end
    assert(c:sendline("echo " .. line))
  end
end

local function connect(port)
  return assert(athost.connect("127.0.0.1", port))
end

-- ---- tests --------------------------------------------------------------

t.test("lines both ways with the right CA and hostname", function()
  local p = certs()
  local port, srv = server(server_opts(), echo_lines)
  local c = connect(port)
  t.eq(c:tls({ ca = p.ca, hostname = "localhost" }), true, "tls()")
  t.eq(c:readline(), "welcome", "greeting")
  assert(c:sendline("ping"))
  t.eq(c:readline(), "echo ping", "echo")
  local r = assert(c:cmd("AT+CGMR", { final = { "^echo AT%+CGMR" } }))
  t.eq(r.final, "echo AT+CGMR", "cmd over TLS")
  local info = c:tls_info()
  t.match(info.version, "^TLSv1%.[23]$", "version")
  t.ok(#info.cipher > 0, "cipher")
  t.match(info.peer_subject, "CN=localhost", "server subject")
  c:close()
  local s = srv:join()
  t.eq(s.ok, true, "server tls()")
  t.eq(s.info.peer_subject, nil, "no client certificate")
end)

t.test("a 1 MiB payload each way with read(n)", function()
  local p = certs()
  local n = 1 << 20
  local port, srv = server(server_opts(), function(c)
    local data = assert(c:read(n, { timeout = 20000 }))
    assert(c:send(data))
    assert(c:readline({ timeout = 20000 }))    -- until the client is done
  end)
  local c = connect(port)
  assert(c:tls({ ca = p.ca, hostname = "127.0.0.1" }))
  -- not random: every byte in place, no line ends for the chat to split
  local chunk = {}
  for i = 0, 1023 do chunk[#chunk + 1] = string.format("%07d ", i * 8) end
  local payload = string.rep(table.concat(chunk), n // 8192)
  t.eq(#payload, n, "payload size")
  local reader = athost.spawn(function()
    return c:read(n, { timeout = 20000 })
  end)
  t.eq(c:send(payload), true, "send")
  local back = assert(reader:join())
  t.eq(#back, n, "bytes back")
  t.ok(back == payload, "the same bytes came back")
  assert(c:sendline("done"))
  t.eq(c:readline(), nil, "EOF once the server is done")
  t.eq(srv:join().ok, true, "server tls()")
end)

-- More than loopback buffers take (1 MiB here does not fill them), so that
-- SSL_write pushes back and send() finishes from the queue.
t.test("an 8 MiB send that the socket cannot take at once", function()
  local p = certs()
  local n = 8 << 20
  local port, srv = server(server_opts(), function(c)
    local data = assert(c:read(n, { timeout = 30000 }))
    assert(c:sendline(athost.digest("sha256", data)))
    assert(c:readline({ timeout = 30000 }))
  end)
  local c = connect(port)
  assert(c:tls({ ca = p.ca, hostname = "localhost" }))
  local payload = string.rep("0123456789abcdef", n // 16)
  t.eq(c:send(payload), true, "send")
  t.eq(c:readline({ timeout = 30000 }), athost.digest("sha256", payload),
    "digest of what the server read")
  assert(c:sendline("done"))
  c:close()
  t.eq(srv:join().ok, true, "server tls()")
end)

-- 525 records of 1000 bytes, all in the socket before the server reads:
-- port_read's 64 KiB buffer fills mid-record, and after 8 buffers
-- (524288 bytes) the last 712 bytes sit decrypted inside OpenSSL while
-- the fd has nothing more to announce.
t.test("bytes OpenSSL has decrypted are not stranded", function()
  local p = certs()
  local n, chunk = 525000, string.rep("x", 999) .. "\n"
  local port, srv = server(server_opts(), function(c)
    local data = assert(c:read(n))
    assert(c:sendline(#data .. " " .. athost.digest("sha256", data)))
    assert(c:readline())
  end)
  local c = connect(port)
  assert(c:tls({ ca = p.ca, hostname = "localhost" }))
  for _ = 1, n // #chunk do assert(c:send(chunk)) end
  local want = n .. " " .. athost.digest("sha256", chunk:rep(n // #chunk))
  t.eq(c:readline(), want, "the server read every byte")
  assert(c:sendline("done"))
  c:close()
  t.eq(srv:join().ok, true, "server tls()")
end)

t.test("the wrong CA fails verification", function()
  local p = certs()
  local port, srv = server(server_opts())
  local c = connect(port)
  local msg = t.fails("ETLS",
    c:tls({ ca = p.other_ca, hostname = "localhost" }))
  t.match(msg, "^ETLS: ", "message")
  t.match(msg, "certificate verify failed", "names verification")
  t.match(msg, "unable to get local issuer certificate", "says why")
  t.ok(c.closed, "a failed handshake closes the port")
  local s = srv:join()
  t.eq(s.code, "ETLS", "the server sees the alert")
end)

t.test("a hostname the certificate does not name fails", function()
  local p = certs()
  local port, srv = server(server_opts())
  local c = connect(port)
  local msg = t.fails("ETLS", c:tls({ ca = p.ca, hostname = "example.com" }))
  t.match(msg, "certificate verify failed", "verification")
  t.match(msg, "hostname mismatch", "says why")
  srv:join()
  port, srv = server(server_opts())
  c = connect(port)
  msg = t.fails("ETLS", c:tls({ ca = p.ca, hostname = "127.0.0.2" }))
  t.match(msg, "IP address mismatch", "an address is checked as one")
  srv:join()
end)

t.test("verify=false needs no CA", function()
  local port, srv = server(server_opts(), echo_lines)
  local c = connect(port)
  t.eq(c:tls({ verify = false, hostname = "example.com" }), true, "tls()")
  t.eq(c:readline(), "welcome", "greeting")
  c:close()
  t.eq(srv:join().ok, true, "server tls()")
  -- and no CA at all means no verification by default
  port, srv = server(server_opts(), echo_lines)
  c = connect(port)
  t.eq(c:tls(), true, "tls() without options")
  t.eq(c:readline(), "welcome", "greeting")
  c:close()
  srv:join()
end)

t.test("mutual TLS: a client without a certificate is refused", function()
  local p = certs()
  local port, srv = server(server_opts({ verify = true, ca = p.ca }),
    echo_lines)
  local c = connect(port)
  local ok, _, code = c:tls({ ca = p.ca, hostname = "localhost" })
  if ok then
    -- TLS 1.3: the client is done before the server checks it
    local line, msg
    line, msg, code = c:readline()
    t.eq(line, nil, "no greeting")
    t.match(msg, "^EOF: ", "message")
  end
  t.ok(code == "EOF" or code == "ETLS", "the client sees EOF or ETLS, got "
    .. tostring(code))
  local s = srv:join()
  t.eq(s.code, "ETLS", "server tls() fails")
  t.match(s.err, "^ETLS: .*certificate", "server message " .. tostring(s.err))
end)

t.test("mutual TLS: a client with a certificate is let in", function()
  local p = certs()
  local port, srv = server(server_opts({ verify = true, ca = p.ca }),
    echo_lines)
  local c = connect(port)
  t.eq(c:tls({ ca = p.ca, hostname = "localhost", cert = p.client,
    key = p.client_key }), true, "tls()")
  t.eq(c:readline(), "welcome", "greeting")
  assert(c:sendline("hi"))
  t.eq(c:readline(), "echo hi", "echo")
  c:close()
  local s = srv:join()
  t.eq(s.ok, true, "server tls()")
  t.match(s.info.peer_subject, "CN=athost test client", "client subject")
end)

t.test("a client certificate from files", function()
  local p = certs()
  with_files(function(dir)
    local port, srv = server(server_opts({ verify = true, ca = p.ca }),
      echo_lines)
    local c = connect(port)
    t.eq(c:tls({ ca_file = dir .. "/ca.pem", hostname = "localhost",
      cert_file = dir .. "/client.pem", key_file = dir .. "/client.key" }),
      true, "tls()")
    t.eq(c:readline(), "welcome", "greeting")
    c:close()
    t.eq(srv:join().ok, true, "server tls()")
  end)
end)

t.test("PEM that does not load fails before any handshake", function()
  local p = certs()
  local l = assert(athost.listen("127.0.0.1", 0))
  local acc = athost.spawn(function() return assert(l:accept()) end)
  local c = connect(l.port)
  local s = acc:join()
  local msg = t.fails("ETLS", c:tls({ ca = "hello" }))
  t.match(msg, "^ETLS: ca: no PEM certificate", "garbage CA")
  msg = t.fails("ETLS", c:tls({ ca = p.ca:gsub("\n[A-Za-z]", "\n!") }))
  t.match(msg, "^ETLS: ca: not a PEM certificate", "broken CA")
  msg = t.fails("ETLS", c:tls({ cert = "hello", key = p.client_key }))
  t.match(msg, "^ETLS: cert: ", "garbage cert")
  msg = t.fails("ETLS", c:tls({ cert = p.client, key = "hello" }))
  t.match(msg, "^ETLS: key: not a PEM private key", "garbage key")
  msg = t.fails("ETLS", c:tls({ cert = p.client, key = p.server_key }))
  t.match(msg, "^ETLS: key does not match cert", "key of another cert")
  msg = t.fails("ETLS", s:tls({ server = true, cert = p.server,
    key = p.client_key }))
  t.match(msg, "key does not match cert", "server side too")
  msg = t.fails("ETLS", c:tls({ ca_file = "/nonexistent/missing.pem" }))
  t.match(msg, "^ETLS: ca_file .*missing.pem: No such file", "missing file")
  -- the port is as it was: plain text still flows
  assert(c:sendline("plain"))
  t.eq(s:readline(), "plain", "still a plain port")
  c:close()
  s:close()
  l:close()
end)

t.test("misuse raises", function()
  local p = certs()
  local l = assert(athost.listen("127.0.0.1", 0))
  t.raises(function() l:tls({}) end, "not a TCP connection", "listener")
  local acc = athost.spawn(function() return assert(l:accept()) end)
  local c = connect(l.port)
  local s = acc:join()
  t.raises(function() c:tls({ bogus = 1 }) end, "unknown TLS option 'bogus'")
  t.raises(function() c:tls({ ca = p.ca, ca_file = "x" }) end,
    "exclude each other")
  t.raises(function() c:tls({ cert = p.client }) end, "go together")
  t.raises(function() s:tls({ server = true }) end, "needs cert and key")
  t.raises(function() s:tls(server_opts({ verify = true })) end, "needs ca")
  t.raises(function() c:tls({ verify = "yes" }) end, "must be a boolean")
  t.eq(c:tls_info(), nil, "no TLS, no info")
  c:close()
  s:close()
  l:close()
end)

t.test("the peer closing is EOF on readline", function()
  local p = certs()
  local port, srv = server(server_opts(), function(c)
    assert(c:sendline("bye"))
  end)
  local c = connect(port)
  assert(c:tls({ ca = p.ca, hostname = "localhost" }))
  t.eq(c:readline(), "bye", "last line")
  local line, msg, code = c:readline()
  t.eq(line, nil, "no more lines")
  t.eq(code, "EOF", "code")
  t.match(msg, "^EOF: ", "message")
  t.ok(c.eof, "p.eof")
  c:close()
  srv:join()
end)

t.test("a handshake nobody answers times out", function()
  local l = assert(athost.listen("127.0.0.1", 0))
  local acc = athost.spawn(function() return assert(l:accept()) end)
  local c = connect(l.port)
  local s = acc:join()
  local t0 = athost.now()
  local msg = t.fails("ETIMEDOUT", c:tls({ timeout = 200 }))
  t.match(msg, "TLS handshake with .* not done in 200 ms", "message")
  t.ok(athost.now() - t0 >= 150, "waited for the timeout")
  t.ok(c.closed, "closed")
  s:close()
  l:close()
end)

-- A whole run in a child athost (this one's binary), so that its
-- transcript can be read: the server and the client both in its flows.
local CHILD = [[
local athost = require("athost")
local dir = ...
local l = assert(athost.listen("127.0.0.1", 0))
local srv = athost.spawn(function()
  local c = assert(l:accept({ timeout = 5000 }))
  assert(c:tls({ server = true, cert_file = dir .. "/server.pem",
    key_file = dir .. "/server.key" }))
  assert(c:sendline("welcome"))
  assert(c:readline() == "hello over TLS")
  c:close()
end)
local c = assert(athost.connect("127.0.0.1", l.port))
assert(c:tls({ ca_file = dir .. "/ca.pem", hostname = "localhost" }))
assert(c:readline() == "welcome")
assert(c:sendline("hello over TLS"))
srv:join()
]]

t.test("the transcript holds the plaintext", function()
  local pid = t.ok(io.open("/proc/self/stat"):read("n"), "pid")
  with_files(function(dir)
    local f = assert(io.open(dir .. "/child.lua", "w"))
    f:write((CHILD:gsub("local dir = %.%.%.", "local dir = '" .. dir .. "'")))
    f:close()
    local exe = "/proc/" .. pid .. "/exe"
    t.ok(os.execute(exe .. " -q -l " .. dir .. "/tr.log " .. dir
      .. "/child.lua >" .. dir .. "/out 2>&1"), "child run: "
      .. tostring(t.slurp(dir .. "/out")))
    local log = t.ok(t.slurp(dir .. "/tr.log"), "transcript")
    t.match(log, "> hello over TLS\\r", "sent, in clear")
    t.match(log, "< welcome\\r", "received, in clear")
    t.nomatch(log, "\\x16\\x03", "no TLS records")
  end)
end)

t.run()
