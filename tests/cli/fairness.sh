#!/usr/bin/env bash
# fairness.sh - `privguide audit fairness` end to end: a file run with an
# attribute file (JSON fields, --out, usage errors), the DP variant against
# the store (charged to the ledger under "fairness_audit", refused once the
# budget is spent), --save and GET /v1/admin/fairness (admin only, 404
# before a report is saved), and the ML-100K / Online Retail runs when
# ../shared/data is there (said and skipped otherwise). Every wait is bounded.
set -u
PVG=${PVG_CLI:?PVG_CLI is not set}
T=$(mktemp -d /tmp/pvg_cli_fairness.XXXXXX)
SRV_PID=
cleanup() { [ -n "$SRV_PID" ] && kill -KILL "$SRV_PID" 2>/dev/null; rm -rf "$T"; }
trap cleanup EXIT
fail() { echo "FAIL: $*"; [ -f "$T/serve.log" ] && sed 's/^/  serve: /' "$T/serve.log"; exit 1; }

# 60 shoppers: "a" shoppers buy among the popular items p0..p4, "b"
# shoppers among the tail t0..t29; the group file says which
ts=1600000000
: > "$T/d.tsv"
echo "user,group" > "$T/groups.csv"
for u in $(seq 0 59); do
  if [ $((u % 2)) -eq 0 ]; then g=a; else g=b; fi
  echo "shopper$u,$g" >> "$T/groups.csv"
  for j in 0 1 2 3 4 5; do
    if [ $g = a ]; then it=p$(( (u + j) % 5 )); else it=t$(( (u * 7 + j * 3) % 30 )); fi
    printf 'shopper%d\t%s\t1\t%d\n' "$u" "$it" $((ts + j)) >> "$T/d.tsv"
  done
done

# usage errors: exit 2
"$PVG" audit fairness --model popularity --protocol random-split --input "$T/d.tsv" --format tsv \
  >/dev/null 2>&1; [ $? -eq 2 ] || fail "no group source accepted"
"$PVG" audit fairness --groups "$T/groups.csv" --model popularity --protocol random-split \
  --input "$T/d.tsv" --format tsv --mitigate shuffle >/dev/null 2>&1; [ $? -eq 2 ] || fail "--mitigate shuffle accepted"
"$PVG" audit fairness --groups "$T/groups.csv" --model popularity --protocol random-split \
  --input "$T/d.tsv" --format tsv --lambda 0.3 >/dev/null 2>&1; [ $? -eq 2 ] || fail "--lambda without --mitigate accepted"

# a file run: JSON with both groups, the gaps, the mitigation, no DP
out=$("$PVG" audit fairness --groups "$T/groups.csv" --model popularity --protocol random-split \
  --input "$T/d.tsv" --format tsv -k 5 --min-group-users 5 --mitigate calibration --lambda 0.8 \
  --json --out "$T/report.json") || fail "file run"
for f in '"group_by": "group"' '"k": 5' '"model": "popularity"' '"group": "a"' '"group": "b"' \
         '"recall_ci"' '"ndcg_ci"' '"popularity_bias"' '"coverage"' '"max_minus_min"' '"vs_rest"' \
         '"method": "calibration"' '"overall_before"' '"overall_after"' '"dp": null'; do
  echo "$out" | grep -q -- "$f" || fail "report lacks $f"
done
cmp -s <(echo "$out") "$T/report.json" || fail "--out differs from the printed report"
if grep -q "shopper[0-9]" "$T/report.json"; then fail "a shopper id in the report"; fi
txt=$("$PVG" audit fairness --groups "$T/groups.csv" --model popularity --protocol random-split \
  --input "$T/d.tsv" --format tsv -k 5 --min-group-users 5) || fail "text run"
echo "$txt" | grep -q "^gaps:" || fail "text report: $txt"
# the popularity model serves the "a" shoppers (popular items) better
echo "$out" | grep -A8 '"recall": {' | grep -q '"max_group": "a"' || fail "recall gap not toward a: $out"

# a DP-trained model on a file: without a public item list, DP partition
# selection over 60 shoppers keeps no item and the refusal says to name
# one; --dp-items (as train's) names it
"$PVG" audit fairness --groups "$T/groups.csv" --model popularity --protocol random-split \
  --input "$T/d.tsv" --format tsv -k 5 --min-group-users 5 --model-epsilon 1 >/dev/null 2>"$T/err"
[ $? -eq 1 ] && grep -q "name a public item list" "$T/err" || fail "no item list: $(cat "$T/err")"
printf '%s\n' p0 p1 p2 p3 p4 $(seq -f 't%g' 0 29) >"$T/items.txt"
"$PVG" audit fairness --groups "$T/groups.csv" --model popularity --protocol random-split \
  --input "$T/d.tsv" --format tsv -k 5 --min-group-users 5 --model-epsilon 1 \
  --dp-items "$T/items.txt" --json >/dev/null || fail "--dp-items on a file"
"$PVG" audit fairness --groups "$T/groups.csv" --model popularity --protocol random-split \
  --input "$T/d.tsv" --format tsv -k 5 --dp-items "$T/items.txt" >/dev/null 2>&1
