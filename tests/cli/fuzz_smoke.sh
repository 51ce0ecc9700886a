#!/usr/bin/env bash
# Builds every libFuzzer harness of fuzz/ (clang, ASan+UBSan; the build dir
# build-fuzz/ of the source tree is reused, so a rerun only relinks what
# changed) and runs each for FUZZ_SMOKE_SECONDS (default 3) from its seed
# corpus: libFuzzer first runs every input of the corpus (the committed
# seeds and what earlier runs added), then mutates them for the rest of the
# time. A smoke test: it catches a harness or parser that fails on its seeds
# or at once; the long search is `make fuzz` (FUZZ_SECONDS, default 600).
# Fails on any crash, leak or undefined behaviour; skips (77) when clang or
# libFuzzer is not installed. Label nosan: it brings its own sanitizers, so
# it runs in the normal pass only.
set -uo pipefail
SRC=${PVG_SOURCE_DIR:?PVG_SOURCE_DIR not set}
export OUT=${PVG_FUZZ_BUILD:-$SRC/build-fuzz}
# one build at a time even when ctest runs this from two build trees
mkdir -p "$OUT"
exec 9>"$OUT/.lock"
flock 9
"$SRC/fuzz/run.sh" "${FUZZ_SMOKE_SECONDS:-3}"
rc=$?
if [ $rc -eq 77 ]; then
    echo "fuzz_smoke: SKIP: clang with libFuzzer is not installed (scripts/install-deps installs clang and libclang-rt-14-dev)"
fi
exit $rc
