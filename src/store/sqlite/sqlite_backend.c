/*
 * sqlite_backend.c - the SQLite implementation of the store backend
 * (src/store/backend.h; contract in docs/store.md).
 *
 * Two databases, each in WAL mode with synchronous=FULL and secure_delete
 * on: privguide.db (everything but keys) and keystore.db (wrapped data
 * keys). A write transaction takes the key store first, then the main
 * database, and commits in the same order, so a data key is durable before
 * any record sealed under it; a crash between the two commits leaves at
 * most an unused key, which the next write replaces.
 *
 * This folder is the only place in the tree that includes sqlite3.h or
 * holds SQL (tests/cli/layering.sh checks it).
 */
#include "store/backend.h"
#include "store/datafile.h"

#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SCHEMA_VERSION "1"

/* User row ids are never reused (AUTOINCREMENT): a row id names one user
 * for the life of the store, so nothing left behind under a deleted user's
 * id (a chunk written by a stale writer, a reference elsewhere) can ever be
 * read as another user's. Stores created before this are migrated on open
 * (migrate_users). */
#define USERS_TABLE(name)                                                                          \
    "CREATE TABLE IF NOT EXISTS " name "(id INTEGER PRIMARY KEY AUTOINCREMENT,"                    \
    "  pseudonym BLOB NOT NULL UNIQUE, created_at INTEGER NOT NULL,"                               \
    "  consent_personalization INTEGER NOT NULL, consent_analytics INTEGER NOT NULL,"              \
    "  consent_updated_at INTEGER);"

static const char MAIN_SCHEMA[] =
    "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS items(id INTEGER PRIMARY KEY, ext_id TEXT NOT NULL UNIQUE,"
    "  title TEXT, category TEXT, price REAL, attrs TEXT, updated_at INTEGER NOT NULL,"
    "  catalog INTEGER NOT NULL DEFAULT 0, recent_prices TEXT, typical_price REAL);"
    "CREATE INDEX IF NOT EXISTS items_category ON items(category);" USERS_TABLE("users")
    /* A user's events are sealed in chunks (chunk.c). Besides the user's
     * row id, the plaintext is the day on which a chunk expires and the
     * number of events in it (which its length shows anyway). */
    "CREATE TABLE IF NOT EXISTS chunks(id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL,"
    "  expires_day INTEGER NOT NULL, n INTEGER NOT NULL, cid BLOB NOT NULL, sealed BLOB NOT NULL);"
    "CREATE INDEX IF NOT EXISTS chunks_user ON chunks(user_id);"
    "CREATE INDEX IF NOT EXISTS chunks_expiry ON chunks(expires_day);"
    /* Chunks `store check --quarantine` moved out of the readers' way, kept
     * sealed as they were; user_pseudonym makes them go with the user. */
    "CREATE TABLE IF NOT EXISTS chunk_quarantine(id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL,"
    "  user_pseudonym BLOB, expires_day INTEGER NOT NULL, n INTEGER NOT NULL, cid BLOB NOT NULL,"
    "  sealed BLOB NOT NULL, reason TEXT NOT NULL, quarantined_at INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS chunk_quarantine_user ON chunk_quarantine(user_pseudonym);"
    /* Anonymous (user-less) rows as non-personal counts, per source. */
    "CREATE TABLE IF NOT EXISTS anon_counts(source BLOB NOT NULL, item_id INTEGER NOT NULL,"
    "  type INTEGER NOT NULL, count INTEGER NOT NULL, quantity REAL NOT NULL,"
    "  PRIMARY KEY(source, item_id, type)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS ingest_runs(id INTEGER PRIMARY KEY, started_at INTEGER NOT NULL,"
    "  finished_at INTEGER, format TEXT NOT NULL, source TEXT NOT NULL, read INTEGER, accepted "
    "INTEGER,"
    "  rejected INTEGER, stored INTEGER, duplicates INTEGER, anonymous INTEGER);"
    /* The store-wide change counter (one row, id 1; absent = 0). */
    "CREATE TABLE IF NOT EXISTS change_counter(id INTEGER PRIMARY KEY CHECK (id = 1),"
    "  value INTEGER NOT NULL);"
    /* Credentials: a column user_pseudonym makes rows go with the user. */
    "CREATE TABLE IF NOT EXISTS auth_keys ("
    " key_id TEXT PRIMARY KEY,"
    " kind TEXT NOT NULL,"
    " role TEXT NOT NULL,"
    " label TEXT NOT NULL DEFAULT '',"
    " user_pseudonym BLOB,"
    " secret_hash BLOB NOT NULL,"
    " rate_per_s REAL NOT NULL DEFAULT 0,"
    " created_at INTEGER NOT NULL,"
    " expires_at INTEGER NOT NULL DEFAULT 0,"
    " revoked INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX IF NOT EXISTS auth_keys_user ON auth_keys(user_pseudonym);"
    /* The privacy budget ledger. */
    "CREATE TABLE IF NOT EXISTS dp_budget("
    " dataset TEXT PRIMARY KEY NOT NULL,"
    " total_epsilon REAL NOT NULL, total_delta REAL NOT NULL,"
    " updated_at INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS dp_release("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " dataset TEXT NOT NULL, what TEXT NOT NULL, mechanism TEXT NOT NULL,"
    " epsilon REAL NOT NULL, delta REAL NOT NULL, created_at INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS dp_release_dataset ON dp_release(dataset, id);"
    /* One budget per store (dp_budget above is the pre-purpose per-label
     * table, only read as the migrated total until this one has its row),
     * and the operator's caps per purpose. */
    "CREATE TABLE IF NOT EXISTS dp_store_budget("
    " id INTEGER PRIMARY KEY CHECK (id = 1),"
    " total_epsilon REAL NOT NULL, total_delta REAL NOT NULL,"
    " updated_at INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS dp_purpose_cap("
    " purpose TEXT PRIMARY KEY NOT NULL,"
    " cap_epsilon REAL NOT NULL, cap_delta REAL NOT NULL,"
    " updated_at INTEGER NOT NULL);"
    /* (the audit log is in audit.db: AUDIT_SCHEMA) */
    /* The server's DP popular lists, one per model build and parameters. */
    "CREATE TABLE IF NOT EXISTS server_popular_release ("
    " fingerprint BLOB NOT NULL,"
    " dataset TEXT NOT NULL,"
    " k INTEGER NOT NULL,"
    " epsilon REAL NOT NULL,"
    " mechanism TEXT NOT NULL,"
    " release_id INTEGER NOT NULL,"
    " items TEXT NOT NULL,"
    " created_at INTEGER NOT NULL,"
    " PRIMARY KEY (fingerprint, dataset, k, epsilon));"
    /* The erasure suppression list: the pseudonym only (no time, no other
     * column; deliberately not named user_pseudonym, so that user_delete's
     * sweep of linked rows leaves it). docs/privacy.md. */
    "CREATE TABLE IF NOT EXISTS suppressed(pseudonym BLOB PRIMARY KEY) WITHOUT ROWID;"
    /* The duplicate index: rows of (user row, expiry day, part) each
     * holding the first 8 bytes of the keyed record ids of events stored
     * with that expiry, sorted (memcmp order), 8 bytes each; a part takes
     * new keys until it holds TAG_SET_MAX. docs/store.md. */
    "CREATE TABLE IF NOT EXISTS event_tag_sets(user_id INTEGER NOT NULL,"
    "  expires_day INTEGER NOT NULL, part INTEGER NOT NULL, keys BLOB NOT NULL,"
    "  PRIMARY KEY(user_id, expires_day, part)) WITHOUT ROWID;"
    /* Cached DP releases of any kind ("popular", "similar"), one per model
     * build, dataset and parameters; everything in body is DP (public). */
    "CREATE TABLE IF NOT EXISTS dp_release_cache ("
    " kind TEXT NOT NULL,"
    " fingerprint BLOB NOT NULL,"
    " dataset TEXT NOT NULL,"
    " params TEXT NOT NULL,"
    " mechanism TEXT NOT NULL,"
    " release_id INTEGER NOT NULL,"
    " body TEXT NOT NULL,"
    " created_at INTEGER NOT NULL,"
    " PRIMARY KEY (kind, fingerprint, dataset, params));"
    "CREATE INDEX IF NOT EXISTS dp_release_cache_latest ON dp_release_cache(kind, dataset,"
    " created_at);"
    /* The assistant's conversations of identified shoppers, sealed under the
     * shopper's data key (src/store/conversation.c); user_pseudonym makes
     * them go with the user. */
    "CREATE TABLE IF NOT EXISTS conversations(user_pseudonym BLOB NOT NULL, cid BLOB NOT NULL,"
    "  created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL, expires_day INTEGER NOT NULL,"
    "  sealed BLOB NOT NULL, PRIMARY KEY(user_pseudonym, cid)) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS conversations_expiry ON conversations(expires_day);"
    /* The operator's declared catalogue text (src/store/catalog.c), apart
     * from items.title, which a sale row may set; older stores get it on
     * open. */
    "CREATE TABLE IF NOT EXISTS catalog_text(ext_id TEXT PRIMARY KEY, title TEXT NOT NULL,"
    "  description TEXT, updated_at INTEGER NOT NULL) WITHOUT ROWID;";

/* The change counter is bumped by the database itself on every write to
 * the tables whose answers a handle's memo keeps (users, auth_keys, meta):
 * the backend's own writes bump it too (in the same unit), but a writer
 * that does not (an older binary on the same store, a hand-made SQL edit)
 * must not leave a memo answering with a revoked credential or a withdrawn
 * consent. Applied on every open, after the migrations that rebuild
 * tables. */
#define BUMP_SQL                                                                                   \
    "INSERT INTO change_counter(id, value) VALUES(1, 1) ON CONFLICT(id) DO UPDATE SET value = "    \
    "value + 1"
static const char CHANGE_TRIGGERS[] =
    "CREATE TRIGGER IF NOT EXISTS users_insert_bumps AFTER INSERT ON users BEGIN"
    "  " BUMP_SQL "; END;"
    "CREATE TRIGGER IF NOT EXISTS users_update_bumps AFTER UPDATE ON users BEGIN"
    "  " BUMP_SQL "; END;"
    "CREATE TRIGGER IF NOT EXISTS users_delete_bumps AFTER DELETE ON users BEGIN"
    "  " BUMP_SQL "; END;"
    "CREATE TRIGGER IF NOT EXISTS auth_keys_insert_bumps AFTER INSERT ON auth_keys BEGIN"
    "  " BUMP_SQL "; END;"
    "CREATE TRIGGER IF NOT EXISTS auth_keys_update_bumps AFTER UPDATE ON auth_keys BEGIN"
    "  " BUMP_SQL "; END;"
    "CREATE TRIGGER IF NOT EXISTS auth_keys_delete_bumps AFTER DELETE ON auth_keys BEGIN"
    "  " BUMP_SQL "; END;"
    "CREATE TRIGGER IF NOT EXISTS meta_insert_bumps AFTER INSERT ON meta BEGIN"
    "  " BUMP_SQL "; END;"
    "CREATE TRIGGER IF NOT EXISTS meta_update_bumps AFTER UPDATE ON meta BEGIN"
    "  " BUMP_SQL "; END;"
    "CREATE TRIGGER IF NOT EXISTS meta_delete_bumps AFTER DELETE ON meta BEGIN"
    "  " BUMP_SQL "; END;";

/* The audit log, in its own file audit.db, attached to every main
 * connection as schema "audit": its appends (hundreds of commits a second
 * under the server) then change neither privguide.db's WAL nor its data
 * version, so the readers' page caches and the read memo's snapshots are not
 * disturbed by them. No user_pseudonym column: it survives deletions.
 * Stores made before keep the table in privguide.db until open moves it
 * (migrate_audit).
 *
 * A shopper's own entries (GET /v1/users/{id}/audit) are found without a
 * scan through audit_subject (subject, seq), which holds every entry up to
 * audit_subject_upto's seq; the newer ones (fewer than AUDIT_INDEX_BATCH)
 * are read from the log's tail by seq. The append that takes the tail to
 * AUDIT_INDEX_BATCH indexes it in the same unit, sorted by subject: an
 * index updated with every group commit would write a page at a random
 * place of it for nearly every entry (about 11 pages, 45 KB, per commit
 * of 7 entries, against 2 pages without: WAL bytes that the checkpoints
 * then copy and sync). */
#define AUDIT_FILE "audit.db"
/* the meta key of privguide.db that records the log is in AUDIT_FILE */
#define AUDIT_META "audit_file" /* local to this layout: store_copy.c does not copy it */
#define AUDIT_INDEX_BATCH 1024
static const char AUDIT_SCHEMA[] = "CREATE TABLE IF NOT EXISTS audit.audit_log ("
                                   " seq INTEGER PRIMARY KEY,"
                                   " ts INTEGER NOT NULL,"
                                   " actor TEXT NOT NULL,"
                                   " action TEXT NOT NULL,"
                                   " subject TEXT NOT NULL,"
                                   " detail TEXT NOT NULL,"
                                   " prev_hash BLOB NOT NULL,"
                                   " hash BLOB NOT NULL);"
                                   "CREATE TABLE IF NOT EXISTS audit.audit_subject("
                                   " subject TEXT NOT NULL, seq INTEGER NOT NULL,"
                                   " PRIMARY KEY(subject, seq)) WITHOUT ROWID;"
                                   "CREATE TABLE IF NOT EXISTS audit.audit_subject_upto("
                                   " id INTEGER PRIMARY KEY CHECK (id = 1),"
                                   " seq INTEGER NOT NULL);";

static const char KS_SCHEMA[] =
    "CREATE TABLE IF NOT EXISTS ks_meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS data_keys(pseudonym BLOB PRIMARY KEY, kid BLOB NOT NULL,"
    "  wrapped BLOB NOT NULL) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS data_keys_kid ON data_keys(kid);";

static const char PRAGMAS[] = "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
                              "PRAGMA secure_delete=ON; PRAGMA temp_store=MEMORY;"
                              "PRAGMA cache_size=-65536;";

/* ---- statements, prepared once on first use ---- */

enum { DB_MAIN, DB_KS };

enum {
    Q_CHANGES_GET,
    Q_CHANGES_BUMP,
    Q_USER_GET,
    Q_USER_INSERT,
    Q_CONSENT_SET,
    Q_USERS_ALL,
    Q_USERS_ONE,
    Q_KEY_GET,
    Q_KEY_PUT,
    Q_KEY_DELETE,
    Q_KEY_OTHER_KID,
    Q_KEY_SELECT_OLD,
    Q_KEY_REWRAP,
    Q_WRAP_KID_GET,
    Q_WRAP_KID_SET,
    Q_CHUNK_INSERT,
    Q_CHUNKS_OF_USER,
    Q_CHUNKS_COUNT_USER,
    Q_CHUNKS_DELETE_USER,
    Q_CHUNKS_EXPIRED_SUM,
    Q_CHUNKS_EXPIRED_DELETE,
    Q_CHUNKS_SCAN,
    Q_QUARANTINE_INSERT,
    Q_CHUNK_DELETE_ROW,
    Q_QUARANTINE_COUNT,
    Q_USER_DELETE,
    Q_LINKED_TABLES,
    Q_ITEM_FIND,
    Q_ITEM_INSERT,
    Q_ITEM_UPDATE,
    Q_ITEM_BY_EXT,
    Q_ITEM_BY_ID,
    Q_ITEMS_ALL,
    Q_ITEM_PRICES_GET,
    Q_ITEM_PRICES_SET,
    Q_ANON_PUT,
    Q_ANON_ALL,
    Q_INGEST_RUN,
    Q_META_GET,
    Q_META_SET,
    Q_COUNT_USERS,
    Q_COUNT_ITEMS,
    Q_COUNT_EVENTS,
    Q_COUNT_ANON,
    Q_COUNT_KEYS,
    Q_CRED_INSERT,
    Q_CRED_GET,
    Q_CRED_REVOKE,
    Q_CRED_REVOKE_USER,
    Q_LEDGER_TOTAL,
    Q_LEDGER_CAPS,
    Q_LEDGER_SPENT,
    Q_LEDGER_TOTAL_SET,
    Q_LEDGER_CAP_SET,
    Q_LEDGER_CAP_CLEAR,
    Q_RELEASE_INSERT,
    Q_RELEASES,
    Q_AUDIT_HEAD,
    Q_AUDIT_INSERT,
    Q_AUDIT_FROM,
    Q_AUDIT_OF_SUBJECT,
    Q_AUDIT_UPTO,
    Q_AUDIT_INDEX,
    Q_AUDIT_UPTO_SET,
    Q_AUDIT_LOCK,
    Q_POPULAR_GET,
    Q_POPULAR_PUT,
    Q_SUPPRESS_ADD,
    Q_SUPPRESS_HAS,
    Q_SUPPRESS_ALL,
    Q_TAG_HAS,
    Q_TAG_SET_GET,
    Q_TAG_SET_PUT,
    Q_TAGS_DELETE_USER,
    Q_TAGS_EXPIRED_DELETE,
    Q_CHUNKS_STATS_USER,
    Q_RCACHE_GET,
    Q_RCACHE_PUT,
    Q_RCACHE_LATEST,
    Q_CREDS_ALL,
    Q_ITEM_INSERT_AT,
    Q_CONV_PUT,
    Q_CONV_GET,
    Q_CONVS_USER,
    Q_CONVS_EXPIRED_COUNT,
    Q_CONVS_EXPIRED_DELETE,
    Q_META_ALL,
    Q_ANON_BY_SOURCE,
    Q_INGEST_RUNS_ALL,
    Q_QUARANTINE_ALL,
    Q_QUARANTINE_PUT,
    Q_RCACHE_ALL,
    Q_CONVS_ALL,
    Q_READ_BEGIN,
    Q_READ_END,
    Q_UNIT_BEGIN,
    Q_COUNT
};

#define ITEM_COLS                                                                                  \
    "SELECT id, ext_id, title, category, price, attrs, catalog, typical_price FROM items"
#define USER_COLS                                                                                  \
    "SELECT id, pseudonym, consent_personalization, consent_analytics, created_at FROM users"

