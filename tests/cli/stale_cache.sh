#!/usr/bin/env bash
# stale_cache.sh - scenario 3 of issue 10, scripted: with `serve` running on
# the store, a shopper is deleted through the CLI and an admin then posts
# events for the same id. No chunk may be written under the destroyed key
# (no chunk row without its user row), no user row id may be reused, and
# export, train, query and `store check` keep working for everyone. Then the
# same through the API alone: the deleting request and the posting ones on
# different pooled connections (every connection primed with the shopper
# first). Every wait is bounded; no fixed sleeps.
set -u
PVG=${PVG_CLI:?PVG_CLI is not set}
command -v curl >/dev/null || { echo "SKIP: curl is not installed"; exit 77; }
command -v sqlite3 >/dev/null || { echo "SKIP: the sqlite3 shell is not installed"; exit 77; }
T=$(mktemp -d /tmp/pvg_stale_cache.XXXXXX)
SRV_PID=
cleanup() { [ -n "$SRV_PID" ] && kill -KILL "$SRV_PID" 2>/dev/null; rm -rf "$T"; }
trap cleanup EXIT
fail() { echo "FAIL: $*"; [ -f "$T/serve.log" ] && sed 's/^/  serve: /' "$T/serve.log"; exit 1; }
D=$T/data
DB=$D/privguide.db
raw() { sqlite3 -cmd ".timeout 10000" "$DB" "$1"; }
orphans() { raw "SELECT count(*) FROM chunks WHERE user_id NOT IN (SELECT id FROM users)"; }

timeout 60 "$PVG" init --data-dir "$D" >/dev/null || fail "init"
# a few shoppers, so train and query have data
for u in 1 2 3 4 5 6 7 8; do
  for i in 1 2 3 4; do
    printf 'shopper-%d\tsku-%d\t1\t%d\n' "$u" $(((u + i) % 6)) $((1700000000 + u * 100 + i)) >>"$T/d.tsv"
  done
done
timeout 60 "$PVG" ingest --data-dir "$D" --format tsv "$T/d.tsv" >/dev/null || fail "ingest"
ADMIN=$(timeout 30 "$PVG" apikey create --role admin --rate 0 --data-dir "$D") || fail "apikey create"
timeout 30 "$PVG" budget set --epsilon 10 --delta 1e-5 --data-dir "$D" >/dev/null || fail "budget set"

"$PVG" serve --data-dir "$D" --port 0 --port-file "$T/port" --threads 4 >"$T/serve.log" 2>&1 &
SRV_PID=$!
deadline=$((SECONDS + 20))
until [ -s "$T/port" ]; do
  [ $SECONDS -lt $deadline ] || fail "server did not start within 20 s"
  kill -0 "$SRV_PID" 2>/dev/null || fail "server exited"
  sleep 0.05
done
URL=http://127.0.0.1:$(cat "$T/port")
C="curl -s -m 10 -H Authorization:Bearer\ $ADMIN"
post() { # user item -> response body
  curl -s -m 10 -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/json' \
    -d "{\"events\":[{\"user\":\"$1\",\"type\":\"view\",\"item\":\"$2\"}]}" "$URL/v1/events"
}
# n concurrent posts for user (distinct items), waited for
burst() { # user n tag
  local pids=() i
  for i in $(seq 1 "$2"); do post "$1" "$3-$i" >"$T/burst.$3.$i" & pids+=($!); done
  for i in "${pids[@]}"; do wait "$i"; done
  for i in $(seq 1 "$2"); do grep -q '"stored":1' "$T/burst.$3.$i" || fail "post $3.$i for $1: $(cat "$T/burst.$3.$i")"; done
}
check_all_readable() { # what
  [ "$(orphans)" = 0 ] || fail "$1: $(orphans) chunk(s) written for a user row that does not exist"
  OUT=$(timeout 60 "$PVG" store check --data-dir "$D" --json) || fail "$1: store check: $OUT"
  echo "$OUT" | grep -q '"ok":true' || fail "$1: store check: $OUT"
  for u in 1 2 3 4 5 6 7 8; do
    timeout 30 "$PVG" user export "shopper-$u" --data-dir "$D" >"$T/exp" 2>&1 || fail "$1: export shopper-$u: $(cat "$T/exp")"
    grep -q unreadable_chunks "$T/exp" && fail "$1: export shopper-$u names unreadable chunks"
  done
  timeout 120 "$PVG" train --data-dir "$D" --model ials --factors 4 --out "$D/m.model" --json >"$T/train" 2>&1 ||
    fail "$1: train: $(cat "$T/train")"
  timeout 60 "$PVG" query count --epsilon 0.5 --data-dir "$D" --json >"$T/query" 2>&1 || fail "$1: query: $(cat "$T/query")"
}

