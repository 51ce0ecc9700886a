/*
 * store.c - creating and opening a data dir, the schema, transactions,
 * users' key resolution, and the catalog.
 *
 * Two SQLite databases, each in WAL mode with synchronous=FULL and
 * secure_delete on: privguide.db (everything but keys) and keystore.db
 * (wrapped data keys). A write transaction takes the key store first, then
 * the main database, and commits in the same order, so a data key is
 * durable before any record sealed under it; a crash between the two
 * commits leaves at most an unused key, which the next write replaces.
 */
#include "store/store_priv.h"
#include "store/text.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SCHEMA_VERSION "1"

static const char MAIN_SCHEMA[] =
    "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS items(id INTEGER PRIMARY KEY, ext_id TEXT NOT NULL UNIQUE,"
    "  title TEXT, category TEXT, price REAL, attrs TEXT, updated_at INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS items_category ON items(category);"
    "CREATE TABLE IF NOT EXISTS users(id INTEGER PRIMARY KEY, pseudonym BLOB NOT NULL UNIQUE,"
    "  created_at INTEGER NOT NULL, consent_personalization INTEGER NOT NULL,"
    "  consent_analytics INTEGER NOT NULL, consent_updated_at INTEGER);"
    /* A user's events are sealed in chunks (chunk.c). Besides the user's
     * row id, the plaintext is the day on which a chunk expires and the
     * number of events in it (which its length shows anyway). Record ids
     * for duplicate detection live inside the sealed chunks only. */
    "CREATE TABLE IF NOT EXISTS chunks(id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL,"
    "  expires_day INTEGER NOT NULL, n INTEGER NOT NULL, cid BLOB NOT NULL, sealed BLOB NOT NULL);"
    "CREATE INDEX IF NOT EXISTS chunks_user ON chunks(user_id);"
    "CREATE INDEX IF NOT EXISTS chunks_expiry ON chunks(expires_day);"
    /* Anonymous (user-less) rows as non-personal counts, per source: a
     * source is the fingerprint of its anonymous rows, so importing the
     * same file again replaces its counts instead of adding them twice. */
    "CREATE TABLE IF NOT EXISTS anon_counts(source BLOB NOT NULL, item_id INTEGER NOT NULL,"
    "  type INTEGER NOT NULL, count INTEGER NOT NULL, quantity REAL NOT NULL,"
    "  PRIMARY KEY(source, item_id, type)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS ingest_runs(id INTEGER PRIMARY KEY, started_at INTEGER NOT NULL,"
    "  finished_at INTEGER, format TEXT NOT NULL, source TEXT NOT NULL, read INTEGER, accepted INTEGER,"
    "  rejected INTEGER, stored INTEGER, duplicates INTEGER, anonymous INTEGER);";

static const char KS_SCHEMA[] =
    "CREATE TABLE IF NOT EXISTS ks_meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS data_keys(pseudonym BLOB PRIMARY KEY, kid BLOB NOT NULL,"
    "  wrapped BLOB NOT NULL) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS data_keys_kid ON data_keys(kid);";

static const char PRAGMAS[] = "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
                              "PRAGMA secure_delete=ON; PRAGMA temp_store=MEMORY;"
                              "PRAGMA cache_size=-65536;";

char *pvg_strdup(const char *s)
{
    if (!s) return NULL;
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p) memcpy(p, s, n);
    return p;
}

void pvg_free(void *p)
{
    free(p);
}

static void join(char *out, size_t cap, const char *dir, const char *name)
{
    snprintf(out, cap, "%s/%s", dir, name);
}

pvg_status pvg_store_sqlite_error(pvg_store *s, int rc, const char *what, pvg_error *err)
{
    pvg_status st = PVG_ERR_IO;
    if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED) st = PVG_ERR_BUSY;
    if (rc == SQLITE_NOMEM) st = PVG_ERR_NOMEM;
    if (rc == SQLITE_CORRUPT || rc == SQLITE_NOTADB) st = PVG_ERR_CORRUPT;
    if (rc == SQLITE_FULL) st = PVG_ERR_IO;
    return pvg_error_set(err, st, "%s: %s", what, s && s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
}

pvg_status pvg_store_exec(pvg_store *s, const char *sql, pvg_error *err)
{
    char *msg = NULL;
    int rc = sqlite3_exec(s->db, sql, NULL, NULL, &msg);
    if (rc == SQLITE_OK) return PVG_OK;
    pvg_status st = pvg_error_set(err, rc == SQLITE_BUSY ? PVG_ERR_BUSY : PVG_ERR_IO, "database: %s",
                                  msg ? msg : sqlite3_errstr(rc));
    sqlite3_free(msg);
    return st;
}

