#!/usr/bin/env bash
# Builds the fuzz harnesses with clang (libFuzzer + ASan + UBSan) and runs
# each for the given number of seconds (default 60). Needs clang and
# libclang-rt (Debian: clang, libclang-rt-14-dev).  usage: fuzz/run.sh [seconds]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SECS=${1:-60}
OUT=${OUT:-$ROOT/build-fuzz}
mkdir -p "$OUT/corpus-reader"
echo '#define PVG_VERSION_STRING "fuzz"' > "$OUT/pvg_version.h"
clang -std=c11 -g -O1 -fsanitize=fuzzer,address,undefined -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -D_GNU_SOURCE \
    -I"$ROOT/include" -I"$ROOT/src" -I"$OUT" \
    "$ROOT/fuzz/fuzz_reader.c" "$ROOT"/src/store/{reader,text,event,policy,seal}.c "$ROOT"/src/core/{error,rng,init}.c \
    -o "$OUT/fuzz_reader" $(pkg-config --cflags --libs libsodium jansson zlib sqlite3) -lm -lpthread
# seed corpus: a few rows of each format
printf '\000InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n536365,85123A,"A, B",6,2010-12-01 08:26:00,2.55,17850.0,United Kingdom\n' > "$OUT/corpus-reader/or"
printf '\001196\t242\t3\t881250949\n1::2::3::4\n' > "$OUT/corpus-reader/ml"
printf '\005{"type":"view","user":"u","item":"i","ts":1}\n' > "$OUT/corpus-reader/jsonl"
printf '\007{"version":1,"events":{"view":{"retention_days":3,"fields":["query"]}}}' > "$OUT/corpus-reader/policy"
"$OUT/fuzz_reader" -max_total_time="$SECS" -max_len=8192 "$OUT/corpus-reader"
