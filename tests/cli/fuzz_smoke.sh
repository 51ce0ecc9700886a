#!/usr/bin/env bash
# Builds every libFuzzer harness of fuzz/ (clang, ASan+UBSan, at -O0: the
# build dir build-fuzz-smoke/ of the source tree is reused, so a rerun only
# relinks what changed) and runs each from its seed corpus: libFuzzer first
# runs every input of the corpus (the committed seeds and what earlier runs
# added; fuzz/run.sh fails a harness that did not finish them), then makes
# FUZZ_SMOKE_RUNS mutations (default 500), or fewer if FUZZ_SMOKE_SECONDS
# (default 1) run out first (libFuzzer stops in the second after it: ~2 s).
# Most harnesses used to spend ~1.5 s of their ~3 s in mutations; 500 take
# them 0.1-1 s, the slow ones (secagg, mpc_net, paillier) reach the time
# limit as before. A smoke test: it catches a harness or parser that fails
# on its seeds or at once; the long search is `make fuzz` (build-fuzz/ at
# -O1, FUZZ_SECONDS, default 600, no cap on mutations).
# Fails on any crash, leak or undefined behaviour; skips (77) when clang or
# libFuzzer is not installed. Label nosan: it brings its own sanitizers, so
# it runs in the normal pass only.
set -uo pipefail
SRC=${PVG_SOURCE_DIR:?PVG_SOURCE_DIR not set}
export OUT=${PVG_FUZZ_BUILD:-$SRC/build-fuzz-smoke}
# -O0 builds the library ~3x faster than make fuzz's -O1 (fuzz/build.sh);
# a paillier seed then takes ~1 s, over 10 s on a loaded machine: an input
# counts as a hang after 60 s here (run.sh's -timeout=10 is for -O1)
export FUZZ_OPT=${FUZZ_OPT:--g -O0}
export FUZZ_ARGS="-timeout=60 ${FUZZ_ARGS:-}"
# one build at a time even when ctest runs this from two build trees
mkdir -p "$OUT"
exec 9>"$OUT/.lock"
flock 9
FUZZ_RUNS=${FUZZ_SMOKE_RUNS:-500} "$SRC/fuzz/run.sh" "${FUZZ_SMOKE_SECONDS:-1}"
rc=$?
if [ $rc -eq 77 ]; then
    echo "fuzz_smoke: SKIP: clang with libFuzzer is not installed (scripts/install-deps installs clang and libclang-rt-14-dev)"
fi
exit $rc
