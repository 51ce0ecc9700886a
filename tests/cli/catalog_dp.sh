#!/usr/bin/env bash
# catalog_dp.sh - `privguide catalog import` declares the shop's catalogue
# text, and a store-trained DP-EASE takes it as its public prior ("+text" in
# its mechanism, in the train output and the model header); without it, or
# with titles that only sale rows gave the items, there is no text. Sale
# rows that rename items change the display title, never the declared one.
# Errors of a catalogue file name FILE:LINE and the field, and the lines
# before a bad one stay declared; --dp-items reports an empty id by
# FILE:LINE too.
set -u
P=${PVG_CLI:?PVG_CLI not set}
command -v jq >/dev/null || { echo "SKIP: jq not installed"; exit 77; }
T=$(mktemp -d /tmp/pvg-catalog-dp-XXXXXX)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
unset PRIVGUIDE_DATABASE_URL

D="$T/data"
# 80 items in four families whose titles share a word; 400 shoppers, each
# mostly buying in one family. Sale rows (jsonl "item" records) give every
# item a display title of their own that links nothing ("SKU n").
awk 'BEGIN { srand(5); split("LANTERN TEACUP DOORMAT CANDLE", fam, " ")
  for (i = 0; i < 80; i++)
    printf "{\"type\":\"item\",\"item\":\"i%d\",\"title\":\"SKU %d\",\"price\":%.2f}\n", i, i, 1 + i / 10
  for (u = 0; u < 400; u++)
    for (e = 0; e < 10; e++) {
      it = rand() < 0.8 ? (u % 4) * 20 + int(rand() * 20) : int(rand() * 80)
      printf "{\"type\":\"purchase\",\"user\":\"s%d\",\"item\":\"i%d\",\"ts\":%d}\n", u, it, 1291000000 + 100 * u + e
    } }' >"$T/shop.jsonl"
awk 'BEGIN { split("LANTERN TEACUP DOORMAT CANDLE", fam, " ")
  for (i = 0; i < 80; i++) printf "i%d\t%s MODEL %d\n", i, fam[int(i / 20) + 1], i }' >"$T/catalogue.tsv"
"$P" init --data-dir "$D" >/dev/null || fail init
"$P" ingest --data-dir "$D" --format jsonl "$T/shop.jsonl" >/dev/null || fail ingest
"$P" budget set --epsilon 10 --delta 1e-5 --data-dir "$D" >/dev/null || fail "budget set"

# the shop's data is from 2010: the recency terms need a present after it
train() { "$P" train --data-dir "$D" --model ease --epsilon 1 --delta 1e-6 --present 2010-12-10 --out "$D/ease-dp.pvgm" --json; }

# no declared catalogue: the items' titles came with the rows, no text
R=$(train) || fail "train without a catalogue"
jq -e '.dp.mechanism | contains("+text") | not' <<<"$R" >/dev/null || fail "text without a declared catalogue: $R"
[ -z "$("$P" catalog list --data-dir "$D")" ] || fail "an import of rows declared text"

# a bad file: FILE:LINE and the field; the lines before it are declared
{ head -3 "$T/catalogue.tsv"; printf '\tno id\n'; tail -n +4 "$T/catalogue.tsv"; } >"$T/bad.tsv"
OUT=$("$P" catalog import "$T/bad.tsv" --data-dir "$D" 2>&1) && fail "a bad catalogue accepted: $OUT"
grep -q "bad.tsv:4: id: expected" <<<"$OUT" || fail "error without file:line and field: $OUT"
[ "$("$P" catalog list --data-dir "$D" | wc -l)" = 3 ] || fail "the lines before the bad one were lost"
printf '{"id":"j1","title":"x"}\n{"id":"j2","title":7}\n' >"$T/bad.jsonl"
OUT=$("$P" catalog import "$T/bad.jsonl" --data-dir "$D" --json 2>&1) && fail "a bad JSONL line accepted"
grep -q 'bad.jsonl:2: title: expected a JSON string' <<<"$OUT" || fail "JSONL error: $OUT"
grep -q '"declared":1' <<<"$OUT" || fail "JSONL counts: $OUT"