static const struct {
    int db;
    const char *sql;
} SQL[Q_COUNT] = {
    [Q_CHANGES_GET] = {DB_MAIN, "SELECT value FROM change_counter WHERE id = 1"},
    [Q_CHANGES_BUMP] = {DB_MAIN, "INSERT INTO change_counter(id, value) VALUES(1, 1)"
                                 " ON CONFLICT(id) DO UPDATE SET value = value + 1"},
    [Q_USER_GET] = {DB_MAIN, USER_COLS " WHERE pseudonym = ?1"},
    [Q_USER_INSERT] = {DB_MAIN, "INSERT INTO users(pseudonym, created_at, consent_personalization,"
                                " consent_analytics) VALUES(?1, ?2, ?3, ?4)"},
    [Q_CONSENT_SET] = {DB_MAIN,
                       "UPDATE users SET consent_personalization = ?1, consent_analytics = ?2,"
                       " consent_updated_at = ?3 WHERE id = ?4"},
    [Q_USERS_ALL] = {DB_MAIN, USER_COLS " ORDER BY id"},
    [Q_USERS_ONE] = {DB_MAIN, USER_COLS " WHERE pseudonym = ?1 ORDER BY id"},
    [Q_KEY_GET] = {DB_KS, "SELECT kid, wrapped FROM data_keys WHERE pseudonym = ?1"},
    [Q_KEY_PUT] = {DB_KS,
                   "INSERT OR REPLACE INTO data_keys(pseudonym, kid, wrapped) VALUES(?1, ?2, ?3)"},
    [Q_KEY_DELETE] = {DB_KS, "DELETE FROM data_keys WHERE pseudonym = ?1"},
    [Q_KEY_OTHER_KID] = {DB_KS, "SELECT 1 FROM data_keys WHERE kid NOT IN (?1, ?2) LIMIT 1"},
    [Q_KEY_SELECT_OLD] = {DB_KS,
                          "SELECT pseudonym, kid, wrapped FROM data_keys WHERE kid <> ?1 LIMIT ?2"},
    [Q_KEY_REWRAP] = {DB_KS, "UPDATE data_keys SET kid = ?1, wrapped = ?2 WHERE pseudonym = ?3"},
    [Q_WRAP_KID_GET] = {DB_KS, "SELECT value FROM ks_meta WHERE key = 'wrap_kid'"},
    [Q_WRAP_KID_SET] = {DB_KS, "INSERT OR REPLACE INTO ks_meta(key, value) VALUES('wrap_kid', ?1)"},
    [Q_CHUNK_INSERT] = {DB_MAIN, "INSERT INTO chunks(user_id, expires_day, n, cid, sealed)"
                                 " VALUES(?1, ?2, ?5, ?3, ?4)"},
    [Q_CHUNKS_OF_USER] = {DB_MAIN, "SELECT id, user_id, expires_day, n, cid, sealed FROM chunks"
                                   " WHERE user_id = ?1"},
    [Q_CHUNKS_COUNT_USER] = {DB_MAIN, "SELECT count(*) FROM chunks WHERE user_id = ?1"},
    [Q_CHUNKS_DELETE_USER] = {DB_MAIN, "DELETE FROM chunks WHERE user_id = ?1"},
    [Q_CHUNKS_EXPIRED_SUM] = {DB_MAIN,
                              "SELECT coalesce(sum(n), 0) FROM chunks WHERE expires_day <= ?1"},
    [Q_CHUNKS_EXPIRED_DELETE] = {DB_MAIN, "DELETE FROM chunks WHERE expires_day <= ?1"},
    [Q_CHUNKS_SCAN] = {DB_MAIN, "SELECT id, user_id, expires_day, n, cid, sealed FROM chunks"
                                " ORDER BY user_id, id"},
    [Q_QUARANTINE_INSERT] =
        {DB_MAIN, "INSERT INTO chunk_quarantine(user_id, user_pseudonym, expires_day, n,"
                  " cid, sealed, reason, quarantined_at) SELECT user_id, ?2, expires_day,"
                  " n, cid, sealed, ?3, ?4 FROM chunks WHERE id = ?1"},
    [Q_CHUNK_DELETE_ROW] = {DB_MAIN, "DELETE FROM chunks WHERE id = ?1"},
    [Q_QUARANTINE_COUNT] = {DB_MAIN, "SELECT count(*) FROM chunk_quarantine"},
    [Q_USER_DELETE] = {DB_MAIN, "DELETE FROM users WHERE id = ?1"},
    [Q_LINKED_TABLES] = {DB_MAIN, "SELECT m.name FROM sqlite_master m, pragma_table_info(m.name) c"
                                  " WHERE m.type = 'table' AND c.name = 'user_pseudonym'"},
    [Q_ITEM_FIND] = {DB_MAIN, "SELECT id FROM items WHERE ext_id = ?1"},
    [Q_ITEM_INSERT] =
        {DB_MAIN, "INSERT INTO items(ext_id, title, category, price, attrs, updated_at, catalog)"
                  " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)"},
    [Q_ITEM_UPDATE] =
        {DB_MAIN, "UPDATE items SET title = coalesce(?2, title), category = coalesce(?3, category),"
                  " price = coalesce(?4, price), attrs = coalesce(?5, attrs), updated_at = ?6,"
                  " catalog = max(catalog, ?7) WHERE id = ?1"},
    [Q_ITEM_BY_EXT] = {DB_MAIN, ITEM_COLS " WHERE ext_id = ?1"},
    [Q_ITEM_BY_ID] = {DB_MAIN, ITEM_COLS " WHERE id = ?1"},
    [Q_ITEMS_ALL] = {DB_MAIN, ITEM_COLS " ORDER BY id"},
    [Q_ITEM_PRICES_GET] = {DB_MAIN, "SELECT recent_prices FROM items WHERE id = ?1"},
    [Q_ITEM_PRICES_SET] = {DB_MAIN, "UPDATE items SET recent_prices = ?2, typical_price = ?3"
                                    " WHERE id = ?1"},
    [Q_ANON_PUT] = {DB_MAIN,
                    "INSERT OR REPLACE INTO anon_counts(source, item_id, type, count, quantity)"
                    " VALUES(?1, ?2, ?3, ?4, ?5)"},
    [Q_ANON_ALL] = {DB_MAIN, "SELECT item_id, type, sum(count), sum(quantity) FROM anon_counts"
                             " GROUP BY item_id, type ORDER BY item_id, type"},
    [Q_INGEST_RUN] = {DB_MAIN,
                      "INSERT INTO ingest_runs(started_at, finished_at, format, source, read,"
                      " accepted, rejected, stored, duplicates, anonymous)"
                      " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"},
    [Q_META_GET] = {DB_MAIN, "SELECT value FROM meta WHERE key = ?1"},
    [Q_META_SET] = {DB_MAIN, "INSERT OR REPLACE INTO meta(key, value) VALUES(?1, ?2)"},
    [Q_COUNT_USERS] = {DB_MAIN, "SELECT count(*) FROM users"},
    [Q_COUNT_ITEMS] = {DB_MAIN, "SELECT count(*) FROM items"},
    [Q_COUNT_EVENTS] = {DB_MAIN, "SELECT coalesce(sum(n), 0) FROM chunks"},
    [Q_COUNT_ANON] = {DB_MAIN, "SELECT coalesce(sum(count), 0) FROM anon_counts"},
    [Q_COUNT_KEYS] = {DB_KS, "SELECT count(*) FROM data_keys"},
    [Q_CRED_INSERT] = {DB_MAIN,
                       "INSERT INTO auth_keys(key_id,kind,role,label,user_pseudonym,secret_hash,"
                       "rate_per_s,created_at,expires_at) VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9)"},
    [Q_CRED_GET] = {DB_MAIN,
                    "SELECT kind,role,user_pseudonym,secret_hash,rate_per_s,expires_at,revoked,"
                    "created_at FROM auth_keys WHERE key_id=?1"},
    [Q_CRED_REVOKE] = {DB_MAIN, "UPDATE auth_keys SET revoked=1 WHERE key_id=?1"},
    [Q_CRED_REVOKE_USER] = {DB_MAIN,
                            "UPDATE auth_keys SET revoked=1 WHERE user_pseudonym=?1 AND revoked=0"},
    [Q_LEDGER_TOTAL] = {DB_MAIN,
                        "SELECT total_epsilon, total_delta, 0 FROM dp_store_budget WHERE id = 1"
                        " UNION ALL SELECT MAX(total_epsilon), MAX(total_delta), 1 FROM dp_budget"
                        " WHERE NOT EXISTS (SELECT 1 FROM dp_store_budget) HAVING COUNT(*) > 0"},
    [Q_LEDGER_CAPS] = {DB_MAIN, "SELECT purpose, cap_epsilon, cap_delta FROM dp_purpose_cap"
                                " ORDER BY purpose"},
    [Q_LEDGER_SPENT] = {DB_MAIN, "SELECT dataset, COUNT(*), TOTAL(epsilon), TOTAL(delta)"
                                 " FROM dp_release GROUP BY dataset ORDER BY dataset"},
    [Q_LEDGER_TOTAL_SET] =
        {DB_MAIN, "INSERT INTO dp_store_budget(id, total_epsilon, total_delta, updated_at)"
                  " VALUES(1, ?1, ?2, ?3) ON CONFLICT(id) DO UPDATE"
                  " SET total_epsilon = ?1, total_delta = ?2, updated_at = ?3"},
    [Q_LEDGER_CAP_SET] = {DB_MAIN,
                          "INSERT INTO dp_purpose_cap(purpose, cap_epsilon, cap_delta, updated_at)"
                          " VALUES(?1, ?2, ?3, ?4) ON CONFLICT(purpose) DO UPDATE"
                          " SET cap_epsilon = ?2, cap_delta = ?3, updated_at = ?4"},
    [Q_LEDGER_CAP_CLEAR] = {DB_MAIN, "DELETE FROM dp_purpose_cap WHERE purpose = ?1"},
    [Q_RELEASE_INSERT] = {DB_MAIN,
                          "INSERT INTO dp_release(dataset, what, mechanism, epsilon, delta,"
                          " created_at) VALUES(?1, ?2, ?3, ?4, ?5, ?6)"},
    [Q_RELEASES] = {DB_MAIN, "SELECT id, dataset, what, mechanism, epsilon, delta, created_at"
                             " FROM dp_release WHERE ?1 IS NULL OR dataset = ?1 ORDER BY id"},
    [Q_AUDIT_HEAD] = {DB_MAIN, "SELECT seq, hash FROM audit.audit_log ORDER BY seq DESC LIMIT 1"},
    [Q_AUDIT_INSERT] = {DB_MAIN,
                        "INSERT INTO audit.audit_log(ts,actor,action,subject,detail,prev_hash,hash)"
                        " VALUES(?1,?2,?3,?4,?5,?6,?7)"},
    [Q_AUDIT_FROM] = {DB_MAIN, "SELECT seq,ts,actor,action,subject,detail,prev_hash,hash"
                               " FROM audit.audit_log WHERE seq >= ?1 ORDER BY seq LIMIT ?2"},
    /* the indexed entries by seq, then the tail (AUDIT_SCHEMA) */
    [Q_AUDIT_OF_SUBJECT] = {DB_MAIN,
                            "SELECT seq,ts,actor,action,subject,detail,prev_hash,hash"
                            " FROM audit.audit_log WHERE subject = ?1 AND seq IN (SELECT seq FROM"
                            " audit.audit_subject WHERE subject = ?1 AND seq <= (SELECT"
                            " coalesce(max(seq), 0) FROM audit.audit_subject_upto))"
                            " UNION ALL SELECT seq,ts,actor,action,subject,detail,prev_hash,hash"
                            " FROM audit.audit_log WHERE seq > (SELECT coalesce(max(seq), 0)"
                            " FROM audit.audit_subject_upto) AND subject = ?1 ORDER BY seq"},
    [Q_AUDIT_UPTO] = {DB_MAIN, "SELECT coalesce(max(seq), 0) FROM audit.audit_subject_upto"},
    [Q_AUDIT_INDEX] = {DB_MAIN, "INSERT OR IGNORE INTO audit.audit_subject(subject, seq)"
                                " SELECT subject, seq FROM audit.audit_log WHERE seq > ?1"
                                " ORDER BY subject, seq"},
    /* takes audit.db's write lock (and not privguide.db's): a deferred
     * transaction's first statement, a write that changes nothing */
    [Q_AUDIT_LOCK] = {DB_MAIN, "DELETE FROM audit.audit_subject_upto WHERE 0"},
    [Q_AUDIT_UPTO_SET] = {DB_MAIN, "INSERT INTO audit.audit_subject_upto(id, seq) VALUES(1, ?1)"
                                   " ON CONFLICT(id) DO UPDATE SET seq = ?1"},
    [Q_POPULAR_GET] = {DB_MAIN, "SELECT items, release_id FROM server_popular_release WHERE"
                                " fingerprint=?1 AND dataset=?2 AND k=?3 AND epsilon=?4"},
    [Q_POPULAR_PUT] =
        {DB_MAIN,
         "INSERT OR REPLACE INTO server_popular_release(fingerprint,dataset,"
         "k,epsilon,mechanism,release_id,items,created_at) VALUES(?1,?2,?3,?4,?5,?6,?7,?8)"},
    [Q_SUPPRESS_ADD] = {DB_MAIN, "INSERT OR IGNORE INTO suppressed(pseudonym) VALUES(?1)"},
    [Q_SUPPRESS_HAS] = {DB_MAIN, "SELECT 1 FROM suppressed WHERE pseudonym = ?1"},
    [Q_SUPPRESS_ALL] = {DB_MAIN, "SELECT pseudonym FROM suppressed"},
    [Q_TAG_HAS] = {DB_MAIN, "SELECT keys FROM event_tag_sets WHERE user_id = ?1"},
    [Q_TAG_SET_GET] = {DB_MAIN, "SELECT part, keys FROM event_tag_sets WHERE user_id = ?1 AND"
                                " expires_day = ?2 ORDER BY part DESC LIMIT 1"},
    [Q_TAG_SET_PUT] = {DB_MAIN, "INSERT OR REPLACE INTO event_tag_sets(user_id, expires_day, part,"
                                " keys) VALUES(?1, ?2, ?3, ?4)"},
    [Q_TAGS_DELETE_USER] = {DB_MAIN, "DELETE FROM event_tag_sets WHERE user_id = ?1"},
    [Q_TAGS_EXPIRED_DELETE] = {DB_MAIN, "DELETE FROM event_tag_sets WHERE expires_day <= ?1"},
    [Q_CHUNKS_STATS_USER] = {DB_MAIN, "SELECT count(*), count(DISTINCT expires_day) FROM chunks"
                                      " WHERE user_id = ?1 AND n < ?2"},
    [Q_RCACHE_GET] = {DB_MAIN, "SELECT body, release_id, created_at FROM dp_release_cache WHERE"
                               " kind=?1 AND fingerprint=?2 AND dataset=?3 AND params=?4"},
    [Q_RCACHE_PUT] = {DB_MAIN, "INSERT OR REPLACE INTO dp_release_cache(kind,fingerprint,dataset,"
                               "params,mechanism,release_id,body,created_at)"
                               " VALUES(?1,?2,?3,?4,?5,?6,?7,?8)"},
    [Q_RCACHE_LATEST] = {DB_MAIN, "SELECT body, release_id, created_at FROM dp_release_cache"
                                  " WHERE kind=?1 AND dataset=?2"
                                  " ORDER BY created_at DESC, release_id DESC LIMIT 1"},
    [Q_CREDS_ALL] = {DB_MAIN,
                     "SELECT key_id,kind,role,label,user_pseudonym,secret_hash,rate_per_s,"
                     "created_at,expires_at,revoked FROM auth_keys ORDER BY created_at, rowid"},
    [Q_ITEM_INSERT_AT] = {DB_MAIN,
                          "INSERT INTO items(ext_id, title, category, price, attrs, updated_at,"
                          " catalog, id) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"},
    [Q_CONV_PUT] = {DB_MAIN, "INSERT OR REPLACE INTO conversations(user_pseudonym, cid, created_at,"
                             " updated_at, expires_day, sealed) VALUES(?1, ?2, ?3, ?4, ?5, ?6)"},
    [Q_CONV_GET] = {DB_MAIN, "SELECT cid, created_at, updated_at, expires_day, sealed"
                             " FROM conversations WHERE user_pseudonym = ?1 AND cid = ?2"},
    [Q_CONVS_USER] = {DB_MAIN, "SELECT cid, created_at, updated_at, expires_day, sealed"
                               " FROM conversations WHERE user_pseudonym = ?1"
                               " ORDER BY updated_at DESC, cid"},
    [Q_CONVS_EXPIRED_COUNT] = {DB_MAIN,
                               "SELECT count(*) FROM conversations WHERE expires_day <= ?1"},
    [Q_CONVS_EXPIRED_DELETE] = {DB_MAIN, "DELETE FROM conversations WHERE expires_day <= ?1"},
    /* store copy: every table read back whole */
    [Q_META_ALL] = {DB_MAIN, "SELECT key, value FROM meta ORDER BY key"},
    [Q_ANON_BY_SOURCE] = {DB_MAIN, "SELECT source, item_id, type, count, quantity FROM anon_counts"
                                   " ORDER BY source, item_id, type"},
    [Q_INGEST_RUNS_ALL] = {DB_MAIN, "SELECT started_at, finished_at, format, source, read,"
                                    " accepted, rejected, stored, duplicates, anonymous"
                                    " FROM ingest_runs ORDER BY id"},
    [Q_QUARANTINE_ALL] = {DB_MAIN, "SELECT id, user_id, user_pseudonym, expires_day, n, cid,"
                                   " sealed, reason, quarantined_at FROM chunk_quarantine"
                                   " ORDER BY id"},
    [Q_QUARANTINE_PUT] = {DB_MAIN,
                          "INSERT INTO chunk_quarantine(user_id, user_pseudonym, expires_day, n,"
                          " cid, sealed, reason, quarantined_at)"
                          " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"},
    [Q_RCACHE_ALL] = {DB_MAIN, "SELECT kind, fingerprint, dataset, params, mechanism, release_id,"
                               " body, created_at FROM dp_release_cache"
                               " ORDER BY kind, fingerprint, dataset, params"},
    [Q_CONVS_ALL] = {DB_MAIN, "SELECT cid, created_at, updated_at, expires_day, sealed,"
                              " user_pseudonym FROM conversations ORDER BY user_pseudonym, cid"},
    /* a read snapshot (read_begin): deferred, so it takes no write lock */
    [Q_READ_BEGIN] = {DB_MAIN, "BEGIN"},
    [Q_READ_END] = {DB_MAIN, "COMMIT"}, /* also a unit's commit */
    /* a unit of its own (unit_begin): prepared once, as the audit writer
     * begins one per group commit */
    [Q_UNIT_BEGIN] = {DB_MAIN, "BEGIN IMMEDIATE"},
};

/* ---- the read memo: answers of user_get, cred_get and meta_get kept
 * between read snapshots (read_begin .. read_end) of one handle, each with
 * the change counter it was read under. Every write to users, credentials
 * and meta bumps the counter (in its transaction, or right after it), and a
 * snapshot reads the counter from the same committed state as its rows, so
 * an answer is reused only while the rows it came from are unchanged,
 * whichever handle or process wrote. Set-associative tables of MEMO_WAYS
 * slots per key; not found is remembered too. ---- */

#define MEMO_USERS 4096 /* slots, powers of two */
#define MEMO_CREDS 4096
#define MEMO_METAS 1024
#define MEMO_WAYS 4
#define MEMO_META_KEY 64    /* longer keys are not remembered */
#define MEMO_META_VALUE 256 /* nor longer values */

enum { MEMO_EMPTY, MEMO_ROW, MEMO_NONE };

typedef struct memo_user {
    int state;
    int64_t at; /* the change counter it was read under */
    unsigned char p[16];
    pvg_backend_user u;
} memo_user;

typedef struct memo_cred {
    int state;
    int64_t at;
    pvg_backend_cred c; /* c.key_id is the key */
} memo_cred;

typedef struct memo_meta {
    int state;
    int64_t at;
    char key[MEMO_META_KEY];
    char value[MEMO_META_VALUE];
} memo_meta;

typedef struct sq_memo {
    memo_user users[MEMO_USERS];
    memo_cred creds[MEMO_CREDS];
    memo_meta metas[MEMO_METAS];
    unsigned victim; /* round robin over a full set */
} sq_memo;

typedef struct sq_backend {
    pvg_backend base;
    sqlite3 *db; /* privguide.db */
    sqlite3 *ks; /* keystore.db */
    int in_txn;
    int snap;        /* read_begin depth */
    int snap_memo;   /* the outermost read_begin opened the snapshot: memo usable */
    int64_t snap_at; /* the change counter in the snapshot */
    sq_memo *memo;   /* allocated at the first snapshot */
    /* A snapshot kept without a transaction (read_begin): privguide.db's
     * WAL-index header is the one seen just before the last opened
     * snapshot, so no transaction committed since and that snapshot's
     * state (and change counter) is still the newest. The first statement
     * inside it opens the transaction after all (snap_materialize). */
    int snap_virtual;
    int snap_served;            /* answers the memo gave in this snapshot */
    int wal_known;              /* 1: privguide.db is in WAL mode, 2: it is not */
    unsigned char snap_hdr[48]; /* the WAL-index header before the last opened snapshot */
    int snap_hdr_ok;            /* snap_hdr holds one */
    sqlite3_stmt *st[Q_COUNT];
    sqlite3 *side;        /* wal_defer: the connection for side checkpoints */
    long long wal_frames; /* wal_defer: the audit WAL's frames after the last commit (atomic) */
    int audit_auto;       /* wal_autocheckpoint: the audit WAL's threshold (atomic) */
} sq_backend;

#define SQ(b) ((sq_backend *)(b))

static sqlite3 *db_of(sq_backend *q, int which)
{
    return which == DB_KS ? q->ks : q->db;
}

