#!/usr/bin/env bash
# secagg_simulate.sh - `privguide secagg simulate` end to end: exact sums
# with given inputs (with and without dropouts, checked against an
# independent awk sum of the survivors' rows mod 2^32), random inputs with
# SecAgg+ neighbourhoods, the abort below threshold (exit 1, no output
# file), reproducibility with --seed, and clear errors for bad input
# (file:line:column) and bad flags (exit 2).
set -u
P=${PVG_CLI:?PVG_CLI not set}
T=$(mktemp -d /tmp/pvg-secagg-cli-XXXXXX)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# 12 clients x 5 values, some near 2^32 so the sum wraps
awk 'BEGIN { srand(7); for (i = 0; i < 12; i++) { l = ""; for (j = 0; j < 5; j++) {
  v = (j == 4) ? 4294967295 - i : int(rand() * 1000000); l = l (j ? " " : "") sprintf("%.0f", v) }; print l } }' >"$T/in.txt"

expect_sum() { # $1 = comma-separated 0-based rows; prints the sums mod 2^32
  awk -v rows="$1" 'BEGIN { n = split(rows, r, ","); for (i = 1; i <= n; i++) keep[r[i]] = 1 }
    { if ((NR - 1) in keep) for (j = 1; j <= NF; j++) s[j] = (s[j] + $j) % 4294967296; nf = NF }
    END { l = ""; for (j = 1; j <= nf; j++) l = l (j > 1 ? " " : "") sprintf("%.0f", s[j] + 0); print l }' "$T/in.txt"
}

for drop in 0 0.3; do
  "$P" secagg simulate --clients 12 --dim 5 --dropout $drop --seed 3 --inputs "$T/in.txt" \
    --out "$T/out.txt" --json >"$T/res.json" || fail "simulate dropout $drop"
  [ "$(jq -r .exact "$T/res.json")" = true ] || fail "not exact (dropout $drop)"
  rows=$(jq -r '.survivors | map(tostring) | join(",")' "$T/res.json")
  n=$(jq '.survivors | length' "$T/res.json")
  if [ "$drop" = 0 ]; then [ "$n" -eq 12 ] || fail "all 12 should survive, got $n"; fi
  if [ "$drop" = 0.3 ]; then [ "$n" -lt 12 ] || fail "dropouts did not happen"; fi
  [ "$(cat "$T/out.txt")" = "$(expect_sum "$rows")" ] || fail "aggregate differs from awk sum (dropout $drop)"
done

# SecAgg+ neighbourhood with random inputs, 64-bit modulus, every field present
"$P" secagg simulate --clients 80 --dim 300 --dropout 0.1 --neighbours 12 --threshold 7 --bits 64 \
  --seed 5 --json >"$T/r2.json" || fail "secagg+ run"
for k in exact survivors server_seconds client_seconds_p50 client_seconds_max bytes_up_per_client bytes_down_per_client; do
  jq -e "has(\"$k\")" "$T/r2.json" >/dev/null || fail "missing $k"
done
[ "$(jq -r .exact "$T/r2.json")" = true ] || fail "secagg+ not exact"
[ "$(jq '.dropped_in_round | map(select(. > 0)) | length' "$T/r2.json")" -eq 4 ] || fail "dropouts not in every round"
# reproducible with the same seed (timings aside)
"$P" secagg simulate --clients 80 --dim 300 --dropout 0.1 --neighbours 12 --threshold 7 --bits 64 \
  --seed 5 --json >"$T/r3.json" || fail "second run"
[ "$(jq -c .survivors "$T/r2.json")" = "$(jq -c .survivors "$T/r3.json")" ] || fail "seeded runs differ"

# abort below threshold: exit 1, nothing written
"$P" secagg simulate --clients 10 --dim 3 --dropout 0.5 --threshold 10 --seed 1 \
  --out "$T/abort.txt" 2>"$T/err" && fail "abort expected"
grep -qi "abort" "$T/err" || fail "abort message: $(cat "$T/err")"
[ ! -e "$T/abort.txt" ] || fail "output written despite abort"

# malformed inputs name file:line:column
printf '1 2 3\n4 x 6\n7 8 9\n' >"$T/bad.txt"
"$P" secagg simulate --clients 3 --dim 3 --seed 1 --inputs "$T/bad.txt" 2>"$T/err" && fail "bad input accepted"
grep -q "bad.txt:2:3" "$T/err" || fail "error position: $(cat "$T/err")"
printf '1 2 3\n4 5 6\n' >"$T/short.txt"
"$P" secagg simulate --clients 3 --dim 3 --seed 1 --inputs "$T/short.txt" 2>"$T/err" && fail "short file accepted"
grep -q "short.txt" "$T/err" || fail "short file message"
printf '1 2 3\n4 5 6 7\n8 9 1\n' >"$T/long.txt"
"$P" secagg simulate --clients 3 --dim 3 --seed 1 --inputs "$T/long.txt" 2>"$T/err" && fail "long line accepted"
grep -q "long.txt:2:7" "$T/err" || fail "long line position: $(cat "$T/err")"
printf '1 2 4294967296\n4 5 6\n8 9 1\n' >"$T/big.txt"
"$P" secagg simulate --clients 3 --dim 3 --seed 1 --inputs "$T/big.txt" 2>/dev/null && fail "2^32 accepted"

# usage errors exit 2
"$P" secagg simulate --clients 10 --dim 3 --neighbours 3 2>/dev/null; [ $? -eq 2 ] || fail "odd k accepted"
"$P" secagg simulate --dim 3 2>/dev/null; [ $? -eq 2 ] || fail "missing --clients accepted"
"$P" secagg simulate --clients 10 --dim 3 --dropout 1.5 2>/dev/null; [ $? -eq 2 ] || fail "dropout 1.5 accepted"
echo "ok"
