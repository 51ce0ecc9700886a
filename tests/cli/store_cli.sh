#!/usr/bin/env bash
# CLI of the store: help, version, exit codes, init, ingest JSON, user rights,
# key rotation, retention sweep, and durability under kill -9 mid-ingest.
set -u
PVG=${PVG_CLI:?PVG_CLI not set}
SRC=${PVG_SOURCE_DIR:?}
SAMPLE="$SRC/data/online-retail-sample.csv.gz"
T=$(mktemp -d /tmp/pvg-cli-store-XXXXXX)
trap 'rm -rf "$T"' EXIT
export XDG_CONFIG_HOME="$T/config" # key files go here, never into the real home
fail() { echo "FAIL: $*" >&2; exit 1; }
expect_rc() { local want=$1; shift; "$@" >"$T/out" 2>"$T/err"; local rc=$?; [ $rc -eq $want ] || { cat "$T/err" >&2; fail "exit $rc (wanted $want): $*"; }; }

expect_rc 0 "$PVG" --version
grep -q '^privguide [0-9]' "$T/out" || fail "--version output"
expect_rc 0 "$PVG" --help
for c in init ingest "user export" "user delete" "keys rotate" "retention sweep"; do
    grep -q "  $c " "$T/out" || fail "--help lacks $c"
done
expect_rc 0 "$PVG" ingest --help
grep -q -- "--format" "$T/out" || fail "ingest --help lacks --format"
expect_rc 2 "$PVG" frobnicate
grep -q '^privguide: frobnicate: ' "$T/err" || fail "unknown command message"
expect_rc 2 "$PVG" ingest --data-dir "$T/d" --format nope "$SAMPLE"
grep -q "unknown format 'nope'" "$T/err" || fail "bad format message"
expect_rc 2 "$PVG" ingest --data-dir "$T/d" "$SAMPLE"
expect_rc 2 "$PVG" ingest --data-dir "$T/d" --format online-retail --batch x "$SAMPLE"
expect_rc 1 "$PVG" user export 1 --data-dir "$T/none"
grep -q '^privguide: open store: .*privguide init' "$T/err" || fail "missing store message"

expect_rc 0 "$PVG" init --data-dir "$T/d"
KF=$(sed -n 's/^key file: \(.*\) (0600.*/\1/p' "$T/out")
case "$KF" in "$T/config/privguide/"*.key) ;; *) fail "init must say where the key file went: $KF" ;; esac
[ "$(stat -c %a "$KF")" = 600 ] || fail "key file mode"
[ ! -e "$T/d/master.key" ] || fail "a key file in the data dir"
expect_rc 1 "$PVG" init --data-dir "$T/d"
expect_rc 0 "$PVG" ingest --data-dir "$T/d" --format online-retail "$SAMPLE" --json
python3 - "$T/out" <<'PY' || fail "ingest JSON"
import json, sys
j = json.load(open(sys.argv[1]))
for k in ("read","accepted","rejected","rejected_by_reason","dropped_fields","users","items","events","seconds"):
    assert k in j, k
assert j["read"] == 40000 and j["read"] == j["accepted"] + j["rejected"], j
assert sum(j["rejected_by_reason"].values()) == j["rejected"]
assert j["events"] == j["stored"] > 0 and j["users"] > 0
PY
events=$(python3 -c "import json;print(json.load(open('$T/out'))['events'])")
expect_rc 0 "$PVG" user export 17850 --data-dir "$T/d"
python3 -c "import json,sys; j=json.load(open('$T/out')); assert j['user']=='17850' and len(j['events'])>0" || fail "export"
expect_rc 0 "$PVG" user consent 17850 --personalization off --data-dir "$T/d"
grep -q '"personalization":false' "$T/out" || fail "consent"
expect_rc 2 "$PVG" user consent 17850 --analytics maybe --data-dir "$T/d"
expect_rc 0 "$PVG" keys rotate --data-dir "$T/d" --json
expect_rc 0 "$PVG" user export 17850 --data-dir "$T/d"
expect_rc 0 "$PVG" user delete 17850 --data-dir "$T/d"
expect_rc 1 "$PVG" user export 17850 --data-dir "$T/d"
grep -q 'unknown user' "$T/err" || fail "unknown user message"
expect_rc 0 "$PVG" retention sweep --data-dir "$T/d" --json
expect_rc 0 "$PVG" stats --data-dir "$T/d" --json

# kill -9 at random moments: the store opens and keeps every reported batch;
# a rerun completes the import without duplicates.
for round in 1 2 3; do
    rm -rf "$T/k"
    "$PVG" init --data-dir "$T/k" >/dev/null || fail "init k"
    "$PVG" ingest --data-dir "$T/k" --format online-retail --batch 1500 --progress "$SAMPLE" \
        >/dev/null 2>"$T/progress" &
    pid=$!
    sleep "0.$((RANDOM % 9 + 1))"
    kill -9 $pid 2>/dev/null
    wait $pid 2>/dev/null
    committed=$(grep -o 'stored [0-9]*' "$T/progress" | tail -1 | cut -d' ' -f2)
    committed=${committed:-0}
    expect_rc 0 "$PVG" stats --data-dir "$T/k" --json
    held=$(python3 -c "import json;print(json.load(open('$T/out'))['events'])")
    [ "$held" -ge "$committed" ] || fail "round $round: store holds $held events, $committed were reported committed"
    expect_rc 0 "$PVG" ingest --data-dir "$T/k" --format online-retail "$SAMPLE" --json
    total=$(python3 -c "import json;print(json.load(open('$T/out'))['events'])")
    [ "$total" -eq "$events" ] || fail "round $round: after rerun $total events, wanted $events"
done
echo "store CLI: all checks passed"
