#!/usr/bin/env bash
# demo.sh - scripts/demo (make demo) run twice without serving
# (PVG_DEMO_NO_SERVE=1) on another port: the URLs name that port and come
# within the first 20 lines (the steps' output is in DATA_DIR/demo.log);
# each run leaves exactly one live admin key, which expires; the earlier
# run's key is revoked, and no never-expiring key is ever made. The README
# says how to choose the port, and `make demo` logs the build instead of
# printing it. The demo declares the shop's catalogue, so a DP release
# (top-items) runs over the demo store.
set -u
PVG=${PVG_CLI:?PVG_CLI is not set}
SRC=${PVG_SOURCE_DIR:?PVG_SOURCE_DIR is not set}
T=$(mktemp -d /tmp/pvg_demo.XXXXXX)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
export PRIVGUIDE_KEY_FILE="$T/key"
D=$T/demo
for run in 1 2; do
    PVG_DEMO_NO_SERVE=1 PORT=9191 timeout 600 bash "$SRC/scripts/demo" "$PVG" "$D" >"$T/out$run" 2>"$T/err$run" ||
        fail "demo run $run: $(cat "$T/err$run")"
    n=$(grep -n 'shop demo *http://127.0.0.1:9191/shop#key=pvgk_' "$T/out$run" | cut -d: -f1)
    [ -n "$n" ] || fail "run $run: no shop URL on port 9191: $(cat "$T/out$run")"
    [ "$n" -le 20 ] || fail "run $run: the URLs come at line $n"
    grep -q 'operator board *http://127.0.0.1:9191/dashboard#key=' "$T/out$run" || fail "run $run: dashboard URL"
    [ -s "$D/demo.log" ] || fail "run $run: no demo.log"
    "$PVG" apikey list --data-dir "$D" --json >"$T/keys$run" || fail "apikey list"
    [ "$(grep -c '"state":"active"' "$T/keys$run")" -eq 1 ] || fail "run $run: live keys: $(cat "$T/keys$run")"
    grep -q '"expires_at":0,' "$T/keys$run" && fail "run $run: a never-expiring key: $(cat "$T/keys$run")"
done
[ "$(wc -l <"$T/keys2")" -eq 2 ] || fail "two keys after two runs: $(cat "$T/keys2")"
first=$(head -n 1 "$T/keys2")
echo "$first" | grep -q '"label":"demo","state":"revoked"' || fail "the first run's key is not revoked: $first"
key=$(sed -n 's/.*#key=\(pvgk_[^&]*\)&.*/\1/p' "$T/out2" | head -n 1)
id=$(echo "$key" | cut -d_ -f2)
grep '"state":"active"' "$T/keys2" | grep -q "\"id\":\"$id\"" || fail "the live key is not the one printed"
# the demo declared the shop's catalogue: DP releases have their public domain
out=$(timeout 60 "$PVG" query top-items --data-dir "$D" --epsilon 0.1 --delta 1e-7 --json 2>&1) ||
    fail "top-items over the demo store: $out"
echo "$out" | grep -q '"rows":\[{"group":' || fail "top-items over the demo store shows nothing: $out"
# the docs
grep -q 'make demo PORT=' "$SRC/README.md" || fail "README does not say how to choose the demo's port"
sed -n '/^demo:/,/^$/p' "$SRC/Makefile" | grep -q 'cmake --build .*>.*demo-build.log' ||
    fail "make demo prints the build output"
echo "demo: ok"
