/*
 * test_audit.c - the hash-chained audit log: appends (single and grouped),
 * the chain across reopen, and the verifier naming exactly which entry was
 * edited (with and without rehashing), removed (middle, head, tail against
 * an anchored head), reordered, or deleted and re-chained without the key;
 * logs of old versions (unkeyed up to the entry the key file records).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "t_rawdb.h"

#include <privguide/audit.h>

#include "store/store_priv.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef struct fx {
    char dir[128];
    pvg_store *s;
} fx;

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/pvg_test_audit_XXXXXX");
    if (!mkdtemp(f->dir)) return -1;
    strcat(f->dir, "/d");
    if (pvg_store_init(f->dir, NULL, NULL) != PVG_OK) return -1;
    if (pvg_store_open(f->dir, &f->s, NULL) != PVG_OK) return -1;
    for (int i = 1; i <= 10; i++) {
        char detail[32];
        snprintf(detail, sizeof detail, "access %d", i);
        pvg_audit_record r = {1000 + i, "key:abc", "export", "00ff", detail};
        int64_t seq = 0;
        if (pvg_audit_append(f->s, &r, &seq, NULL) != PVG_OK || seq != i) return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    pvg_store_free(f->s);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%.*s'", (int)(strlen(f->dir) - 2), f->dir);
    int rc = system(cmd);
    free(f);
    return rc == 0 ? 0 : -1;
}

static void sql(fx *f, const char *q)
{
    assert_int_equal(t_rawdb_exec(f->dir, "audit.db", q), SQLITE_OK);
}

static void test_intact(void **state)
{
    fx *f = *state;
    pvg_audit_report rep;
    assert_int_equal(pvg_audit_verify(f->s, NULL, &rep, NULL), PVG_OK);
    assert_int_equal(rep.entries, 10);
    assert_int_equal(rep.first_seq, 1);
    assert_int_equal(rep.last_seq, 10);
    assert_int_equal(strlen(rep.head_hex), 64);
    assert_int_equal(rep.n_problems, 0);
    /* grouped append continues the same chain, also after reopening */
    pvg_store_free(f->s);
    assert_int_equal(pvg_store_open(f->dir, &f->s, NULL), PVG_OK);
    pvg_audit_record rs[3] = {{0, "a", "delete", "", NULL},
                              {0, "b", "export", "x", "d"},
                              {0, "c", "consent_change", "y", ""}};
    assert_int_equal(pvg_audit_append_many(f->s, rs, 3, NULL), PVG_OK);
    char head[65];
    memcpy(head, rep.head_hex, sizeof head);
    assert_int_equal(pvg_audit_verify(f->s, head, &rep, NULL), PVG_OK); /* old head still there */
    assert_int_equal(rep.entries, 13);
}

static void test_bad_records(void **state)
{
    fx *f = *state;
    pvg_audit_record r = {0, "", "x", NULL, NULL};
    pvg_error e;
    assert_int_equal(pvg_audit_append(f->s, &r, NULL, &e), PVG_ERR_INVALID);
    char *big = malloc(PVG_AUDIT_FIELD_MAX + 2);
    memset(big, 'a', PVG_AUDIT_FIELD_MAX + 1);
    big[PVG_AUDIT_FIELD_MAX + 1] = 0;
    pvg_audit_record r2 = {0, "a", "b", NULL, big};
    assert_int_equal(pvg_audit_append(f->s, &r2, NULL, &e), PVG_ERR_INVALID);
    assert_non_null(strstr(e.text, "detail"));
    free(big);
    /* grouped: all or nothing */
    pvg_audit_record rs[2] = {{0, "a", "b", NULL, NULL}, {0, NULL, "b", NULL, NULL}};
    assert_int_equal(pvg_audit_append_many(f->s, rs, 2, &e), PVG_ERR_INVALID);
    pvg_audit_report rep;
    assert_int_equal(pvg_audit_verify(f->s, NULL, &rep, NULL), PVG_OK);
    assert_int_equal(rep.entries, 10);
    assert_int_equal(pvg_audit_verify(f->s, "zz", &rep, &e), PVG_ERR_INVALID);
}