sqlite3 *pvg_store_sqlite(pvg_store *s)
{
    return s->db;
}

const char *pvg_store_dir(const pvg_store *s)
{
    return s->dir;
}

int64_t pvg_store_now(const pvg_store *s)
{
    return s->fixed_now ? s->fixed_now : (int64_t)time(NULL);
}

void pvg_store_set_clock(pvg_store *s, int64_t fixed_now)
{
    s->fixed_now = fixed_now;
}

int64_t pvg_store_today(const pvg_store *s)
{
    int64_t t = pvg_store_now(s);
    return t >= 0 ? t / 86400 : -((-t + 86399) / 86400);
}

void pvg_store_pseudonym(const pvg_store *s, const char *ext_user, unsigned char *out)
{
    crypto_generichash(out, PVG_PSEUDONYM_BYTES, (const unsigned char *)ext_user, strlen(ext_user),
                       s->keys.pepper, PVG_KEY_BYTES);
}

static pvg_status open_db(const char *path, int create, sqlite3 **out, pvg_error *err)
{
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (create ? SQLITE_OPEN_CREATE : 0);
    int rc = sqlite3_open_v2(path, out, flags, NULL);
    if (rc != SQLITE_OK) {
        pvg_status st = pvg_error_set_at(err, rc == SQLITE_CANTOPEN ? PVG_ERR_NOT_FOUND : PVG_ERR_IO,
                                         path, 0, 0, -1, "cannot open database: %s",
                                         *out ? sqlite3_errmsg(*out) : sqlite3_errstr(rc));
        sqlite3_close(*out);
        *out = NULL;
        return st;
    }
    sqlite3_busy_timeout(*out, 30000);
    char *msg = NULL;
    rc = sqlite3_exec(*out, PRAGMAS, NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
        pvg_status st = pvg_error_set_at(err, rc == SQLITE_NOTADB ? PVG_ERR_CORRUPT : PVG_ERR_IO, path,
                                         0, 0, -1, "%s", msg ? msg : sqlite3_errstr(rc));
        sqlite3_free(msg);
        sqlite3_close(*out);
        *out = NULL;
        return st;
    }
    if (create) chmod(path, 0600);
    return PVG_OK;
}

pvg_status pvg_store_init(const char *dir, const pvg_store_init_options *opts, pvg_error *err)
{
    pvg_status st = pvg_init();
    if (st != PVG_OK) return pvg_error_set(err, st, "the system random generator is unavailable");
    char path[4096];
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return pvg_error_set_at(err, PVG_ERR_IO, dir, 0, 0, -1, "cannot create directory: %s",
                                strerror(errno));
    join(path, sizeof path, dir, "privguide.db");
    if (access(path, F_OK) == 0)
        return pvg_error_set_at(err, PVG_ERR_EXISTS, dir, 0, 0, -1, "a store exists here already");
    int in_env = opts && opts->master_key_in_env;
    if (in_env && !(getenv(PVG_ENV_MASTER_KEY) && *getenv(PVG_ENV_MASTER_KEY)))
        return pvg_error_set(err, PVG_ERR_INVALID, "the master key is to come from %s, which is not set",
                             PVG_ENV_MASTER_KEY);
    const char *policy = opts && opts->policy_json ? opts->policy_json : pvg_policy_default_text();
    pvg_policy pol;
    join(path, sizeof path, dir, "policy.json");
    st = pvg_policy_parse(policy, path, &pol, err);
    if (st != PVG_OK) return st;
    pvg_policy_free(&pol);

    join(path, sizeof path, dir, "master.key");
    if (access(path, F_OK) == 0)
        return pvg_error_set_at(err, PVG_ERR_EXISTS, path, 0, 0, -1,
                                "a key file exists already; refusing to overwrite it");
    st = pvg_keys_create_file(path, in_env, err);
    if (st != PVG_OK) return st;

    join(path, sizeof path, dir, "policy.json");
    FILE *f = fopen(path, "wx");
    if (!f && errno == EEXIST) f = NULL; /* keep an operator-written policy */
    if (f) {
        fputs(policy, f);
        if (fclose(f) != 0)
            return pvg_error_set_at(err, PVG_ERR_IO, path, 0, 0, -1, "write failed: %s", strerror(errno));
    }

    sqlite3 *db = NULL;
    join(path, sizeof path, dir, "keystore.db");
    st = open_db(path, 1, &db, err);
    if (st != PVG_OK) return st;
    char *msg = NULL;
    if (sqlite3_exec(db, KS_SCHEMA, NULL, NULL, &msg) != SQLITE_OK) {
        st = pvg_error_set_at(err, PVG_ERR_IO, path, 0, 0, -1, "%s", msg);
        sqlite3_free(msg);
    }
    sqlite3_close(db);
    if (st != PVG_OK) return st;

    join(path, sizeof path, dir, "privguide.db");
    st = open_db(path, 1, &db, err);
    if (st != PVG_OK) return st;
    if (sqlite3_exec(db, MAIN_SCHEMA, NULL, NULL, &msg) != SQLITE_OK ||
        sqlite3_exec(db, "INSERT INTO meta(key, value) VALUES('schema_version', '" SCHEMA_VERSION "')",
                     NULL, NULL, &msg) != SQLITE_OK) {
        st = pvg_error_set_at(err, PVG_ERR_IO, path, 0, 0, -1, "%s", msg);
        sqlite3_free(msg);
    }
    sqlite3_close(db);
    return st;
}

