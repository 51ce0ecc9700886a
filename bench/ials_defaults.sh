#!/usr/bin/env bash
# ials_defaults.sh - the iALS defaults (reg and alpha derived from the data's
# degrees) against validation-tuned iALS: `privguide tune` (random search,
# TRIALS trials, the defaults first) on a validation split carved from the
# training part, then ndcg@20 and coverage@20 on the test split for the
# defaults and for the tuned parameters (eval --params).
# Usage: bench/ials_defaults.sh PRIVGUIDE_BIN GEN_SYNTHETIC_BIN [DATA_DIR=../shared/data]
#        [TRIALS=12] [TRIALS_100K=4] [THREADS=2]
# Prints one JSON object per data set.
set -euo pipefail
bin=$1
gen=$2
data=${3:-$(dirname "$0")/../../shared/data}
trials=${4:-12}
trials_big=${5:-4}
threads=${6:-2}
tmp=$(mktemp -d /tmp/pvg_ials_defaults.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
"$gen" "$tmp/s10k.tsv" 5000 10000 150000 1 > /dev/null
"$gen" "$tmp/s100k.tsv" 20000 100000 600000 1 > /dev/null
rs="--protocol random-split --test-fraction 0.25 --seed 42"
val() { python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r[sys.argv[2]])' "$@"; }
run() {
  local name=$1 n=$2; shift 2
  "$bin" tune --model ials "$@" --threads "$threads" --trials "$n" --out "$tmp/$name.json" \
    --json > "$tmp/$name.tune"
  "$bin" eval --model ials "$@" --threads "$threads" -k 20 --json > "$tmp/$name.def"
  "$bin" eval --model ials "$@" --threads "$threads" -k 20 --params "$tmp/$name.json" --json \
    > "$tmp/$name.tuned"
  python3 - "$name" "$n" "$tmp/$name.tune" "$tmp/$name.def" "$tmp/$name.tuned" "$tmp/$name.json" <<'PY'
import json, sys
name, n, tune, d, t, pj = sys.argv[1:]
tu, d, t, p = (json.load(open(x)) for x in (tune, d, t, pj))
print(json.dumps({
    "dataset": name, "trials": int(n), "users": d["users"], "items": d["items"],
    "train_interactions": d["train_interactions"],
    "validation_ndcg@20": {"default": round(tu["default_value"], 4),
                           "tuned": round(tu["best_value"], 4)},
    "test_ndcg@20": {"default": round(d["ndcg@20"], 4), "tuned": round(t["ndcg@20"], 4),
                     "default_over_tuned": round(d["ndcg@20"] / t["ndcg@20"], 3)
                     if t["ndcg@20"] > 0 else None},
    "test_coverage@20": {"default": round(d["coverage@20"], 3),
                         "tuned": round(t["coverage@20"], 3)},
    "tuned_params": p["params"], "tune_seconds": round(tu["seconds"], 1)}))
PY
}
run online-retail "$trials" --input "$data/online-retail/online-retail.csv.gz" \
  --format online-retail --protocol temporal --cutoff 2011-11-01 --min-user-items 5 --seed 42
# shellcheck disable=SC2086
run ml-100k "$trials" --input "$data/ml-100k/u.data.gz" --format movielens $rs
# shellcheck disable=SC2086
run amazon-mi "$trials" \
  --input "$data/amazon-musical-instruments-5core/reviews_Musical_Instruments_5.json.gz" \
  --format amazon-reviews $rs
# shellcheck disable=SC2086
run amazon-fashion "$trials" --input "$data/amazon2018-5core-small/AMAZON_FASHION_5.json.gz" \
  --format amazon-reviews $rs
# shellcheck disable=SC2086
run amazon-beauty "$trials" --input "$data/amazon2018-5core-small/All_Beauty_5.json.gz" \
  --format amazon-reviews $rs
# shellcheck disable=SC2086
run synthetic-10k "$trials" --input "$tmp/s10k.tsv" --format tsv $rs
# shellcheck disable=SC2086
run synthetic-100k "$trials_big" --input "$tmp/s100k.tsv" --format tsv $rs
