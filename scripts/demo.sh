#!/bin/sh
# make demo [MODEM=air720]: the Aliyun dialogue of reference 000, end to
# end, with nothing but this machine: a real mosquitto broker (TLS), the
# local Aliyun auth service (HTTPS), and the virtual modem MODEM (default
# air720; another virtual modem of athost.sim with HTTP, e.g. air780e) on
# a pty, started as scripts/sim/$MODEM.lua. The flow registers the
# device with a product secret, stores the device secret, gets
# iotId/iotToken, connects over TLS, subscribes, publishes, and prints the
# message that mosquitto_pub sends it. Everything started here is stopped
# on exit.
set -u
cd "$(dirname "$0")/.." || exit 2
ROOT=$(pwd)
ATHOST=${ATHOST:-$ROOT/athost}
MODEM=${MODEM:-air720}

# The virtual modems athost.sim knows; anything else stops here, before
# anything is started.
KNOWN=$("$ATHOST" -e 'local n = {}
for k in pairs(require("athost.sim").models) do n[#n + 1] = k end
table.sort(n) print(table.concat(n, " "))') || exit 2
# The ME3630 has no HTTP commands: it cannot register with a product
# secret, which is what this demo shows.
NO_HTTP="me3630"
for m in $NO_HTTP; do
    KNOWN=$(echo " $KNOWN " | sed "s/ $m / /; s/^ *//; s/ *\$//")
done
case " $NO_HTTP " in
*" $MODEM "*)
    echo "demo: MODEM=$MODEM has no HTTP commands, so it cannot register a device" \
        "with a product secret as this demo does (MODEM: $(echo "$KNOWN" | sed 's/ /, /g'))" >&2
    exit 2
    ;;
esac
case " $KNOWN " in
*" $MODEM "*) ;;
*)
    echo "demo: unknown MODEM=$MODEM (known: $(echo "$KNOWN" | sed 's/ /, /g'))" >&2
    exit 2
    ;;
esac
if [ ! -f "scripts/sim/$MODEM.lua" ]; then
    echo "demo: MODEM=$MODEM has no scripts/sim/$MODEM.lua" >&2
    exit 2
fi
DIR=$(mktemp -d "${TMPDIR:-/tmp}/athost-demo.XXXXXX")
PK=a1DemoProd01
PS=$(openssl rand -hex 8)
IMEI=862991419835241
REGION=cn-shanghai
AUTH_PID=
SIM_PID=
PUB_PID=

stop() {
    for pid in $PUB_PID $SIM_PID $AUTH_PID; do
        kill "$pid" 2>/dev/null
    done
    wait 2>/dev/null
    bash tests/fixtures/broker.sh stop "$DIR/broker" >/dev/null 2>&1
    rm -rf "$DIR"
}
trap stop EXIT
trap 'exit 130' INT TERM

say() { printf '\n=== %s\n' "$*"; }

# Waits (bounded) until file $1 contains $2.
wait_for() {
    n=0
    until grep -q "$2" "$1" 2>/dev/null; do
        n=$((n + 1))
        if [ $n -gt 300 ]; then
            echo "demo: gave up waiting for '$2' in $1" >&2
            cat "$1" >&2 2>/dev/null
            exit 1
        fi
        sleep 0.1
    done
}

say "mosquitto broker (password file, plain and TLS listeners)"
eval "$(bash tests/fixtures/broker.sh start "$DIR/broker")" || exit 1
echo "broker on 127.0.0.1:$BROKER_PORT, TLS on 127.0.0.1:$BROKER_TLS_PORT"

say "local Aliyun auth service (HTTPS), product $PK"
"$ATHOST" scripts/sim/aliyun-auth.lua port=0 "products=$PK:$PS" \
    "broker_host=$PK.iot-as-mqtt.$REGION.aliyuncs.com" broker_port=1883 \
    "tls_cert=$BROKER_DIR/server.pem" "tls_key=$BROKER_DIR/server.key" \
    "broker_adduser=bash $ROOT/tests/fixtures/broker.sh adduser $DIR/broker" \
    >"$DIR/auth.out" 2>&1 &
AUTH_PID=$!
wait_for "$DIR/auth.out" "listening on"
AUTH_PORT=$(sed -n 's/.*listening on .*:\([0-9]*\)$/\1/p' "$DIR/auth.out")
echo "auth service on 127.0.0.1:$AUTH_PORT"

TTY=$DIR/tty$MODEM
say "virtual $MODEM on a pty ($TTY)"
"$ATHOST" "scripts/sim/$MODEM.lua" "link=$TTY" "imei=$IMEI" \
    "hosts=iot-auth.$REGION.aliyuncs.com=127.0.0.1:$AUTH_PORT,$PK.iot-as-mqtt.$REGION.aliyuncs.com:1883=127.0.0.1:$BROKER_TLS_PORT" \
    >"$DIR/sim.out" 2>&1 &
SIM_PID=$!
wait_for "$DIR/sim.out" "/dev/pts"

# The cloud side: once the device has subscribed (the broker logs it),
# send it a message.
TOPIC="/$PK/$IMEI/user/get"
(
    wait_for "$BROKER_DIR/mosquitto.log" "$TOPIC"
    mosquitto_pub -h 127.0.0.1 -p "$BROKER_PORT" -u "$BROKER_USER" \
        -P "$BROKER_PASS" -t "$TOPIC" -q 1 -m "hello from the cloud" &&
        echo "(mosquitto_pub sent 'hello from the cloud' to $TOPIC)" >&2
) &
PUB_PID=$!

say "athost clouds/aliyun.lua -p $TTY product_key=$PK product_secret=*** (transcript on stderr)"
{
    "$ATHOST" -l - clouds/aliyun.lua -p "$TTY" "product_key=$PK" \
        "product_secret=$PS" "state_dir=$DIR/state" \
        'publish={"temperature":21.5}' listen=30 messages=1
    echo $? >"$DIR/flow.status"
} | tee "$DIR/flow.out"
status=$(cat "$DIR/flow.status")

say "result"
if grep -q "message on $TOPIC: hello from the cloud" "$DIR/flow.out"; then
    echo "the device received: hello from the cloud"
    exit "$status"
fi
echo "demo: the flow did not print the message it should have received" >&2
exit 1