/* Maps a SQLite result code to a pvg_status and fills err with "what: msg". */
static pvg_status fail(sqlite3 *db, int rc, const char *what, pvg_error *err)
{
    pvg_status st = PVG_ERR_IO;
    int prim = rc & 0xff;
    if (prim == SQLITE_BUSY || prim == SQLITE_LOCKED) st = PVG_ERR_BUSY;
    if (prim == SQLITE_NOMEM) st = PVG_ERR_NOMEM;
    if (prim == SQLITE_CORRUPT || prim == SQLITE_NOTADB) st = PVG_ERR_CORRUPT;
    return pvg_error_set(err, st, "%s: %s", what, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
}

/* A statement for query id: the cached one, or (when the cached one is in
 * the middle of an iteration that called us back) a fresh one that *own
 * says to finalize. */
static pvg_status snap_materialize(sq_backend *q, pvg_error *err);

static pvg_status take(sq_backend *q, int id, sqlite3_stmt **out, int *own, pvg_error *err)
{
    sqlite3 *db = db_of(q, SQL[id].db);
    *own = 0;
    if (q->snap_virtual && SQL[id].db == DB_MAIN) { /* a read the memo cannot answer */
        pvg_status st = snap_materialize(q, err);
        if (st != PVG_OK) return st;
    }
    if (q->st[id] && !sqlite3_stmt_busy(q->st[id])) {
        *out = q->st[id];
        return PVG_OK;
    }
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v3(db, SQL[id].sql, -1, q->st[id] ? 0 : SQLITE_PREPARE_PERSISTENT, &s,
                                NULL);
    if (rc != SQLITE_OK)
        return pvg_error_set(err, PVG_ERR_CORRUPT, "database schema: %s", sqlite3_errmsg(db));
    if (q->st[id])
        *own = 1;
    else
        q->st[id] = s;
    *out = s;
    return PVG_OK;
}

static void give(sqlite3_stmt *s, int own)
{
    if (own)
        sqlite3_finalize(s);
    else if (s) {
        sqlite3_reset(s);
        sqlite3_clear_bindings(s);
    }
}

static int exec(sqlite3 *db, const char *sql)
{
    return sqlite3_exec(db, sql, NULL, NULL, NULL);
}

/* A value to bind to a statement's parameter (in order, from ?1). */
typedef struct bindv {
    char t; /* 'i' int64, 'd' double, 't' text, 'b' blob, 'n' null */
    int64_t i;
    double d;
    const void *p;
    size_t n;
} bindv;

#define BI(v) ((bindv){'i', (int64_t)(v), 0, NULL, 0})
#define BD(v) ((bindv){'d', 0, (double)(v), NULL, 0})
#define BT(v) ((bindv){'t', 0, 0, (v), 0})          /* NULL binds NULL */
#define BB(v, len) ((bindv){'b', 0, 0, (v), (len)}) /* NULL binds NULL */
#define BN ((bindv){'n', 0, 0, NULL, 0})

static void bind_all(sqlite3_stmt *s, const bindv *v, int n)
{
    for (int i = 0; i < n; i++) {
        switch (v[i].t) {
        case 'i':
            sqlite3_bind_int64(s, i + 1, v[i].i);
            break;
        case 'd':
            sqlite3_bind_double(s, i + 1, v[i].d);
            break;
        case 't':
            if (v[i].p)
                sqlite3_bind_text(s, i + 1, v[i].p, -1, SQLITE_STATIC);
            else
                sqlite3_bind_null(s, i + 1);
            break;
        case 'b':
            if (v[i].p)
                sqlite3_bind_blob(s, i + 1, v[i].p, (int)v[i].n, SQLITE_STATIC);
            else
                sqlite3_bind_null(s, i + 1);
            break;
        default:
            sqlite3_bind_null(s, i + 1);
            break;
        }
    }
}

/* Runs a statement expected to yield no row; *changes when non-NULL. */
static pvg_status run(sq_backend *q, int id, const bindv *v, int n, long long *changes,
                      const char *what, pvg_error *err)
{
    sqlite3_stmt *s;
    int own;
    pvg_status st = take(q, id, &s, &own, err);
    if (st != PVG_OK) return st;
    bind_all(s, v, n);
    int rc = sqlite3_step(s);
    sqlite3 *db = db_of(q, SQL[id].db);
    if (rc == SQLITE_ROW) rc = SQLITE_DONE;
    if (rc != SQLITE_DONE) st = fail(db, rc, what, err);
    if (st == PVG_OK && changes) *changes = sqlite3_changes(db);
    give(s, own);
    return st;
}

/* Steps a one-row query: *row = 1 and the statement left on the row (the
 * caller reads columns, then give()s), or *row = 0 (statement released). */
static pvg_status one(sq_backend *q, int id, const bindv *v, int n, sqlite3_stmt **out, int *own,
                      int *row, const char *what, pvg_error *err)
{
    pvg_status st = take(q, id, out, own, err);
    if (st != PVG_OK) return st;
    bind_all(*out, v, n);
    int rc = sqlite3_step(*out);
    *row = rc == SQLITE_ROW;
    if (rc == SQLITE_ROW) return PVG_OK;
    if (rc != SQLITE_DONE) st = fail(db_of(q, SQL[id].db), rc, what, err);
    give(*out, *own);
    *out = NULL;
    return st;
}

static void copy_blob(sqlite3_stmt *s, int col, unsigned char *dst, size_t cap, size_t *len)
{
    size_t n = (size_t)sqlite3_column_bytes(s, col);
    const void *p = sqlite3_column_blob(s, col);
    if (len) *len = n;
    memset(dst, 0, cap);
    if (p) memcpy(dst, p, n < cap ? n : cap);
}

/* ---- change counter ---- */

static pvg_status changes_get(pvg_backend *b, int64_t *out, pvg_error *err)
{
    sqlite3_stmt *s;
    int own, row;
    *out = 0;
    pvg_status st = one(SQ(b), Q_CHANGES_GET, NULL, 0, &s, &own, &row, "change counter", err);
    if (st != PVG_OK || !row) return st;
    *out = sqlite3_column_int64(s, 0);
    give(s, own);
    return PVG_OK;
}

static pvg_status bump(sq_backend *q, pvg_error *err)
{
    return run(q, Q_CHANGES_BUMP, NULL, 0, NULL, "change counter", err);
}

/* After an autocommitted change: bump in its own statement (after the
 * change is visible, so a reader never caches new data under an old
 * count... only old data under a new one, which is merely a wasted miss). */
static pvg_status bump_if_autocommit(sq_backend *q, pvg_error *err)
{
    return q->in_txn ? PVG_OK : bump(q, err);
}

/* ---- atomic units: own transaction, or a savepoint inside the open one ---- */

static pvg_status unit_begin(sq_backend *q, sqlite3 *db, const char *what, pvg_error *err)
{
    if (q->snap_memo)
        return pvg_error_set(err, PVG_ERR_STATE, "%s: a read snapshot is open (no writes in it)",
                             what);
    if (!q->in_txn && db == q->db) return run(q, Q_UNIT_BEGIN, NULL, 0, NULL, what, err);
    int rc = exec(db, q->in_txn ? "SAVEPOINT pvg_unit" : "BEGIN IMMEDIATE");
    if (rc != SQLITE_OK) return fail(db, rc, what, err);
    return PVG_OK;
}

static pvg_status unit_end(sq_backend *q, sqlite3 *db, pvg_status st, const char *what,
                           pvg_error *err)
{
    if (q->in_txn) {
        if (st != PVG_OK) exec(db, "ROLLBACK TO pvg_unit");
        exec(db, "RELEASE pvg_unit");
        return st;
    }
    if (st != PVG_OK) {
        exec(db, "ROLLBACK");
        return st;
    }
    if (db == q->db) {
        st = run(q, Q_READ_END, NULL, 0, NULL, what, err);
        if (st != PVG_OK || sqlite3_get_autocommit(db) == 0) exec(db, "ROLLBACK");
        return st;
    }
    int rc = exec(db, "COMMIT");
    if (rc != SQLITE_OK) {
        st = fail(db, rc, what, err);
        exec(db, "ROLLBACK");
    }
    return st;
}

/* A write the read memo depends on (users, credentials, meta) with its
 * bump in the same atomic unit: inside an open transaction the commit
 * bumps; outside one, the statement and the bump commit together, so no
 * failure can leave the change in place and the counter where it was. */
static pvg_status run_bumped(sq_backend *q, int id, const bindv *v, int n, long long *changes,
                             const char *what, pvg_error *err)
{
    if (q->in_txn) return run(q, id, v, n, changes, what, err);
    pvg_status st = unit_begin(q, q->db, what, err);
    if (st != PVG_OK) return st;
    st = run(q, id, v, n, changes, what, err);
    if (st == PVG_OK) st = bump(q, err);
    return unit_end(q, q->db, st, what, err);
}

/* ---- read snapshots and the read memo ---- */

static size_t memo_hash(const void *p, size_t n)
{
    const unsigned char *c = p;
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ c[i]) * 1099511628211ull;
    return (size_t)(h ^ (h >> 29));
}

/* 1 when answers may come from and go to the memo: inside a snapshot this
 * handle opened (never inside a write transaction). */
static int memo_on(const sq_backend *q)
{
    return q->snap_memo && !q->in_txn && q->memo;
}

/* The slot of a set for a new answer: a free or outdated one, else the
 * next in turn. */
#define MEMO_PICK(q, set, out)                                                                     \
    do {                                                                                           \
        (out) = NULL;                                                                              \
        for (int w_ = 0; w_ < MEMO_WAYS && !(out); w_++)                                           \
            if ((set)[w_].state == MEMO_EMPTY || (set)[w_].at != (q)->snap_at) (out) = &(set)[w_]; \
        if (!(out)) (out) = &(set)[(q)->memo->victim++ % MEMO_WAYS];                               \
    } while (0)

static memo_user *memo_user_slot(sq_backend *q, const unsigned char p[16], int for_fill)
{
    memo_user *set =
        &q->memo->users[memo_hash(p, 16) & (MEMO_USERS - 1) & ~(size_t)(MEMO_WAYS - 1)];
    for (int w = 0; w < MEMO_WAYS; w++)
        if (set[w].state != MEMO_EMPTY && memcmp(set[w].p, p, 16) == 0) return &set[w];
    if (!for_fill) return NULL;
    memo_user *e;
    MEMO_PICK(q, set, e);
    return e;
}

static memo_cred *memo_cred_slot(sq_backend *q, const char *key_id, size_t len, int for_fill)
{
    memo_cred *set =
        &q->memo->creds[memo_hash(key_id, len) & (MEMO_CREDS - 1) & ~(size_t)(MEMO_WAYS - 1)];
    for (int w = 0; w < MEMO_WAYS; w++)
        if (set[w].state != MEMO_EMPTY && strcmp(set[w].c.key_id, key_id) == 0) return &set[w];
    if (!for_fill) return NULL;
    memo_cred *e;
    MEMO_PICK(q, set, e);
    return e;
}

static memo_meta *memo_meta_slot(sq_backend *q, const char *key, size_t len, int for_fill)
{
    memo_meta *set =
        &q->memo->metas[memo_hash(key, len) & (MEMO_METAS - 1) & ~(size_t)(MEMO_WAYS - 1)];
    for (int w = 0; w < MEMO_WAYS; w++)
        if (set[w].state != MEMO_EMPTY && strcmp(set[w].key, key) == 0) return &set[w];
    if (!for_fill) return NULL;
    memo_meta *e;
    MEMO_PICK(q, set, e);
    return e;
}

static void memo_free(sq_backend *q)
{
    if (!q->memo) return;
    sodium_memzero(q->memo, sizeof *q->memo); /* credential hashes among them */
    free(q->memo);
    q->memo = NULL;
}

/* privguide.db's WAL-index header (48 bytes) into out, as SQLite's own
 * readers take it without a lock: copy 0, a barrier, copy 1 (a writer
 * stores them in the other order), both the same and initialised; 0 when
 * it cannot be had that way (not in WAL mode, no shared memory mapped yet,
 * a writer in the middle of updating it). The layout is SQLite's file
 * format (walformat.html, "the WAL-index header"): any commit changes it
 * (iChange, mxFrame, the salts after a restart, the checksum). */
static int wal_header(sq_backend *q, unsigned char out[48])
{
    if (q->wal_known != 1) return 0;
    sqlite3_file *f = NULL;
    if (sqlite3_file_control(q->db, "main", SQLITE_FCNTL_FILE_POINTER, &f) != SQLITE_OK || !f ||
        !f->pMethods || f->pMethods->iVersion < 2 || !f->pMethods->xShmMap)
        return 0;
    void volatile *m = NULL;
    if (f->pMethods->xShmMap(f, 0, 32768, 0, &m) != SQLITE_OK || !m) return 0;
    const volatile unsigned char *h = m;
    unsigned char h2[48];
    for (int i = 0; i < 48; i++)
        out[i] = h[i];
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    for (int i = 0; i < 48; i++)
        h2[i] = h[48 + i];
    return memcmp(out, h2, 48) == 0 && out[12] /* isInit */;
}

/* Opens the snapshot's transaction: the header first (any commit after it
 * changes it), then BEGIN and the change counter. */
static pvg_status snap_txn(sq_backend *q, pvg_error *err)
{
    unsigned char h[48];
    int hok = wal_header(q, h);
    pvg_status st = run(q, Q_READ_BEGIN, NULL, 0, NULL, "read snapshot", err);
    int64_t at = 0;
    if (st == PVG_OK) st = changes_get(&q->base, &at, err);
    if (st != PVG_OK) {
        if (sqlite3_get_autocommit(q->db) == 0) exec(q->db, "ROLLBACK");
        q->snap_hdr_ok = 0;
        return st;
    }
    if (!q->wal_known) { /* once: only a WAL database has the header */
        sqlite3_stmt *s = NULL;
        q->wal_known = 2;
        if (sqlite3_prepare_v2(q->db, "PRAGMA main.journal_mode", -1, &s, NULL) == SQLITE_OK &&
            sqlite3_step(s) == SQLITE_ROW) {
            const char *m = (const char *)sqlite3_column_text(s, 0);
            if (m && strcmp(m, "wal") == 0) q->wal_known = 1;
        }
        sqlite3_finalize(s);
    }
    /* the snapshot's state is the header's or a newer one: kept only when
     * the counter was read under that header (no commit in between would
     * leave the header as it was) */
    q->snap_hdr_ok = hok;
    if (hok) memcpy(q->snap_hdr, h, sizeof h);
    q->snap_at = at;
    return PVG_OK;
}

/* Inside a snapshot kept without a transaction: opens it for a read the
 * memo cannot answer. Should a commit that changed the counter have come
 * in between while the memo already answered in this snapshot, those
 * answers and the next reads would come from two states: PVG_ERR_BUSY
 * (the snapshot is then the new state; the caller reads again). */
static pvg_status snap_materialize(sq_backend *q, pvg_error *err)
{
    q->snap_virtual = 0;
    int64_t was = q->snap_at;
    pvg_status st = snap_txn(q, err);
    if (st != PVG_OK) {
        q->snap_memo = 0; /* no transaction: read_end has nothing to end */
        return st;
    }
    if (q->snap_at != was && q->snap_served > 0)
        return pvg_error_set(err, PVG_ERR_BUSY,
                             "read snapshot: the store changed between two reads of it; read "
                             "again");
    return PVG_OK;
}

/* Opens a read snapshot (nested calls only count): BEGIN, then the change
 * counter, which starts the read transaction, so the counter and every
 * row read until read_end come from one committed state. When the
 * WAL-index header is the one seen before the last snapshot was opened,
 * nothing committed since: the snapshot is that state again and no
 * transaction is opened until a read needs the database (memo answers
 * cost no lock). Inside a write transaction (or a transaction someone
 * else opened) nothing is opened and the memo stays off. */
static pvg_status sq_read_begin(pvg_backend *b, pvg_error *err)
{
    sq_backend *q = SQ(b);
    if (q->snap++ > 0 || q->in_txn || sqlite3_get_autocommit(q->db) == 0) return PVG_OK;
    if (!q->memo) q->memo = calloc(1, sizeof *q->memo); /* none: reads go to the database */
    q->snap_served = 0;
    unsigned char h[48];
    if (q->memo && q->snap_hdr_ok && wal_header(q, h) && memcmp(h, q->snap_hdr, sizeof h) == 0) {
        q->snap_virtual = 1;
        q->snap_memo = 1;
        return PVG_OK;
    }
    pvg_status st = snap_txn(q, err);
    if (st != PVG_OK) {
        q->snap--;
        return st;
    }
    q->snap_memo = 1;
    return PVG_OK;
}

static void sq_read_end(pvg_backend *b)
{
    sq_backend *q = SQ(b);
    if (q->snap == 0 || --q->snap > 0) return;
    if (!q->snap_memo) return;
    q->snap_memo = 0;
    if (q->snap_virtual) { /* no transaction was opened */
        q->snap_virtual = 0;
        return;
    }
    /* a read transaction: COMMIT only lets the snapshot go; should it fail,
     * ROLLBACK, so that no later read sees this old state */
    if (run(q, Q_READ_END, NULL, 0, NULL, "read snapshot", NULL) != PVG_OK ||
        sqlite3_get_autocommit(q->db) == 0)
        exec(q->db, "ROLLBACK");
}

/* ---- lifecycle ---- */

static void sq_close(pvg_backend *b)
{
    sq_backend *q = SQ(b);
    if (!q) return;
    for (int i = 0; i < Q_COUNT; i++)
        sqlite3_finalize(q->st[i]);
    memo_free(q);
    if (q->ks && sqlite3_get_autocommit(q->ks) == 0) exec(q->ks, "ROLLBACK");
    if (q->db && sqlite3_get_autocommit(q->db) == 0) exec(q->db, "ROLLBACK");
    sqlite3_close(q->db);
    sqlite3_close(q->ks);
    sqlite3_close(q->side);
    free(q);
}

static pvg_status sq_relaxed(pvg_backend *b, pvg_error *err)
{
    int rc = exec(SQ(b)->db, "PRAGMA main.synchronous=NORMAL; PRAGMA audit.synchronous=NORMAL");
    return rc == SQLITE_OK ? PVG_OK : fail(SQ(b)->db, rc, "database", err);
}

