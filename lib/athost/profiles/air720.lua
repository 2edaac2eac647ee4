-- Luat Air720 (AirM2M LTE AT firmware), references 000, 001, 003.
-- Limits not confirmed for the Air720 itself (PROTOCOLS.md) are the Luat
-- family's; change them here, not in flows.
return {
  name = "air720",
  vendor = "Luat",
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
  shut = "AT+CIPSHUT",
  shut_ok = "SHUT OK",          -- its final result (SIMCom-style), not OK
  timeouts = {                  -- ms, by command name
    default = 5000,
    ["AT+SAPBR"] = 85000,
    ["AT+HTTPACTION"] = 5000,   -- OK comes at once; the URC later
    ["AT+MIPSTART"] = 5000,
    ["AT+SSLMIPSTART"] = 5000,
    ["AT+MCONNECT"] = 5000,
    ["AT+CIPSHUT"] = 65000,
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
  },
  limits = {
    mpub = 4100,                -- bytes in AT+MPUB's quotes
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
    action_urc = "^%+HTTPACTION: ?(%d+),(%d+),(%d+)",
    read = "AT+HTTPREAD",
    read_reply = { "^%+HTTPREAD: ?(%d+)", count = 1 },
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
    connect_ok = { "CONNECT OK", "ALREADY CONNECT" },
    connect_fail = { "CONNECT FAIL", "+CME ERROR", "ERROR", "CLOSED" },
    connect = "AT+MCONNECT=%d,%d",
    connack_ok = "CONNACK OK",
    connack_fail = { "^CONNACK FAIL", "^CONNACK ERROR", "^%+CME ERROR", "CLOSED", "ERROR" },
    sub = "AT+MSUB=%s,%d",
    suback = "SUBACK",
    suback_fail = { "^%+CME ERROR", "ERROR", "CLOSED" },   -- a refused SUBSCRIBE
    unsub = "AT+MUNSUB=%s",
    unsuback = "UNSUBACK",
    pub = "AT+MPUB=%s,%d,%d,%s",
    pubex = "AT+MPUBEX=%s,%d,%d,%d",
    puback = "PUBACK",
    msgset = "AT+MQTTMSGSET=%d",       -- 0 direct, 1 cached
    msgget = "AT+MQTTMSGGET",
    mode = "AT+MQTTMODE=%d",           -- 0 ascii, 1 hex
    status = "AT+MQTTSTATU",
    status_reply = "^%+MQTTSTATU ?: ?(%d)",
    disconnect = "AT+MDISCONNECT",
    close = "AT+MIPCLOSE",
    -- Incoming messages: direct delivery carries the payload, cached
    -- delivery names a slot to read with msgget (reference 003).
    message = { '^%+MSUB: "([^"]*)",(%d+) byte,', count = 2 },
    cached = "^%+MSUB: (%d+)$",
    cached_message = { '^%+MSUB: "?([^",]*)"?,(%d+) byte,', count = 2 },
    closed = "CLOSED",
    pdp_deact = "+PDP DEACT",
  },
}
