#!/usr/bin/env bash
# recsys_tune.sh - hyperparameter grid on a VALIDATION split carved from the
# training part (privguide eval --validation): the test split is never used.
# Usage: bench/recsys_tune.sh PRIVGUIDE_BIN DATASET_ARGS... -- MODEL "FLAGS1" "FLAGS2" ...
# Prints one JSON line per setting: {"model","flags","ndcg@10","recall@10",...}.
set -euo pipefail
bin=$1; shift
data=()
while [ "$1" != "--" ]; do data+=("$1"); shift; done
shift
model=$1; shift
for flags in "$@"; do
  # shellcheck disable=SC2086
  out=$("$bin" eval "${data[@]}" --model "$model" $flags --validation --json -k 10,20)
  printf '{"model":"%s","flags":"%s",%s}\n' "$model" "$flags" \
    "$(echo "$out" | grep -E '"(ndcg|recall)@(10|20)"|"coverage@20"|"train_seconds"' | tr -d '\n' | sed 's/,$//; s/  */ /g')"
done
