#!/usr/bin/env bash
# tune.sh - `privguide tune` searches on a validation split (the defaults
# first), writes the chosen parameters, and train/eval read them back with
# --params (flags given override them); a params file of another model is
# refused.
set -u
cli=${PVG_CLI:?PVG_CLI not set}
tmp=$(mktemp -d /tmp/pvg_tune.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
command -v python3 >/dev/null || { echo "SKIP: python3 is not installed"; exit 77; }
ts=1600000000
for u in $(seq 0 59); do
  for i in $(seq 0 19); do
    [ $(( (u * 13 + i * 7) % 4 )) -eq 0 ] || continue
    printf 'u%d\ti%d\t1\t%d\n' "$u" $(( (i + u % 3 * 5) % 20 )) $((ts + i)) >> "$tmp/d.tsv"
  done
done
"$cli" tune --model ease --input "$tmp/d.tsv" --format tsv --protocol random-split --trials 4 \
  --out "$tmp/ease.json" --json > "$tmp/sum.json" || fail "tune ease"
python3 - "$tmp/ease.json" "$tmp/sum.json" <<'PY' || fail "tune output: $(cat "$tmp/ease.json")"
import json, sys
r = json.load(open(sys.argv[1])); s = json.load(open(sys.argv[2]))
assert r["model"] == "ease" and r["split"] == "validation" and r["trials"] == 4
assert len(r["history"]) == 4 and r["history"][0]["params"]["lambda"] == 500  # defaults first
assert r["best_value"] == max(h["ndcg"] for h in r["history"])
assert r["best_value"] >= r["default_value"]
assert r["params"]["lambda"] == [h for h in r["history"] if h["ndcg"] == r["best_value"]][0]["params"]["lambda"]
assert s["out"] == sys.argv[1] and "history" not in s
PY
# train and eval read the chosen lambda; a flag overrides it
printf '{"model": "ease", "params": {"lambda": 7.5}}' > "$tmp/p.json"
"$cli" eval --model ease --params "$tmp/p.json" --input "$tmp/d.tsv" --format tsv \
  --protocol random-split --json > "$tmp/e.json" || fail "eval --params"
grep -q '"lambda": 7.5' "$tmp/e.json" || fail "params not applied: $(cat "$tmp/e.json")"
"$cli" eval --model ease --params "$tmp/p.json" --lambda 3 --input "$tmp/d.tsv" --format tsv \
  --protocol random-split --json > "$tmp/e.json" || fail "eval --params --lambda"
grep -q '"lambda": 3' "$tmp/e.json" || fail "flag did not override: $(cat "$tmp/e.json")"
"$cli" train --model ease --params "$tmp/p.json" --input "$tmp/d.tsv" --format tsv \
  --out "$tmp/m.model" > /dev/null || fail "train --params"
if "$cli" train --model ials --params "$tmp/p.json" --input "$tmp/d.tsv" --format tsv \
  --out "$tmp/m2.model" 2> "$tmp/err"; then fail "ease params accepted for ials"; fi
grep -q "written for model 'ease'" "$tmp/err" || fail "refusal: $(cat "$tmp/err")"
# ials searches alpha (scale-free) and reg; a fixed flag stays fixed
"$cli" tune --model ials --factors 4 --epochs 3 --reg 0.05 --input "$tmp/d.tsv" --format tsv \
  --protocol random-split --trials 3 --out "$tmp/ials.json" > /dev/null || fail "tune ials"
python3 - "$tmp/ials.json" <<'PY' || fail "ials tune: $(cat "$tmp/ials.json")"
import json, sys
r = json.load(open(sys.argv[1]))
assert all(h["params"]["reg"] == 0.05 for h in r["history"])
assert "alpha" not in r["history"][0]["params"]  # the default: derived from the data
assert len({h["params"].get("alpha") for h in r["history"]}) == 3
PY
echo OK
