#!/usr/bin/env bash
# fl_dp.sh - federated training with client-level DP over HTTP, real
# processes on loopback: `fl serve --epsilon` calibrates the noise, charges
# the store's budget once (purpose federated_training) before any round, and
# default clients take part; a second run that would overspend is refused
# before any round (no charge, no server); a server announcing no DP gets no
# update from a default client; a round with fewer masked inputs than the
# survivor floor aborts before unmasking; a 16-bit SecAgg lane is refused
# without DP, bounds its cohort (--max-cohort, refused beyond what the lane
# holds) and carries a DP round.
set -u
P=${PVG_CLI:?PVG_CLI not set}
T=$(mktemp -d /tmp/pvg-fl-dp-XXXXXX)
SRV_PID=
cleanup() { [ -n "$SRV_PID" ] && kill -KILL "$SRV_PID" 2>/dev/null; rm -rf "$T"; }
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; [ -f "$T/serve.log" ] && sed 's/^/  serve: /' "$T/serve.log" >&2; exit 1; }

awk 'BEGIN { srand(7); for (u = 0; u < 3; u++) for (e = 0; e < 8; e++)
  printf "{\"type\":\"purchase\",\"user\":\"u%d\",\"item\":\"i%d\",\"ts\":%d}\n", u, int(rand() * 20), 1000 + e }' >"$T/ev.jsonl"
seq 0 19 | sed 's/^/i/' >"$T/items.txt"
D=$T/data
export PRIVGUIDE_KEY_FILE=$T/keys
timeout 60 "$P" init --data-dir "$D" >/dev/null || fail "init"
"$P" budget set --epsilon 10 --delta 1e-4 --data-dir "$D" >/dev/null || fail "budget set"
for u in 0 1 2; do
  TOKS[$u]=$(timeout 30 "$P" token issue --user "u$u" --data-dir "$D") || fail "token issue"
  grep "\"u$u\"" "$T/ev.jsonl" >"$T/u$u.jsonl"
done
releases() { "$P" budget show --json --data-dir "$D" | jq -c '[.releases[] | select(.purpose == "federated_training")]'; }

# serve ARGS...: starts `fl serve` on an ephemeral port, sets URL (fails if it does not start)
serve() {
  "$P" fl serve --data-dir "$D" --port 0 --items "$T/items.txt" --factors 4 --min-clients 3 "$@" \
    >"$T/rounds.jsonl" 2>"$T/serve.log" &
  SRV_PID=$!
  URL=
  for _ in $(seq 1 600); do
    URL=$(sed -n 's|.*federated training on \(http://[0-9.:]*\)/v1/fl/.*|\1|p' "$T/serve.log")
    [ -n "$URL" ] && return 0
    kill -0 "$SRV_PID" 2>/dev/null || break
    sleep 0.05
  done
  fail "server did not start"
}
# clients ARGS...: the three shoppers' clients, one round each; waits for them
clients() {
  for u in 0 1 2; do
    "$P" fl client --server "$URL" --token "${TOKS[$u]}" --data "$T/u$u.jsonl" --items "$T/items.txt" \
      --rounds 1 --timeout 120 "$@" >"$T/c$u.json" 2>"$T/c$u.err" &
    CP[$u]=$!
  done
  for u in 0 1 2; do wait "${CP[$u]}" || { cat "$T/c$u.err" "$T/c$u.json" >&2; fail "client $u"; }; done
}
stop() { wait "$SRV_PID" || fail "server exit"; SRV_PID=; }
# told N: the server told N clients that it finished and stopped under none still polling
# (it used to exit right after its last round, and a client polling a moment later failed)
told() { grep -q "fl serve: finished; $1 clients told, 0 still polling" "$T/serve.log" || fail "told $1"; }

# 0. averaging the rounds' solves is for the statistics form only (the default
#    without DP is the gradient form): refused before any server starts
"$P" fl serve --data-dir "$D" --port 0 --items "$T/items.txt" --average-solves >/dev/null 2>"$T/err"; rc=$?
[ $rc -eq 2 ] && grep -q -- "--average-solves needs the statistics form (--update stats)" "$T/err" \
  || fail "average-solves with the gradient form: rc $rc, $(cat "$T/err")"

