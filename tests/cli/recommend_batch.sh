#!/usr/bin/env bash
# recommend_batch.sh - batch recommendations from one model load: --users
# FILE and --all give one JSON line per shopper (the same lists as the
# single call), shoppers without consent, erased or unknown are skipped
# with a reason line, every shopper's access is audited (by pseudonym), and
# --items / --all-items give similar items per item.
set -u
cli=${PVG_CLI:?PVG_CLI not set}
tmp=$(mktemp -d /tmp/pvg_rec_batch.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
command -v python3 >/dev/null || { echo "SKIP: python3 is not installed"; exit 77; }
ts=1600000000
for u in $(seq 0 29); do
  for i in $(seq 0 11); do
    [ $(( (u * 7 + i * 3) % 5 )) -lt 2 ] && continue
    printf 'shopper-%d\tx%d\t1\t%d\n' "$u" "$i" $((ts + i)) >> "$tmp/d.tsv"
  done
done
D="$tmp/data"
"$cli" init --data-dir "$D" > /dev/null || fail init
"$cli" ingest --data-dir "$D" --format tsv "$tmp/d.tsv" > /dev/null || fail ingest
"$cli" train --data-dir "$D" --model ials --factors 4 --out "$D/m.model" > /dev/null || fail train
"$cli" user consent shopper-3 --personalization off --data-dir "$D" > /dev/null || fail consent
"$cli" user delete shopper-4 --data-dir "$D" > /dev/null || fail delete
printf 'shopper-1\n\nshopper-3\r\nshopper-4\nnobody\n# a comment\nshopper-2\n' > "$tmp/users.txt"
"$cli" recommend --data-dir "$D" --model "$D/m.model" --users "$tmp/users.txt" -k 3 --json \
  > "$tmp/batch.jsonl" 2> "$tmp/batch.err" || fail "batch: $(cat "$tmp/batch.err")"
python3 - "$tmp/batch.jsonl" <<'PY' || fail "batch output: $(cat "$tmp/batch.jsonl")"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
assert [r["user"] for r in rows] == ["shopper-1", "shopper-3", "shopper-4", "nobody", "shopper-2"], rows
assert len(rows[0]["items"]) == 3 and "skipped" not in rows[0], rows[0]
assert rows[1]["skipped"] == "no_consent" and "items" not in rows[1], rows[1]
assert rows[2]["skipped"] == "erased", rows[2]
assert rows[3]["skipped"] == "unknown_user", rows[3]
assert len(rows[4]["items"]) == 3, rows[4]
PY
grep -q "5 shoppers, 2 answered" "$tmp/batch.err" || fail "summary: $(cat "$tmp/batch.err")"
# the same list as the single call
for u in shopper-1 shopper-2; do
  one=$("$cli" recommend --data-dir "$D" --model "$D/m.model" --user "$u" -k 3 --json) || fail "single $u"
  python3 - "$tmp/batch.jsonl" "$u" "$one" <<'PY' || fail "batch and single differ for $u"
import json, sys
rows = {json.loads(l)["user"]: json.loads(l) for l in open(sys.argv[1])}
single = json.loads(sys.argv[3])
assert [i["item"] for i in rows[sys.argv[2]]["items"]] == [i["item"] for i in single["items"]]
PY
done
# EASE scores a batch in column tiles for groups of shoppers: the same
# lists as one shopper at a time
"$cli" train --data-dir "$D" --model ease --lambda 5 --out "$D/e.model" > /dev/null || fail "train ease"
"$cli" recommend --data-dir "$D" --model "$D/e.model" --users "$tmp/users.txt" -k 4 --json \
  > "$tmp/ease.jsonl" 2>/dev/null || fail "ease batch"
for u in shopper-1 shopper-2; do
  one=$("$cli" recommend --data-dir "$D" --model "$D/e.model" --user "$u" -k 4 --json) || fail "ease single $u"
  python3 - "$tmp/ease.jsonl" "$u" "$one" <<'PY' || fail "ease batch and single differ for $u"
import json, sys
rows = {json.loads(l)["user"]: json.loads(l) for l in open(sys.argv[1])}
single = json.loads(sys.argv[3])
assert [i["item"] for i in rows[sys.argv[2]]["items"]] == [i["item"] for i in single["items"]]
PY
done
# --all: every shopper of the store by pseudonym; erased ones are gone
"$cli" recommend --data-dir "$D" --model "$D/m.model" --all -k 2 --json --threads 2 \
  > "$tmp/all.jsonl" 2> "$tmp/all.err" || fail "all: $(cat "$tmp/all.err")"
python3 - "$tmp/all.jsonl" <<'PY' || fail "all output: $(head -3 "$tmp/all.jsonl")"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
assert len(rows) == 29, len(rows)            # 30 shoppers, one erased
assert all(len(r["pseudonym"]) == 32 for r in rows)
assert sum(1 for r in rows if r.get("skipped") == "no_consent") == 1
assert sum(1 for r in rows if "items" in r and len(r["items"]) == 2) == 28
PY
if grep -q 'shopper-' "$tmp/all.jsonl"; then fail "external ids in --all output"; fi
# one audit entry per shopper of each batch, by pseudonym only
"$cli" audit show --data-dir "$D" --json > "$tmp/audit.json" || fail "audit show"
n=$(grep -o 'batch=1' "$tmp/audit.json" | wc -l)
[ "$n" -eq 39 ] || fail "expected 39 batch audit entries (5 + 5 + 29), got $n"
if grep -q 'shopper-' "$tmp/audit.json"; then fail "external id in the audit log"; fi
grep -q 'denied:no_consent k=3 batch=1' "$tmp/audit.json" || fail "denied entry missing"
# similar items in batch (one audit entry for the run)
printf 'x1\nnope\n' > "$tmp/items.txt"
"$cli" recommend --data-dir "$D" --model "$D/m.model" --items "$tmp/items.txt" -k 2 --json \
  > "$tmp/sim.jsonl" 2>/dev/null || fail "items"
python3 - "$tmp/sim.jsonl" <<'PY' || fail "similar output: $(cat "$tmp/sim.jsonl")"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
assert rows[0]["item"] == "x1" and len(rows[0]["items"]) == 2 and all(i["item"] != "x1" for i in rows[0]["items"])
assert rows[1] == {"item": "nope", "skipped": "unknown_item", "reason": "the model does not know this item"}
PY
n=$("$cli" recommend --data-dir "$D" --model "$D/m.model" --all-items -k 2 --json 2>/dev/null | wc -l)
[ "$n" -eq 12 ] || fail "all-items: $n lines"
# exactly one mode
if "$cli" recommend --data-dir "$D" --model "$D/m.model" --all --user shopper-1 2>/dev/null; then
  fail "two modes accepted"
fi
echo OK
