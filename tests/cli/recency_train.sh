#!/usr/bin/env bash
# recency_train.sh - EASE's recency terms as `privguide train` and `eval`
# set them by default (docs/models.md "Recency"): DP-EASE takes a public
# present (--present, or the wall clock), never one read from the data; a
# present whose recent window holds no event (a historical import trained
# "now") is refused before any charge or file; the terms and their present
# are in the train output, the model header (`model info`) and eval's
# output; DP-EASE's text-only model and non-temporal evaluations train
# without them; bad flags are usage errors.
set -u
P=${PVG_CLI:?PVG_CLI not set}
command -v jq >/dev/null || { echo "SKIP: jq not installed"; exit 77; }
T=$(mktemp -d /tmp/pvg-recency-XXXXXX)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
unset PRIVGUIDE_DATABASE_URL

D="$T/data"
# 80 items in four families whose titles share a word; 400 shoppers, each
# mostly buying in one family, in November 2010 (the latest purchase at
# 1290995009, 2010-11-29T01:43:29Z)
awk 'BEGIN { srand(5)
  for (u = 0; u < 400; u++)
    for (e = 0; e < 10; e++) {
      it = rand() < 0.8 ? (u % 4) * 20 + int(rand() * 20) : int(rand() * 80)
      printf "{\"type\":\"purchase\",\"user\":\"s%d\",\"item\":\"i%d\",\"ts\":%d}\n", u, it, 1289000000 + 5000 * u + e
    } }' >"$T/shop.jsonl"
awk 'BEGIN { split("LANTERN TEACUP DOORMAT CANDLE", fam, " ")
  for (i = 0; i < 80; i++) printf "i%d\t%s MODEL %d\n", i, fam[int(i / 20) + 1], i }' >"$T/catalogue.tsv"
"$P" init --data-dir "$D" >/dev/null || fail init
"$P" ingest --data-dir "$D" --format jsonl "$T/shop.jsonl" >/dev/null || fail ingest
"$P" catalog import "$T/catalogue.tsv" --data-dir "$D" >/dev/null || fail "catalog import"
"$P" budget set --epsilon 40 --delta 1e-5 --data-dir "$D" >/dev/null || fail "budget set"
releases() { "$P" budget show --json --data-dir "$D" | jq '[.releases[] | select(.purpose == "model_builds")] | length'; }

# DP without --present: the wall clock, told to the operator before
# training. A DP run is never gated on the data (whether it released would
# depend on one shopper): it trains and is charged even though these 2010
# purchases leave its recent window empty
OUT=$("$P" train --data-dir "$D" --model ease --epsilon 6 --out "$D/dp.pvgm" 2>&1 >/dev/null) ||
  fail "a DP run with the wall clock as its present: $OUT"
grep -q "the present is now, $(date -u +%Y-%m-%d)" <<<"$OUT" && grep -q -- "--present with a public date" <<<"$OUT" ||
  fail "the operator was not told where the present came from: $OUT"
# a DP model records its present: the advice is never to read it from the
# events (the latest shopper's purchase date)
! grep -q "after its last event" <<<"$OUT" || fail "the advice is a data-derived present: $OUT"
[ -e "$D/dp.pvgm" ] && [ "$(releases)" = 1 ] || fail "the wall-clock DP run wrote no model or was not charged"
R=$("$P" train --data-dir "$D" --model ease --epsilon 6 --out "$D/dp.pvgm" --json 2>/dev/null) || fail "train --json"
jq -e '.recency.present_source == "wall clock"' <<<"$R" >/dev/null || fail "present_source: $R"
# a present before every event (or only future-dated events inside the
# window, [present - 7 days, present)): refused for the non-private model,
# which is never shown to others, before any file
rm -f "$D/x.pvgm"
OUT=$("$P" train --data-dir "$D" --model ease --present 2010-10-01 --out "$D/x.pvgm" 2>&1)
[ $? -eq 1 ] && grep -q "no event in the 7 days before the present 2010-10-01T00:00:00Z (the latest before it: none)" <<<"$OUT" ||
  fail "a present before every event was not refused: $OUT"
[ ! -e "$D/x.pvgm" ] || fail "the refused run wrote a model"
# the same for DP: trained and charged (nothing decided on the data)
"$P" train --data-dir "$D" --model ease --epsilon 6 --present 2010-10-01 --out "$D/dp.pvgm" >/dev/null 2>&1 ||
  fail "a DP run was gated on the data"
[ "$(releases)" = 3 ] || fail "the DP runs were not each charged"

# DP with a public present after the data: the terms apply, recorded
R=$("$P" train --data-dir "$D" --model ease --epsilon 6 --present 2010-12-01 --out "$D/dp.pvgm" --json) ||
  fail "train --present"
jq -e '.dp.mechanism == "dp-ease/discrete-gaussian-projected-gram+text" and .dp.charged and
       .recency.present == "2010-12-01T00:00:00Z" and .recency.halflife_days == 120 and
       .recency.row_norm and .recency.recent_days == 14 and .recency.recent_beta == 1 and
       .recency.recent_share == 0.15 and .recency.recent_unit' <<<"$R" >/dev/null ||
  fail "the DP model's recency: $R"