static pvg_status sq_checkpoint(pvg_backend *b, pvg_error *err)
{
    sq_backend *q = SQ(b);
    int rc1 = sqlite3_wal_checkpoint_v2(q->ks, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
    int rc2 = sqlite3_wal_checkpoint_v2(q->db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
    if (rc1 != SQLITE_OK || rc2 != SQLITE_OK)
        return pvg_error_set(
            err, PVG_ERR_BUSY,
            "could not checkpoint the write-ahead logs (another process is reading?): %s",
            rc1 != SQLITE_OK ? sqlite3_errmsg(q->ks) : sqlite3_errmsg(q->db));
    return PVG_OK;
}

/* ---- deferred WAL checkpoints (the server's audit writer) ---- */

/* The WAL hook of a deferred handle: in place of SQLite's automatic
 * checkpoint (sqlite3_wal_hook replaces it, for every database of the
 * connection), the audit WAL's size is noted. Its commits write only the
 * audit log; a commit to privguide.db through it (none under the server)
 * checkpoints as SQLite's default would. */
static int wal_note(void *ctx, sqlite3 *db, const char *name, int frames)
{
    if (strcmp(name, "audit") != 0) {
        if (frames >= 1000)
            (void)sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
        return SQLITE_OK;
    }
    __atomic_store_n(&((sq_backend *)ctx)->wal_frames, (long long)frames, __ATOMIC_RELAXED);
    return SQLITE_OK;
}

/* The size (bytes) a WAL file is cut back to when it restarts, on the
 * connections that let it grow past SQLite's 1000-frame default (the audit
 * writer's and the server's, docs/api.md): about 8,000 frames of 4 KiB. */
#define WAL_SIZE_LIMIT "33554432"

static pvg_status sq_wal_defer(pvg_backend *b, pvg_error *err)
{
    sq_backend *q = SQ(b);
    if (!q->side) {
        /* a bare connection to the audit file: checkpoints need no keys, and
         * at its default synchronous=FULL each one syncs the WAL before it
         * copies and the database after */
        const char *path = sqlite3_db_filename(q->db, "audit");
        int rc = sqlite3_open_v2(path ? path : "", &q->side,
                                 SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
        if (rc != SQLITE_OK) {
            pvg_status st = fail(q->side, rc, "wal checkpoint connection", err);
            sqlite3_close(q->side);
            q->side = NULL;
            return st;
        }
        sqlite3_wal_autocheckpoint(q->side, 0); /* it never commits; to be plain */
        /* a first read opens the WAL (else a checkpoint has nothing to do) */
        rc = exec(q->side, "PRAGMA schema_version");
        if (rc != SQLITE_OK) {
            pvg_status st = fail(q->side, rc, "wal checkpoint connection", err);
            sqlite3_close(q->side);
            q->side = NULL;
            return st;
        }
    }
    sqlite3_wal_hook(q->db, wal_note, q);
    /* the WAL restarts only every few thousand frames: its file is cut back to
     * this size when it does, not kept at its largest */
    (void)exec(q->db, "PRAGMA audit.journal_size_limit = " WAL_SIZE_LIMIT);
    return PVG_OK;
}

static long long sq_wal_frames(pvg_backend *b)
{
    return __atomic_load_n(&SQ(b)->wal_frames, __ATOMIC_RELAXED);
}

static pvg_status sq_wal_checkpoint(pvg_backend *b, int side, long long *log, long long *done,
                                    pvg_error *err)
{
    sq_backend *q = SQ(b);
    sqlite3 *db = side ? q->side : q->db;
    if (log) *log = -1;
    if (done) *done = -1;
    if (!db) return pvg_error_set(err, PVG_ERR_STATE, "wal checkpoint: no side connection");
    int nlog = -1, nckpt = -1;
    int rc = sqlite3_wal_checkpoint_v2(db, side ? "main" : "audit", SQLITE_CHECKPOINT_PASSIVE,
                                       &nlog, &nckpt);
    if (log) *log = nlog;
    if (done) *done = nckpt;
    return rc == SQLITE_OK ? PVG_OK : fail(db, rc, "wal checkpoint", err);
}

/* The WAL hook of wal_autocheckpoint: SQLite's automatic checkpoint
 * (a PASSIVE pass in the commit that takes the WAL to the threshold), at
 * the handle's threshold for the audit log and SQLite's default 1000 frames
 * for privguide.db, whose WAL grows only with real writes. */
static int wal_auto(void *ctx, sqlite3 *db, const char *name, int frames)
{
    int limit = strcmp(name, "audit") == 0
                    ? __atomic_load_n(&((sq_backend *)ctx)->audit_auto, __ATOMIC_RELAXED)
                    : 1000;
    if (limit > 0 && frames >= limit)
        (void)sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
    return SQLITE_OK;
}

static pvg_status sq_wal_autocheckpoint(pvg_backend *b, int frames, pvg_error *err)
{
    (void)err;
    sq_backend *q = SQ(b);
    __atomic_store_n(&q->audit_auto, frames, __ATOMIC_RELAXED);
    sqlite3_wal_hook(q->db, wal_auto, q);
    if (frames > 1000) /* a WAL let grow is cut back when it restarts */
        (void)exec(q->db, "PRAGMA audit.journal_size_limit = " WAL_SIZE_LIMIT);
    return PVG_OK;
}

/* ---- transactions ---- */

static void sq_rollback(pvg_backend *b)
{
    sq_backend *q = SQ(b);
    if (sqlite3_get_autocommit(q->ks) == 0) exec(q->ks, "ROLLBACK");
    if (sqlite3_get_autocommit(q->db) == 0) exec(q->db, "ROLLBACK");
    q->in_txn = 0;
}

static pvg_status sq_begin(pvg_backend *b, int64_t *changes, pvg_error *err)
{
    sq_backend *q = SQ(b);
    if (q->in_txn) return pvg_error_set(err, PVG_ERR_STATE, "a transaction is open already");
    if (q->snap_memo)
        return pvg_error_set(err, PVG_ERR_STATE, "a read snapshot is open (no writes in it)");
    int rc = exec(q->ks, "BEGIN IMMEDIATE");
    if (rc != SQLITE_OK)
        return pvg_error_set(err, PVG_ERR_BUSY, "key store is locked: %s", sqlite3_errmsg(q->ks));
    rc = exec(q->db, "BEGIN IMMEDIATE");
    if (rc != SQLITE_OK) {
        exec(q->ks, "ROLLBACK");
        return pvg_error_set(err, PVG_ERR_BUSY, "database is locked: %s", sqlite3_errmsg(q->db));
    }
    q->in_txn = 1;
    int64_t c = 0;
    pvg_status st = changes_get(b, &c, err);
    if (st != PVG_OK) {
        sq_rollback(b);
        return st;
    }
    if (changes) *changes = c;
    return PVG_OK;
}

static pvg_status sq_commit(pvg_backend *b, int64_t *changes, pvg_error *err)
{
    sq_backend *q = SQ(b);
    if (!q->in_txn) return pvg_error_set(err, PVG_ERR_STATE, "no open transaction");
    int64_t c = 0;
    pvg_status st = bump(q, err);
    if (st == PVG_OK) st = changes_get(b, &c, err);
    if (st != PVG_OK) {
        sq_rollback(b);
        return st;
    }
    int rc = exec(q->ks, "COMMIT");
    if (rc != SQLITE_OK) {
        st = pvg_error_set(err, PVG_ERR_IO, "key store commit: %s", sqlite3_errmsg(q->ks));
        sq_rollback(b);
        return st;
    }
    rc = exec(q->db, "COMMIT");
    if (rc != SQLITE_OK) {
        st = pvg_error_set(err, PVG_ERR_IO, "database commit: %s", sqlite3_errmsg(q->db));
        sq_rollback(b);
        return st;
    }
    q->in_txn = 0;
    if (changes) *changes = c;
    return PVG_OK;
}

/* ---- users ---- */

static void user_from_row(sqlite3_stmt *s, pvg_backend_user *u)
{
    u->id = sqlite3_column_int64(s, 0);
    copy_blob(s, 1, u->pseudonym, sizeof u->pseudonym, NULL);
    u->consent_personalization = sqlite3_column_int(s, 2);
    u->consent_analytics = sqlite3_column_int(s, 3);
    u->created_at = sqlite3_column_int64(s, 4);
}

static pvg_status sq_user_get(pvg_backend *b, const unsigned char p[16], pvg_backend_user *out,
                              pvg_error *err)
{
    sq_backend *q = SQ(b);
    int memo = memo_on(q);
    memo_user *e = memo ? memo_user_slot(q, p, 0) : NULL;
    if (e && e->at == q->snap_at) {
        q->snap_served++;
        if (e->state == MEMO_NONE) return pvg_error_set(err, PVG_ERR_NOT_FOUND, "unknown user");
        *out = e->u;
        return PVG_OK;
    }
    sqlite3_stmt *s;
    int own, row;
    bindv v[] = {BB(p, 16)};
    pvg_status st = one(q, Q_USER_GET, v, 1, &s, &own, &row, "users", err);
    if (st != PVG_OK) return st;
    if (row) {
        user_from_row(s, out);
        give(s, own);
    }
    if (memo) {
        e = memo_user_slot(q, p, 1);
        e->state = row ? MEMO_ROW : MEMO_NONE;
        e->at = q->snap_at;
        memcpy(e->p, p, 16);
        if (row) e->u = *out;
    }
    return row ? PVG_OK : pvg_error_set(err, PVG_ERR_NOT_FOUND, "unknown user");
}

static pvg_status sq_user_insert(pvg_backend *b, const unsigned char p[16], int64_t created_at,
                                 int cp, int ca, int64_t *id, pvg_error *err)
{
    sq_backend *q = SQ(b);
    bindv v[] = {BB(p, 16), BI(created_at), BI(cp ? 1 : 0), BI(ca ? 1 : 0)};
    int unit = !q->in_txn; /* the row and the bump together (run_bumped) */
    pvg_status st = unit ? unit_begin(q, q->db, "users", err) : PVG_OK;
    if (st != PVG_OK) return st;
    st = run(q, Q_USER_INSERT, v, 4, NULL, "users", err);
    if (st == PVG_OK) *id = sqlite3_last_insert_rowid(q->db); /* before the bump's upsert */
    if (st == PVG_OK && unit) st = bump(q, err);
    return unit ? unit_end(q, q->db, st, "users", err) : st;
}

static pvg_status sq_consent_set(pvg_backend *b, int64_t uid, int p, int a, int64_t at,
                                 pvg_error *err)
{
    bindv v[] = {BI(p ? 1 : 0), BI(a ? 1 : 0), BI(at), BI(uid)};
    long long n = 0;
    pvg_status st = run_bumped(SQ(b), Q_CONSENT_SET, v, 4, &n, "consent", err);
    if (st != PVG_OK) return st;
    if (n == 0)
        return pvg_error_set(err, PVG_ERR_NOT_FOUND, "unknown user row %lld", (long long)uid);
    return PVG_OK;
}

/* Deletes rows of every table carrying a `user_pseudonym` column. */
static pvg_status delete_linked_rows(sq_backend *q, const unsigned char p[16], pvg_error *err)
{
    sqlite3_stmt *t;
    int own;
    pvg_status st = take(q, Q_LINKED_TABLES, &t, &own, err);
    if (st != PVG_OK) return st;
    int rc;
    while (st == PVG_OK && (rc = sqlite3_step(t)) == SQLITE_ROW) {
        char sql[256];
        snprintf(sql, sizeof sql, "DELETE FROM \"%s\" WHERE user_pseudonym = ?1",
                 (const char *)sqlite3_column_text(t, 0));
        sqlite3_stmt *d = NULL;
        rc = sqlite3_prepare_v2(q->db, sql, -1, &d, NULL);
        if (rc == SQLITE_OK) {
            sqlite3_bind_blob(d, 1, p, 16, SQLITE_STATIC);
            rc = sqlite3_step(d);
        }
        if (rc != SQLITE_DONE) st = fail(q->db, rc, "delete", err);
        sqlite3_finalize(d);
    }
    give(t, own);
    return st;
}

static pvg_status sq_user_delete(pvg_backend *b, int64_t uid, const unsigned char p[16],
                                 pvg_error *err)
{
    sq_backend *q = SQ(b);
    pvg_status st = unit_begin(q, q->db, "delete", err);
    if (st != PVG_OK) return st;
    bindv v[] = {BI(uid)};
    st = run(q, Q_CHUNKS_DELETE_USER, v, 1, NULL, "delete", err);
    if (st == PVG_OK) st = run(q, Q_TAGS_DELETE_USER, v, 1, NULL, "delete", err);
    if (st == PVG_OK) st = run(q, Q_USER_DELETE, v, 1, NULL, "delete", err);
    if (st == PVG_OK) st = delete_linked_rows(q, p, err);
    if (st == PVG_OK) st = bump(q, err);
    return unit_end(q, q->db, st, "delete: commit", err);
}

static pvg_status sq_users_foreach(pvg_backend *b, const unsigned char *p, pvg_backend_user_fn fn,
                                   void *ctx, pvg_error *err)
{
    sq_backend *q = SQ(b);
    sqlite3_stmt *s;
    int own;
    pvg_status st = take(q, p ? Q_USERS_ONE : Q_USERS_ALL, &s, &own, err);
    if (st != PVG_OK) return st;
    if (p) sqlite3_bind_blob(s, 1, p, 16, SQLITE_STATIC);
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (sqlite3_column_bytes(s, 1) != PVG_BACKEND_PSEUDONYM_BYTES) continue;
        pvg_backend_user u;
        user_from_row(s, &u);
        if (fn(ctx, &u)) {
            st = PVG_ERR_ABORTED;
            break;
        }
    }
    if (st == PVG_OK && rc != SQLITE_DONE) st = fail(q->db, rc, "users", err);
    give(s, own);
    return st;
}

/* ---- keys ---- */

static pvg_status sq_key_get(pvg_backend *b, const unsigned char p[16], pvg_backend_key *out,
                             pvg_error *err)
{
    sqlite3_stmt *s;
    int own, row;
    bindv v[] = {BB(p, 16)};
    pvg_status st = one(SQ(b), Q_KEY_GET, v, 1, &s, &own, &row, "key store", err);
    if (st != PVG_OK) return st;
    if (!row) return pvg_error_set(err, PVG_ERR_NOT_FOUND, "no data key");
    copy_blob(s, 0, out->kid, sizeof out->kid, &out->kid_len);
    copy_blob(s, 1, out->wrapped, sizeof out->wrapped, &out->wrapped_len);
    give(s, own);
    return PVG_OK;
}

static pvg_status sq_key_put(pvg_backend *b, const unsigned char p[16], const unsigned char kid[8],
                             const unsigned char *w, size_t n, pvg_error *err)
{
    bindv v[] = {BB(p, 16), BB(kid, PVG_BACKEND_KID_BYTES), BB(w, n)};
    pvg_status st = run(SQ(b), Q_KEY_PUT, v, 3, NULL, "key store", err);
    return st == PVG_OK ? bump_if_autocommit(SQ(b), err) : st;
}

static pvg_status sq_key_delete(pvg_backend *b, const unsigned char p[16], pvg_error *err)
{
    bindv v[] = {BB(p, 16)};
    pvg_status st = run(SQ(b), Q_KEY_DELETE, v, 1, NULL, "key store", err);
    return st == PVG_OK ? bump_if_autocommit(SQ(b), err) : st;
}

static pvg_status sq_key_other_kid(pvg_backend *b, const unsigned char a[8],
                                   const unsigned char c[8], int *found, pvg_error *err)
{
    sqlite3_stmt *s;
    int own;
    bindv v[] = {BB(a, 8), BB(c, 8)};
    pvg_status st = one(SQ(b), Q_KEY_OTHER_KID, v, 2, &s, &own, found, "key store", err);
    if (st == PVG_OK && *found) give(s, own);
    return st;
}

static pvg_status sq_rewrap_batch(pvg_backend *b, const unsigned char new_kid[8], size_t max,
                                  pvg_backend_rewrap_fn fn, void *ctx, long long *done,
                                  pvg_error *err)
{
    sq_backend *q = SQ(b);
    *done = 0;
    if (q->in_txn)
        return pvg_error_set(err, PVG_ERR_STATE, "cannot rewrap keys inside a transaction");
    if (exec(q->ks, "BEGIN IMMEDIATE") != SQLITE_OK)
        return pvg_error_set(err, PVG_ERR_BUSY, "key store is locked: %s", sqlite3_errmsg(q->ks));
    sqlite3_stmt *sel;
    int own;
    pvg_status st = take(q, Q_KEY_SELECT_OLD, &sel, &own, err);
    if (st != PVG_OK) {
        exec(q->ks, "ROLLBACK");
        return st;
    }
    sqlite3_bind_blob(sel, 1, new_kid, 8, SQLITE_STATIC);
    sqlite3_bind_int64(sel, 2, (sqlite3_int64)max);
    long long n = 0;
    int rc;
    while (st == PVG_OK && (rc = sqlite3_step(sel)) == SQLITE_ROW) {
        unsigned char p[16];
        size_t plen;
        pvg_backend_key old;
        copy_blob(sel, 0, p, sizeof p, &plen);
        copy_blob(sel, 1, old.kid, sizeof old.kid, &old.kid_len);
        copy_blob(sel, 2, old.wrapped, sizeof old.wrapped, &old.wrapped_len);
        unsigned char w[PVG_BACKEND_WRAPPED_MAX];
        size_t wn = 0;
        if (plen != 16)
            st = pvg_error_set(err, PVG_ERR_CRYPTO, "a wrapped key has a malformed pseudonym");
        else
            st = fn(ctx, p, &old, w, &wn, err);
        if (st == PVG_OK) {
            bindv v[] = {BB(new_kid, 8), BB(w, wn), BB(p, 16)};
            st = run(q, Q_KEY_REWRAP, v, 3, NULL, "key store", err);
        }
        sodium_memzero(&old, sizeof old);
        n++;
    }
    if (st == PVG_OK && rc != SQLITE_DONE) st = fail(q->ks, rc, "key store", err);
    give(sel, own);
    if (st != PVG_OK) {
        exec(q->ks, "ROLLBACK");
        return st;
    }
    if (exec(q->ks, "COMMIT") != SQLITE_OK) {
        st = pvg_error_set(err, PVG_ERR_IO, "key store commit: %s", sqlite3_errmsg(q->ks));
        exec(q->ks, "ROLLBACK");
        return st;
    }
    *done = n;
    return n ? bump(q, err) : PVG_OK;
}

static pvg_status sq_wrap_kid_get(pvg_backend *b, unsigned char kid[8], int *found, pvg_error *err)
{
    sqlite3_stmt *s;
    int own;
    pvg_status st = one(SQ(b), Q_WRAP_KID_GET, NULL, 0, &s, &own, found, "key store", err);
    if (st != PVG_OK || !*found) return st;
    const char *v = (const char *)sqlite3_column_text(s, 0);
    size_t bin = 0;
    if (!v || sodium_hex2bin(kid, 8, v, strlen(v), NULL, &bin, NULL) != 0 || bin != 8) {
        memset(kid, 0, 8); /* unreadable marker: matches no key */
    }
    give(s, own);
    return PVG_OK;
}

static pvg_status sq_wrap_kid_set(pvg_backend *b, const unsigned char kid[8], pvg_error *err)
{
    char hex[17];
    sodium_bin2hex(hex, sizeof hex, kid, 8);
    bindv v[] = {BT(hex)};
    pvg_status st = run(SQ(b), Q_WRAP_KID_SET, v, 1, NULL, "key store", err);
    if (st != PVG_OK)
        st = pvg_error_set(err, PVG_ERR_BUSY, "key store: %s", sqlite3_errmsg(SQ(b)->ks));
    return st;
}

/* ---- chunks ---- */

static pvg_status sq_chunk_insert(pvg_backend *b, int64_t uid, int64_t day, int64_t n,
                                  const unsigned char *cid, size_t cid_len,
                                  const unsigned char *sealed, size_t sealed_len, pvg_error *err)
{
    sq_backend *q = SQ(b);
    sqlite3_stmt *s = q->st[Q_CHUNK_INSERT]; /* the hot path of ingestion: no generic binding */
    int own = 0;
    if (!s || sqlite3_stmt_busy(s)) {
        pvg_status st = take(q, Q_CHUNK_INSERT, &s, &own, err);
        if (st != PVG_OK) return st;
    }
    sqlite3_bind_int64(s, 1, uid);
    sqlite3_bind_int64(s, 2, day);
    sqlite3_bind_blob(s, 3, cid, (int)cid_len, SQLITE_STATIC);
    sqlite3_bind_blob(s, 4, sealed, (int)sealed_len, SQLITE_STATIC);
    sqlite3_bind_int64(s, 5, n);
    int rc = sqlite3_step(s);
    give(s, own);
    if ((rc & 0xff) == SQLITE_CONSTRAINT)
        return pvg_error_set(err, PVG_ERR_EXISTS, "chunks: a chunk with this id exists already");
    if (rc != SQLITE_DONE) return fail(q->db, rc, "chunks", err);
    return bump_if_autocommit(q, err);
}

/* Steps a chunk query (columns id, user_id, expires_day, n, cid, sealed). */
static pvg_status chunk_rows(sq_backend *q, sqlite3_stmt *s, pvg_backend_chunk_fn fn, void *ctx,
                             pvg_error *err)
{
    pvg_status st = PVG_OK;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        pvg_backend_chunk c;
        c.row = sqlite3_column_int64(s, 0);
        c.user_id = sqlite3_column_int64(s, 1);
        c.expires_day = sqlite3_column_int64(s, 2);
        c.n_events = sqlite3_column_int64(s, 3);
        c.cid = sqlite3_column_blob(s, 4);
        c.cid_len = (size_t)sqlite3_column_bytes(s, 4);
        c.sealed = sqlite3_column_blob(s, 5);
        c.sealed_len = (size_t)sqlite3_column_bytes(s, 5);
        if (fn(ctx, &c)) {
            st = PVG_ERR_ABORTED;
            break;
        }
    }
    if (st == PVG_OK && rc != SQLITE_DONE) st = fail(q->db, rc, "chunks", err);
    return st;
}

static pvg_status sq_chunks_foreach_user(pvg_backend *b, int64_t uid, pvg_backend_chunk_fn fn,
                                         void *ctx, pvg_error *err)
{
    sq_backend *q = SQ(b);
    sqlite3_stmt *s;
    int own;
    pvg_status st = take(q, Q_CHUNKS_OF_USER, &s, &own, err);
    if (st != PVG_OK) return st;
    sqlite3_bind_int64(s, 1, uid);
    st = chunk_rows(q, s, fn, ctx, err);
    give(s, own);
    return st;
}

static pvg_status sq_chunks_scan(pvg_backend *b, pvg_backend_chunk_fn fn, void *ctx, pvg_error *err)
{
    sq_backend *q = SQ(b);
    sqlite3_stmt *s;
    int own;
    pvg_status st = take(q, Q_CHUNKS_SCAN, &s, &own, err);
    if (st != PVG_OK) return st;
    st = chunk_rows(q, s, fn, ctx, err);
    give(s, own);
    return st;
}

static pvg_status sq_chunk_quarantine(pvg_backend *b, int64_t row, const unsigned char *p,
                                      const char *reason, int64_t at, pvg_error *err)
{
    sq_backend *q = SQ(b);
    pvg_status st = unit_begin(q, q->db, "quarantine", err);
    if (st != PVG_OK) return st;
    bindv v[] = {BI(row), BB(p, 16), BT(reason), BI(at)};
    long long n = 0;
    st = run(q, Q_QUARANTINE_INSERT, v, 4, &n, "quarantine", err);
    if (st == PVG_OK && n == 0)
        st = pvg_error_set(err, PVG_ERR_NOT_FOUND, "no chunk row %lld", (long long)row);
    if (st == PVG_OK) st = run(q, Q_CHUNK_DELETE_ROW, v, 1, NULL, "quarantine", err);
    if (st == PVG_OK) st = bump(q, err);
    return unit_end(q, q->db, st, "quarantine: commit", err);
}

static pvg_status sq_quarantine_count(pvg_backend *b, long long *n, pvg_error *err)
{
    sqlite3_stmt *s;
    int own, row;
    *n = 0;
    pvg_status st = one(SQ(b), Q_QUARANTINE_COUNT, NULL, 0, &s, &own, &row, "quarantine", err);
    if (st != PVG_OK || !row) return st;
    *n = sqlite3_column_int64(s, 0);
    give(s, own);
    return PVG_OK;
}

static pvg_status sq_chunks_cid_index(pvg_backend *b, int create, int *present, pvg_error *err)
{
    sq_backend *q = SQ(b);
    *present = 0;
    if (create) {
        int rc = exec(q->db, "CREATE UNIQUE INDEX IF NOT EXISTS chunks_cid ON chunks(cid)");
        /* Two rows sharing an id (a replayed row) keep it from being built:
         * readers still skip the copies; `store check --quarantine` moves
         * them away, after which the index builds. */
        if (rc != SQLITE_OK && (rc & 0xff) != SQLITE_CONSTRAINT)
            return fail(q->db, rc, "chunks", err);
    }
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(
        q->db, "SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = 'chunks_cid'", -1, &s,
        NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(s);
        *present = rc == SQLITE_ROW;
        if (rc == SQLITE_ROW || rc == SQLITE_DONE) rc = SQLITE_OK;
    }
    sqlite3_finalize(s);
    return rc == SQLITE_OK ? PVG_OK : fail(q->db, rc, "chunks", err);
}

static pvg_status sq_chunks_count_user(pvg_backend *b, int64_t uid, long long *n, pvg_error *err)
{
    sqlite3_stmt *s;
    int own, row;
    bindv v[] = {BI(uid)};
    *n = 0;
    pvg_status st = one(SQ(b), Q_CHUNKS_COUNT_USER, v, 1, &s, &own, &row, "chunks", err);
    if (st != PVG_OK || !row) return st;
    *n = sqlite3_column_int64(s, 0);
    give(s, own);
    return PVG_OK;
}

static pvg_status sq_chunks_delete_user(pvg_backend *b, int64_t uid, pvg_error *err)
{
    bindv v[] = {BI(uid)};
    pvg_status st = run(SQ(b), Q_CHUNKS_DELETE_USER, v, 1, NULL, "chunks", err);
    return st == PVG_OK ? bump_if_autocommit(SQ(b), err) : st;
}

static pvg_status sq_chunks_sweep(pvg_backend *b, int64_t day, long long *events, pvg_error *err)
{
    sq_backend *q = SQ(b);
    *events = 0;
    pvg_status st = unit_begin(q, q->db, "retention sweep", err);
    if (st != PVG_OK) return st;
    sqlite3_stmt *s;
    int own, row;
    bindv v[] = {BI(day)};
    long long n = 0;
    st = one(q, Q_CHUNKS_EXPIRED_SUM, v, 1, &s, &own, &row, "retention sweep", err);
    if (st == PVG_OK && row) {
        n = sqlite3_column_int64(s, 0);
        give(s, own);
    }
    if (st == PVG_OK && n > 0)
        st = run(q, Q_CHUNKS_EXPIRED_DELETE, v, 1, NULL, "retention sweep", err);
    if (st == PVG_OK && n > 0)
        st = run(q, Q_TAGS_EXPIRED_DELETE, v, 1, NULL, "retention sweep", err);
    if (st == PVG_OK && n > 0) st = bump(q, err);
    st = unit_end(q, q->db, st, "retention sweep", err);
    if (st == PVG_OK) *events = n;
    return st;
}

/* ---- catalog ---- */

static pvg_status sq_item_find(pvg_backend *b, const char *ext_id, int64_t *id, pvg_error *err)
{
    sqlite3_stmt *s;
    int own, row;
    bindv v[] = {BT(ext_id)};
    *id = 0;
    pvg_status st = one(SQ(b), Q_ITEM_FIND, v, 1, &s, &own, &row, "items", err);
    if (st != PVG_OK) return st;
    if (!row) return pvg_error_set(err, PVG_ERR_NOT_FOUND, "unknown item '%.80s'", ext_id);
    *id = sqlite3_column_int64(s, 0);
    give(s, own);
    return PVG_OK;
}

static void item_binds(const pvg_item *it, int64_t at, bindv v[7])
{
    v[6] = BI(it->catalog ? 1 : 0);
    v[1] = BT(it->title);
    v[2] = BT(it->category);
    v[3] = it->price >= 0 ? BD(it->price) : BN;
    v[4] = BT(it->attrs_json);
    v[5] = BI(at);
}

static pvg_status sq_item_insert(pvg_backend *b, const pvg_item *it, int64_t at, int64_t *id,
                                 pvg_error *err)
{
    bindv v[7];
    v[0] = BT(it->ext_id);
    item_binds(it, at, v);
    pvg_status st = run(SQ(b), Q_ITEM_INSERT, v, 7, NULL, "items", err);
    if (st == PVG_OK && id) *id = sqlite3_last_insert_rowid(SQ(b)->db);
    return st;
}

static pvg_status sq_item_update(pvg_backend *b, int64_t id, const pvg_item *it, int64_t at,
                                 pvg_error *err)
{
    bindv v[7];
    v[0] = BI(id);
    item_binds(it, at, v);
    return run(SQ(b), Q_ITEM_UPDATE, v, 7, NULL, "items", err);
}

/* price: the typical price (column 7), else the last (column 4). */
static void item_prices_of_row(sqlite3_stmt *q, pvg_item *it)
{
    it->last_price = sqlite3_column_type(q, 4) == SQLITE_NULL ? -1 : sqlite3_column_double(q, 4);
    it->price =
        sqlite3_column_type(q, 7) == SQLITE_NULL ? it->last_price : sqlite3_column_double(q, 7);
}

static pvg_item *item_from_row(sqlite3_stmt *q)
{
    const char *cols[4];
    static const int colno[4] = {1, 2, 3, 5};
    size_t total = sizeof(pvg_item);
    for (int i = 0; i < 4; i++) {
        cols[i] = (const char *)sqlite3_column_text(q, colno[i]);
        if (cols[i]) total += strlen(cols[i]) + 1;
    }
    pvg_item *it = calloc(1, total);
    if (!it) return NULL;
    char *p = (char *)(it + 1);
    const char **dst[4] = {&it->ext_id, &it->title, &it->category, &it->attrs_json};
    for (int i = 0; i < 4; i++) {
        if (!cols[i]) continue;
        size_t n = strlen(cols[i]) + 1;
        memcpy(p, cols[i], n);
        *dst[i] = p;
        p += n;
    }
    it->id = sqlite3_column_int64(q, 0);
    item_prices_of_row(q, it);
    it->catalog = sqlite3_column_int(q, 6) != 0;
    return it;
}

static pvg_status sq_item_get(pvg_backend *b, const char *ext_id, int64_t id, pvg_item **out,
                              pvg_error *err)
{
    sqlite3_stmt *s;
    int own, row;
    *out = NULL;
    bindv v[] = {ext_id ? BT(ext_id) : BI(id)};
    pvg_status st =
        one(SQ(b), ext_id ? Q_ITEM_BY_EXT : Q_ITEM_BY_ID, v, 1, &s, &own, &row, "items", err);
    if (st != PVG_OK) return st;
    if (!row) {
        if (ext_id) return pvg_error_set(err, PVG_ERR_NOT_FOUND, "unknown item '%.80s'", ext_id);
        return pvg_error_set(err, PVG_ERR_NOT_FOUND, "unknown item row %lld", (long long)id);
    }
    *out = item_from_row(s);
    give(s, own);
    return *out ? PVG_OK : pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
}

static pvg_status sq_items_foreach(pvg_backend *b, pvg_backend_item_fn fn, void *ctx,
                                   pvg_error *err)
{
    sq_backend *q = SQ(b);
    sqlite3_stmt *s;
    int own;
    pvg_status st = take(q, Q_ITEMS_ALL, &s, &own, err);
    if (st != PVG_OK) return st;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        pvg_item it = {0};
        it.id = sqlite3_column_int64(s, 0);
        it.ext_id = (const char *)sqlite3_column_text(s, 1);
        it.title = (const char *)sqlite3_column_text(s, 2);
        it.category = (const char *)sqlite3_column_text(s, 3);
        item_prices_of_row(s, &it);
        it.attrs_json = (const char *)sqlite3_column_text(s, 5);
        it.catalog = sqlite3_column_int(s, 6) != 0;
        if (fn(ctx, &it)) {
            st = PVG_ERR_ABORTED;
            break;
        }
    }
    if (st == PVG_OK && rc != SQLITE_DONE) st = fail(q->db, rc, "items", err);
    give(s, own);
    return st;
}

