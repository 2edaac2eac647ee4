-- Luat Air720 (AirM2M LTE AT firmware), references 000, 001, 003.
-- Limits not confirmed for the Air720 itself (PROTOCOLS.md) are the Luat
-- family's; change them here, not in flows.
return {
  name = "air720",
  vendor = "Luat",
  dialect = "luat",             -- lib/athost/dialect/luat.lua
  can = { mqtt = true, http = true, files = true, tls = true },
  -- Identification: any match of AT+CGMI / AT+CGMR / ATI output.
  detect = { "AirM2M", "Air720", "LUAT" },
  min_version = 461,            -- Aliyun support needs firmware >= V461 (000)
  version = "_V(%d+)",          -- how to read that number out of AT+CGMR
  echo_off = "ATE0",
  gap_ms = 20,                  -- after a final result, before the next command
  cmee = "AT+CMEE=1",
  sim_ready = { cmd = "AT+CPIN?", ok = "+CPIN: READY" },
  registration = { cmd = "AT+CGREG?", pattern = "^%+CGREG: %d,(%d)",
                   ok = { ["1"] = true, ["5"] = true } },
  attach = { cmd = "AT+CGATT?", pattern = "^%+CGATT: (%d)", ok = "1" },
  -- The bearer HTTP uses (AT+SAPBR), as 000 activates it.
  bearer = {
    'AT+SAPBR=3,1,"CONTYPE","GPRS"',
    'AT+SAPBR=3,1,"APN","%s"',
    "AT+SAPBR=1,1",
  },
  bearer_query = { cmd = "AT+SAPBR=2,1", pattern = '^%+SAPBR: 1,(%d)', ok = "1" },
  bearer_close = "AT+SAPBR=0,1",
  default_apn = "CMIIOT",
  timeouts = {                  -- ms, by command name
    default = 5000,
    ["AT+SAPBR"] = 85000,
    ["AT+HTTPACTION"] = 5000,   -- OK comes at once; the URC later
    -- A module may hold OK until the outcome URC (CONNECT OK, CONNACK OK,
    -- SUBACK, PUBACK), so these cover a broker's answer too.
    ["AT+MIPSTART"] = 60000,
    ["AT+SSLMIPSTART"] = 60000,
    ["AT+MCONNECT"] = 30000,
    ["AT+MSUB"] = 10000,
    ["AT+MUNSUB"] = 10000,
    ["AT+MPUB"] = 10000,
    ["AT+MPUBEX"] = 10000,
    ["AT+CIPSHUT"] = 65000,
    ["AT+CGACT"] = 150000,      -- PDP activation (PROTOCOLS.md)
    ["AT+CFUN"] = 15000,
    ["AT+FSWRITE"] = 30000,
  },
  waits = {                     -- ms, for URCs that end a dialogue
    registration = 150000,
    attach = 150000,
    http = 60000,
    connect = 60000,
    connack = 30000,
    suback = 30000,
    puback = 30000,
    cleanup = 5000,             -- closing sessions when a run ends early
  },
  limits = {
    mpub = 4100,                -- bytes in AT+MPUB's quotes
    message = 4100,             -- bytes of an incoming message (MSUB.md)
    mconfig_field = 256,
    mqtt_slots = 4,
    upload_chunk = 1024,
  },
  http = {
    init = "AT+HTTPINIT",
    term = "AT+HTTPTERM",
    url = 'AT+HTTPPARA="URL","%s"',
    header = 'AT+HTTPPARA="USER_DEFINED","%s"',
    data = "AT+HTTPDATA=%d,%d",
    data_prompt = "DOWNLOAD",
    action = "AT+HTTPACTION=%d",
    -- The outcome of AT+HTTPACTION, before or after its OK, with or
    -- without a space (DIALECTS.md §3); a repeated one is ignored. The
    -- length is written (%-?%d+) so a negative one is reported, not
    -- waited past. After OK, an error line is a failed request.
    action_urc = "^%+HTTPACTION: ?(%d+),(%d+),(%-?%d+)",
    action_fail = { "^%+CME ERROR", "ERROR" },
    read = "AT+HTTPREAD",
    -- The body as a counted payload; max: the largest body accepted in
    -- one read (the module's own limit is not documented).
    read_reply = { "^%+HTTPREAD: ?(%-?%d+)", count = 1, max = 1048576 },
  },
  fs = {
    create = 'AT+FSCREATE="%s"',
    write = 'AT+FSWRITE="%s",0,%d,%d',
    prompt = ">",
  },
  ssl = {
    cacert = 'AT+SSLCFG="cacert",88,"%s"',
    clientcert = 'AT+SSLCFG="clientcert",88,"%s"',
    clientkey = 'AT+SSLCFG="clientkey",88,"%s"',
    seclevel = 'AT+SSLCFG="seclevel",88,%d',
  },
  mqtt = {
    config = "AT+MCONFIG=%s,%s,%s",
    start = "AT+MIPSTART=%s,%d",
    start_tls = "AT+SSLMIPSTART=%s,%d",
    -- Outcome URCs: before or after the command's OK (firmware differs).
    -- "ERROR" and "+CME ERROR" here only mean a line after OK.
    connect_ok = { "CONNECT OK", "ALREADY CONNECT" },
    connect_fail = { "CONNECT FAIL", "^%+CME ERROR", "ERROR", "CLOSED" },
    connect = "AT+MCONNECT=%d,%d",
    connack_ok = "CONNACK OK",
    connack_fail = { "^CONNACK FAIL", "^CONNACK ERROR", "^%+CME ERROR", "CLOSED", "ERROR" },
    sub = "AT+MSUB=%s,%d",
    suback = "SUBACK",
    suback_fail = { "^%+CME ERROR", "ERROR" },   -- a refused SUBSCRIBE
    unsub = "AT+MUNSUB=%s",
    unsuback = "UNSUBACK",
    unsuback_fail = { "^%+CME ERROR", "ERROR" },
    pub = "AT+MPUB=%s,%d,%d,%s",
    pubex = "AT+MPUBEX=%s,%d,%d,%d",
    puback = "PUBACK",
    puback_fail = { "^%+CME ERROR", "ERROR" },
    msgset = "AT+MQTTMSGSET=%d",       -- 0 direct, 1 cached
    msgget = "AT+MQTTMSGGET",
    mode = "AT+MQTTMODE=%d",           -- 0 ascii, 1 hex
    status = "AT+MQTTSTATU",
    -- "+MQTTSTATU :0" (003) and "+MQTTSTATU: 0"
    status_reply = "^%+MQTTSTATU ?: ?(%d)",
    disconnect = "AT+MDISCONNECT",
    close = "AT+MIPCLOSE",
    -- Incoming messages. Direct delivery carries the payload: "+MSUB:
    -- "<topic>",<n> byte,<payload>" (003), or "<n>," without " byte"
    -- (MQTTMSGSET.md, DIALECTS.md 3). ASCII payloads are counted (a count
    -- above limits.message is an error); the count may be negative on a
    -- broken module, so it is captured with its sign and refused.
    message = {
      { '^%+MSUB: "([^"]*)",(%-?%d+) byte,', count = 2 },
      { '^%+MSUB: "([^"]*)",(%-?%d+),', count = 2 },
    },
    -- HEX mode: hex digits cannot hold a line end, so the line is the
    -- message; its count is checked against it (hex_count).
    message_hex = {
      '^%+MSUB: "([^"]*)",(%-?%d+) byte,(.*)$',
      '^%+MSUB: "([^"]*)",(%-?%d+),(.*)$',
    },
    -- What <n> counts in HEX mode: "bytes" (the payload), "chars" (the
    -- hex characters), or "auto" (whichever the line fits; references
    -- never show a hex incoming line).
    hex_count = "auto",
    -- Cached delivery names a slot; AT+MQTTMSGGET prints the messages with
    -- the topic unquoted (003) or quoted.
    cached = "^%+MSUB: (%d+)$",
    cached_message = {
      { '^%+MSUB: "([^"]*)",(%-?%d+) byte,', count = 2 },
      { '^%+MSUB: "([^"]*)",(%-?%d+),', count = 2 },
      { '^%+MSUB: ([^",]*),(%-?%d+) byte,', count = 2 },
      { '^%+MSUB: ([^",]*),(%-?%d+),', count = 2 },
    },
    cached_message_hex = {
      '^%+MSUB: "([^"]*)",(%-?%d+) byte,(.*)$',
      '^%+MSUB: "([^"]*)",(%-?%d+),(.*)$',
      '^%+MSUB: ([^",]*),(%-?%d+) byte,(.*)$',
      '^%+MSUB: ([^",]*),(%-?%d+),(.*)$',
    },
    closed = "CLOSED",
  },
  -- After the bearer is lost (reference 003; DIALECTS.md 3 for +CGEV):
  -- cached messages are read, AT+CIPSHUT, then the ladder, one rung after
  -- another until one brings MQTT back ("%s": the APN; reboot: the module
  -- restarts and is brought up again). Never AT+SAPBR: that is HTTP's.
  recovery = {
    bearer_lost = { "+PDP DEACT", "^%+CGEV: NW PDN DEACT", "^%+CGEV: ME PDN DEACT" },
    shut = "AT+CIPSHUT",
    shut_ok = { "SHUT OK" },           -- its final; OK also ends it
    ladder = {
      { 'AT+CGDCONT=5,"IP","%s"', "AT+CGACT=1,5" },
      { "AT+CFUN=0", "AT+CFUN=1" },
      { "AT+RESET", reboot = true },
    },
  },
}
