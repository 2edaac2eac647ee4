-- What the local cloud services of scripts/sim/ share as programs: their
-- list parameters and serving HTTP(S) until stopped.
local athost = require("athost")

local M = {}

-- "a:b,c:d" -> { {"a","b"}, {"c","d"} }; every item must have n fields.
function M.list(s, n, what)
  local out = {}
  for item in (s or ""):gmatch("[^,]+") do
    local fields = {}
    for f in item:gmatch("[^:]+") do fields[#fields + 1] = f end
    if n and #fields ~= n then
      error(string.format("%s (got %s)", what or "bad list", item), 0)
    end
    out[#out + 1] = fields
  end
  return out
end

local function slurp(path)
  local f = assert(io.open(path, "rb"), "cannot read " .. tostring(path))
  local s = f:read("a")
  f:close()
  return s
end

-- Serves service (with :listen(host, port, {tls}) and .task) on
-- args.host/args.port, HTTPS with args.tls_cert/tls_key; prints
-- "listening on [https://]<host>:<port>" and serves until stopped.
function M.serve(service, args)
  local host = args.host or "127.0.0.1"
  local tls
  if args.tls_cert or args.tls_key then
    tls = { cert = slurp(args.tls_cert), key = athost.secret(slurp(args.tls_key)) }
  end
  local port = assert(service:listen(host, tonumber(args.port or 0), { tls = tls }))
  io.stdout:write("listening on ", tls and "https://" or "", host, ":", port, "\n")
  io.stdout:flush()
  service.task:join()
end

return M