static void test_edited(void **state)
{
    t_rawdb_require_sqlite_env(); /* tampers with the SQLite files */
    fx *f = *state;
    sql(f, "UPDATE audit_log SET actor='key:someone-else' WHERE seq=4");
    pvg_audit_report rep;
    pvg_error e;
    assert_int_equal(pvg_audit_verify(f->s, NULL, &rep, &e), PVG_ERR_CORRUPT);
    assert_int_equal(rep.problems_total, 1);
    assert_int_equal(rep.problems[0].kind, PVG_AUDIT_EDITED);
    assert_int_equal(rep.problems[0].seq, 4);
    assert_non_null(strstr(rep.problems[0].text, "entry 4 was edited"));
    assert_non_null(strstr(e.text, "entry 4"));
}

static void test_edited_and_rehashed(void **state)
{
    t_rawdb_require_sqlite_env(); /* tampers with the SQLite files */
    fx *f = *state;
    /* the forger recomputes entry 6's own hash; the link from entry 7 breaks */
    sql(f, "UPDATE audit_log SET detail='nothing', hash=randomblob(32) WHERE seq=6");
    pvg_audit_report rep;
    assert_int_equal(pvg_audit_verify(f->s, NULL, &rep, NULL), PVG_ERR_CORRUPT);
    int saw6 = 0;
    for (int i = 0; i < rep.n_problems; i++)
        if (rep.problems[i].kind == PVG_AUDIT_EDITED && rep.problems[i].seq == 6) saw6 = 1;
    assert_true(saw6);
}

static void test_removed_middle(void **state)
{
    t_rawdb_require_sqlite_env(); /* tampers with the SQLite files */
    fx *f = *state;
    sql(f, "DELETE FROM audit_log WHERE seq IN (5,6)");
    pvg_audit_report rep;
    assert_int_equal(pvg_audit_verify(f->s, NULL, &rep, NULL), PVG_ERR_CORRUPT);
    assert_int_equal(rep.problems_total, 1);
    assert_int_equal(rep.problems[0].kind, PVG_AUDIT_REMOVED);
    assert_int_equal(rep.problems[0].seq, 7);
    assert_int_equal(rep.problems[0].other_seq, 4);
    assert_non_null(strstr(rep.problems[0].text, "entries 5..6 were removed"));
}

static void test_removed_head(void **state)
{
    t_rawdb_require_sqlite_env(); /* tampers with the SQLite files */
    fx *f = *state;
    sql(f, "DELETE FROM audit_log WHERE seq=1");
    pvg_audit_report rep;
    assert_int_equal(pvg_audit_verify(f->s, NULL, &rep, NULL), PVG_ERR_CORRUPT);
    assert_int_equal(rep.problems[0].kind, PVG_AUDIT_REMOVED);
    assert_int_equal(rep.problems[0].seq, 2);
}

static void test_truncated_tail(void **state)
{
    t_rawdb_require_sqlite_env(); /* tampers with the SQLite files */
    fx *f = *state;
    pvg_audit_report rep;
    assert_int_equal(pvg_audit_verify(f->s, NULL, &rep, NULL), PVG_OK);
    char head[65];
    memcpy(head, rep.head_hex, sizeof head);
    sql(f, "DELETE FROM audit_log WHERE seq>=9");
    assert_int_equal(pvg_audit_verify(f->s, NULL, &rep, NULL), PVG_OK); /* invisible alone */
    assert_int_equal(pvg_audit_verify(f->s, head, &rep, NULL), PVG_ERR_CORRUPT);
    assert_int_equal(rep.problems[0].kind, PVG_AUDIT_HEAD_MISMATCH);
}

static void test_reordered(void **state)
{
    t_rawdb_require_sqlite_env(); /* tampers with the SQLite files */
    fx *f = *state;
    /* swap the contents of entries 3 and 4 (sequence numbers stay) */
    sql(f, "UPDATE audit_log SET seq=-3 WHERE seq=3;"
           "UPDATE audit_log SET seq=3 WHERE seq=4;"
           "UPDATE audit_log SET seq=4 WHERE seq=-3");
    pvg_audit_report rep;
    assert_int_equal(pvg_audit_verify(f->s, NULL, &rep, NULL), PVG_ERR_CORRUPT);
    assert_int_equal(rep.problems[0].kind, PVG_AUDIT_REORDERED);
    assert_int_equal(rep.problems[0].seq, 3);
    assert_int_equal(rep.problems[0].other_seq, 4); /* it links to what now sits at 4 */
    for (int i = 0; i < rep.n_problems; i++)
        assert_int_not_equal(rep.problems[i].kind, PVG_AUDIT_EDITED);
}

/* ---- re-chaining as a forger would ---- */

typedef struct rows {
    int64_t seq[64], ts[64];
    char actor[64][32], action[64][32], subject[64][40], detail[64][40];
    int n;
} rows;

