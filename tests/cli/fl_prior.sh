#!/usr/bin/env bash
# fl_prior.sh - `fl serve --item-prior titles|descriptions|categories`: the
# public item prior from the store's declared catalogue (docs/federated.md "A
# prior from public item data"). Refused, before any charge or server,
# without --epsilon, with the gradient form, with another source, and a
# weight or count without the prior; with --epsilon the server builds it from
# the declared titles of the served items (an item without one gets no
# neighbours), says so, and a DP round with it completes; from the declared
# descriptions as text, or as category labels (whole labels: "Garden" and
# "Garden Tools|Sci-Fi" share words but no label), each linking other items
# than the titles do; a description that is not a label list is refused for
# categories naming the item. `serve --fl-items` takes the same flags under
# fl- names.
set -u
P=${PVG_CLI:?PVG_CLI not set}
T=$(mktemp -d /tmp/pvg-fl-prior-XXXXXX)
SRV_PID=
cleanup() { [ -n "$SRV_PID" ] && kill -KILL "$SRV_PID" 2>/dev/null; rm -rf "$T"; }
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; [ -f "$T/serve.log" ] && sed 's/^/  serve: /' "$T/serve.log" >&2; exit 1; }

awk 'BEGIN { srand(7); for (u = 0; u < 3; u++) for (e = 0; e < 8; e++)
  printf "{\"type\":\"purchase\",\"user\":\"u%d\",\"item\":\"i%d\",\"ts\":%d}\n", u, int(rand() * 20), 1000 + e }' >"$T/ev.jsonl"
seq 0 19 | sed 's/^/i/' >"$T/items.txt"
# the declared catalogue: i0..i15 titled (pairs sharing words), i16..i19 not; i0..i9 described:
# i0..i3 and i4..i7 share labels, i8 and i9 share the word "garden" but no label
DESC=("Knives|Kitchen" "kitchen, knives" "Knives" "Kitchen" "Throws|Home" "Home" "home|throws" "Throws"
  "Garden" "Garden Tools|Sci-Fi")
for i in $(seq 0 15); do printf 'i%d\t%s wooden %s%s\n' "$i" "$([ $((i % 2)) = 0 ] && echo red || echo blue)" \
  "$(echo lamp chair table sofa mirror shelf rug vase | cut -d' ' -f$((i / 2 + 1)))" \
  "$([ "$i" -lt 10 ] && printf '\t%s' "${DESC[$i]}")"; done >"$T/catalog.tsv"
D=$T/data
export PRIVGUIDE_KEY_FILE=$T/keys
timeout 60 "$P" init --data-dir "$D" >/dev/null || fail "init"
"$P" budget set --epsilon 10 --delta 1e-4 --data-dir "$D" >/dev/null || fail "budget set"
"$P" catalog import "$T/catalog.tsv" --data-dir "$D" >/dev/null || fail "catalog import"
# sale rows give the untitled i16..i19 display titles that would link them (and rename i0): the
# prior must not see them (still 16 of 20 titled below)
for i in 0 16 17 18 19; do printf '{"type":"item","item":"i%d","title":"red wooden lamp %d"}\n' "$i" "$i"; done \
  >"$T/rows.jsonl"
"$P" ingest --data-dir "$D" --format jsonl "$T/rows.jsonl" >/dev/null || fail "ingest sale rows"
for u in 0 1 2; do
  TOKS[$u]=$(timeout 30 "$P" token issue --user "u$u" --data-dir "$D") || fail "token issue"
  grep "\"u$u\"" "$T/ev.jsonl" >"$T/u$u.jsonl"
done
releases() { "$P" budget show --json --data-dir "$D" | jq -c '[.releases[] | select(.purpose == "federated_training")]'; }

