-- Quectel EC200U (LTE Cat 1): the Quectel command family, DIALECTS.md §1,
-- §4.1, §4.2. EC2x/EG2x speak the same family and are detected by the
-- "Quectel" word too (the EC200U quirks below are harmless there).
-- Where §1 is unconfirmed, the field says so and names the other reading.
-- "<idx>" in a pattern is the MQTT client index, "<cid>" the PDP context.
return {
  name = "ec200u",
  vendor = "Quectel",
  dialect = "quectel",          -- lib/athost/dialect/quectel.lua
  can = { mqtt = true, http = true, files = true, tls = true },
  -- AT+CGMI "Quectel"; ATI "Quectel" / "EC200U" / "Revision: ..." (§1.11).
  detect = { "EC200U", "Quectel" },
  -- A fresh boot restores ATE1 (§1.11): the bring-up and every restart
  -- send ATE0 (the engine skips an echo anyway).
  echo_off = "ATE0",
  gap_ms = 20,                  -- after a final result (PROTOCOLS.md)
  -- Text errors; §1.11: some stay numeric on the same firmware, so every
  -- check below takes a number and a text (files.exists, ...).
  cmee = "AT+CMEE=2",
  sim_ready = { cmd = "AT+CPIN?", ok = "+CPIN: READY" },
  registration = { cmd = "AT+CEREG?", pattern = "^%+CEREG: %d,(%d)",
                   ok = { ["1"] = true, ["5"] = true } },
  attach = { cmd = "AT+CGATT?", pattern = "^%+CGATT: (%d)", ok = "1" },
  -- The data bearer (§1.7): context 1, IPv4, no auth. On LTE the attach
  -- has brought it up already and redefining or activating it errors:
  -- an error of these is taken as "already active" (its text is
  -- unconfirmed), and AT+QIACT? decides when it answers.
  bearer = { 'AT+QICSGP=1,1,"%s","","",0', "AT+QIACT=1" },
  bearer_query = { cmd = "AT+QIACT?", pattern = "^%+QIACT: 1,(%d)", ok = "1" },
  bearer_tolerate = { "ERROR", "+CME ERROR" },
  default_apn = "CMIIOT",
  timeouts = {                  -- ms, by command name
    default = 5000,
    ["AT+QIACT"] = 150000,      -- PDP activation (§1.7)
    ["AT+QIDEACT"] = 40000,
    ["AT+CFUN"] = 15000,
    ["AT+QMTOPEN"] = 10000,     -- OK at once, +QMTOPEN later (waits.open)
    ["AT+QMTCONN"] = 10000,
    ["AT+QMTSUB"] = 10000,
    ["AT+QMTUNS"] = 10000,
    ["AT+QMTPUBEX"] = 20000,    -- the prompt, the bytes, OK
    ["AT+QMTPUB"] = 20000,
    ["AT+QMTRECV"] = 10000,
    ["AT+QMTDISC"] = 10000,
    ["AT+QMTCLOSE"] = 10000,
    ["AT+QFUPL"] = 120000,      -- the CONNECT, the bytes, +QFUPL, OK
    -- CONNECT can be slow over TLS and a short wait wedged the HTTP
    -- stack (§1.10): a caller's opts.timeout replaces these.
    ["AT+QHTTPURL"] = 90000,
    ["AT+QHTTPPOST"] = 90000,
    ["AT+QHTTPGET"] = 90000,
    ["AT+QHTTPREAD"] = 90000,
  },
  waits = {                     -- ms, for URCs that end a dialogue
    registration = 150000,
    attach = 150000,
    open = 75000,               -- +QMTOPEN: network-dependent (§1.2)
    connack = 30000,            -- +QMTCONN: pkt_timeout x retries
    suback = 30000,
    puback = 30000,             -- +QMTPUBEX: 15 s by default (§1.4)
    disc = 10000,               -- +QMTDISC
    http = 90000,               -- +QHTTPPOST / +QHTTPGET
  },
  limits = {
    publish = 4096,             -- BG95's maximum (§1.4); EC200U's unconfirmed
    message = 1048576,          -- an incoming count above it is refused
    topic = 255,
  },
  mqtt = {
    client = 0,                 -- <idx>, 0-5
    pdpcid = 1,
    version = 4,                -- MQTT 3.1.1, always
    -- "pubex": AT+QMTPUBEX=...,<len>, outcome +QMTPUBEX (EC2x, EC200U);
    -- "pub": AT+QMTPUB=...,<len>, outcome +QMTPUB (BG95's form) (§1.4).
    publish = "pubex",
    -- recv/mode <len_en>: 1 asks for the length form; a module that
    -- ignores it is still read (message_bare) when it can be framed.
    recv_length = true,
    -- Incoming messages (§1.5). With length: exactly <len> bytes after
    -- ,", then " and the line end (the trailer).
    message = { '^%+QMTRECV: <idx>,(%d+),"([^"]*)",(%-?%d+),"', count = 3, trailer = '"' },
    -- Without length: the payload runs to the last " of the line; one
    -- holding a line end cannot be framed (message_unframed).
    message_bare = '^%+QMTRECV: <idx>,(%d+),"([^"]*)","(.*)"$',
    -- Buffered mode (recv/mode 1): two fields are the notice of a slot.
    notice = "^%+QMTRECV: <idx>,(%d+)$",
    -- Any other +QMTRECV line of this client: a message that cannot be
    -- framed, reported, never guessed at.
    message_unframed = "^%+QMTRECV: <idx>,",
    -- Link loss (§1.6): +QMTSTAT with any code; +QMTPING's codes are
    -- unconfirmed, so every +QMTPING is taken as one too.
    link_lost = { "^%+QMTSTAT: <idx>,", "^%+QMTPING: <idx>," },
    -- +QMTOPEN results that mean the bearer is gone (3: PDP activation
    -- failed): recovery climbs the ladder rather than reopening.
    open_bearer_lost = { 3 },
    -- On EC200U AT+QMTDISC closes the socket too, and a QMTCLOSE after it
    -- never sends +QMTCLOSE (§1.2, §4.1): disconnect() sends QMTDISC
    -- alone. true: QMTCLOSE after it (other Quectels), its URC taken if
    -- it comes, never waited for.
    close_after_disc = false,
  },
  tls = {
    ctx = 2,                    -- the SSL context of MQTT and HTTPS (§4.1)
    sslversion = 4,             -- all
    ciphersuite = "0xFFFF",     -- all
  },
  http = {
    contextid = 1,
    -- Sent before every request; responseheader 0 keeps the body alone.
    config = { '"requestheader",0', '"responseheader",0' },
    -- EC200U takes an index, never a MIME string (§1.10); a type not
    -- listed is refused by name. This is the index table of Quectel's
    -- HTTP(S) manual (DIALECTS.md 1.10 calls it unconfirmed: correct it
    -- here if a module sends another type). Parameters such as
    -- "; charset=UTF-8" are not part of the lookup.
    content_types = {
      ["application/x-www-form-urlencoded"] = 0, ["text/plain"] = 1,
      ["application/octet-stream"] = 2, ["multipart/form-data"] = 3,
      ["application/json"] = 4, ["image/jpeg"] = 5,
    },
    url_s = 80,                 -- AT+QHTTPURL=<len>,<s>
    input_s = 80,               -- AT+QHTTPPOST=<len>,<input_s>,<resp_s>
    response_s = 80,
    read_s = 80,                -- AT+QHTTPREAD=<s>
    max_body = 1048576,         -- the largest response read
  },
  files = {
    drive = "UFS:",
    -- AT+QFUPL's <timeout> for the data: seconds per BG96 drivers, and
    -- Quectel's SDK passes 20000 (§1.8: the unit is unconfirmed). 20000
    -- is ample in either unit (20 s as milliseconds); nil leaves it out.
    timeout = 20000,
    -- +QFUPL: <size>,<hex>: the size is always checked; the checksum
    -- ("xor16": Quectel's 16-bit XOR, either byte order) only when set,
    -- as its algorithm is unconfirmed (§1.8).
    checksum = false,
    -- +CME ERROR numbers and CMEE=2 texts (lower case, found in the
    -- text) of a missing and an existing file.
    not_found = { 405, "not found", "not exist", "no such" },
    exists = { 407, "already exist" },
  },
  -- After a lost bearer (+QIURC: "pdpdeact",<cid> [RTT], +CGEV on newer
  -- firmware): the client is closed, then the ladder, one rung after
  -- another until MQTT is back. AT+CFUN=1,1 (3GPP 27.007: reset) is the
  -- last rung; DIALECTS.md names no Quectel reset command.
  recovery = {
    bearer_lost = { '^%+QIURC: "pdpdeact",<cid>$', "^%+CGEV: NW PDN DEACT",
                    "^%+CGEV: ME PDN DEACT" },
    ladder = {
      { "AT+QIDEACT=1", "AT+QIACT=1", tolerate = { "ERROR", "+CME ERROR" } },
      { "AT+CFUN=0", "AT+CFUN=1" },
      { "AT+CFUN=1,1", reboot = true },
    },
  },
}
