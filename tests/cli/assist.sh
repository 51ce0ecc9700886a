#!/usr/bin/env bash
# assist.sh - `privguide assist` over the bundled Online Retail sample: the
# constraints in the answer, every item within them, a shopper's follow-up
# ("cheaper") refining the last answer, the conversation in the export and
# gone with the shopper, usage errors; then the HTTP routes: POST /v1/assist
# (anonymous, follow-up in the server's memory), POST /v1/users/{id}/assist
# with the shopper's token, GET /v1/users/{id}/conversations, another
# shopper's token refused.
set -u
PVG=${PVG_CLI:?PVG_CLI is not set}
SRC=${PVG_SOURCE_DIR:?PVG_SOURCE_DIR is not set}
command -v python3 >/dev/null || { echo "SKIP: python3 is not installed"; exit 77; }
T=$(mktemp -d /tmp/pvg_cli_assist.XXXXXX)
SRV_PID=
cleanup() { [ -n "$SRV_PID" ] && kill -KILL "$SRV_PID" 2>/dev/null; rm -rf "$T"; }
trap cleanup EXIT
fail() { echo "FAIL: $*"; [ -f "$T/serve.log" ] && sed 's/^/  serve: /' "$T/serve.log"; exit 1; }
D=$T/data
timeout 60 "$PVG" init --data-dir "$D" >/dev/null || fail "init"
# the shop's catalogue: the assistant's items (sale rows make no catalog item)
gzip -dc "$SRC/data/online-retail-catalogue.tsv.gz" >"$T/catalogue.tsv" || fail "gunzip"
timeout 60 "$PVG" catalog import "$T/catalogue.tsv" --data-dir "$D" >/dev/null || fail "catalog import"
timeout 120 "$PVG" ingest --data-dir "$D" --format online-retail \
    "$SRC/data/online-retail-sample.csv.gz" >/dev/null 2>&1 || fail "ingest"

# check.py FILE MAXPRICE EXCLUDED: constraints and every item within them
cat >"$T/check.py" <<'PY'
import json, sys
a = json.load(open(sys.argv[1]))
mx = float(sys.argv[2]); ex = sys.argv[3].upper()
c = a["constraints"]
assert c["price"]["max"] is not None and c["price"]["max"] <= mx + 1e-9, c["price"]
assert a["items"], "no items"
for it in a["items"]:
    assert it["price"] is not None and it["price"] <= c["price"]["max"] + 1e-9, it
    assert ex == "-" or ex not in (it["title"] or "").upper(), it
    assert it["reason"] and "why" in it, it
print(a["conversation"], max(i["price"] for i in a["items"]))
PY

timeout 60 "$PVG" assist --data-dir "$D" --json -k 10 "a gift for a tea lover under £10" >"$T/a1.json" ||
    fail "assist"
python3 "$T/check.py" "$T/a1.json" 10 - >/dev/null || fail "anonymous answer: $(cat "$T/a1.json")"
grep -q '"recipient": "tea lover"' "$T/a1.json" || fail "recipient not understood"
grep -q '"stored": "memory"' "$T/a1.json" || fail "an anonymous conversation must stay in memory"
OUT=$(timeout 60 "$PVG" assist --data-dir "$D" "candle holders without hearts under 3 pounds") ||
    fail "assist (text)"
echo "$OUT" | grep -q "^1\. " || fail "text answer: $OUT"
echo "$OUT" | grep -qi "heart.*holder\|holder.*heart" && { echo "$OUT" | grep "^[0-9]" | grep -qi heart; } &&
    fail "an item with the excluded word: $OUT"

# a shopper (17850 is in the sample): stored sealed, follow-up refines
timeout 60 "$PVG" assist --data-dir "$D" --json --user 17850 -k 5 "candle holders under 5 pounds" \
    >"$T/u1.json" || fail "assist --user"
read -r CONV TOP < <(python3 "$T/check.py" "$T/u1.json" 5 -) || fail "shopper answer: $(cat "$T/u1.json")"
grep -q '"stored": "sealed"' "$T/u1.json" || fail "a shopper's conversation must be stored sealed"
grep -q '"personalization": "applied"' "$T/u1.json" || fail "a consenting shopper: personal re-rank"
timeout 60 "$PVG" assist --data-dir "$D" --json --user 17850 --conversation "$CONV" "cheaper" \
    >"$T/u2.json" || fail "follow-up"
python3 - "$T/u2.json" "$TOP" <<'PY' || fail "follow-up answer: $(cat "$T/u2.json")"
import json, sys
a = json.load(open(sys.argv[1])); top = float(sys.argv[2])
assert a["followup"] is True
assert a["constraints"]["reference"]["kind"] == "cheaper"
assert a["constraints"]["price"]["max"] < 5
assert a["constraints"]["categories"] == ["holder"], a["constraints"]
for it in a["items"]:
    assert it["price"] <= a["constraints"]["price"]["max"] + 1e-9, it
PY
# nobody else continues it
timeout 60 "$PVG" assist --data-dir "$D" --user 12583 --conversation "$CONV" "cheaper" >/dev/null 2>&1
[ $? -eq 1 ] || fail "another shopper continued the conversation"
timeout 60 "$PVG" user export --data-dir "$D" 17850 >"$T/export.json" || fail "export"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); c=d["conversations"]; assert len(c)==1 and len(c[0]["state"]["turns"])==2, c' \
    "$T/export.json" || fail "the export must hold the conversation"