static int grab(void *ctx, const pvg_audit_entry *e)
{
    rows *r = ctx;
    r->seq[r->n] = e->seq;
    r->ts[r->n] = e->ts;
    snprintf(r->actor[r->n], 32, "%s", e->actor);
    snprintf(r->action[r->n], 32, "%s", e->action);
    snprintf(r->subject[r->n], 40, "%s", e->subject);
    snprintf(r->detail[r->n], 40, "%s", e->detail);
    r->n++;
    return 0;
}

static void put(crypto_generichash_state *st, const char *v)
{
    uint32_t n = (uint32_t)strlen(v);
    unsigned char len[4] = {(unsigned char)n, (unsigned char)(n >> 8), (unsigned char)(n >> 16),
                            (unsigned char)(n >> 24)};
    crypto_generichash_update(st, len, 4);
    crypto_generichash_update(st, (const unsigned char *)v, n);
}

/* The chain formula of audit.h, written out here: key NULL gives the
 * unkeyed hash of old versions. */
static void mac_of(const unsigned char *key, const unsigned char prev[32], const rows *r, int i,
                   unsigned char out[32])
{
    const char *dom = key ? "pvg-audit-v2" : "pvg-audit-v1";
    crypto_generichash_state st;
    crypto_generichash_init(&st, key, key ? 32 : 0, 32);
    crypto_generichash_update(&st, (const unsigned char *)dom, strlen(dom));
    crypto_generichash_update(&st, prev, 32);
    unsigned char tsb[8];
    for (int k = 0; k < 8; k++)
        tsb[k] = (unsigned char)((uint64_t)r->ts[i] >> (8 * k));
    crypto_generichash_update(&st, tsb, 8);
    put(&st, r->actor[i]);
    put(&st, r->action[i]);
    put(&st, r->subject[i]);
    put(&st, r->detail[i]);
    crypto_generichash_final(&st, out, 32);
}

/* Rewrites prev_hash/hash of every entry from the first with seq >= from,
 * linking to the stored predecessor, with key (NULL: unkeyed). *last gets
 * the last hash written. */
static void rechain(fx *f, const unsigned char *key, int64_t from, unsigned char last[32])
{
    rows r = {0};
    assert_int_equal(pvg_audit_foreach(f->s, 0, 0, grab, &r, NULL), PVG_OK);
    unsigned char prev[32] = {0}, h[32];
    sqlite3 *db = t_rawdb_open(f->dir, "audit.db");
    for (int i = 0; i < r.n; i++) {
        if (r.seq[i] >= from) {
            mac_of(key, prev, &r, i, h);
            sqlite3_stmt *q;
            assert_int_equal(
                sqlite3_prepare_v2(db, "UPDATE audit_log SET prev_hash=?1, hash=?2 WHERE seq=?3",
                                   -1, &q, NULL),
                SQLITE_OK);
            sqlite3_bind_blob(q, 1, prev, 32, SQLITE_TRANSIENT);
            sqlite3_bind_blob(q, 2, h, 32, SQLITE_TRANSIENT);
            sqlite3_bind_int64(q, 3, r.seq[i]);
            assert_int_equal(sqlite3_step(q), SQLITE_DONE);
            sqlite3_finalize(q);
        } else {
            sqlite3_stmt *q;
            assert_int_equal(
                sqlite3_prepare_v2(db, "SELECT hash FROM audit_log WHERE seq=?1", -1, &q, NULL),
                SQLITE_OK);
            sqlite3_bind_int64(q, 1, r.seq[i]);
            assert_int_equal(sqlite3_step(q), SQLITE_ROW);
            memcpy(h, sqlite3_column_blob(q, 0), 32);
            sqlite3_finalize(q);
        }
        memcpy(prev, h, 32);
    }
    sqlite3_close(db);
    if (last) memcpy(last, prev, 32);
}