# the whole catalogue; the stray j1 stays declared (an extra public item)
OUT=$("$P" catalog import "$T/catalogue.tsv" --data-dir "$D" --json) || fail "catalog import: $OUT"
[ "$OUT" = '{"lines":80,"declared":80,"ok":true}' ] || fail "import counts: $OUT"
[ "$("$P" catalog list --data-dir "$D" | wc -l)" = 81 ] || fail "catalog list"
"$P" catalog list --data-dir "$D" --json | jq -e '.[] | select(.id == "i21") | .title == "TEACUP MODEL 21"' \
  >/dev/null || fail "catalog list --json"

# sale rows rename an item afterwards: its display title moves, the declared one stays
printf '{"type":"item","item":"i21","title":"ODD NAME FROM A ROW"}\n{"type":"purchase","user":"s9","item":"i21","ts":1291900000}\n' \
  >"$T/odd.jsonl"
"$P" ingest --data-dir "$D" --format jsonl "$T/odd.jsonl" >/dev/null || fail "ingest odd"
"$P" catalog list --data-dir "$D" | grep -q "^i21	TEACUP MODEL 21$" || fail "a sale row renamed the declared text"

# store-trained DP-EASE now has the prior: in the output and the header
R=$(train) || fail "train with the catalogue"
# (the text-only model with its recent buyers: --present is after the sales)
jq -e '.dp.mechanism == "dp-ease/discrete-gaussian-pop+recent+text" and .dp.vocabulary == "catalog"' \
  <<<"$R" >/dev/null || fail "no text prior from the declared catalogue: $R"
"$P" model info --model "$D/ease-dp.pvgm" | grep -q "pop+recent+text" || fail "model info: no +text"
# its items are the declared catalogue's 81 (80 and the stray j1 nobody bought)
"$P" model info --model "$D/ease-dp.pvgm" --json | jq -e '.items == 81' >/dev/null ||
  fail "the model's items are not the declared catalogue's"

# --dp-items is for files; from the store it is refused and names the catalogue import
OUT=$("$P" train --data-dir "$D" --model ease --epsilon 1 --dp-items "$T/catalogue.tsv" --out "$T/x.pvgm" 2>&1)
[ $? -eq 2 ] && grep -q "catalog import" <<<"$OUT" || fail "--dp-items from the store: $OUT"
# eval reports the bound the trainer used: the text-only model (eps < 5 with
# the titles) bounds at DP popularity's m, the Gram release at DP-EASE's
E=$("$P" eval --input "$T/shop.jsonl" --format jsonl --protocol random-split --model ease \
  --epsilon 1 --delta 1e-6 --dp-items "$T/catalogue.tsv" --json) || fail "eval with titles: $E"
jq -e '.dp.mechanism == "dp-ease/discrete-gaussian-popularity+text" and .dp.max_items == 32' \
  <<<"$E" >/dev/null || fail "eval's DP record (text-only): $E"
E=$("$P" eval --input "$T/shop.jsonl" --format jsonl --protocol random-split --model ease \
  --epsilon 1 --delta 1e-6 --max-items 9 --dp-items "$T/catalogue.tsv" --json) ||
  fail "eval with --max-items: $E"
jq -e '.dp.max_items == 9' <<<"$E" >/dev/null || fail "eval's bound with --max-items: $E"
# --dp-items with an empty id: FILE:LINE (comments and blank lines counted)
printf '# items\ni1\tLANTERN\n\n\tno id\n' >"$T/items.tsv"
OUT=$("$P" eval --input "$T/shop.jsonl" --format jsonl --protocol random-split --model ease \
  --epsilon 1 --dp-items "$T/items.tsv" 2>&1) && fail "an empty id accepted"
grep -q "items.tsv:4: id: an empty item id" <<<"$OUT" || fail "--dp-items error: $OUT"
echo PASS
