#!/usr/bin/env bash
# mpc_sum.sh - `privguide mpc sum` with real processes on 127.0.0.1: three
# parties with additive sharing, four with Shamir (threshold 3, decimals,
# negative values, a group only one party has), every party printing the
# same joint totals and nothing else; malformed CSV errors name file:line;
# a missing party ends in a timeout error, never a hang (every process runs
# under timeout(1) as well).
set -u
P=${PVG_CLI:?PVG_CLI not set}
T=$(mktemp -d /tmp/pvg-mpc-cli-XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; rm -rf "$T"; }
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# run_parties NPARTIES EXTRA_FLAGS... ; party i reads $T/p$i.csv, writes $T/o$i / $T/e$i
run_parties() {
  local n=$1; shift
  local attempt port ok
  for attempt in 1 2 3; do
    port=$((20000 + (RANDOM * 7 + $$) % 40000))
    pids=()
    for ((i = 0; i < n; i++)); do
      timeout 60 "$P" mpc sum --parties "$n" --party "$i" --port "$port" --input "$T/p$i.csv" \
        --timeout 20 "$@" >"$T/o$i" 2>"$T/e$i" &
      pids+=($!)
    done
    ok=1
    for p in "${pids[@]}"; do wait "$p" || ok=0; done
    pids=()
    [ $ok -eq 1 ] && return 0
    grep -q "listening on" "$T"/e* || return 1   # a real failure, not a busy port
  done
  return 1
}

printf 'group,value\nshoes,10\nbooks,5\nshoes,7\n' >"$T/p0.csv"
printf 'books,100\ntoys,3\n' >"$T/p1.csv"
printf 'shoes,-2\n"a,b ""q""",1\n' >"$T/p2.csv"
run_parties 3 --scheme additive || fail "additive run: $(cat "$T"/e*)"
want=$'group,total\n"a,b ""q""",1\nbooks,105\nshoes,15\ntoys,3'
for i in 0 1 2; do
  [ "$(cat "$T/o$i")" = "$want" ] || fail "party $i printed: $(cat "$T/o$i")"
done

printf 'east,1.25\nwest,-3.5\n' >"$T/p0.csv"
printf 'east,2.00\nnorth,0.01\n' >"$T/p1.csv"
printf 'west,10\n' >"$T/p2.csv"
: >"$T/p3.csv"    # a party with no rows takes part all the same
run_parties 4 --scheme shamir --threshold 3 --decimals 2 --json || fail "shamir run: $(cat "$T"/e*)"
for i in 0 1 2 3; do
  got=$(jq -c '.totals' "$T/o$i") || fail "party $i JSON"
  [ "$got" = '[{"group":"east","total":3.25},{"group":"north","total":0.01},{"group":"west","total":6.5}]' ] \
    || fail "party $i shamir totals: $got"
done

# an agreed group list: no labels exchanged, a group nobody has totals 0
printf 'books\nshoes\ntoys\nvinyl\n' >"$T/groups.txt"
printf 'shoes,4\n' >"$T/p0.csv"
printf 'books,1\nshoes,1\n' >"$T/p1.csv"
printf 'toys,9\n' >"$T/p2.csv"
run_parties 3 --groups "$T/groups.txt" || fail "groups run: $(cat "$T"/e*)"
want=$'group,total\nbooks,1\nshoes,5\ntoys,9\nvinyl,0'
for i in 0 1 2; do
  [ "$(cat "$T/o$i")" = "$want" ] || fail "party $i with --groups printed: $(cat "$T/o$i")"
done
printf 'shoes,4\ncars,1\n' >"$T/notlisted.csv"
"$P" mpc sum --parties 3 --party 0 --input "$T/notlisted.csv" --groups "$T/groups.txt" 2>"$T/err" \
  && fail "unlisted group accepted"
grep -q "notlisted.csv:2:1" "$T/err" || fail "unlisted group position: $(cat "$T/err")"

# malformed CSV: file:line named, before any network activity
printf 'a,1\nb,2\nc,1x\n' >"$T/bad.csv"
"$P" mpc sum --parties 3 --party 0 --input "$T/bad.csv" --timeout 1 2>"$T/err" && fail "bad csv accepted"
grep -q "bad.csv:3:3" "$T/err" || fail "bad csv position: $(cat "$T/err")"
printf 'a,1,2\n' >"$T/bad2.csv"
"$P" mpc sum --parties 3 --party 0 --input "$T/bad2.csv" 2>"$T/err" && fail "3 fields accepted"
grep -q "bad2.csv:1" "$T/err" || fail "3 fields position: $(cat "$T/err")"
printf 'a,1.234\n' >"$T/bad3.csv"
"$P" mpc sum --parties 3 --party 0 --input "$T/bad3.csv" --decimals 2 2>"$T/err" && fail "3 decimals accepted"
grep -q "bad3.csv:1:3" "$T/err" || fail "decimals position: $(cat "$T/err")"

# a missing party: bounded by --timeout, clear message, exit 1
printf "x,1\n" >"$T/alone.csv"
for attempt in 1 2 3; do
  port=$((20000 + (RANDOM * 7 + $$ + attempt) % 40000))
  start=$(date +%s)
  timeout 30 "$P" mpc sum --parties 3 --party 0 --port "$port" --input "$T/alone.csv" --timeout 1 2>"$T/err"
  rc=$?
  grep -q "listening on" "$T/err" || break   # retry only when the port was busy
done
[ $rc -eq 1 ] || fail "missing party: exit $rc"
grep -q "timed out" "$T/err" || fail "missing party message: $(cat "$T/err")"
[ $(( $(date +%s) - start )) -lt 10 ] || fail "timeout not honoured"

# usage errors
"$P" mpc sum --parties 2 --party 0 --input "$T/p0.csv" 2>/dev/null; [ $? -eq 2 ] || fail "2 parties accepted"
"$P" mpc sum --parties 3 --party 0 --input "$T/p0.csv" --scheme xor 2>/dev/null; [ $? -eq 2 ] || fail "bad scheme accepted"
echo "ok"
