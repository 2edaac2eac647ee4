#!/usr/bin/env bash
# bench/run.sh ATHOST_BINARY   (`make bench` runs: bench/run.sh ./athost)
#
# What is measured: AT command round trips per second over a pseudo-terminal.
# A round trip is: write "AT+CGATT?\r", read the whole reply
# "\r\n+CGATT: 1\r\n\r\nOK\r\n" up to the final OK and check the +CGATT line.
# The other end is bench/fakemodem.c, a fake modem that answers with a single
# write() per read(), so it is not the bottleneck.  Each contender gets a fresh
# fake modem, does one untimed warm-up round trip, then times N round trips
# itself (so interpreter start-up and script loading are NOT in the rate) and
# prints "<name>: <rate> round trips/s" (bare, evloop and athost add ", <cpu>
# us CPU a round trip": their own CPU time, user and system, over the timed
# round trips; the table compares it with what 0.95x of the bare loop's rate
# leaves).  Contenders:
#   bare     bench/bare.c: a bare blocking C read/write loop, the floor that
#            everything else is compared with (ratio = rate / floor rate);
#   evloop   bench/evloop.c: the same loop waiting as an event loop must,
#            in epoll_wait on a non-blocking port (three system calls a
#            round trip where the blocking loop makes two): evloop / bare
#            is what waiting in an event loop costs on this machine, and
#            athost / evloop what athost's own work costs;
#   athost   ATHOST_BINARY bench/cgatt.lua (port:cmd() through Lua + libuv);
#   expect   bench/cgatt.exp (Tcl Expect, spawn -open on the serial channel),
#            optional: skipped if `expect` is not installed;
#   pexpect  bench/cgatt_pexpect.py (python3 pexpect.fdpexpect), optional:
#            skipped if python3 or its pexpect module is missing.
# Last, bench/station.sh: one `athost --ports-file` station provisioning 256
# virtual modems at once (time as a ratio to one modem, peak RSS per port).
# Every contender runs under bench/rss, which reports the peak RSS of the whole
# process (start-up included).  The machine may be noisy, so BENCH_RUNS
# rounds (default 7) of short runs are interleaved; the ratio judged is
# the median of the rounds' ratios (each round's athost rate / its bare
# rate), printed with the ratio of the medians and that of the bests.
# This is a benchmark, not a test: nothing fails for being slow; the script
# exits non-zero only if a contender fails outright (error, wrong reply, hang).
#
# Environment: BENCH_N (round trips a run, default 5000), BENCH_RUNS
# (interleaved rounds, default 7), BENCH_TIMEOUT (seconds per contender
# run, default 120 + N/500), BENCH_CPU (the CPU of the round trips,
# default the last; none: no pinning), BENCH_WQ (keep: leave the pty's
# kernel workers where they are, see wq_pin), CC (default gcc).
# Helpers are built into bench/build/ (which should be gitignored).

set -u

usage() {
    echo "usage: $0 ATHOST_BINARY" >&2
    exit 2
}
[ $# -le 1 ] || usage
ATHOST=${1:-}

N=${BENCH_N:-5000}
case $N in '' | *[!0-9]* | 0) echo "run.sh: BENCH_N must be a positive integer, got '$N'" >&2; exit 2 ;; esac
TIMEOUT_S=${BENCH_TIMEOUT:-$((120 + N / 500))}

