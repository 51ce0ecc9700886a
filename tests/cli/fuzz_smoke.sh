#!/usr/bin/env bash
# Builds every libFuzzer harness of fuzz/ (clang, ASan+UBSan, at -O0: the
# build dir build-fuzz-smoke/ of the source tree is reused, so a rerun only
# relinks what changed) and runs each for FUZZ_SMOKE_SECONDS (default 1)
# from its seed corpus: libFuzzer first runs every input of the corpus (the
# committed seeds and what earlier runs added; fuzz/run.sh fails a harness
# that did not finish them), then mutates them for the rest of the time
# (libFuzzer stops in the second after it). A smoke test: it catches a
# harness or parser that fails on its seeds or at once; the long search is
# `make fuzz` (build-fuzz/ at -O1, FUZZ_SECONDS, default 600).
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
"$SRC/fuzz/run.sh" "${FUZZ_SMOKE_SECONDS:-1}"
rc=$?
if [ $rc -eq 77 ]; then
    echo "fuzz_smoke: SKIP: clang with libFuzzer is not installed (scripts/install-deps installs clang and libclang-rt-14-dev)"
fi
exit $rc
