-- Luat Air780E / Air780EP (and Air724UG, assumed the same: DIALECTS.md §3):
-- the Air720's command family and dialogue, with these differences.
local profile = require("athost.profile")

return profile.derive("air720", {
  name = "air780e",
  -- Identification answers carry the command and quotes
  -- (+CGMM: "Air780EP"); modem.lua strips both before matching.
  detect = { "Air780", "Air724", "780E" },
  min_version = profile.NONE,   -- V461 is an Air720 firmware number
  -- The LTE attach brings the data bearer up; the examples set
  -- AT+HTTPPARA="CID",1 and never AT+SAPBR, whose need is unconfirmed:
  -- it is sent, and a module without it going on is not an error.
  bearer_optional = true,
  http = {
    -- After AT+HTTPINIT, before the URL.
    params = { 'AT+HTTPPARA="CID",1' },
    -- HTTPS is switched on, not read from the URL (DIALECTS.md §3).
    ssl = "AT+HTTPSSL=%d",
    -- The content type as the documented CONTENT key: what USER_DEFINED
    -- does with a header line is unconfirmed (§3), a module may ignore it.
    content = 'AT+HTTPPARA="CONTENT","%s"',
  },
  limits = {
    http_data = 3356,           -- AT+HTTPDATA bytes on the AT build (§3)
    topic = 256,
  },
})
