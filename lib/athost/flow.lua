-- What every cloud flow shares: parameters, the user's handler file, the
-- message printout and the summary.
local athost = require("athost")

local M = {}

-- Checks parameters against a spec { name = default | M.REQUIRED } and
-- returns a table with the defaults filled in. Unknown names raise, so a
-- typo (prodcut_key=) does not pass silently, and name the parameter it
-- is probably meant to be; either is a usage error (exit 2).
M.REQUIRED = setmetatable({}, { __tostring = function() return "required" end })

-- The edit distance of a and b (insertions, deletions, substitutions,
-- swaps of neighbours), for "did you mean".
local function distance(a, b)
  local d = {}
  for i = 0, #a do d[i] = { [0] = i } end
  for j = 0, #b do d[0][j] = j end
  for i = 1, #a do
    for j = 1, #b do
      local cost = a:sub(i, i) == b:sub(j, j) and 0 or 1
      local v = math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
      if i > 1 and j > 1 and a:sub(i, i) == b:sub(j - 1, j - 1)
          and a:sub(i - 1, i - 1) == b:sub(j, j) then
        v = math.min(v, d[i - 2][j - 2] + 1)
      end
      d[i][j] = v
    end
  end
  return d[#a][#b]
end

-- The spec's name closest to k, when it is close enough to be a typo.
local function nearest(k, spec)
  local best, bd
  for name in pairs(spec) do
    local dd = distance(k, name)
    if dd <= math.max(1, #name // 4) and (not bd or dd < bd or (dd == bd and name < best)) then
      best, bd = name, dd
    end
  end
  return best
end

function M.params(args, spec, usage)
  local out, missing = {}, {}
  for k, v in pairs(args or {}) do
    if spec[k] == nil then
      local near = nearest(k, spec)
      athost.usage(string.format("unknown parameter %s=...%s; %s", k,
        near and string.format(" (did you mean %s=?)", near) or "", usage))
    end
    out[k] = v
  end
  for k, def in pairs(spec) do
    if out[k] == nil then
      if def == M.REQUIRED then missing[#missing + 1] = k
      elseif def ~= false then out[k] = def end
    end
  end
  if #missing > 0 then
    table.sort(missing)
    athost.usage(string.format("missing parameter%s %s; %s", #missing > 1 and "s" or "",
      table.concat(missing, ", "), usage))
  end
  return out
end

-- handler=FILE.lua: a table with optional on_connect(session, info) and
-- on_message(msg, session) functions, so a user can react without
-- editing the flow.
function M.handler(path)
  if not path or path == "" then return {} end
  local chunk, err = loadfile(path, "t")
  if not chunk then error("handler " .. err, 0) end
  local h = chunk()
  if type(h) ~= "table" then
    error("handler " .. path .. " must return a table of functions", 0)
  end
  return h
end

-- Shows an arriving message (stdout, one line) and emits it as an event.
function M.message(msg)
  local shown = msg.payload:gsub("[%z\1-\31\127-\255]", function(c)
    return string.format("\\x%02x", c:byte())
  end)
  print(string.format("message on %s: %s", msg.topic, shown))
  io.stdout:flush()
  athost.emit("message", { topic = msg.topic, payload = msg.payload })
end

-- The closing summary: a log line and a "summary" event.
function M.summary(fields, order)
  local parts = {}
  for _, k in ipairs(order) do
    if fields[k] ~= nil then parts[#parts + 1] = k .. " " .. tostring(fields[k]) end
  end
  athost.log("done: " .. table.concat(parts, ", "))
  athost.emit("summary", fields)
end

-- Whole seconds from a parameter (listen=30).
function M.seconds(v, def)
  local n = tonumber(v)
  if v ~= nil and not n then error("not a number of seconds: " .. tostring(v), 0) end
  return n or def
end

-- The listen= and messages= parameters of a flow: for listen seconds
-- (none when 0), every message arriving on s is shown (M.message), given
-- to fn(msg) (the flow's own answer, e.g. a control reply) and then to
-- handler.on_message(msg, s); stops after `messages` of them. Prints the
-- step and, given `where`, what is listened on. Returns how many came.
function M.listen(s, args, handler, fn, where)
  local seconds = M.seconds(args.listen, 0)
  if seconds <= 0 then return 0 end
  athost.step("listen")
  if where then athost.log(string.format("listening on %s for %d s", where, seconds)) end
  local received, most = 0, tonumber(args.messages)
  s:listen(seconds * 1000, function(msg)
    received = received + 1
    M.message(msg)
    if fn then fn(msg) end
    if handler and handler.on_message then handler.on_message(msg, s) end
    if most and received >= most then return false end
  end)
  return received
end

-- The PEM text of a certificate file, checked before it crosses the
-- serial line: readable, a certificate, valid now.
function M.certificate(path)
  local f = io.open(path, "rb")
  if not f then error("cannot read the certificate " .. path, 0) end
  local pem = f:read("a")
  f:close()
  local c, err = athost.x509(pem)
  if not c then error(path .. ": " .. err, 0) end
  if c.expired then error(string.format("%s expired on %s: not uploading it", path, c.not_after), 0) end
  if c.not_yet_valid then
    error(string.format("%s is not valid before %s: not uploading it", path, c.not_before), 0)
  end
  return pem, c
end

-- A JSON object given as a parameter (publish={"power_switch":1}),
-- checked so the cloud is not sent text it would drop.
function M.json_object(name, text)
  local ok, v = pcall(athost.json.decode, text)
  if not ok or type(v) ~= "table" or text:match("^%s*%[") then
    athost.usage(string.format("%s= must be a JSON object such as {\"power_switch\":1}, not %s",
      name, text))
  end
  return text
end

return M