# refused ARGS... -- MESSAGE: fl serve ARGS exits 2 naming the flag, nothing charged
refused() {
  local args=() msg
  while [ "$1" != -- ]; do args+=("$1"); shift; done
  msg=$2
  "$P" fl serve --data-dir "$D" --port 0 --items "$T/items.txt" --factors 4 --min-clients 3 "${args[@]}" \
    >/dev/null 2>"$T/err"
  rc=$?
  [ $rc -eq 2 ] && grep -qF -- "$msg" "$T/err" || fail "${args[*]}: rc $rc, $(cat "$T/err")"
}
refused --item-prior titles -- "--item-prior needs --epsilon"
refused --epsilon 4 --item-prior titles --update gradient -- "--item-prior needs the statistics form (--update stats)"
refused --epsilon 4 --item-prior genres -- "--item-prior wants titles"
refused --item-prior descriptions -- "--item-prior needs --epsilon"
refused --epsilon 4 --item-prior categories --update gradient -- "--item-prior needs the statistics form (--update stats)"
refused --epsilon 4 --item-prior-weight 0.5 -- "--item-prior-weight needs --item-prior SOURCE"
refused --epsilon 4 --item-prior titles --item-prior-weight 2 -- "--item-prior-weight wants 0 < W <= 1"
refused --epsilon 4 --item-prior titles --item-prior-count -1 -- "--item-prior-count wants 0 <= H"
# the coordinator's flags are checked before the charge too
refused --epsilon 4 --delta 1e-5 --k 1 -- "--k wants 0 (the plan) or 2..65534"
refused --epsilon 4 --delta 1e-5 --phase-grace -1 -- "want 0 <= --phase-grace <= 86400"
refused --epsilon 4 --delta 1e-5 --expire-seconds 0 -- "--expire-seconds > 0"
refused --epsilon 4 --delta 1e-5 --phase-seconds -5 -- "--phase-seconds wants 0..86400"
refused --epsilon 4 --delta 1e-5 --server-threads 65 -- "--server-threads: expected an integer in [1, 64]"
refused --epsilon 4 --delta 1e-5 --k 70000 -- "--k: expected an integer in [0, 65534]"
[ "$(releases)" = "[]" ] || fail "a refused run charged the budget: $(releases)"

# a DP run with the prior: built from the 16 declared titles, then one round
"$P" fl serve --data-dir "$D" --port 0 --items "$T/items.txt" --factors 4 --min-clients 3 \
  --epsilon 4 --delta 1e-5 --rounds 1 --phase-seconds 120 --item-prior titles \
  >"$T/rounds.jsonl" 2>"$T/serve.log" &
SRV_PID=$!
URL=
for _ in $(seq 1 600); do
  URL=$(sed -n 's|.*federated training on \(http://[0-9.:]*\)/v1/fl/.*|\1|p' "$T/serve.log")
  [ -n "$URL" ] && break
  kill -0 "$SRV_PID" 2>/dev/null || break
  sleep 0.05
done
[ -n "$URL" ] || fail "server did not start"
grep -q "item prior from the declared catalogue's titles: 16 of 20 items titled, 16 linked (up to 100 neighbours each), weight 1, count 20" \
  "$T/serve.log" || fail "prior line"
for u in 0 1 2; do
  "$P" fl client --server "$URL" --token "${TOKS[$u]}" --data "$T/u$u.jsonl" --items "$T/items.txt" \
    --rounds 1 --timeout 120 >"$T/c$u.json" 2>"$T/c$u.err" &
  CP[$u]=$!
done
for u in 0 1 2; do wait "${CP[$u]}" || { cat "$T/c$u.err" "$T/c$u.json" >&2; fail "client $u"; }; done
wait "$SRV_PID" || fail "server exit"
SRV_PID=
[ "$(jq -r .phase "$T/rounds.jsonl")" = done ] || fail "DP round: $(cat "$T/rounds.jsonl")"
[ "$(jq length <<<"$(releases)")" -eq 1 ] || fail "want one charge: $(releases)"

# prior_line SOURCE LINE: fl serve --item-prior SOURCE prints LINE (then it is stopped)
prior_line() {
  "$P" fl serve --data-dir "$D" --port 0 --items "$T/items.txt" --factors 4 --min-clients 3 \
    --epsilon 1 --delta 1e-5 --rounds 1 --phase-seconds 120 --item-prior "$1" >/dev/null 2>"$T/serve.log" &
  SRV_PID=$!
  for _ in $(seq 1 600); do
    grep -q "federated training on http" "$T/serve.log" && break
    kill -0 "$SRV_PID" 2>/dev/null || break
    sleep 0.05
  done
  grep -qF "$2" "$T/serve.log" || fail "--item-prior $1: want '$2'"
  kill -TERM "$SRV_PID"
  wait "$SRV_PID"
  SRV_PID=
}
# the descriptions as text: i8 and i9 share "garden" (10 linked); as labels they share none (8)
prior_line descriptions "item prior from the declared catalogue's descriptions: 10 of 20 items described, 10 linked (up to 100 neighbours each)"
prior_line categories "item prior from the declared catalogue's categories: 10 of 20 items described, 8 linked (up to 100 neighbours each)"

