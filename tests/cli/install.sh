#!/usr/bin/env bash
# make install's layout: library, headers, binary and a pkg-config file that
# lets a program build against libprivguide.
set -u
if [ "${PVG_SANITIZED:-0}" = 1 ]; then
    echo "SKIP: an ASan-instrumented library is not what make install ships; checked in the normal pass"
    exit 77
fi
SRC=${PVG_SOURCE_DIR:?}
PVG=${PVG_CLI:?}
B=$(dirname "$PVG")
T=$(mktemp -d /tmp/pvg-install-XXXXXX)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
cmake --install "$B" --prefix "$T/prefix" >/dev/null || fail "cmake --install"
[ -x "$T/prefix/bin/privguide" ] || fail "binary not installed"
[ -f "$T/prefix/include/privguide/store.h" ] || fail "headers not installed"
ls "$T"/prefix/lib*/libprivguide.so* >/dev/null 2>&1 || ls "$T"/prefix/lib/*/libprivguide.so* >/dev/null 2>&1 || fail "shared library not installed"
pc=$(find "$T/prefix" -name privguide.pc | head -1)
[ -n "$pc" ] || fail "privguide.pc not installed"
cat > "$T/app.c" <<'C'
#include <privguide/common.h>
#include <privguide/store.h>
#include <stdio.h>
int main(void)
{
    if (pvg_init() != PVG_OK) return 1;
    pvg_store *s = NULL;
    pvg_error err;
    pvg_status st = pvg_store_open("/nonexistent", &s, &err);
    printf("%s %s\n", pvg_version(), pvg_strerror(st));
    return st == PVG_ERR_NOT_FOUND ? 0 : 1;
}
C
export PKG_CONFIG_PATH=$(dirname "$pc")
cc -std=c11 "$T/app.c" -o "$T/app" $(pkg-config --cflags --libs privguide) -Wl,-rpath,"$(pkg-config --variable=libdir privguide)" \
    || fail "build against the installed library"
"$T/app" | grep -q "not found" || fail "program against the installed library"
echo "install: ok"
