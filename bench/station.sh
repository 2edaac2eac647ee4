#!/usr/bin/env bash
# bench/station.sh ATHOST_BINARY   (bench/run.sh runs it last: `make bench`)
#
# What is measured: one station process, `athost --ports-file` with N lines
# (each of BENCH_STATION_N, default "256 1000", and 1), provisioning N
# virtual Air720s at once with clouds/mqtt.lua (autobaud, identification,
# network, MQTT connect, publish, disconnect) against local mosquittos
# (tests/fixtures/broker.sh), one per 80 DUTs: mosquitto listens with a
# backlog of 100, and N connections at once would overflow it (dropped
# SYNs, 1 s retransmits: the broker's limit, not the station's; a cloud
# broker takes thousands). The brokers check the password against a
# salted SHA-512 (mosquitto_passwd -H sha512) rather than mosquitto's
# default PBKDF2: 1,000 key derivations are a cloud broker's work on its
# own machines, and here took about 0.16 s more CPU of the two cores a
# 1,000-DUT run (mosquitto 0.29-0.37 s against 0.15-0.23 s).
# Per-DUT parameters (client id, topic, payload) come from a --table CSV;
# a JUnit report is written. The modems (as many
# as the largest N) are served by a separate athost process
# (bench/modems.lua: N models on N pty links, no artificial delays), so
# what the station itself does per DUT is what the wall time shows.
#
#   ratio     median wall time of the N-port runs / median of the 1-port
#             runs (same modems process, same broker, port 1 only; process
#             start-up included in both; the runs interleaved in rounds),
#             and the same of the best runs. Goal for the largest N: <= 3.
#   KiB/DUT   peak RSS of the N-port station (bench/rss, a run of its own)
#             / N; also the marginal cost (peak N - peak 1) / (N - 1).
#             Goal for the largest N: <= 96.
#   CPU/DUT   station CPU time (user + system) / N.
#
# With BENCH_FIGS set, each figure is appended there as a
# "name|value|goal|met" line for the table of bench/run.sh.
# The station runs every DUT as a shared host in one Lua state (the
# library compiled once). Then a profile: the Lua heap of the station's
# state with one DUT at the start and end of the flow, and, for
# comparison, the first N's run with ATHOST_STATION_ISOLATE=1 (a Lua
# state per DUT, the modules' bytecode cached per process), which shows
# what one state per DUT would cost.
# This is a benchmark: it fails only when a run fails (a DUT failed, a hang).
#
# Environment: BENCH_STATION_N (default "256 1000"), BENCH_STATION_RUNS
# (N-port runs, interleaved with the 1-port ones; default 5), BENCH_STATION_RUNS1 (1-port runs;
# default 5).

set -u

[ $# -eq 1 ] || { echo "usage: $0 ATHOST_BINARY" >&2; exit 2; }
NS=${BENCH_STATION_N:-256 1000}
RUNS=${BENCH_STATION_RUNS:-5}
RUNS1=${BENCH_STATION_RUNS1:-5}
N=0
for v in $NS; do
    case $v in '' | *[!0-9]* | 0) echo "station.sh: counts must be positive integers" >&2; exit 2 ;; esac
    [ "$v" -gt "$N" ] && N=$v
done
for v in "$RUNS" "$RUNS1"; do
    case $v in '' | *[!0-9]* | 0) echo "station.sh: counts must be positive integers" >&2; exit 2 ;; esac