static void test_deleted_and_rechained(void **state)
{
    t_rawdb_require_sqlite_env(); /* tampers with the SQLite files */
    fx *f = *state;
    /* the forger deletes entry 5 and re-chains 6..10 the way the old
     * (unkeyed) chain was computed: every re-chained entry is found */
    sql(f, "DELETE FROM audit_log WHERE seq=5");
    rechain(f, NULL, 6, NULL);
    pvg_audit_report rep;
    pvg_error e;
    assert_int_equal(pvg_audit_verify(f->s, NULL, &rep, &e), PVG_ERR_CORRUPT);
    assert_int_equal(rep.problems_total, 5);
    assert_int_equal(rep.problems[0].kind, PVG_AUDIT_UNKEYED);
    assert_int_equal(rep.problems[0].seq, 6);
    assert_non_null(strstr(rep.problems[0].text, "without the key"));
    /* ... and with a key of his own */
    unsigned char guess[32];
    randombytes_buf(guess, sizeof guess);
    rechain(f, guess, 6, NULL);
    assert_int_equal(pvg_audit_verify(f->s, NULL, &rep, &e), PVG_ERR_CORRUPT);
    assert_int_equal(rep.problems[0].kind, PVG_AUDIT_EDITED);
    assert_int_equal(rep.problems[0].seq, 6);
    /* with the store's key (the key file) the same re-chaining passes: the
     * MAC, not the formula, is what protects the log */
    rechain(f, pvg_store_audit_key(f->s), 6, NULL);
    assert_int_equal(pvg_audit_verify(f->s, NULL, &rep, &e), PVG_OK);
}

static void test_head_and_anchor(void **state)
{
    t_rawdb_require_sqlite_env(); /* tampers with the SQLite files */
    fx *f = *state;
    pvg_audit_head_info h;
    assert_int_equal(pvg_audit_head(f->s, &h, NULL), PVG_OK);
    assert_int_equal(h.seq, 10);
    assert_int_equal(h.ts, 1010);
    assert_true(h.keyed);
    pvg_audit_report rep;
    assert_int_equal(pvg_audit_verify(f->s, h.anchor, &rep, NULL), PVG_OK);
    assert_string_equal(rep.head_hex, h.mac_hex);
    char bad[128];
    snprintf(bad, sizeof bad, "9:%s", h.mac_hex); /* right MAC, wrong place */
    assert_int_equal(pvg_audit_verify(f->s, bad, &rep, NULL), PVG_ERR_CORRUPT);
    assert_int_equal(pvg_audit_verify(f->s, "x:00", &rep, NULL), PVG_ERR_INVALID);
    /* later entries keep the anchor valid */
    pvg_audit_record r = {0, "cli", "export", "", ""};
    assert_int_equal(pvg_audit_append(f->s, &r, NULL, NULL), PVG_OK);
    assert_int_equal(pvg_audit_verify(f->s, h.anchor, &rep, NULL), PVG_OK);
    /* truncation back to entry 8 */
    sql(f, "DELETE FROM audit_log WHERE seq>=9");
    assert_int_equal(pvg_audit_verify(f->s, NULL, &rep, NULL), PVG_OK);
    assert_int_equal(pvg_audit_verify(f->s, h.anchor, &rep, NULL), PVG_ERR_CORRUPT);
    assert_int_equal(rep.problems[0].kind, PVG_AUDIT_HEAD_MISMATCH);
    assert_non_null(strstr(rep.problems[0].text, "removed from the end"));
    /* an empty log */
    sql(f, "DELETE FROM audit_log");
    assert_int_equal(pvg_audit_head(f->s, &h, NULL), PVG_OK);
    assert_int_equal(h.seq, 0);
}

static void test_old_unkeyed_log(void **state)
{
    t_rawdb_require_sqlite_env(); /* tampers with the SQLite files */
    fx *f = *state;
    /* a log written by an old version: unkeyed hashes; its keys were then
     * moved out, the key file recording entry 10 and its hash */
    unsigned char last[32];
    rechain(f, NULL, 1, last);
    pvg_audit_report rep;
    assert_int_equal(pvg_audit_verify(f->s, NULL, &rep, NULL),
                     PVG_ERR_CORRUPT); /* not accepted unless recorded */
    f->s->keys.audit_unkeyed_seq = 10;
    memcpy(f->s->keys.audit_unkeyed_hash, last, 32);
    assert_int_equal(pvg_audit_verify(f->s, NULL, &rep, NULL), PVG_OK);
    assert_int_equal(rep.unkeyed, 10);
    assert_int_equal(rep.unkeyed_upto, 10);
    /* new entries carry a MAC and link to the old head */
    pvg_audit_record r = {0, "cli", "export", "", ""};
    assert_int_equal(pvg_audit_append(f->s, &r, NULL, NULL), PVG_OK);
    assert_int_equal(pvg_audit_verify(f->s, NULL, &rep, NULL), PVG_OK);
    assert_int_equal(rep.entries, 11);
    /* deleting an old entry and re-chaining everything unkeyed is found: entry
     * 10 no longer matches the key file, entry 11 lost its MAC */
    sql(f, "DELETE FROM audit_log WHERE seq=3");
    rechain(f, NULL, 4, NULL);
    assert_int_equal(pvg_audit_verify(f->s, NULL, &rep, NULL), PVG_ERR_CORRUPT);
    int saw10 = 0, saw11 = 0;
    for (int i = 0; i < rep.n_problems; i++) {
        if (rep.problems[i].seq == 10 && rep.problems[i].kind == PVG_AUDIT_EDITED) saw10 = 1;
        if (rep.problems[i].seq == 11 && rep.problems[i].kind == PVG_AUDIT_UNKEYED) saw11 = 1;
    }
    assert_true(saw10);
    assert_true(saw11);
}