static pvg_status sq_item_prices_get(pvg_backend *b, int64_t id, char **window, pvg_error *err)
{
    sqlite3_stmt *s;
    int own, row;
    bindv v[] = {BI(id)};
    *window = NULL;
    pvg_status st = one(SQ(b), Q_ITEM_PRICES_GET, v, 1, &s, &own, &row, "items", err);
    if (st != PVG_OK) return st;
    if (!row) return pvg_error_set(err, PVG_ERR_NOT_FOUND, "unknown item row %lld", (long long)id);
    const char *t = (const char *)sqlite3_column_text(s, 0);
    if (t) *window = strdup(t);
    give(s, own);
    if (t && !*window) return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    return PVG_OK;
}

static pvg_status sq_item_prices_set(pvg_backend *b, int64_t id, const char *window, double typical,
                                     pvg_error *err)
{
    bindv v[] = {BI(id), BT(window), typical >= 0 ? BD(typical) : BN};
    long long n = 0;
    pvg_status st = run(SQ(b), Q_ITEM_PRICES_SET, v, 3, &n, "items", err);
    if (st == PVG_OK && n == 0)
        return pvg_error_set(err, PVG_ERR_NOT_FOUND, "unknown item row %lld", (long long)id);
    return st;
}

/* ---- anonymous counts ---- */

static pvg_status sq_anon_put(pvg_backend *b, const unsigned char source[16], int64_t item_id,
                              int type, long long count, double quantity, pvg_error *err)
{
    bindv v[] = {BB(source, 16), BI(item_id), BI(type), BI(count), BD(quantity)};
    return run(SQ(b), Q_ANON_PUT, v, 5, NULL, "anonymous counts", err);
}

static pvg_status sq_anon_foreach(pvg_backend *b, pvg_backend_anon_fn fn, void *ctx, pvg_error *err)
{
    sq_backend *q = SQ(b);
    sqlite3_stmt *s;
    int own;
    pvg_status st = take(q, Q_ANON_ALL, &s, &own, err);
    if (st != PVG_OK) return st;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW)
        if (fn(ctx, sqlite3_column_int64(s, 0), (pvg_event_type)sqlite3_column_int(s, 1),
               sqlite3_column_int64(s, 2), sqlite3_column_double(s, 3))) {
            st = PVG_ERR_ABORTED;
            break;
        }
    if (st == PVG_OK && rc != SQLITE_DONE) st = fail(q->db, rc, "anonymous counts", err);
    give(s, own);
    return st;
}

/* ---- ingest log, meta ---- */

static pvg_status sq_ingest_run(pvg_backend *b, const pvg_backend_ingest_run *r, pvg_error *err)
{
    bindv v[] = {BI(r->started_at), BI(r->finished_at), BT(r->format),   BT(r->source),
                 BI(r->read),       BI(r->accepted),    BI(r->rejected), BI(r->stored),
                 BI(r->duplicates), BI(r->anonymous)};
    return run(SQ(b), Q_INGEST_RUN, v, 10, NULL, "ingest log", err);
}

static pvg_status sq_meta_get(pvg_backend *b, const char *key, char **value, pvg_error *err)
{
    sq_backend *q = SQ(b);
    size_t kl = strlen(key);
    int memo = memo_on(q) && kl < MEMO_META_KEY;
    memo_meta *e = memo ? memo_meta_slot(q, key, kl, 0) : NULL;
    *value = NULL;
    if (e && e->at == q->snap_at) {
        q->snap_served++;
        if (e->state == MEMO_NONE)
            return pvg_error_set(err, PVG_ERR_NOT_FOUND, "no meta entry '%.80s'", key);
        *value = strdup(e->value);
        return *value ? PVG_OK : pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    }
    sqlite3_stmt *s;
    int own, row;
    bindv v[] = {BT(key)};
    pvg_status st = one(q, Q_META_GET, v, 1, &s, &own, &row, "meta", err);
    if (st != PVG_OK) return st;
    if (row) {
        const char *t = (const char *)sqlite3_column_text(s, 0);
        *value = strdup(t ? t : "");
        give(s, own);
        if (!*value) return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    }
    if (memo && (!row || strlen(*value) < MEMO_META_VALUE)) {
        e = memo_meta_slot(q, key, kl, 1);
        e->state = row ? MEMO_ROW : MEMO_NONE;
        e->at = q->snap_at;
        memcpy(e->key, key, kl + 1);
        if (row) snprintf(e->value, sizeof e->value, "%s", *value);
    }
    return row ? PVG_OK : pvg_error_set(err, PVG_ERR_NOT_FOUND, "no meta entry '%.80s'", key);
}

static pvg_status sq_meta_set(pvg_backend *b, const char *key, const char *value, pvg_error *err)
{
    bindv v[] = {BT(key), BT(value)};
    return run_bumped(SQ(b), Q_META_SET, v, 2, NULL, "meta", err);
}

/* ---- counts ---- */

static pvg_status sq_counts(pvg_backend *b, pvg_store_counts *out, pvg_error *err)
{
    static const int ids[5] = {Q_COUNT_USERS, Q_COUNT_ITEMS, Q_COUNT_EVENTS, Q_COUNT_ANON,
                               Q_COUNT_KEYS};
    long long *dst[5] = {&out->users, &out->items, &out->events, &out->anonymous_rows,
                         &out->wrapped_keys};
    for (int i = 0; i < 5; i++) {
        sqlite3_stmt *s;
        int own, row;
        pvg_status st = one(SQ(b), ids[i], NULL, 0, &s, &own, &row, "counts", err);
        if (st != PVG_OK) return st;
        *dst[i] = row ? sqlite3_column_int64(s, 0) : 0;
        if (row) give(s, own);
    }
    return PVG_OK;
}

/* ---- credentials ---- */

static pvg_status sq_cred_insert(pvg_backend *b, const pvg_backend_cred *c, pvg_error *err)
{
    bindv v[] = {BT(c->key_id),
                 BT(c->kind),
                 BT(c->role),
                 BT(c->label ? c->label : ""),
                 c->has_pseudonym ? BB(c->pseudonym, 16) : BN,
                 BB(c->secret_hash, c->secret_hash_len),
                 BD(c->rate_per_s),
                 BI(c->created_at),
                 BI(c->expires_at)};
    return run_bumped(SQ(b), Q_CRED_INSERT, v, 9, NULL, "credential: insert", err);
}

static void copy_text(sqlite3_stmt *s, int col, char *dst, size_t cap)
{
    const char *t = (const char *)sqlite3_column_text(s, col);
    snprintf(dst, cap, "%s", t ? t : "");
}

static pvg_status sq_cred_get(pvg_backend *b, const char *key_id, pvg_backend_cred *out,
                              pvg_error *err)
{
    sq_backend *q = SQ(b);
    size_t kl = strlen(key_id);
    int memo = memo_on(q) && kl < sizeof out->key_id;
    memo_cred *e = memo ? memo_cred_slot(q, key_id, kl, 0) : NULL;
    memset(out, 0, sizeof *out);
    if (e && e->at == q->snap_at) {
        q->snap_served++;
        if (e->state == MEMO_NONE)
            return pvg_error_set(err, PVG_ERR_NOT_FOUND, "unknown credential");
        *out = e->c;
        return PVG_OK;
    }
    sqlite3_stmt *s;
    int own, row;
    bindv v[] = {BT(key_id)};
    pvg_status st = one(q, Q_CRED_GET, v, 1, &s, &own, &row, "auth check", err);
    if (st != PVG_OK) return st;
    if (!row) {
        if (memo) {
            e = memo_cred_slot(q, key_id, kl, 1);
            memset(&e->c, 0, sizeof e->c);
            e->state = MEMO_NONE;
            e->at = q->snap_at;
            memcpy(e->c.key_id, key_id, kl + 1);
        }
        return pvg_error_set(err, PVG_ERR_NOT_FOUND, "unknown credential");
    }
    snprintf(out->key_id, sizeof out->key_id, "%s", key_id);
    copy_text(s, 0, out->kind, sizeof out->kind);
    copy_text(s, 1, out->role, sizeof out->role);
    size_t pn = 0;
    copy_blob(s, 2, out->pseudonym, sizeof out->pseudonym, &pn);
    out->has_pseudonym = pn == PVG_BACKEND_PSEUDONYM_BYTES;
    copy_blob(s, 3, out->secret_hash, sizeof out->secret_hash, &out->secret_hash_len);
    out->rate_per_s = sqlite3_column_double(s, 4);
    out->expires_at = sqlite3_column_int64(s, 5);
    out->revoked = sqlite3_column_int(s, 6);
    out->created_at = sqlite3_column_int64(s, 7);
    give(s, own);
    if (memo) {
        e = memo_cred_slot(q, key_id, kl, 1);
        e->state = MEMO_ROW;
        e->at = q->snap_at;
        e->c = *out;
    }
    return PVG_OK;
}

static pvg_status sq_cred_revoke(pvg_backend *b, const char *key_id, long long *changed,
                                 pvg_error *err)
{
    bindv v[] = {BT(key_id)};
    return run_bumped(SQ(b), Q_CRED_REVOKE, v, 1, changed, "revoke", err);
}

static pvg_status sq_cred_revoke_user(pvg_backend *b, const unsigned char p[16], long long *changed,
                                      pvg_error *err)
{
    bindv v[] = {BB(p, 16)};
    return run_bumped(SQ(b), Q_CRED_REVOKE_USER, v, 1, changed, "revoke user tokens", err);
}

/* ---- ledger ---- */

/* Steps a listing statement (bound already), handing each row to row_fn;
 * stops with PVG_ERR_ABORTED when row_fn says so. */
static pvg_status ledger_rows(sq_backend *q, sqlite3_stmt *s, int kind, pvg_backend_ledger_fn fn,
                              void *ctx, pvg_error *err)
{
    pvg_status st = PVG_OK;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        pvg_backend_ledger_row r;
        memset(&r, 0, sizeof r);
        r.kind = kind;
        if (kind == PVG_LEDGER_ROW_TOTAL) {
            r.epsilon = sqlite3_column_double(s, 0);
            r.delta = sqlite3_column_double(s, 1);
            r.migrated = sqlite3_column_int(s, 2);
        } else if (kind == PVG_LEDGER_ROW_CAP) {
            r.name = (const char *)sqlite3_column_text(s, 0);
            r.epsilon = sqlite3_column_double(s, 1);
            r.delta = sqlite3_column_double(s, 2);
        } else {
            r.name = (const char *)sqlite3_column_text(s, 0);
            r.releases = sqlite3_column_int64(s, 1);
            r.epsilon = sqlite3_column_double(s, 2);
            r.delta = sqlite3_column_double(s, 3);
        }
        if (fn(ctx, &r)) {
            st = PVG_ERR_ABORTED;
            break;
        }
    }
    if (st == PVG_OK && rc != SQLITE_DONE) st = fail(q->db, rc, "ledger: read", err);
    return st;
}

static pvg_status sq_ledger_read(pvg_backend *b, pvg_backend_ledger_fn fn, void *ctx,
                                 pvg_error *err)
{
    sq_backend *q = SQ(b);
    static const int ids[3] = {Q_LEDGER_TOTAL, Q_LEDGER_CAPS, Q_LEDGER_SPENT};
    static const int kinds[3] = {PVG_LEDGER_ROW_TOTAL, PVG_LEDGER_ROW_CAP, PVG_LEDGER_ROW_SPENT};
    for (int i = 0; i < 3; i++) {
        sqlite3_stmt *s;
        int own;
        pvg_status st = take(q, ids[i], &s, &own, err);
        if (st != PVG_OK) return st;
        st = ledger_rows(q, s, kinds[i], fn, ctx, err);
        give(s, own);
        if (st != PVG_OK) return st;
    }
    return PVG_OK;
}

static pvg_status sq_ledger_limit_set(pvg_backend *b, const char *purpose, double e, double d,
                                      int clear, int64_t at, pvg_backend_decide_fn decide,
                                      void *ctx, pvg_error *err)
{
    sq_backend *q = SQ(b);
    pvg_status st = unit_begin(q, q->db, "ledger: begin", err);
    if (st != PVG_OK) return st;
    st = decide(ctx, err);
    if (st == PVG_OK) {
        if (!purpose) {
            bindv v[] = {BD(e), BD(d), BI(at)};
            st = run(q, Q_LEDGER_TOTAL_SET, v, 3, NULL, "ledger: set total", err);
        } else if (clear) {
            bindv v[] = {BT(purpose)};
            st = run(q, Q_LEDGER_CAP_CLEAR, v, 1, NULL, "ledger: clear cap", err);
        } else {
            bindv v[] = {BT(purpose), BD(e), BD(d), BI(at)};
            st = run(q, Q_LEDGER_CAP_SET, v, 4, NULL, "ledger: set cap", err);
        }
    }
    return unit_end(q, q->db, st, "ledger: commit", err);
}

static pvg_status sq_ledger_charge(pvg_backend *b, const char *dataset, const char *what,
                                   const char *mechanism, double e, double d, int64_t at,
                                   pvg_backend_decide_fn decide, void *ctx, int64_t *release_id,
                                   pvg_error *err)
{
    sq_backend *q = SQ(b);
    pvg_status st = unit_begin(q, q->db, "ledger: begin", err);
    if (st != PVG_OK) return st;
    st = decide(ctx, err);
    int64_t id = 0;
    if (st == PVG_OK) {
        bindv v[] = {BT(dataset), BT(what), BT(mechanism), BD(e), BD(d), BI(at)};
        st = run(q, Q_RELEASE_INSERT, v, 6, NULL, "ledger: record release", err);
        id = sqlite3_last_insert_rowid(q->db);
    }
    st = unit_end(q, q->db, st, "ledger: commit", err);
    if (st == PVG_OK && release_id) *release_id = id;
    return st;
}

static pvg_status sq_releases_foreach(pvg_backend *b, const char *dataset,
                                      pvg_backend_release_fn fn, void *ctx, pvg_error *err)
{
    sq_backend *q = SQ(b);
    sqlite3_stmt *s;
    int own;
    pvg_status st = take(q, Q_RELEASES, &s, &own, err);
    if (st != PVG_OK) return st;
    if (dataset) sqlite3_bind_text(s, 1, dataset, -1, SQLITE_STATIC);
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        pvg_ledger_release r;
        memset(&r, 0, sizeof r);
        r.id = sqlite3_column_int64(s, 0);
        r.dataset = (const char *)sqlite3_column_text(s, 1);
        r.what = (const char *)sqlite3_column_text(s, 2);
        r.mechanism = (const char *)sqlite3_column_text(s, 3);
        r.epsilon = sqlite3_column_double(s, 4);
        r.delta = sqlite3_column_double(s, 5);
        r.created_at = sqlite3_column_int64(s, 6);
        if (fn(ctx, &r)) {
            st = PVG_ERR_ABORTED;
            break;
        }
    }
    if (st == PVG_OK && rc != SQLITE_DONE) st = fail(q->db, rc, "ledger: list releases", err);
    give(s, own);
    return st;
}

/* ---- audit log ---- */

static pvg_status sq_audit_head(pvg_backend *b, int64_t *seq, unsigned char hash[32], int *found,
                                pvg_error *err)
{
    sqlite3_stmt *s;
    int own;
    *seq = 0;
    memset(hash, 0, 32);
    pvg_status st = one(SQ(b), Q_AUDIT_HEAD, NULL, 0, &s, &own, found, "audit head", err);
    if (st != PVG_OK || !*found) return st;
    *seq = sqlite3_column_int64(s, 0);
    if (sqlite3_column_bytes(s, 1) == PVG_BACKEND_HASH_BYTES)
        memcpy(hash, sqlite3_column_blob(s, 1), 32);
    give(s, own);
    return PVG_OK;
}

/* An audit unit: outside a transaction, one that holds the write lock of
 * audit.db alone (BEGIN, then a write to it as the first statement, which
 * waits for the lock as BEGIN IMMEDIATE would): appends do not wait for a
 * long write to privguide.db (an import) nor hold it up. Inside one, a
 * savepoint as unit_begin. */
static pvg_status audit_unit_begin(sq_backend *q, const char *what, pvg_error *err)
{
    if (q->in_txn || q->snap_memo) return unit_begin(q, q->db, what, err);
    pvg_status st = run(q, Q_READ_BEGIN, NULL, 0, NULL, what, err);
    if (st == PVG_OK) st = run(q, Q_AUDIT_LOCK, NULL, 0, NULL, what, err);
    if (st != PVG_OK && sqlite3_get_autocommit(q->db) == 0) exec(q->db, "ROLLBACK");
    return st;
}

/* Inside a unit holding the write lock, the log's last entry `last`:
 * indexes the tail by subject once it holds AUDIT_INDEX_BATCH entries. */
static pvg_status audit_index_tail(sq_backend *q, int64_t last, pvg_error *err)
{
    sqlite3_stmt *s;
    int own, row;
    int64_t upto = 0;
    pvg_status st = one(q, Q_AUDIT_UPTO, NULL, 0, &s, &own, &row, "audit index", err);
    if (st != PVG_OK) return st;
    if (row) {
        upto = sqlite3_column_int64(s, 0);
        give(s, own);
    }
    if (last - upto < AUDIT_INDEX_BATCH) return PVG_OK;
    bindv v[] = {BI(upto)};
    st = run(q, Q_AUDIT_INDEX, v, 1, NULL, "audit index", err);
    bindv w[] = {BI(last)};
    if (st == PVG_OK) st = run(q, Q_AUDIT_UPTO_SET, w, 1, NULL, "audit index", err);
    return st;
}

static pvg_status sq_audit_append(pvg_backend *b, const pvg_audit_record *recs, size_t n,
                                  int64_t now, pvg_backend_chain_fn chain, void *ctx,
                                  int64_t *last_seq, pvg_error *err)
{
    sq_backend *q = SQ(b);
    pvg_status st = audit_unit_begin(q, "audit append: begin", err);
    if (st != PVG_OK) return st;
    unsigned char prev[PVG_BACKEND_HASH_BYTES];
    int64_t seq = 0;
    int found;
    st = sq_audit_head(b, &seq, prev, &found, err);
    for (size_t i = 0; st == PVG_OK && i < n; i++) {
        const pvg_audit_record *r = &recs[i];
        int64_t ts = r->ts ? r->ts : now;
        unsigned char h[PVG_BACKEND_HASH_BYTES];
        chain(ctx, prev, ts, r, h);
        bindv v[] = {BI(ts),
                     BT(r->actor),
                     BT(r->action),
                     BT(r->subject ? r->subject : ""),
                     BT(r->detail ? r->detail : ""),
                     BB(prev, sizeof prev),
                     BB(h, sizeof h)};
        st = run(q, Q_AUDIT_INSERT, v, 7, NULL, "audit append", err);
        memcpy(prev, h, sizeof prev);
        seq = sqlite3_last_insert_rowid(q->db);
    }
    if (st == PVG_OK && n > 0) st = audit_index_tail(q, seq, err);
    st = unit_end(q, q->db, st, "audit append: commit", err);
    if (st == PVG_OK && last_seq) *last_seq = seq;
    return st;
}

