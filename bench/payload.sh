#!/usr/bin/env bash
# bench/payload.sh ATHOST_BINARY   (bench/run.sh runs it: `make bench`)
#
# What is measured: one counted payload of BENCH_PAYLOAD bytes (default
# 64 MiB) over a pty from bench/payload.c ("AT+READ" -> "+READ: SIZE",
# the bytes, OK), read by
#   rawread   bench/rawread.c: blocking reads into one buffer, the floor;
#   held      athost: port:cmd with the counted reply pattern (r.payload);
#   streamed  athost: port:read(n, {into = file}) to /dev/null.
# BENCH_PAYLOAD_RUNS rounds (default 3), interleaved; each contender's best
# rate counts, its peak RSS (bench/rss) is that of its best run. Figures
# go to $BENCH_FIGS (name|value|goal|met lines) when set. A benchmark:
# it fails only when a contender fails.
set -u
[ $# -eq 1 ] || { echo "usage: $0 ATHOST_BINARY" >&2; exit 2; }
ATHOST=$1
SIZE=${BENCH_PAYLOAD:-67108864}
RUNS=${BENCH_PAYLOAD_RUNS:-3}
here=$(cd "$(dirname "$0")" && pwd)
build=$here/build
CFLAGS="-O2 -std=c11 -Wall -Wextra -Wpedantic -Werror"
mkdir -p "$build" || exit 2
for prog in payload rawread rss; do
    # shellcheck disable=SC2086
    ${CC:-gcc} $CFLAGS -o "$build/$prog" "$here/$prog.c" || exit 2
done
tmp=$(mktemp -d "${TMPDIR:-/tmp}/athost-payload.XXXXXX") || exit 2
PID=
cleanup() {
    [ -n "$PID" ] && { kill "$PID" 2>/dev/null; wait "$PID" 2>/dev/null; }
    rm -rf "$tmp"
}
trap cleanup EXIT
: >"$tmp/pty" # exists before the background job's redirection runs
"$build/payload" "$SIZE" >"$tmp/pty" 2>"$tmp/payload.err" &
PID=$!
for ((i = 0; i < 500; i++)); do
    IFS= read -r PTY <"$tmp/pty" 2>/dev/null && [ -n "$PTY" ] && break
    sleep 0.01
done
[ -n "${PTY:-}" ] || { echo "payload.sh: the payload modem did not start" >&2; exit 1; }

declare -A BEST=() BRSS=()
FAILED=0
# one LABEL CMD...: a run; keeps the best rate and its RSS
one() {
    local label=$1 rate rss
    shift
    if ! timeout 300 "$build/rss" "$@" >"$tmp/out" 2>"$tmp/err"; then
        echo "   FAILED: $label: $(grep -v '^peak_rss_kib=' "$tmp/err" | tail -n 3)"
        FAILED=1
        return
    fi
    rate=$(sed -n 's/^[a-z]*: \([0-9.]*\) MiB\/s$/\1/p' "$tmp/out")
    rss=$(sed -n 's/^peak_rss_kib=//p' "$tmp/err")
    printf '   %-9s %8s MiB/s  peak RSS %6d KiB\n' "$label" "$rate" "$rss"
    if [ -z "${BEST[$label]:-}" ] || awk -v a="$rate" -v b="${BEST[$label]}" 'BEGIN { exit !(a > b) }'; then
        BEST[$label]=$rate BRSS[$label]=$rss
    fi
}
echo "== payload: $SIZE bytes counted over a pty, $RUNS rounds (raw C reader, athost held, athost streamed)"
for ((r = 1; r <= RUNS; r++)); do
    one rawread "$build/rawread" "$PTY" "$SIZE"
    one held "$ATHOST" "$here/payload.lua" "path=$PTY" "size=$SIZE" mode=held
    one streamed "$ATHOST" "$here/payload.lua" "path=$PTY" "size=$SIZE" mode=streamed
done
mib=$(awk -v s="$SIZE" 'BEGIN { printf "%d", s / 1048576 }')
for l in rawread held streamed; do
    [ -n "${BEST[$l]:-}" ] || BEST[$l]=0 BRSS[$l]=0
done
echo
echo "Payload results ($mib MiB, best of $RUNS):"
for l in rawread held streamed; do
    printf '  %-9s %8s MiB/s  %6.2fx  peak RSS %6.1f MiB\n' "$l" "${BEST[$l]}" \
        "$(awk -v a="${BEST[$l]}" -v b="${BEST[rawread]}" 'BEGIN { print (b > 0) ? a / b : 0 }')" \
        "$(awk -v k="${BRSS[$l]}" 'BEGIN { print k / 1024 }')"
done
if [ -n "${BENCH_FIGS:-}" ]; then
    awk -v raw="${BEST[rawread]}" -v held="${BEST[held]}" -v str="${BEST[streamed]}" \
        -v rh="${BRSS[held]}" -v rs="${BRSS[streamed]}" -v mib="$mib" 'BEGIN {
        if (raw == 0) raw = -1 # the floor failed: ratios come out negative
        printf "payload %d MiB held: athost / raw C reader|%.2f|>= 0.8|%s\n", mib, held / raw, (held / raw >= 0.8) ? "met" : "MISSED"
        printf "payload %d MiB held: peak RSS|%.1f MiB|<= %d MiB|%s\n", mib, rh / 1024, mib + 24, (rh / 1024 <= mib + 24) ? "met" : "MISSED"
        if (str == 0) {
            printf "payload %d MiB streamed (into=file): athost / raw C reader|FAILED|>= 0.8|MISSED\n", mib
            printf "payload %d MiB streamed (into=file): peak RSS|FAILED|<= 16 MiB|MISSED\n", mib
            exit
        }
        printf "payload %d MiB streamed (into=file): athost / raw C reader|%.2f|>= 0.8|%s\n", mib, str / raw, (str / raw >= 0.8) ? "met" : "MISSED"
        printf "payload %d MiB streamed (into=file): peak RSS|%.1f MiB|<= 16 MiB|%s\n", mib, rs / 1024, (rs / 1024 <= 16) ? "met" : "MISSED"
    }' >>"$BENCH_FIGS"
fi
exit $FAILED