static pvg_status read_file(const char *path, char **out, pvg_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return pvg_error_set_at(err, errno == ENOENT ? PVG_ERR_NOT_FOUND : PVG_ERR_IO, path, 0, 0, -1,
                                "cannot open: %s", strerror(errno));
    size_t cap = 8192, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (n < cap - 1) break;
        if (cap > (16u << 20)) {
            free(buf);
            fclose(f);
            return pvg_error_set_at(err, PVG_ERR_INVALID, path, 0, 0, -1, "file larger than 16 MiB");
        }
        char *p = realloc(buf, cap * 2);
        if (!p) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = p;
        cap *= 2;
    }
    fclose(f);
    if (!buf) return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    buf[n] = '\0';
    *out = buf;
    return PVG_OK;
}

static pvg_status prepare(pvg_store *s, sqlite3 *db, sqlite3_stmt **st, const char *sql, pvg_error *err)
{
    int rc = sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, st, NULL);
    if (rc != SQLITE_OK) return pvg_error_set(err, PVG_ERR_CORRUPT, "database schema: %s", sqlite3_errmsg(db));
    return PVG_OK;
}

pvg_status pvg_store_open(const char *dir, pvg_store **out, pvg_error *err)
{
    *out = NULL;
    pvg_status st = pvg_init();
    if (st != PVG_OK) return pvg_error_set(err, st, "the system random generator is unavailable");
    char path[4096];
    join(path, sizeof path, dir, "privguide.db");
    if (access(path, F_OK) != 0)
        return pvg_error_set_at(err, PVG_ERR_NOT_FOUND, dir, 0, 0, -1,
                                "no privguide store here (run `privguide init` first)");
    pvg_store *s = calloc(1, sizeof *s);
    if (!s) return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    s->dir = pvg_strdup(dir);
    s->rng = pvg_rng_new_secure();
    if (!s->dir || !s->rng || pvg_keycache_init(&s->cache, 1u << 14) != PVG_OK) {
        pvg_store_close(s);
        return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    }
    join(path, sizeof path, dir, "master.key");
    st = pvg_keys_load(path, &s->keys, err);
    if (st != PVG_OK) goto fail;
    s->dedup_state = sodium_malloc(sizeof *s->dedup_state);
    if (!s->dedup_state) {
        st = pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
        goto fail;
    }
    crypto_generichash_init(s->dedup_state, s->keys.dedup, PVG_KEY_BYTES, PVG_RID_BYTES);
    join(path, sizeof path, dir, "policy.json");
    char *policy_text = NULL;
    st = read_file(path, &policy_text, err);
    if (st != PVG_OK) goto fail;
    st = pvg_policy_parse(policy_text, path, &s->policy, err);
    free(policy_text);
    if (st != PVG_OK) goto fail;
    join(path, sizeof path, dir, "keystore.db");
    st = open_db(path, 0, &s->ks, err);
    if (st != PVG_OK) goto fail;
    join(path, sizeof path, dir, "privguide.db");
    st = open_db(path, 0, &s->db, err);
    if (st != PVG_OK) goto fail;
    /* Schema (idempotent: older stores get new tables). */
    char *msg = NULL;
    if (sqlite3_exec(s->ks, KS_SCHEMA, NULL, NULL, &msg) != SQLITE_OK ||
        sqlite3_exec(s->db, MAIN_SCHEMA, NULL, NULL, &msg) != SQLITE_OK) {
        st = pvg_error_set(err, PVG_ERR_CORRUPT, "database schema: %s", msg ? msg : "?");
        sqlite3_free(msg);
        goto fail;
    }
    /* The master key must be the one (or, mid-rotation, one of the two)
     * that wraps the stored data keys. */
    sqlite3_stmt *chk = NULL;
    if (prepare(s, s->ks, &chk, "SELECT 1 FROM data_keys WHERE kid NOT IN (?1, ?2) LIMIT 1", err) != PVG_OK) {
        st = PVG_ERR_CORRUPT;
        goto fail;
    }
    sqlite3_bind_blob(chk, 1, s->keys.kid, PVG_KID_BYTES, SQLITE_STATIC);
    sqlite3_bind_blob(chk, 2, s->keys.has_next ? s->keys.next_kid : s->keys.kid, PVG_KID_BYTES,
                      SQLITE_STATIC);
    int rc = sqlite3_step(chk);
    sqlite3_finalize(chk);
    if (rc == SQLITE_ROW) {
        st = pvg_error_set_at(err, PVG_ERR_CRYPTO, dir, 0, 0, -1,
                              "the master key does not match the key store (wrong %s or key file?)",
                              PVG_ENV_MASTER_KEY);
        goto fail;
    }
    if ((st = prepare(s, s->db, &s->st_user_find, "SELECT id FROM users WHERE pseudonym = ?1", err)) ||
        (st = prepare(s, s->db, &s->st_user_insert,
                      "INSERT INTO users(pseudonym, created_at, consent_personalization, consent_analytics)"
                      " VALUES(?1, ?2, ?3, ?4)",
                      err)) ||
        (st = prepare(s, s->ks, &s->st_key_get, "SELECT kid, wrapped FROM data_keys WHERE pseudonym = ?1", err)) ||
        (st = prepare(s, s->ks, &s->st_key_put,
                      "INSERT OR REPLACE INTO data_keys(pseudonym, kid, wrapped) VALUES(?1, ?2, ?3)", err)) ||
        (st = prepare(s, s->db, &s->st_chunk_insert,
                      "INSERT INTO chunks(user_id, expires_day, n, cid, sealed) VALUES(?1, ?2, ?5, ?3, ?4)", err)) ||
        (st = prepare(s, s->db, &s->st_item_find, "SELECT id, title, price FROM items WHERE ext_id = ?1", err)) ||
        (st = prepare(s, s->db, &s->st_item_insert,
                      "INSERT INTO items(ext_id, title, category, price, attrs, updated_at) VALUES(?1, ?2, ?3, ?4, ?5, ?6)",
                      err)) ||
        (st = prepare(s, s->db, &s->st_item_update,
                      "UPDATE items SET title = coalesce(?2, title), category = coalesce(?3, category),"
                      " price = coalesce(?4, price), attrs = coalesce(?5, attrs), updated_at = ?6 WHERE id = ?1",
                      err)) ||
        (st = prepare(s, s->db, &s->st_consent_get,
                      "SELECT consent_personalization, consent_analytics FROM users WHERE pseudonym = ?1", err)) ||
        (st = prepare(s, s->db, &s->st_chunks_of_user, "SELECT expires_day, cid, sealed FROM chunks WHERE user_id = ?1", err)) ||
        (st = prepare(s, s->db, &s->st_anon_count,
                      "INSERT OR REPLACE INTO anon_counts(source, item_id, type, count, quantity)"
                      " VALUES(?1, ?2, ?3, ?4, ?5)",
                      err)))
        goto fail;
    *out = s;
    return PVG_OK;
fail:
    pvg_store_close(s);
    return st;
}

