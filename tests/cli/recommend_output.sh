#!/usr/bin/env bash
# recommend_output.sh - `privguide recommend` shows what a person can read:
# rank, item id, title and price from the catalog, score; --json keeps the
# ids and adds title and price.
set -u
PVG=${PVG_CLI:?PVG_CLI is not set}
SRC=${PVG_SOURCE_DIR:?PVG_SOURCE_DIR is not set}
T=$(mktemp -d /tmp/pvg_rec_out.XXXXXX)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
D=$T/d
timeout 60 "$PVG" init --data-dir "$D" >/dev/null || fail init
timeout 120 "$PVG" ingest --data-dir "$D" --format online-retail "$SRC/data/online-retail-sample.csv.gz" >/dev/null 2>&1 ||
    fail ingest
timeout 300 "$PVG" train --data-dir "$D" --model itemknn --out "$D/model.pvgm" >/dev/null 2>&1 || fail train
OUT=$(timeout 60 "$PVG" recommend --data-dir "$D" --model "$D/model.pvgm" --user 17850 -k 3) || fail "recommend: $OUT"
[ "$(echo "$OUT" | wc -l)" -eq 3 ] || fail "3 lines expected: $OUT"
# rank, id, title (words), price (n.nn), score
echo "$OUT" | awk -F'\t' 'NF != 5 || $3 !~ /[A-Z]/ || $4 !~ /^[0-9]+\.[0-9][0-9]$/ { bad = 1 } END { exit bad }' ||
    fail "text output lacks titles or prices: $OUT"
J=$(timeout 60 "$PVG" recommend --data-dir "$D" --model "$D/model.pvgm" --user 17850 -k 3 --json) || fail "json: $J"
echo "$J" | grep -q '"item"' || fail "json lacks ids: $J"
echo "$J" | grep -q '"title"' || fail "json lacks titles: $J"
echo "$J" | grep -q '"price"' || fail "json lacks prices: $J"
echo "recommend output: ok"
