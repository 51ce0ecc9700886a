#!/usr/bin/env bash
# apikey.sh - apikey create --expires, apikey list, apikey revoke: the list
# shows each key's role, state and ISO-8601 times, never a secret; a bad
# duration is a usage error (exit 2); a running server refuses a key once it
# expired with 401 naming the expiry (polled, every wait bounded).
set -u
PVG=${PVG_CLI:?PVG_CLI is not set}
T=$(mktemp -d /tmp/pvg_apikey.XXXXXX)
SRV_PID=
cleanup() { [ -n "$SRV_PID" ] && kill -KILL "$SRV_PID" 2>/dev/null; rm -rf "$T"; }
trap cleanup EXIT
fail() { echo "FAIL: $*"; [ -f "$T/serve.log" ] && sed 's/^/  serve: /' "$T/serve.log"; exit 1; }
export PRIVGUIDE_KEY_FILE="$T/key"
D=$T/data
timeout 60 "$PVG" init --data-dir "$D" >/dev/null || fail init
OUT=$(timeout 30 "$PVG" apikey list --data-dir "$D") || fail "list (empty)"
echo "$OUT" | grep -q "no API keys" || fail "empty list: $OUT"
K30=$(timeout 30 "$PVG" apikey create --data-dir "$D" --role admin --label thirty --expires 30d --json) || fail "create 30d"
echo "$K30" | grep -q '"expires_at":[1-9]' || fail "30d key has no expiry: $K30"
KNEVER=$(timeout 30 "$PVG" apikey create --data-dir "$D" --role analyst --label forever) || fail "create"
for bad in 0d 30x -5m 11000d abc; do
    timeout 30 "$PVG" apikey create --data-dir "$D" --role admin --expires "$bad" >/dev/null 2>"$T/err"
    [ $? -eq 2 ] && grep -q -- "--expires" "$T/err" || fail "--expires $bad: $(cat "$T/err")"
done
timeout 30 "$PVG" token issue --data-dir "$D" --user 17850 >/dev/null || fail "token"
OUT=$(timeout 30 "$PVG" apikey list --data-dir "$D") || fail list
[ "$(echo "$OUT" | wc -l)" -eq 3 ] || fail "header and two keys (no token) expected: $OUT"
ID30=$(echo "$K30" | sed -n 's/.*"id":"\([0-9a-f]*\)".*/\1/p')
line=$(echo "$OUT" | grep "^$ID30 ")
echo "$line" | grep -Eq "^$ID30 +admin +active +[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z +[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z +thirty$" ||
    fail "30d key line: $line"
c=$(echo "$line" | awk '{print $4}')
e=$(echo "$line" | awk '{print $5}')
[ $(( $(date -u -d "$e" +%s) - $(date -u -d "$c" +%s) )) -eq $((30 * 86400)) ] || fail "expiry is not 30 days after creation: $line"
echo "$OUT" | grep -Eq " analyst +active .* never +forever$" || fail "never-expiring key line: $OUT"
echo "$OUT" | grep -q "pvgk_" && fail "the list shows a secret: $OUT"
NID=$(echo "$KNEVER" | cut -d_ -f2)
timeout 30 "$PVG" apikey revoke --data-dir "$D" "$NID" >/dev/null || fail revoke
timeout 30 "$PVG" apikey list --data-dir "$D" --json | grep "\"id\":\"$NID\"" | grep -q '"state":"revoked"' ||
    fail "revoked key not shown revoked"

# a running server refuses a key after its expiry, saying so
command -v curl >/dev/null || { echo "apikey: ok (server part skipped: no curl)"; exit 0; }
SHORT=$(timeout 30 "$PVG" apikey create --data-dir "$D" --role admin --expires 2s) || fail "create 2s"
"$PVG" serve --data-dir "$D" --port 0 --port-file "$T/port" --drain-ms 1000 >"$T/serve.log" 2>&1 &
SRV_PID=$!
for _ in $(seq 1 600); do [ -s "$T/port" ] && break; kill -0 "$SRV_PID" 2>/dev/null || break; sleep 0.1; done
[ -s "$T/port" ] || fail "server did not start within 60 s"
URL=http://127.0.0.1:$(cat "$T/port")
T0=$(date +%s)
until [ "$(curl -s -m 10 -o "$T/body" -w '%{http_code}' -H "Authorization: Bearer $SHORT" "$URL/metrics")" = 401 ]; do
    [ $(($(date +%s) - T0)) -lt 15 ] || fail "an expired key is still accepted after 15 s"
    sleep 0.1
done
grep -q "credential expired at [0-9]\{4\}-[0-9][0-9]-[0-9][0-9]T[0-9:]*Z" "$T/body" || fail "401 body: $(cat "$T/body")"
grep -q "apikey create" "$T/body" || fail "401 body does not say what to do: $(cat "$T/body")"
kill -TERM "$SRV_PID"
wait "$SRV_PID" 2>/dev/null
SRV_PID=
echo "apikey: ok"
