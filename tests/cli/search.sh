#!/usr/bin/env bash
# search.sh - `privguide search` on the bundled Online Retail sample: a
# misspelt multi-word query finds the item and says what it corrected;
# --prefix completes the last word; filters, sorting and pages; --json has
# the items, the parsed query and the facets; bad flags exit 2; hostile
# queries (invalid UTF-8, over the size limit, only stop words) answer or
# fail cleanly.
set -u
PVG=${PVG_CLI:?PVG_CLI is not set}
SRC=${PVG_SOURCE_DIR:?PVG_SOURCE_DIR is not set}
T=$(mktemp -d /tmp/pvg_search.XXXXXX)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
export PRIVGUIDE_KEY_FILE="$T/key"
D=$T/d
timeout 60 "$PVG" init --data-dir "$D" >/dev/null || fail init
timeout 120 "$PVG" ingest --data-dir "$D" --format online-retail "$SRC/data/online-retail-sample.csv.gz" \
    >/dev/null 2>&1 || fail ingest
S=(timeout 60 "$PVG" search --data-dir "$D" --synonyms "$SRC/data/synonyms.txt")

OUT=$("${S[@]}" "whte hanging hart t-light holdr" -k 3) || fail "search: $OUT"
echo "$OUT" | grep -q "^85123A " || fail "85123A not found for a misspelt query: $OUT"
echo "$OUT" | grep -q "hart -> heart (typo 1)" || fail "correction not shown: $OUT"

# plurals and stemming: "lanterns" finds the lanterns
OUT=$("${S[@]}" "white metal lanterns" -k 1) || fail "plural: $OUT"
echo "$OUT" | grep -q "^71053 " || fail "71053 WHITE METAL LANTERN not first: $OUT"

# search as you type
OUT=$("${S[@]}" "paper chain ki" --prefix -k 5) || fail "prefix: $OUT"
echo "$OUT" | grep -q "PAPER CHAIN KIT" || fail "no completion of 'ki': $OUT"
OUT=$("${S[@]}" "paper chain ki" -k 5) || fail "no prefix: $OUT"
echo "$OUT" | grep -q "PAPER CHAIN KIT" && echo "$OUT" | grep -q "none has every word" ||
    fail "without --prefix 'ki' is a whole word: $OUT"

# filters and sort: every price within bounds, ascending
OUT=$("${S[@]}" "christmas" --price-min 1 --price-max 3 --sort price -k 20) || fail "filters: $OUT"
echo "$OUT" | awk '$2 ~ /^[0-9]+[.][0-9]+$/ { n++; if ($2 < 1 || $2 > 3 || $2 < last) bad = 1; last = $2 } END { exit bad || n < 5 }' ||
    fail "prices out of bounds or order: $OUT"

# JSON: items, parsed query, facets; pages
J=$("${S[@]}" "red retrospot bag" --json -k 2) || fail "json: $J"
python3 - "$J" <<'PY' || fail "json shape: $J"
import json, sys
d = json.loads(sys.argv[1])
assert d["total"] >= 2, d["total"]
assert len(d["items"]) == 2
for it in d["items"]:
    assert "RETROSPOT" in it["title"] and it["score"] > 0, it
assert [t["word"] for t in d["query"]["terms"]] == ["red", "retrospot", "bag"]
assert sum(b["count"] for b in d["facets"]["price"]) <= d["total"]
assert d["facets"]["categories"]
PY
J2=$("${S[@]}" "red retrospot bag" --json -k 2 --offset 2) || fail "page 2: $J2"
python3 - "$J" "$J2" <<'PY' || fail "page 2 repeats page 1"
import json, sys
a, b = (json.loads(x) for x in sys.argv[1:3])
assert not {i["id"] for i in a["items"]} & {i["id"] for i in b["items"]}
PY

# bad usage
"${S[@]}" "x" --sort cheapest >/dev/null 2>&1; [ $? -eq 2 ] || fail "--sort cheapest: want exit 2"
"${S[@]}" "x" -k 0 >/dev/null 2>&1; [ $? -eq 2 ] || fail "-k 0: want exit 2"
"${S[@]}" "x" --price-min 5 --price-max 1 >/dev/null 2>&1; [ $? -eq 2 ] || fail "min > max: want exit 2"
timeout 60 "$PVG" search --data-dir "$D" --synonyms "$T/none.txt" x >/dev/null 2>&1; [ $? -eq 1 ] ||
    fail "missing synonyms file: want exit 1"

# hostile queries
"${S[@]}" "$(printf 'red\xff\xfeheart')" >/dev/null || fail "invalid UTF-8"
"${S[@]}" "the of and" >/dev/null || fail "stop words only"
LONG=$(head -c 2000 /dev/zero | tr '\0' 'a')
"${S[@]}" "$LONG" >/dev/null 2>&1; [ $? -eq 2 ] || fail "over 1024 bytes: want exit 2"
echo OK