/* At open: a tail of AUDIT_INDEX_BATCH entries or more (a log just moved
 * from privguide.db, or indexed by no append since) is indexed now, not in
 * the next append (which a server makes while answers wait). */
static pvg_status audit_index_open(sq_backend *q, pvg_error *err)
{
    int64_t head = 0, upto = 0;
    unsigned char h[PVG_BACKEND_HASH_BYTES];
    int found, row, own;
    sqlite3_stmt *s;
    pvg_status st = sq_audit_head(&q->base, &head, h, &found, err);
    if (st == PVG_OK) st = one(q, Q_AUDIT_UPTO, NULL, 0, &s, &own, &row, "audit index", err);
    if (st != PVG_OK) return st;
    if (row) {
        upto = sqlite3_column_int64(s, 0);
        give(s, own);
    }
    if (head - upto < AUDIT_INDEX_BATCH) return PVG_OK;
    st = audit_unit_begin(q, "audit index", err);
    if (st != PVG_OK) return st;
    st = sq_audit_head(&q->base, &head, h, &found, err);
    if (st == PVG_OK) st = audit_index_tail(q, head, err);
    return unit_end(q, q->db, st, "audit index", err);
}

static const char *col_text(sqlite3_stmt *s, int i)
{
    const unsigned char *t = sqlite3_column_text(s, i);
    return t ? (const char *)t : "";
}

/* Hands each row of the bound audit query s to fn; gives s back. */
static pvg_status audit_rows(sq_backend *q, sqlite3_stmt *s, int own, pvg_backend_audit_fn fn,
                             void *ctx, const char *what, pvg_error *err)
{
    pvg_status st = PVG_OK;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        pvg_audit_entry e;
        e.seq = sqlite3_column_int64(s, 0);
        e.ts = sqlite3_column_int64(s, 1);
        e.actor = col_text(s, 2);
        e.action = col_text(s, 3);
        e.subject = col_text(s, 4);
        e.detail = col_text(s, 5);
        copy_blob(s, 6, e.prev_hash, sizeof e.prev_hash, NULL);
        copy_blob(s, 7, e.hash, sizeof e.hash, NULL);
        if (fn(ctx, &e)) {
            st = PVG_ERR_ABORTED;
            break;
        }
    }
    if (st == PVG_OK && rc != SQLITE_DONE) st = fail(q->db, rc, what, err);
    give(s, own);
    return st;
}

static pvg_status sq_audit_foreach(pvg_backend *b, int64_t from_seq, long long limit,
                                   pvg_backend_audit_fn fn, void *ctx, pvg_error *err)
{
    sq_backend *q = SQ(b);
    sqlite3_stmt *s;
    int own;
    pvg_status st = take(q, Q_AUDIT_FROM, &s, &own, err);
    if (st != PVG_OK) return st;
    sqlite3_bind_int64(s, 1, from_seq);
    sqlite3_bind_int64(s, 2, limit > 0 ? limit : -1);
    return audit_rows(q, s, own, fn, ctx, "audit foreach", err);
}

static pvg_status sq_audit_of_subject(pvg_backend *b, const char *subject, pvg_backend_audit_fn fn,
                                      void *ctx, pvg_error *err)
{
    sq_backend *q = SQ(b);
    sqlite3_stmt *s;
    int own;
    pvg_status st = take(q, Q_AUDIT_OF_SUBJECT, &s, &own, err);
    if (st != PVG_OK) return st;
    sqlite3_bind_text(s, 1, subject, -1, SQLITE_STATIC);
    return audit_rows(q, s, own, fn, ctx, "audit of subject", err);
}

/* ---- release cache ---- */

static pvg_status sq_release_get(pvg_backend *b, const unsigned char *fp, size_t fp_len,
                                 const char *dataset, int64_t k, double eps, char **items,
                                 int64_t *release_id, pvg_error *err)
{
    sqlite3_stmt *s;
    int own, row;
    bindv v[] = {BB(fp, fp_len), BT(dataset), BI(k), BD(eps)};
    *items = NULL;
    pvg_status st = one(SQ(b), Q_POPULAR_GET, v, 4, &s, &own, &row, "popular release lookup", err);
    if (st != PVG_OK) return st;
    if (!row) return pvg_error_set(err, PVG_ERR_NOT_FOUND, "no stored release");
    *items = strdup(col_text(s, 0));
    *release_id = sqlite3_column_int64(s, 1);
    give(s, own);
    return *items ? PVG_OK : pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
}

static pvg_status sq_release_put(pvg_backend *b, const unsigned char *fp, size_t fp_len,
                                 const char *dataset, int64_t k, double eps, const char *mechanism,
                                 int64_t release_id, const char *items, int64_t at, pvg_error *err)
{
    bindv v[] = {BB(fp, fp_len), BT(dataset),    BI(k),     BD(eps),
                 BT(mechanism),  BI(release_id), BT(items), BI(at)};
    return run(SQ(b), Q_POPULAR_PUT, v, 8, NULL, "popular release", err);
}

/* ---- suppression list ---- */

static pvg_status sq_suppress_add(pvg_backend *b, const unsigned char p[16], pvg_error *err)
{
    bindv v[] = {BB(p, 16)};
    pvg_status st = run(SQ(b), Q_SUPPRESS_ADD, v, 1, NULL, "suppression list", err);
    return st == PVG_OK ? bump_if_autocommit(SQ(b), err) : st;
}

static pvg_status sq_suppress_has(pvg_backend *b, const unsigned char p[16], int *found,
                                  pvg_error *err)
{
    sqlite3_stmt *s;
    int own, row;
    bindv v[] = {BB(p, 16)};
    *found = 0;
    pvg_status st = one(SQ(b), Q_SUPPRESS_HAS, v, 1, &s, &own, &row, "suppression list", err);
    if (st != PVG_OK || !row) return st;
    *found = 1;
    give(s, own);
    return PVG_OK;
}

static pvg_status sq_suppress_foreach(pvg_backend *b, pvg_backend_pseudonym_fn fn, void *ctx,
                                      pvg_error *err)
{
    sq_backend *q = SQ(b);
    sqlite3_stmt *s;
    int own;
    pvg_status st = take(q, Q_SUPPRESS_ALL, &s, &own, err);
    if (st != PVG_OK) return st;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (sqlite3_column_bytes(s, 0) != PVG_BACKEND_PSEUDONYM_BYTES) continue;
        if (fn(ctx, sqlite3_column_blob(s, 0))) {
            st = PVG_ERR_ABORTED;
            break;
        }
    }
    if (st == PVG_OK && rc != SQLITE_DONE) st = fail(q->db, rc, "suppression list", err);
    give(s, own);
    return st;
}

/* ---- duplicate index ---- */

/* The index keeps the first 64 bits of each record id as an INTEGER key:
 * a third of the row of a 16-byte blob, which is what bulk ingest pays for
 * per event. Record ids are keyed BLAKE2b outputs, so two events of one
 * user share a key with probability ~ n^2 / 2^65 for a user of n events
 * (3e-10 at 100,000); such a pair would be taken for a duplicate
 * (docs/store.md). */
/* The duplicate index keeps the first TAG_KEY bytes of each 16-byte tag (a
 * keyed hash: a false match needs a 64-bit collision within one user), in
 * sorted sets of one row per (user row, expiry day): ingest writes one row
 * per set instead of one per event, and the sweeps delete by row. */
enum { TAG_KEY = PVG_BACKEND_TAG_KEY, TAG_SET_MAX = 4096 };

/* A key as a number that orders as memcmp does. */
static inline uint64_t tag_num(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof v);
    return __builtin_bswap64(v); /* big-endian: numeric order = byte order */
}

static int tag_key_cmp(const void *a, const void *b)
{
    uint64_t x = tag_num(a), y = tag_num(b);
    return x < y ? -1 : x > y;
}

/* 1 when key is in the sorted set of n keys at keys (bytes may be unaligned). */
static int tag_set_has(const unsigned char *keys, size_t n, const unsigned char *key)
{
    size_t lo = 0, hi = n;
    uint64_t k = tag_num(key);
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        uint64_t m = tag_num(keys + mid * TAG_KEY);
        if (m == k) return 1;
        if (m < k)
            lo = mid + 1;
        else
            hi = mid;
    }
    return 0;
}

static pvg_status sq_tag_has(pvg_backend *b, int64_t uid, const unsigned char tag[16], int *found,
                             pvg_error *err)
{
    sq_backend *q = SQ(b);
    sqlite3_stmt *s;
    int own, rc;
    *found = 0;
    pvg_status st = take(q, Q_TAG_HAS, &s, &own, err);
    if (st != PVG_OK) return st;
    sqlite3_bind_int64(s, 1, uid);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        const unsigned char *keys = sqlite3_column_blob(s, 0);
        size_t len = (size_t)sqlite3_column_bytes(s, 0);
        if (len % TAG_KEY != 0) {
            st = pvg_error_set(err, PVG_ERR_CORRUPT,
                               "duplicate index: user row %lld: a set of %zu bytes (expected a "
                               "multiple of %d)",
                               (long long)uid, len, TAG_KEY);
            break;
        }
        if (keys && tag_set_has(keys, len / TAG_KEY, tag)) {
            *found = 1;
            break;
        }
    }
    if (st == PVG_OK && rc != SQLITE_ROW && rc != SQLITE_DONE)
        st = fail(q->db, rc, "duplicate index", err);
    give(s, own);
    return st;
}

static pvg_status sq_tags_of_user(pvg_backend *b, int64_t uid, unsigned char **keys, size_t *n,
                                  pvg_error *err)
{
    sq_backend *q = SQ(b);
    sqlite3_stmt *s;
    int own, rc, runs = 0;
    unsigned char *v = NULL; /* the sets one after another */
    size_t len = 0, cap = 0;
    *keys = NULL;
    *n = 0;
    pvg_status st = take(q, Q_TAG_HAS, &s, &own, err);
    if (st != PVG_OK) return st;
    sqlite3_bind_int64(s, 1, uid);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        const unsigned char *set = sqlite3_column_blob(s, 0);
        size_t m = (size_t)sqlite3_column_bytes(s, 0);
        if (m % TAG_KEY != 0) {
            st = pvg_error_set(err, PVG_ERR_CORRUPT,
                               "duplicate index: user row %lld: a set of %zu bytes (expected a "
                               "multiple of %d)",
                               (long long)uid, m, TAG_KEY);
            break;
        }
        if (!set || m == 0) continue;
        if (len + m > cap) {
            size_t nc = (len + m) * 2;
            unsigned char *nv = realloc(v, nc);
            if (!nv) {
                st = pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
                break;
            }
            v = nv;
            cap = nc;
        }
        memcpy(v + len, set, m);
        len += m;
        runs++;
    }
    if (st == PVG_OK && rc != SQLITE_ROW && rc != SQLITE_DONE)
        st = fail(q->db, rc, "duplicate index", err);
    give(s, own);
    if (st != PVG_OK) {
        free(v);
        return st;
    }
    (void)runs;
    *keys = v;
    *n = len / TAG_KEY;
    return PVG_OK;
}

/* Writes one set: the n new keys at add (sorted) merged into the newest
 * part of (uid, day) while it holds fewer than TAG_SET_MAX keys, else in a
 * part of their own (so no write rewrites more than TAG_SET_MAX keys). A
 * key held already in the merged part is PVG_ERR_EXISTS. */
static pvg_status tag_set_merge(sq_backend *q, int64_t uid, int64_t day, const unsigned char *add,
                                size_t n, unsigned char **buf, size_t *cap, pvg_error *err)
{
    sqlite3_stmt *s;
    int own, rc;
    pvg_status st = take(q, Q_TAG_SET_GET, &s, &own, err);
    if (st != PVG_OK) return st;
    sqlite3_bind_int64(s, 1, uid);
    sqlite3_bind_int64(s, 2, day);
    const unsigned char *old = NULL;
    size_t n_old = 0;
    int64_t part = 0;
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        part = sqlite3_column_int64(s, 0);
        old = sqlite3_column_blob(s, 1);
        n_old = (size_t)sqlite3_column_bytes(s, 1) / TAG_KEY;
        if (n_old >= TAG_SET_MAX) { /* full: a new part */
            part++;
            n_old = 0;
        }
    } else if (rc != SQLITE_DONE) {
        st = fail(q->db, rc, "duplicate index", err);
    }
    const unsigned char *out = add;
    size_t n_out = n;
    if (st == PVG_OK && n_old > 0) { /* merge two sorted runs */
        size_t need = (n_old + n) * TAG_KEY;
        if (need > *cap) {
            unsigned char *nb = realloc(*buf, need);
            if (!nb)
                st = pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
            else {
                *buf = nb;
                *cap = need;
            }
        }
        size_t i = 0, j = 0, k = 0;
        unsigned char *w = *buf;
        while (st == PVG_OK && i < n_old && j < n) {
            uint64_t x = tag_num(old + i * TAG_KEY), y = tag_num(add + j * TAG_KEY);
            if (x == y)
                st = PVG_ERR_EXISTS;
            else if (x < y)
                memcpy(w + k++ * TAG_KEY, old + i++ * TAG_KEY, TAG_KEY);
            else
                memcpy(w + k++ * TAG_KEY, add + j++ * TAG_KEY, TAG_KEY);
        }
        if (st == PVG_OK) {
            memcpy(w + k * TAG_KEY, old + i * TAG_KEY, (n_old - i) * TAG_KEY);
            k += n_old - i;
            memcpy(w + k * TAG_KEY, add + j * TAG_KEY, (n - j) * TAG_KEY);
            k += n - j;
        }
        out = w;
        n_out = k;
    }
    give(s, own); /* old is not read past here */
    if (st == PVG_ERR_EXISTS)
        return pvg_error_set(err, PVG_ERR_EXISTS,
                             "duplicate index: user row %lld holds the record already",
                             (long long)uid);
    if (st != PVG_OK) return st;
    if ((st = take(q, Q_TAG_SET_PUT, &s, &own, err)) != PVG_OK) return st;
    sqlite3_bind_int64(s, 1, uid);
    sqlite3_bind_int64(s, 2, day);
    sqlite3_bind_int64(s, 3, part);
    sqlite3_bind_blob(s, 4, out, (int)(n_out * TAG_KEY), SQLITE_STATIC);
    rc = sqlite3_step(s);
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    give(s, own);
    return rc == SQLITE_DONE ? PVG_OK : fail(q->db, rc, "duplicate index", err);
}

static pvg_status sq_tags_insert(pvg_backend *b, const pvg_backend_tag *t, size_t n, pvg_error *err)
{
    sq_backend *q = SQ(b);
    unsigned char *keys = NULL, *buf = NULL;
    size_t cap_keys = 0, cap_buf = 0;
    pvg_status st = PVG_OK;
    for (size_t i = 0; i < n && st == PVG_OK;) {
        size_t j = i + 1; /* the run of (user row, expiry day) starting at i */
        while (j < n && t[j].user_id == t[i].user_id && t[j].expires_day == t[i].expires_day)
            j++;
        size_t m = j - i;
        if (m * TAG_KEY > cap_keys) {
            size_t nc = m * TAG_KEY * 2;
            unsigned char *nk = realloc(keys, nc);
            if (!nk) {
                st = pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
                break;
            }
            keys = nk;
            cap_keys = nc;
        }
        int sorted = 1;
        for (size_t k = 0; k < m; k++) {
            memcpy(keys + k * TAG_KEY, t[i + k].tag, TAG_KEY);
            if (k && tag_num(keys + (k - 1) * TAG_KEY) >= tag_num(keys + k * TAG_KEY)) sorted = 0;
        }
        if (!sorted) {
            qsort(keys, m, TAG_KEY, tag_key_cmp);
            for (size_t k = 1; k < m && st == PVG_OK; k++)
                if (tag_num(keys + (k - 1) * TAG_KEY) == tag_num(keys + k * TAG_KEY))
                    st = pvg_error_set(err, PVG_ERR_EXISTS,
                                       "duplicate index: user row %lld holds the record already",
                                       (long long)t[i].user_id);
        }
        if (st == PVG_OK)
            st = tag_set_merge(q, t[i].user_id, t[i].expires_day, keys, m, &buf, &cap_buf, err);
        i = j;
    }
    free(keys);
    free(buf);
    return st == PVG_OK ? bump_if_autocommit(q, err) : st;
}

static pvg_status sq_chunks_stats_user(pvg_backend *b, int64_t uid, long long small_n,
                                       long long *chunks, long long *days, pvg_error *err)
{
    sqlite3_stmt *s;
    int own, row;
    bindv v[] = {BI(uid), BI(small_n)};
    *chunks = *days = 0;
    pvg_status st = one(SQ(b), Q_CHUNKS_STATS_USER, v, 2, &s, &own, &row, "chunks", err);
    if (st != PVG_OK || !row) return st;
    *chunks = sqlite3_column_int64(s, 0);
    *days = sqlite3_column_int64(s, 1);
    give(s, own);
    return PVG_OK;
}

static pvg_status rcache_row(sq_backend *q, int id, const bindv *v, int n, char **body,
                             int64_t *release_id, int64_t *created_at, pvg_error *err)
{
    sqlite3_stmt *s;
    int own, row;
    *body = NULL;
    pvg_status st = one(q, id, v, n, &s, &own, &row, "release cache", err);
    if (st != PVG_OK) return st;
    if (!row) return pvg_error_set(err, PVG_ERR_NOT_FOUND, "no cached release");
    *body = strdup(col_text(s, 0));
    if (release_id) *release_id = sqlite3_column_int64(s, 1);
    if (created_at) *created_at = sqlite3_column_int64(s, 2);
    give(s, own);
    return *body ? PVG_OK : pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
}

static pvg_status sq_rcache_get(pvg_backend *b, const char *kind, const unsigned char *fp,
                                size_t fp_len, const char *dataset, const char *params, char **body,
                                int64_t *release_id, int64_t *created_at, pvg_error *err)
{
    bindv v[] = {BT(kind), BB(fp, fp_len), BT(dataset), BT(params)};
    return rcache_row(SQ(b), Q_RCACHE_GET, v, 4, body, release_id, created_at, err);
}

static pvg_status sq_rcache_put(pvg_backend *b, const char *kind, const unsigned char *fp,
                                size_t fp_len, const char *dataset, const char *params,
                                const char *mechanism, int64_t release_id, const char *body,
                                int64_t created_at, pvg_error *err)
{
    bindv v[] = {BT(kind),      BB(fp, fp_len), BT(dataset), BT(params),
                 BT(mechanism), BI(release_id), BT(body),    BI(created_at)};
    return run(SQ(b), Q_RCACHE_PUT, v, 8, NULL, "release cache", err);
}

static pvg_status sq_rcache_latest(pvg_backend *b, const char *kind, const char *dataset,
                                   char **body, int64_t *release_id, int64_t *created_at,
                                   pvg_error *err)
{
    bindv v[] = {BT(kind), BT(dataset)};
    return rcache_row(SQ(b), Q_RCACHE_LATEST, v, 2, body, release_id, created_at, err);
}

static pvg_status sq_vacuum(pvg_backend *b, int full, pvg_error *err)
{
    sq_backend *q = SQ(b);
    if (q->in_txn) return pvg_error_set(err, PVG_ERR_STATE, "cannot vacuum inside a transaction");
    if (full) {
        int rc = exec(q->ks, "VACUUM");
        if (rc == SQLITE_OK) rc = exec(q->db, "VACUUM");
        if (rc != SQLITE_OK) return fail(rc == SQLITE_OK ? q->db : q->ks, rc, "vacuum", err);
    }
    return sq_checkpoint(b, err);
}

static pvg_status sq_creds_foreach(pvg_backend *b, int (*fn)(void *ctx, const pvg_backend_cred *c),
                                   void *ctx, pvg_error *err)
{
    sq_backend *q = SQ(b);
    sqlite3_stmt *s;
    int own;
    pvg_status st = take(q, Q_CREDS_ALL, &s, &own, err);
    if (st != PVG_OK) return st;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        pvg_backend_cred c;
        memset(&c, 0, sizeof c);
        copy_text(s, 0, c.key_id, sizeof c.key_id);
        copy_text(s, 1, c.kind, sizeof c.kind);
        copy_text(s, 2, c.role, sizeof c.role);
        c.label = col_text(s, 3);
        size_t pn = 0;
        copy_blob(s, 4, c.pseudonym, sizeof c.pseudonym, &pn);
        c.has_pseudonym = pn == PVG_BACKEND_PSEUDONYM_BYTES;
        copy_blob(s, 5, c.secret_hash, sizeof c.secret_hash, &c.secret_hash_len);
        c.rate_per_s = sqlite3_column_double(s, 6);
        c.created_at = sqlite3_column_int64(s, 7);
        c.expires_at = sqlite3_column_int64(s, 8);
        c.revoked = sqlite3_column_int(s, 9);
        if (fn(ctx, &c)) {
            st = PVG_ERR_ABORTED;
            break;
        }
    }
    if (st == PVG_OK && rc != SQLITE_DONE) st = fail(q->db, rc, "credentials", err);
    give(s, own);
    return st;
}

static pvg_status sq_item_insert_at(pvg_backend *b, int64_t id, const pvg_item *it, int64_t at,
                                    pvg_error *err)
{
    bindv v[8];
    v[0] = BT(it->ext_id);
    item_binds(it, at, v);
    v[7] = BI(id);
    sqlite3_stmt *s;
    int own;
    pvg_status st = take(SQ(b), Q_ITEM_INSERT_AT, &s, &own, err);
    if (st != PVG_OK) return st;
    bind_all(s, v, 8);
    int rc = sqlite3_step(s);
    give(s, own);
    if ((rc & 0xff) == SQLITE_CONSTRAINT)
        return pvg_error_set(err, PVG_ERR_EXISTS, "items: row %lld or its ext_id is taken",
                             (long long)id);
    return rc == SQLITE_DONE ? PVG_OK : fail(SQ(b)->db, rc, "items", err);
}

/* ---- backups ---- */

static void join(char *out, size_t cap, const char *dir, const char *name);