I=$("$P" model info --model "$D/dp.pvgm" --json) || fail "model info"
jq -e --argjson r "$(jq '.recency | del(.present_source)' <<<"$R")" '.recency == $r' <<<"$I" >/dev/null ||
  fail "model info's recency differs from train's: $I"
"$P" model info --model "$D/dp.pvgm" | grep -q "^recency *present 2010-12-01T00:00:00Z, half-life 120 days (row-normalised)" ||
  fail "model info text: $("$P" model info --model "$D/dp.pvgm")"
# seconds and a time of day are the same present
R2=$("$P" train --data-dir "$D" --model ease --epsilon 6 --present 1291161600 --out "$D/dp2.pvgm" --json) ||
  fail "train --present SECONDS"
jq -e '.recency.present == "2010-12-01T00:00:00Z"' <<<"$R2" >/dev/null || fail "--present seconds: $R2"

# the text-only model (epsilon < 5): no Gram to weigh, the last 60 days'
# buyers mixed into its prior
R=$("$P" train --data-dir "$D" --model ease --epsilon 1 --present 2010-12-01 --out "$D/dp1.pvgm" --json) ||
  fail "train --epsilon 1"
jq -e '(.dp.mechanism | contains("pop+recent+text")) and .recency.halflife_days == 0 and
       .recency.recent_days == 60 and .recency.recent_beta == 8 and .recency.recent_share == 0.9' <<<"$R" >/dev/null ||
  fail "the text-only model's recency: $R"
# popularity has no recency terms: nothing recorded
R=$("$P" train --data-dir "$D" --model popularity --epsilon 1 --out "$D/pop.pvgm" --json) || fail "train popularity"
jq -e 'has("recency") | not' <<<"$R" >/dev/null || fail "popularity reports recency: $R"

# without DP: one second after the latest event, with EASE's own defaults
R=$("$P" train --data-dir "$D" --model ease --out "$D/ease.pvgm" --json) || fail "train ease"
# (used, never recorded: that time is one shopper's purchase, and the
# header outlives their erasure)
jq -e '.recency.present == null and .recency.present_from_data and
       .recency.present_source == "latest event" and .recency.halflife_days == 240 and
       (.recency.row_norm | not) and .recency.recent_days == 7 and .recency.recent_beta == 0.7' <<<"$R" >/dev/null ||
  fail "non-private recency: $R"
I=$("$P" model info --model "$D/ease.pvgm" --json) || fail "model info"
jq -e '.recency.present == null and .recency.present_from_data' <<<"$I" >/dev/null ||
  fail "model info shows a present from the data: $I"
# the latest event, 2010-11-29T01:43:29Z (1290995009), and the present one
# second after it nowhere in the file (their low four bytes, little-endian;
# the high ones are zero)
for t in '\x41\x05\xf3\x4c' '\x42\x05\xf3\x4c'; do
  ! LC_ALL=C grep -q -F "$(printf "$t")" "$D/ease.pvgm" ||
    fail "the latest event's time is in the model file"
done
R=$("$P" train --data-dir "$D" --model ease --no-recency --out "$D/ease.pvgm" --json) || fail "--no-recency"
jq -e '.recency == null' <<<"$R" >/dev/null || fail "--no-recency trained with recency: $R"

# erasure rewrites the store's model files: the recency record stays, and
# the DP model's fingerprint (which covers it) still matches, so it loads
"$P" train --data-dir "$D" --model ease --out "$D/ease.pvgm" >/dev/null || fail "train ease again"
B1=$("$P" model info --model "$D/dp.pvgm" --json) && B2=$("$P" model info --model "$D/ease.pvgm" --json) ||
  fail "model info before erasure"
