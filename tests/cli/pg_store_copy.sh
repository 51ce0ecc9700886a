#!/usr/bin/env bash
# pg_store_copy.sh - `privguide store copy` moves the bundled Online Retail
# store from SQLite to PostgreSQL and back: the copies open with the same key
# file and export the same data for every shopper; `migrate` reports the
# schema current and refuses a newer one; erasure on PostgreSQL (with
# --vacuum-full) leaves the copy consistent. Needs the cluster of
# scripts/pg-cluster (ctest fixture `pg`, PVG_PG_DIR).
set -u
PVG=${PVG_CLI:?PVG_CLI is not set}
SRC=${PVG_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
SAMPLE=$SRC/data/online-retail-sample.csv.gz
[ -n "${PVG_PG_DIR:-}" ] || { echo "SKIP: PVG_PG_DIR is not set (run through ctest: the pg fixture)"; exit 77; }
PGURL=$("$SRC/scripts/pg-cluster" url "$PVG_PG_DIR") || { echo "SKIP: PostgreSQL unavailable"; exit 77; }
PSQL=psql; command -v psql >/dev/null || PSQL=/usr/lib/postgresql/15/bin/psql
T=$(mktemp -d /tmp/pvg_cli_pgcopy.XXXXXX)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
unset PRIVGUIDE_DATABASE_URL
A=$T/sqlite B=$T/pg C=$T/back

timeout 60 "$PVG" init --data-dir "$A" >/dev/null || fail "init"
timeout 30 "$PVG" budget set --data-dir "$A" --epsilon 5 --delta 1e-6 >/dev/null || fail "budget set"
timeout 300 "$PVG" ingest --data-dir "$A" --format online-retail --rejects none "$SAMPLE" >/dev/null || fail "ingest"
timeout 60 "$PVG" query count --data-dir "$A" --epsilon 0.5 >/dev/null || fail "query"
timeout 30 "$PVG" user consent 13047 --personalization off --data-dir "$A" >/dev/null || fail "consent"

OUT=$(timeout 300 "$PVG" store copy --from "$A" --to "$B" --database "$PGURL" --json) || fail "copy to PostgreSQL: $OUT"
echo "to PostgreSQL: $OUT"
echo "$OUT" | grep -q '"backend":"postgresql","users":926,' || fail "copy report: $OUT"
echo "$OUT" | grep -q '"verified_users":926,' || fail "the copy did not verify every shopper: $OUT"
[ -f "$B/database" ] && [ ! -e "$B/privguide.db" ] || fail "the copy must live in PostgreSQL"
OUT=$(timeout 300 "$PVG" store copy --from "$B" --to "$C" --json) || fail "copy back to SQLite: $OUT"
echo "back to SQLite: $OUT"
[ -e "$C/privguide.db" ] || fail "the copy back must be SQLite"

# shoppers export the same from all three: every 30th of the sample and
# 13047, whose consent was changed (the copy itself compared a digest of
# every shopper, checked above; an export waits for its audit entry to reach
# the disk, ~0.1 s, so all 926 x 3 would take minutes: PVG_COPY_ALL=1).
# Under the sanitizers (PVG_SANITIZED=1) every 90th: each export is a
# process whose ASan start-up alone takes ~0.2 s, and the same code runs
# for each shopper (the normal pass compares every 30th).
STEP=30; [ "${PVG_SANITIZED:-0}" = 1 ] && STEP=90
[ "${PVG_COPY_ALL:-0}" = 1 ] && STEP=1
python3 - "$SAMPLE" >"$T/users" <<'PY' || fail "reading the shoppers of the sample"
import csv, gzip, sys
ids = set()
with gzip.open(sys.argv[1], "rt", encoding="utf-8", errors="replace") as f:
    for row in csv.DictReader(f):
        c = (row.get("CustomerID") or "").strip()
        if c:
            ids.add(c[:-2] if c.endswith(".0") else c)
print("\n".join(sorted(ids)))
PY
n=0 i=0
while read -r u; do
  i=$((i + 1)); [ $((i % STEP)) = 0 ] || [ "$u" = 13047 ] || continue
  a=$(timeout 30 "$PVG" user export "$u" --data-dir "$A" 2>&1) || fail "export $u from SQLite: $a"
  b=$(timeout 30 "$PVG" user export "$u" --data-dir "$B" 2>&1) || fail "export $u from PostgreSQL: $b"
  c=$(timeout 30 "$PVG" user export "$u" --data-dir "$C" 2>&1) || fail "export $u from the copy back: $c"
  [ "$a" = "$b" ] || fail "shopper $u exports differently from PostgreSQL"
  [ "$a" = "$c" ] || fail "shopper $u exports differently from the copy back"
  n=$((n + 1))
done <"$T/users"
[ "$n" -ge $((900 / STEP)) ] || fail "only $n shoppers compared"
echo "$n shoppers export identically from SQLite, PostgreSQL and the copy back"
for d in "$B" "$C"; do
  timeout 60 "$PVG" audit verify --data-dir "$d" >/dev/null || fail "audit verify of the copy $d"
  OUT=$(timeout 30 "$PVG" budget show --data-dir "$d") || fail "budget show $d"
  echo "$OUT" | grep -q "0.5" || fail "the ledger was not copied to $d: $OUT"
done
# a copy does not overwrite a store
if timeout 60 "$PVG" store copy --from "$A" --to "$B" --database "$PGURL" >/dev/null 2>&1; then
  fail "store copy over an existing store"
fi

# migrate: current, and refuses a newer schema
OUT=$(timeout 30 "$PVG" migrate --data-dir "$B" --json) || fail "migrate: $OUT"
[ "$OUT" = '{"from":4,"to":4}' ] || fail "migrate output: $OUT"
SCHEMA=$(sed -n 's/^schema //p' "$B/database")
# a version-1 schema (items without their recent prices): refused until migrated
"$PSQL" -q "$PGURL" -c "ALTER TABLE \"$SCHEMA\".items DROP COLUMN recent_prices, DROP COLUMN typical_price;
    DROP INDEX \"$SCHEMA\".audit_log_subject; DROP TABLE \"$SCHEMA\".catalog_text;
    UPDATE \"$SCHEMA\".meta SET value = '1' WHERE key = 'schema_version'" >/dev/null || fail "psql"
if OUT=$(timeout 30 "$PVG" stats --data-dir "$B" 2>&1); then fail "an older schema was opened: $OUT"; fi
OUT=$(timeout 30 "$PVG" migrate --data-dir "$B" --json) || fail "migrate 1 -> 4: $OUT"
[ "$OUT" = '{"from":1,"to":4}' ] || fail "migrate 1 -> 4 output: $OUT"
timeout 30 "$PVG" stats --data-dir "$B" >/dev/null || fail "stats after the migration"
N=$("$PSQL" -qtA "$PGURL" -c "SELECT count(*) FROM pg_indexes WHERE schemaname = '$SCHEMA' AND indexname = 'audit_log_subject'") || fail "psql"
[ "$N" = 1 ] || fail "the migration did not index the audit log by subject"
N=$("$PSQL" -qtA "$PGURL" -c "SELECT count(*) FROM pg_tables WHERE schemaname = '$SCHEMA' AND tablename = 'catalog_text'") || fail "psql"
[ "$N" = 1 ] || fail "the migration did not create the declared catalogue's table"
"$PSQL" -q "$PGURL" -c "UPDATE \"$SCHEMA\".meta SET value = '99' WHERE key = 'schema_version'" >/dev/null || fail "psql"
if OUT=$(timeout 30 "$PVG" migrate --data-dir "$B" 2>&1); then fail "migrate accepted a newer schema: $OUT"; fi
echo "$OUT" | grep -q "newer" || fail "migrate refusal: $OUT"
if OUT=$(timeout 30 "$PVG" stats --data-dir "$B" 2>&1); then fail "a newer schema was opened: $OUT"; fi
"$PSQL" -q "$PGURL" -c "UPDATE \"$SCHEMA\".meta SET value = '4' WHERE key = 'schema_version'" >/dev/null || fail "psql"

# erasure on PostgreSQL with --vacuum-full: gone, and no dead tuples left in chunks
OUT=$(timeout 120 "$PVG" user delete 17850 --vacuum-full --data-dir "$B" --json) || fail "delete: $OUT"
if timeout 30 "$PVG" user export 17850 --data-dir "$B" >/dev/null 2>&1; then fail "export after delete"; fi
ROWS=$("$PSQL" -qtA "$PGURL" -c "SELECT count(*) FROM \"$SCHEMA\".chunks c JOIN \"$SCHEMA\".users u ON u.id = c.user_id") || fail "psql"
[ "$ROWS" = 925 ] || fail "expected 925 users' chunks after the erasure, got $ROWS"
echo "PASS"