/* Rewrites f's store into the layout of stores made before audit.db: the
 * audit table in privguide.db holding the entries from `from` to `upto` of
 * audit.db (the store closed meanwhile); audit.db keeps the entries up to
 * `keep` (0: the file is removed, as in the old layout). */
static void to_old_layout(fx *f, int from, int upto, int keep)
{
    pvg_store_free(f->s);
    f->s = NULL;
    char q[1024];
    snprintf(q, sizeof q,
             "ATTACH '%s/audit.db' AS a;"
             "CREATE TABLE audit_log (seq INTEGER PRIMARY KEY, ts INTEGER NOT NULL,"
             " actor TEXT NOT NULL, action TEXT NOT NULL, subject TEXT NOT NULL,"
             " detail TEXT NOT NULL, prev_hash BLOB NOT NULL, hash BLOB NOT NULL);"
             "CREATE INDEX audit_log_subject ON audit_log(subject, seq);"
             "INSERT INTO main.audit_log SELECT * FROM a.audit_log WHERE seq BETWEEN %d AND %d;"
             "DELETE FROM a.audit_log WHERE seq > %d;"
             /* nor the record that the log is in audit.db (the move sets it) */
             "DELETE FROM main.meta WHERE key = 'audit_file';",
             f->dir, from, upto, keep);
    assert_int_equal(t_rawdb_exec(f->dir, "privguide.db", q), SQLITE_OK);
    if (keep == 0) {
        const char *suffix[] = {"", "-wal", "-shm"};
        for (int i = 0; i < 3; i++) {
            snprintf(q, sizeof q, "%s/audit.db%s", f->dir, suffix[i]);
            (void)unlink(q);
        }
    }
}

static int old_table_left(fx *f)
{
    sqlite3 *db = t_rawdb_open(f->dir, "privguide.db");
    sqlite3_stmt *s = NULL;
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT count(*) FROM sqlite_master WHERE name LIKE "
                                        "'audit_log%'",
                                        -1, &s, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    int n = sqlite3_column_int(s, 0);
    sqlite3_finalize(s);
    sqlite3_close(db);
    return n;
}

/* A store of the old layout (the audit log a table of privguide.db) opens:
 * its entries move to audit.db (mode 0600), the old table goes, the chain
 * verifies with the same head and goes on. */
static void test_old_layout_moves(void **state)
{
    t_rawdb_require_sqlite_env(); /* rewrites the SQLite files */
    fx *f = *state;
    pvg_audit_report rep;
    assert_int_equal(pvg_audit_verify(f->s, NULL, &rep, NULL), PVG_OK);
    char head[65];
    memcpy(head, rep.head_hex, sizeof head);
    to_old_layout(f, 1, 10, 0);
    char path[300];
    snprintf(path, sizeof path, "%s/audit.db", f->dir);
    assert_int_equal(access(path, F_OK), -1);
    assert_int_equal(pvg_store_open(f->dir, &f->s, NULL), PVG_OK);
    assert_int_equal(old_table_left(f), 0);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    assert_int_equal(pvg_audit_verify(f->s, head, &rep, NULL), PVG_OK);
    assert_int_equal(rep.entries, 10);
    assert_string_equal(rep.head_hex, head);
    /* a shopper's own entries come from the new file too */
    pvg_audit_record r = {0, "cli", "export", "00ff", "after"};
    int64_t seq = 0;
    assert_int_equal(pvg_audit_append(f->s, &r, &seq, NULL), PVG_OK);
    assert_int_equal(seq, 11);
    assert_int_equal(pvg_audit_verify(f->s, NULL, &rep, NULL), PVG_OK);
    assert_int_equal(rep.entries, 11);
    /* opening again changes nothing */
    pvg_store_free(f->s);
    assert_int_equal(pvg_store_open(f->dir, &f->s, NULL), PVG_OK);
    assert_int_equal(pvg_audit_verify(f->s, NULL, &rep, NULL), PVG_OK);
    assert_int_equal(rep.entries, 11);
    /* once moved, audit.db must stay: without it open refuses */
    pvg_store_free(f->s);
    f->s = NULL;
    assert_int_equal(unlink(path), 0);
    assert_int_not_equal(pvg_store_open(f->dir, &f->s, NULL), PVG_OK);
}

