-- Gosuncn ME3630 (firmware AL_ME3630C1CV1.0B01+), reference 002: Aliyun
-- through the module's own cloud commands. Related modules (Neoway N58,
-- Fibocom L610) use the same family with more parameters.
return {
  name = "me3630",
  vendor = "Gosuncn",
  dialect = "gosuncn",          -- lib/athost/dialect/gosuncn.lua
  -- Aliyun only, through the module's own auth; no HTTP, so no dynamic
  -- registration; no files or TLS settings.
  can = { aliyun_mqtt = true },
  detect = { "ME3630", "GOSUNCN", "Gosuncn" },
  echo_off = "ATE0",
  gap_ms = 20,                  -- after a final result, before the next command
  cmee = "AT+CMEE=1",
  sim_ready = { cmd = "AT+CPIN?", ok = "+CPIN: READY" },
  registration = { cmd = "AT+ZPAS?", pattern = '^%+ZPAS: "([^"]*)","([^"]*)"',
                   ok = { LTE = true, ["TD-SCDMA"] = true, WCDMA = true, GSM = true } },
  -- ECM dialing is the bearer (step 3 of 002).
  bearer = { "AT+ZECMCALL=1" },
  bearer_reply = "+ZECMCALL: CONNECT",
  default_apn = "",
  timeouts = {
    default = 5000,
    ["AT+ZECMCALL"] = 60000,
    ["AT+CLOUDAUTH"] = 5000,
    ["AT+CLOUDCONN"] = 30000,
    ["AT+CLOUDSUB"] = 30000,
    ["AT+CLOUDPUB"] = 30000,
  },
  waits = {
    registration = 150000,
    auth = 60000,
    cleanup = 5000,             -- closing sessions when a run ends early
  },
  limits = {
    topic = 64,
    payload = 255,             -- "less than 256"
    subscriptions = 8,
    field = 64,
  },
  cloud = {
    auth = "AT+CLOUDAUTH=%s,%s,%s",
    -- The outcomes of AT+CLOUDAUTH and AT+CLOUDSUB come after OK (the
    -- command reference) or before it (the usage example); the failure
    -- lines count after OK (before it, +CME ERROR is the command's own).
    auth_ok = "+ALIAUTH: OK",
    auth_fail = { "+ALIAUTH: FAIL", "^%+CME ERROR" },
    conn = "AT+CLOUDCONN",
    sub = "AT+CLOUDSUB=%s,%d",
    suback = "^%+CLOUDSUBACK: ?(.*)",
    suback_code = "OK",         -- "+CLOUDSUBACK: OK" or "<OK>" (the example)
    suback_fail = { "^%+CMD ERROR", "^%+CME ERROR" },
    pub = "AT+CLOUDPUB=%s,%d,%s",
    -- A message of digits is read as its length (reference 002, "消息体或
    -- 消息长度"): such a message (or one the text form would alter: in
    -- quotes, with a line end) goes as this length form, ">" and the
    -- bytes; numeric_payload = "refuse" refuses it before sending.
    pub_length = "AT+CLOUDPUB=%s,%d,%d",
    pub_prompt = ">",
    numeric_payload = "length",
    unsub = "AT+CLOUDUNSUB=%s",
    disconn = "AT+CLOUDDISCONN",
    -- Incoming: "+CLOUDPUBLISH: " or, as the example prints it,
    -- "+CLOUDPUBLISH:" without the space. max: the largest message
    -- accepted (Aliyun's own limit; the module's is not documented).
    message = { "^%+CLOUDPUBLISH: ?(%d+),([^,]*),(%-?%d+),", count = 3, max = 262144 },
  },
}
