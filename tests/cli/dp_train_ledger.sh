#!/usr/bin/env bash
# dp_train_ledger.sh - DP training charges the store's budget exactly what
# its accountant proves: for each `privguide train --epsilon E --delta D`
# run from the store, the (epsilon, delta) the run reports (the model's DP
# record, vocabulary and all its mechanisms composed) is what the ledger's
# purpose model_builds is charged, one release per run; over several runs
# the purpose's spending is the sum of the runs' records; a run that would
# overspend is refused before any model is written, and charges nothing.
set -u
P=${PVG_CLI:?PVG_CLI not set}
command -v jq >/dev/null || { echo "SKIP: jq not installed"; exit 77; }
T=$(mktemp -d /tmp/pvg-dp-train-ledger-XXXXXX)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
near() { awk -v g="$1" -v w="$2" -v t="$3" 'BEGIN { d = g - w; if (d < 0) d = -d; exit !(d <= t) }'; }

D="$T/data"
# a small shop: a catalog of 80 items (the public vocabulary of a DP model)
# and 400 shoppers in four taste groups, 10 purchases each. What is checked
# - the charge equals the run's record, the records add up, an overspending
# run is refused - does not depend on the data's size (the bundled sample's
# 926 shoppers and 3,000 items made each DP training take seconds).
awk 'BEGIN { srand(5)
  for (i = 0; i < 80; i++)
    printf "{\"type\":\"item\",\"item\":\"i%d\",\"title\":\"ITEM %d\",\"price\":%.2f}\n", i, i, 1 + i / 10
  for (u = 0; u < 400; u++)
    for (e = 0; e < 10; e++) {
      it = rand() < 0.8 ? (u % 4) * 20 + int(rand() * 20) : int(rand() * 80)
      printf "{\"type\":\"purchase\",\"user\":\"s%d\",\"item\":\"i%d\",\"ts\":%d}\n", u, it, 1291000000 + 100 * u + e
    } }' >"$T/shop.jsonl"
"$P" init --data-dir "$D" >/dev/null || fail init
"$P" ingest --data-dir "$D" --format jsonl "$T/shop.jsonl" >/dev/null || fail ingest
"$P" budget set --epsilon 5 --delta 1e-5 --data-dir "$D" --json >/dev/null || fail "budget set"

spent() { # purpose model_builds: "<epsilon> <delta> <releases>"
  "$P" budget show --json --data-dir "$D" |
    jq -r '.purposes[] | select(.purpose == "model_builds") | "\(.spent.epsilon) \(.spent.delta) \(.releases)"'
}

sum_e=0
sum_d=0
n=0
for run in "ease 2 1e-6" "popularity 1 1e-6" "itemknn 1.5 1e-7"; do
  set -- $run
  r=$("$P" train --data-dir "$D" --model "$1" --epsilon "$2" --delta "$3" \
        --out "$D/model-dp.pvgm" --json) || fail "train $1 --epsilon $2"
  e=$(jq -r .dp.epsilon <<<"$r")
  d=$(jq -r .dp.delta <<<"$r")
  jq -e '.dp.charged == true and (.dp.release_id > 0)' <<<"$r" >/dev/null ||
    fail "train $1: not charged: $r"
  # the accountant proves at most what was asked
  awk -v e="$e" -v E="$2" -v d="$d" -v D="$3" 'BEGIN { exit !(e > 0 && e <= E * (1 + 1e-12) && d > 0 && d <= D * (1 + 1e-12)) }' ||
    fail "train $1: record ($e, $d) beyond the asked ($2, $3)"
  sum_e=$(awk -v a="$sum_e" -v b="$e" 'BEGIN { printf "%.17g", a + b }')
  sum_d=$(awk -v a="$sum_d" -v b="$d" 'BEGIN { printf "%.17g", a + b }')
  n=$((n + 1))
  read -r se sd sr <<<"$(spent)"
  near "$se" "$sum_e" 1e-9 || fail "after $n runs the ledger has epsilon $se, the runs' records sum to $sum_e"
  near "$sd" "$sum_d" 1e-15 || fail "after $n runs the ledger has delta $sd, the runs' records sum to $sum_d"
  [ "$sr" = "$n" ] || fail "after $n runs the ledger counts $sr model_builds releases"
  # the release names the file's fingerprint (which covers its DP record)
  fp=$("$P" model info --model "$D/model-dp.pvgm" --json | jq -r .fingerprint)
  rid=$(jq -r .dp.release_id <<<"$r")
  "$P" budget show --json --data-dir "$D" |
    jq -e --arg fp "$fp" --argjson id "$rid" '.releases[] | select(.id == $id) | .what | contains($fp)' \
      >/dev/null || fail "train $1: the ledger release $rid does not name the fingerprint $fp"
done

# overspending: refused before the model is written, nothing charged
before=$(sha256sum "$D/model-dp.pvgm")
if "$P" train --data-dir "$D" --model ease --epsilon 4 --delta 1e-6 --out "$D/model-dp.pvgm" \
     2>"$T/err" >/dev/null; then
  fail "a run beyond the remaining budget was accepted"
fi
grep -qi "budget" "$T/err" || fail "overspend error: $(cat "$T/err")"
[ "$(sha256sum "$D/model-dp.pvgm")" = "$before" ] || fail "the refused run replaced the model file"
read -r se sd sr <<<"$(spent)"
near "$se" "$sum_e" 1e-9 || fail "the refused run was charged: $se"
[ "$sr" = "$n" ] || fail "the refused run was recorded: $sr releases"
echo "ok: $n DP trainings charged epsilon $sum_e, delta $sum_d in all (the sum of their records)"
