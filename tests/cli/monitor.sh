#!/usr/bin/env bash
# monitor.sh - access monitoring through the privguide binary: a server with
# --alert-webhook; an admin key exporting 25 shoppers is suspended (403),
# the alert reaches the webhook, `monitor alerts` (text and --json), /metrics;
# `monitor ack`; `monitor resume` (the admin override) and `monitor suspend`
# seen by the running server; `monitor scan` offline finds the burst again
# without storing it twice; a malformed webhook URL is refused. Every wait is
# bounded (polling, no fixed sleeps).
set -u
PVG=${PVG_CLI:?PVG_CLI is not set}
command -v curl >/dev/null || { echo "SKIP: curl is not installed"; exit 77; }
command -v python3 >/dev/null || { echo "SKIP: python3 is not installed"; exit 77; }
T=$(mktemp -d /tmp/pvg_cli_monitor.XXXXXX)
SRV_PID=
HOOK_PID=
cleanup() {
  [ -n "$SRV_PID" ] && kill -KILL "$SRV_PID" 2>/dev/null
  [ -n "$HOOK_PID" ] && kill -KILL "$HOOK_PID" 2>/dev/null
  rm -rf "$T"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; [ -f "$T/serve.log" ] && sed 's/^/  serve: /' "$T/serve.log"; exit 1; }
export PRIVGUIDE_KEY_FILE="$T/key"
D=$T/data
C="curl -s -m 10"
poll() { # poll SECONDS CMD...: until CMD succeeds, at most SECONDS
  local limit=$1; shift
  local t0; t0=$(date +%s%N)
  until "$@"; do
    [ $(( ($(date +%s%N) - t0) / 1000000 )) -lt $((limit * 1000)) ] || return 1
    sleep 0.05
  done
}

timeout 60 "$PVG" init --data-dir "$D" >/dev/null || fail "init"
ADMIN=$(timeout 30 "$PVG" apikey create --role admin --label ops --data-dir "$D") || fail "apikey"
ROGUE=$(timeout 30 "$PVG" apikey create --role admin --label rogue --data-dir "$D") || fail "apikey"
RID=$(echo "$ROGUE" | cut -d_ -f2)

# the webhook: a receiver that stores each POSTed body
cat >"$T/hook.py" <<'PY'
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        n = int(self.headers.get('Content-Length', 0))
        body = self.rfile.read(n)
        with open(sys.argv[1], 'ab') as f:
            f.write(body + b'\n')
        self.send_response(204)
        self.end_headers()
    def log_message(self, *a):
        pass
s = http.server.HTTPServer(('127.0.0.1', 0), H)
open(sys.argv[2], 'w').write(str(s.server_address[1]))
s.serve_forever()
PY
python3 "$T/hook.py" "$T/hook.log" "$T/hook.port" &
HOOK_PID=$!
poll 60 test -s "$T/hook.port" || fail "webhook receiver did not start within 60 s"
HPORT=$(cat "$T/hook.port")

timeout 10 "$PVG" serve --data-dir "$D" --port 0 --alert-webhook "ftp://127.0.0.1/x" >/dev/null 2>"$T/bad.err"
[ $? -ne 0 ] || fail "a non-http webhook URL must be refused"
grep -q "alert webhook" "$T/bad.err" || fail "the refusal must name the webhook: $(cat "$T/bad.err")"

"$PVG" serve --data-dir "$D" --port 0 --port-file "$T/port" --drain-ms 3000 \
  --alert-webhook "http://127.0.0.1:$HPORT/hook" >"$T/serve.log" 2>&1 &
SRV_PID=$!
poll 30 test -s "$T/port" || fail "server did not start within 30 s"
URL=http://127.0.0.1:$(cat "$T/port")

