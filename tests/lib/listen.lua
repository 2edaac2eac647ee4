-- Listening on an MQTT session while a fake module knows the wait is in
-- progress: the order tests (a message the wait took, the next ones the
-- URC handlers read from the same bytes).
local M = {}

-- Listens on session s (5 s at most) until n messages came. After the
-- first it sends "AT\r" on the session's port: the fake module reads it
-- to know listen() waits again before it sends the rest. Returns the
-- messages as fmt(msg) (default: the payload).
function M.poking(s, n, fmt)
  fmt = fmt or function(msg) return msg.payload end
  local msgs = {}
  s:listen(5000, function(msg)
    msgs[#msgs + 1] = fmt(msg)
    if #msgs == 1 then assert(s.port:send("AT\r")) end
    if #msgs == n then return false end
  end)
  return msgs
end

-- topic|payload, for messages whose topics differ.
function M.both(msg) return msg.topic .. "|" .. msg.payload end

return M
