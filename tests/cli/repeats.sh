#!/usr/bin/env bash
# repeats.sh - a source that really repeats one row keeps every repeat, and
# importing it again stores nothing twice, also past the 255 repeats that
# fit in the run's occurrence table slot (the rest are counted apart).
set -u
PVG=${PVG_CLI:?PVG_CLI is not set}
T=$(mktemp -d /tmp/pvg_repeats.XXXXXX)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
D=$T/d
timeout 60 "$PVG" init --data-dir "$D" >/dev/null || fail init
for i in $(seq 1 300); do echo '{"type":"purchase","user":"u1","item":"i1","ts":1700000000,"quantity":1}'; done >"$T/a.jsonl"
echo '{"type":"purchase","user":"u1","item":"i2","ts":1700000000,"quantity":1}' >>"$T/a.jsonl"
OUT=$(timeout 60 "$PVG" ingest --data-dir "$D" --format jsonl "$T/a.jsonl" --json 2>&1) || fail "ingest: $OUT"
echo "$OUT" | grep -q '"stored": *301' || fail "first import must store all 301 rows: $OUT"
OUT=$(timeout 60 "$PVG" ingest --data-dir "$D" --format jsonl "$T/a.jsonl" --json 2>&1) || fail "re-ingest: $OUT"
echo "$OUT" | grep -q '"stored": *0' || fail "a re-import must store nothing: $OUT"
echo "$OUT" | grep -q '"duplicates": *301' || fail "a re-import must find 301 duplicates: $OUT"
# one more repeat in a later file: only the 301st occurrence is new
for i in $(seq 1 301); do echo '{"type":"purchase","user":"u1","item":"i1","ts":1700000000,"quantity":1}'; done >"$T/b.jsonl"
OUT=$(timeout 60 "$PVG" ingest --data-dir "$D" --format jsonl "$T/b.jsonl" --json 2>&1) || fail "ingest b: $OUT"
echo "$OUT" | grep -q '"stored": *1' || fail "only the 301st repeat is new: $OUT"
echo "repeats: ok"
