#!/usr/bin/env bash
# prices.sh - the price a person reads is the item's typical one: on the
# bundled sample, 85123A sold mostly at 2.95 and last at 5.91; `recommend`
# shows 2.95 in its text, --json gives "price" 2.95 and "last_price" 5.91;
# importing the file again changes neither. A crafted file checks that the
# window is bounded (the median of the last 32 prices, not of all).
set -u
PVG=${PVG_CLI:?PVG_CLI is not set}
SRC=${PVG_SOURCE_DIR:?PVG_SOURCE_DIR is not set}
T=$(mktemp -d /tmp/pvg_prices.XXXXXX)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
export PRIVGUIDE_KEY_FILE="$T/key"
D=$T/d
timeout 60 "$PVG" init --data-dir "$D" >/dev/null || fail init
for run in 1 2; do
    timeout 120 "$PVG" ingest --data-dir "$D" --format online-retail "$SRC/data/online-retail-sample.csv.gz" \
        >/dev/null 2>&1 || fail "ingest $run"
    timeout 120 "$PVG" train --data-dir "$D" --model popularity --out "$D/pop.pvgm" >/dev/null 2>&1 || fail train
    OUT=$(timeout 60 "$PVG" recommend --data-dir "$D" --model "$D/pop.pvgm" --user nobody -k 5) || fail "recommend: $OUT"
    echo "$OUT" | grep -q "^1	85123A	WHITE HANGING HEART T-LIGHT HOLDER	2.95	" ||
        fail "run $run: 85123A not shown at its typical price 2.95: $OUT"
    J=$(timeout 60 "$PVG" recommend --data-dir "$D" --model "$D/pop.pvgm" --user nobody -k 1 --json) || fail "json: $J"
    echo "$J" | tr -d ' \n' | grep -q '"item":"85123A","title":"WHITEHANGINGHEARTT-LIGHTHOLDER","price":2.95,"last_price":5.91' ||
        fail "run $run: json lacks price 2.95 and last_price 5.91: $J"
done

# 20 sales at 1.00 then 20 at 3.00: the median of all 40 would be 1.00, of
# the last 32 it is 3.00
{
    echo "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country"
    for i in $(seq 1 40); do
        p=1.00
        [ "$i" -gt 20 ] && p=3.00
        echo "5$((10000 + i)),WIN1,WINDOW TEST,1,2011-01-0$((i % 9 + 1)) 10:00:00,$p,$((12000 + i)).0,United Kingdom"
    done
} >"$T/win.csv"
E=$T/e
export PRIVGUIDE_KEY_FILE="$T/key2"
timeout 60 "$PVG" init --data-dir "$E" >/dev/null || fail "init 2"
timeout 60 "$PVG" ingest --data-dir "$E" --format online-retail "$T/win.csv" >/dev/null 2>&1 || fail "ingest win"
timeout 120 "$PVG" train --data-dir "$E" --model popularity --out "$E/pop.pvgm" >/dev/null 2>&1 || fail "train 2"
OUT=$(timeout 60 "$PVG" recommend --data-dir "$E" --model "$E/pop.pvgm" --user nobody -k 1) || fail "recommend 2: $OUT"
echo "$OUT" | grep -q "^1	WIN1	WINDOW TEST	3.00	" || fail "window not bounded to the last 32 prices: $OUT"
echo "prices: ok"
