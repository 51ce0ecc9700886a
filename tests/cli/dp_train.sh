#!/usr/bin/env bash
# dp_train.sh - `privguide train --epsilon` from the store: refused without a
# budget (no file), charged to the store's budget (purpose model_builds)
# before the file is written, the charge equal to the (epsilon, delta) the
# model header records (`model info`), refused when the budget is short
# (the old model left as it was), types without a DP trainer refused with
# nothing charged; `eval --epsilon` on a file charges no ledger.
set -u
PVG=${PVG_CLI:?PVG_CLI is not set}
SRC=${PVG_SOURCE_DIR:?PVG_SOURCE_DIR is not set}
command -v jq >/dev/null || { echo "jq missing: skipped"; exit 77; }
T=$(mktemp -d /tmp/pvg_dp_train.XXXXXX)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
D=$T/d
S=$SRC/data/online-retail-sample.csv.gz
timeout 60 "$PVG" init --data-dir "$D" >/dev/null || fail init
# the shop's catalogue: the public domain of DP releases (sale rows make no catalog item)
gzip -dc "$SRC/data/online-retail-catalogue.tsv.gz" >"$T/catalogue.tsv" || fail "gunzip"
timeout 60 "$PVG" catalog import "$T/catalogue.tsv" --data-dir "$D" >/dev/null || fail "catalog import"
timeout 120 "$PVG" ingest --data-dir "$D" --format online-retail "$S" >/dev/null 2>&1 || fail ingest
spent() { "$PVG" budget show --json --data-dir "$D" | jq -r "$1"; }
# no budget: refused, no file
"$PVG" train --data-dir "$D" --model popularity --epsilon 1 --out "$D/pop.pvgm" 2>"$T/err"
[ $? -eq 1 ] || fail "DP training without a budget not refused"
grep -q "budget" "$T/err" || fail "refusal does not name the budget: $(cat "$T/err")"
[ -e "$D/pop.pvgm" ] && fail "a model file was written without a charge"
"$PVG" budget set --epsilon 2 --delta 1e-5 --data-dir "$D" >/dev/null || fail "budget set"
# charged, and the charge is the header's record
J=$(timeout 120 "$PVG" train --data-dir "$D" --model popularity --epsilon 1 --delta 1e-6 --out "$D/pop.pvgm" --json) ||
  fail "train: $J"
jq -e '.dp.epsilon == 1 and .dp.delta == 1e-6 and .dp.charged == true and .dp.vocabulary == "catalog"' <<<"$J" >/dev/null ||
  fail "train json: $J"
I=$("$PVG" model info --model "$D/pop.pvgm" --json) || fail "model info: $I"
B=$("$PVG" budget show --json --data-dir "$D") || fail "budget show"
he=$(jq -r '.dp.epsilon' <<<"$I"); hd=$(jq -r '.dp.delta' <<<"$I")
le=$(jq -r '[.releases[] | select(.purpose == "model_builds") | .epsilon] | add' <<<"$B")
ld=$(jq -r '[.releases[] | select(.purpose == "model_builds") | .delta] | add' <<<"$B")
[ "$he" = "$le" ] && [ "$hd" = "$ld" ] || fail "ledger ($le, $ld) != header ($he, $hd): $B $I"
jq -e '.dp.mechanism == "dp-popularity/discrete-gaussian" and .dp.max_items > 0' <<<"$I" >/dev/null ||
  fail "model info: $I"
"$PVG" model info --model "$D/pop.pvgm" | grep -q "epsilon 1, delta 1e-06" || fail "model info text"
# the budget is short: refused, the old file left as it was
sum=$(sha256sum "$D/pop.pvgm")
"$PVG" train --data-dir "$D" --model popularity --epsilon 1.5 --out "$D/pop.pvgm" 2>"$T/err"
[ $? -eq 1 ] || fail "overspending DP training not refused"
grep -q "overspend" "$T/err" || fail "refusal: $(cat "$T/err")"
[ "$(sha256sum "$D/pop.pvgm")" = "$sum" ] || fail "the refused training replaced the model"
# no DP trainer: refused by name, nothing charged
"$PVG" train --data-dir "$D" --model bpr --epsilon 0.5 --out "$D/bpr.pvgm" 2>"$T/err"
[ $? -eq 1 ] || fail "bpr --epsilon not refused"
grep -q "bpr" "$T/err" || fail "refusal does not name the type: $(cat "$T/err")"
[ -e "$D/bpr.pvgm" ] && fail "bpr file written"
# DP on a file: eval charges nothing
jq -e '.total.epsilon == 2' <<<"$B" >/dev/null || fail "budget: $B"
before=$(spent '.releases | length')
gzip -dc "$S" | awk -F, 'NR > 1 && $2 != "" { print $2 }' | sort -u > "$T/catalog.txt"
E=$(timeout 300 "$PVG" eval --input "$S" --format online-retail --protocol random-split --model popularity \
  --epsilon 1 --delta 1e-6 --dp-items "$T/catalog.txt" --json 2>"$T/err") || fail "eval: $(cat "$T/err")"
jq -e '.dp.vocabulary == "list"' <<<"$E" >/dev/null || fail "eval vocabulary: $E"
# without a list, the items come from DP partition selection, never the raw
# item set: on this small file it keeps none and says so
"$PVG" eval --input "$S" --format online-retail --protocol random-split --model popularity \
  --epsilon 1 --delta 1e-6 >/dev/null 2>"$T/err"
[ $? -eq 1 ] && grep -q "partition selection kept no item" "$T/err" || fail "selection: $(cat "$T/err")"
jq -e '.dp.epsilon == 1 and .["recall@20"] >= 0' <<<"$E" >/dev/null || fail "eval json: $E"
[ "$(spent '.releases | length')" = "$before" ] || fail "eval charged the ledger"
# DP knobs without --epsilon are a usage error
"$PVG" eval --input "$S" --format online-retail --protocol random-split --model popularity --max-items 4 \
  >/dev/null 2>&1
[ $? -eq 2 ] || fail "--max-items without --epsilon accepted"
# a non-DP model says so
timeout 120 "$PVG" train --data-dir "$D" --model popularity --out "$D/plain.pvgm" >/dev/null || fail "plain train"
"$PVG" model info --model "$D/plain.pvgm" --json | jq -e '.dp == null' >/dev/null || fail "plain model info"
echo "dp train: ok"
