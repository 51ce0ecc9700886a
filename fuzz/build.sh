#!/usr/bin/env bash
# Builds the libFuzzer harnesses fuzz/fuzz_<name>.c into $OUT/fuzz_<name>.
#
# The library is built by the project's own CMake (every src/**/*.c, found by
# its glob) with clang and -fsanitize=fuzzer-no-link,address,undefined into
# $OUT (default build-fuzz/); each harness is then linked against that static
# library with -fsanitize=fuzzer,address,undefined. Both steps are
# incremental: a second run with nothing changed costs a few seconds.
#
# FUZZ_OPT (default "-g -O1") are the optimisation and debug flags of both
# steps: the long search of `make fuzz` keeps -O1 (faster executions); the
# ctest smoke test builds its own tree with "-g -O0", which compiles the
# library about 3x faster under the sanitizers (the harnesses then execute
# fewer inputs per second, which a seconds-long smoke run does not need).
# A tree built with other flags is reconfigured. Harnesses are linked with
# lld when it is installed (about 40% faster than ld.bfd here).
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

OPT=${FUZZ_OPT:--g -O1}
LIB_CFLAGS="$OPT -fsanitize=fuzzer-no-link $SAN"
if [ ! -f "$OUT/CMakeCache.txt" ] || [ "$(cat "$OUT/.cflags" 2>/dev/null)" != "$LIB_CFLAGS" ]; then
    rm -f "$OUT/CMakeCache.txt" "$OUT"/fuzz_*
    CC="$CC" cmake -S "$ROOT" -B "$OUT" -DCMAKE_BUILD_TYPE=Debug -DPVG_BUILD_TESTS=OFF \
        -DPVG_BUILD_BENCH=OFF -DCMAKE_C_FLAGS="$LIB_CFLAGS" >/dev/null
    printf '%s\n' "$LIB_CFLAGS" >"$OUT/.cflags"
fi
LINKER=()
command -v ld.lld >/dev/null 2>&1 && LINKER=(-fuse-ld=lld)
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
    "$CC" -std=c11 $OPT "${LINKER[@]}" -Wall -Wextra -Werror -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE \
        -D_GNU_SOURCE -fsanitize=fuzzer $SAN $INC "$src" -o "$bin.tmp" "$LIB" $DEPS -lgmp -lstemmer -lm -lpthread
    mv "$bin.tmp" "$bin"
done