void pvg_store_close(pvg_store *s)
{
    if (!s) return;
    sqlite3_stmt **stmts[] = {&s->st_user_find,  &s->st_user_insert, &s->st_key_get,
                              &s->st_key_put,    &s->st_chunk_insert, &s->st_item_find,
                              &s->st_item_insert, &s->st_item_update, &s->st_anon_count,
                              &s->st_chunks_of_user, &s->st_consent_get};
    for (size_t i = 0; i < sizeof stmts / sizeof *stmts; i++) sqlite3_finalize(*stmts[i]);
    if (s->in_txn) pvg_store_rollback(s);
    sqlite3_close(s->db);
    sqlite3_close(s->ks);
    pvg_keys_free(&s->keys);
    if (s->dedup_state) sodium_free(s->dedup_state);
    pvg_keycache_free(&s->cache);
    pvg_policy_free(&s->policy);
    pvg_rng_free(s->rng);
    free(s->dir);
    free(s);
}

/* ---- transactions ---- */

static long long read_write_gen(pvg_store *s)
{
    sqlite3_stmt *q = NULL;
    long long g = 0;
    if (sqlite3_prepare_v2(s->db, "SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'write_gen'", -1, &q,
                           NULL) == SQLITE_OK &&
        sqlite3_step(q) == SQLITE_ROW)
        g = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    return g;
}

