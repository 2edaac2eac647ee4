#!/bin/sh
# fuzz/run.sh NAME [LIBFUZZER OPTIONS...]: runs the harness build/fuzz/NAME
# on its seed corpus fuzz/corpus/NAME and reports like a test suite: a
# summary (executions, coverage) and "1 passed, 0 failed", or the crash
# and "0 passed, 1 failed". The seeds are only read; what the run finds
# goes to a scratch directory, or with FUZZ_KEEP=1 to build/fuzz/corpus/NAME
# (kept for the next run). A crashing input is saved as
# build/fuzz/crash-NAME-*: `build/fuzz/NAME FILE` replays it. FUZZ_DIR
# names another build directory (make fuzz-build FUZZ_DIR=... FUZZ_SAN=...).
#   fuzz/run.sh chat_ops -runs=20000         what make check does
#   fuzz/run.sh chat_ops -max_total_time=600 what make fuzz does
cd "$(dirname "$0")/.." || exit 2
name=${1:?usage: fuzz/run.sh NAME [options]}
shift
dir=${FUZZ_DIR:-build/fuzz}   # make fuzz-build FUZZ_DIR=... builds elsewhere
bin=$dir/$name
if [ ! -x "$bin" ]; then
    echo "$bin is not built (make fuzz-build; it needs clang)"
    echo "0 passed, 1 failed"
    exit 1
fi
if [ "${FUZZ_KEEP:-0}" = 1 ]; then
    work=$dir/corpus/$name
    mkdir -p "$work"
else
    work=$(mktemp -d "${TMPDIR:-/tmp}/athost-fuzz.XXXXXX") || exit 2
    trap 'rm -rf "$work"' EXIT
fi
log=$dir/$name.log
# A Lua state lives across executions and its collector frees when it
# likes: every execution would look like a leak and be scanned for one.
leaks=""
[ -f "fuzz/$name.lua" ] && leaks=-detect_leaks=0
# -timeout: an input that takes 10 s is a finding (a parser gone
# non-linear), not a wait; -max_len leaves room for counted payloads.
"$bin" -seed="${FUZZ_SEED:-1}" -timeout=10 -max_len=8192 -print_final_stats=1 $leaks \
    -artifact_prefix="$dir/crash-$name-" "$@" "$work" "fuzz/corpus/$name" \
    >"$log" 2>&1
rc=$?
runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
cov=$(grep -E '^#[0-9]+' "$log" | tail -n 1 | sed -n 's/.* cov: \([0-9]*\) ft: \([0-9]*\).*/cov \1, ft \2/p')
echo "fuzz $name: ${runs:-?} executions, ${cov:-no coverage line}, exit $rc"
if [ "$rc" -eq 0 ]; then
    echo "1 passed, 0 failed"
    exit 0
fi
grep -E 'invariant broken|ERROR: |SUMMARY: |fuzz/.*\.lua:|Test unit written' "$log" | head -n 20
echo "(whole log: $log)"
echo "0 passed, 1 failed"
exit 1