here=$(cd "$(dirname "$0")" && pwd)
build=$here/build
CC=${CC:-gcc}
CFLAGS="-O2 -std=c11 -Wall -Wextra -Wpedantic -Werror"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/athost-bench.XXXXXX") || exit 2
FM_PID=
# shellcheck disable=SC2317  # invoked via trap
cleanup() {
    wq_restore
    if [ -n "$FM_PID" ]; then
        kill "$FM_PID" 2>/dev/null
        wait "$FM_PID" 2>/dev/null
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- build the C helpers -------------------------------------------------
mkdir -p "$build" || exit 2
for prog in fakemodem bare evloop rss; do
    # shellcheck disable=SC2086  # CFLAGS is a word list
    if ! $CC $CFLAGS -o "$build/$prog" "$here/$prog.c"; then
        echo "run.sh: failed to build bench/$prog.c" >&2
        exit 2
    fi
done

if command -v timeout >/dev/null 2>&1; then
    TIMEOUT=(timeout --foreground "$TIMEOUT_S") # Ctrl-C reaches the contender too
else
    TIMEOUT=()
fi

# Contender and fake modem share one CPU (BENCH_CPU, default the last;
# BENCH_CPU=none: no pinning): a round trip is then the CPU work of both
# sides and their switches, not where the scheduler happened to put them
# (unpinned, the same loop ran at 14k and 114k round trips/s here).
PIN=()
BENCH_CPU=${BENCH_CPU:-$(($(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1) - 1))}
if [ "$BENCH_CPU" != none ] && command -v taskset >/dev/null 2>&1; then
    PIN=(taskset -c "$BENCH_CPU")
fi

# The pty's own kernel work goes on that CPU too. A write to a pty is
# pushed to its reader by a kernel worker of the unbound workqueue, which
# may run on any CPU: a round trip then waits for two cross-CPU wake-ups,
# and on a virtual machine an idle CPU wakes slowly. Here the pinned CPU
# sat idle for more than half of each round trip and rates swung 8-fold
# between runs of the same loop; with the workqueue on the same CPU it did
# not idle at all. So, for the round trips only, the unbound workqueue's
# CPU mask is set to BENCH_CPU (root only; BENCH_WQ=keep leaves it as it
# is) and put back before the payload and station runs and on exit.
WQ_MASK=/sys/devices/virtual/workqueue/cpumask
WQ_SAVED=
wq_pin() {
    [ "${#PIN[@]}" -gt 0 ] && [ "${BENCH_WQ:-pin}" != keep ] || return 0
    if ! [ -w "$WQ_MASK" ] || ! [ "$BENCH_CPU" -lt 60 ] 2>/dev/null; then
        echo "note: the pty's kernel workers may run on any CPU (cannot write $WQ_MASK)"
        return 0
    fi
    WQ_SAVED=$(cat "$WQ_MASK") || return 0
    if printf '%x\n' $((1 << BENCH_CPU)) >"$WQ_MASK" 2>/dev/null; then
        echo "the unbound workqueue (the pty's kernel workers) runs on CPU $BENCH_CPU for the round trips (was mask $WQ_SAVED)"
    else
        echo "note: could not set $WQ_MASK; the pty's kernel workers may run on any CPU"
        WQ_SAVED=
    fi
}
wq_restore() {
    if [ -n "${WQ_SAVED:-}" ]; then
        echo "$WQ_SAVED" >"$WQ_MASK" 2>/dev/null ||
            echo "run.sh: could not put back $WQ_MASK (was $WQ_SAVED)" >&2
        WQ_SAVED=
    fi
}

# ---- fake modem ----------------------------------------------------------
PTY=
start_modem() {
    : >"$tmp/fm.out" # exists before the background job's redirection runs
    "${PIN[@]}" "$build/fakemodem" >"$tmp/fm.out" 2>"$tmp/fm.err" &
    FM_PID=$!
    local i
    for ((i = 0; i < 1000; i++)); do
        # read succeeds only once a whole line (the slave path) is there
        if IFS= read -r PTY <"$tmp/fm.out" 2>/dev/null && [ -n "$PTY" ]; then
            return 0
        fi
        kill -0 "$FM_PID" 2>/dev/null || break
        sleep 0.01
    done
    echo "run.sh: fake modem did not start: $(cat "$tmp/fm.err")" >&2
    stop_modem
    return 1
}
stop_modem() {
    if [ -n "$FM_PID" ]; then
        kill "$FM_PID" 2>/dev/null
        wait "$FM_PID" 2>/dev/null
        FM_PID=
    fi
}

# ---- contenders ----------------------------------------------------------
declare -A RATE=() RSS=() CPU=() STATUS=() WHY=()
ORDER=()
FAILED=0

# The table printed at the end: one figure a line, its goal, met or not.
FIGS=()
fig() { FIGS+=("$1|$2|$3|$4"); }

# run LABEL NAME CMD ARGS...   (@PTY@ in ARGS is replaced by the slave path)
run() {
    local label=$1 name=$2
    shift 2
    ORDER+=("$label")
    echo "== $label (N=$N)"
    if ! start_modem; then
        STATUS[$label]=FAILED WHY[$label]="fake modem did not start"
        FAILED=1
        return
    fi
    local args=() a rc
    for a in "$@"; do args+=("${a//@PTY@/$PTY}"); done
    "${TIMEOUT[@]}" "${PIN[@]}" "$build/rss" "${args[@]}" \
        </dev/null >"$tmp/$label.out" 2>"$tmp/$label.err"
    rc=$?
    stop_modem
    # Ctrl-C (SIGINT to the whole group) ends the contender: end here too
    # (bash does not act on a SIGINT its child survived as an exit code).
    [ "$rc" -eq 130 ] && exit 130

    local rate rss cpu
    rate=$(sed -n "s|^$name: \([0-9][0-9.]*\) round trips/s\(, .*\)\{0,1\}\$|\1|p" "$tmp/$label.out" | tail -n 1)
    cpu=$(sed -n "s|^$name: [0-9.]* round trips/s, \([0-9][0-9.]*\) us CPU a round trip\$|\1|p" "$tmp/$label.out" | tail -n 1)
    rss=$(sed -n 's/^peak_rss_kib=\([0-9][0-9]*\)$/\1/p' "$tmp/$label.err" | tail -n 1)
    sed 's/^/   /' "$tmp/$label.out"
    grep -v '^peak_rss_kib=' "$tmp/$label.err" | sed 's/^/   stderr: /'
    if [ "$rc" -ne 0 ] || [ -z "$rate" ]; then
        if [ "$rc" -eq 124 ] && [ ${#TIMEOUT[@]} -gt 0 ]; then
            WHY[$label]="timed out after ${TIMEOUT_S}s"
        elif [ "$rc" -ne 0 ]; then
            WHY[$label]="exit status $rc"
        else
            WHY[$label]="no '$name: <rate> round trips/s' line in its output"
        fi
        STATUS[$label]=FAILED
        echo "   FAILED: ${WHY[$label]}"
        FAILED=1
        return
    fi
    STATUS[$label]=ok RATE[$label]=$rate RSS[$label]=$rss CPU[$label]=$cpu
}

SKIPPED=()
skip() {
    SKIPPED+=("$1: $2")
    echo "== $1: SKIPPED ($2)"
}

echo "athost benchmark: AT+CGATT? round trips over a pty against bench/fakemodem"
echo "N=$N round trips per contender (BENCH_N), $(uname -sr), $(getconf _NPROCESSORS_ONLN 2>/dev/null || echo '?') CPUs"
echo

ROUNDS=${BENCH_RUNS:-7}
PARTS=" ${BENCH_PARTS-payload station} "
part() { [[ $PARTS == *" $1 "* ]]; }
case $ROUNDS in '' | *[!0-9]* | 0) echo "run.sh: BENCH_RUNS must be a positive integer" >&2; exit 2 ;; esac

athost_ok=
if [ -z "$ATHOST" ]; then
    skip athost "no athost binary given (usage: bench/run.sh ./athost)"
elif [[ $ATHOST == */* ]]; then
    if [ -f "$ATHOST" ] && [ -x "$ATHOST" ]; then athost_ok=1
    else skip athost "binary '$ATHOST' not found or not executable; build it first"; fi
elif command -v "$ATHOST" >/dev/null 2>&1; then
    athost_ok=1
else
    skip athost "'$ATHOST' not found in PATH"
fi

# BENCH_RUNS rounds of bare, epoll loop and athost, interleaved (the
# machine is shared: noise hits all alike; see paired_ratio). Expect
# and pexpect run once, in the first round.
wq_pin
for ((round = 1; round <= ROUNDS; round++)); do
    run "bare#$round" bare "$build/bare" @PTY@ "$N"
    run "evloop#$round" evloop "$build/evloop" @PTY@ "$N"
    [ -n "$athost_ok" ] && run "athost#$round" athost "$ATHOST" "$here/cgatt.lua" path=@PTY@ "n=$N"
    [ "$round" -eq 1 ] || continue
    if command -v expect >/dev/null 2>&1; then
        run expect expect expect "$here/cgatt.exp" @PTY@ "$N"
    else
        skip expect "'expect' (Tcl Expect) is not installed"
    fi
    if ! command -v python3 >/dev/null 2>&1; then
        skip pexpect "python3 is not installed"
    elif ! python3 -c 'import pexpect.fdpexpect' >/dev/null 2>&1; then
        skip pexpect "python3 module pexpect is not installed (Debian: python3-pexpect)"
    else
        run pexpect pexpect python3 "$here/cgatt_pexpect.py" @PTY@ "$N"
    fi
done

# ---- report --------------------------------------------------------------
floor=
floor_rss=
bares=() athosts=() evloops=()
for ((round = 1; round <= ROUNDS; round++)); do
    bares+=("bare#$round")
    athosts+=("athost#$round")
    evloops+=("evloop#$round")
done
# median_of LABEL...: "RATE RSS" of the median run among those that
# succeeded (the lower middle one of an even count), or nothing. On a
# shared machine a single run can be several times faster or slower than
# the rest (seen here: 18k, 19k ... 126k round trips/s for the same bare
# loop), so neither the best nor the mean is a figure to compare; the
# median of interleaved runs is.
median_of() {
    local l
    for l in "$@"; do
        [ "${STATUS[$l]:-}" = ok ] && echo "${RATE[$l]} ${RSS[$l]:-0}"
    done | sort -g | awk '{ a[NR] = $0 } END { if (NR) print a[int((NR + 1) / 2)] }'
}
read -r floor floor_rss <<<"$(median_of "${bares[@]}")"
# best_of LABEL...: the highest rate among the runs that succeeded
# ("best of N": printed beside the judged figure).
best_of() {
    local l
    for l in "$@"; do
        [ "${STATUS[$l]:-}" = ok ] && echo "${RATE[$l]}"
    done | sort -g | tail -n 1
}
# paired_ratio A B: the median over the rounds of A's rate / B's rate in
# the same round (rounds where both ran). The machine drifts over a run
# (here whole rounds ran 30% slower for every contender): the ratio of two
# runs minutes apart mixes that drift in, the ratio within a round does
# not. This is the figure judged.
paired_ratio() {
    local a=$1 b=$2 r
    for ((r = 1; r <= ROUNDS; r++)); do
        [ "${STATUS[$a#$r]:-}" = ok ] && [ "${STATUS[$b#$r]:-}" = ok ] &&
            awk -v x="${RATE[$a#$r]}" -v y="${RATE[$b#$r]}" 'BEGIN { printf "%.4f\n", x / y }'
    done | sort -g | awk '{ a[NR] = $1 } END { if (NR) printf "%.2f", a[int((NR + 1) / 2)] }'
}
# cpu_median LABEL...: the median CPU a round trip (us) of those runs.
cpu_median() {
    local l
    for l in "$@"; do
        [ "${STATUS[$l]:-}" = ok ] && [ -n "${CPU[$l]:-}" ] && echo "${CPU[$l]}"
    done | sort -g | awk '{ a[NR] = $1 } END { if (NR) printf "%.2f", a[int((NR + 1) / 2)] }'
}
# paired_diff A B: the median over the rounds of A's CPU a round trip minus
# B's in the same round (us).
paired_diff() {
    local a=$1 b=$2 r
    for ((r = 1; r <= ROUNDS; r++)); do
        [ -n "${CPU[$a#$r]:-}" ] && [ -n "${CPU[$b#$r]:-}" ] &&
            awk -v x="${CPU[$a#$r]}" -v y="${CPU[$b#$r]}" 'BEGIN { printf "%.4f\n", x - y }'
    done | sort -g | awk '{ a[NR] = $1 } END { if (NR) printf "%.2f", a[int((NR + 1) / 2)]; else printf "?" }'
}
pair_ath=$(paired_ratio athost bare)
pair_ev=$(paired_ratio evloop bare)
pair_athev=$(paired_ratio athost evloop)
best_bare=$(best_of "${bares[@]}")
best_ath=$(best_of "${athosts[@]}")

# The event-loop floor, like athost, counts its median run.
read -r ev ev_rss <<<"$(median_of "${evloops[@]}")"
if [ -n "$ev" ]; then
    ORDER=("epoll loop" "${ORDER[@]}")
    STATUS["epoll loop"]=ok RATE["epoll loop"]=$ev RSS["epoll loop"]=$ev_rss
fi

# athost, like the floor, runs BENCH_RUNS times (interleaved with it) and
# its median run counts: both sides get the same treatment of noise.
read -r ath ath_rss <<<"$(median_of "${athosts[@]}")"
if [ -n "$athost_ok" ]; then
    ORDER=("athost" "${ORDER[@]}")
    if [ -n "$ath" ]; then
        STATUS[athost]=ok RATE[athost]=$ath RSS[athost]=$ath_rss
    else
        STATUS[athost]=failed
    fi
fi

echo
echo "Results (N=$N; rate measured inside each contender, warm-up excluded):"
echo
row() { printf '  %-22s %15s %10s %26s\n' "$@"; }
fmt_rss() {
    [ -n "$1" ] || { echo "?"; return; }
    awk -v k="$1" 'BEGIN { printf "%d KiB (%.1f MiB)", k, k / 1024 }'
}
row "contender" "round trips/s" "ratio" "peak RSS"
row "---------" "-------------" "-----" "--------"
if [ -n "$floor" ]; then
    row "bare C loop (floor)" "$floor" "1.00" "$(fmt_rss "$floor_rss")"
else
    row "bare C loop (floor)" "FAILED" "-" "-"
fi
for label in "${ORDER[@]}"; do
    case $label in bare#*|athost#*|evloop#*) continue ;; esac
    if [ "${STATUS[$label]}" = ok ]; then
        ratio=-
        [ -n "$floor" ] && ratio=$(awk -v a="${RATE[$label]}" -v b="$floor" 'BEGIN { printf "%.2f", a / b }')
        row "$label" "${RATE[$label]}" "$ratio" "$(fmt_rss "${RSS[$label]}")"
    else
        row "$label" "FAILED" "-" "-"
    fi
done
for s in "${SKIPPED[@]}"; do
    row "${s%%:*}" "skipped" "-" "-"
done
echo
rates() { local l out=""; for l in "$@"; do out="$out${out:+, }${RATE[$l]:-FAILED}"; done; echo "$out"; }
printf '  floor = median of %d bare C loop runs (%s round trips/s);\n' "$ROUNDS" "$(rates "${bares[@]}")"
[ -n "$ath" ] && printf '  athost = median of %d runs, interleaved with them (%s round trips/s).\n' \
    "$ROUNDS" "$(rates "${athosts[@]}")"
[ -n "$ev" ] && printf '  epoll loop = median of %d runs, interleaved too (%s round trips/s).\n' \
    "$ROUNDS" "$(rates "${evloops[@]}")"
if [ -n "$ath" ] && [ -n "$floor" ]; then
    if [ -n "$pair_ath" ]; then
        fig "round trips: athost / bare C loop (median of $ROUNDS rounds' ratios)" \
            "$pair_ath" ">= 0.95" "$(awk -v r="$pair_ath" 'BEGIN { print (r >= 0.95) ? "met" : "MISSED" }')"
    fi
    fig "round trips: athost / bare C loop (median of each's $ROUNDS runs)" \
        "$(awk -v a="$ath" -v b="$floor" 'BEGIN { printf "%.2f", a / b }')" ">= 0.95" \
        "$(awk -v a="$ath" -v b="$floor" 'BEGIN { print (a / b >= 0.95) ? "met" : "MISSED" }')"
    if [ -n "$best_ath" ] && [ -n "$best_bare" ]; then
        fig "round trips: athost / bare C loop (best of $ROUNDS each, interleaved)" \
            "$(awk -v a="$best_ath" -v b="$best_bare" 'BEGIN { printf "%.2f", a / b }')" ">= 0.95" \
            "$(awk -v a="$best_ath" -v b="$best_bare" 'BEGIN { print (a / b >= 0.95) ? "met" : "MISSED" }')"
    fi
    if [ -n "$ev" ]; then
        fig "round trips: epoll loop / bare C loop (rounds' ratios: what waiting in an event loop costs)" \
            "${pair_ev:-?}" "-" "-"
        fig "round trips: athost / epoll loop (rounds' ratios: what athost's own work costs)" \
            "${pair_athev:-?}" "-" "-"
    fi
    # CPU a round trip, each contender's own over its timed loop: what the
    # ratios come from. On the one CPU they share, a round trip's wall time
    # is the CPU time of both sides and of the kernel's work between them,
    # so what athost spends beyond the bare loop adds to each round trip one
    # for one; 0.95x leaves it (1/0.95 - 1) = 5.3% of the bare loop's round
    # trip. Medians of the rounds' own differences, as for the ratios.
    cpu_bare=$(cpu_median "${bares[@]}")
    cpu_ev=$(cpu_median "${evloops[@]}")
    cpu_ath=$(cpu_median "${athosts[@]}")
    if [ -n "$cpu_bare" ] && [ -n "$cpu_ath" ]; then
        fig "round trips: CPU a round trip: bare C loop / epoll loop / athost (medians)" \
            "${cpu_bare} / ${cpu_ev:-?} / ${cpu_ath} us" "-" "-"
        fig "round trips: CPU 0.95x leaves beyond the bare loop's (5.3% of its round trip)" \
            "$(awk -v f="$floor" 'BEGIN { printf "%.2f us", 1e6 / f * (1 / 0.95 - 1) }')" "-" "-"
        [ -n "$cpu_ev" ] && fig "round trips: CPU beyond the bare loop's: the epoll loop (waiting alone)" \
            "$(paired_diff evloop bare) us" "-" "-"
        fig "round trips: CPU beyond the bare loop's: athost" "$(paired_diff athost bare) us" "-" "-"
    fi
    fig "round trips: athost peak RSS" "$(awk -v r="${ath_rss:-0}" 'BEGIN { printf "%.1f MiB", r / 1024 }')" \
        "< 8 MiB" "$(awk -v r="${ath_rss:-0}" 'BEGIN { print (r < 8192) ? "met" : "MISSED" }')"
fi
echo "  the machine may be noisy, so compare ratios rather than absolute rates."
echo "  ratio = contender rate / floor rate (1.00 = as fast as the bare C loop)."
echo "  peak RSS = ru_maxrss of the whole contender process, start-up included."
if [ ${#SKIPPED[@]} -gt 0 ]; then
    echo
    echo "Skipped:"
    for s in "${SKIPPED[@]}"; do echo "  $s"; done
fi

# ---- per round trip: syscalls (strace) and instructions (callgrind) ------
# The difference between runs of 3000 and 1000 round trips, over 2000:
# start-up and the script's loading cancel out. Not timed.
per_rt() { # per_rt TOOL_OUTPUT_FILE_PREFIX: prints the per-round-trip figure
    awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f", (b - a) / 2000 }'
}
if [ -n "$athost_ok" ] && [ "${BENCH_COUNT:-1}" != 0 ]; then
    echo
    echo "== per round trip (runs of 1000 and 3000; the difference / 2000)"
    if command -v strace >/dev/null 2>&1; then
        sc=()
        for n in 1000 3000; do
            start_modem || break
            strace -f -c -o "$tmp/strace.$n" "$ATHOST" "$here/cgatt.lua" "path=$PTY" "n=$n" >/dev/null 2>&1
            stop_modem
            sc+=("$(awk '$NF == "total" { print $4 }' "$tmp/strace.$n")")
        done
        if [ ${#sc[@]} -eq 2 ]; then
            v=$(per_rt "${sc[0]}" "${sc[1]}")
            echo "   syscalls: $v per round trip"
            fig "round trips: syscalls per round trip (strace)" "$v" "<= 3" \
                "$( [ "$v" -le 3 ] && echo met || echo MISSED)"
        fi
    else
        skip syscalls "strace is not installed"
    fi
    if command -v valgrind >/dev/null 2>&1; then
        ir=()
        for n in 1000 3000; do
            start_modem || break
            valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.$n" "$ATHOST" \
                "$here/cgatt.lua" "path=$PTY" "n=$n" >/dev/null 2>&1
            stop_modem
            ir+=("$(sed -n 's/^summary: *\([0-9]*\).*/\1/p' "$tmp/cg.$n")")
        done
        if [ ${#ir[@]} -eq 2 ] && [ -n "${ir[0]}" ] && [ -n "${ir[1]}" ]; then
            v=$(per_rt "${ir[0]}" "${ir[1]}")
            echo "   instructions: $v per round trip (user space, callgrind)"
            fig "round trips: instructions per round trip (callgrind)" "$v" "-" "-"
        fi
    else
        skip instructions "valgrind (callgrind) is not installed"
    fi
fi

wq_restore

# ---- big payloads (bench/payload.sh) --------------------------------------
if [ -n "$athost_ok" ] && [ -f "$here/payload.sh" ] && part payload; then
    echo
    if ! BENCH_FIGS="$tmp/figs.payload" bash "$here/payload.sh" "$ATHOST"; then
        ORDER+=(payload) STATUS[payload]=FAILED WHY[payload]="bench/payload.sh failed"
        FAILED=1
    fi
    [ -f "$tmp/figs.payload" ] && while IFS= read -r l; do FIGS+=("$l"); done <"$tmp/figs.payload"
fi

# ---- the factory station: N modems at once (bench/station.sh) -------------
if [ -n "$athost_ok" ] && part station; then
    echo
    if ! BENCH_FIGS="$tmp/figs.station" bash "$here/station.sh" "$ATHOST"; then
        ORDER+=(station) STATUS[station]=FAILED WHY[station]="bench/station.sh failed"
        FAILED=1
    fi
    [ -f "$tmp/figs.station" ] && while IFS= read -r l; do FIGS+=("$l"); done <"$tmp/figs.station"
fi

# ---- the table -------------------------------------------------------------
echo
echo "Figures ($(uname -sr), $(getconf _NPROCESSORS_ONLN 2>/dev/null || echo '?') CPUs; a shared machine: ratios of interleaved runs, median (round trips, station) or best (payload)):"
echo
printf '  %-62s %16s %10s  %s\n' "figure" "value" "goal" "met"
printf '  %-62s %16s %10s  %s\n' "------" "-----" "----" "---"
for f in "${FIGS[@]}"; do
    IFS='|' read -r name value goal met <<<"$f"
    printf '  %-62s %16s %10s  %s\n' "$name" "$value" "$goal" "$met"
done
if [ "$FAILED" -ne 0 ]; then
    echo
    echo "FAILED:"
    for label in "${ORDER[@]}"; do
        [ "${STATUS[$label]}" = ok ] || echo "  $label: ${WHY[$label]}"
    done
    exit 1
fi
exit 0
