#!/usr/bin/env bash
# erasure.sh - erasure that sticks, end to end on the bundled Online Retail
# sample: a shopper deleted through the CLI while `serve` runs is gone from
# the API within one second (404 for their data, non-personalised lists),
# an admin can no longer set their consent (410 "erased") or post their
# events, no token is issued for them, the CLI's recommend answers
# non-personalised, the model file no longer holds their rows (shown with a
# second shopper erased with --allow-return: back in the store after a
# re-import, yet not in the model), and re-importing the original file does
# not bring the erased shopper back (the ingest JSON counts their rows as
# suppressed). Every wait is a bounded poll.
set -u
PVG=${PVG_CLI:?PVG_CLI is not set}
SRC=${PVG_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
SAMPLE=$SRC/data/online-retail-sample.csv.gz
command -v curl >/dev/null || { echo "SKIP: curl is not installed"; exit 77; }
[ -f "$SAMPLE" ] || { echo "SKIP: $SAMPLE is absent"; exit 77; }
T=$(mktemp -d /tmp/pvg_cli_erasure.XXXXXX)
SRV_PID=
cleanup() { [ -n "$SRV_PID" ] && kill -KILL "$SRV_PID" 2>/dev/null; rm -rf "$T"; }
trap cleanup EXIT
fail() { echo "FAIL: $*"; [ -f "$T/serve.log" ] && sed 's/^/  serve: /' "$T/serve.log"; exit 1; }
now_ms() { date +%s%3N; }
D=$T/data
V=17850  # the shopper who asks for erasure
B=13047  # a shopper erased with --allow-return

timeout 60 "$PVG" init --data-dir "$D" >/dev/null || fail "init"
# the shop's catalogue: the public domain of DP releases (sale rows make no catalog item)
gzip -dc "$SRC/data/online-retail-catalogue.tsv.gz" >"$T/catalogue.tsv" || fail "gunzip"
timeout 60 "$PVG" catalog import "$T/catalogue.tsv" --data-dir "$D" >/dev/null || fail "catalog import"
# the non-personalised list is a DP release: it needs a budget
timeout 30 "$PVG" budget set --data-dir "$D" --epsilon 10 --delta 1e-6 >/dev/null || fail "budget set"
OUT=$(timeout 300 "$PVG" ingest --data-dir "$D" --format online-retail --rejects none --json "$SAMPLE") ||
    fail "ingest: $OUT"
echo "$OUT" | grep -q '"suppressed":0,' || fail "first ingest must suppress nothing: $OUT"
timeout 300 "$PVG" train --data-dir "$D" --model ials --factors 8 --out "$D/model.pvgm" --json >/dev/null ||
    fail "train"
for u in $V $B; do
  OUT=$(timeout 60 "$PVG" recommend --data-dir "$D" --model "$D/model.pvgm" --user $u -k 5 --json) ||
      fail "recommend $u: $OUT"
  echo "$OUT" | grep -q '"personalized": *true' || fail "$u must be personalised before: $OUT"
done
ADMIN=$(timeout 30 "$PVG" apikey create --role admin --rate 0 --data-dir "$D") || fail "apikey create"

"$PVG" serve --data-dir "$D" --model "$D/model.pvgm" --port 0 --port-file "$T/port" \
    >"$T/serve.log" 2>&1 &
SRV_PID=$!
deadline=$(( $(now_ms) + 20000 ))
until [ -s "$T/port" ]; do
  [ "$(now_ms)" -lt "$deadline" ] || fail "server did not start within 20 s"
  kill -0 "$SRV_PID" 2>/dev/null || fail "server exited"
  sleep 0.05
done
URL=http://127.0.0.1:$(cat "$T/port")
C=(curl -s -m 10 -H "Authorization: Bearer $ADMIN")
code() { curl -s -m 10 -o "$T/body" -w '%{http_code}' -H "Authorization: Bearer $ADMIN" "$@"; }

OUT=$("${C[@]}" "$URL/v1/users/$V/recommendations?k=5")
echo "$OUT" | grep -q '"personalized":true' || fail "API must personalise before the erasure: $OUT"
[ "$(code "$URL/v1/users/$V/data")" = 200 ] || fail "export before the erasure: $(cat "$T/body")"

SUM_BEFORE=$(sha256sum "$D/model.pvgm" | cut -d' ' -f1)
ts=$(now_ms)
OUT=$(timeout 60 "$PVG" user delete "$V" --data-dir "$D" --json) || fail "user delete: $OUT"
echo "$OUT" | grep -q '"suppressed":true' || fail "delete output: $OUT"
# within one second of the deletion (the command's return): 404 for their
# data, a non-personalised list
t0=$(now_ms)
echo "user delete took $(( t0 - ts )) ms"
# A failure is a check begun more than 1 s after the delete that still sees
# the shopper: a check begun in time and answered late (a loaded machine
# descheduling curl) is not one.
gone=0
while :; do
  began=$(now_ms)
  if [ "$(code "$URL/v1/users/$V/data")" = 404 ] &&
     "${C[@]}" "$URL/v1/users/$V/recommendations?k=5" | grep -q '"personalized":false'; then
    gone=1
    break
  fi
  [ $(( began - t0 )) -le 1000 ] || break
  sleep 0.02
done
[ $gone = 1 ] || fail "the API still served the shopper $(( $(now_ms) - t0 )) ms after the deletion"
echo "gone from the API $(( $(now_ms) - t0 )) ms after the delete returned"

# an admin sets consent: refused, and it never personalises again
[ "$(code -X PUT -d '{"personalization":true,"analytics":true}' "$URL/v1/users/$V/consent")" = 410 ] ||
    fail "consent for an erased shopper must be 410: $(cat "$T/body")"
grep -q '"error":"erased"' "$T/body" || fail "consent refusal reason: $(cat "$T/body")"
[ "$(code -X POST -d "{\"events\":[{\"user\":\"$V\",\"type\":\"view\",\"item\":\"85123A\"}]}" \
      "$URL/v1/events")" = 422 ] || fail "events for an erased shopper must be refused: $(cat "$T/body")"
grep -q '"reason":"erased"' "$T/body" || fail "event refusal reason: $(cat "$T/body")"
for _ in 1 2 3; do
  OUT=$("${C[@]}" "$URL/v1/users/$V/recommendations?k=5")
  echo "$OUT" | grep -q '"personalized":false' || fail "personalised again: $OUT"
done
[ "$(code "$URL/v1/users/$V/consent")" = 404 ] || fail "consent read must be 404: $(cat "$T/body")"
if OUT=$(timeout 30 "$PVG" token issue --user "$V" --data-dir "$D" 2>&1); then
  fail "a token was issued for an erased shopper: $OUT"
fi
echo "$OUT" | grep -q "erased" || fail "token refusal: $OUT"

# the CLI's recommend: non-personalised
OUT=$(timeout 60 "$PVG" recommend --data-dir "$D" --model "$D/model.pvgm" --user $V -k 5 --json) ||
    fail "recommend after: $OUT"
echo "$OUT" | grep -q '"personalized": *false' || fail "CLI recommend personalises the erased: $OUT"

# the model files of the data dir were rewritten without their rows
[ "$(sha256sum "$D/model.pvgm" | cut -d' ' -f1)" != "$SUM_BEFORE" ] || fail "the model file was not rewritten"
kill -TERM "$SRV_PID"
deadline=$(( $(now_ms) + 15000 ))
while kill -0 "$SRV_PID" 2>/dev/null; do
  [ "$(now_ms)" -lt "$deadline" ] || fail "server did not stop within 15 s"
  sleep 0.05
done
SRV_PID=
OUT=$(timeout 60 "$PVG" user delete "$B" --allow-return --data-dir "$D" --json) || fail "delete --allow-return: $OUT"
echo "$OUT" | grep -q '"suppressed":false' || fail "allow-return output: $OUT"

# re-importing the original file: V stays away (counted), B comes back
OUT=$(timeout 300 "$PVG" ingest --data-dir "$D" --format online-retail --rejects none --json "$SAMPLE") ||
    fail "re-ingest: $OUT"
SUP=$(echo "$OUT" | sed -n 's/.*"suppressed":\([0-9]*\).*/\1/p')
STORED=$(echo "$OUT" | sed -n 's/.*"stored":\([0-9]*\).*/\1/p')
[ -n "$SUP" ] && [ "$SUP" -gt 0 ] || fail "re-import must count the erased shopper's rows: $OUT"
[ -n "$STORED" ] && [ "$STORED" -gt 0 ] || fail "re-import must bring the returning shopper back: $OUT"
if OUT=$(timeout 30 "$PVG" user export "$V" --data-dir "$D" 2>&1); then
  fail "the erased shopper came back with the re-import: $OUT"
fi
timeout 30 "$PVG" user export "$B" --data-dir "$D" >/dev/null || fail "the returning shopper is not back"
OUT=$(timeout 60 "$PVG" recommend --data-dir "$D" --model "$D/model.pvgm" --user $V -k 5 --json) ||
    fail "recommend after re-import: $OUT"
echo "$OUT" | grep -q '"reason": *"unknown_user"' || fail "erased shopper after re-import: $OUT"
# B is known and consenting again, but the model lost their rows at the erasure
OUT=$(timeout 60 "$PVG" recommend --data-dir "$D" --model "$D/model.pvgm" --user $B -k 5 --json) ||
    fail "recommend B: $OUT"
echo "$OUT" | grep -q '"reason": *"not_in_model"' || fail "the model still holds the erased rows of $B: $OUT"
# a second re-import: the suppressed count is stable, nothing new stored
OUT=$(timeout 300 "$PVG" ingest --data-dir "$D" --format online-retail --rejects none --json "$SAMPLE") ||
    fail "third ingest: $OUT"
echo "$OUT" | grep -q "\"stored\":0,\"duplicates\":[0-9]*,\"suppressed\":$SUP," ||
    fail "third ingest must store nothing and suppress $SUP rows: $OUT"
timeout 30 "$PVG" audit verify --data-dir "$D" >/dev/null || fail "audit verify"
echo "PASS"