"$P" user delete s7 --data-dir "$D" >/dev/null || fail "user delete"
for f in dp:B1 ease:B2; do
  A=$("$P" model info --model "$D/${f%%:*}.pvgm" --json) || fail "model info of ${f%%:*} after erasure: $A"
  n=${f#*:}
  B=${!n}
  jq -e --argjson b "$B" '.recency == $b.recency and .recency != null and .dp == $b.dp and
       .users == $b.users - 1' <<<"$A" >/dev/null || fail "${f%%:*} after erasure: $A against $B"
done
jq -e --argjson b "$B1" '.fingerprint == $b.fingerprint' <<<"$("$P" model info --model "$D/dp.pvgm" --json)" >/dev/null ||
  fail "the DP model's fingerprint changed with erasure"

# usage errors, nothing trained
for bad in "--present 2010-13-01" "--present yesterday" "--present 2010-12-01 --no-recency"; do
  OUT=$("$P" train --data-dir "$D" --model ease --out "$D/x.pvgm" $bad 2>&1)
  [ $? -eq 2 ] && grep -q -- "--present" <<<"$OUT" || fail "train $bad: $OUT"
done
# dates that do not exist are refused, not rolled over (2010-02-31 is not
# 2010-03-03); so are trailing text, signs, spaces, overflow and times past
# 23:59:59
for bad in 2010-02-31 2011-02-29 2010-04-31 2010-12-01x 2010-12-01T10:00:00Zx 2010-12-01T10:00 \
  2010-12-01T24:00:00 2010-12-01T23:59:60 2010-1-1 2010-+1-01 " 2010-12-01" "2010-12- 1" \
  "2010-12-01T 1:00:00" 2010 12345678 99999999999999999999 -5 0 " 1291161600" +1291161600 1291161600x ""; do
  OUT=$("$P" train --data-dir "$D" --model ease --out "$D/x.pvgm" --present "$bad" 2>&1)
  [ $? -eq 2 ] && grep -q -- "--present" <<<"$OUT" || fail "train --present '$bad': $OUT"
done
# the last second of a day and a leap day that exist are accepted (the
# leap day, long before these events, then fails the recent window's check)
for good in 2010-12-01T23:59:59Z "2010-12-01 00:00:00"; do
  "$P" train --data-dir "$D" --model ease --out "$D/x.pvgm" --present "$good" --json >/dev/null ||
    fail "train --present '$good' was refused"
done
OUT=$("$P" train --data-dir "$D" --model ease --out "$D/x.pvgm" --present 2008-02-29 2>&1)
[ $? -eq 1 ] && grep -q "before the present 2008-02-29T00:00:00Z" <<<"$OUT" || fail "--present 2008-02-29: $OUT"
rm -f "$D/x.pvgm"
OUT=$("$P" train --data-dir "$D" --model popularity --present 2010-12-01 --out "$D/x.pvgm" 2>&1)
[ $? -eq 2 ] && grep -q "only ease" <<<"$OUT" || fail "--present for popularity: $OUT"
[ ! -e "$D/x.pvgm" ] || fail "a usage error wrote a model"

# eval: the temporal cut-off is the present; a random split has none.
# Each shopper's purchases spread over November 2010 here.
awk 'BEGIN { srand(7)
  for (u = 0; u < 400; u++)
    for (e = 0; e < 10; e++) {
      it = rand() < 0.8 ? (u % 4) * 20 + int(rand() * 20) : int(rand() * 80)
      printf "{\"type\":\"purchase\",\"user\":\"s%d\",\"item\":\"i%d\",\"ts\":%d}\n", u, it, 1288569600 + 250000 * e + 97 * u
    } }' >"$T/spread.jsonl"
E=$("$P" eval --input "$T/spread.jsonl" --format jsonl --protocol temporal --cutoff 2010-11-25 \
      --model ease -k 20 --json) || fail "eval temporal"
jq -e '.recency.present == "2010-11-25T00:00:00Z" and .recency.halflife_days == 240' <<<"$E" >/dev/null ||
  fail "eval temporal recency: $E"
E=$("$P" eval --input "$T/spread.jsonl" --format jsonl --protocol random-split --model ease -k 20 --json) ||
  fail "eval random-split"
jq -e '.recency == null' <<<"$E" >/dev/null || fail "a random split trained with recency: $E"
E=$("$P" eval --input "$T/spread.jsonl" --format jsonl --protocol random-split --model ease -k 20 \
      --present 2010-12-01 --json) || fail "eval random-split --present"
jq -e '.recency.present == "2010-12-01T00:00:00Z"' <<<"$E" >/dev/null || fail "eval --present: $E"
# a present long after the data (no training purchase in its 7 days) is
# refused, as train refuses it: the half-life would weigh every purchase
# near 0 and the blend be empty
OUT=$("$P" eval --input "$T/spread.jsonl" --format jsonl --protocol random-split --model ease -k 20 \
      --present 2012-12-01 2>&1)
[ $? -eq 1 ] && grep -q "no training event in the 7 days before the present 2012-12-01T00:00:00Z" <<<"$OUT" ||
  fail "eval with a present long after the data: $OUT"
# temporal: a present after the cut-off would date training cells by the
# held-out purchases (re-buys after the cut-off): refused, naming both
OUT=$("$P" eval --input "$T/spread.jsonl" --format jsonl --protocol temporal --cutoff 2010-11-25 \
      --model ease -k 20 --present 2010-11-28 2>&1)
[ $? -eq 1 ] && grep -q "2010-11-25" <<<"$OUT" || fail "eval temporal with a present after the cut-off: $OUT"
# before it (or at it), fine
E=$("$P" eval --input "$T/spread.jsonl" --format jsonl --protocol temporal --cutoff 2010-11-25 \
      --model ease -k 20 --present 2010-11-20 --json) || fail "eval temporal --present before the cut-off"
jq -e '.recency.present == "2010-11-20T00:00:00Z"' <<<"$E" >/dev/null || fail "eval temporal --present: $E"
# the cut-off itself must exist too
OUT=$("$P" eval --input "$T/spread.jsonl" --format jsonl --protocol temporal --cutoff 2010-11-31 \
      --model ease -k 20 2>&1)
[ $? -eq 2 ] || fail "eval --cutoff 2010-11-31 was accepted: $OUT"
echo "ok: recency defaults, their present and record"