code() { $C -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $1" "$URL$2"; }
[ "$(code "$ROGUE" /v1/whoami)" = 200 ] || fail "the rogue key works at first"
n=0
for u in $(seq 1 25); do
  c=$(code "$ROGUE" "/v1/users/shopper$u/data")
  [ "$c" = 403 ] && break
  n=$((n + 1))
done
echo "exports attempted before the suspension: $n"
rogue_refused() { [ "$(code "$ROGUE" /v1/whoami)" = 403 ]; }
poll 10 rogue_refused || fail "the monitor did not suspend the key within 10 s"
$C -H "Authorization: Bearer $ROGUE" "$URL/v1/whoami" | grep -q '"error":"suspended"' || fail "403 must say suspended"
[ "$(code "$ADMIN" /v1/whoami)" = 200 ] || fail "another admin key is not affected"

hook_got() { grep -q '"rule":"export_burst"' "$T/hook.log" 2>/dev/null; }
poll 10 hook_got || fail "the webhook did not receive the alert"
grep -q "\"credential\":\"key:$RID\"" "$T/hook.log" || fail "webhook body: $(cat "$T/hook.log")"
metrics_ok() {
  $C -H "Authorization: Bearer $ADMIN" "$URL/metrics" >"$T/metrics"
  grep -q '^privguide_alerts_total{rule="export_burst"} 1$' "$T/metrics" &&
    grep -q '^privguide_alert_webhook_total{outcome="sent"} 1$' "$T/metrics"
}
poll 10 metrics_ok || fail "metrics: $(grep -E 'alert|monitor' "$T/metrics")"

OUT=$(timeout 30 "$PVG" monitor alerts --data-dir "$D") || fail "monitor alerts"
echo "$OUT"
echo "$OUT" | grep -q "export_burst.*key:$RID.*open.*suspended" || fail "monitor alerts: $OUT"
echo "$OUT" | grep -q "evidence (audit seq): [0-9]" || fail "monitor alerts shows no evidence: $OUT"
J=$(timeout 30 "$PVG" monitor alerts --json --data-dir "$D") || fail "monitor alerts --json"
echo "$J" | python3 -c '
import json, sys
d = json.load(sys.stdin)
a = d["alerts"][0]
assert a["rule"] == "export_burst" and a["state"] == "open" and a["action"] == "suspended", a
assert a["opened"].endswith("Z") and len(a["evidence"]) >= 20, a
' || fail "monitor alerts --json: $J"
AID=$(echo "$J" | python3 -c 'import json,sys; print(json.load(sys.stdin)["alerts"][0]["id"])')
HTTP=$($C -H "Authorization: Bearer $ADMIN" "$URL/v1/admin/alerts")
echo "$HTTP" | grep -q "\"id\":$AID" || fail "GET /v1/admin/alerts: $HTTP"
timeout 30 "$PVG" monitor ack 999 --data-dir "$D" >/dev/null 2>&1 && fail "ack of an unknown alert must fail"
timeout 30 "$PVG" monitor ack "$AID" --data-dir "$D" | grep -q "acknowledged" || fail "monitor ack"
timeout 30 "$PVG" monitor alerts --data-dir "$D" | grep -q "no open alerts" || fail "acknowledged alert still open"
timeout 30 "$PVG" monitor alerts --all --data-dir "$D" | grep -q "acknowledged" || fail "--all must show it"
timeout 30 "$PVG" audit show --data-dir "$D" | grep -q "alert_ack" || fail "the ack is not audited"

# the admin override from the CLI, seen at once by the running server
timeout 30 "$PVG" monitor resume "$RID" --data-dir "$D" | grep -q resumed || fail "monitor resume"
rogue_back() { [ "$(code "$ROGUE" /v1/whoami)" = 200 ]; }
poll 5 rogue_back || fail "a resumed key must be served again"
timeout 30 "$PVG" monitor resume "$RID" --data-dir "$D" >/dev/null 2>&1 && fail "resuming an active key must fail"
timeout 30 "$PVG" monitor suspend "$RID" --reason "test" --data-dir "$D" | grep -q suspended || fail "monitor suspend"
poll 5 rogue_refused || fail "a key suspended by the CLI must be refused by the server"
timeout 30 "$PVG" monitor suspend 0000000000000000 --data-dir "$D" >/dev/null 2>&1 && fail "suspending an unknown id must fail"
timeout 30 "$PVG" audit show --data-dir "$D" | grep -c "credential_suspend" | grep -q 2 || fail "suspensions not audited"

kill -TERM "$SRV_PID"
wait "$SRV_PID" || fail "serve did not exit 0"
SRV_PID=

# offline: the same burst, found again, not stored twice
S=$(timeout 60 "$PVG" monitor scan --json --data-dir "$D") || fail "monitor scan"
echo "scan: $S"
echo "$S" | python3 -c '
import json, sys
d = json.load(sys.stdin)
assert d["by_rule"]["export_burst"] == 1 and d["new"] == 0, d
' || fail "monitor scan: $S"
timeout 30 "$PVG" audit verify --data-dir "$D" >/dev/null || fail "the audit log must stay intact"
echo "OK: monitor CLI, webhook, suspension and override"