# 1. DP run: one charge of the accounted epsilon, default clients take part
serve --epsilon 4 --delta 1e-5 --rounds 1 --phase-seconds 120
grep -q "client-level DP: distributed noise" "$T/serve.log" || fail "start-up line: $(cat "$T/serve.log")"
R=$(releases)
[ "$(jq length <<<"$R")" -eq 1 ] || fail "want one federated_training charge before the round: $R"
clients
stop
told 3
[ "$(jq -r .phase "$T/rounds.jsonl")" = done ] || fail "DP round: $(cat "$T/rounds.jsonl")"
[ "$(jq .survivors "$T/rounds.jsonl")" -eq 3 ] || fail "survivors: $(cat "$T/rounds.jsonl")"
for u in 0 1 2; do [ "$(jq '.[0].rounds' "$T/c$u.json")" -eq 1 ] || fail "client $u: $(cat "$T/c$u.json" "$T/c$u.err")"; done
R=$(releases)
[ "$(jq length <<<"$R")" -eq 1 ] || fail "want exactly one charge for the run: $R"
jq -e '.[0].epsilon > 3.5 and .[0].epsilon <= 4 and .[0].delta == 1e-5 and .[0].mechanism == "discrete-gaussian"' \
  <<<"$R" >/dev/null || fail "charge: $R"
E1=$(jq '.[0].epsilon' <<<"$R")
logged=$(sed -n 's/.*epsilon=\([0-9.e+-]*\) .*/\1/p' "$T/serve.log")
awk -v a="$E1" -v b="$logged" 'BEGIN { exit !(a - b < 1e-5 && b - a < 1e-5) }' ||
  fail "start-up epsilon $logged != charged $E1"

# 2. a run that would overspend (4 + 7 > 10) is refused before any round
"$P" fl serve --data-dir "$D" --port 0 --items "$T/items.txt" --factors 4 --epsilon 7 --delta 1e-5 \
  --rounds 1 >"$T/rounds2.jsonl" 2>"$T/err2"
[ $? -eq 1 ] || fail "overspending run not refused: $(cat "$T/err2")"
grep -qi "budget" "$T/err2" || fail "refusal should name the budget: $(cat "$T/err2")"
grep -q "federated training on" "$T/err2" && fail "the refused run served"
[ -s "$T/rounds2.jsonl" ] && fail "a refused run ran a round"
[ "$(releases | jq length)" -eq 1 ] || fail "the refused run was charged"
# bad DP flags are usage errors; --noise without --epsilon too
"$P" fl serve --data-dir "$D" --items "$T/items.txt" --noise central >/dev/null 2>&1
[ $? -eq 2 ] || fail "--noise without --epsilon"
"$P" fl serve --data-dir "$D" --items "$T/items.txt" --epsilon 1 --rounds 0 >/dev/null 2>&1
[ $? -eq 2 ] || fail "--epsilon with unlimited rounds"

# 3. a server without DP: it says so; default clients send no update
serve --rounds 1 --phase-seconds 2
grep -q "WITHOUT differential privacy" "$T/serve.log" || fail "no-DP start-up line: $(cat "$T/serve.log")"
clients
stop
told 3
for u in 0 1 2; do
  jq -e '.[0].rounds == 0 and .[0].refused == 1 and .[0].status == "ok" and
    (.[0].refusal | test("^round 1: .*no DP noise"))' "$T/c$u.json" >/dev/null ||
    fail "client $u took part: $(cat "$T/c$u.json")"
  grep -q "refused 1 round(s); the last: round 1: " "$T/c$u.err" || fail "client $u: no reason on stderr"
done
jq -e '.phase == "aborted" and .arrived[2] == 0 and .survivors == 0' "$T/rounds.jsonl" >/dev/null ||
  fail "no-DP round: $(cat "$T/rounds.jsonl")"
[ "$(releases | jq length)" -eq 1 ] || fail "a no-DP run was charged"

# 4. the survivor floor: one client drops before its masked input; two inputs
#    are enough for SecAgg (t = 2) but below the floor of 3: nothing unmasked.
#    The masked phase ends at its deadline (the grace needs the floor's 3
#    messages): 4 s, where the live clients answer within ~0.1 s
serve --epsilon 1 --delta 1e-5 --rounds 1 --phase-seconds 4 --min-survivors 3
for u in 0 1; do
  "$P" fl client --server "$URL" --token "${TOKS[$u]}" --data "$T/u$u.jsonl" --items "$T/items.txt" \
    --rounds 1 --timeout 120 >"$T/c$u.json" 2>"$T/c$u.err" &
  CP[$u]=$!