# the sealed row holds no message text
if command -v sqlite3 >/dev/null && [ -f "$D/privguide.db" ]; then
  N=$(sqlite3 "$D/privguide.db" "SELECT count(*) FROM conversations") || fail "sqlite3"
  [ "$N" -ge 1 ] || fail "no conversation row"
  sqlite3 "$D/privguide.db" "SELECT hex(sealed) FROM conversations" | grep -qi "$(printf 'candle holders' | od -An -tx1 | tr -d ' \n')" &&
      fail "a conversation row holds the message in plaintext"
fi
timeout 60 "$PVG" user delete --data-dir "$D" 17850 >/dev/null || fail "user delete"
timeout 60 "$PVG" assist --data-dir "$D" --user 17850 --conversation "$CONV" "cheaper" >/dev/null 2>&1
[ $? -eq 1 ] || fail "an erased shopper's conversation must be gone"
if command -v sqlite3 >/dev/null && [ -f "$D/privguide.db" ]; then
  N=$(sqlite3 "$D/privguide.db" "SELECT count(*) FROM conversations")
  [ "$N" -eq 0 ] || fail "$N conversation rows left after the erasure"
fi

# usage and input errors
timeout 30 "$PVG" assist --data-dir "$D" --conversation 00112233445566778899aabbccddeeff "x" >/dev/null 2>&1
[ $? -eq 2 ] || fail "--conversation without --user must exit 2"
ERR=$(timeout 30 "$PVG" assist --data-dir "$D" $'mugs \xff' 2>&1 >/dev/null)
[ $? -eq 1 ] || fail "invalid UTF-8 must exit 1"
echo "$ERR" | grep -q "offset 5" || fail "invalid UTF-8 error names the offset: $ERR"
timeout 30 "$PVG" assist --data-dir "$D" "   " >/dev/null 2>&1
[ $? -eq 1 ] || fail "an empty message must exit 1"

# ---- HTTP ----
command -v curl >/dev/null || { echo "assist: CLI checks passed; SKIP of the HTTP part: no curl"; exit 0; }
TOK=$(timeout 30 "$PVG" token issue --user 12583 --data-dir "$D") || fail "token issue"
OTHER=$(timeout 30 "$PVG" token issue --user 13047 --data-dir "$D") || fail "token issue"
"$PVG" serve --data-dir "$D" --port 0 --port-file "$T/port" --drain-ms 1000 >"$T/serve.log" 2>&1 &
SRV_PID=$!
for _ in $(seq 1 300); do [ -s "$T/port" ] && break; sleep 0.1; done
[ -s "$T/port" ] || fail "server did not start within 30 s"
URL="http://127.0.0.1:$(cat "$T/port")"
C="curl -s -m 30"
$C -X POST "$URL/v1/assist" -d '{"message": "cheap lanterns", "k": 5}' >"$T/h1.json"
HCONV=$(python3 -c 'import json,sys; a=json.load(open(sys.argv[1])); assert a["constraints"]["price"]["relative"]=="cheap"; print(a["conversation"])' "$T/h1.json") ||
    fail "POST /v1/assist: $(cat "$T/h1.json")"
$C -X POST "$URL/v1/assist" -d "{\"message\": \"in white\", \"conversation\": \"$HCONV\"}" >"$T/h2.json"
python3 -c 'import json,sys; a=json.load(open(sys.argv[1])); assert a["followup"] and a["constraints"]["categories"]==["lantern"], a' \
    "$T/h2.json" || fail "anonymous follow-up: $(cat "$T/h2.json")"
CODE=$($C -o /dev/null -w '%{http_code}' -X POST "$URL/v1/assist" -d '{"message": 5}')
[ "$CODE" = 400 ] || fail "a malformed body: $CODE"
$C -X POST -H "Authorization: Bearer $TOK" "$URL/v1/users/12583/assist" \
    -d '{"message": "a mug under 3 pounds"}' >"$T/h3.json"
grep -q '"stored": "sealed"' "$T/h3.json" || fail "POST /v1/users/{id}/assist: $(cat "$T/h3.json")"
CODE=$($C -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $OTHER" \
    "$URL/v1/users/12583/assist" -d '{"message": "mugs"}')
[ "$CODE" = 403 ] || fail "another shopper's token: $CODE"
$C -H "Authorization: Bearer $TOK" "$URL/v1/users/12583/conversations" >"$T/h4.json"
python3 -c 'import json,sys; a=json.load(open(sys.argv[1])); assert len(a["conversations"])==1 and a["conversations"][0]["turns"][0]["message"]=="a mug under 3 pounds", a' \
    "$T/h4.json" || fail "GET conversations: $(cat "$T/h4.json")"
CODE=$($C -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $OTHER" "$URL/v1/users/12583/conversations")
[ "$CODE" = 403 ] || fail "another shopper's conversations: $CODE"
kill -TERM "$SRV_PID"
wait "$SRV_PID"
SRV_PID=
echo "assist: CLI and HTTP checks passed"
