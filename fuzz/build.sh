#!/usr/bin/env bash
# Builds the libFuzzer harnesses fuzz/fuzz_<name>.c into $OUT/fuzz_<name>.
#
# The library is built by the project's own CMake (every src/**/*.c, found by
# its glob) with clang and -fsanitize=fuzzer-no-link,address,undefined into
# $OUT (default build-fuzz/); each harness is then linked against that static
# library with -fsanitize=fuzzer,address,undefined. Both steps are
# incremental: a second run with nothing changed costs a few seconds.
#
# usage: fuzz/build.sh [name...]      (default: every fuzz/fuzz_*.c)
# Exit status 77 (with a message) when clang or libFuzzer is missing
# (Debian: apt-get install clang libclang-rt-14-dev; scripts/install-deps).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$ROOT/build-fuzz}
CC=${FUZZ_CC:-clang}
SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"

if ! command -v "$CC" >/dev/null 2>&1; then
    echo "fuzz: $CC not found (Debian: apt-get install clang libclang-rt-14-dev)" >&2
    exit 77
fi
mkdir -p "$OUT"
# libFuzzer present? (Debian ships it in libclang-rt-<ver>-dev)
if [ ! -x "$OUT/.probe" ] || [ "$(command -v "$CC")" -nt "$OUT/.probe" ]; then
    printf '#include <stdint.h>\n#include <stddef.h>\nint LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }\n' \
        > "$OUT/.probe.c"
    if ! "$CC" -fsanitize=fuzzer,address,undefined "$OUT/.probe.c" -o "$OUT/.probe" 2>"$OUT/.probe.log"; then
        echo "fuzz: $CC cannot link libFuzzer (Debian: apt-get install libclang-rt-14-dev):" >&2
        sed -n 1,5p "$OUT/.probe.log" >&2
        exit 77
    fi
fi

if [ ! -f "$OUT/CMakeCache.txt" ]; then
    CC="$CC" cmake -S "$ROOT" -B "$OUT" -DCMAKE_BUILD_TYPE=Debug -DPVG_BUILD_TESTS=OFF \
        -DPVG_BUILD_BENCH=OFF -DCMAKE_C_FLAGS="-g -O1 -fsanitize=fuzzer-no-link $SAN" >/dev/null
fi
cmake --build "$OUT" --target privguide_static -j "${FUZZ_JOBS:-2}" >"$OUT/build.log" 2>&1 || {
    tail -40 "$OUT/build.log" >&2
    echo "fuzz: building the library failed (log: $OUT/build.log)" >&2
    exit 1
}

LIB="$OUT/libprivguide.a"
DEPS=$(pkg-config --libs libsodium sqlite3 libpq jansson libmicrohttpd openblas lapacke zlib libcurl)
INC="-I$ROOT/include -I$ROOT/src -I$OUT/generated $(pkg-config --cflags libsodium jansson libmicrohttpd)"
if [ $# -gt 0 ]; then names=("$@"); else
    names=()
    for f in "$ROOT"/fuzz/fuzz_*.c; do n=$(basename "$f" .c); names+=("${n#fuzz_}"); done
fi
for n in "${names[@]}"; do
    src="$ROOT/fuzz/fuzz_$n.c" bin="$OUT/fuzz_$n"
    [ -f "$src" ] || { echo "fuzz: no harness $src" >&2; exit 2; }
    if [ -x "$bin" ] && [ "$bin" -nt "$src" ] && [ "$bin" -nt "$LIB" ] && [ "$bin" -nt "$ROOT/fuzz/fuzz_common.h" ]; then
        continue
    fi
    # shellcheck disable=SC2086
    "$CC" -std=c11 -g -O1 -Wall -Wextra -Werror -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE \
        -D_GNU_SOURCE -fsanitize=fuzzer $SAN $INC "$src" -o "$bin.tmp" "$LIB" $DEPS -lgmp -lstemmer -lm -lpthread
    mv "$bin.tmp" "$bin"
done
