#!/usr/bin/env bash
# fl_simulate.sh - `privguide fl simulate` with real client processes on
# loopback: 12 clients in 3 processes train 2 rounds of federated iALS over
# HTTP (every round done, all 12 in the sum); with dropouts a round still
# completes with the survivors; bad flags exit 2; `fl client` refuses a
# missing data file before contacting anyone.
# `privguide serve --fl-items` serves the same rounds to three `fl client`
# processes; operator keys and anonymous callers are refused; a malformed
# message is answered 400 with its byte offset.
set -u
P=${PVG_CLI:?PVG_CLI not set}
T=$(mktemp -d /tmp/pvg-fl-cli-XXXXXX)
SRV_PID=
cleanup() { [ -n "$SRV_PID" ] && kill -KILL "$SRV_PID" 2>/dev/null; rm -rf "$T"; }
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; [ -f "$T/serve.log" ] && sed 's/^/  serve: /' "$T/serve.log" >&2; exit 1; }

# 12 shoppers, 40 items, 8 purchases each
awk 'BEGIN { srand(11); for (u = 0; u < 12; u++) for (e = 0; e < 8; e++)
  printf "{\"type\":\"purchase\",\"user\":\"u%d\",\"item\":\"i%d\",\"ts\":%d}\n", u, int(rand() * 40), 1000 + e }' >"$T/ev.jsonl"

"$P" fl simulate --clients 12 --processes 3 --dataset "$T/ev.jsonl" --rounds 2 --factors 8 \
  --phase-seconds 90 >"$T/res.json" 2>"$T/err" || { cat "$T/err" >&2; fail "simulate"; }
[ "$(jq '.rounds | length' "$T/res.json")" -eq 2 ] || fail "want 2 rounds: $(cat "$T/res.json")"
[ "$(jq -r '[.rounds[].phase] | unique | join(",")' "$T/res.json")" = done ] || fail "rounds not done"
[ "$(jq '[.rounds[].survivors] | min' "$T/res.json")" -eq 12 ] || fail "all 12 should be in the sum"
[ "$(jq '.rounds[0].t > (.rounds[0].k + 1) / 2' "$T/res.json")" = true ] || fail "threshold not a majority"
# the default SecAgg mode: 32-bit lanes, ChaCha8 masks (docs/secagg.md "Masks")
[ "$(jq -c '[.rounds[0].lane_bits, .rounds[0].mask_rounds]' "$T/res.json")" = "[32,8]" ] ||
  fail "default mode: $(jq -c '.rounds[0]' "$T/res.json")"

# 25% dropouts (3 clients, each in a random phase): the round ends with the
# others. A phase a client dropped in closes by the grace (the quorum is in
# and the missing client silent for 4 s: the live ones poll, or park in a
# long poll, which counts as seen, and take ~50 ms a phase under ASan)
# instead of its 15 s deadline; a phase closing at its deadline is
# test_fl_net's dropout test.
"$P" fl simulate --clients 12 --processes 2 --dataset "$T/ev.jsonl" --rounds 1 --factors 8 \
  --dropout 0.25 --phase-seconds 15 --phase-grace 4 >"$T/res2.json" 2>"$T/err" ||
  { cat "$T/err" >&2; fail "simulate dropout"; }
[ "$(jq -r '.rounds[0].phase' "$T/res2.json")" = done ] || fail "dropout round: $(cat "$T/res2.json")"
s=$(jq '.rounds[0].survivors' "$T/res2.json")
[ "$s" -ge 9 ] && [ "$s" -le 12 ] || fail "survivors $s"

"$P" fl simulate --clients 2 --dataset "$T/ev.jsonl" >/dev/null 2>&1
[ $? -eq 2 ] || fail "--clients 2 should be a usage error"
printf 'i1\ni2\n' >"$T/items.txt"
"$P" fl client --server http://127.0.0.1:1 --token x --data "$T/none.jsonl" --items "$T/items.txt" \
  >/dev/null 2>"$T/err" && fail "missing data file accepted"
