#!/usr/bin/env bash
# Builds the fuzz harnesses (fuzz/build.sh) and runs each for SECONDS
# (default 60), starting from its committed seed corpus fuzz/corpus/<name>/
# (copied to $OUT/corpus/<name>/, so the inputs a run adds stay out of the
# source tree). libFuzzer executes every input of that corpus before it
# mutates (its "INITED" line), however short SECONDS is; a run that did not
# get there fails. Prints the executions of each harness; a crash, leak or
# undefined behaviour is saved in $OUT/crashes/<name>/ and makes the exit
# status 1 (after the other harnesses have run).
#
# FUZZ_RUNS=N caps the mutations too: a harness stops after N executions
# beyond its corpus (libFuzzer's -runs, counted from the files in its
# working corpus plus the empty input it always tries) or at SECONDS,
# whichever comes first; the corpus itself is always run in full.
#
# usage: fuzz/run.sh [SECONDS [name...]]
# env:   OUT (build dir, default build-fuzz), FUZZ_JOBS (build jobs),
#        FUZZ_OPT (optimisation flags, fuzz/build.sh), FUZZ_ARGS (extra
#        libFuzzer flags), FUZZ_RUNS (mutations per harness, default no cap)
# Exit status 77 when clang/libFuzzer is not installed.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export OUT=${OUT:-$ROOT/build-fuzz}
SECS=${1:-60}
shift || true
"$ROOT/fuzz/build.sh" "$@" || exit $?
if [ $# -gt 0 ]; then names=("$@"); else
    names=()
    for f in "$ROOT"/fuzz/fuzz_*.c; do n=$(basename "$f" .c); names+=("${n#fuzz_}"); done
fi
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
failed=()
for n in "${names[@]}"; do
    work="$OUT/corpus/$n" crashes="$OUT/crashes/$n" log="$OUT/fuzz_$n.log"
    mkdir -p "$work" "$crashes"
    [ -d "$ROOT/fuzz/corpus/$n" ] && cp -n "$ROOT/fuzz/corpus/$n"/* "$work"/ 2>/dev/null
    dict=()
    [ -f "$ROOT/fuzz/dict/$n.dict" ] && dict=(-dict="$ROOT/fuzz/dict/$n.dict")
    runs=()
    if [ -n "${FUZZ_RUNS:-}" ]; then
        seeds=$(find "$work" -maxdepth 1 -type f | wc -l)
        runs=(-runs=$((seeds + 1 + FUZZ_RUNS)))
    fi
    # shellcheck disable=SC2086
    "$OUT/fuzz_$n" -max_total_time="$SECS" "${runs[@]}" -timeout=10 -rss_limit_mb=2048 \
        -max_len=16384 -print_final_stats=1 -artifact_prefix="$crashes/" "${dict[@]}" \
        ${FUZZ_ARGS:-} "$work" >"$log" 2>&1
    rc=$?
    # every seed was executed (libFuzzer prints INITED after the last one)
    if [ $rc -eq 0 ] && ! grep -q '^#[0-9]*[[:space:]]*INITED' "$log"; then
        echo "fuzz_$n: the seed corpus was not fully executed (no INITED in $log)" >&2
        rc=1
    fi
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
    if [ $rc -eq 0 ]; then
        printf 'fuzz_%-12s %3ss  %10s execs  %s  ok\n' "$n" "$SECS" "${execs:-?}" "$cov"
    else
        printf 'fuzz_%-12s %3ss  %10s execs  %s  FOUND (exit %d; log %s)\n' "$n" "$SECS" \
            "${execs:-?}" "$cov" "$rc" "$log"
        grep -E '^(==[0-9]+==ERROR|SUMMARY|.*runtime error)' "$log" | head -3 | sed 's/^/    /'
        ls -t "$crashes" | head -1 | sed "s|^|    input: $crashes/|"
        failed+=("$n")
    fi
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: findings in: ${failed[*]}" >&2
    exit 1
fi
