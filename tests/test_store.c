/*
 * test_store.c - the encrypted store: init/open and key file checks,
 * ingest round trip through export, policy minimisation, duplicate
 * detection, crypto-shredding (no key or record left in any file), no
 * plaintext ids or payloads in any table or file, key rotation (including a
 * store caught mid-rotation), retention, tampering (moved, edited, replayed
 * chunks: skipped and counted, store check), stale caches across handles,
 * row ids never reused, chunk format 1, wrong master key, consent,
 * single-event writes.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "t_files.h"

#include <privguide/store.h>

#include "store/store_priv.h"
#include "t_rawdb.h"

#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- helpers ---- */

static char *path_in(const char *dir, const char *name)
{
    char *p = malloc(strlen(dir) + strlen(name) + 2);
    sprintf(p, "%s/%s", dir, name);
    return p;
}

/* 1 when `needle` occurs in any file under dir (recursively). */
static int dir_contains(const char *dir, const void *needle, size_t n)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *e;
    int found = 0;
    while (!found && (e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        char *p = path_in(dir, e->d_name);
        struct stat sb;
        if (stat(p, &sb) == 0 && S_ISDIR(sb.st_mode))
            found = dir_contains(p, needle, n);
        else if (stat(p, &sb) == 0 && sb.st_size > 0) {
            FILE *f = fopen(p, "rb");
            unsigned char *buf = malloc((size_t)sb.st_size);
            size_t got = fread(buf, 1, (size_t)sb.st_size, f);
            fclose(f);
            for (size_t i = 0; got >= n && i + n <= got && !found; i++)
                if (memcmp(buf + i, needle, n) == 0) found = 1;
            free(buf);
        }
        free(p);
    }
    closedir(d);
    return found;
}

/* The key file of the store in dir (new string). */
static char *key_file_of(const char *dir)
{
    char buf[4096];
    pvg_error err;
    if (pvg_store_key_file(dir, NULL, buf, sizeof buf, &err) != PVG_OK)
        fail_msg("key file: %s", err.text);
    return strdup(buf);
}

static pvg_store *open_ok(const char *dir)
{
    pvg_store *s = NULL;
    pvg_error err;
    pvg_status st = pvg_store_open(dir, &s, &err);
    if (st != PVG_OK) fail_msg("open: %s", err.text);
    return s;
}

static char *new_store(const char *policy)
{
    char *root = t_tmpdir("store");
    char *dir = path_in(root, "data");
    pvg_store_init_options o = {0};
    o.policy_json = policy;
    pvg_error err;
    pvg_status st = pvg_store_init(dir, &o, &err);
    if (st != PVG_OK) fail_msg("init: %s", err.text);
    free(root);
    return dir;
}

static void drop_store(char *dir)
{
    char *root = strdup(dir);
    *strrchr(root, '/') = '\0';
    t_rm_rf(root);
    free(root);
    free(dir);
}

static pvg_ingest_stats ingest_text(pvg_store *s, const char *dir, const char *name, pvg_format fmt,
                                    const char *text)
{
    char *p = path_in(dir, name);
    t_write_file(p, text);
    pvg_ingest_stats st;
    pvg_error err;
    pvg_ingest_options o = {0};
    if (pvg_store_ingest_file(s, p, fmt, &o, &st, &err) != PVG_OK) fail_msg("ingest: %s", err.text);
    unlink(p);
    free(p);
    return st;
}

static json_t *export_json(pvg_store *s, const char *user)
{
    char *txt = NULL;
    pvg_error err;
    pvg_status st = pvg_store_user_export(s, user, &txt, &err);
    if (st != PVG_OK) fail_msg("export %s: %s", user, err.text);
    json_t *j = json_loads(txt, 0, NULL);
    assert_non_null(j);
    pvg_free(txt);
    return j;
}

static long long reason_count(const pvg_ingest_stats *st, const char *reason)
{
    for (int i = 0; i < st->n_reasons; i++)
        if (strcmp(st->reasons[i].reason, reason) == 0) return st->reasons[i].count;
    return 0;
}

static const char EVENTS[] =
    "{\"type\":\"item\",\"item\":\"sku-1\",\"title\":\"Blue "
    "mug\",\"category\":\"kitchen\",\"price\":4.5}\n"
    "{\"type\":\"purchase\",\"user\":\"customer-4242\",\"item\":\"sku-1\",\"ts\":\"2024-03-01T10:"
    "00:00Z\",\"quantity\":2,\"amount\":9.0,\"country\":\"Atlantis\"}\n"
    "{\"type\":\"view\",\"user\":\"customer-4242\",\"item\":\"sku-2\",\"ts\":1709290000,"
    "\"quantity\":1}\n"
    "{\"type\":\"search\",\"user\":\"customer-4242\",\"ts\":1709290100,\"query\":\"zebra-striped "
    "teapot\"}\n"
    "{\"type\":\"purchase\",\"user\":\"shopper-77\",\"item\":\"sku-2\",\"ts\":1709290200,"
    "\"quantity\":1,\"amount\":3.25}\n"
    "{\"type\":\"rating\",\"user\":\"shopper-77\",\"item\":\"sku-1\",\"ts\":1709290300,\"rating\":"
    "4}\n";

/* ---- tests ---- */