/* Opens `path` read-only for a snapshot reader (WAL: no writer waits on it). */
static pvg_status snap_open(const char *path, sqlite3 **out, pvg_error *err)
{
    *out = NULL;
    pvg_status pst = pvg_datafile_prepare(path, 0, err); /* never through a link */
    if (pst != PVG_OK) return pst;
    int rc = sqlite3_open_v2(
        path, out, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_NOFOLLOW, NULL);
    if (rc != SQLITE_OK) {
        pvg_status st =
            pvg_error_set_at(err, PVG_ERR_IO, path, 0, 0, -1, "cannot open for the snapshot: %s",
                             *out ? sqlite3_errmsg(*out) : sqlite3_errstr(rc));
        sqlite3_close(*out);
        *out = NULL;
        return st;
    }
    sqlite3_busy_timeout(*out, 30000);
    return PVG_OK;
}

/* Copies the database of `src` (inside its open read transaction, so as of
 * its snapshot) to a new file `path` with SQLite's online backup API. */
static pvg_status snap_copy(sqlite3 *src, const char *path, pvg_error *err)
{
    int fd;
    pvg_status cst = pvg_datafile_open(path, O_WRONLY | O_CREAT | O_EXCL, &fd, err);
    if (cst != PVG_OK) return cst;
    close(fd);
    sqlite3 *dst = NULL;
    int rc = sqlite3_open_v2(path, &dst, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
    sqlite3_backup *bk = rc == SQLITE_OK ? sqlite3_backup_init(dst, "main", src, "main") : NULL;
    if (bk) {
        rc = sqlite3_backup_step(bk, -1);
        if (rc == SQLITE_DONE) rc = SQLITE_OK;
        int frc = sqlite3_backup_finish(bk);
        if (rc == SQLITE_OK) rc = frc;
    } else if (rc == SQLITE_OK) {
        rc = sqlite3_errcode(dst);
    }
    /* the copy is a self-contained file: no -wal next to it */
    if (rc == SQLITE_OK) rc = exec(dst, "PRAGMA journal_mode=DELETE");
    pvg_status st = PVG_OK;
    if (rc != SQLITE_OK)
        st = pvg_error_set_at(err, PVG_ERR_IO, path, 0, 0, -1, "snapshot copy: %s",
                              dst ? sqlite3_errmsg(dst) : sqlite3_errstr(rc));
    sqlite3_close(dst);
    if (st != PVG_OK) unlink(path);
    return st;
}

static pvg_status sq_snapshot_to(pvg_backend *b, const char *dest_dir, pvg_error *err)
{
    sq_backend *q = SQ(b);
    if (q->in_txn)
        return pvg_error_set(err, PVG_ERR_STATE, "snapshot: a transaction is open on this handle");
    const char *names[3] = {"keystore.db", "privguide.db", AUDIT_FILE};
    sqlite3 *src[3] = {q->ks, q->db, q->db}, *rd[3] = {NULL, NULL, NULL};
    pvg_status st = PVG_OK;
    for (int i = 0; i < 3 && st == PVG_OK; i++) {
        const char *f = sqlite3_db_filename(src[i], i == 2 ? "audit" : "main");
        st = f && *f ? snap_open(f, &rd[i], err)
                     : pvg_error_set(err, PVG_ERR_STATE, "snapshot: %s has no file name", names[i]);
    }
    /* The snapshot point: with the write locks of the three databases held
     * (as txn_begin takes them: BEGIN IMMEDIATE on the main connection locks
     * the attached audit log too), no write is half-done; the readers'
     * snapshots begin there. The locks go at once; the copy runs from the
     * snapshots. */
    int64_t ignored;
    if (st == PVG_OK) st = sq_begin(b, &ignored, err);
    if (st == PVG_OK) {
        for (int i = 0; i < 3 && st == PVG_OK; i++) {
            int rc = exec(rd[i], "BEGIN; SELECT count(*) FROM sqlite_master");
            if (rc != SQLITE_OK) st = fail(rd[i], rc, "snapshot: read transaction", err);
        }
        sq_rollback(b);
    }
    char path[3][4096];
    int made[3] = {0, 0, 0};
    for (int i = 0; i < 3 && st == PVG_OK; i++) {
        join(path[i], sizeof path[i], dest_dir, names[i]);
        st = snap_copy(rd[i], path[i], err);
        made[i] = st == PVG_OK;
    }
    for (int i = 0; i < 3; i++) {
        if (rd[i]) exec(rd[i], "COMMIT");
        sqlite3_close(rd[i]);
        if (st != PVG_OK && made[i]) unlink(path[i]);
    }
    return st;
}

/* ---- assistant conversations ---- */

static pvg_status sq_conv_put(pvg_backend *b, const unsigned char p[16], const pvg_backend_conv *c,
                              pvg_error *err)
{
    bindv v[] = {BB(p, 16),         BB(c->cid, 16),     BI(c->created_at),
                 BI(c->updated_at), BI(c->expires_day), BB(c->sealed, c->sealed_len)};
    return run(SQ(b), Q_CONV_PUT, v, 6, NULL, "conversations", err);
}

/* Steps the conversation rows of s into fn; *rows: how many. */
static pvg_status conv_rows(sq_backend *q, sqlite3_stmt *s, pvg_backend_conv_fn fn, void *ctx,
                            long long *rows, pvg_error *err)
{
    int rc;
    pvg_status st = PVG_OK;
    *rows = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        pvg_backend_conv c;
        size_t n = 0;
        copy_blob(s, 0, c.cid, sizeof c.cid, &n);
        if (n != sizeof c.cid) continue;
        c.created_at = sqlite3_column_int64(s, 1);
        c.updated_at = sqlite3_column_int64(s, 2);
        c.expires_day = sqlite3_column_int64(s, 3);
        c.sealed = sqlite3_column_blob(s, 4);
        c.sealed_len = (size_t)sqlite3_column_bytes(s, 4);
        (*rows)++;
        if (fn(ctx, &c)) {
            st = PVG_ERR_ABORTED;
            break;
        }
    }
    if (st == PVG_OK && rc != SQLITE_DONE) st = fail(q->db, rc, "conversations", err);
    return st;
}

static pvg_status sq_conv_get(pvg_backend *b, const unsigned char p[16],
                              const unsigned char cid[16], pvg_backend_conv_fn fn, void *ctx,
                              pvg_error *err)
{
    sq_backend *q = SQ(b);
    sqlite3_stmt *s;
    int own;
    pvg_status st = take(q, Q_CONV_GET, &s, &own, err);
    if (st != PVG_OK) return st;
    bindv v[] = {BB(p, 16), BB(cid, 16)};
    bind_all(s, v, 2);
    long long rows = 0;
    st = conv_rows(q, s, fn, ctx, &rows, err);
    give(s, own);
    if (st == PVG_OK && !rows)
        return pvg_error_set(err, PVG_ERR_NOT_FOUND, "conversation: no such conversation");
    return st;
}

static pvg_status sq_convs_foreach_user(pvg_backend *b, const unsigned char p[16],
                                        pvg_backend_conv_fn fn, void *ctx, pvg_error *err)
{
    sq_backend *q = SQ(b);
    sqlite3_stmt *s;
    int own;
    pvg_status st = take(q, Q_CONVS_USER, &s, &own, err);
    if (st != PVG_OK) return st;
    bindv v[] = {BB(p, 16)};
    bind_all(s, v, 1);
    long long rows = 0;
    st = conv_rows(q, s, fn, ctx, &rows, err);
    give(s, own);
    return st;
}

static pvg_status sq_convs_sweep(pvg_backend *b, int64_t day, long long *n, pvg_error *err)
{
    sq_backend *q = SQ(b);
    *n = 0;
    sqlite3_stmt *s;
    int own, row;
    bindv v[] = {BI(day)};
    pvg_status st = one(q, Q_CONVS_EXPIRED_COUNT, v, 1, &s, &own, &row, "conversations", err);
    if (st != PVG_OK) return st;
    long long c = 0;
    if (row) {
        c = sqlite3_column_int64(s, 0);
        give(s, own);
    }
    if (c > 0) st = run(q, Q_CONVS_EXPIRED_DELETE, v, 1, NULL, "conversations", err);
    if (st == PVG_OK) *n = c;
    return st;
}

/* ---- store copy: every table read back whole ---- */

static const char *col_text_or(sqlite3_stmt *s, int col, const char *dflt)
{
    const char *t = (const char *)sqlite3_column_text(s, col);
    return t ? t : dflt;
}

static pvg_status sq_meta_foreach(pvg_backend *b, pvg_backend_kv_fn fn, void *ctx, pvg_error *err)
{
    sq_backend *q = SQ(b);
    sqlite3_stmt *s;
    int own, rc;
    pvg_status st = take(q, Q_META_ALL, &s, &own, err);
    if (st != PVG_OK) return st;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW)
        if (fn(ctx, col_text_or(s, 0, ""), col_text_or(s, 1, ""))) {
            st = PVG_ERR_ABORTED;
            break;
        }
    if (st == PVG_OK && rc != SQLITE_DONE) st = fail(q->db, rc, "meta", err);
    give(s, own);
    return st;
}

static pvg_status sq_anon_foreach_source(pvg_backend *b, pvg_backend_anon_source_fn fn, void *ctx,
                                         pvg_error *err)
{
    sq_backend *q = SQ(b);
    sqlite3_stmt *s;
    int own, rc;
    pvg_status st = take(q, Q_ANON_BY_SOURCE, &s, &own, err);
    if (st != PVG_OK) return st;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        unsigned char src[16];
        size_t n = 0;
        copy_blob(s, 0, src, sizeof src, &n);
        if (n != sizeof src) continue; /* a damaged row: anon_put could not write it back */
        if (fn(ctx, src, sqlite3_column_int64(s, 1), sqlite3_column_int(s, 2),
               sqlite3_column_int64(s, 3), sqlite3_column_double(s, 4))) {
            st = PVG_ERR_ABORTED;
            break;
        }
    }
    if (st == PVG_OK && rc != SQLITE_DONE) st = fail(q->db, rc, "anonymous counts", err);
    give(s, own);
    return st;
}

static pvg_status sq_ingest_runs_foreach(pvg_backend *b, pvg_backend_ingest_fn fn, void *ctx,
                                         pvg_error *err)
{
    sq_backend *q = SQ(b);
    sqlite3_stmt *s;
    int own, rc;
    pvg_status st = take(q, Q_INGEST_RUNS_ALL, &s, &own, err);
    if (st != PVG_OK) return st;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        pvg_backend_ingest_run r = {
            .started_at = sqlite3_column_int64(s, 0),
            .finished_at = sqlite3_column_int64(s, 1),
            .format = col_text_or(s, 2, ""),
            .source = col_text_or(s, 3, ""),
            .read = sqlite3_column_int64(s, 4),
            .accepted = sqlite3_column_int64(s, 5),
            .rejected = sqlite3_column_int64(s, 6),
            .stored = sqlite3_column_int64(s, 7),
            .duplicates = sqlite3_column_int64(s, 8),
            .anonymous = sqlite3_column_int64(s, 9),
        };
        if (fn(ctx, &r)) {
            st = PVG_ERR_ABORTED;
            break;
        }
    }
    if (st == PVG_OK && rc != SQLITE_DONE) st = fail(q->db, rc, "ingest log", err);
    give(s, own);
    return st;
}

static pvg_status sq_quarantine_foreach(pvg_backend *b, pvg_backend_quarantined_fn fn, void *ctx,
                                        pvg_error *err)
{
    sq_backend *q = SQ(b);
    sqlite3_stmt *s;
    int own, rc;
    pvg_status st = take(q, Q_QUARANTINE_ALL, &s, &own, err);
    if (st != PVG_OK) return st;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        pvg_backend_quarantined r = {
            .row = sqlite3_column_int64(s, 0),
            .user_id = sqlite3_column_int64(s, 1),
            .expires_day = sqlite3_column_int64(s, 3),
            .n_events = sqlite3_column_int64(s, 4),
            .reason = col_text_or(s, 7, ""),
            .quarantined_at = sqlite3_column_int64(s, 8),
        };
        /* a pseudonym of another length cannot be a user's: kept as none */
        if (sqlite3_column_bytes(s, 2) == 16) r.pseudonym = sqlite3_column_blob(s, 2);
        r.cid = sqlite3_column_blob(s, 5);
        r.cid_len = (size_t)sqlite3_column_bytes(s, 5);
        r.sealed = sqlite3_column_blob(s, 6);
        r.sealed_len = (size_t)sqlite3_column_bytes(s, 6);
        static const unsigned char none[1] = {0};
        if (!r.cid) r.cid = none;
        if (!r.sealed) r.sealed = none;
        if (fn(ctx, &r)) {
            st = PVG_ERR_ABORTED;
            break;
        }
    }
    if (st == PVG_OK && rc != SQLITE_DONE) st = fail(q->db, rc, "quarantine", err);
    give(s, own);
    return st;
}

static pvg_status sq_quarantine_insert(pvg_backend *b, const pvg_backend_quarantined *r,
                                       pvg_error *err)
{
    bindv v[] = {BI(r->user_id),         r->pseudonym ? BB(r->pseudonym, 16) : BN,
                 BI(r->expires_day),     BI(r->n_events),
                 BB(r->cid, r->cid_len), BB(r->sealed, r->sealed_len),
                 BT(r->reason),          BI(r->quarantined_at)};
    return run(SQ(b), Q_QUARANTINE_PUT, v, 8, NULL, "quarantine", err);
}

static pvg_status sq_release_cache_foreach(pvg_backend *b, pvg_backend_cached_fn fn, void *ctx,
                                           pvg_error *err)
{
    sq_backend *q = SQ(b);
    sqlite3_stmt *s;
    int own, rc;
    pvg_status st = take(q, Q_RCACHE_ALL, &s, &own, err);
    if (st != PVG_OK) return st;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        static const unsigned char none[1] = {0};
        pvg_backend_cached c = {
            .kind = col_text_or(s, 0, ""),
            .dataset = col_text_or(s, 2, ""),
            .params = col_text_or(s, 3, ""),
            .mechanism = col_text_or(s, 4, ""),
            .release_id = sqlite3_column_int64(s, 5),
            .body = col_text_or(s, 6, ""),
            .created_at = sqlite3_column_int64(s, 7),
        };
        c.fingerprint = sqlite3_column_blob(s, 1);
        c.fp_len = (size_t)sqlite3_column_bytes(s, 1);
        if (!c.fingerprint) c.fingerprint = none;
        if (fn(ctx, &c)) {
            st = PVG_ERR_ABORTED;
            break;
        }
    }
    if (st == PVG_OK && rc != SQLITE_DONE) st = fail(q->db, rc, "release cache", err);
    give(s, own);
    return st;
}

static pvg_status sq_convs_scan(pvg_backend *b, pvg_backend_conv_scan_fn fn, void *ctx,
                                pvg_error *err)
{
    sq_backend *q = SQ(b);
    sqlite3_stmt *s;
    int own, rc;
    pvg_status st = take(q, Q_CONVS_ALL, &s, &own, err);
    if (st != PVG_OK) return st;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        pvg_backend_conv c;
        unsigned char p[16];
        size_t n = 0, pn = 0;
        copy_blob(s, 0, c.cid, sizeof c.cid, &n);
        copy_blob(s, 5, p, sizeof p, &pn);
        if (n != sizeof c.cid || pn != sizeof p) { /* not a row conv_put writes */
            st = pvg_error_set(err, PVG_ERR_CORRUPT,
                               "conversations: a row whose pseudonym or id is not 16 bytes");
            break;
        }
        c.created_at = sqlite3_column_int64(s, 1);
        c.updated_at = sqlite3_column_int64(s, 2);
        c.expires_day = sqlite3_column_int64(s, 3);
        c.sealed = sqlite3_column_blob(s, 4);
        c.sealed_len = (size_t)sqlite3_column_bytes(s, 4);
        if (fn(ctx, p, &c)) {
            st = PVG_ERR_ABORTED;
            break;
        }
    }
    if (st == PVG_OK && rc != SQLITE_DONE) st = fail(q->db, rc, "conversations", err);
    give(s, own);
    return st;
}

/* ---- the declared catalogue (statements prepared per call: a catalogue
 * load is rare and its table apart from the hot paths) ---- */

static pvg_status sq_catalog_text_put(pvg_backend *b, const char *ext_id, const char *title,
                                      const char *description, int64_t at, pvg_error *err)
{
    sqlite3 *db = SQ(b)->db;
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(db,
                                "INSERT INTO catalog_text(ext_id, title, description, updated_at)"
                                " VALUES(?1, ?2, ?3, ?4) ON CONFLICT(ext_id) DO UPDATE SET"
                                " title = excluded.title, description = excluded.description,"
                                " updated_at = excluded.updated_at",
                                -1, &s, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(s, 1, ext_id, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 2, title, -1, SQLITE_STATIC);
        if (description)
            sqlite3_bind_text(s, 3, description, -1, SQLITE_STATIC);
        else
            sqlite3_bind_null(s, 3);
        sqlite3_bind_int64(s, 4, at);
        rc = sqlite3_step(s);
        if (rc == SQLITE_DONE) rc = SQLITE_OK;
    }
    pvg_status st = rc == SQLITE_OK ? PVG_OK : fail(db, rc, "catalog text", err);
    sqlite3_finalize(s);
    return st;
}

static pvg_status sq_catalog_text_foreach(pvg_backend *b, pvg_backend_catalog_fn fn, void *ctx,
                                          pvg_error *err)
{
    sqlite3 *db = SQ(b)->db;
    sqlite3_stmt *s = NULL;
    /* BINARY collation: memcmp order of the UTF-8 bytes */
    int rc = sqlite3_prepare_v2(db,
                                "SELECT ext_id, title, description, updated_at FROM catalog_text"
                                " ORDER BY ext_id COLLATE BINARY",
                                -1, &s, NULL);
    pvg_status st = PVG_OK;
    while (rc == SQLITE_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        const char *id = (const char *)sqlite3_column_text(s, 0);
        const char *title = (const char *)sqlite3_column_text(s, 1);
        if (!id || !title) {
            st = pvg_error_set(err, PVG_ERR_CORRUPT, "catalog text: a row without id or title");
            break;
        }
        if (fn(ctx, id, title, (const char *)sqlite3_column_text(s, 2),
               sqlite3_column_int64(s, 3))) {
            st = PVG_ERR_ABORTED;
            break;
        }
        rc = SQLITE_OK;
    }
    if (st == PVG_OK && rc != SQLITE_DONE) st = fail(db, rc, "catalog text", err);
    sqlite3_finalize(s);
    return st;
}

static const pvg_backend_ops SQLITE_OPS = {
    .version = 1,
    .name = "sqlite",
    .close = sq_close,
    .set_relaxed_durability = sq_relaxed,
    .checkpoint = sq_checkpoint,
    .wal_defer = sq_wal_defer,
    .wal_frames = sq_wal_frames,
    .wal_checkpoint = sq_wal_checkpoint,
    .wal_autocheckpoint = sq_wal_autocheckpoint,
    .txn_begin = sq_begin,
    .txn_commit = sq_commit,
    .txn_rollback = sq_rollback,
    .changes_get = changes_get,
    .user_get = sq_user_get,
    .user_insert = sq_user_insert,
    .consent_set = sq_consent_set,
    .user_delete = sq_user_delete,
    .users_foreach = sq_users_foreach,
    .key_get = sq_key_get,
    .key_put = sq_key_put,
    .key_delete = sq_key_delete,
    .key_other_kid_exists = sq_key_other_kid,
    .keys_rewrap_batch = sq_rewrap_batch,
    .wrap_kid_get = sq_wrap_kid_get,
    .wrap_kid_set = sq_wrap_kid_set,
    .chunk_insert = sq_chunk_insert,
    .chunks_foreach_user = sq_chunks_foreach_user,
    .chunks_count_user = sq_chunks_count_user,
    .chunks_delete_user = sq_chunks_delete_user,
    .chunks_sweep = sq_chunks_sweep,
    .chunks_scan = sq_chunks_scan,
    .chunk_quarantine = sq_chunk_quarantine,
    .quarantine_count = sq_quarantine_count,
    .chunks_cid_index = sq_chunks_cid_index,
    .item_find = sq_item_find,
    .item_insert = sq_item_insert,
    .item_update = sq_item_update,
    .item_get = sq_item_get,
    .items_foreach = sq_items_foreach,
    .item_prices_get = sq_item_prices_get,
    .item_prices_set = sq_item_prices_set,
    .anon_put = sq_anon_put,
    .anon_foreach = sq_anon_foreach,
    .ingest_run_insert = sq_ingest_run,
    .meta_get = sq_meta_get,
    .meta_set = sq_meta_set,
    .counts = sq_counts,
    .cred_insert = sq_cred_insert,
    .cred_get = sq_cred_get,
    .cred_revoke = sq_cred_revoke,
    .cred_revoke_user = sq_cred_revoke_user,
    .ledger_charge = sq_ledger_charge,
    .releases_foreach = sq_releases_foreach,
    .audit_append = sq_audit_append,
    .audit_foreach = sq_audit_foreach,
    .audit_of_subject = sq_audit_of_subject,
    .audit_head = sq_audit_head,
    .release_get = sq_release_get,
    .release_put = sq_release_put,
    .ledger_read = sq_ledger_read,
    .ledger_limit_set = sq_ledger_limit_set,
    .suppress_add = sq_suppress_add,
    .suppress_has = sq_suppress_has,
    .suppress_foreach = sq_suppress_foreach,
    .tag_has = sq_tag_has,
    .tags_insert = sq_tags_insert,
    .chunks_stats_user = sq_chunks_stats_user,
    .release_cache_get = sq_rcache_get,
    .release_cache_put = sq_rcache_put,
    .release_cache_latest = sq_rcache_latest,
    .tags_of_user = sq_tags_of_user,
    .vacuum = sq_vacuum,
    .creds_foreach = sq_creds_foreach,
    .item_insert_at = sq_item_insert_at,
    .snapshot_to = sq_snapshot_to,
    .conv_put = sq_conv_put,
    .conv_get = sq_conv_get,
    .convs_foreach_user = sq_convs_foreach_user,
    .convs_sweep = sq_convs_sweep,
    .meta_foreach = sq_meta_foreach,
    .anon_foreach_source = sq_anon_foreach_source,
    .ingest_runs_foreach = sq_ingest_runs_foreach,
    .quarantine_foreach = sq_quarantine_foreach,
    .quarantine_insert = sq_quarantine_insert,
    .release_cache_foreach = sq_release_cache_foreach,
    .convs_scan = sq_convs_scan,
    .catalog_text_put = sq_catalog_text_put,
    .catalog_text_foreach = sq_catalog_text_foreach,
    .read_begin = sq_read_begin,
    .read_end = sq_read_end,
};

