#!/usr/bin/env bash
# model_cli.sh - the model commands end to end on a small tsv fixture:
# train (JSON summary), recommend (user, similar, popular), eval, model file
# corruption, and usage errors.
set -u
cli=${PVG_CLI:?PVG_CLI not set}
tmp=$(mktemp -d /tmp/pvg_model_cli.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# two blocks: users a* like items x0..x5, users b* like y0..y5; each user
# misses one or two items of the block (shopper-a0 misses x0 and x1). The
# ids are long so that a binary model file cannot hold one by chance
ts=1600000000
for u in 0 1 2 3 4 5 6 7 8 9 10 11; do
  for i in 0 1 2 3 4 5; do
    [ $(( (u + i) % 6 )) -eq 0 ] && continue
    [ $(( (u + i) % 5 )) -eq 1 ] && continue
    printf 'shopper-a%d\tx%d\t1\t%d\n' "$u" "$i" $((ts + i * 86400 + u)) >> "$tmp/d.tsv"
    printf 'shopper-b%d\ty%d\t2\t%d\n' "$u" "$i" $((ts + i * 86400 + u)) >> "$tmp/d.tsv"
  done
done

for m in popularity itemknn ials ease bpr; do
  out=$("$cli" train --model $m --input "$tmp/d.tsv" --format tsv --out "$tmp/$m.model" \
        --factors 4 --epochs 20 --json) || fail "train $m"
  for key in '"train_seconds"' '"epoch_seconds"' '"peak_rss_mb"' '"fingerprint"'; do
    echo "$out" | grep -q "$key" || fail "train $m: no $key in $out"
  done
  echo "$out" | grep -q '"users": 24' || fail "train $m: users"
  # no external user id in the model file
  if grep -q -a 'shopper-a3' "$tmp/$m.model"; then fail "$m model file holds a user id"; fi
  rec=$("$cli" recommend --model "$tmp/$m.model" --user shopper-a0 -k 2 --json) || fail "recommend $m"
  echo "$rec" | grep -q '"items"' || fail "recommend $m: $rec"
  if [ $m != popularity ]; then
    # shopper-a0 has x2..x5; its unseen block items x0, x1 come first
    echo "$rec" | grep -q '"y' && fail "recommend $m crossed blocks: $rec"
    echo "$rec" | grep -q '"x0"' || fail "recommend $m: x0 missing: $rec"
    "$cli" recommend --model "$tmp/$m.model" --similar y1 -k 2 | grep -q x && fail "similar $m"
  fi
done
"$cli" recommend --model "$tmp/ials.model" --popular -k 3 | grep -c . | grep -q 3 || fail popular

# unknown user: runtime error (1) with a message
"$cli" recommend --model "$tmp/ials.model" --user nobody -k 2 2> "$tmp/err" && fail "unknown user accepted"
grep -q "does not know" "$tmp/err" || fail "unknown user message: $(cat "$tmp/err")"

# corrupted and truncated model files are refused
cp "$tmp/ials.model" "$tmp/bad.model"
printf '\x55' | dd of="$tmp/bad.model" bs=1 seek=1500 conv=notrunc status=none
"$cli" recommend --model "$tmp/bad.model" --user shopper-a0 2> "$tmp/err"; [ $? -eq 1 ] || fail "corrupt exit"
grep -q "checksum" "$tmp/err" || fail "corrupt message: $(cat "$tmp/err")"
head -c 2000 "$tmp/ials.model" > "$tmp/short.model"
"$cli" recommend --model "$tmp/short.model" --user shopper-a0 2> "$tmp/err" && fail "truncated accepted"
grep -q "truncated" "$tmp/err" || fail "truncated message: $(cat "$tmp/err")"

# eval: JSON with every metric at every k, deterministic under --seed
e1=$("$cli" eval --input "$tmp/d.tsv" --format tsv --protocol random-split --model ease \
     --lambda 1 -k 2,5 --seed 7 --json) || fail "eval"
for key in recall@2 ndcg@2 precision@2 map@2 hr@2 coverage@2 recall@5 users_evaluated train_seconds; do
  echo "$e1" | grep -q "\"$key\"" || fail "eval: no $key"
done
e2=$("$cli" eval --input "$tmp/d.tsv" --format tsv --protocol random-split --model ease \
     --lambda 1 -k 2,5 --seed 7 --json)
[ "$(echo "$e1" | grep -v seconds | grep -v rss)" = "$(echo "$e2" | grep -v seconds | grep -v rss)" ] || fail "eval not deterministic"
"$cli" eval --input "$tmp/d.tsv" --format tsv --protocol temporal --cutoff 2020-09-16 \
   --model popularity --json > /dev/null || fail "temporal eval"
"$cli" eval --input "$tmp/d.tsv" --format tsv --protocol holdout-users --heldout-users 2 \
   --model ials --factors 4 --json | grep -q '"users_evaluated": 2' || fail "holdout eval"

# usage errors exit 2
"$cli" train --model nope --input "$tmp/d.tsv" --format tsv --out "$tmp/x" 2>/dev/null; [ $? -eq 2 ] || fail "bad model exit"
"$cli" eval --input "$tmp/d.tsv" --format tsv --protocol temporal --model ials 2>/dev/null; [ $? -eq 2 ] || fail "temporal without cutoff"
"$cli" eval --input "$tmp/d.tsv" --format tsv --protocol temporal --cutoff 2020-13-01 --model ials 2>/dev/null; [ $? -eq 2 ] || fail "bad date"
"$cli" recommend --model "$tmp/ials.model" 2>/dev/null; [ $? -eq 2 ] || fail "recommend without user"
# EASE refuses nothing here; a too-large lambda still trains; bad hyperparameters exit 2
"$cli" train --model ials --factors 0 --input "$tmp/d.tsv" --format tsv --out "$tmp/x" 2>/dev/null; [ $? -eq 2 ] || fail "factors 0"
# EASE refuses catalogs above 30,000 items with a clear message
awk 'BEGIN { for (i = 0; i <= 30000; i++) printf "u%d\ti%d\t1\n", i % 50, i }' > "$tmp/big.tsv"
"$cli" train --model ease --input "$tmp/big.tsv" --format tsv --out "$tmp/big.model" 2> "$tmp/err" && fail "ease on 30001 items"
grep -q "limited to 30000 items" "$tmp/err" || fail "ease refusal message: $(cat "$tmp/err")"
# bad event weights are a usage error naming the entry
"$cli" train --model popularity --input "$tmp/d.tsv" --format tsv --out "$tmp/x" --weights click=2 2> "$tmp/err"; [ $? -eq 2 ] || fail "bad weights exit"
grep -q "click" "$tmp/err" || fail "bad weights message"
echo "model_cli: ok"
