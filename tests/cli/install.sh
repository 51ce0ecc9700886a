#!/usr/bin/env bash
# make install's layout: library, headers, binary and a pkg-config file that
# lets a program build against libprivguide; the pages and the OpenAPI
# document under share/privguide/, which the installed `serve` finds and
# serves with no --web-dir or --openapi.
set -u
if [ "${PVG_SANITIZED:-0}" = 1 ]; then
    echo "SKIP: an ASan-instrumented library is not what make install ships; checked in the normal pass"
    exit 77
fi
SRC=${PVG_SOURCE_DIR:?}
PVG=${PVG_CLI:?}
B=$(dirname "$PVG")
T=$(mktemp -d /tmp/pvg-install-XXXXXX)
SRV_PID=
trap '[ -n "$SRV_PID" ] && kill -KILL "$SRV_PID" 2>/dev/null; rm -rf "$T"' EXIT
fail() { echo "FAIL: $*" >&2; [ -f "$T/serve.log" ] && sed 's/^/  serve: /' "$T/serve.log" >&2; exit 1; }
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

# the installed server, run from the prefix, serves the installed pages and
# the installed openapi.json (nothing from the source or build tree)
[ -f "$T/prefix/share/privguide/web/shop.html" ] || fail "pages not installed under share/privguide/web"
[ -f "$T/prefix/share/privguide/openapi.json" ] || fail "openapi.json not installed under share/privguide"
command -v curl >/dev/null || { echo "install: layout ok; serving not checked (curl is not installed)"; exit 0; }
IP=$T/prefix/bin/privguide
env -u PVG_WEB_DIR timeout 60 "$IP" init --data-dir "$T/data" >/dev/null || fail "installed init"
env -u PVG_WEB_DIR "$IP" serve --data-dir "$T/data" --port 0 --port-file "$T/port" >"$T/serve.log" 2>&1 &
SRV_PID=$!
for _ in $(seq 1 600); do [ -s "$T/port" ] && break; kill -0 "$SRV_PID" 2>/dev/null || break; sleep 0.05; done
[ -s "$T/port" ] || fail "installed serve did not start within 30 s"
URL=http://127.0.0.1:$(cat "$T/port")
for page in shop portal dashboard; do
    code=$(curl -s -m 10 -o "$T/$page.html" -w '%{http_code}' "$URL/$page")
    [ "$code" = 200 ] || fail "installed serve: /$page gave HTTP $code"
    cmp -s "$T/$page.html" "$T/prefix/share/privguide/web/$page.html" || fail "/$page is not the installed page"
done
code=$(curl -s -m 10 -o "$T/openapi.json" -w '%{http_code}' "$URL/v1/openapi.json")
[ "$code" = 200 ] || fail "installed serve: /v1/openapi.json gave HTTP $code"
cmp -s "$T/openapi.json" "$SRC/docs/openapi.json" || fail "/v1/openapi.json is not docs/openapi.json"
kill -TERM "$SRV_PID"
wait "$SRV_PID" || fail "installed serve did not exit 0 on SIGTERM"
SRV_PID=
echo "install: ok (installed serve found share/privguide/web and share/privguide/openapi.json)"
