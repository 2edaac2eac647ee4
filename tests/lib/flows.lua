-- What the flow tests share about the flows themselves: how a flow prints
-- an arriving message, the broker ports and files of each TLS level, and
-- device ids shaped like the clouds' own.
local athost = require("athost")

local M = {}

-- What a flow prints for an arriving message (athost.flow.message).
function M.shown(topic, payload)
  return string.format("message on %s: %s\n", topic,
    payload:gsub("[%z\1-\31\127-\255]", function(c)
      return string.format("\\x%02x", c:byte())
    end))
end

-- tls=none|noverify|server|mutual of clouds/mqtt.lua: the port of the
-- broker fixture B (tests/lib/broker.lua) and the files the flow takes.
function M.levels(B)
  return {
    none = function() return B.PORT, {} end,
    noverify = function() return B.TLS_PORT, {} end,
    server = function() return B.TLS_PORT, { ca = B.CA } end,
    mutual = function()
      return B.MTLS_PORT, { ca = B.CA, cert = B.CLIENT_CERT, key = B.CLIENT_KEY }
    end,
  }
end

-- A device id shaped like IoTDA's (reference 001: a UUID).
function M.device_id()
  local h = athost.random(16, "hex")
  return string.format("%s-%s-%s-%s-%s", h:sub(1, 8), h:sub(9, 12), h:sub(13, 16),
    h:sub(17, 20), h:sub(21, 32))
end

return M