# --- through the CLI: delete while serve runs, then the admin posts -------
post 12583 sku-1 | grep -q '"stored":1' || fail "first post for 12583"
OLD=$(raw "SELECT max(id) FROM users") # 12583 is the newest user row
burst 12583 8 warm                      # every pooled connection caches 12583's key
# --allow-return: the id may come back (a suppressed one is refused: below)
timeout 60 "$PVG" user delete 12583 --allow-return --data-dir "$D" >/dev/null || fail "user delete 12583"
[ "$(raw "SELECT count(*) FROM users WHERE id = $OLD")" = 0 ] || fail "the row of 12583 is still there"
burst 12583 8 after # posts for the deleted id, on whichever connection
[ "$(orphans)" = 0 ] || fail "$(orphans) chunk(s) written under the destroyed key of row $OLD"
post newcomer-1 sku-2 | grep -q '"stored":1' || fail "post for a new shopper"
[ "$(raw "SELECT count(*) FROM users WHERE id = $OLD")" = 0 ] || fail "row id $OLD was reused"
[ "$(raw "SELECT min(id) FROM users WHERE id > $OLD")" -gt "$OLD" ] || fail "no fresh row id"
check_all_readable "after the CLI deletion"

# --- through the API alone: DELETE, then posts on other connections --------
burst 4711 8 warm2
OLD2=$(raw "SELECT max(id) FROM users")
CODE=$(curl -s -m 10 -o "$T/del" -w '%{http_code}' -X DELETE -H "Authorization: Bearer $ADMIN" "$URL/v1/users/4711")
[ "$CODE" = 200 ] || [ "$CODE" = 204 ] || fail "API delete: $CODE $(cat "$T/del")"
# the API erasure puts 4711 on the suppression list: every post is refused
# (reason erased), whichever connection and cache it meets
pids=()
for i in $(seq 1 8); do post 4711 "after2-$i" >"$T/burst.after2.$i" & pids+=($!); done
for p in "${pids[@]}"; do wait "$p"; done
for i in $(seq 1 8); do grep -q '"reason":"erased"' "$T/burst.after2.$i" || fail "post after2.$i for erased 4711: $(cat "$T/burst.after2.$i")"; done
[ "$(orphans)" = 0 ] || fail "API: $(orphans) chunk(s) written under the destroyed key of row $OLD2"
post newcomer-2 sku-3 | grep -q '"stored":1' || fail "post for a second new shopper"
[ "$(raw "SELECT count(*) FROM users WHERE id = $OLD2")" = 0 ] || fail "API: row id $OLD2 was reused"
CODE=$(curl -s -m 10 -o "$T/exp2" -w '%{http_code}' -H "Authorization: Bearer $ADMIN" "$URL/v1/users/newcomer-2/data")
[ "$CODE" = 200 ] || fail "API export of newcomer-2: $CODE $(cat "$T/exp2")"
check_all_readable "after the API deletion"

kill -TERM "$SRV_PID"
deadline=$((SECONDS + 20))
while kill -0 "$SRV_PID" 2>/dev/null; do
  [ $SECONDS -lt $deadline ] || fail "server did not stop within 20 s"
  sleep 0.05
done
SRV_PID=
echo "OK"