pvg_status pvg_store_begin(pvg_store *s, pvg_error *err)
{
    if (s->in_txn) return pvg_error_set(err, PVG_ERR_STATE, "a transaction is open already");
    int rc = sqlite3_exec(s->ks, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        return pvg_error_set(err, PVG_ERR_BUSY, "key store is locked: %s", sqlite3_errmsg(s->ks));
    rc = sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        sqlite3_exec(s->ks, "ROLLBACK", NULL, NULL, NULL);
        return pvg_error_set(err, PVG_ERR_BUSY, "database is locked: %s", sqlite3_errmsg(s->db));
    }
    s->in_txn = 1;
    long long gen = read_write_gen(s);
    if (gen != s->write_gen) s->foreign_writes++;
    s->write_gen = gen;
    /* Refuse to wrap keys under a master key a rotation has retired. */
    sqlite3_stmt *q = NULL;
    pvg_status st = PVG_OK;
    if (sqlite3_prepare_v2(s->ks, "SELECT value FROM ks_meta WHERE key = 'wrap_kid'", -1, &q, NULL) ==
            SQLITE_OK &&
        sqlite3_step(q) == SQLITE_ROW) {
        /* Fine when it names the key we wrap under, or (mid-rotation, the
         * rotation not having claimed it yet) our current key. */
        char mine[2 * PVG_KID_BYTES + 1], cur[2 * PVG_KID_BYTES + 1];
        sodium_bin2hex(mine, sizeof mine, s->keys.has_next ? s->keys.next_kid : s->keys.kid, PVG_KID_BYTES);
        sodium_bin2hex(cur, sizeof cur, s->keys.kid, PVG_KID_BYTES);
        const char *v = (const char *)sqlite3_column_text(q, 0);
        if (v && strcmp(v, mine) != 0 && strcmp(v, cur) != 0)
            st = pvg_error_set(err, PVG_ERR_BUSY,
                               "the master key was rotated by another process; reopen the store");
    }
    sqlite3_finalize(q);
    if (st != PVG_OK) pvg_store_rollback(s);
    return st;
}

pvg_status pvg_store_commit(pvg_store *s, pvg_error *err)
{
    if (!s->in_txn) return pvg_error_set(err, PVG_ERR_STATE, "no open transaction");
    /* Count the write, so other writers know their cached view is stale. */
    int rc = sqlite3_exec(s->db,
                          "INSERT INTO meta(key, value) VALUES('write_gen', '1') ON CONFLICT(key)"
                          " DO UPDATE SET value = CAST(value AS INTEGER) + 1",
                          NULL, NULL, NULL);
    if (rc == SQLITE_OK) s->write_gen = read_write_gen(s);
    rc = sqlite3_exec(s->ks, "COMMIT", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        pvg_status st = pvg_error_set(err, PVG_ERR_IO, "key store commit: %s", sqlite3_errmsg(s->ks));
        pvg_store_rollback(s);
        return st;
    }
    rc = sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        pvg_status st = pvg_error_set(err, PVG_ERR_IO, "database commit: %s", sqlite3_errmsg(s->db));
        pvg_store_rollback(s);
        return st;
    }
    s->in_txn = 0;
    return PVG_OK;
}

void pvg_store_rollback(pvg_store *s)
{
    if (sqlite3_get_autocommit(s->ks) == 0) sqlite3_exec(s->ks, "ROLLBACK", NULL, NULL, NULL);
    if (sqlite3_get_autocommit(s->db) == 0) sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    s->in_txn = 0;
    /* Cached keys of users created in the rolled-back transaction are gone. */
    sodium_memzero(s->cache.slots, s->cache.cap * sizeof *s->cache.slots);
    s->cache.n = 0;
}

