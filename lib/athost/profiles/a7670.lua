-- SIMCom A7670 (A7600/A76xx; SIM7600 speaks the same family): MQTT through
-- AT+CMQTT*, HTTP through AT+HTTP*, certificates through AT+CCERTDOWN, TLS
-- through AT+CSSLCFG (lib/athost/dialect/simcom.lua). Every field is from
-- DIALECTS.md §2, §4.3, §4.4, §5; where it lists two forms or says
-- "unconfirmed", both are read and the choice we send is a field here.
-- In the patterns, "{idx}" stands for the MQTT client index.
return {
  name = "a7670",
  vendor = "SIMCom",
  dialect = "simcom",           -- lib/athost/dialect/simcom.lua
  can = { mqtt = true, http = true, files = true, tls = true },
  -- Identification (§2.8): AT+CGMI "SIMCOM INCORPORATED"; A76xx print
  -- "Manufacturer: INCORPORATED" and "Model: A7670G-LLSE"/"A7608SA-H";
  -- SIM7600 "SIMCOM_SIM7600E-H"; SIM7670G "SIM7670G-MNGV". Models match
  -- by prefix (A7670C's text is unconfirmed).
  detect = { "SIMCOM", "Manufacturer: INCORPORATED", "Model: A76", "A7670",
             "A7672", "A7600", "A7608", "SIM7600", "SIM7670" },
  echo_off = "ATE0",
  gap_ms = 20,
  cmee = "AT+CMEE=1",
  sim_ready = { cmd = "AT+CPIN?", ok = "+CPIN: READY" },
  -- An LTE Cat-1 module: EPS registration (27.007; DIALECTS.md names no
  -- registration query).
  registration = { cmd = "AT+CEREG?", pattern = "^%+CEREG: %d,(%d)",
                   ok = { ["1"] = true, ["5"] = true } },
  attach = { cmd = "AT+CGATT?", pattern = "^%+CGATT: (%d)", ok = "1" },
  -- §2.6: a PDP context for HTTP; MQTT needs none of it (AT+CMQTTSTART
  -- activates the context by itself).
  bearer = { 'AT+CGDCONT=1,"IP","%s"', "AT+CGACT=1,1" },
  bearer_query = { cmd = "AT+CGACT?", pattern = "^%+CGACT: 1,(%d)", ok = "1" },
  default_apn = "CMNET",
  timeouts = {                  -- ms, by command name
    default = 5000,
    ["AT+CMQTTSTART"] = 15000,  -- "≤12 s" (§2.1)
    ["AT+CMQTTSTOP"] = 15000,
    -- OK may be held until the outcome URC: a broker's answer fits.
    ["AT+CMQTTCONNECT"] = 130000,
    ["AT+CMQTTSUB"] = 130000,
    ["AT+CMQTTUNSUB"] = 130000,
    ["AT+CMQTTPUB"] = 130000,
    ["AT+CMQTTDISC"] = 130000,
    ["AT+CMQTTTOPIC"] = 15000,
    ["AT+CMQTTPAYLOAD"] = 30000,
    ["AT+CCERTDOWN"] = 125000,  -- "≤120 s" (§2.5)
    ["AT+HTTPACTION"] = 125000, -- "≤120 s" (§2.7)
    ["AT+HTTPREAD"] = 60000,
    ["AT+HTTPDATA"] = 30000,
    ["AT+CGACT"] = 150000,
    ["AT+CFUN"] = 15000,
  },
  waits = {                     -- ms, for the URCs that end a dialogue
    registration = 150000,
    attach = 150000,
    start = 15000,              -- +CMQTTSTART: 0
    stop = 15000,
    -- CONNECT/SUB/UNSUB: the module gives up after "optimeout" (120 s).
    connect = 130000,
    suback = 130000,
    puback = 65000,             -- pub_timeout (60 s) + slack
    disc = 125000,              -- the DISC timeout (120 s) + slack
    disc_lost = 10000,          -- the same after a lost link or bearer
    -- After a bare ERROR, how long the +CMQTTxxx: <idx>,<err> that names
    -- the reason may take (documented after ERROR too, §2.1).
    error_urc = 1500,
    http = 125000,
    http_read = 60000,
  },
  limits = {
    client_id = 128,            -- §2.1
    address = 256,              -- "tcp://host:port"
    credential = 256,           -- user, password
    topic = 1024,               -- §2.2, §2.3
    payload = 10240,            -- AT+CMQTTPAYLOAD, and an incoming payload
    cert = 10240,               -- AT+CCERTDOWN
    cert_name = 108,
    http_data = 153600,         -- AT+HTTPDATA
  },
  mqtt = {
    idx = 0,                    -- the client index (0-1)
    start = "AT+CMQTTSTART",
    start_ok = "^%+CMQTTSTART: ?0$",
    start_fail = "^%+CMQTTSTART: ?(%d+)$",
    -- "already started" is a bare ERROR (§2.1); 23 is "network already
    -- open": the service is up either way.
    start_tolerate = { "ERROR", "^%+CMQTTSTART: ?23$" },
    stop = "AT+CMQTTSTOP",
    stop_ok = "^%+CMQTTSTOP: ?0$",
    stop_fail = "^%+CMQTTSTOP: ?(%d+)$",
    -- server_type 1: TLS (the address stays tcp://).
    accq = "AT+CMQTTACCQ=%d,%s,%d",
    accq_fail = "^%+CMQTTACCQ: ?{idx},(%d+)$",
    accq_used = 19,             -- "client is used": DISC, REL, ACCQ again
    rel = "AT+CMQTTREL=%d",
    sslcfg = "AT+CMQTTSSLCFG=%d,%d",
    -- 3.1 is the default; 4 = MQTT 3.1.1 (§2.1).
    version = 'AT+CMQTTCFG="version",%d,4',
    address = "tcp://%s:%d",
    connect = "AT+CMQTTCONNECT=%d,%s,%d,%d",   -- then ,"user"[,"pass"]
    connect_ok = "^%+CMQTTCONNECT: ?{idx},0$",
    connect_fail = "^%+CMQTTCONNECT: ?{idx},(%d+)$",
    -- One topic in one step (§2.2): ">", the topic bytes, OK, outcome.
    sub = "AT+CMQTTSUB=%d,%d,%d",
    suback = "^%+CMQTTSUB: ?{idx},0$",
    suback_fail = "^%+CMQTTSUB: ?{idx},(%d+)$",
    -- Unsubscribe: two steps as the drivers do (AT+CMQTTUNSUBTOPIC, then
    -- AT+CMQTTUNSUB=<idx>,<dup>), or the one-step <idx>,<len>,<dup> form
    -- the test output implies: unsub_steps = 2 | 1.
    unsub_steps = 2,
    unsubtopic = "AT+CMQTTUNSUBTOPIC=%d,%d",
    unsub = "AT+CMQTTUNSUB=%d,0",
    unsub_one = "AT+CMQTTUNSUB=%d,%d,0",
    unsuback = "^%+CMQTTUNSUB: ?{idx},0$",
    unsuback_fail = "^%+CMQTTUNSUB: ?{idx},(%d+)$",
    topic = "AT+CMQTTTOPIC=%d,%d",
    payload = "AT+CMQTTPAYLOAD=%d,%d",
    -- pub_timeout: 1-180 in the manual, 60-180 in a driver: 60.
    pub = "AT+CMQTTPUB=%d,%d,%d",
    pub_retain = "AT+CMQTTPUB=%d,%d,%d,1",
    pub_timeout = 60,
    puback = "^%+CMQTTPUB: ?{idx},0$",
    puback_fail = "^%+CMQTTPUB: ?{idx},(%d+)$",
    disc = "AT+CMQTTDISC=%d,%d",
    disc_timeout = 120,
    disc_ok = "^%+CMQTTDISC: ?{idx},0$",
    disc_fail = "^%+CMQTTDISC: ?{idx},(%d+)$",
    -- The data prompt: ">" with or without a space or a line end (§5).
    prompt = ">",
    -- The receive block (§2.3). Topic and payload pieces are counted;
    -- whether CR LF follows the raw bytes is unconfirmed: one of
    -- rx_trailer's bytes must follow them, the CR of that line end or
    -- the "+" of the next +CMQTTRX line.
    rx_start = "^%+CMQTTRXSTART: ?(%d+),(%-?%d+),(%-?%d+)$",
    rx_topic = "^%+CMQTTRXTOPIC: ?(%d+),(%-?%d+)",
    rx_payload = "^%+CMQTTRXPAYLOAD: ?(%d+),(%-?%d+)",
    rx_end = "^%+CMQTTRXEND: ?(%d+)$",
    rx_trailer = "\r\n+",
    -- Failure codes after which the link is gone: recover, then retry
    -- (11 no connection, 15 require connection, 26 closed by server).
    lost_codes = { [11] = true, [15] = true, [26] = true },
    -- Link loss (§2.4): each needs a new CONNECT; +CMQTTNONET also a new
    -- AT+CMQTTSTART (restart).
    link_lost = { "^%+CMQTTCONNLOST: ?%d+,%d+", "+CMQTTNONET", "^%+CMQTTPING: ?%d+,%d+" },
    restart = { "+CMQTTNONET" },
  },
  http = {
    init = "AT+HTTPINIT",
    term = "AT+HTTPTERM",
    url = 'AT+HTTPPARA="URL","%s"',
    content = 'AT+HTTPPARA="CONTENT","%s"',
    -- HTTPS: the SSL context (tls.ctx), for https:// URLs only.
    ssl_ctx = 'AT+HTTPPARA="SSLCFG",%d',
    -- <time>: seconds (10-65535) in the text, milliseconds in its example
    -- and drivers; 10000 is valid read either way.
    data = "AT+HTTPDATA=%d,%d",
    data_time = 10000,
    data_prompt = "DOWNLOAD",
    action = "AT+HTTPACTION=%d",
    action_urc = "^%+HTTPACTION: ?(%d+),(%d+),(%-?%d+)",
    action_fail = { "^%+CME ERROR", "ERROR" },
    -- AT+HTTPREAD=<offset>,<size>: OK first, then +HTTPREAD: <n> (A76xx)
    -- or +HTTPREAD: DATA,<n> (SIM7600) and n bytes, repeated, then
    -- +HTTPREAD: 0 (§2.7). Either order of OK and the chunks is read.
    read = "AT+HTTPREAD=%d,%d",
    read_chunks = {
      { "^%+HTTPREAD: ?(%-?[1-9]%d*)", count = 1, max = 153600, trailer = "\r\n+" },
      { "^%+HTTPREAD: ?DATA,(%-?[1-9]%d*)", count = 1, max = 153600, trailer = "\r\n+" },
    },
    read_end = { "^%+HTTPREAD: ?0$", "^%+HTTPREAD: ?DATA,0$" },
    read_fail = { "^%+CME ERROR", "ERROR" },
    read_reply = { max = 1048576 },   -- the largest body accepted
    -- +HTTPACTION statuses that are the module's errors (§2.7).
    errors = {
      [600] = "not an HTTP PDU", [601] = "network error", [602] = "no memory",
      [603] = "DNS error", [604] = "stack busy",
      [701] = "alert state", [702] = "unknown error", [703] = "busy",
      [704] = "connection closed", [705] = "timeout", [706] = "socket send/receive error",
      [707] = "file/memory error", [708] = "bad parameter", [709] = "network error",
      [710] = "SSL session error", [711] = "wrong state", [712] = "socket creation failed",
      [713] = "DNS error", [714] = "socket connect failed", [715] = "TLS handshake failed",
      [716] = "socket close error", [717] = "no network", [718] = "send timeout",
      [719] = "CA certificate missing",
    },
  },
  -- Certificates (§2.5): AT+CCERTDOWN="<name>",<len>, ">", the bytes, OK.
  -- Names must end .pem or .der (5-108 characters): another name is
  -- mapped, "ca.crt" -> "ca_crt.pem", and the mapped one returned.
  files = {
    certdown = 'AT+CCERTDOWN="%s",%d',
    extensions = { ".pem", ".der" },
    map_extension = ".pem",
  },
  tls = {
    ctx = 0,                    -- the SSL context MQTT and HTTPS use
    sslversion = 'AT+CSSLCFG="sslversion",%d,4',   -- 4: all versions
    authmode = 'AT+CSSLCFG="authmode",%d,%d',     -- 0 none, 1 server, 2 mutual
    cacert = 'AT+CSSLCFG="cacert",%d,"%s"',
    clientcert = 'AT+CSSLCFG="clientcert",%d,"%s"',
    clientkey = 'AT+CSSLCFG="clientkey",%d,"%s"',
    sni = 'AT+CSSLCFG="enableSNI",%d,1',          -- default 0; drivers set 1
  },
  -- After the bearer is lost (+CGEV: NW/ME PDN DEACT, +CIPEVENT: NETWORK
  -- CLOSED UNEXPECTEDLY, §2.6): the MQTT client and service are released
  -- (DISC, REL, STOP), then the ladder until a rung brings MQTT back.
  -- DIALECTS.md names no reset command: the last rung is 27.007's
  -- AT+CFUN=1,1 (full functionality with a reset).
  recovery = {
    bearer_lost = { "^%+CGEV: NW PDN DEACT", "^%+CGEV: ME PDN DEACT",
                    "+CIPEVENT: NETWORK CLOSED UNEXPECTEDLY" },
    ladder = {
      { 'AT+CGDCONT=1,"IP","%s"', "AT+CGACT=1,1" },
      { "AT+CFUN=0", "AT+CFUN=1" },
      { "AT+CFUN=1,1", reboot = true },
    },
  },
}
