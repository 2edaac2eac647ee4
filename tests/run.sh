#!/bin/sh
# Runs every test suite twice: with ./athost and with the AddressSanitizer +
# UndefinedBehaviorSanitizer build (build/asan/athost). Each suite ends with
# its own "N passed, N failed" line; a suite that crashes, hangs (10 min) or
# prints no such line counts as one failure. Logs: build/test-logs/.
#   tests/run.sh [FILTER]     only suites whose name contains FILTER
cd "$(dirname "$0")/.." || exit 2
ROOT=$(pwd)
LOGS=$ROOT/build/test-logs
mkdir -p "$LOGS"
FILTER=${1:-}
export ATHOST_PATH="$ROOT/tests/lib:$ROOT/lib"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:exitcode=86
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:exitcode=87

passed=0
failed=0
bad=""

# suite NAME COMMAND...
suite() {
    name=$1
    shift
    case "$name" in *"$FILTER"*) ;; *) return 0 ;; esac
    log="$LOGS/$(echo "$name" | tr '/ ' '__').log"
    timeout 600 "$@" >"$log" 2>&1
    rc=$?
    line=$(grep -E '(^|: )[0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1)
    p=$(echo "$line" | sed -E 's/.*(^|: )([0-9]+) passed, ([0-9]+) failed.*/\2/')
    f=$(echo "$line" | sed -E 's/.*(^|: )([0-9]+) passed, ([0-9]+) failed.*/\3/')
    [ -n "$line" ] || { p=0; f=0; }
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        f=1     # crashed, hung, or a sanitizer report
    fi
    passed=$((passed + p))
    failed=$((failed + f))
    if [ "$f" -gt 0 ]; then
        bad="$bad $log"
        printf '%-40s %4d passed, %d failed (exit %d)\n' "$name" "$p" "$f" "$rc"
    else
        printf '%-40s %4d passed\n' "$name" "$p"
    fi
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

for log in $bad; do
    echo
    echo "==== $log (last 30 lines)"
    tail -n 30 "$log"
done
echo
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