done
"$P" fl client --server "$URL" --token "${TOKS[2]}" --data "$T/u2.jsonl" --items "$T/items.txt" \
  --rounds 1 --timeout 120 --drop-phase 3 >"$T/c2.json" 2>"$T/c2.err" || fail "dropping client"
for u in 0 1; do wait "${CP[$u]}" || { cat "$T/c$u.err" >&2; fail "client $u"; }; done
stop
told 2
jq -e '.phase == "aborted" and .arrived[2] == 2 and .arrived[3] == 0' "$T/rounds.jsonl" >/dev/null ||
  fail "floor round: $(cat "$T/rounds.jsonl")"
jq -r .error "$T/rounds.jsonl" | grep -q "survivor floor 3" || fail "floor error: $(cat "$T/rounds.jsonl")"
[ "$(releases | jq length)" -eq 2 ] || fail "want the second run's single charge"

# 5. the 16-bit SecAgg lane: refused without DP (a usage error naming the rule, no server);
#    with DP the clients take part through 16-bit lanes and ChaCha8 masks
"$P" fl serve --data-dir "$D" --port 0 --items "$T/items.txt" --lane-bits 16 >/dev/null 2>"$T/err"; rc=$?
[ $rc -eq 2 ] && grep -q -- "--lane-bits 16 needs DP updates (--epsilon)" "$T/err" \
  || fail "16-bit lane without DP: rc $rc, $(cat "$T/err")"
"$P" fl serve --data-dir "$D" --port 0 --items "$T/items.txt" --lane-bits 24 --epsilon 1 >/dev/null 2>"$T/err"
[ $? -eq 2 ] || fail "--lane-bits 24 accepted: $(cat "$T/err")"
"$P" fl serve --data-dir "$D" --port 0 --items "$T/items.txt" --mask-rounds 10 --epsilon 1 >/dev/null 2>"$T/err"
[ $? -eq 2 ] || fail "--mask-rounds 10 accepted: $(cat "$T/err")"
#    the cohort bound (the encoding's room before its sum wraps, any lane): never below the
#    survivor floor, and never more clients than the lane holds
"$P" fl serve --data-dir "$D" --port 0 --items "$T/items.txt" --min-clients 8 --max-cohort 3 >/dev/null 2>"$T/err"; rc=$?
[ $rc -eq 2 ] && grep -q -- "--max-cohort 3 is below the survivor floor 4" "$T/err" \
  || fail "32-bit --max-cohort below the floor: rc $rc, $(cat "$T/err")"
"$P" fl serve --data-dir "$D" --port 0 --items "$T/items.txt" --lane-bits 16 --max-cohort 60000 \
  --epsilon 1 >/dev/null 2>"$T/err"; rc=$?
[ $rc -eq 2 ] && grep -q -- "a 16-bit lane for a cohort of 60000 (--max-cohort)" "$T/err" \
  || fail "--max-cohort beyond the 16-bit lane: rc $rc, $(cat "$T/err")"
"$P" fl serve --data-dir "$D" --port 0 --items "$T/items.txt" --min-clients 8 --lane-bits 16 --max-cohort 3 \
  --epsilon 1 >/dev/null 2>"$T/err"; rc=$?
[ $rc -eq 2 ] && grep -q -- "--max-cohort 3 is below the survivor floor 4" "$T/err" \
  || fail "--max-cohort below the floor: rc $rc, $(cat "$T/err")"
[ "$(releases | jq length)" -eq 2 ] || fail "a refused lane run was charged"
serve --epsilon 2 --delta 1e-5 --rounds 1 --phase-seconds 120 --lane-bits 16 --mask-rounds 8 --max-cohort 3
clients
stop
told 3
jq -e '.phase == "done" and .survivors == 3 and .lane_bits == 16 and .mask_rounds == 8' \
  "$T/rounds.jsonl" >/dev/null || fail "16-bit lane round: $(cat "$T/rounds.jsonl")"
for u in 0 1 2; do [ "$(jq '.[0].rounds' "$T/c$u.json")" -eq 1 ] || fail "lane client $u: $(cat "$T/c$u.json" "$T/c$u.err")"; done
[ "$(releases | jq length)" -eq 3 ] || fail "want the lane run's single charge"
echo ok