/* A move cut short: the copy committed in audit.db but the old table still
 * there (all of it copied, or entries 8-10 appended to it after the copy by
 * a writer of the old layout). The next open ends it, nothing twice,
 * nothing lost. */
static void test_old_layout_interrupted(void **state)
{
    t_rawdb_require_sqlite_env(); /* rewrites the SQLite files */
    fx *f = *state;
    pvg_audit_report rep;
    assert_int_equal(pvg_audit_verify(f->s, NULL, &rep, NULL), PVG_OK);
    char head[65];
    memcpy(head, rep.head_hex, sizeof head);
    to_old_layout(f, 1, 10, 10); /* both hold 1-10 */
    assert_int_equal(old_table_left(f), 2);
    assert_int_equal(pvg_store_open(f->dir, &f->s, NULL), PVG_OK);
    assert_int_equal(old_table_left(f), 0);
    assert_int_equal(pvg_audit_verify(f->s, head, &rep, NULL), PVG_OK);
    assert_int_equal(rep.entries, 10);
    to_old_layout(f, 1, 10, 7); /* audit.db 1-7, the old table 1-10 */
    assert_int_equal(pvg_store_open(f->dir, &f->s, NULL), PVG_OK);
    assert_int_equal(old_table_left(f), 0);
    assert_int_equal(pvg_audit_verify(f->s, head, &rep, NULL), PVG_OK);
    assert_int_equal(rep.entries, 10);
    assert_int_equal(rep.last_seq, 10);
}

typedef struct seqs {
    int64_t v[4096];
    int n;
    const char *want; /* foreach: keep only this subject's entries */
} seqs;

static int collect(void *ctx, const pvg_audit_entry *e)
{
    seqs *c = ctx;
    if (c->want && strcmp(e->subject, c->want) != 0) return 0;
    if (c->n < 4096) c->v[c->n++] = e->seq;
    return 0;
}

/* A shopper's own entries (pvg_audit_foreach_subject) are exactly the
 * entries of the log with that subject, in seq order, whether they sit in
 * the part indexed by subject or in the tail not indexed yet (the index
 * takes the tail every 1,024 entries), also after reopening. */
static void test_subject_view_across_index(void **state)
{
    fx *f = *state;
    static const char *const subj[] = {"00ff", "a1", "b2", "c3", ""};
    pvg_audit_record rs[13];
    int next = 0;
    for (int g = 0; g < 200; g++) { /* groups of 1-13: 1,400 entries */
        int n = 1 + g % 13;
        for (int i = 0; i < n; i++, next++)
            rs[i] = (pvg_audit_record){0, "key:k", "recommend", subj[(next * 7 + g) % 5], "d"};
        assert_int_equal(pvg_audit_append_many(f->s, rs, (size_t)n, NULL), PVG_OK);
    }
    for (int round = 0; round < 2; round++) {
        for (int k = 0; k < 5; k++) {
            seqs *want = calloc(1, sizeof *want), *got = calloc(1, sizeof *got);
            want->want = subj[k];
            assert_int_equal(pvg_audit_foreach(f->s, 0, -1, collect, want, NULL), PVG_OK);
            assert_int_equal(pvg_audit_foreach_subject(f->s, subj[k], collect, got, NULL), PVG_OK);
            assert_true(want->n > 100);
            assert_int_equal(got->n, want->n);
            for (int i = 0; i < want->n; i++)
                assert_int_equal(got->v[i], want->v[i]);
            /* some in the indexed part, some in the tail */
            assert_true(got->v[0] < 1024 && got->v[got->n - 1] > 1024 + 10);
            free(want);
            free(got);
        }
        pvg_store_free(f->s);
        assert_int_equal(pvg_store_open(f->dir, &f->s, NULL), PVG_OK);
        pvg_audit_record r = {0, "cli", "export", "a1", ""};
        assert_int_equal(pvg_audit_append(f->s, &r, NULL, NULL), PVG_OK);
    }
    pvg_audit_report rep;
    assert_int_equal(pvg_audit_verify(f->s, NULL, &rep, NULL), PVG_OK);
}