static void test_init_and_open(void **state)
{
    (void)state;
    char *dir = new_store(NULL);
    char *kf = key_file_of(dir);
    struct stat sb;
    assert_int_equal(stat(kf, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    pvg_error err;
    assert_int_equal(pvg_store_init(dir, NULL, &err), PVG_ERR_EXISTS);
    pvg_store *s = open_ok(dir);
    pvg_store_free(s);
    chmod(kf, 0644);
    assert_int_equal(pvg_store_open(dir, &s, &err), PVG_ERR_PERMISSION);
    assert_non_null(strstr(err.text, "chmod 600"));
    chmod(kf, 0600);
    assert_int_equal(pvg_store_open("/nonexistent/pvg", &s, &err), PVG_ERR_NOT_FOUND);
    free(kf);
    drop_store(dir);
}

static void test_bad_policy(void **state)
{
    (void)state;
    char *root = t_tmpdir("store");
    char *dir = path_in(root, "data");
    pvg_store_init_options o = {0};
    pvg_error err;
    o.policy_json = "{\"version\": 1, \"events\": {\"view\": {\"retention_days\": 0}}}";
    assert_int_equal(pvg_store_init(dir, &o, &err), PVG_ERR_INVALID);
    assert_non_null(strstr(err.text, "events.view.retention_days"));
    o.policy_json = "{\"version\": 1,\n \"events\": {,}}";
    assert_int_equal(pvg_store_init(dir, &o, &err), PVG_ERR_INVALID);
    assert_int_equal(err.line, 2);
    o.policy_json = "{\"version\": 1, \"events\": {\"view\": {\"retention_days\": 5, \"fields\": "
                    "[\"colour\"]}}}";
    assert_int_equal(pvg_store_init(dir, &o, &err), PVG_ERR_INVALID);
    assert_non_null(strstr(err.text, "fields[0]"));
    /* a purpose's consent switch is null, "personalization" or "analytics":
     * anything else would open collection the consent page calls gated */
    o.policy_json =
        "{\"version\": 1, \"events\": {\"view\": {\"retention_days\": 5}},"
        " \"purposes\": [{\"name\": \"p\", \"event_types\": [\"view\"], \"consent\": true}]}";
    assert_int_equal(pvg_store_init(dir, &o, &err), PVG_ERR_INVALID);
    assert_non_null(strstr(err.text, "purposes\"[0].consent"));
    t_rm_rf(root);
    free(dir);
    free(root);
}

static void test_roundtrip_and_minimisation(void **state)
{
    (void)state;
    char *dir = new_store(NULL);
    pvg_store *s = open_ok(dir);
    pvg_ingest_stats st = ingest_text(s, dir, "in.jsonl", PVG_FORMAT_JSONL, EVENTS);
    assert_int_equal(st.read, 6);
    assert_int_equal(st.accepted, 6);
    assert_int_equal(st.rejected, 0);
    assert_int_equal(st.stored, 5);
    assert_int_equal(st.items_upserted, 1);
    assert_int_equal(st.users, 2);
    /* the default policy keeps no fields of a view: its quantity is dropped */
    assert_int_equal(st.dropped_fields[0], 1);

    json_t *j = export_json(s, "customer-4242");
    assert_string_equal(json_string_value(json_object_get(j, "user")), "customer-4242");
    json_t *ev = json_object_get(j, "events");
    assert_int_equal(json_array_size(ev), 3);
    json_t *p = json_array_get(ev, 0);
    assert_string_equal(json_string_value(json_object_get(p, "type")), "purchase");
    assert_string_equal(json_string_value(json_object_get(p, "item")), "sku-1");
    assert_string_equal(json_string_value(json_object_get(p, "ts")), "2024-03-01T10:00:00Z");
    assert_true(json_number_value(json_object_get(p, "amount")) == 9.0);
    assert_string_equal(json_string_value(json_object_get(p, "country")), "Atlantis");
    json_t *v = json_array_get(ev, 1);
    assert_string_equal(json_string_value(json_object_get(v, "type")), "view");
    assert_null(json_object_get(v, "quantity"));
    json_t *q = json_array_get(ev, 2);
    assert_string_equal(json_string_value(json_object_get(q, "query")), "zebra-striped teapot");
    assert_true(json_array_size(json_object_get(j, "purposes")) >= 1);
    assert_true(json_is_true(json_object_get(json_object_get(j, "consent"), "personalization")));
    json_decref(j);

    pvg_item *it = NULL;
    pvg_error err;
    assert_int_equal(pvg_store_item_get(s, "sku-1", &it, &err), PVG_OK);
    assert_string_equal(it->title, "Blue mug");
    assert_string_equal(it->category, "kitchen");
    assert_true(it->price == 4.5);
    pvg_item_free(it);
    assert_int_equal(pvg_store_item_get(s, "sku-2", &it, &err), PVG_OK); /* created by an event */
    pvg_item_free(it);
    char *out = NULL;
    assert_int_equal(pvg_store_user_export(s, "nobody", &out, &err), PVG_ERR_NOT_FOUND);
    pvg_store_free(s);
    drop_store(dir);
}

static void test_policy_drops_types(void **state)
{
    (void)state;
    char *dir = new_store("{\"version\":1,\"retention_basis\":\"collection_time\",\"events\":{"
                          "\"purchase\":{\"retention_days\":30,\"fields\":[\"quantity\"]}}}");
    pvg_store *s = open_ok(dir);
    pvg_ingest_stats st = ingest_text(s, dir, "in.jsonl", PVG_FORMAT_JSONL, EVENTS);
    assert_int_equal(st.read, st.accepted + st.rejected);
    assert_int_equal(st.stored, 2);
    assert_int_equal(reason_count(&st, "policy_type_not_allowed"), 3);
    assert_int_equal(st.dropped_fields[1], 2); /* amount */
    assert_int_equal(st.dropped_fields[4], 1); /* country */
    json_t *j = export_json(s, "customer-4242");
    json_t *p = json_array_get(json_object_get(j, "events"), 0);
    assert_null(json_object_get(p, "amount"));
    assert_null(json_object_get(p, "country"));
    json_decref(j);
    pvg_event ev = {0};
    ev.type = PVG_EVENT_VIEW;
    ev.item = "sku-1";
    ev.ts = pvg_store_now(s);
    pvg_error err;
    assert_int_equal(pvg_store_event_put(s, "u9", &ev, NULL, NULL, &err), PVG_ERR_POLICY);
    pvg_store_free(s);
    drop_store(dir);
}

static void test_duplicates(void **state)
{
    t_rawdb_require_sqlite_env(); /* tampers with the SQLite files */
    (void)state;
    char *dir = new_store(NULL);
    pvg_store *s = open_ok(dir);
    const char *twice =
        "{\"type\":\"purchase\",\"user\":\"a\",\"item\":\"x\",\"ts\":100,\"quantity\":1}\n"
        "{\"type\":\"purchase\",\"user\":\"a\",\"item\":\"x\",\"ts\":100,\"quantity\":1}\n"
        "{\"type\":\"purchase\",\"user\":\"b\",\"item\":\"x\",\"ts\":100,\"quantity\":1}\n";
    pvg_ingest_stats st = ingest_text(s, dir, "a.jsonl", PVG_FORMAT_JSONL, twice);
    assert_int_equal(st.stored, 3); /* a genuine repeat in the source is kept */
    st = ingest_text(s, dir, "a.jsonl", PVG_FORMAT_JSONL, twice);
    assert_int_equal(st.stored, 0);
    assert_int_equal(st.duplicates, 3);
    assert_int_equal(st.events, 3);
    /* a later file overlapping the first: only the new row is stored */
    st = ingest_text(
        s, dir, "b.jsonl", PVG_FORMAT_JSONL,
        "{\"type\":\"purchase\",\"user\":\"a\",\"item\":\"x\",\"ts\":100,\"quantity\":1}\n"
        "{\"type\":\"purchase\",\"user\":\"a\",\"item\":\"y\",\"ts\":200,\"quantity\":1}\n");
    assert_int_equal(st.stored, 1);
    assert_int_equal(st.duplicates, 1);
    /* single events with a client key */
    pvg_event ev = {0};
    ev.type = PVG_EVENT_CART;
    ev.item = "x";
    ev.ts = pvg_store_now(s);
    int outcome = -1;
    pvg_error err;
    assert_int_equal(pvg_store_event_put(s, "a", &ev, "evt-1", &outcome, &err), PVG_OK);
    assert_int_equal(outcome, 1);
    assert_int_equal(pvg_store_event_put(s, "a", &ev, "evt-1", &outcome, &err), PVG_OK);
    assert_int_equal(outcome, 0);
    pvg_store_counts c;
    assert_int_equal(pvg_store_counts_get(s, &c, &err), PVG_OK);
    assert_int_equal(c.events, 5);
    /* many single events: chunks are merged, nothing is lost or doubled */
    int64_t base = pvg_store_now(s); /* one base: the clock may tick during the loop */
    for (int i = 0; i < 100; i++) {
        ev.ts = base - i;
        assert_int_equal(pvg_store_event_put(s, "many", &ev, NULL, &outcome, &err), PVG_OK);
        assert_int_equal(outcome, 1);
    }
    ev.ts = base - 7;
    assert_int_equal(pvg_store_event_put(s, "many", &ev, NULL, &outcome, &err), PVG_OK);
    assert_int_equal(outcome, 0);
    json_t *j = export_json(s, "many");
    assert_int_equal(json_array_size(json_object_get(j, "events")), 100);
    json_decref(j);
    sqlite3 *db = t_rawdb_open(dir, "privguide.db");
    sqlite3_stmt *q;
    assert_int_equal(
        sqlite3_prepare_v2(db,
                           "SELECT count(*), sum(n) FROM chunks c JOIN users u ON u.id = c.user_id"
                           " WHERE u.id = (SELECT max(id) FROM users)",
                           -1, &q, NULL),
        SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    assert_true(sqlite3_column_int(q, 0) <= 32);
    assert_int_equal(sqlite3_column_int(q, 1), 100);
    sqlite3_finalize(q);
    sqlite3_close(db);
    pvg_store_free(s);
    drop_store(dir);
}

/* The store-wide change counter: every write that changes users, keys,
 * consent or chunks moves it, seen by another handle too; reads do not. */
static void test_change_counter(void **state)
{
    (void)state;
    char *dir = new_store(NULL);
    pvg_store *s = open_ok(dir), *other = open_ok(dir);
    pvg_error err;
    int64_t c0 = -1, c1 = -1, c2 = -1, c3 = -1, c4 = -1, seen = -1;
    assert_int_equal(pvg_store_changes(s, &c0, &err), PVG_OK);
    pvg_event ev;
    memset(&ev, 0, sizeof ev);
    ev.type = PVG_EVENT_VIEW;
    ev.item = "x";
    ev.ts = pvg_store_now(s);
    int outcome = -1;
    assert_int_equal(pvg_store_event_put(s, "cc-user", &ev, NULL, &outcome, &err), PVG_OK);
    assert_int_equal(pvg_store_changes(s, &c1, &err), PVG_OK);
    assert_true(c1 > c0);
    assert_int_equal(pvg_store_changes(other, &seen, &err), PVG_OK);
    assert_int_equal(seen, c1);
    char *out = NULL;
    assert_int_equal(pvg_store_user_export(s, "cc-user", &out, &err), PVG_OK);
    pvg_free(out);
    assert_int_equal(pvg_store_changes(s, &c2, &err), PVG_OK);
    assert_int_equal(c2, c1);
    pvg_consent c = {0, 1};
    assert_int_equal(pvg_store_consent_set(other, "cc-user", &c, &err), PVG_OK);
    assert_int_equal(pvg_store_changes(s, &c3, &err), PVG_OK);
    assert_true(c3 > c2);
    assert_int_equal(pvg_store_user_delete(other, "cc-user", &err), PVG_OK);
    assert_int_equal(pvg_store_changes(s, &c4, &err), PVG_OK);
    assert_true(c4 > c3);
    pvg_store_free(other);
    pvg_store_free(s);
    drop_store(dir);
}

typedef struct secrets {
    unsigned char key[PVG_KEY_BYTES];
    unsigned char wrapped[PVG_WRAPPED_BYTES];
    unsigned char sealed_head[48];
} secrets;

static void grab_secrets(pvg_store *s, const char *user, secrets *out)
{
    unsigned char p[16];
    pvg_store_pseudonym(s, user, p);
    pvg_keycache_entry *e;
    pvg_error err;
    assert_int_equal(pvg_store_user_resolve(s, p, 0, &e, NULL, &err), PVG_OK);
    memcpy(out->key, e->key, PVG_KEY_BYTES);
    sqlite3 *ks = t_rawdb_open(pvg_store_dir(s), "keystore.db"),
            *db = t_rawdb_open(pvg_store_dir(s), "privguide.db");
    sqlite3_stmt *q;
    assert_int_equal(
        sqlite3_prepare_v2(ks, "SELECT wrapped FROM data_keys WHERE pseudonym = ?1", -1, &q, NULL),
        SQLITE_OK);
    sqlite3_bind_blob(q, 1, p, 16, SQLITE_STATIC);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    memcpy(out->wrapped, sqlite3_column_blob(q, 0), PVG_WRAPPED_BYTES);
    sqlite3_finalize(q);
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT sealed FROM chunks WHERE user_id = ?1 LIMIT 1",
                                        -1, &q, NULL),
                     SQLITE_OK);
    sqlite3_bind_int64(q, 1, e->user_id);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    memcpy(out->sealed_head, sqlite3_column_blob(q, 0), sizeof out->sealed_head);
    sqlite3_finalize(q);
    sqlite3_close(ks);
    sqlite3_close(db);
}

static void test_delete_shreds(void **state)
{
    t_rawdb_require_sqlite_env(); /* tampers with the SQLite files */
    (void)state;
    char *dir = new_store(NULL);
    pvg_store *s = open_ok(dir);
    ingest_text(s, dir, "in.jsonl", PVG_FORMAT_JSONL, EVENTS);
    secrets sec;
    grab_secrets(s, "customer-4242", &sec);
    char *before = NULL, *after = NULL;
    pvg_error err;
    assert_int_equal(pvg_store_user_export(s, "shopper-77", &before, &err), PVG_OK);
    pvg_store_free(s);
    /* the secrets are on disk before the deletion ... */
    assert_true(dir_contains(dir, sec.wrapped, sizeof sec.wrapped));
    assert_true(dir_contains(dir, sec.sealed_head, sizeof sec.sealed_head));
    s = open_ok(dir);
    assert_int_equal(pvg_store_user_delete(s, "customer-4242", &err), PVG_OK);
    char *out = NULL;
    assert_int_equal(pvg_store_user_export(s, "customer-4242", &out, &err), PVG_ERR_NOT_FOUND);
    assert_int_equal(pvg_store_user_delete(s, "customer-4242", &err), PVG_ERR_NOT_FOUND);
    assert_int_equal(pvg_store_user_export(s, "shopper-77", &after, &err), PVG_OK);
    assert_string_equal(before, after);
    pvg_store_free(s);
    /* ... and in no file afterwards: not the key, not its wrapped form, not
     * the sealed records */
    assert_false(dir_contains(dir, sec.key, sizeof sec.key));
    assert_false(dir_contains(dir, sec.wrapped, sizeof sec.wrapped));
    assert_false(dir_contains(dir, sec.sealed_head, sizeof sec.sealed_head));
    pvg_free(before);
    pvg_free(after);
    drop_store(dir);
}

static void test_no_plaintext(void **state)
{
    t_rawdb_require_sqlite_env(); /* tampers with the SQLite files */
    (void)state;
    char *dir = new_store(NULL);
    pvg_store *s = open_ok(dir);
    ingest_text(s, dir, "in.jsonl", PVG_FORMAT_JSONL, EVENTS);
    /* every table of both databases, every column, as bytes */
    sqlite3 *dbs[2] = {t_rawdb_open(dir, "privguide.db"), t_rawdb_open(dir, "keystore.db")};
    const char *needles[] = {"customer-4242", "shopper-77", "zebra-striped", "Atlantis"};
    for (int d = 0; d < 2; d++) {
        sqlite3_stmt *t;
        assert_int_equal(sqlite3_prepare_v2(dbs[d],
                                            "SELECT name FROM sqlite_master WHERE type='table'", -1,
                                            &t, NULL),
                         SQLITE_OK);
        while (sqlite3_step(t) == SQLITE_ROW) {
            char sql[256];
            snprintf(sql, sizeof sql, "SELECT * FROM \"%s\"", sqlite3_column_text(t, 0));
            sqlite3_stmt *q;
            assert_int_equal(sqlite3_prepare_v2(dbs[d], sql, -1, &q, NULL), SQLITE_OK);
            while (sqlite3_step(q) == SQLITE_ROW)
                for (int c = 0; c < sqlite3_column_count(q); c++) {
                    const unsigned char *b = sqlite3_column_blob(q, c);
                    int n = sqlite3_column_bytes(q, c);
                    for (size_t k = 0; k < sizeof needles / sizeof *needles; k++) {
                        size_t m = strlen(needles[k]);
                        for (int i = 0; b && i + (int)m <= n; i++)
                            if (memcmp(b + i, needles[k], m) == 0)
                                fail_msg("'%s' in table %s", needles[k], sqlite3_column_text(t, 0));
                    }
                }
            sqlite3_finalize(q);
        }
        sqlite3_finalize(t);
        sqlite3_close(dbs[d]);
    }
    pvg_store_free(s);
    for (size_t k = 0; k < sizeof needles / sizeof *needles; k++)
        assert_false(dir_contains(dir, needles[k], strlen(needles[k])));
    drop_store(dir);
}

static void test_rotation(void **state)
{
    (void)state;
    char *dir = new_store(NULL);
    pvg_store *s = open_ok(dir);
    ingest_text(s, dir, "in.jsonl", PVG_FORMAT_JSONL, EVENTS);
    char *before = NULL, *after = NULL;
    pvg_error err;
    assert_int_equal(pvg_store_user_export(s, "customer-4242", &before, &err), PVG_OK);
    unsigned char old_master[PVG_KEY_BYTES];
    memcpy(old_master, s->keys.master, PVG_KEY_BYTES);
    long long n = 0;
    assert_int_equal(pvg_store_keys_rotate(s, &n, &err), PVG_OK);
    assert_int_equal(n, 2);
    pvg_store_free(s);
    /* the old master key is gone from the key file; the data reads back */
    char b64[64];
    sodium_bin2base64(b64, sizeof b64, old_master, PVG_KEY_BYTES, sodium_base64_VARIANT_ORIGINAL);
    assert_false(dir_contains(dir, b64, strlen(b64)));
    s = open_ok(dir);
    assert_int_equal(pvg_store_user_export(s, "customer-4242", &after, &err), PVG_OK);
    assert_string_equal(before, after);
    pvg_free(after);

    /* A rotation interrupted after its first step: the key file holds the
     * current and the next key; keys wrapped under either open; new users'
     * keys go under the next key; a rerun finishes. */
    char *kf = key_file_of(dir);
    unsigned char next[PVG_KEY_BYTES];
    randombytes_buf(next, sizeof next);
    sodium_bin2base64(b64, sizeof b64, next, PVG_KEY_BYTES, sodium_base64_VARIANT_ORIGINAL);
    FILE *f = fopen(kf, "a");
    fprintf(f, "next %s\n", b64);
    fclose(f);
    pvg_store_free(s);
    s = open_ok(dir);
    assert_true(s->keys.has_next);
    pvg_consent c = {1, 0};
    assert_int_equal(pvg_store_consent_set(s, "newcomer", &c, &err), PVG_OK);
    assert_int_equal(pvg_store_user_export(s, "customer-4242", &after, &err), PVG_OK);
    assert_string_equal(before, after);
    pvg_free(after);
    assert_int_equal(pvg_store_keys_rotate(s, &n, &err), PVG_OK);
    assert_int_equal(n, 2); /* the newcomer's key was under the next key already */
    pvg_store_free(s);
    s = open_ok(dir);
    assert_false(s->keys.has_next);
    assert_memory_equal(s->keys.master, next, PVG_KEY_BYTES);
    assert_int_equal(pvg_store_user_export(s, "customer-4242", &after, &err), PVG_OK);
    assert_string_equal(before, after);
    pvg_store_free(s);
    pvg_free(before);
    pvg_free(after);
    free(kf);
    drop_store(dir);
}

/* The keys live outside the data dir: no file in it holds the pepper or
 * the master key; a key file inside it is refused; an old data dir with
 * master.key inside is refused until `keys move`, which moves it out. */
static void test_keys_outside(void **state)
{
    (void)state;
    char *dir = new_store(NULL);
    char *kf = key_file_of(dir);
    const char *xdg = getenv("XDG_CONFIG_HOME");
    if (xdg && *xdg) assert_int_equal(strncmp(kf, xdg, strlen(xdg)), 0);
    pvg_store *s = open_ok(dir);
    ingest_text(s, dir, "in.jsonl", PVG_FORMAT_JSONL, EVENTS);
    assert_false(dir_contains(dir, s->keys.pepper, PVG_KEY_BYTES));
    assert_false(dir_contains(dir, s->keys.master, PVG_KEY_BYTES));
    char b64[64];
    sodium_bin2base64(b64, sizeof b64, s->keys.pepper, PVG_KEY_BYTES,
                      sodium_base64_VARIANT_ORIGINAL);
    assert_false(dir_contains(dir, b64, strlen(b64)));
    char *before = NULL;
    pvg_error err;
    assert_int_equal(pvg_store_user_export(s, "customer-4242", &before, &err), PVG_OK);
    pvg_store_free(s);

    /* a key file inside the data dir is refused, also through a symlink */
    char *inside = path_in(dir, "keys");
    pvg_store_open_options oo = {inside};
    assert_int_equal(pvg_store_open_with(dir, &oo, &s, &err), PVG_ERR_INVALID);
    assert_non_null(strstr(err.text, "must not be inside the data dir"));
    char *root = strdup(dir);
    *strrchr(root, '/') = '\0';
    char *link = path_in(root, "link.key");
    assert_int_equal(symlink(inside, link), 0);
    t_write_file(inside, "x");
    oo.key_file = link;
    assert_int_equal(pvg_store_open_with(dir, &oo, &s, &err), PVG_ERR_INVALID);
    unlink(inside);

    /* the whole key file in PRIVGUIDE_KEYS */
    FILE *f = fopen(kf, "r");
    char text[4096];
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    setenv(PVG_ENV_KEYS, text, 1);
    char *moved = path_in(root, "moved.key");
    rename(kf, moved);
    s = open_ok(dir);
    pvg_store_free(s);
    unsetenv(PVG_ENV_KEYS);
    assert_int_equal(pvg_store_open(dir, &s, &err), PVG_ERR_NOT_FOUND);
    assert_non_null(strstr(err.text, "--key-file"));

    /* an old data dir: master.key inside, no store id */
    char *legacy = path_in(dir, "master.key");
    char *sid = path_in(dir, "store.id");
    rename(moved, legacy);
    unlink(sid);
    assert_int_equal(pvg_store_open(dir, &s, &err), PVG_ERR_STATE);
    assert_non_null(strstr(err.text, "privguide keys move --key-file PATH"));
    char to[4096];
    assert_int_equal(pvg_store_keys_move(dir, legacy, to, sizeof to, &err), PVG_ERR_INVALID);
    assert_int_equal(pvg_store_keys_move(dir, moved, to, sizeof to, &err), PVG_OK);
    struct stat sb;
    assert_int_not_equal(stat(legacy, &sb), 0);
    assert_int_equal(stat(moved, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    assert_int_equal(pvg_store_keys_move(dir, moved, to, sizeof to, &err), PVG_ERR_NOT_FOUND);
    oo.key_file = moved;
    assert_int_equal(pvg_store_open_with(dir, &oo, &s, &err), PVG_OK);
    char *after = NULL;
    assert_int_equal(pvg_store_user_export(s, "customer-4242", &after, &err), PVG_OK);
    assert_string_equal(before, after);
    assert_false(dir_contains(dir, s->keys.pepper, PVG_KEY_BYTES));
    pvg_store_free(s);
    /* another store's key file does not open this one */
    char *other = new_store(NULL);
    char *okf = key_file_of(other);
    oo.key_file = okf;
    assert_int_equal(pvg_store_open_with(dir, &oo, &s, &err), PVG_ERR_INVALID);
    assert_non_null(strstr(err.text, "belongs to store"));
    pvg_free(before);
    pvg_free(after);
    free(okf);
    drop_store(other);
    free(legacy);
    free(sid);
    free(moved);
    free(link);
    free(root);
    free(inside);
    free(kf);
    drop_store(dir);
}

static void test_env_master_key(void **state)
{
    (void)state;
    char key[65];
    unsigned char raw[32];
    randombytes_buf(raw, sizeof raw);
    sodium_bin2hex(key, sizeof key, raw, sizeof raw);
    setenv(PVG_ENV_MASTER_KEY, key, 1);
    char *root = t_tmpdir("store");
    char *dir = path_in(root, "data");
    pvg_store_init_options o = {0};
    o.master_key_in_env = 1;
    pvg_error err;
    assert_int_equal(pvg_store_init(dir, &o, &err), PVG_OK);
    assert_false(dir_contains(dir, key, 64));
    pvg_store *s = open_ok(dir);
    ingest_text(s, dir, "in.jsonl", PVG_FORMAT_JSONL, EVENTS);
    pvg_store_free(s);
    /* a different key must not open the store */
    raw[0] ^= 1;
    sodium_bin2hex(key, sizeof key, raw, sizeof raw);
    setenv(PVG_ENV_MASTER_KEY, key, 1);
    assert_int_equal(pvg_store_open(dir, &s, &err), PVG_ERR_CRYPTO);
    unsetenv(PVG_ENV_MASTER_KEY);
    assert_int_equal(pvg_store_open(dir, &s, &err), PVG_ERR_INVALID);
    assert_non_null(strstr(err.text, PVG_ENV_MASTER_KEY));
    t_rm_rf(root);
    free(dir);
    free(root);
}

static void test_retention(void **state)
{
    (void)state;
    char *dir =
        new_store("{\"version\":1,\"retention_basis\":\"event_time\",\"events\":{"
                  "\"view\":{\"retention_days\":10},\"purchase\":{\"retention_days\":100}}}");
    pvg_store *s = open_ok(dir);
    int64_t now = 1700000000; /* 2023-11-14 */
    pvg_store_set_clock(s, now);
    char text[1024];
    snprintf(text, sizeof text,
             "{\"type\":\"view\",\"user\":\"a\",\"item\":\"x\",\"ts\":%lld}\n"
             "{\"type\":\"view\",\"user\":\"a\",\"item\":\"y\",\"ts\":%lld}\n"
             "{\"type\":\"purchase\",\"user\":\"a\",\"item\":\"y\",\"ts\":%lld}\n",
             (long long)(now - 5 * 86400), (long long)(now - 20 * 86400),
             (long long)(now - 5 * 86400));
    pvg_ingest_stats st = ingest_text(s, dir, "r.jsonl", PVG_FORMAT_JSONL, text);
    assert_int_equal(st.stored, 2);
    assert_int_equal(reason_count(&st, "retention_expired"), 1);
    long long deleted = -1;
    pvg_error err;
    assert_int_equal(pvg_store_retention_sweep(s, &deleted, &err), PVG_OK);
    assert_int_equal(deleted, 0);
    pvg_store_set_clock(s, now + 6 * 86400);
    assert_int_equal(pvg_store_retention_sweep(s, &deleted, &err), PVG_OK);
    assert_int_equal(deleted, 1);
    json_t *j = export_json(s, "a");
    assert_int_equal(json_array_size(json_object_get(j, "events")), 1);
    json_decref(j);
    pvg_store_free(s);
    drop_store(dir);
}

static int count_cb(void *ctx, const pvg_user_view *u, const pvg_event *ev, size_t n)
{
    (void)u;
    (void)ev;
    *(size_t *)ctx += n;
    return 0;
}

/* One integer from a query on the raw database (an attacker's view). */
static long long raw_int(const char *dir, const char *sql)
{
    sqlite3 *db = t_rawdb_open(dir, "privguide.db");
    sqlite3_stmt *q;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &q, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    long long v = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    sqlite3_close(db);
    return v;
}

static long long check_problems(const pvg_store_check_report *r)
{
    return r->unreadable + r->duplicate + r->orphaned + r->keyless;
}

static void test_tampering(void **state)
{
    t_rawdb_require_sqlite_env(); /* tampers with the SQLite files */
    (void)state;
    char *dir = new_store(NULL);
    pvg_store *s = open_ok(dir);
    ingest_text(s, dir, "in.jsonl", PVG_FORMAT_JSONL, EVENTS);
    size_t n = 0;
    pvg_error err;
    assert_int_equal(pvg_store_foreach_user(s, 0, count_cb, &n, &err), PVG_OK);
    assert_int_equal(n, 5);
    /* a chunk moved to another user fails authentication: it is skipped
     * and counted, every other event stays readable */
    long long moved = raw_int(dir, "SELECT n FROM chunks WHERE id = (SELECT min(id) FROM chunks)");
    assert_int_equal(t_rawdb_exec(dir, "privguide.db",
                                  "UPDATE chunks SET user_id = (SELECT max(user_id) FROM chunks)"
                                  " WHERE id = (SELECT min(id) FROM chunks)"),
                     SQLITE_OK);
    n = 0;
    pvg_store_read_stats_reset(s);
    assert_int_equal(pvg_store_foreach_user(s, 0, count_cb, &n, &err), PVG_OK);
    assert_int_equal(n, 5 - (size_t)moved);
    pvg_store_read_stats rs;
    pvg_store_read_stats_get(s, &rs);
    assert_int_equal(rs.chunks_unreadable, 1);
    assert_non_null(strstr(rs.last, "failed authentication"));
    pvg_store_check_report rep;
    assert_int_equal(pvg_store_check(s, 0, NULL, NULL, &rep, &err), PVG_OK);
    assert_int_equal(rep.unreadable, 1);
    pvg_store_free(s);
    drop_store(dir);

    dir = new_store(NULL);
    s = open_ok(dir);
    ingest_text(s, dir, "in.jsonl", PVG_FORMAT_JSONL, EVENTS);
    /* one flipped bit in a sealed chunk: the export of its user names it */
    assert_int_equal(t_rawdb_exec(dir, "privguide.db",
                                  "UPDATE chunks SET sealed = substr(sealed, 1, 30) ||"
                                  " CAST(X'00' AS BLOB) || substr(sealed, 32) WHERE id = 1"),
                     SQLITE_OK);
    json_t *a = export_json(s, "customer-4242"), *b = export_json(s, "shopper-77");
    json_t *bad = json_object_get(a, "unreadable_chunks");
    if (!bad) bad = json_object_get(b, "unreadable_chunks");
    assert_int_equal(json_array_size(bad), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(bad, 0), "reason")),
                        "failed authentication");
    assert_int_equal(strlen(json_string_value(json_object_get(json_array_get(bad, 0), "chunk"))),
                     32);
    json_decref(a);
    json_decref(b);
    pvg_store_free(s);
    drop_store(dir);
}

/* A chunk row duplicated in the raw database (the unique index dropped to
 * get it in): readers skip the copy and count it; store check finds it and
 * quarantines it, after which the index is back. */
static void test_chunk_replayed(void **state)
{
    t_rawdb_require_sqlite_env(); /* tampers with the SQLite files */
    (void)state;
    char *dir = new_store(NULL);
    pvg_store *s = open_ok(dir);
    ingest_text(s, dir, "in.jsonl", PVG_FORMAT_JSONL, EVENTS);
    pvg_error err;
    pvg_store_free(s);
    /* with the index in place the backend refuses the copy */
    assert_int_not_equal(
        t_rawdb_exec(dir, "privguide.db",
                     "INSERT INTO chunks(user_id, expires_day, n, cid, sealed)"
                     " SELECT user_id, expires_day, n, cid, sealed FROM chunks WHERE id = 1"),
        SQLITE_OK);
    assert_int_equal(
        t_rawdb_exec(dir, "privguide.db",
                     "DROP INDEX chunks_cid;"
                     "INSERT INTO chunks(user_id, expires_day, n, cid, sealed)"
                     " SELECT user_id, expires_day, n, cid, sealed FROM chunks WHERE id = 1"),
        SQLITE_OK);
    s = open_ok(dir); /* the index cannot be rebuilt while the copy is there */
    size_t n = 0;
    assert_int_equal(pvg_store_foreach_user(s, 0, count_cb, &n, &err), PVG_OK);
    assert_int_equal(n, 5); /* not 5 + the copy's events */
    pvg_store_read_stats rs;
    pvg_store_read_stats_get(s, &rs);
    assert_int_equal(rs.chunks_duplicate, 1);
    assert_int_equal(rs.chunks_unreadable, 0);
    pvg_store_check_report rep;
    assert_int_equal(pvg_store_check(s, 0, NULL, NULL, &rep, &err), PVG_OK);
    assert_int_equal(rep.duplicate, 1);
    assert_int_equal(check_problems(&rep), 1);
    assert_int_equal(rep.cid_index, 0);
    assert_int_equal(pvg_store_check(s, PVG_CHECK_QUARANTINE, NULL, NULL, &rep, &err), PVG_OK);
    assert_int_equal(rep.quarantined, 1);
    assert_int_equal(rep.in_quarantine, 1);
    assert_int_equal(rep.cid_index, 1);
    assert_int_equal(
        raw_int(dir, "SELECT count(*) FROM chunk_quarantine WHERE user_pseudonym IS NOT NULL"), 1);
    assert_int_equal(pvg_store_check(s, 0, NULL, NULL, &rep, &err), PVG_OK);
    assert_int_equal(check_problems(&rep), 0);
    /* the quarantined copy goes with its user's erasure */
    long long uid = raw_int(dir, "SELECT user_id FROM chunk_quarantine");
    unsigned char p4242[16], p77[16];
    pvg_store_pseudonym(s, "customer-4242", p4242);
    pvg_store_pseudonym(s, "shopper-77", p77);
    int64_t id4242;
    assert_int_equal(pvg_store_user_id(s, "customer-4242", &id4242, &err), PVG_OK);
    assert_int_equal(pvg_store_user_delete(s, uid == id4242 ? "customer-4242" : "shopper-77", &err),
                     PVG_OK);
    assert_int_equal(raw_int(dir, "SELECT count(*) FROM chunk_quarantine"), 0);
    pvg_store_free(s);
    drop_store(dir);
}

/* A chunk whose stored expiry was edited (to keep it past its retention)
 * fails authentication: skipped, counted, found by store check. */
static void test_chunk_expiry_edited(void **state)
{
    t_rawdb_require_sqlite_env(); /* tampers with the SQLite files */
    (void)state;
    char *dir = new_store(NULL);
    pvg_store *s = open_ok(dir);
    ingest_text(s, dir, "in.jsonl", PVG_FORMAT_JSONL, EVENTS);
    pvg_error err;
    long long edited = raw_int(dir, "SELECT n FROM chunks WHERE id = 1");
    assert_int_equal(
        t_rawdb_exec(dir, "privguide.db",
                     "UPDATE chunks SET expires_day = expires_day + 3650 WHERE id = 1"),
        SQLITE_OK);
    size_t n = 0;
    assert_int_equal(pvg_store_foreach_user(s, 0, count_cb, &n, &err), PVG_OK);
    assert_int_equal(n, 5 - (size_t)edited);
    pvg_store_read_stats rs;
    pvg_store_read_stats_get(s, &rs);
    assert_int_equal(rs.chunks_unreadable, 1);
    /* so is an edited event count */
    assert_int_equal(t_rawdb_exec(dir, "privguide.db",
                                  "UPDATE chunks SET expires_day = expires_day - 3650 WHERE id = 1;"
                                  "UPDATE chunks SET n = n + 1 WHERE id = 1"),
                     SQLITE_OK);
    pvg_store_read_stats_reset(s);
    n = 0;
    assert_int_equal(pvg_store_foreach_user(s, 0, count_cb, &n, &err), PVG_OK);
    assert_int_equal(n, 5 - (size_t)edited);
    pvg_store_read_stats_get(s, &rs);
    assert_int_equal(rs.chunks_unreadable, 1);
    pvg_store_check_report rep;
    assert_int_equal(pvg_store_check(s, PVG_CHECK_QUARANTINE, NULL, NULL, &rep, &err), PVG_OK);
    assert_int_equal(rep.unreadable, 1);
    assert_int_equal(rep.quarantined, 1);
    assert_int_equal(raw_int(dir, "SELECT count(*) FROM chunks WHERE id = 1"), 0);
    pvg_store_read_stats_reset(s);
    n = 0;
    assert_int_equal(pvg_store_foreach_user(s, 0, count_cb, &n, &err), PVG_OK);
    assert_int_equal(n, 5 - (size_t)edited);
    pvg_store_read_stats_get(s, &rs);
    assert_int_equal(rs.chunks_unreadable, 0);
    pvg_store_free(s);
    drop_store(dir);
}

static void put_view(pvg_store *s, const char *user, const char *item)
{
    pvg_event ev;
    memset(&ev, 0, sizeof ev);
    ev.type = PVG_EVENT_VIEW;
    ev.item = item;
    ev.ts = pvg_store_now(s);
    int outcome = -1;
    pvg_error err;
    pvg_status st = pvg_store_event_put(s, user, &ev, NULL, &outcome, &err);
    if (st != PVG_OK) fprintf(stderr, "event_put: %s\n", err.text);
    assert_int_equal(st, PVG_OK);
}

/* Scenario 3 of issue 10 with two handles (two processes or two pooled
 * connections): one caches a user's key, the other deletes the user, the
 * first writes for the same id again. No chunk may land under the destroyed
 * key or a deleted row; no row id is reused; everything stays readable. */
static void test_stale_cache(void **state)
{
    t_rawdb_require_sqlite_env(); /* tampers with the SQLite files */
    (void)state;
    char *dir = new_store(NULL);
    pvg_store *a = open_ok(dir), *b = open_ok(dir);
    pvg_error err;
    put_view(a, "alice", "sku-1");
    put_view(a, "victim", "sku-1"); /* a caches victim's row and key */
    int64_t victim_id;
    assert_int_equal(pvg_store_user_id(a, "victim", &victim_id, &err), PVG_OK);
    /* allowed to return: a suppressed id is refused instead (test_erasure_suppresses) */
    assert_int_equal(pvg_store_user_erase(b, "victim", PVG_ERASE_ALLOW_RETURN, &err), PVG_OK);
    put_view(a, "victim", "sku-2"); /* the stale handle writes for the same id */
    assert_int_equal(
        raw_int(dir, "SELECT count(*) FROM chunks WHERE user_id NOT IN (SELECT id FROM users)"), 0);
    int64_t again;
    assert_int_equal(pvg_store_user_id(b, "victim", &again, &err), PVG_OK);
    assert_true(again > victim_id); /* a new row and key, not the destroyed one */
    put_view(b, "newcomer", "sku-3");
    int64_t newcomer;
    assert_int_equal(pvg_store_user_id(a, "newcomer", &newcomer, &err), PVG_OK);
    assert_true(newcomer != victim_id && newcomer > again);
    /* everyone is readable from both handles */
    pvg_store *hs[2] = {a, b};
    for (int i = 0; i < 2; i++) {
        size_t n = 0;
        pvg_store_read_stats_reset(hs[i]);
        assert_int_equal(pvg_store_foreach_user(hs[i], 0, count_cb, &n, &err), PVG_OK);
        assert_int_equal(n, 3);
        pvg_store_read_stats rs;
        pvg_store_read_stats_get(hs[i], &rs);
        assert_int_equal(rs.chunks_unreadable + rs.chunks_duplicate, 0);
    }
    json_t *j = export_json(b, "newcomer");
    assert_null(json_object_get(j, "unreadable_chunks"));
    assert_int_equal(json_array_size(json_object_get(j, "events")), 1);
    json_decref(j);
    pvg_store_check_report rep;
    assert_int_equal(pvg_store_check(a, 0, NULL, NULL, &rep, &err), PVG_OK);
    assert_int_equal(check_problems(&rep), 0);
    /* the same through a cached read: b deletes, a's lookup must not answer
     * from its cache */
    assert_int_equal(pvg_store_user_delete(b, "alice", &err), PVG_OK);
    assert_int_equal(pvg_store_user_exists(a, "alice", &err), 0);
    pvg_store_free(a);
    pvg_store_free(b);
    drop_store(dir);
}

/* A format-1 chunk (sealed before expiry was authenticated) stays readable
 * and `store check --upgrade` rewrites it in the current format. */
static void test_chunk_format1_upgrade(void **state)
{
    t_rawdb_require_sqlite_env(); /* tampers with the SQLite files */
    (void)state;
    char *dir = new_store(NULL);
    pvg_store *s = open_ok(dir);
    pvg_error err;
    put_view(s, "old-timer", "sku-1");
    unsigned char p[16];
    pvg_store_pseudonym(s, "old-timer", p);
    pvg_keycache_entry *e;
    assert_int_equal(pvg_store_user_resolve(s, p, 0, &e, NULL, &err), PVG_OK);
    /* re-seal its chunk the way format 1 did */
    sqlite3 *db = t_rawdb_open(dir, "privguide.db");
    sqlite3_stmt *q;
    assert_int_equal(
        sqlite3_prepare_v2(db, "SELECT id, expires_day, n, cid, sealed FROM chunks", -1, &q, NULL),
        SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    int64_t row = sqlite3_column_int64(q, 0), day = sqlite3_column_int64(q, 1),
            n = sqlite3_column_int64(q, 2);
    unsigned char cid[16], sealed[512], plain[512], resealed[512];
    size_t sn = (size_t)sqlite3_column_bytes(q, 4);
    assert_true(sn <= sizeof sealed);
    memcpy(cid, sqlite3_column_blob(q, 3), 16);
    memcpy(sealed, sqlite3_column_blob(q, 4), sn);
    sqlite3_finalize(q);
    int version = 0;
    assert_int_equal(pvg_chunk_open(e->key, p, cid, day, n, sealed, sn, plain, &version), PVG_OK);
    assert_int_equal(version, 2);
    size_t pn = sn - PVG_SEAL_OVERHEAD;
    unsigned char ad[39];
    memcpy(ad, "pvg-ck", 6);
    ad[6] = 1;
    memcpy(ad + 7, p, 16);
    memcpy(ad + 23, cid, 16);
    randombytes_buf(resealed, crypto_aead_xchacha20poly1305_ietf_NPUBBYTES);
    crypto_aead_xchacha20poly1305_ietf_encrypt(
        resealed + crypto_aead_xchacha20poly1305_ietf_NPUBBYTES, NULL, plain, pn, ad, sizeof ad,
        NULL, resealed, e->key);
    assert_int_equal(
        sqlite3_prepare_v2(db, "UPDATE chunks SET sealed = ?1 WHERE id = ?2", -1, &q, NULL),
        SQLITE_OK);
    sqlite3_bind_blob(q, 1, resealed, (int)sn, SQLITE_STATIC);
    sqlite3_bind_int64(q, 2, row);
    assert_int_equal(sqlite3_step(q), SQLITE_DONE);
    sqlite3_finalize(q);
    sqlite3_close(db);
    size_t count = 0;
    pvg_store_read_stats_reset(s);
    assert_int_equal(pvg_store_foreach_user(s, 0, count_cb, &count, &err), PVG_OK);
    assert_int_equal(count, 1);
    pvg_store_read_stats rs;
    pvg_store_read_stats_get(s, &rs);
    assert_int_equal(rs.chunks_legacy, 1);
    assert_int_equal(rs.chunks_unreadable, 0);
    pvg_store_check_report rep;
    assert_int_equal(pvg_store_check(s, 0, NULL, NULL, &rep, &err), PVG_OK);
    assert_int_equal(rep.legacy, 1);
    assert_int_equal(pvg_store_check(s, PVG_CHECK_UPGRADE, NULL, NULL, &rep, &err), PVG_OK);
    assert_int_equal(rep.upgraded, 1);
    assert_int_equal(pvg_store_check(s, 0, NULL, NULL, &rep, &err), PVG_OK);
    assert_int_equal(rep.legacy, 0);
    assert_int_equal(rep.chunks, 1);
    /* now its expiry is bound: an edit fails authentication */
    assert_int_equal(
        t_rawdb_exec(dir, "privguide.db", "UPDATE chunks SET expires_day = expires_day + 1"),
        SQLITE_OK);
    assert_int_equal(pvg_store_check(s, 0, NULL, NULL, &rep, &err), PVG_OK);
    assert_int_equal(rep.unreadable, 1);
    pvg_store_free(s);
    drop_store(dir);
}

/* Row ids are never reused, also in a store made before AUTOINCREMENT
 * (migrated on open, its sequence above every id ever seen, including ids
 * of chunks whose user row is gone). */
static void test_row_ids_not_reused(void **state)
{
    t_rawdb_require_sqlite_env(); /* tampers with the SQLite files */
    (void)state;
    char *dir = new_store(NULL);
    pvg_store *s = open_ok(dir);
    pvg_error err;
    put_view(s, "u1", "sku-1");
    put_view(s, "u2", "sku-1");
    int64_t id2, id3;
    assert_int_equal(pvg_store_user_id(s, "u2", &id2, &err), PVG_OK);
    assert_int_equal(pvg_store_user_delete(s, "u2", &err), PVG_OK);
    put_view(s, "u3", "sku-1");
    assert_int_equal(pvg_store_user_id(s, "u3", &id3, &err), PVG_OK);
    assert_true(id3 > id2);
    pvg_store_free(s);
    /* make it an old store: users without AUTOINCREMENT, no sequence, and a
     * chunk left under row id 40 by a stale writer */
    assert_int_equal(
        t_rawdb_exec(dir, "privguide.db",
                     "ALTER TABLE users RENAME TO users_new;"
                     "CREATE TABLE users(id INTEGER PRIMARY KEY, pseudonym BLOB NOT NULL UNIQUE,"
                     "  created_at INTEGER NOT NULL, consent_personalization INTEGER NOT NULL,"
                     "  consent_analytics INTEGER NOT NULL, consent_updated_at INTEGER);"
                     "INSERT INTO users SELECT * FROM users_new; DROP TABLE users_new;"
                     "DELETE FROM sqlite_sequence WHERE name = 'users';"
                     "INSERT INTO chunks(user_id, expires_day, n, cid, sealed)"
                     " SELECT 40, expires_day, n, randomblob(16), sealed FROM chunks LIMIT 1"),
        SQLITE_OK);
    s = open_ok(dir);
    assert_int_equal(raw_int(dir, "SELECT count(*) FROM sqlite_master WHERE name = 'users'"
                                  " AND sql LIKE '%AUTOINCREMENT%'"),
                     1);
    put_view(s, "u4", "sku-1");
    int64_t id4;
    assert_int_equal(pvg_store_user_id(s, "u4", &id4, &err), PVG_OK);
    assert_true(id4 > 40);
    assert_int_equal(pvg_store_user_exists(s, "u1", &err), 1);
    size_t n = 0;
    assert_int_equal(pvg_store_foreach_user(s, 0, count_cb, &n, &err), PVG_OK);
    assert_int_equal(n, 3);
    pvg_store_check_report rep;
    assert_int_equal(pvg_store_check(s, PVG_CHECK_QUARANTINE, NULL, NULL, &rep, &err), PVG_OK);
    assert_int_equal(rep.orphaned, 1);
    assert_int_equal(rep.quarantined, 1);
    assert_int_equal(
        raw_int(dir, "SELECT count(*) FROM chunk_quarantine WHERE user_pseudonym IS NULL"), 1);
    pvg_store_free(s);
    drop_store(dir);
}

static void test_consent(void **state)
{
    (void)state;
    char *dir = new_store(NULL);
    pvg_store *s = open_ok(dir);
    pvg_consent c;
    pvg_error err;
    assert_int_equal(pvg_store_consent_get(s, "z", &c, &err), PVG_ERR_NOT_FOUND);
    assert_int_equal(pvg_store_user_exists(s, "z", &err), 0);
    c.personalization = 0;
    c.analytics = 1;
    assert_int_equal(pvg_store_consent_set(s, "z", &c, &err), PVG_OK);
    assert_int_equal(pvg_store_user_exists(s, "z", &err), 1);
    pvg_consent d;
    assert_int_equal(pvg_store_consent_get(s, "z", &d, &err), PVG_OK);
    assert_int_equal(d.personalization, 0);
    assert_int_equal(d.analytics, 1);
    ingest_text(s, dir, "in.jsonl", PVG_FORMAT_JSONL, EVENTS);
    size_t n = 0;
    c.analytics = 0;
    assert_int_equal(pvg_store_consent_set(s, "shopper-77", &c, &err), PVG_OK);
    assert_int_equal(pvg_store_foreach_user(s, PVG_FOREACH_REQUIRE_ANALYTICS, count_cb, &n, &err),
                     PVG_OK);
    assert_int_equal(n, 3); /* shopper-77's two events are left out */
    pvg_store_free(s);
    drop_store(dir);
}

/* Read snapshots (store_internal.h): the memo answers inside one only what
 * the database holds (a change by another handle shows at the next one;
 * inside a write transaction the transaction's own rows); no write may run
 * in one; they nest. */
static void test_read_snapshot(void **state)
{
    (void)state;
    char *dir = new_store(NULL);
    pvg_store *s = open_ok(dir), *o = open_ok(dir);
    pvg_error err;
    pvg_consent on = {1, 1}, off = {0, 1}, c;
    assert_int_equal(pvg_store_consent_set(s, "z", &on, &err), PVG_OK);
    for (int i = 0; i < 2; i++) { /* read, then from the memo */
        assert_int_equal(pvg_store_read_begin(s, &err), PVG_OK);
        assert_int_equal(pvg_store_consent_get(s, "z", &c, &err), PVG_OK);
        assert_int_equal(pvg_store_consent_get(s, "nobody", &c, &err), PVG_ERR_NOT_FOUND);
        pvg_store_read_end(s);
    }
    assert_int_equal(c.personalization, 1);
    assert_int_equal(pvg_store_consent_set(o, "z", &off, &err), PVG_OK);
    assert_int_equal(pvg_store_consent_set(o, "nobody", &off, &err), PVG_OK);
    assert_int_equal(pvg_store_read_begin(s, &err), PVG_OK);
    assert_int_equal(pvg_store_read_begin(s, &err), PVG_OK); /* nested: counts only */
    assert_int_equal(pvg_store_consent_get(s, "z", &c, &err), PVG_OK);
    assert_int_equal(c.personalization, 0);
    assert_int_equal(pvg_store_consent_get(s, "nobody", &c, &err), PVG_OK);
    /* no write inside a snapshot */
    assert_int_equal(pvg_store_consent_set(s, "z", &on, &err), PVG_ERR_STATE);
    pvg_store_read_end(s);
    assert_int_equal(pvg_store_consent_set(s, "z", &on, &err), PVG_ERR_STATE);
    pvg_store_read_end(s);
    pvg_store_read_end(s); /* unmatched: nothing */
    assert_int_equal(pvg_store_consent_set(s, "z", &on, &err), PVG_OK);
    /* inside a write transaction: its own rows, not the memo */
    assert_int_equal(pvg_store_begin(s, &err), PVG_OK);
    assert_int_equal(pvg_store_consent_set(s, "z", &off, &err), PVG_OK);
    assert_int_equal(pvg_store_read_begin(s, &err), PVG_OK);
    assert_int_equal(pvg_store_consent_get(s, "z", &c, &err), PVG_OK);
    assert_int_equal(c.personalization, 0);
    pvg_store_read_end(s);
    pvg_store_rollback(s);
    assert_int_equal(pvg_store_read_begin(s, &err), PVG_OK);
    assert_int_equal(pvg_store_consent_get(s, "z", &c, &err), PVG_OK);
    assert_int_equal(c.personalization, 1);
    pvg_store_read_end(s);
    pvg_store_free(o);
    pvg_store_free(s);
    drop_store(dir);
}

/* A read snapshot while nothing was committed since the last one opens no
 * transaction (the memo answers from that state): a commit by another
 * handle after read_begin is not seen by the memo's answers, as in an
 * opened snapshot; a read the memo cannot answer then opens the
 * transaction, and when the state changed after the memo answered, it is
 * refused busy instead of mixing two states; the next snapshot sees the
 * commit. */
static void test_read_snapshot_kept(void **state)
{
    t_rawdb_require_sqlite_env(); /* the SQLite backend's WAL-index check */
    (void)state;
    char *dir = new_store(NULL);
    pvg_store *s = open_ok(dir), *o = open_ok(dir);
    pvg_error err;
    pvg_consent on = {1, 1}, off = {0, 1}, c;
    assert_int_equal(pvg_store_consent_set(s, "z", &on, &err), PVG_OK);
    for (int i = 0; i < 3; i++) { /* read, then from the memo */
        assert_int_equal(pvg_store_read_begin(s, &err), PVG_OK);
        assert_int_equal(pvg_store_consent_get(s, "z", &c, &err), PVG_OK);
        pvg_store_read_end(s);
    }
    assert_int_equal(pvg_store_read_begin(s, &err), PVG_OK);
    assert_int_equal(pvg_store_consent_set(o, "z", &off, &err), PVG_OK); /* after read_begin */
    assert_int_equal(pvg_store_consent_get(s, "z", &c, &err), PVG_OK);
    assert_int_equal(c.personalization, 1); /* the snapshot's state */
    /* not in the memo: the database, in a newer state than the memo's answer */
    assert_int_equal(pvg_store_consent_get(s, "nobody", &c, &err), PVG_ERR_BUSY);
    pvg_store_read_end(s);
    assert_int_equal(pvg_store_read_begin(s, &err), PVG_OK);
    assert_int_equal(pvg_store_consent_get(s, "z", &c, &err), PVG_OK);
    assert_int_equal(c.personalization, 0);
    assert_int_equal(pvg_store_consent_get(s, "nobody", &c, &err), PVG_ERR_NOT_FOUND);
    pvg_store_read_end(s);
    /* a commit before read_begin: seen at once */
    assert_int_equal(pvg_store_consent_set(o, "z", &on, &err), PVG_OK);
    assert_int_equal(pvg_store_read_begin(s, &err), PVG_OK);
    assert_int_equal(pvg_store_consent_get(s, "z", &c, &err), PVG_OK);
    assert_int_equal(c.personalization, 1);
    pvg_store_read_end(s);
    /* a miss first, then the change: one state (the newer), no refusal */
    for (int i = 0; i < 2; i++) {
        assert_int_equal(pvg_store_read_begin(s, &err), PVG_OK);
        assert_int_equal(pvg_store_consent_get(s, "z", &c, &err), PVG_OK);
        pvg_store_read_end(s);
    }
    assert_int_equal(pvg_store_read_begin(s, &err), PVG_OK);
    assert_int_equal(pvg_store_consent_set(o, "z", &off, &err), PVG_OK);
    assert_int_equal(pvg_store_consent_get(s, "other", &c, &err), PVG_ERR_NOT_FOUND);
    assert_int_equal(pvg_store_consent_get(s, "z", &c, &err), PVG_OK);
    assert_int_equal(c.personalization, 0);
    pvg_store_read_end(s);
    pvg_store_free(o);
    pvg_store_free(s);
    drop_store(dir);
}

/* The kept snapshot against another process: a handle whose memo holds
 * the consent, a credential and its suspension entry sees, in its next
 * snapshot, each change another process commits (consent withdrawn, a
 * TRUNCATE checkpoint then a withdrawal, so the WAL restarts from frame 1
 * with new salts, a token revoked, a credential suspended, the shopper
 * erased), however often the memo answered the old state before. The child
 * is forked before this process opens the store (SQLite's locks are per
 * process) and acts on one command byte at a time. */
static void child_writer(const char *dir, int in, int out)
{
    pvg_store *o = NULL;
    pvg_error err;
    int ok = pvg_store_open(dir, &o, &err) == PVG_OK;
    char cmd;
    while (ok && read(in, &cmd, 1) == 1 && cmd != 'q') {
        pvg_consent on = {1, 1}, off = {0, 1};
        pvg_backend *b = pvg_store_backend(o);
        long long n = 0;
        pvg_status st = PVG_OK;
        if (cmd == 'w') st = pvg_store_consent_set(o, "z", &off, &err);
        if (cmd == 'n') st = pvg_store_consent_set(o, "z", &on, &err);
        if (cmd == 't') { /* the WAL emptied: the next commit restarts it */
            st = pvg_store_checkpoint(o, &err);
            if (st == PVG_OK) st = pvg_store_consent_set(o, "z", &off, &err);
        }
        if (cmd == 'r') st = b->ops->cred_revoke(b, "tk1", &n, &err);
        if (cmd == 's') st = b->ops->meta_set(b, "test_suspended:tk2", "1 by a test", &err);
        if (cmd == 'e') st = pvg_store_user_delete(o, "z", &err);
        char ack = st == PVG_OK ? 'k' : 'x';
        if (write(out, &ack, 1) != 1) break;
    }
    if (o) pvg_store_free(o);
    _exit(ok ? 0 : 1);
}

static void snap_read(pvg_store *s, pvg_status *consent_st, int *pers, int *revoked, int *susp)
{
    pvg_error err;
    pvg_backend *b = pvg_store_backend(s);
    assert_int_equal(pvg_store_read_begin(s, &err), PVG_OK);
    pvg_consent c = {0, 0};
    *consent_st = pvg_store_consent_get(s, "z", &c, &err);
    *pers = c.personalization;
    pvg_backend_cred cr;
    assert_int_equal(b->ops->cred_get(b, "tk1", &cr, &err), PVG_OK);
    *revoked = cr.revoked;
    char *v = NULL;
    pvg_status ms = b->ops->meta_get(b, "test_suspended:tk2", &v, &err);
    assert_true(ms == PVG_OK || ms == PVG_ERR_NOT_FOUND);
    *susp = ms == PVG_OK;
    free(v);
    pvg_store_read_end(s);
}

static void test_read_snapshot_kept_other_process(void **state)
{
    t_rawdb_require_sqlite_env();
    (void)state;
    char *dir = new_store(NULL);
    int down[2], up[2];
    assert_int_equal(pipe(down), 0);
    assert_int_equal(pipe(up), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(down[1]);
        close(up[0]);
        child_writer(dir, down[0], up[1]);
    }
    close(down[0]);
    close(up[1]);
    pvg_store *s = open_ok(dir);
    pvg_error err;
    pvg_consent on = {1, 1};
    assert_int_equal(pvg_store_consent_set(s, "z", &on, &err), PVG_OK);
    pvg_backend *b = pvg_store_backend(s);
    for (int i = 1; i <= 2; i++) {
        pvg_backend_cred c;
        memset(&c, 0, sizeof c);
        snprintf(c.key_id, sizeof c.key_id, "tk%d", i);
        strcpy(c.kind, "token");
        strcpy(c.role, "user");
        c.secret_hash_len = 32;
        assert_int_equal(b->ops->cred_insert(b, &c, &err), PVG_OK);
    }
    /* cmd, then the state the next snapshot must show */
    static const struct {
        char cmd;
        int pers, revoked, susp, erased;
    } steps[] = {{'w', 0, 0, 0, 0}, {'n', 1, 0, 0, 0}, {'t', 0, 0, 0, 0}, {'n', 1, 0, 0, 0},
                 {'t', 0, 0, 0, 0}, {'n', 1, 0, 0, 0}, {'r', 1, 1, 0, 0}, {'s', 1, 1, 1, 0},
                 {'t', 0, 1, 1, 0}, {'e', 0, 1, 1, 1}};
    pvg_status cs;
    int pers, rev, susp;
    for (size_t k = 0; k < sizeof steps / sizeof *steps; k++) {
        for (int i = 0; i < 3; i++) /* the memo warm: the last snapshots kept */
            snap_read(s, &cs, &pers, &rev, &susp);
        assert_int_equal(write(down[1], &steps[k].cmd, 1), 1);
        char ack = 0;
        assert_int_equal(read(up[0], &ack, 1), 1);
        assert_int_equal(ack, 'k');
        for (int i = 0; i < 2; i++) {
            snap_read(s, &cs, &pers, &rev, &susp);
            assert_int_equal(cs, steps[k].erased ? PVG_ERR_NOT_FOUND : PVG_OK);
            if (!steps[k].erased) assert_int_equal(pers, steps[k].pers);
            assert_int_equal(rev, steps[k].revoked);
            assert_int_equal(susp, steps[k].susp);
        }
    }
    assert_int_equal(write(down[1], "q", 1), 1);
    int wst = 0;
    assert_int_equal(waitpid(pid, &wst, 0), pid);
    assert_true(WIFEXITED(wst) && WEXITSTATUS(wst) == 0);
    close(down[1]);
    close(up[0]);
    pvg_store_free(s);
    drop_store(dir);
}

/* Purpose limitation at collection applies to every writer: file ingest
 * skips (and counts) the events a shopper's consent does not allow, as the
 * batch put refuses them. Default policy: view/cart/rating under
 * personalization or analytics, search under personalization only,
 * purchase/return under "orders" (no switch). */
static void test_collect_consent(void **state)
{
    (void)state;
    char *dir = new_store(NULL);
    pvg_store *s = open_ok(dir);
    pvg_error err;
    pvg_consent off = {0, 0};
    assert_int_equal(pvg_store_consent_set(s, "customer-4242", &off, &err), PVG_OK);
    pvg_ingest_stats st = ingest_text(s, dir, "in.jsonl", PVG_FORMAT_JSONL, EVENTS);
    assert_int_equal(st.no_consent, 2); /* customer-4242's view and search */
    assert_int_equal(st.stored, 3);     /* their purchase (orders), shopper-77's two */
    json_t *j = export_json(s, "customer-4242");
    assert_int_equal(json_integer_value(json_object_get(j, "event_count")), 1);
    json_decref(j);
    /* analytics on: the view is collected now, the search still is not */
    pvg_consent anal = {0, 1};
    assert_int_equal(pvg_store_consent_set(s, "customer-4242", &anal, &err), PVG_OK);
    st = ingest_text(s, dir, "in.jsonl", PVG_FORMAT_JSONL, EVENTS);
    assert_int_equal(st.no_consent, 1);
    assert_int_equal(st.stored, 1);
    /* the batch put: the same rule, refused with reason "no_consent" */
    pvg_event ev = {0};
    ev.type = PVG_EVENT_SEARCH;
    ev.ts = 1709290500;
    ev.query = "tea";
    ev.fields = PVG_FIELD_QUERY;
    pvg_event_in in = {"customer-4242", &ev, NULL, 0};
    pvg_event_out out;
    long long stored = -1;
    assert_int_equal(pvg_store_events_put(s, &in, 1, &out, &stored, NULL, &err), PVG_OK);
    assert_int_equal(stored, 0);
    assert_int_equal(out.status, PVG_ERR_POLICY);
    assert_string_equal(out.reason, "no_consent");
    assert_non_null(strstr(out.message, "personalization"));
    /* a shopper not yet known starts from the policy's defaults (on) */
    in.user = "newcomer-1";
    assert_int_equal(pvg_store_events_put(s, &in, 1, &out, &stored, NULL, &err), PVG_OK);
    assert_int_equal(stored, 1);
    pvg_store_free(s);
    drop_store(dir);
}

/* Erasure sticks: a deleted shopper's rows are skipped by a re-import and
 * counted; events, consent and (elsewhere) tokens for them are refused;
 * --allow-return leaves no entry and the shopper may come back. The
 * suppression list holds the pseudonym only. */
static void test_erasure_suppresses(void **state)
{
    t_rawdb_require_sqlite_env(); /* tampers with the SQLite files */
    (void)state;
    char *dir = new_store(NULL);
    pvg_store *s = open_ok(dir);
    pvg_ingest_stats st = ingest_text(s, dir, "in.jsonl", PVG_FORMAT_JSONL, EVENTS);
    assert_int_equal(st.stored, 5);
    assert_int_equal(st.suppressed, 0);
    pvg_error err;
    int sup = -1;
    assert_int_equal(pvg_store_user_suppressed(s, "customer-4242", &sup, &err), PVG_OK);
    assert_int_equal(sup, 0);
    assert_int_equal(pvg_store_user_delete(s, "customer-4242", &err), PVG_OK);
    assert_int_equal(pvg_store_user_erase(s, "shopper-77", PVG_ERASE_ALLOW_RETURN, &err), PVG_OK);
    assert_int_equal(pvg_store_user_suppressed(s, "customer-4242", &sup, &err), PVG_OK);
    assert_int_equal(sup, 1);
    assert_int_equal(pvg_store_user_suppressed(s, "shopper-77", &sup, &err), PVG_OK);
    assert_int_equal(sup, 0);
    /* the re-import: customer-4242's 3 rows skipped and counted, shopper-77 back */
    st = ingest_text(s, dir, "in.jsonl", PVG_FORMAT_JSONL, EVENTS);
    assert_int_equal(st.suppressed, 3);
    assert_int_equal(st.stored, 2);
    assert_int_equal(st.duplicates, 0);
    assert_int_equal(st.read, st.accepted + st.rejected);
    assert_int_equal(pvg_store_user_exists(s, "customer-4242", &err), 0);
    assert_int_equal(pvg_store_user_exists(s, "shopper-77", &err), 1);
    /* writes for the erased shopper are refused with the stable status */
    pvg_event ev = {0};
    ev.type = PVG_EVENT_VIEW;
    ev.item = "sku-1";
    ev.ts = pvg_store_now(s);
    int outcome = -1;
    assert_int_equal(pvg_store_event_put(s, "customer-4242", &ev, NULL, &outcome, &err),
                     PVG_ERR_ERASED);
    assert_int_equal(outcome, 0);
    pvg_consent c = {1, 1};
    assert_int_equal(pvg_store_consent_set(s, "customer-4242", &c, &err), PVG_ERR_ERASED);
    assert_int_equal(pvg_store_user_exists(s, "customer-4242", &err), 0);
    /* another handle (another process) sees the list too */
    pvg_store *other = open_ok(dir);
    assert_int_equal(pvg_store_event_put(other, "customer-4242", &ev, NULL, &outcome, &err),
                     PVG_ERR_ERASED);
    pvg_store_free(other);
    pvg_store_free(s);
    /* the list holds the pseudonym and nothing else */
    sqlite3 *db = t_rawdb_open(dir, "privguide.db");
    sqlite3_stmt *q;
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT * FROM suppressed", -1, &q, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_column_count(q), 1);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    assert_int_equal(sqlite3_column_bytes(q, 0), 16);
    assert_int_equal(sqlite3_step(q), SQLITE_DONE);
    sqlite3_finalize(q);
    sqlite3_close(db);
    drop_store(dir);
}

/* Batched writes: per-event outcomes, duplicates within the batch and
 * against the index (also for events stored by an import), the per-user
 * cap naming the first event over it, nothing stored on a refused batch. */
static void test_events_put_batch(void **state)
{
    (void)state;
    char *dir = new_store(NULL);
    pvg_store *s = open_ok(dir);
    pvg_error err;
    ingest_text(
        s, dir, "in.jsonl", PVG_FORMAT_JSONL,
        "{\"type\":\"purchase\",\"user\":\"a\",\"item\":\"x\",\"ts\":1709290000,\"quantity\":1}\n");
    int64_t now = pvg_store_now(s);
    enum { N = 6 };
    pvg_event ev[N];
    memset(ev, 0, sizeof ev);
    for (int i = 0; i < N; i++) {
        ev[i].type = PVG_EVENT_VIEW;
        ev[i].item = "x";
        ev[i].ts = now - i;
    }
    ev[2] = ev[1];                   /* the same content twice in one batch */
    ev[3].type = PVG_EVENT_PURCHASE; /* the imported event, again */
    ev[3].ts = 1709290000;
    ev[3].quantity = 1;
    ev[3].fields = PVG_FIELD_QUANTITY;
    ev[4].item = NULL; /* invalid: a view needs an item */
    pvg_event_in in[N];
    for (int i = 0; i < N; i++)
        in[i] = (pvg_event_in){i == 5 ? "b" : "a", &ev[i], NULL, 10 + i};
    pvg_event_out out[N];
    long long stored = -1, dups = -1;
    assert_int_equal(pvg_store_events_put(s, in, N, out, &stored, &dups, &err), PVG_OK);
    assert_int_equal(stored, 3);
    assert_int_equal(dups, 2);
    assert_int_equal(out[0].status, PVG_OK);
    assert_int_equal(out[0].stored, 1);
    assert_int_equal(out[1].stored, 1);
    assert_int_equal(out[2].status, PVG_OK);
    assert_int_equal(out[2].stored, 0);
    assert_int_equal(out[3].status, PVG_OK);
    assert_int_equal(out[3].stored, 0);
    assert_int_equal(out[4].status, PVG_ERR_INVALID);
    assert_string_equal(out[4].reason, "invalid");
    assert_int_equal(out[5].stored, 1);
    /* the same batch again: all duplicates (found in the index) */
    assert_int_equal(pvg_store_events_put(s, in, N, out, &stored, &dups, &err), PVG_OK);
    assert_int_equal(stored, 0);
    assert_int_equal(dups, 5);
    pvg_store_counts c;
    assert_int_equal(pvg_store_counts_get(s, &c, &err), PVG_OK);
    assert_int_equal(c.events, 4);
    /* the cap: PVG_EVENTS_PER_USER_MAX + 1 events for one user */
    size_t big = PVG_EVENTS_PER_USER_MAX + 1;
    pvg_event *bev = calloc(big, sizeof *bev);
    pvg_event_in *bin = calloc(big + 1, sizeof *bin);
    pvg_event_out *bout = calloc(big + 1, sizeof *bout);
    for (size_t i = 0; i < big; i++) {
        bev[i].type = PVG_EVENT_VIEW;
        bev[i].item = "y";
        bev[i].ts = now - 1000 - (int64_t)i;
    }
    bin[0] = (pvg_event_in){"c", &bev[0], NULL, 0};
    for (size_t i = 0; i < big; i++)
        bin[i + 1] = (pvg_event_in){"a", &bev[i], NULL, (long)(i + 1)};
    pvg_error_clear(&err);
    assert_int_equal(pvg_store_events_put(s, bin, big + 1, bout, &stored, &dups, &err),
                     PVG_ERR_INVALID);
    char want[32];
    snprintf(want, sizeof want, "events[%zu]", big);
    if (!strstr(err.text, want)) fail_msg("cap error must name %s: %s", want, err.text);
    assert_int_equal(pvg_store_counts_get(s, &c, &err), PVG_OK);
    assert_int_equal(c.events, 4); /* nothing of the refused batch */
    assert_int_equal(pvg_store_user_exists(s, "c", &err), 0);
    /* exactly the cap is fine; then export reads every event back */
    assert_int_equal(pvg_store_events_put(s, bin + 1, big - 1, bout, &stored, &dups, &err), PVG_OK);
    assert_int_equal(stored, (long long)big - 1);
    json_t *j = export_json(s, "a");
    assert_int_equal(json_array_size(json_object_get(j, "events")), 3 + big - 1);
    json_decref(j);
    /* not inside the caller's transaction */
    assert_int_equal(pvg_store_begin(s, &err), PVG_OK);
    assert_int_equal(pvg_store_events_put(s, in, 1, out, NULL, NULL, &err), PVG_ERR_STATE);
    pvg_store_rollback(s);
    free(bev);
    free(bin);
    free(bout);
    pvg_store_free(s);
    drop_store(dir);
}

/* A store made before the duplicate index gets it built at open: an
 * imported event posted again is then a duplicate. */
static void test_dup_index_upgrade(void **state)
{
    t_rawdb_require_sqlite_env(); /* tampers with the SQLite files */
    (void)state;
    char *dir = new_store(NULL);
    pvg_store *s = open_ok(dir);
    ingest_text(s, dir, "in.jsonl", PVG_FORMAT_JSONL, EVENTS);
    pvg_store_free(s);
    sqlite3 *db = t_rawdb_open(dir, "privguide.db");
    assert_int_equal(
        sqlite3_exec(db, "DELETE FROM event_tag_sets; DELETE FROM meta WHERE key = 'dup_index'",
                     NULL, NULL, NULL),
        SQLITE_OK);
    sqlite3_close(db);
    s = open_ok(dir);
    pvg_ingest_stats st = ingest_text(s, dir, "in.jsonl", PVG_FORMAT_JSONL, EVENTS);
    assert_int_equal(st.stored, 0);
    assert_int_equal(st.duplicates, 5);
    pvg_store_free(s);
    db = t_rawdb_open(dir, "privguide.db");
    sqlite3_stmt *q;
    assert_int_equal(
        sqlite3_prepare_v2(db, "SELECT sum(length(keys)) / 8 FROM event_tag_sets", -1, &q, NULL),
        SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(q, 0), 5);
    sqlite3_finalize(q);
    sqlite3_close(db);
    drop_store(dir);
}

/* One shopper's events of one day past a set part's 4,096 keys: every
 * posted event is found again, whichever part holds it; and a store with
 * the older one-row-per-event index table is migrated at open. */
static void test_dup_index_parts(void **state)
{
    t_rawdb_require_sqlite_env(); /* tampers with the SQLite files */
    (void)state;
    char *dir = new_store(NULL);
    pvg_store *s = open_ok(dir);
    pvg_error err = {0};
    int64_t now = pvg_store_now(s);
    enum { CALLS = 6, PER = PVG_EVENTS_PER_USER_MAX };
    pvg_event *ev = calloc((size_t)CALLS * PER, sizeof *ev);
    pvg_event_in *in = calloc(PER, sizeof *in);
    pvg_event_out *out = calloc(PER, sizeof *out);
    char dk[CALLS * PER][16];
    for (int i = 0; i < CALLS * PER; i++) {
        ev[i].type = PVG_EVENT_VIEW;
        ev[i].item = "x";
        ev[i].ts = now; /* one day: one set, in parts */
        snprintf(dk[i], sizeof dk[i], "k%d", i);
    }
    long long stored, dups;
    for (int c = 0; c < CALLS; c++) {
        for (int i = 0; i < PER; i++)
            in[i] = (pvg_event_in){"heavy", &ev[c * PER + i], dk[c * PER + i], i};
        assert_int_equal(pvg_store_events_put(s, in, PER, out, &stored, &dups, &err), PVG_OK);
        assert_int_equal(stored, PER);
    }
    for (int c = CALLS - 1; c >= 0; c--) { /* again, every part */
        for (int i = 0; i < PER; i++)
            in[i] = (pvg_event_in){"heavy", &ev[c * PER + i], dk[c * PER + i], i};
        assert_int_equal(pvg_store_events_put(s, in, PER, out, &stored, &dups, &err), PVG_OK);
        assert_int_equal(stored, 0);
        assert_int_equal(dups, PER);
    }
    pvg_store_free(s);
    sqlite3 *db = t_rawdb_open(dir, "privguide.db");
    sqlite3_stmt *q;
    assert_int_equal(
        sqlite3_prepare_v2(db, "SELECT count(*), sum(length(keys)) / 8 FROM event_tag_sets", -1, &q,
                           NULL),
        SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    if (sqlite3_column_int(q, 0) < 2)
        fail_msg("6,000 keys of one day must take more than one part");
    assert_int_equal(sqlite3_column_int(q, 1), CALLS * PER);
    sqlite3_finalize(q);
    /* the older index table: dropped at open, the set form rebuilt */
    assert_int_equal(
        sqlite3_exec(db,
                     "CREATE TABLE event_tags(user_id INTEGER NOT NULL, tag INTEGER NOT NULL,"
                     " expires_day INTEGER NOT NULL, PRIMARY KEY(user_id, tag)) WITHOUT ROWID;"
                     "INSERT INTO event_tags VALUES(1, 1, 1);",
                     NULL, NULL, NULL),
        SQLITE_OK);
    sqlite3_close(db);
    s = open_ok(dir);
    for (int i = 0; i < PER; i++)
        in[i] = (pvg_event_in){"heavy", &ev[i], dk[i], i};
    assert_int_equal(pvg_store_events_put(s, in, PER, out, &stored, &dups, &err), PVG_OK);
    assert_int_equal(stored, 0);
    assert_int_equal(dups, PER);
    pvg_store_free(s);
    db = t_rawdb_open(dir, "privguide.db");
    assert_int_equal(
        sqlite3_prepare_v2(db, "SELECT count(*) FROM sqlite_master WHERE name = 'event_tags'", -1,
                           &q, NULL),
        SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(q, 0), 0);
    sqlite3_finalize(q);
    assert_int_equal(
        sqlite3_prepare_v2(db, "SELECT sum(length(keys)) / 8 FROM event_tag_sets", -1, &q, NULL),
        SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(q, 0), CALLS * PER);
    sqlite3_finalize(q);
    sqlite3_close(db);
    free(ev);
    free(in);
    free(out);
    drop_store(dir);
}

static pvg_item *item_of(pvg_store *s, const char *ext)
{
    pvg_item *it = NULL;
    pvg_error err;
    assert_int_equal(pvg_store_item_get(s, ext, &it, &err), PVG_OK);
    return it;
}

static void put_price(pvg_store *s, const char *ext, double price)
{
    pvg_item it = {0};
    it.ext_id = ext;
    it.price = price;
    pvg_error err;
    assert_int_equal(pvg_store_item_put(s, &it, NULL, &err), PVG_OK);
}

/* The typical price is the lower median of the item's last 32 prices; the
 * last price is kept beside it; a store made before the two columns opens,
 * shows its last price and starts a window with the next price. */
static void test_typical_price(void **state)
{
    t_rawdb_require_sqlite_env(); /* tampers with the SQLite files */
    (void)state;
    char *dir = new_store(NULL);
    pvg_store *s = open_ok(dir);
    for (int i = 0; i < 5; i++)
        put_price(s, "A", 2.95);
    put_price(s, "A", 5.91);
    pvg_item *it = item_of(s, "A");
    assert_true(it->price == 2.95);
    assert_true(it->last_price == 5.91);
    pvg_item_free(it);
    /* even count: the lower middle price, one that was charged */
    put_price(s, "B", 1.0);
    put_price(s, "B", 3.0);
    it = item_of(s, "B");
    assert_true(it->price == 1.0 && it->last_price == 3.0);
    pvg_item_free(it);
    /* bounded: 20 at 1.00 then 20 at 3.00 has median 1.00 over all 40, but
     * 3.00 over the last 32 */
    for (int i = 0; i < 40; i++)
        put_price(s, "C", i < 20 ? 1.0 : 3.0);
    it = item_of(s, "C");
    assert_true(it->price == 3.0);
    pvg_item_free(it);
    /* an item put without a price keeps both */
    pvg_item t = {0};
    t.ext_id = "A";
    t.title = "a title";
    t.price = -1;
    pvg_error err;
    assert_int_equal(pvg_store_item_put(s, &t, NULL, &err), PVG_OK);
    it = item_of(s, "A");
    assert_true(it->price == 2.95 && it->last_price == 5.91);
    pvg_item_free(it);
    pvg_store_free(s);
    /* the stored window never holds more than 32 prices */
    sqlite3 *db = t_rawdb_open(dir, "privguide.db");
    sqlite3_stmt *q;
    assert_int_equal(
        sqlite3_prepare_v2(db, "SELECT recent_prices FROM items WHERE ext_id = 'C'", -1, &q, NULL),
        SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    int words = 1;
    for (const unsigned char *p = sqlite3_column_text(q, 0); *p; p++)
        words += *p == ' ';
    assert_int_equal(words, PVG_ITEM_PRICE_WINDOW);
    sqlite3_finalize(q);
    /* a store from before the columns */
    assert_int_equal(sqlite3_exec(db,
                                  "ALTER TABLE items DROP COLUMN recent_prices;"
                                  "ALTER TABLE items DROP COLUMN typical_price;",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    s = open_ok(dir);
    it = item_of(s, "A");
    assert_true(it->price == 5.91 && it->last_price == 5.91); /* no window yet: the last */
    pvg_item_free(it);
    put_price(s, "A", 2.0);
    put_price(s, "A", 2.0);
    put_price(s, "A", 9.0);
    it = item_of(s, "A");
    assert_true(it->price == 2.0 && it->last_price == 9.0);
    pvg_item_free(it);
    pvg_store_free(s);
    drop_store(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_and_open),
        cmocka_unit_test(test_read_snapshot),
        cmocka_unit_test(test_read_snapshot_kept),
        cmocka_unit_test(test_read_snapshot_kept_other_process),
        cmocka_unit_test(test_bad_policy),
        cmocka_unit_test(test_roundtrip_and_minimisation),
        cmocka_unit_test(test_policy_drops_types),
        cmocka_unit_test(test_duplicates),
        cmocka_unit_test(test_delete_shreds),
        cmocka_unit_test(test_no_plaintext),
        cmocka_unit_test(test_rotation),
        cmocka_unit_test(test_env_master_key),
        cmocka_unit_test(test_keys_outside),
        cmocka_unit_test(test_retention),
        cmocka_unit_test(test_tampering),
        cmocka_unit_test(test_chunk_replayed),
        cmocka_unit_test(test_chunk_expiry_edited),
        cmocka_unit_test(test_stale_cache),
        cmocka_unit_test(test_row_ids_not_reused),
        cmocka_unit_test(test_chunk_format1_upgrade),
        cmocka_unit_test(test_consent),
        cmocka_unit_test(test_collect_consent),
        cmocka_unit_test(test_change_counter),
        cmocka_unit_test(test_erasure_suppresses),
        cmocka_unit_test(test_events_put_batch),
        cmocka_unit_test(test_dup_index_upgrade),
        cmocka_unit_test(test_dup_index_parts),
        cmocka_unit_test(test_typical_price),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
