#!/usr/bin/env bash
# recsys_tables.sh - the quality tables of the recommenders with their
# default hyperparameters: ML-100K random-split (k=10), Online Retail
# temporal (k=20), Amazon Musical Instruments 5-core random-split (k=10,20).
# Usage: bench/recsys_tables.sh PRIVGUIDE_BIN [DATA_DIR=../shared/data] [THREADS=2]
# Prints one JSON object per (dataset, model) line.
set -euo pipefail
bin=$1
data=${2:-$(dirname "$0")/../../shared/data}
threads=${3:-2}
models="popularity itemknn ials ease bpr"
pick() { grep -E "\"($1)\"" | tr -d '\n' | sed 's/  */ /g; s/,$//'; }
run() {
  local name=$1; shift
  local keys=$1; shift
  for m in $models; do
    out=$("$bin" eval "$@" --model "$m" --threads "$threads" --json)
    printf '{"dataset": "%s", "model": "%s", %s}\n' "$name" "$m" "$(echo "$out" | pick "$keys")"
  done
}
run ml-100k 'users_evaluated|map@10|ndcg@10|precision@10|recall@10|coverage@10|train_seconds' \
  --input "$data/ml-100k/u.data.gz" --format movielens --protocol random-split \
  --test-fraction 0.25 --seed 42 -k 10
run online-retail 'users_evaluated|recall@20|ndcg@20|coverage@20|train_seconds' \
  --input "$data/online-retail/online-retail.csv.gz" --format online-retail --protocol temporal \
  --cutoff 2011-11-01 --min-user-items 5 --seed 42 -k 20
run amazon-mi 'users_evaluated|recall@10|ndcg@10|recall@20|ndcg@20|coverage@20|train_seconds' \
  --input "$data/amazon-musical-instruments-5core/reviews_Musical_Instruments_5.json.gz" \
  --format amazon-reviews --protocol random-split --test-fraction 0.25 --seed 42 -k 10,20