pvg_status pvg_store_checkpoint(pvg_store *s, pvg_error *err)
{
    int rc1 = sqlite3_wal_checkpoint_v2(s->ks, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
    int rc2 = sqlite3_wal_checkpoint_v2(s->db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
    if (rc1 != SQLITE_OK || rc2 != SQLITE_OK)
        return pvg_error_set(err, PVG_ERR_BUSY,
                             "could not checkpoint the write-ahead logs (another process is reading?): %s",
                             rc1 != SQLITE_OK ? sqlite3_errmsg(s->ks) : sqlite3_errmsg(s->db));
    return PVG_OK;
}

/* ---- users ---- */

pvg_status pvg_store_user_resolve(pvg_store *s, const unsigned char p[16], int create,
                                  pvg_keycache_entry **out, int *created, pvg_error *err)
{
    if (created) *created = 0;
    pvg_keycache_entry *e = pvg_keycache_find(&s->cache, p);
    if (e) {
        *out = e;
        return PVG_OK;
    }
    sqlite3_stmt *q = s->st_user_find;
    sqlite3_reset(q);
    sqlite3_bind_blob(q, 1, p, 16, SQLITE_STATIC);
    int rc = sqlite3_step(q);
    int64_t uid = rc == SQLITE_ROW ? sqlite3_column_int64(q, 0) : 0;
    sqlite3_reset(q);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) return pvg_store_sqlite_error(s, rc, "users", err);
    if (uid) {
        sqlite3_stmt *k = s->st_key_get;
        sqlite3_reset(k);
        sqlite3_bind_blob(k, 1, p, 16, SQLITE_STATIC);
        rc = sqlite3_step(k);
        if (rc == SQLITE_ROW) {
            e = pvg_keycache_insert(&s->cache, p);
            e->user_id = uid;
            pvg_status st = sqlite3_column_bytes(k, 0) == PVG_KID_BYTES
                                ? pvg_keys_unwrap(&s->keys, sqlite3_column_blob(k, 0), p,
                                                  sqlite3_column_blob(k, 1),
                                                  (size_t)sqlite3_column_bytes(k, 1), e->key)
                                : PVG_ERR_CRYPTO;
            sqlite3_reset(k);
            if (st != PVG_OK) {
                pvg_keycache_remove(&s->cache, p);
                return pvg_error_set(err, PVG_ERR_CRYPTO,
                                     "user row %lld: the data key cannot be unwrapped with the master key",
                                     (long long)uid);
            }
            *out = e;
            return PVG_OK;
        }
        sqlite3_reset(k);
        if (rc != SQLITE_DONE) return pvg_error_set(err, PVG_ERR_IO, "key store: %s", sqlite3_errmsg(s->ks));
        /* A user row without a key: a deletion was interrupted after the key
         * was destroyed. The records are unreadable; finish the deletion. */
        if (!create) return pvg_error_set(err, PVG_ERR_NOT_FOUND, "unknown user");
        char sql[160];
        snprintf(sql, sizeof sql, "DELETE FROM chunks WHERE user_id = %lld; DELETE FROM users WHERE id = %lld;",
                 (long long)uid, (long long)uid);
        pvg_status st = pvg_store_exec(s, sql, err);
        if (st != PVG_OK) return st;
    }
    if (!create) return pvg_error_set(err, PVG_ERR_NOT_FOUND, "unknown user");
    q = s->st_user_insert;
    sqlite3_reset(q);
    sqlite3_bind_blob(q, 1, p, 16, SQLITE_STATIC);
    sqlite3_bind_int64(q, 2, pvg_store_now(s));
    sqlite3_bind_int(q, 3, s->policy.default_personalization);
    sqlite3_bind_int(q, 4, s->policy.default_analytics);
    rc = sqlite3_step(q);
    sqlite3_reset(q);
    if (rc != SQLITE_DONE) return pvg_store_sqlite_error(s, rc, "users", err);
    uid = sqlite3_last_insert_rowid(s->db);
    e = pvg_keycache_insert(&s->cache, p);
    e->user_id = uid;
    pvg_rng_bytes(s->rng, e->key, PVG_KEY_BYTES);
    unsigned char w[PVG_WRAPPED_BYTES];
    const unsigned char *mk = s->keys.has_next ? s->keys.next : s->keys.master;
    const unsigned char *kid = s->keys.has_next ? s->keys.next_kid : s->keys.kid;
    pvg_keys_wrap(s, mk, p, e->key, w);
    sqlite3_stmt *k = s->st_key_put;
    sqlite3_reset(k);
    sqlite3_bind_blob(k, 1, p, 16, SQLITE_STATIC);
    sqlite3_bind_blob(k, 2, kid, PVG_KID_BYTES, SQLITE_STATIC);
    sqlite3_bind_blob(k, 3, w, sizeof w, SQLITE_STATIC);
    rc = sqlite3_step(k);
    sqlite3_reset(k);
    if (rc != SQLITE_DONE) {
        pvg_keycache_remove(&s->cache, p);
        return pvg_error_set(err, PVG_ERR_IO, "key store: %s", sqlite3_errmsg(s->ks));
    }
    if (created) *created = 1;
    *out = e;
    return PVG_OK;
}

pvg_status pvg_store_user_id(pvg_store *s, const char *ext_user, int64_t *user_id, pvg_error *err)
{
    unsigned char p[16];
    pvg_store_pseudonym(s, ext_user, p);
    pvg_keycache_entry *e;
    pvg_status st = pvg_store_user_resolve(s, p, 0, &e, NULL, err);
    if (st != PVG_OK) return st;
    *user_id = e->user_id;
    return PVG_OK;
}

int pvg_store_user_exists(pvg_store *s, const char *ext_user, pvg_error *err)
{
    int64_t id;
    pvg_status st = pvg_store_user_id(s, ext_user, &id, err);
    if (st == PVG_OK) return 1;
    if (st == PVG_ERR_NOT_FOUND) {
        pvg_error_clear(err);
        return 0;
    }
    return st;
}

/* ---- catalog ---- */

pvg_status pvg_store_item_put(pvg_store *s, const pvg_item *it, int64_t *id_out, pvg_error *err)
{
    if (!it || !it->ext_id || !*it->ext_id)
        return pvg_error_set(err, PVG_ERR_INVALID, "item: ext_id is required");
    if (it->attrs_json) {
        long long bad = pvg_utf8_invalid_at(it->attrs_json, strlen(it->attrs_json));
        if (bad >= 0) return pvg_error_set(err, PVG_ERR_INVALID, "item attributes: invalid UTF-8 at byte %lld", bad);
    }
    sqlite3_stmt *q = s->st_item_find;
    sqlite3_reset(q);
    sqlite3_bind_text(q, 1, it->ext_id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(q);
    int64_t id = rc == SQLITE_ROW ? sqlite3_column_int64(q, 0) : 0;
    sqlite3_reset(q);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) return pvg_store_sqlite_error(s, rc, "items", err);
    sqlite3_stmt *w = id ? s->st_item_update : s->st_item_insert;
    sqlite3_reset(w);
    if (id)
        sqlite3_bind_int64(w, 1, id);
    else
        sqlite3_bind_text(w, 1, it->ext_id, -1, SQLITE_STATIC);
    if (it->title) sqlite3_bind_text(w, 2, it->title, -1, SQLITE_STATIC); else sqlite3_bind_null(w, 2);
    if (it->category) sqlite3_bind_text(w, 3, it->category, -1, SQLITE_STATIC); else sqlite3_bind_null(w, 3);
    if (it->price >= 0) sqlite3_bind_double(w, 4, it->price); else sqlite3_bind_null(w, 4);
    if (it->attrs_json) sqlite3_bind_text(w, 5, it->attrs_json, -1, SQLITE_STATIC); else sqlite3_bind_null(w, 5);
    sqlite3_bind_int64(w, 6, pvg_store_now(s));
    rc = sqlite3_step(w);
    sqlite3_reset(w);
    if (rc != SQLITE_DONE) return pvg_store_sqlite_error(s, rc, "items", err);
    if (id_out) *id_out = id ? id : sqlite3_last_insert_rowid(s->db);
    return PVG_OK;
}

pvg_status pvg_store_item_id_for(pvg_store *s, const char *ext_id, int create, int64_t *id,
                                 pvg_error *err)
{
    sqlite3_stmt *q = s->st_item_find;
    sqlite3_reset(q);
    sqlite3_bind_text(q, 1, ext_id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(q);
    *id = rc == SQLITE_ROW ? sqlite3_column_int64(q, 0) : 0;
    sqlite3_reset(q);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) return pvg_store_sqlite_error(s, rc, "items", err);
    if (*id) return PVG_OK;
    if (!create) return pvg_error_set(err, PVG_ERR_NOT_FOUND, "unknown item '%.80s'", ext_id);
    pvg_item it = {0};
    it.ext_id = ext_id;
    it.price = -1;
    return pvg_store_item_put(s, &it, id, err);
}

static pvg_item *item_from_row(sqlite3_stmt *q)
{
    const char *cols[4];
    size_t total = sizeof(pvg_item);
    for (int i = 0; i < 4; i++) {
        cols[i] = (const char *)sqlite3_column_text(q, i == 0 ? 1 : i == 1 ? 2 : i == 2 ? 3 : 5);
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
    it->price = sqlite3_column_type(q, 4) == SQLITE_NULL ? -1 : sqlite3_column_double(q, 4);
    return it;
}

static pvg_status item_query(pvg_store *s, const char *sql, const char *text, int64_t id,
                             pvg_item **out, pvg_error *err)
{
    sqlite3_stmt *q = NULL;
    *out = NULL;
    int rc = sqlite3_prepare_v2(s->db, sql, -1, &q, NULL);
    if (rc != SQLITE_OK) return pvg_store_sqlite_error(s, rc, "items", err);
    if (text) sqlite3_bind_text(q, 1, text, -1, SQLITE_STATIC); else sqlite3_bind_int64(q, 1, id);
    rc = sqlite3_step(q);
    pvg_status st = PVG_OK;
    if (rc == SQLITE_ROW) {
        *out = item_from_row(q);
        if (!*out) st = pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    } else if (rc == SQLITE_DONE) {
        if (text) st = pvg_error_set(err, PVG_ERR_NOT_FOUND, "unknown item '%.80s'", text);
        else st = pvg_error_set(err, PVG_ERR_NOT_FOUND, "unknown item row %lld", (long long)id);
    } else
        st = pvg_store_sqlite_error(s, rc, "items", err);
    sqlite3_finalize(q);
    return st;
}

#define ITEM_COLS "SELECT id, ext_id, title, category, price, attrs FROM items"

pvg_status pvg_store_item_get(pvg_store *s, const char *ext_id, pvg_item **out, pvg_error *err)
{
    return item_query(s, ITEM_COLS " WHERE ext_id = ?1", ext_id ? ext_id : "", 0, out, err);
}

pvg_status pvg_store_item_get_by_id(pvg_store *s, int64_t id, pvg_item **out, pvg_error *err)
{
    return item_query(s, ITEM_COLS " WHERE id = ?1", NULL, id, out, err);
}

void pvg_item_free(pvg_item *item)
{
    free(item);
}

pvg_status pvg_store_items_foreach(pvg_store *s, int (*fn)(void *ctx, const pvg_item *item),
                                   void *ctx, pvg_error *err)
{
    sqlite3_stmt *q = NULL;
    int rc = sqlite3_prepare_v2(s->db, ITEM_COLS " ORDER BY id", -1, &q, NULL);
    if (rc != SQLITE_OK) return pvg_store_sqlite_error(s, rc, "items", err);
    pvg_status st = PVG_OK;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        pvg_item it = {0};
        it.id = sqlite3_column_int64(q, 0);
        it.ext_id = (const char *)sqlite3_column_text(q, 1);
        it.title = (const char *)sqlite3_column_text(q, 2);
        it.category = (const char *)sqlite3_column_text(q, 3);
        it.price = sqlite3_column_type(q, 4) == SQLITE_NULL ? -1 : sqlite3_column_double(q, 4);
        it.attrs_json = (const char *)sqlite3_column_text(q, 5);
        if (fn(ctx, &it)) {
            st = PVG_ERR_ABORTED;
            break;
        }
    }
    if (st == PVG_OK && rc != SQLITE_DONE) st = pvg_store_sqlite_error(s, rc, "items", err);
    sqlite3_finalize(q);
    return st;
}

pvg_status pvg_store_anonymous_foreach(pvg_store *s,
                                       int (*fn)(void *ctx, int64_t item_id, pvg_event_type type,
                                                 long long count, double quantity),
                                       void *ctx, pvg_error *err)
{
    sqlite3_stmt *q = NULL;
    int rc = sqlite3_prepare_v2(s->db, "SELECT item_id, type, sum(count), sum(quantity) FROM anon_counts GROUP BY item_id, type ORDER BY item_id, type",
                                -1, &q, NULL);
    if (rc != SQLITE_OK) return pvg_store_sqlite_error(s, rc, "anonymous counts", err);
    pvg_status st = PVG_OK;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW)
        if (fn(ctx, sqlite3_column_int64(q, 0), (pvg_event_type)sqlite3_column_int(q, 1),
               sqlite3_column_int64(q, 2), sqlite3_column_double(q, 3))) {
            st = PVG_ERR_ABORTED;
            break;
        }
    if (st == PVG_OK && rc != SQLITE_DONE) st = pvg_store_sqlite_error(s, rc, "anonymous counts", err);
    sqlite3_finalize(q);
    return st;
}

static long long count_of(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *q = NULL;
    long long n = -1;
    if (sqlite3_prepare_v2(db, sql, -1, &q, NULL) == SQLITE_OK && sqlite3_step(q) == SQLITE_ROW)
        n = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    return n;
}

pvg_status pvg_store_counts_get(pvg_store *s, pvg_store_counts *out, pvg_error *err)
{
    out->users = count_of(s->db, "SELECT count(*) FROM users");
    out->items = count_of(s->db, "SELECT count(*) FROM items");
    out->events = count_of(s->db, "SELECT coalesce(sum(n), 0) FROM chunks");
    out->anonymous_rows = count_of(s->db, "SELECT coalesce(sum(count), 0) FROM anon_counts");
    out->wrapped_keys = count_of(s->ks, "SELECT count(*) FROM data_keys");
    if (out->users < 0 || out->items < 0 || out->events < 0 || out->wrapped_keys < 0)
        return pvg_error_set(err, PVG_ERR_IO, "database: %s", sqlite3_errmsg(s->db));
    return PVG_OK;
}