done

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
build=$here/build
ATHOST=$1
case $ATHOST in */*) ATHOST=$(cd "$(dirname "$ATHOST")" && pwd)/$(basename "$ATHOST") ;; esac
FLOW=$root/clouds/mqtt.lua

skip() {
    echo "== station: SKIPPED ($1)"
    exit 0
}
for c in mosquitto mosquitto_pub mosquitto_passwd openssl timeout; do
    command -v "$c" >/dev/null 2>&1 || skip "'$c' is not installed"
done
[ -x "$build/rss" ] || { mkdir -p "$build" && cc -O2 -o "$build/rss" "$here/rss.c"; } || exit 2

# Every modem is a pty pair and an MQTT socket in the modems process, a
# pty in the station and a socket in mosquitto.
need=$((N * 3 + 256))
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$need" ]; then
    ulimit -n "$need" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
fi
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$need" ]; then
    echo "station.sh: need $need file descriptors, ulimit -n allows $(ulimit -n)" >&2
    exit 1
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/athost-station.XXXXXX") || exit 2
MODEMS_PID=
# shellcheck disable=SC2317  # invoked via trap
cleanup() {
    if [ -n "$MODEMS_PID" ]; then
        kill "$MODEMS_PID" 2>/dev/null
        wait "$MODEMS_PID" 2>/dev/null
    fi
    local d
    for d in "$tmp"/broker*; do
        [ -d "$d" ] && bash "$root/tests/fixtures/broker.sh" stop "$d" >/dev/null 2>&1
    done
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

NB=$(((N + 79) / 80))
echo "== station: $N virtual Air720s (one athost process) provisioned by one athost --ports-file ($NB brokers)"
BROKERS=
for ((b = 1; b <= NB; b++)); do
    d=$tmp/broker$b
    if [ "$b" -gt 1 ]; then    # the same certificates: no key generation
        mkdir -p "$d" && chmod 700 "$d" && cp "$tmp"/broker1/*.pem "$tmp"/broker1/*.key "$d"/
    fi
    if ! BROKER_PASSWD_HASH=sha512 bash "$root/tests/fixtures/broker.sh" start "$d" >"$tmp/broker$b.out" 2>&1; then
        cat "$tmp/broker$b.out" >&2
        echo "station.sh: broker.sh start failed" >&2
        exit 1
    fi
    BROKERS=$BROKERS${BROKERS:+,}127.0.0.1:$(sed -n 's/^BROKER_PORT=//p' "$d/broker.env")
done
BROKER_USER=$(sed -n "s/^BROKER_USER=//p" "$tmp/broker1/broker.env" | sed "s/^'\(.*\)'\$/\1/")
BROKER_PASS=$(sed -n "s/^BROKER_PASS=//p" "$tmp/broker1/broker.env" | sed "s/^'\(.*\)'\$/\1/")
BROKER_PORT=${BROKERS%%,*}
BROKER_PORT=${BROKER_PORT##*:}

mkdir -p "$tmp/m"
: >"$tmp/modems.out"
"$ATHOST" "$here/modems.lua" "n=$N" "dir=$tmp/m" "brokers=$BROKERS" >"$tmp/modems.out" 2>"$tmp/modems.err" &
MODEMS_PID=$!
for ((i = 0; i < 3000; i++)); do
    grep -q "^ready $N\$" "$tmp/modems.out" && break
    kill -0 "$MODEMS_PID" 2>/dev/null || break
    sleep 0.01
done
if ! grep -q "^ready $N\$" "$tmp/modems.out"; then
    echo "station.sh: the modems did not start: $(tail -n 5 "$tmp/modems.err")" >&2
    exit 1
fi

{
    echo "port,client_id,topic,publish"
    for ((i = 1; i <= N; i++)); do
        echo "$tmp/m/ttyAIR$i,bench-station-$i,bench/station/$i,hello from DUT $i"
    done
} >"$tmp/table.csv"
for ((i = 1; i <= N; i++)); do echo "$tmp/m/ttyAIR$i"; done >"$tmp/ports"
for n in 1 $NS; do head -n "$n" "$tmp/ports" >"$tmp/ports$n"; done

# station LABEL PORTS_FILE [rss]: one run; sets WALL (s) and CPU (s), and
# with rss RSS (KiB, peak, from bench/rss: a run of its own, as its fork
# and exec would add to the wall time of short runs). Extra environment for
# athost comes from STATION_ENV.
STATION_ENV=()
# The CPU time (clock ticks) the modems process and the brokers have used.
helpers_cpu() {
    local p
    for p in "$MODEMS_PID" $(pgrep -x mosquitto); do
        awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null
    done | awk '{ s += $1 } END { print s + 0 }'
}

# Waits until the modems and the brokers are done with the previous run
# (closing the station's ptys and MQTT sessions keeps them busy for a
# while): their CPU time unchanged over 100 ms, for at most 10 s.
quiesce() {
    local a b i
    a=$(helpers_cpu)
    for ((i = 0; i < 100; i++)); do
        sleep 0.1
        b=$(helpers_cpu)
        [ "$a" = "$b" ] && return 0
        a=$b
    done
}

station() {
    local label=$1 ports=$2 n t0 t1 rc cpu pre=()
    n=$(wc -l <"$ports")
    quiesce
    [ ${#STATION_ENV[@]} -gt 0 ] && pre=(env "${STATION_ENV[@]}")
    [ "${3:-}" = rss ] && pre+=("$build/rss")
    TIMEFORMAT='%U %S'
    t0=$EPOCHREALTIME
    { time timeout 300 "${pre[@]}" "$ATHOST" --ports-file "$ports" \
        --table "$tmp/table.csv" --junit "$tmp/$label.xml" "$FLOW" host=127.0.0.1 \
        "port=$BROKER_PORT" "username=$BROKER_USER" "password=$BROKER_PASS" \
        </dev/null >"$tmp/$label.out" 2>"$tmp/$label.err"; } 2>"$tmp/$label.time"
    rc=$?
    t1=$EPOCHREALTIME
    WALL=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.4f", b - a }')
    RSS=$(sed -n 's/^peak_rss_kib=\([0-9]*\)$/\1/p' "$tmp/$label.err" | tail -n 1)
    cpu=$(tail -n 1 "$tmp/$label.time")
    CPU=$(awk -v u="${cpu% *}" -v s="${cpu#* }" 'BEGIN { printf "%.3f", u + s }')
    if [ "$rc" -ne 0 ] || ! grep -q "^$n passed, 0 failed" "$tmp/$label.err"; then
        echo "   FAILED: $label (exit $rc):"
        grep -v '^PASS' "$tmp/$label.err" | tail -n 10 | sed 's/^/   /'
        exit 1
    fi
}

median() { sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

# runs COUNT PORTS_FILE: COUNT timed runs and one under bench/rss; sets
# MED_WALL, MED_CPU, RSS.
runs() {
    local k walls="" cpus=""
    for ((k = 1; k <= $1; k++)); do
        station "run$k" "$2"
        walls="$walls$WALL"$'\n'
        cpus="$cpus$CPU"$'\n'
        printf '   %-9s wall %7.1f ms  cpu %7.1f ms\n' "run $k" \
            "$(awk -v w="$WALL" 'BEGIN { print w * 1000 }')" \
            "$(awk -v c="$CPU" 'BEGIN { print c * 1000 }')"
    done
    MED_WALL=$(printf '%s' "$walls" | median)
    MED_CPU=$(printf '%s' "$cpus" | median)
    station rss "$2" rss
    printf '   %-9s peak RSS %d KiB\n' "rss run" "$RSS"
}

station warmup "$tmp/ports1"
# Rounds interleave the 1-port run and each N's (the machine is shared:
# what slows one round slows every count in it alike).
declare -A WALLS=() CPUS=()
ROUNDS=$RUNS
[ "$RUNS1" -gt "$ROUNDS" ] && ROUNDS=$RUNS1
echo "-- $ROUNDS rounds of: 1 port ($RUNS1 rounds), $NS ports ($RUNS rounds)"
for ((k = 1; k <= ROUNDS; k++)); do
    for n in 1 $NS; do
        if [ "$n" -eq 1 ] && [ "$k" -gt "$RUNS1" ]; then continue; fi
        if [ "$n" -ne 1 ] && [ "$k" -gt "$RUNS" ]; then continue; fi
        station "run$k" "$tmp/ports$n"
        WALLS[$n]="${WALLS[$n]:-}$WALL"$'\n'
        CPUS[$n]="${CPUS[$n]:-}$CPU"$'\n'
        printf '   round %-2d %5d port(s): wall %7.1f ms  cpu %7.1f ms\n' "$k" "$n" \
            "$(awk -v w="$WALL" 'BEGIN { print w * 1000 }')" \
            "$(awk -v c="$CPU" 'BEGIN { print c * 1000 }')"
    done
done
declare -A WN=() RN=() CN=() BN=()
for n in 1 $NS; do
    WN[$n]=$(printf '%s' "${WALLS[$n]}" | median)
    BN[$n]=$(printf '%s' "${WALLS[$n]}" | sort -g | head -n 1)
    CN[$n]=$(printf '%s' "${CPUS[$n]}" | median)
    station rss "$tmp/ports$n" rss
    RN[$n]=$RSS
    printf '   %5d port(s): peak RSS %d KiB (a run of its own)\n' "$n" "$RSS"
done
W1=${WN[1]} R1=${RN[1]} C1=${CN[1]} B1=${BN[1]}
N1=${NS%% *}

# Profile: the Lua heap of the station (its state, one DUT) around the flow.
heap=$("$ATHOST" --ports-file "$tmp/ports1" --table "$tmp/table.csv" -q -e "
local args = ...
local k0 = collectgarbage('count')
assert(loadfile('$FLOW'))(args)
local k1 = collectgarbage('count')
collectgarbage()
io.stderr:write(string.format('heap %.0f %.0f %.0f\n', k0, k1, collectgarbage('count')))
" host=127.0.0.1 "port=$BROKER_PORT" "username=$BROKER_USER" "password=$BROKER_PASS" 2>&1 |
    sed -n 's/^heap //p')

# For comparison: a Lua state per DUT.
echo "-- isolated: $N1 ports, a Lua state per DUT (ATHOST_STATION_ISOLATE=1), $RUNS runs"
STATION_ENV=("ATHOST_STATION_ISOLATE=1")
runs "$RUNS" "$tmp/ports$N1"
WB=$MED_WALL RB=$RSS CB=$MED_CPU
STATION_ENV=()

echo
echo "Station results (clouds/mqtt.lua, modems in a separate process, $(getconf _NPROCESSORS_ONLN 2>/dev/null || echo '?') CPUs):"
echo "  (the flow paces commands as on a real module: the Air720 profile's 20 ms"
echo "  after each final result; the virtual modems answer at once)"
echo
printf '  %5d port:   wall %8.1f ms (median)   peak RSS %7d KiB   cpu %7.1f ms\n' 1 \
    "$(awk -v w="$W1" 'BEGIN { print w * 1000 }')" "$R1" "$(awk -v c="$C1" 'BEGIN { print c * 1000 }')"
for n in $NS; do
    awk -v w1="$W1" -v wn="${WN[$n]}" -v r1="$R1" -v rn="${RN[$n]}" -v c1="$C1" -v cn="${CN[$n]}" -v n="$n" 'BEGIN {
        printf "  %5d ports:  wall %8.1f ms (median)   peak RSS %7d KiB   cpu %7.1f ms\n", n, wn * 1000, rn, cn * 1000
        printf "               ratio %.1fx the wall of one; RSS %.0f KiB per DUT (marginal %.0f KiB); cpu %.2f ms per DUT (marginal %.2f ms)\n",
            wn / w1, rn / n, (rn - r1) / (n - 1), cn / n * 1000, (cn - c1) / (n - 1) * 1000
    }'
    if [ -n "${BENCH_FIGS:-}" ]; then
        awk -v w1="$W1" -v wn="${WN[$n]}" -v rn="${RN[$n]}" -v cn="${CN[$n]}" -v n="$n" -v last="$N" \
            -v b1="$B1" -v bn="${BN[$n]}" -v runs="$RUNS" -v runs1="$RUNS1" 'BEGIN {
            r = wn / w1; k = rn / n; rb = bn / b1
            printf "station: %d DUTs, wall / wall of 1 DUT (median of %d / median of %d)|%.2fx|%s|%s\n", n, runs, runs1, r,
                (n == last) ? "<= 3x" : "-", (n == last) ? ((r <= 3) ? "met" : "MISSED") : "-"
            printf "station: %d DUTs, wall / wall of 1 DUT (best of %d / best of %d)|%.2fx|%s|%s\n", n, runs, runs1, rb,
                (n == last) ? "<= 3x" : "-", (n == last) ? ((rb <= 3) ? "met" : "MISSED") : "-"
            printf "station: %d DUTs, peak RSS per DUT|%.0f KiB|%s|%s\n", n, k,
                (n == last) ? "<= 96 KiB" : "-", (n == last) ? ((k <= 96) ? "met" : "MISSED") : "-"
            printf "station: %d DUTs, CPU per DUT|%.2f ms|-|-\n", n, cn / n * 1000
        }' >>"$BENCH_FIGS"
    fi
done
awk -v w1="$W1" -v wb="$WB" -v rb="$RB" -v cb="$CB" -v n="$N1" -v heap="$heap" -v wn="${WN[$N1]}" \
    -v rn="${RN[$N1]}" -v cn="${CN[$N1]}" 'BEGIN {
    split(heap, h, " ")
    printf "\n  profile:\n"
    if (h[1] != "")
        printf "    Lua heap of the station, 1 DUT: %s KiB at the flow start, %s KiB at its end, %s KiB live after a full GC\n", h[1], h[2], h[3]
    printf "    a Lua state per DUT (ATHOST_STATION_ISOLATE=1), %d ports: wall %.1f ms (shared: %.1f ms), ratio %.1fx;\n", n, wb * 1000, wn * 1000, wb / w1
    printf "      RSS %.0f KiB per DUT (shared: %.0f); cpu %.2f ms per DUT (shared: %.2f)\n", rb / n, rn / n, cb / n * 1000, cn / n * 1000
}'