[ $? -eq 2 ] || fail "--dp-items without --model-epsilon accepted"
printf 'p0\n \ttitle without an id\n' >"$T/bad-items.txt"
"$PVG" audit fairness --groups "$T/groups.csv" --model popularity --protocol random-split \
  --input "$T/d.tsv" --format tsv -k 5 --model-epsilon 1 --dp-items "$T/bad-items.txt" \
  >/dev/null 2>"$T/err"
[ $? -eq 1 ] && grep -q "bad-items.txt:2" "$T/err" || fail "a bad item list: $(cat "$T/err")"
# the list reader (shared with train and eval) names where a list is bad:
# an empty list, an id listed twice (a UTF-8 byte order mark is not part of
# the first id), a NUL byte (once silently the end of the list)
dp_list() {
  "$PVG" audit fairness --groups "$T/groups.csv" --model popularity --protocol random-split \
    --input "$T/d.tsv" --format tsv -k 5 --min-group-users 5 --model-epsilon 1 --dp-items "$1" \
    >/dev/null 2>"$T/err"
}
printf '# nothing but a comment\n\n' >"$T/empty-items.txt"
dp_list "$T/empty-items.txt"
[ $? -eq 1 ] && grep -q "empty-items.txt: no item id" "$T/err" || fail "an empty list: $(cat "$T/err")"
printf 'p0\tP zero\np1\np0\n' >"$T/dup-items.txt"
dp_list "$T/dup-items.txt"
[ $? -eq 1 ] && grep -q "dup-items.txt:3: id: 'p0' is listed twice (first on line 1)" "$T/err" ||
  fail "a duplicate: $(cat "$T/err")"
printf '\357\273\277p0\r\np1\r\np0\r\n' >"$T/bom-items.txt"
dp_list "$T/bom-items.txt"
[ $? -eq 1 ] && grep -q "bom-items.txt:3: id: 'p0' is listed twice (first on line 1)" "$T/err" ||
  fail "a byte order mark: $(cat "$T/err")"
printf 'p0\np1\000\np2\n' >"$T/nul-items.txt"
dp_list "$T/nul-items.txt"
[ $? -eq 1 ] && grep -q "nul-items.txt:2: a NUL byte at byte offset 5" "$T/err" ||
  fail "a NUL byte: $(cat "$T/err")"

# the store: DP release charged to the ledger
D=$T/data
timeout 60 "$PVG" init --data-dir "$D" >/dev/null || fail init
timeout 60 "$PVG" ingest --data-dir "$D" --format tsv "$T/d.tsv" >/dev/null || fail ingest
# the catalog: the public vocabulary of the DP-trained model
for it in p0 p1 p2 p3 p4 $(seq -f 't%g' 0 29); do
  printf '{"type":"item","item":"%s","title":"item %s","category":"c"}\n' "$it" "$it"
done > "$T/items.jsonl"
timeout 60 "$PVG" ingest --data-dir "$D" --format jsonl "$T/items.jsonl" >/dev/null || fail "ingest the catalog"
for it in p0 p1 p2 p3 p4; do echo "$it,kitchen"; done > "$T/cats.csv"
for it in $(seq -f 't%g' 0 29); do echo "$it,garden"; done >> "$T/cats.csv"
timeout 30 "$PVG" budget set --data-dir "$D" --epsilon 1 --delta 1e-6 >/dev/null || fail "budget set"
# a DP release from the store needs a DP-trained model (the model sees the same shoppers)
"$PVG" audit fairness --data-dir "$D" --groups "$T/groups.csv" --model popularity \
  --protocol random-split -k 5 --min-group-users 5 --epsilon 0.4 --item-categories "$T/cats.csv" \
  --json >/dev/null 2>"$T/err" && fail "a DP release over a non-DP model was not refused"
grep -q "DP-trained model" "$T/err" || fail "refusal: $(cat "$T/err")"
# and the item categories (the default popularity tiers come from exact counts)
"$PVG" audit fairness --data-dir "$D" --groups "$T/groups.csv" --model popularity \
  --protocol random-split -k 5 --epsilon 0.4 --model-epsilon 0.2 --json >/dev/null 2>"$T/err" \
  && fail "a DP release over popularity tiers was not refused"
grep -q "item categories" "$T/err" || fail "tiers refusal: $(cat "$T/err")"
dp=$("$PVG" audit fairness --data-dir "$D" --groups "$T/groups.csv" --model popularity \
  --protocol random-split -k 5 --min-group-users 5 --epsilon 0.4 --model-epsilon 0.2 --item-categories "$T/cats.csv" --json) \
  || fail "DP run on the store"