grep -q none.jsonl "$T/err" || fail "error should name the data file: $(cat "$T/err")"
# privguide serve --fl-items: three shoppers' clients, one round
D=$T/data
export PRIVGUIDE_KEY_FILE=$T/keys
timeout 60 "$P" init --data-dir "$D" >/dev/null || fail "init"
ADMIN=$(timeout 30 "$P" apikey create --role admin --rate 0 --data-dir "$D") || fail "apikey"
seq 0 39 | sed 's/^/i/' >"$T/items40.txt"
for u in 0 1 2; do
  TOKS[$u]=$(timeout 30 "$P" token issue --user "u$u" --data-dir "$D") || fail "token issue"
  grep "\"u$u\"" "$T/ev.jsonl" >"$T/u$u.jsonl"
done
# the SecAgg lane flags go through the same checks as fl serve's
"$P" serve --data-dir "$D" --port 0 --no-monitor --fl-items "$T/items40.txt" --fl-lane-bits 16 \
  >/dev/null 2>"$T/err"; rc=$?
[ $rc -eq 2 ] && grep -q -- "--fl-lane-bits 16 needs DP updates (--fl-epsilon)" "$T/err" ||
  fail "serve --fl-lane-bits 16 without DP: rc $rc, $(cat "$T/err")"
"$P" serve --data-dir "$D" --port 0 --no-monitor --fl-items "$T/items40.txt" --fl-min-clients 8 \
  --fl-max-cohort 3 >/dev/null 2>"$T/err"; rc=$?
[ $rc -eq 2 ] && grep -q -- "--fl-max-cohort 3 is below the survivor floor 4" "$T/err" ||
  fail "serve --fl-max-cohort below the floor: rc $rc, $(cat "$T/err")"
"$P" serve --data-dir "$D" --port 0 --port-file "$T/port" --no-monitor --fl-items "$T/items40.txt" \
  --fl-factors 4 --fl-rounds 1 --fl-min-clients 3 --fl-phase-seconds 90 --drain-ms 2000 \
  --fl-lane-bits 32 --fl-mask-rounds 12 --fl-max-cohort 10 >"$T/serve.log" 2>&1 &
SRV_PID=$!
for _ in $(seq 1 300); do [ -s "$T/port" ] && break; sleep 0.1; done
[ -s "$T/port" ] || fail "server did not start"
URL=http://127.0.0.1:$(cat "$T/port")
C="curl -s -m 10"
[ "$($C -o /dev/null -w '%{http_code}' "$URL/v1/fl/state")" = 401 ] || fail "anonymous fl state must be 401"
[ "$($C -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $ADMIN" "$URL/v1/fl/state")" = 403 ] ||
  fail "an operator key must get 403"
OUT=$($C -X POST -H "Authorization: Bearer ${TOKS[0]}" --data-binary 'PVSA' "$URL/v1/fl/messages")
echo "$OUT" | grep -q '"status":400' || fail "short message: $OUT"
echo "$OUT" | grep -q 'byte' || fail "the error should name the byte offset: $OUT"
for u in 0 1 2; do
  "$P" fl client --server "$URL" --token "${TOKS[$u]}" --data "$T/u$u.jsonl" --items "$T/items40.txt" \
    --rounds 1 --timeout 120 --allow-no-dp >"$T/c$u.json" 2>"$T/c$u.err" &
  CP[$u]=$!
done
for u in 0 1 2; do wait "${CP[$u]}" || { cat "$T/c$u.err" >&2; fail "client $u"; }; done
for u in 0 1 2; do
  [ "$(jq '.[0].rounds' "$T/c$u.json")" -eq 1 ] || fail "client $u rounds: $(cat "$T/c$u.json")"
done
kill -TERM "$SRV_PID"; wait "$SRV_PID"; SRV_PID=
echo ok