/* ---- opening and creating ---- */

static void join(char *out, size_t cap, const char *dir, const char *name)
{
    snprintf(out, cap, "%s/%s", dir, name);
}

/* Opens (with create: makes) a database of the data dir. A symbolic link in its place is refused
 * and a new file is made 0600 before SQLite opens it, so its -wal, -shm and -journal files,
 * which SQLite creates with the database's mode, are never wider (datafile.h). */
static pvg_status open_db(const char *path, int create, sqlite3 **out, pvg_error *err)
{
    *out = NULL;
    pvg_status pst = pvg_datafile_prepare(path, create, err);
    if (pst != PVG_OK) return pst;
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_NOFOLLOW |
                (create ? SQLITE_OPEN_CREATE : 0);
    int rc = sqlite3_open_v2(path, out, flags, NULL);
    if (rc != SQLITE_OK) {
        pvg_status st = pvg_error_set_at(
            err, rc == SQLITE_CANTOPEN ? PVG_ERR_NOT_FOUND : PVG_ERR_IO, path, 0, 0, -1,
            "cannot open database: %s", *out ? sqlite3_errmsg(*out) : sqlite3_errstr(rc));
        sqlite3_close(*out);
        *out = NULL;
        return st;
    }
    sqlite3_busy_timeout(*out, 30000);
    char *msg = NULL;
    rc = sqlite3_exec(*out, PRAGMAS, NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
        pvg_status st = pvg_error_set_at(err, rc == SQLITE_NOTADB ? PVG_ERR_CORRUPT : PVG_ERR_IO,
                                         path, 0, 0, -1, "%s", msg ? msg : sqlite3_errstr(rc));
        sqlite3_free(msg);
        sqlite3_close(*out);
        *out = NULL;
        return st;
    }
    return PVG_OK;
}

static pvg_status apply_schema(sqlite3 *db, const char *sql, const char *path, pvg_status code,
                               pvg_error *err)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) == SQLITE_OK) return PVG_OK;
    pvg_status st =
        pvg_error_set_at(err, code, path, 0, 0, -1, "database schema: %s", msg ? msg : "?");
    sqlite3_free(msg);
    return st;
}

/* Stores made before items had a catalog flag: add the column; an item
 * with a title came from the operator's catalog data (ingest never gives a
 * stub a title), the others are stubs. Under the write lock, so two
 * openers do not both add it. */
static pvg_status migrate_item_catalog(sqlite3 *db, pvg_error *err)
{
    static const char HAS[] = "SELECT 1 FROM pragma_table_info('items') WHERE name = 'catalog'";
    int rc = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    if (rc != SQLITE_OK) return fail(db, rc, "items catalog flag migration", err);
    sqlite3_stmt *s = NULL;
    rc = sqlite3_prepare_v2(db, HAS, -1, &s, NULL);
    int has = rc == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW;
    sqlite3_finalize(s);
    if (rc == SQLITE_OK && !has) {
        rc = sqlite3_exec(db,
                          "ALTER TABLE items ADD COLUMN catalog INTEGER NOT NULL DEFAULT 0;"
                          "UPDATE items SET catalog = 1 WHERE title IS NOT NULL;",
                          NULL, NULL, NULL);
    }
    if (rc == SQLITE_OK) rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        pvg_status st = fail(db, rc, "items catalog flag migration", err);
        (void)sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        return st;
    }
    return PVG_OK;
}

/* Stores made with the one-row-per-event duplicate index: drop it and
 * clear its mark, so that the store builds the set form from its records
 * at the next open with keys (pvg_store_dup_index_ensure). Atomic. */
static pvg_status migrate_tag_sets(sqlite3 *db, pvg_error *err)
{
    static const char HAS[] =
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'event_tags'";
    sqlite3_stmt *s = NULL;
    int has = 0;
    if (sqlite3_prepare_v2(db, HAS, -1, &s, NULL) == SQLITE_OK) has = sqlite3_step(s) == SQLITE_ROW;
    sqlite3_finalize(s);
    if (!has) return PVG_OK;
    int rc = exec(db, "BEGIN IMMEDIATE;"
                      "DROP TABLE IF EXISTS event_tags;"
                      "DELETE FROM event_tag_sets;"
                      "DELETE FROM meta WHERE key = 'dup_index';"
                      /* a meta write: the read memo follows the counter */
                      "INSERT INTO change_counter(id, value) VALUES(1, 1)"
                      " ON CONFLICT(id) DO UPDATE SET value = value + 1;"
                      "COMMIT");
    if (rc != SQLITE_OK) {
        pvg_status st = fail(db, rc, "duplicate index migration", err);
        exec(db, "ROLLBACK");
        return st;
    }
    return PVG_OK;
}

/* Stores made before items kept their recent prices: add the two columns
 * (NULL: no window yet; the item then shows its last price until its next
 * price is seen). Checked without the write lock first, so opening a store
 * that has them takes no lock. */
static pvg_status migrate_item_prices(sqlite3 *db, pvg_error *err)
{
    static const char HAS[] =
        "SELECT count(*) FROM pragma_table_info('items') WHERE name IN ('recent_prices',"
        " 'typical_price')";
    for (int locked = 0; locked < 2; locked++) {
        int rc = locked ? sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) : SQLITE_OK;
        if (rc != SQLITE_OK) return fail(db, rc, "items prices migration", err);
        sqlite3_stmt *s = NULL;
        rc = sqlite3_prepare_v2(db, HAS, -1, &s, NULL);
        int has = rc == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int(s, 0) : -1;
        sqlite3_finalize(s);
        if (!locked && has == 2) return PVG_OK;
        if (!locked) continue;
        if (rc == SQLITE_OK && has == 0)
            rc = sqlite3_exec(db,
                              "ALTER TABLE items ADD COLUMN recent_prices TEXT;"
                              "ALTER TABLE items ADD COLUMN typical_price REAL;",
                              NULL, NULL, NULL);
        if (rc == SQLITE_OK) rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
        if (rc != SQLITE_OK) {
            pvg_status st = fail(db, rc, "items prices migration", err);
            (void)sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
            return st;
        }
    }
    return PVG_OK;
}

/* Stores created before user row ids were AUTOINCREMENT: rebuild the users
 * table with it, and start the sequence above every id ever seen (users
 * and chunks, whose user rows may be gone), so no id is handed out again.
 * Atomic, and a no-op once done (another process may have done it). */
static pvg_status migrate_users(sqlite3 *db, const char *path, pvg_error *err)
{
    static const char check[] =
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'users'"
        " AND sql LIKE '%AUTOINCREMENT%'";
    sqlite3_stmt *s = NULL;
    int done = 0;
    if (sqlite3_prepare_v2(db, check, -1, &s, NULL) == SQLITE_OK)
        done = sqlite3_step(s) == SQLITE_ROW;
    sqlite3_finalize(s);
    if (done) return PVG_OK;
    int rc = exec(db, "BEGIN IMMEDIATE");
    if (rc != SQLITE_OK) return fail(db, rc, "users: migration", err);
    s = NULL;
    if (sqlite3_prepare_v2(db, check, -1, &s, NULL) == SQLITE_OK)
        done = sqlite3_step(s) == SQLITE_ROW;
    sqlite3_finalize(s);
    if (done) {
        exec(db, "ROLLBACK");
        return PVG_OK;
    }
    rc = exec(
        db,
        USERS_TABLE(
            "users_v2") "INSERT INTO users_v2(id, pseudonym, created_at, consent_personalization,"
                        " consent_analytics, consent_updated_at) SELECT id, pseudonym, created_at,"
                        " consent_personalization, consent_analytics, consent_updated_at FROM "
                        "users;"
                        "DROP TABLE users;"
                        "ALTER TABLE users_v2 RENAME TO users;"
                        "DELETE FROM sqlite_sequence WHERE name = 'users';"
                        "INSERT INTO sqlite_sequence(name, seq) VALUES('users', max("
                        " coalesce((SELECT max(id) FROM users), 0),"
                        " coalesce((SELECT max(user_id) FROM chunks), 0)));"
                        "COMMIT");
    if (rc != SQLITE_OK) {
        pvg_status st =
            pvg_error_set_at(err, PVG_ERR_IO, path, 0, 0, -1,
                             "users: migration to never-reused row ids: %s", sqlite3_errmsg(db));
        exec(db, "ROLLBACK");
        return st;
    }
    return PVG_OK;
}

/* 1 when privguide.db's meta records that the audit log is in audit.db
 * (set by create, and by the move of an old-layout log in the transaction
 * that drops the old table). */
static int audit_file_recorded(sqlite3 *db)
{
    sqlite3_stmt *s = NULL;
    int has = 0;
    if (sqlite3_prepare_v2(db, "SELECT 1 FROM main.meta WHERE key = '" AUDIT_META "'", -1, &s,
                           NULL) == SQLITE_OK)
        has = sqlite3_step(s) == SQLITE_ROW;
    sqlite3_finalize(s);
    return has;
}

/* Attaches dir/audit.db to db as schema "audit", in WAL mode like the
 * others, and gives it the audit table. With must_exist (privguide.db
 * records the log there) a missing file, or one without the audit table (a
 * 0-byte file), is PVG_ERR_CORRUPT: a new empty log would pass `audit
 * verify` with the whole log gone. Otherwise it is made (mode 0600). A
 * symbolic link in its place is refused (PVG_ERR_PERMISSION), never
 * followed. */
static pvg_status attach_audit(sqlite3 *db, const char *dir, int must_exist, pvg_error *err)
{
    char path[4096];
    join(path, sizeof path, dir, AUDIT_FILE);
    /* lstat only (datafile.h): other connections of this process hold locks on it */
    pvg_status ost = pvg_datafile_prepare(path, !must_exist, err);
    if (ost == PVG_ERR_NOT_FOUND)
        return pvg_error_set_at(err, PVG_ERR_CORRUPT, path, 0, 0, -1,
                                "missing: privguide.db records the audit log in this file "
                                "(restore it from a backup; a new empty log is not made)");
    if (ost == PVG_ERR_INVALID) /* not a regular file */
        return pvg_error_set_at(err, PVG_ERR_PERMISSION, path, 0, 0, -1,
                                "not a regular file: expected the audit log's own file");
    if (ost != PVG_OK) return ost;
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(db, "ATTACH DATABASE ?1 AS audit", -1, &s, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(s, 1, path, -1, SQLITE_TRANSIENT);
        rc = sqlite3_step(s);
        if (rc == SQLITE_DONE) rc = SQLITE_OK;
    }
    sqlite3_finalize(s);
    if (rc == SQLITE_OK)
        rc = exec(db, "PRAGMA audit.journal_mode=WAL; PRAGMA audit.synchronous=FULL;"
                      " PRAGMA audit.secure_delete=ON; PRAGMA audit.cache_size=-8192;");
    if (rc != SQLITE_OK)
        return pvg_error_set_at(err, (rc & 0xff) == SQLITE_NOTADB ? PVG_ERR_CORRUPT : PVG_ERR_IO,
                                path, 0, 0, -1, "cannot attach the audit log: %s",
                                sqlite3_errmsg(db));
    if (must_exist) {
        sqlite3_stmt *s2 = NULL;
        int has = 0;
        if (sqlite3_prepare_v2(db,
                               "SELECT 1 FROM audit.sqlite_master WHERE type = 'table'"
                               " AND name = 'audit_log'",
                               -1, &s2, NULL) == SQLITE_OK)
            has = sqlite3_step(s2) == SQLITE_ROW;
        sqlite3_finalize(s2);
        if (!has)
            return pvg_error_set_at(err, PVG_ERR_CORRUPT, path, 0, 0, -1,
                                    "no audit table: privguide.db records the audit log in this "
                                    "file (emptied or replaced?); a new empty log is not made");
    }
    return apply_schema(db, AUDIT_SCHEMA, path, PVG_ERR_CORRUPT, err);
}

/* 1 when privguide.db still holds the audit table of the old layout. */
static int old_audit_table(sqlite3 *db)
{
    sqlite3_stmt *s = NULL;
    int has = 0;
    if (sqlite3_prepare_v2(db,
                           "SELECT 1 FROM main.sqlite_master WHERE type = 'table'"
                           " AND name = 'audit_log'",
                           -1, &s, NULL) == SQLITE_OK)
        has = sqlite3_step(s) == SQLITE_ROW;
    sqlite3_finalize(s);
    return has;
}

/* Stores made when the audit log was a table of privguide.db: its rows are
 * copied to audit.db, then the old table is dropped. Two transactions, as a
 * commit across two WAL databases is atomic per file only: the copy
 * commits in audit.db alone (the rows not there yet, by seq), and the drop
 * commits in privguide.db alone, only while every old row is in audit.db
 * with the same hash (a writer of the old layout appending in between
 * makes another round). A crash between the two leaves both copies, and
 * the next open ends the move. No-op once done. */
static pvg_status migrate_audit(sqlite3 *db, const char *dir, pvg_error *err)
{
    char path[4096];
    join(path, sizeof path, dir, "privguide.db");
    for (int round = 0; round < 5; round++) {
        if (!old_audit_table(db)) return PVG_OK;
        int rc = exec(db, "BEGIN IMMEDIATE");
        /* the old table must hold audit.db's head (same seq, same hash):
         * else it is another chain (an old binary that opened the store
         * after the move began a new one), not the rest of this one */
        int other = 0;
        if (rc == SQLITE_OK && old_audit_table(db)) {
            sqlite3_stmt *s = NULL;
            rc = sqlite3_prepare_v2(db,
                                    "SELECT count(*) FROM (SELECT seq, hash FROM audit.audit_log"
                                    " ORDER BY seq DESC LIMIT 1) a WHERE NOT EXISTS (SELECT 1"
                                    " FROM main.audit_log m WHERE m.seq = a.seq AND m.hash ="
                                    " a.hash)",
                                    -1, &s, NULL);
            if (rc == SQLITE_OK) {
                rc = sqlite3_step(s);
                other = rc == SQLITE_ROW && sqlite3_column_int64(s, 0) != 0;
                rc = rc == SQLITE_ROW ? SQLITE_OK : rc;
            }
            sqlite3_finalize(s);
            if (rc == SQLITE_OK && other) {
                exec(db, "ROLLBACK");
                return pvg_error_set_at(
                    err, PVG_ERR_CORRUPT, path, 0, 0, -1,
                    "audit log: the table audit_log here does not hold the head of " AUDIT_FILE
                    " (another chain, begun by a privguide of the old layout after the move?);"
                    " not copied: keep its rows elsewhere if needed, drop it, and open again");
            }
        }
        if (rc == SQLITE_OK && old_audit_table(db))
            rc = exec(db, "INSERT INTO audit.audit_log(seq, ts, actor, action, subject, detail,"
                          " prev_hash, hash) SELECT seq, ts, actor, action, subject, detail,"
                          " prev_hash, hash FROM main.audit_log WHERE seq >"
                          " (SELECT coalesce(max(seq), 0) FROM audit.audit_log) ORDER BY seq");
        if (rc == SQLITE_OK) rc = exec(db, "COMMIT");
        if (rc == SQLITE_OK) rc = exec(db, "BEGIN IMMEDIATE");
        int moved = 0;
        if (rc == SQLITE_OK && old_audit_table(db)) {
            sqlite3_stmt *s = NULL;
            rc = sqlite3_prepare_v2(db,
                                    "SELECT count(*) FROM main.audit_log m WHERE NOT EXISTS"
                                    " (SELECT 1 FROM audit.audit_log a WHERE a.seq = m.seq"
                                    " AND a.hash = m.hash)",
                                    -1, &s, NULL);
            if (rc == SQLITE_OK) {
                rc = sqlite3_step(s);
                moved = rc == SQLITE_ROW && sqlite3_column_int64(s, 0) == 0;
                rc = rc == SQLITE_ROW ? SQLITE_OK : rc;
            }
            sqlite3_finalize(s);
            if (rc == SQLITE_OK && moved) rc = exec(db, "DROP TABLE main.audit_log");
            if (rc == SQLITE_OK && moved)
                rc = exec(db, "INSERT OR REPLACE INTO main.meta(key, value) VALUES('" AUDIT_META
                              "', '1')");
        }
        if (rc == SQLITE_OK) rc = exec(db, moved ? "COMMIT" : "ROLLBACK");
        if (rc != SQLITE_OK) {
            pvg_status st =
                pvg_error_set_at(err, PVG_ERR_IO, path, 0, 0, -1,
                                 "audit log: moving it to " AUDIT_FILE ": %s", sqlite3_errmsg(db));
            if (sqlite3_get_autocommit(db) == 0) exec(db, "ROLLBACK");
            return st;
        }
    }
    if (!old_audit_table(db)) return PVG_OK;
    return pvg_error_set_at(err, PVG_ERR_BUSY, path, 0, 0, -1,
                            "audit log: still written in privguide.db by another process (a "
                            "privguide of the old layout?); stop it and open again");
}

int pvg_sqlite_backend_exists(const char *dir)
{
    char path[4096];
    join(path, sizeof path, dir, "privguide.db");
    return access(path, F_OK) == 0;
}

pvg_status pvg_sqlite_backend_create(const char *dir, pvg_error *err)
{
    if (pvg_sqlite_backend_exists(dir))
        return pvg_error_set_at(err, PVG_ERR_EXISTS, dir, 0, 0, -1, "a store exists here already");
    char path[4096];
    sqlite3 *db = NULL;
    join(path, sizeof path, dir, "keystore.db");
    pvg_status st = open_db(path, 1, &db, err);
    if (st != PVG_OK) return st;
    st = apply_schema(db, KS_SCHEMA, path, PVG_ERR_IO, err);
    sqlite3_close(db);
    if (st != PVG_OK) return st;
    join(path, sizeof path, dir, "privguide.db");
    st = open_db(path, 1, &db, err);
    if (st != PVG_OK) return st;
    st = apply_schema(db, MAIN_SCHEMA, path, PVG_ERR_IO, err);
    if (st == PVG_OK) st = attach_audit(db, dir, 0, err);
    if (st == PVG_OK)
        st = apply_schema(db,
                          "INSERT INTO meta(key, value) VALUES('schema_version', '" SCHEMA_VERSION
                          "'),"
                          " ('dup_index', '1'), ('" AUDIT_META "', '1')",
                          path, PVG_ERR_IO, err);
    sqlite3_close(db);
    return st;
}

pvg_status pvg_sqlite_backend_open(const char *dir, pvg_backend **out, pvg_error *err)
{
    *out = NULL;
    if (!pvg_sqlite_backend_exists(dir))
        return pvg_error_set_at(err, PVG_ERR_NOT_FOUND, dir, 0, 0, -1,
                                "no privguide store here (run `privguide init` first)");
    sq_backend *q = calloc(1, sizeof *q);
    if (!q) return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    q->base.ops = &SQLITE_OPS;
    char path[4096];
    join(path, sizeof path, dir, "keystore.db");
    pvg_status st = open_db(path, 0, &q->ks, err);
    if (st == PVG_OK) {
        join(path, sizeof path, dir, "privguide.db");
        st = open_db(path, 0, &q->db, err);
    }
    /* Schema (idempotent: older stores get the new tables). */
    if (st == PVG_OK) st = apply_schema(q->ks, KS_SCHEMA, "keystore.db", PVG_ERR_CORRUPT, err);
    if (st == PVG_OK) st = apply_schema(q->db, MAIN_SCHEMA, "privguide.db", PVG_ERR_CORRUPT, err);
    if (st == PVG_OK) st = attach_audit(q->db, dir, audit_file_recorded(q->db), err);
    if (st == PVG_OK) st = migrate_audit(q->db, dir, err);
    /* (a store made before the record: from now on audit.db must be there) */
    if (st == PVG_OK && !audit_file_recorded(q->db))
        st = apply_schema(q->db,
                          "INSERT OR IGNORE INTO meta(key, value) VALUES('" AUDIT_META "', '1')",
                          "privguide.db", PVG_ERR_IO, err);
    if (st == PVG_OK) st = audit_index_open(q, err);
    if (st == PVG_OK) st = migrate_item_catalog(q->db, err);
    if (st == PVG_OK) st = migrate_item_prices(q->db, err);
    if (st == PVG_OK) st = migrate_users(q->db, "privguide.db", err);
    if (st == PVG_OK) st = migrate_tag_sets(q->db, err);
    if (st == PVG_OK)
        st = apply_schema(q->db, CHANGE_TRIGGERS, "privguide.db", PVG_ERR_CORRUPT, err);
    if (st == PVG_OK) {
        int present;
        st = sq_chunks_cid_index(&q->base, 1, &present, err);
    }
    /* The hot statements, prepared now so a damaged schema fails here. */
    static const int hot[] = {Q_USER_GET,     Q_USER_INSERT,    Q_KEY_GET,   Q_KEY_PUT,
                              Q_CHUNK_INSERT, Q_CHUNKS_OF_USER, Q_ITEM_FIND, Q_CHANGES_GET};
    for (size_t i = 0; st == PVG_OK && i < sizeof hot / sizeof *hot; i++) {
        sqlite3_stmt *s;
        int own;
        st = take(q, hot[i], &s, &own, err);
    }
    if (st != PVG_OK) {
        sq_close(&q->base);
        return st;
    }
    *out = &q->base;
    return PVG_OK;
}