/* An append takes the write lock of audit.db alone: it neither waits for a
 * write transaction held open on privguide.db (an import) nor holds one up.
 * (With the log in privguide.db it waited for the busy timeout, 30 s.) */
static void test_append_beside_data_writer(void **state)
{
    t_rawdb_require_sqlite_env(); /* holds a SQLite file's lock */
    fx *f = *state;
    sqlite3 *w = t_rawdb_open(f->dir, "privguide.db");
    assert_int_equal(sqlite3_exec(w,
                                  "BEGIN IMMEDIATE; INSERT INTO meta(key, value)"
                                  " VALUES('test_writer', '1')",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    pvg_audit_record r = {0, "cli", "export", "00ff", "beside"};
    int64_t seq = 0;
    time_t t0 = time(NULL);
    assert_int_equal(pvg_audit_append(f->s, &r, &seq, NULL), PVG_OK);
    assert_int_equal(seq, 11);
    assert_true(time(NULL) - t0 < 10);
    assert_int_equal(sqlite3_exec(w, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(w);
    pvg_audit_report rep;
    assert_int_equal(pvg_audit_verify(f->s, NULL, &rep, NULL), PVG_OK);
    assert_int_equal(rep.entries, 11);
}

/* A shopper's own entries read while another process appends across the
 * index's 1,024-entry batches: each read is a prefix of that subject's
 * entries in the log (read after it), none skipped at a batch boundary,
 * none of another subject. */
static void test_subject_view_under_appends(void **state)
{
    fx *f = *state;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        pvg_store *c = NULL;
        if (pvg_store_open(f->dir, &c, NULL) != PVG_OK) _exit(1);
        static const char *const sj[] = {"00ff", "a1", "b2"};
        pvg_audit_record rs[7];
        int next = 0;
        for (int g = 0; g < 500; g++) { /* 2,000 entries in groups of 1-7 */
            int n = 1 + g % 7;
            for (int i = 0; i < n; i++, next++)
                rs[i] = (pvg_audit_record){0, "key:k", "recommend", sj[next % 3], "d"};
            if (pvg_audit_append_many(c, rs, (size_t)n, NULL) != PVG_OK) _exit(2);
        }
        pvg_store_free(c);
        _exit(0);
    }
    int status = 0, done = 0, reads = 0;
    seqs *got = calloc(1, sizeof *got), *all = calloc(1, sizeof *all);
    while (!done) {
        done = waitpid(pid, &status, WNOHANG) == pid;
        got->n = 0;
        all->n = 0;
        all->want = "a1";
        assert_int_equal(pvg_audit_foreach_subject(f->s, "a1", collect, got, NULL), PVG_OK);
        assert_int_equal(pvg_audit_foreach(f->s, 0, -1, collect, all, NULL), PVG_OK);
        assert_true(got->n <= all->n);
        for (int i = 0; i < got->n; i++)
            assert_int_equal(got->v[i], all->v[i]);
        reads++;
    }
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_int_equal(got->n, all->n);
    assert_true(all->n > 600 && reads > 1);
    free(got);
    free(all);
}

static void rm_audit_files(fx *f)
{
    const char *suffix[] = {"", "-wal", "-shm"};
    char q[300];
    for (int i = 0; i < 3; i++) {
        snprintf(q, sizeof q, "%s/audit.db%s", f->dir, suffix[i]);
        (void)unlink(q);
    }
}

/* A store of the new layout whose audit.db is gone (deleted, or left out of
 * a copy) or emptied to a 0-byte file: open refuses it, naming audit.db,
 * rather than start a new empty log that `audit verify` would pass (the
 * whole log dropped without a trace). */
static void test_missing_audit_file_refused(void **state)
{
    t_rawdb_require_sqlite_env(); /* removes a SQLite file */
    fx *f = *state;
    pvg_store_free(f->s);
    f->s = NULL;
    rm_audit_files(f);
    pvg_error e = {0};
    assert_int_not_equal(pvg_store_open(f->dir, &f->s, &e), PVG_OK);
    assert_null(f->s);
    assert_true(strstr(e.source, "audit.db") || strstr(e.text, "audit.db"));
    char path[300];
    snprintf(path, sizeof path, "%s/audit.db", f->dir);
    assert_int_equal(access(path, F_OK), -1); /* nothing made in its place */
    FILE *fp = fopen(path, "w");              /* a 0-byte file in its place */
    assert_non_null(fp);
    fclose(fp);
    assert_int_not_equal(pvg_store_open(f->dir, &f->s, &e), PVG_OK);
    assert_null(f->s);
    assert_true(strstr(e.source, "audit.db") || strstr(e.text, "audit.db"));
}

/* audit.db a symbolic link (to a file elsewhere, or dangling): open refuses
 * it and makes no file at its target. */
static void test_audit_file_symlink_refused(void **state)
{
    t_rawdb_require_sqlite_env(); /* replaces a SQLite file */
    fx *f = *state;
    pvg_store_free(f->s);
    f->s = NULL;
    char path[300], target[300];
    snprintf(path, sizeof path, "%s/audit.db", f->dir);
    snprintf(target, sizeof target, "%s/../elsewhere.db", f->dir);
    assert_int_equal(rename(path, target), 0);
    assert_int_equal(symlink(target, path), 0);
    pvg_error e = {0};
    assert_int_not_equal(pvg_store_open(f->dir, &f->s, &e), PVG_OK);
    assert_null(f->s);
    assert_true(strstr(e.source, "audit.db") || strstr(e.text, "audit.db"));
    assert_int_equal(unlink(target), 0); /* dangling: nothing is made there */
    assert_int_not_equal(pvg_store_open(f->dir, &f->s, &e), PVG_OK);
    assert_int_equal(access(target, F_OK), -1);
}

/* After the move, an audit table that appears again in privguide.db (a
 * binary of the old layout opened the store and began a new chain there)
 * is not copied onto the end of audit.db's chain: open refuses it, and
 * audit.db is left as it was. */
static void test_old_table_of_other_chain_refused(void **state)
{
    t_rawdb_require_sqlite_env(); /* rewrites the SQLite files */
    fx *f = *state;
    pvg_audit_report rep;
    assert_int_equal(pvg_audit_verify(f->s, NULL, &rep, NULL), PVG_OK);
    char head[65];
    memcpy(head, rep.head_hex, sizeof head);
    pvg_store_free(f->s);
    f->s = NULL;
    char q[1024];
    /* 12 entries of another chain, seq 1-12 */
    snprintf(q, sizeof q,
             "CREATE TABLE audit_log (seq INTEGER PRIMARY KEY, ts INTEGER NOT NULL,"
             " actor TEXT NOT NULL, action TEXT NOT NULL, subject TEXT NOT NULL,"
             " detail TEXT NOT NULL, prev_hash BLOB NOT NULL, hash BLOB NOT NULL);"
             "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 12)"
             " INSERT INTO audit_log SELECT i, i, 'old', 'export', 'ee', 'x', zeroblob(32),"
             " randomblob(32) FROM n;");
    assert_int_equal(t_rawdb_exec(f->dir, "privguide.db", q), SQLITE_OK);
    pvg_error e = {0};
    assert_int_not_equal(pvg_store_open(f->dir, &f->s, &e), PVG_OK);
    assert_null(f->s);
    assert_int_equal(t_rawdb_exec(f->dir, "privguide.db", "DROP TABLE audit_log"), SQLITE_OK);
    assert_int_equal(pvg_store_open(f->dir, &f->s, NULL), PVG_OK);
    assert_int_equal(pvg_audit_verify(f->s, head, &rep, NULL), PVG_OK);
    assert_int_equal(rep.entries, 10);
}

int main(void)
{
    if (sodium_init() < 0) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_intact, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_records, setup, teardown),
        cmocka_unit_test_setup_teardown(test_edited, setup, teardown),
        cmocka_unit_test_setup_teardown(test_edited_and_rehashed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_removed_middle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_removed_head, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncated_tail, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reordered, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deleted_and_rechained, setup, teardown),
        cmocka_unit_test_setup_teardown(test_head_and_anchor, setup, teardown),
        cmocka_unit_test_setup_teardown(test_old_unkeyed_log, setup, teardown),
        cmocka_unit_test_setup_teardown(test_old_layout_moves, setup, teardown),
        cmocka_unit_test_setup_teardown(test_old_layout_interrupted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_subject_view_across_index, setup, teardown),
        cmocka_unit_test_setup_teardown(test_append_beside_data_writer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_subject_view_under_appends, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_audit_file_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_audit_file_symlink_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_old_table_of_other_chain_refused, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
