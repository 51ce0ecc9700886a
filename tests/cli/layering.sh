#!/usr/bin/env bash
# layering.sh - the storage layering holds: nothing under src/, cli/, bench/
# or include/ outside src/store/sqlite/ (the SQLite backend) includes
# sqlite3.h or calls sqlite3_*, nothing outside src/store/postgres/ (the
# PostgreSQL backend) includes libpq-fe.h or calls PQ*, and nothing outside
# those two folders holds SQL in a string literal. Everything else reaches
# the database through the backend interface (src/store/backend.h).
#
# Out of scope: tests/ - tests may open the database files directly to play
# an attacker who tampers with or reads a copy of the data dir.
set -u
SRC=${PVG_SOURCE_DIR:?PVG_SOURCE_DIR is not set}
cd "$SRC" || exit 1
for d in src cli bench include; do
  [ -d "$d" ] || { echo "FAIL: $SRC/$d is missing"; exit 1; }
done
[ -d src/store/sqlite ] || { echo "FAIL: src/store/sqlite/ (the SQLite backend) is missing"; exit 1; }

[ -d src/store/postgres ] || { echo "FAIL: src/store/postgres/ (the PostgreSQL backend) is missing"; exit 1; }
files=$(find src cli bench include -type f \( -name '*.c' -o -name '*.h' -o -name '*.in' \) \
          -not -path 'src/store/sqlite/*' -not -path 'src/store/postgres/*' | sort)
not_sqlite=$(find src cli bench include -type f \( -name '*.c' -o -name '*.h' -o -name '*.in' \) \
          -not -path 'src/store/sqlite/*' | sort)
not_pg=$(find src cli bench include -type f \( -name '*.c' -o -name '*.h' -o -name '*.in' \) \
          -not -path 'src/store/postgres/*' | sort)
[ -n "$files" ] || { echo "FAIL: no sources found under $SRC"; exit 1; }

bad=0
# sqlite3.h, sqlite3_* calls, sqlite3 types: any mention of the library.
hits=$(grep -n -i 'sqlite3' $not_sqlite)
if [ -n "$hits" ]; then
  echo "FAIL: SQLite used outside src/store/sqlite/:"
  echo "$hits"
  bad=1
fi
# libpq: its header and its calls (PQexec, PQprepare, ...).
hits=$(grep -n -E 'libpq-fe|\bPQ[a-z][A-Za-z]*\(|\bPGconn\b|\bPGresult\b' $not_pg)
if [ -n "$hits" ]; then
  echo "FAIL: libpq used outside src/store/postgres/:"
  echo "$hits"
  bad=1
fi
# SQL in string literals: a quote directly followed by a statement keyword
# (DELETE only with FROM: "DELETE /v1/..." names an HTTP method).
hits=$(grep -n -E '"[[:space:]]*(SELECT|INSERT|UPDATE|DELETE[[:space:]]+FROM|CREATE|DROP|ALTER|PRAGMA|BEGIN|COMMIT|ROLLBACK|SAVEPOINT)[[:space:]]' $files)
if [ -n "$hits" ]; then
  echo "FAIL: SQL outside src/store/sqlite/ and src/store/postgres/:"
  echo "$hits"
  bad=1
fi
# The check itself must be able to fail: the backend does hold both.
grep -q -l 'sqlite3_prepare' src/store/sqlite/*.c || { echo "FAIL: the check found no SQLite use in the backend (broken pattern?)"; exit 1; }
grep -q -E '"[[:space:]]*(SELECT|INSERT)[[:space:]]' src/store/sqlite/*.c || { echo "FAIL: the check found no SQL in the backend (broken pattern?)"; exit 1; }
grep -q -l 'PQexecPrepared' src/store/postgres/*.c || { echo "FAIL: the check found no libpq use in the PostgreSQL backend (broken pattern?)"; exit 1; }
grep -q -E '"[[:space:]]*(SELECT|INSERT)[[:space:]]' src/store/postgres/*.c || { echo "FAIL: the check found no SQL in the PostgreSQL backend (broken pattern?)"; exit 1; }
[ $bad -eq 0 ] || exit 1
echo "OK: $(echo "$files" | wc -l) files outside src/store/sqlite/ and src/store/postgres/ are free of SQLite, libpq and SQL"