echo "$dp" | grep -q '"popularity_recommended"' && fail "exact-count popularity in a DP report: $dp"
echo "$dp" | grep -q '"garden"' || fail "categories not used: $dp"
echo "$dp" | grep -q '"epsilon": 0.4' || fail "dp epsilon: $dp"
echo "$dp" | grep -q '"model_epsilon": 0.2' || fail "model epsilon: $dp"
echo "$dp" | grep -q '"release_id"' || fail "no ledger release: $dp"
echo "$dp" | grep -q '"model_release_id"' || fail "no ledger release of the model: $dp"
if echo "$dp" | grep -q '"users_evaluated"'; then fail "exact count in a DP report"; fi
b=$("$PVG" budget show --data-dir "$D" --json) || fail "budget show"
echo "$b" | grep -q '"label":"fairness_audit","purpose":"queries"' || fail "release not filed: $b"
echo "$b" | grep -q '"spent":{"epsilon":0.6[0-9]*,"delta":1e-06}' || fail "spent not 0.6 (model 0.2 + sums 0.4): $b"
echo "$b" | grep -q '"what":"model of the fairness audit[^}]*"epsilon":0.2,"delta":1e-06' || fail "model release: $b"
"$PVG" audit fairness --data-dir "$D" --groups "$T/groups.csv" --model popularity \
  --protocol random-split -k 5 --min-group-users 5 --epsilon 0.4 --model-epsilon 0.2 \
  --item-categories "$T/cats.csv" --json >/dev/null 2>"$T/err"
rc=$?
[ $rc -eq 1 ] || fail "overspending release not refused (exit $rc)"
grep -qi "budget" "$T/err" || fail "refusal does not name the budget: $(cat "$T/err")"

# GET /v1/admin/fairness: 404 before --save, the report after; admin only
if command -v curl >/dev/null; then
  ADMIN=$(timeout 30 "$PVG" apikey create --role admin --rate 0 --data-dir "$D") || fail "apikey admin"
  ANA=$(timeout 30 "$PVG" apikey create --role analyst --rate 0 --data-dir "$D") || fail "apikey analyst"
  "$PVG" serve --data-dir "$D" --port 0 --port-file "$T/port" >"$T/serve.log" 2>&1 &
  SRV_PID=$!
  for _ in $(seq 1 600); do [ -s "$T/port" ] && break; kill -0 "$SRV_PID" 2>/dev/null || break; sleep 0.1; done
  [ -s "$T/port" ] || fail "server did not start within 60 s"
  URL=http://127.0.0.1:$(cat "$T/port")
  code=$(curl -s -m 10 -o "$T/r" -w '%{http_code}' -H "Authorization: Bearer $ADMIN" "$URL/v1/admin/fairness")
  [ "$code" = 404 ] || fail "before --save: $code $(cat "$T/r")"
  grep -q '"error"' "$T/r" || fail "404 without a JSON error"
  "$PVG" audit fairness --data-dir "$D" --groups "$T/groups.csv" --model popularity \
    --protocol random-split -k 5 --min-group-users 5 --mitigate calibration --save >/dev/null || fail "--save"
  [ "$(stat -c %a "$D/fairness-report.json")" = 600 ] || fail "report file mode"
  code=$(curl -s -m 10 -o "$T/r" -w '%{http_code}' -H "Authorization: Bearer $ADMIN" "$URL/v1/admin/fairness")
  [ "$code" = 200 ] || fail "after --save: $code $(cat "$T/r")"
  grep -q '"groups"' "$T/r" && grep -q '"mitigation"' "$T/r" || fail "served report: $(cat "$T/r")"
  code=$(curl -s -m 10 -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $ANA" "$URL/v1/admin/fairness")
  [ "$code" = 403 ] || fail "analyst got $code"
  code=$(curl -s -m 10 -o /dev/null -w '%{http_code}' "$URL/v1/admin/fairness")
  [ "$code" = 401 ] || fail "no credential got $code"
  kill -TERM "$SRV_PID"; wait "$SRV_PID" 2>/dev/null; SRV_PID=
else
  echo "SKIP (part): curl is not installed; GET /v1/admin/fairness not tested here"
fi

# the datasets
DATA=${PVG_SHARED_DIR:-$(dirname "$0")/../../../shared}/data
if [ -r "$DATA/ml-100k/u.data.gz" ] && [ -r "$DATA/ml-100k/u.user.gz" ]; then
  ml=$("$PVG" audit fairness --input "$DATA/ml-100k/u.data.gz" --format movielens \
    --groups "$DATA/ml-100k/u.user.gz" --group-by gender --model itemknn --protocol random-split \
    --threads 2 --bootstrap 200 --json) || fail "ML-100K by gender"
  echo "$ml" | grep -q '"group": "F"' && echo "$ml" | grep -q '"group": "M"' || fail "ML-100K groups"
else
  echo "SKIP (part): ML-100K not found under $DATA"
fi
if [ -r "$DATA/online-retail/online-retail.csv.gz" ]; then
  orr=$("$PVG" audit fairness --input "$DATA/online-retail/online-retail.csv.gz" --format online-retail \
    --group-by country --max-groups 3 --model popularity --protocol random-split --threads 2 \
    --bootstrap 200 --json 2>/dev/null) || fail "Online Retail by country"
  echo "$orr" | grep -q '"group": "United Kingdom"' && echo "$orr" | grep -q '"group": "other"' \
    || fail "Online Retail groups"
else
  echo "SKIP (part): Online Retail not found under $DATA"
fi
echo "fairness CLI: ok"
