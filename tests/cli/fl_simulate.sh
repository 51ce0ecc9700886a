#!/usr/bin/env bash
# fl_simulate.sh - `privguide fl simulate` with real client processes on
# loopback: 12 clients in 3 processes train 2 rounds of federated iALS over
# HTTP (every round done, all 12 in the sum); with dropouts a round still
# completes with the survivors; bad flags exit 2; `fl client` refuses a
# missing data file before contacting anyone.
set -u
P=${PVG_CLI:?PVG_CLI not set}
T=$(mktemp -d /tmp/pvg-fl-cli-XXXXXX)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# 12 shoppers, 40 items, 8 purchases each
awk 'BEGIN { srand(11); for (u = 0; u < 12; u++) for (e = 0; e < 8; e++)
  printf "{\"type\":\"purchase\",\"user\":\"u%d\",\"item\":\"i%d\",\"ts\":%d}\n", u, int(rand() * 40), 1000 + e }' >"$T/ev.jsonl"

"$P" fl simulate --clients 12 --processes 3 --dataset "$T/ev.jsonl" --rounds 2 --factors 8 \
  --phase-seconds 20 >"$T/res.json" 2>"$T/err" || { cat "$T/err" >&2; fail "simulate"; }
[ "$(jq '.rounds | length' "$T/res.json")" -eq 2 ] || fail "want 2 rounds: $(cat "$T/res.json")"
[ "$(jq -r '[.rounds[].phase] | unique | join(",")' "$T/res.json")" = done ] || fail "rounds not done"
[ "$(jq '[.rounds[].survivors] | min' "$T/res.json")" -eq 12 ] || fail "all 12 should be in the sum"
[ "$(jq '.rounds[0].t > (.rounds[0].k + 1) / 2' "$T/res.json")" = true ] || fail "threshold not a majority"

# 25% dropouts (3 clients, each in a random phase): the round ends with the others
"$P" fl simulate --clients 12 --processes 2 --dataset "$T/ev.jsonl" --rounds 1 --factors 8 \
  --dropout 0.25 --phase-seconds 3 >"$T/res2.json" 2>"$T/err" || { cat "$T/err" >&2; fail "simulate dropout"; }
[ "$(jq -r '.rounds[0].phase' "$T/res2.json")" = done ] || fail "dropout round: $(cat "$T/res2.json")"
s=$(jq '.rounds[0].survivors' "$T/res2.json")
[ "$s" -ge 9 ] && [ "$s" -le 12 ] || fail "survivors $s"

"$P" fl simulate --clients 2 --dataset "$T/ev.jsonl" >/dev/null 2>&1
[ $? -eq 2 ] || fail "--clients 2 should be a usage error"
printf 'i1\ni2\n' >"$T/items.txt"
"$P" fl client --server http://127.0.0.1:1 --token x --data "$T/none.jsonl" --items "$T/items.txt" \
  >/dev/null 2>"$T/err" && fail "missing data file accepted"
grep -q none.jsonl "$T/err" || fail "error should name the data file: $(cat "$T/err")"
echo ok
