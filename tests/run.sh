#!/bin/sh
# Runs every test suite twice: with ./athost and with the AddressSanitizer +
# UndefinedBehaviorSanitizer build (build/asan/athost), then each fuzz
# harness briefly (fuzz/run.sh, built by make fuzz-build), JOBS suites at a
# time (default: the number of CPUs, at least 2). Each suite ends with its
# own "N passed, N failed" line; a suite that crashes, hangs (10 min) or
# prints no such line counts as one failure. Logs: build/test-logs/.
#   tests/run.sh [FILTER]     only suites whose name contains FILTER
#   JOBS=1 tests/run.sh       one suite at a time
cd "$(dirname "$0")/.." || exit 2
ROOT=$(pwd)
LOGS=$ROOT/build/test-logs
mkdir -p "$LOGS"
FILTER=${1:-}
if [ -z "${JOBS:-}" ]; then
    JOBS=$(nproc 2>/dev/null || echo 2)
    [ "$JOBS" -ge 2 ] 2>/dev/null || JOBS=2
fi
[ "$JOBS" -ge 1 ] 2>/dev/null || { echo "JOBS=$JOBS: not a number" >&2; exit 2; }
export ATHOST_PATH="$ROOT/tests/lib:$ROOT/lib"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:exitcode=86
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:exitcode=87

# This run's results, one file per suite: "passed failed rc".
RES=$(mktemp -d "${TMPDIR:-/tmp}/athost-run.XXXXXX") || exit 2
trap 'rm -rf "$RES"' EXIT

# A semaphore of JOBS tokens in a FIFO: a suite takes one to start and
# gives it back when it ends, so at most JOBS run at once.
mkfifo "$RES/tokens" || exit 2
exec 3<>"$RES/tokens"
i=0
while [ $i -lt "$JOBS" ]; do echo >&3; i=$((i + 1)); done

n=0

# run_suite LOGNAME NAME COMMAND...: one suite, its log, its result file.
run_suite() {
    key=$1
    name=$2
    shift 2
    log="$LOGS/$key.log"
    timeout 600 "$@" >"$log" 2>&1 3>&-
    rc=$?
    line=$(grep -E '(^|: )[0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1)
    p=$(echo "$line" | sed -E 's/.*(^|: )([0-9]+) passed, ([0-9]+) failed.*/\2/')
    f=$(echo "$line" | sed -E 's/.*(^|: )([0-9]+) passed, ([0-9]+) failed.*/\3/')
    [ -n "$line" ] || { p=0; f=0; }
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        f=1     # crashed, hung, or a sanitizer report
    fi
    if [ "$f" -gt 0 ]; then
        r=$(printf '%-40s %4d passed, %d failed (exit %d)' "$name" "$p" "$f" "$rc")
    else
        r=$(printf '%-40s %4d passed' "$name" "$p")
    fi
    echo "$r"
    echo "$p $f $rc $log" >"$RES/$key.res"
}

# suite NAME COMMAND...: starts the suite once a token is free.
suite() {
    name=$1
    case "$name" in *"$FILTER"*) ;; *) return 0 ;; esac
    n=$((n + 1))
    key=$(echo "$name" | tr '/ ' '__')
    echo "$key" >>"$RES/order"
    read -r _ <&3
    ( run_suite "$key" "$@"; echo >&3 ) &
}

for variant in plain asan; do
    if [ $variant = plain ]; then
        bin=$ROOT/athost
        ub=$ROOT/build
    else
        bin=$ROOT/build/asan/athost
        ub=$ROOT/build/asan
    fi
    export ATHOST_BIN="$bin"
    for t in "$ub"/unit/*_test; do
        [ -x "$t" ] && suite "$variant unit/$(basename "$t")" "$t"
    done
    for t in tests/lua/*_test.lua; do
        suite "$variant lua/$(basename "$t" .lua)" "$bin" "$t"
    done
done
suite "plain fixtures/broker_test" bash tests/fixtures/broker_test.sh
# Each libFuzzer harness (make fuzz-build) for a fixed number of
# executions from its seed corpus: one test each.
for c in fuzz/corpus/*/; do
    f=$(basename "$c")
    suite "fuzz/$f" sh fuzz/run.sh "$f" -runs=20000
done
wait

passed=0
failed=0
if [ "$n" -gt 0 ]; then
    while read -r key; do
        if [ -r "$RES/$key.res" ]; then
            read -r p f rc log <"$RES/$key.res"
        else
            p=0 f=1 log="$LOGS/$key.log"     # killed before it could report
        fi
        passed=$((passed + p))
        failed=$((failed + f))
        if [ "$f" -gt 0 ]; then
            echo
            echo "==== $log (last 30 lines)"
            tail -n 30 "$log"
        fi
    done <"$RES/order"
fi
echo
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
