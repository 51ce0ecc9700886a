#!/usr/bin/env bash
# model_store.sh - training from the encrypted store: users keyed by store
# pseudonym (no external id in the model file), recommend computing the
# pseudonym through the data dir, and users without personalisation consent
# left out of the model.
set -u
cli=${PVG_CLI:?PVG_CLI not set}
tmp=$(mktemp -d /tmp/pvg_model_store.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
ts=1600000000
for u in 0 1 2 3 4 5 6 7 8 9 10 11; do
  for i in 0 1 2 3 4 5; do
    [ $(( (u + i) % 6 )) -eq 0 ] && continue
    [ $(( (u + i) % 5 )) -eq 1 ] && continue
    printf 'shopper-a%d\tx%d\t1\t%d\n' "$u" "$i" $((ts + i)) >> "$tmp/d.tsv"
    printf 'shopper-b%d\ty%d\t1\t%d\n' "$u" "$i" $((ts + i)) >> "$tmp/d.tsv"
  done
done
D="$tmp/data"
"$cli" init --data-dir "$D" > /dev/null || fail init
"$cli" ingest --data-dir "$D" --format tsv "$tmp/d.tsv" > /dev/null || fail ingest
"$cli" user consent shopper-b3 --personalization off --data-dir "$D" > /dev/null || fail consent
out=$("$cli" train --data-dir "$D" --model ials --factors 4 --out "$D/m.model" --json) || fail train
echo "$out" | grep -q '"source": "store"' || fail "source: $out"
echo "$out" | grep -q '"users": 23' || fail "consent not honoured: $out"
if grep -q -a 'shopper' "$D/m.model"; then fail "external user id in the model file"; fi
rec=$("$cli" recommend --data-dir "$D" --model "$D/m.model" --user shopper-a0 -k 2 --json) || fail recommend
echo "$rec" | grep -q '"x0"' || fail "recommend: $rec"
echo "$rec" | grep -q '"personalized": true' || fail "recommend not personalised: $rec"
# recommend answers through the access gate: a shopper without consent gets
# the non-personalised list, stated in the output
rec=$("$cli" recommend --data-dir "$D" --model "$D/m.model" --user shopper-b3 -k 2 --json) || fail "recommend b3"
echo "$rec" | grep -q '"personalized": false' || fail "user without consent personalised: $rec"
echo "$rec" | grep -q '"reason": "no_consent"' || fail "reason: $rec"
# consent withdrawn after training: the model still holds the shopper, the
# gate does not personalise for them (text output says so)
"$cli" user consent shopper-a2 --personalization off --data-dir "$D" > /dev/null || fail consent-a2
txt=$("$cli" recommend --data-dir "$D" --model "$D/m.model" --user shopper-a2 -k 2) || fail "recommend a2"
echo "$txt" | grep -q "not personalised (the user does not consent" || fail "a2 text: $txt"
# erased after training: non-personalised, never their own list
"$cli" user delete shopper-a4 --data-dir "$D" > /dev/null || fail "delete a4"
rec=$("$cli" recommend --data-dir "$D" --model "$D/m.model" --user shopper-a4 -k 2 --json) || fail "recommend a4"
echo "$rec" | grep -q '"reason": "unknown_user"' || fail "erased user personalised: $rec"
# every one of these accesses is in the audit log, by pseudonym only
"$cli" audit show --data-dir "$D" --json > "$tmp/audit.json" || fail "audit show"
[ "$(grep -c 'recommend' "$tmp/audit.json")" -ge 4 ] || fail "recommend accesses not audited: $(cat "$tmp/audit.json")"
if grep -q 'shopper-' "$tmp/audit.json"; then fail "external id in the audit log"; fi
# where models may go: a store-trained model only into its data dir (or its
# models/), a file-trained one never into a data dir; serve refuses the same
if "$cli" train --data-dir "$D" --model itemknn --out "$tmp/elsewhere.pvgm" 2> "$tmp/err"; then
  fail "store-trained model written outside the data dir"
fi
grep -q "data dir" "$tmp/err" || fail "outside error: $(cat "$tmp/err")"
[ -e "$tmp/elsewhere.pvgm" ] && fail "outside model file left behind"
if "$cli" train --data-dir "$D" --model itemknn --input "$tmp/d.tsv" --format tsv --out "$D/file.pvgm" 2> "$tmp/err"; then
  fail "file-trained model written into the data dir"
fi
grep -q "inside a data dir" "$tmp/err" || fail "inside error: $(cat "$tmp/err")"
if timeout 20 "$cli" serve --data-dir "$D" --port 0 --model "$tmp/elsewhere.pvgm" 2> "$tmp/err" > /dev/null; then
  fail "serve accepted a model path outside the data dir"
fi
grep -q "data dir" "$tmp/err" || fail "serve error: $(cat "$tmp/err")"
mkdir "$D/models"
"$cli" train --data-dir "$D" --model itemknn --out "$D/models/sub.pvgm" > /dev/null || fail "train into models/"
"$cli" train --data-dir "$D" --model itemknn --out "$D/.hidden.pvgm" > /dev/null || fail "train dot-file"
# the backup thief: a copy taken before an erasure, restored after it, after
# a master-key rotation and with the shopper's consent set again, never
# personalises for them; the other shoppers are still served
cp "$D/models/sub.pvgm" "$tmp/backup.pvgm"
"$cli" keys rotate --data-dir "$D" > /dev/null || fail "keys rotate"
rec=$("$cli" recommend --data-dir "$D" --model "$D/models/sub.pvgm" --user shopper-a5 -k 2 --json) || fail "recommend after rotate"
echo "$rec" | grep -q '"personalized": true' || fail "rotation broke the model: $rec"
"$cli" user delete shopper-a5 --data-dir "$D" > /dev/null || fail "delete a5 after rotation"
cp "$tmp/backup.pvgm" "$D/models/sub.pvgm"
"$cli" user consent shopper-a5 --personalization on --analytics on --data-dir "$D" > /dev/null || fail "consent a5"
for mf in "$D/models/sub.pvgm" "$D/.hidden.pvgm"; do
  rec=$("$cli" recommend --data-dir "$D" --model "$mf" --user shopper-a5 -k 2 --json) || fail "recommend a5 $mf"
  echo "$rec" | grep -q '"reason": "not_in_model"' || fail "erased shopper personalised from $mf: $rec"
done
rec=$("$cli" recommend --data-dir "$D" --model "$D/models/sub.pvgm" --user shopper-a0 -k 2 --json) || fail "recommend a0 restored"
echo "$rec" | grep -q '"personalized": true' || fail "others not served from the restored copy: $rec"
# a model file erasure cannot handle fails the deletion loudly, naming it
"$cli" train --model itemknn --input "$tmp/d.tsv" --format tsv --out "$tmp/file.pvgm" > /dev/null || fail "file train"
cp "$tmp/file.pvgm" "$D/models/planted.pvgm"
if "$cli" user delete shopper-a6 --data-dir "$D" > /dev/null 2> "$tmp/err"; then fail "delete skipped a planted model"; fi
grep -q "planted.pvgm" "$tmp/err" || fail "delete error does not name the file: $(cat "$tmp/err")"
rm "$D/models/planted.pvgm"
# each shopper's rows are sealed under a key derived from their data key:
# copied into another data dir, no shopper of the model opens there
"$cli" init --data-dir "$tmp/other" > /dev/null || fail init2
cp "$D/m.model" "$tmp/other/m.model"
if rec=$("$cli" recommend --data-dir "$tmp/other" --model "$tmp/other/m.model" --user shopper-a0 -k 2 --json 2>&1); then
  fail "a foreign store opened the sealed model: $rec"
fi
echo "$rec" | grep -q "trained from another store" || fail "foreign store error: $rec"
echo "model_store: ok"