# a description that is not a category list: refused naming the item, nothing charged
n_rel=$(jq length <<<"$(releases)")
printf 'i3\tred wooden chair\tKitchen||Knives\n' >"$T/bad.tsv"
"$P" catalog import "$T/bad.tsv" --data-dir "$D" >/dev/null || fail "catalog import bad.tsv"
"$P" fl serve --data-dir "$D" --port 0 --items "$T/items.txt" --factors 4 --min-clients 3 \
  --epsilon 1 --delta 1e-5 --rounds 1 --item-prior categories >/dev/null 2>"$T/err"
rc=$?
[ $rc -eq 1 ] && grep -qF "the declared description of item 'i3' is not a category list" "$T/err" &&
  grep -qF "empty label at byte 8" "$T/err" || fail "bad category list: rc $rc, $(cat "$T/err")"
[ "$(jq length <<<"$(releases)")" -eq "$n_rel" ] || fail "a refused prior charged the budget: $(releases)"
# served items none of which has the source's declared text: refused, nothing charged
seq 0 19 | sed 's/^/x/' >"$T/undeclared.txt"
for src in titles descriptions categories; do
  "$P" fl serve --data-dir "$D" --port 0 --items "$T/undeclared.txt" --factors 4 --min-clients 3 \
    --epsilon 1 --delta 1e-5 --rounds 1 --item-prior $src >/dev/null 2>"$T/err"
  rc=$?
  [ $rc -eq 1 ] && grep -qF "none of the 20 served items has a declared $([ $src = titles ] && echo title || echo description)" "$T/err" ||
    fail "--item-prior $src without declared text: rc $rc, $(cat "$T/err")"
done
[ "$(jq length <<<"$(releases)")" -eq "$n_rel" ] || fail "a prior without declared text charged the budget: $(releases)"
printf 'i3\tred wooden chair\tKitchen\n' >"$T/fix.tsv"
"$P" catalog import "$T/fix.tsv" --data-dir "$D" >/dev/null || fail "catalog import fix.tsv"

# serve without --fl-items: a federated flag (the prior's among them) is refused, not ignored
for f in "--fl-item-prior titles" "--fl-item-prior-weight 0.5" "--fl-epsilon 1"; do
  # shellcheck disable=SC2086
  timeout 30 "$P" serve --data-dir "$D" --port 0 $f >/dev/null 2>"$T/err"
  rc=$?
  [ $rc -eq 2 ] && grep -qF -- "needs --fl-items" "$T/err" || fail "serve $f without --fl-items: rc $rc, $(cat "$T/err")"
done
[ "$(jq length <<<"$(releases)")" -eq "$n_rel" ] || fail "a refused serve charged the budget: $(releases)"

# serve --fl-items: the same refusal and the same prior under the fl- names
"$P" serve --data-dir "$D" --port 0 --fl-items "$T/items.txt" --fl-item-prior titles >/dev/null 2>"$T/err"
rc=$?
[ $rc -eq 2 ] && grep -qF -- "--fl-item-prior needs --fl-epsilon" "$T/err" || fail "serve without --fl-epsilon: rc $rc, $(cat "$T/err")"
"$P" serve --data-dir "$D" --port 0 --fl-items "$T/items.txt" --fl-min-clients 3 --fl-epsilon 1 \
  --fl-delta 1e-5 --fl-item-prior titles --fl-item-prior-count 5 >/dev/null 2>"$T/serve.log" &
SRV_PID=$!
for _ in $(seq 1 600); do
  grep -q "item prior from the declared catalogue's titles" "$T/serve.log" && break
  kill -0 "$SRV_PID" 2>/dev/null || break
  sleep 0.05
done
grep -q "item prior from the declared catalogue's titles: 16 of 20 items titled, 16 linked (up to 100 neighbours each), weight 1, count 5" \
  "$T/serve.log" || fail "serve: prior line"
kill -TERM "$SRV_PID"
wait "$SRV_PID"
SRV_PID=
echo "ok"
