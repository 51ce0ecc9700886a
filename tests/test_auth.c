/*
 * test_auth.c - API keys and user tokens: creation, the credential format,
 * hashed storage (the secret never in the database), checks of good,
 * malformed, forged, revoked and expired credentials, user scoping, and
 * the token-bucket rate limiter.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "server/server_internal.h"
#include "t_rawdb.h"

#include <privguide/auth.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct fx {
    char dir[128];
    pvg_store *s;
} fx;

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/pvg_test_auth_XXXXXX");
    if (!mkdtemp(f->dir)) return -1;
    strcat(f->dir, "/d");
    if (pvg_store_init(f->dir, NULL, NULL) != PVG_OK) return -1;
    if (pvg_store_open(f->dir, &f->s, NULL) != PVG_OK) return -1;
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

static int count_rows_with(fx *f, const char *needle)
{
    sqlite3 *db = t_rawdb_open(f->dir, "privguide.db");
    sqlite3_stmt *q = NULL;
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT count(*) FROM auth_keys WHERE instr(key_id||role||"
                                        "label||hex(secret_hash), ?) > 0",
                                        -1, &q, NULL),
                     SQLITE_OK);
    sqlite3_bind_text(q, 1, needle, -1, SQLITE_STATIC);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    int n = sqlite3_column_int(q, 0);
    sqlite3_finalize(q);
    sqlite3_close(db);
    return n;
}

static void test_apikey_roundtrip(void **state)
{
    t_rawdb_require_sqlite_env(); /* tampers with the SQLite files */
    fx *f = *state;
    char *cred = NULL;
    pvg_principal p, got;
    assert_int_equal(pvg_auth_apikey_create(f->s, PVG_ROLE_ANALYST, "ops", 5, &cred, &p, NULL),
                     PVG_OK);
    assert_int_equal(strlen(cred), 5 + 16 + 1 + 43);
    assert_memory_equal(cred, "pvgk_", 5);
    assert_int_equal(pvg_auth_check(f->s, cred, &got, NULL), PVG_OK);
    assert_int_equal(got.role, PVG_ROLE_ANALYST);
    assert_string_equal(got.key_id, p.key_id);
    assert_true(got.rate_per_s == 5);
    /* only the hash is stored: the secret part appears nowhere */
    assert_int_equal(count_rows_with(f, cred + 22), 0);
    assert_int_equal(count_rows_with(f, p.key_id), 1);
    /* one flipped character of the secret is refused */
    char forged[PVG_AUTH_SECRET_MAX];
    strcpy(forged, cred);
    forged[30] = forged[30] == 'A' ? 'B' : 'A';
    pvg_error e;
    assert_int_equal(pvg_auth_check(f->s, forged, &got, &e), PVG_ERR_PERMISSION);
    /* a key presented as a token (same id, other prefix) is refused */
    forged[3] = 't';
    strcpy(forged + 4, cred + 4);
    assert_int_equal(pvg_auth_check(f->s, forged, &got, &e), PVG_ERR_PERMISSION);
    assert_int_equal(pvg_auth_revoke(f->s, p.key_id, NULL), PVG_OK);
    assert_int_equal(pvg_auth_check(f->s, cred, &got, &e), PVG_ERR_PERMISSION);
    assert_non_null(strstr(e.text, "revoked"));
    assert_int_equal(pvg_auth_revoke(f->s, "0000000000000000", NULL), PVG_ERR_NOT_FOUND);
    pvg_auth_credential_free(cred);
    assert_int_equal(pvg_auth_apikey_create(f->s, PVG_ROLE_USER, NULL, 0, &cred, NULL, NULL),
                     PVG_ERR_INVALID);
    assert_int_equal(pvg_auth_apikey_create(f->s, PVG_ROLE_ADMIN, NULL, -1, &cred, NULL, NULL),
                     PVG_ERR_INVALID);
}

static void test_malformed(void **state)
{
    fx *f = *state;
    pvg_principal got;
    static const char *bad[] = {"",
                                "pvgk_",
                                "Bearer x",
                                "pvgk_0123456789abcdeX_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                                "pvgx_0123456789abcdef_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                                "pvgk_0123456789abcdef_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                                "pvgk_0123456789abcdef_AAAA"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(pvg_auth_check(f->s, bad[i], &got, NULL), PVG_ERR_PERMISSION);
    assert_int_equal(pvg_auth_check(f->s, NULL, &got, NULL), PVG_ERR_PERMISSION);
    char longc[300];
    memset(longc, 'a', sizeof longc - 1);
    longc[299] = 0;
    assert_int_equal(pvg_auth_check(f->s, longc, &got, NULL), PVG_ERR_PERMISSION);
}

static void test_token_scope_and_expiry(void **state)
{
    t_rawdb_require_sqlite_env(); /* tampers with the SQLite files */
    fx *f = *state;
    char *tok = NULL;
    pvg_principal p, got;
    pvg_store_set_clock(f->s, 1000000);
    assert_int_equal(pvg_auth_token_issue(f->s, "17850", 60, 2, &tok, &p, NULL), PVG_OK);
    assert_memory_equal(tok, "pvgt_", 5);
    assert_int_equal(p.expires_at, 1000060);
    assert_int_equal(pvg_auth_check(f->s, tok, &got, NULL), PVG_OK);
    assert_int_equal(got.role, PVG_ROLE_USER);
    assert_int_equal(pvg_auth_may_access_user(f->s, &got, "17850"), 1);
    assert_int_equal(pvg_auth_may_access_user(f->s, &got, "17851"), 0);
    assert_int_equal(pvg_auth_may_access_user(f->s, &got, NULL), 0);
    pvg_principal admin = {.role = PVG_ROLE_ADMIN}, analyst = {.role = PVG_ROLE_ANALYST};
    assert_int_equal(pvg_auth_may_access_user(f->s, &admin, "17851"), 1);
    assert_int_equal(pvg_auth_may_access_user(f->s, &analyst, "17851"), 0);
    /* no external id stored: the user id appears nowhere in the table */
    assert_int_equal(count_rows_with(f, "17850"), 0);
    pvg_store_set_clock(f->s, 1000060);
    pvg_error e;
    assert_int_equal(pvg_auth_check(f->s, tok, &got, &e), PVG_ERR_PERMISSION);
    assert_non_null(strstr(e.text, "expired"));
    pvg_store_set_clock(f->s, 1000000);
    unsigned char ps[PVG_PSEUDONYM_BYTES];
    pvg_store_pseudonym(f->s, "17850", ps);
    long long n = 0;
    assert_int_equal(pvg_auth_revoke_user(f->s, ps, &n, NULL), PVG_OK);
    assert_int_equal(n, 1);
    assert_int_equal(pvg_auth_check(f->s, tok, &got, NULL), PVG_ERR_PERMISSION);
    pvg_auth_credential_free(tok);
    assert_int_equal(pvg_auth_token_issue(f->s, "", 60, 0, &tok, NULL, NULL), PVG_ERR_INVALID);
    assert_int_equal(pvg_auth_token_issue(f->s, "x", 0, 0, &tok, NULL, NULL), PVG_ERR_INVALID);
}

/* The server's credential cache keeps every one of more shoppers than it
 * has home slots (a direct-mapped table of 1,024 slots evicted one of two
 * credentials whose ids shared a slot, so those missed on every request):
 * after one check each, all 1,100 are answered from the cache (no store
 * given the second time: a miss would fail). */
static void test_authcache_keeps_colliding_credentials(void **state)
{
    fx *f = *state;
    enum { N = 1100 };
    char **tok = calloc(N, sizeof *tok);
    assert_non_null(tok);
    pvg_server *srv = calloc(1, sizeof *srv);
    assert_non_null(srv);
    srv->authcache = pvg_srv_authcache_new(3600);
    assert_non_null(srv->authcache);
    assert_int_equal(pvg_store_begin(f->s, NULL), PVG_OK);
    for (int i = 0; i < N; i++) {
        char user[16];
        snprintf(user, sizeof user, "u%d", i);
        assert_int_equal(pvg_auth_token_issue(f->s, user, 3600, 0, &tok[i], NULL, NULL), PVG_OK);
    }
    assert_int_equal(pvg_store_commit(f->s, NULL), PVG_OK);
    pvg_principal p;
    for (int i = 0; i < N; i++)
        assert_int_equal(pvg_srv_auth_check(srv, f->s, tok[i], &p, NULL), PVG_OK);
    int hits = 0;
    for (int i = 0; i < N; i++) {
        pvg_error e;
        hits += pvg_srv_auth_check(srv, NULL, tok[i], &p, &e) == PVG_OK;
        assert_int_equal(p.role, PVG_ROLE_USER);
    }
    assert_int_equal(hits, N);
    /* a wrong secret under a cached id is never a hit */
    char bad[PVG_AUTH_SECRET_MAX];
    snprintf(bad, sizeof bad, "%s", tok[0]);
    size_t bl = strlen(bad);
    bad[bl - 1] = bad[bl - 1] == 'A' ? 'B' : 'A';
    assert_int_equal(pvg_srv_auth_check(srv, f->s, bad, &p, NULL), PVG_ERR_PERMISSION);
    /* cleared: every one goes back to the store */
    pvg_srv_authcache_clear(srv->authcache);
    assert_int_not_equal(pvg_srv_auth_check(srv, NULL, tok[1], &p, NULL), PVG_OK);
    for (int i = 0; i < N; i++)
        pvg_auth_credential_free(tok[i]);
    free(tok);
    pvg_srv_authcache_free(srv->authcache);
    free(srv);
}

typedef struct seen_keys {
    int n, expired, revoked, never;
    char first_label[32];
} seen_keys;

static int count_key(void *ctx, const pvg_auth_key_info *k)
{
    seen_keys *x = ctx;
    if (x->n++ == 0) snprintf(x->first_label, sizeof x->first_label, "%s", k->label);
    x->expired += k->expired;
    x->revoked += k->revoked;
    x->never += k->expires_at == 0;
    return 0;
}

/* An API key created with an expiry is refused from then on, naming when it
 * expired; the list shows every key's state, never a token. */
static void test_apikey_expiry_and_list(void **state)
{
    fx *f = *state;
    char *key = NULL, *forever = NULL, *tok = NULL;
    pvg_principal p, got;
    pvg_error e;
    pvg_store_set_clock(f->s, 1000000); /* 1970-01-12T13:46:40Z */
    assert_int_equal(
        pvg_auth_apikey_create_ttl(f->s, PVG_ROLE_ADMIN, "demo", 0, 30 * 86400, &key, &p, &e),
        PVG_OK);
    assert_int_equal(p.expires_at, 1000000 + 30 * 86400);
    assert_int_equal(pvg_auth_apikey_create(f->s, PVG_ROLE_ANALYST, NULL, 0, &forever, NULL, &e),
                     PVG_OK);
    assert_int_equal(pvg_auth_token_issue(f->s, "17850", 60, 0, &tok, NULL, &e), PVG_OK);
    assert_int_equal(pvg_auth_check(f->s, key, &got, &e), PVG_OK);
    assert_int_equal(got.expires_at, 1000000 + 30 * 86400);
    seen_keys x = {0};
    assert_int_equal(pvg_auth_apikey_foreach(f->s, count_key, &x, &e), PVG_OK);
    assert_int_equal(x.n, 2); /* the token is not an API key */
    assert_string_equal(x.first_label, "demo");
    assert_int_equal(x.expired, 0);
    assert_int_equal(x.never, 1);
    pvg_store_set_clock(f->s, 1000000 + 30 * 86400);
    assert_int_equal(pvg_auth_check(f->s, key, &got, &e), PVG_ERR_PERMISSION);
    assert_non_null(strstr(e.text, "expired at 1970-02-11T13:46:40Z"));
    assert_non_null(strstr(e.text, p.key_id));
    assert_int_equal(pvg_auth_check(f->s, forever, &got, &e), PVG_OK);
    memset(&x, 0, sizeof x);
    assert_int_equal(pvg_auth_apikey_foreach(f->s, count_key, &x, &e), PVG_OK);
    assert_int_equal(x.expired, 1);
    assert_int_equal(pvg_auth_revoke(f->s, got.key_id, &e), PVG_OK);
    memset(&x, 0, sizeof x);
    assert_int_equal(pvg_auth_apikey_foreach(f->s, count_key, &x, &e), PVG_OK);
    assert_int_equal(x.revoked, 1);
    assert_int_equal(pvg_auth_apikey_create_ttl(f->s, PVG_ROLE_ADMIN, NULL, 0, -1, &key, NULL, &e),
                     PVG_ERR_INVALID);
    pvg_auth_credential_free(key);
    pvg_auth_credential_free(forever);
    pvg_auth_credential_free(tok);
}

/* A writer that does not bump the change counter itself (an older binary
 * on the same store, a hand-made SQL edit) still invalidates a handle's
 * memo: the database bumps it on every write to the credential, user and
 * meta tables. The handle memoised the credential first. */
static void test_foreign_revoke_seen_by_memo(void **state)
{
    t_rawdb_require_sqlite_env(); /* writes the SQLite file directly */
    fx *f = *state;
    pvg_consent on = {1, 1};
    pvg_error err;
    assert_int_equal(pvg_store_consent_set(f->s, "alice", &on, &err), PVG_OK);
    char *cred = NULL;
    pvg_principal p, who;
    assert_int_equal(pvg_auth_token_issue(f->s, "alice", 3600, 0, &cred, &p, &err), PVG_OK);
    assert_int_equal(pvg_auth_check(f->s, cred, &who, &err), PVG_OK); /* memoised */
    assert_int_equal(pvg_auth_check(f->s, cred, &who, &err), PVG_OK);
    char sql[200];
    snprintf(sql, sizeof sql, "UPDATE auth_keys SET revoked = 1 WHERE key_id = '%s'", p.key_id);
    assert_int_equal(t_rawdb_exec(f->dir, "privguide.db", sql), SQLITE_OK);
    assert_int_equal(pvg_auth_check(f->s, cred, &who, &err), PVG_ERR_PERMISSION);
    pvg_auth_credential_free(cred);
}

static void test_rate_limiter(void **state)
{
    (void)state;
    pvg_srv_ratelimit rl;
    assert_int_equal(pvg_srv_ratelimit_init(&rl), 0);
    double retry = 0;
    /* 2/s, burst 4 */
    for (int i = 0; i < 4; i++)
        assert_int_equal(pvg_srv_ratelimit_take(&rl, "k1", 2, 100.0, &retry), 1);
    assert_int_equal(pvg_srv_ratelimit_take(&rl, "k1", 2, 100.0, &retry), 0);
    assert_true(retry > 0.49 && retry <= 0.5);
    assert_int_equal(pvg_srv_ratelimit_take(&rl, "k2", 2, 100.0, &retry), 1); /* separate bucket */
    assert_int_equal(pvg_srv_ratelimit_take(&rl, "k1", 2, 100.5, &retry), 1); /* refilled one */
    assert_int_equal(pvg_srv_ratelimit_take(&rl, "k1", 0, 100.5, &retry), 1); /* unlimited */
    /* many keys: the table grows */
    char key[32];
    for (int i = 0; i < 2000; i++) {
        snprintf(key, sizeof key, "key%d", i);
        assert_int_equal(pvg_srv_ratelimit_take(&rl, key, 1, 100.0, &retry), 1);
    }
    assert_int_equal(pvg_srv_ratelimit_take(&rl, "key7", 1, 100.0, &retry), 1);
    assert_int_equal(pvg_srv_ratelimit_take(&rl, "key7", 1, 100.0, &retry), 0);
    pvg_srv_ratelimit_free(&rl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_apikey_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_token_scope_and_expiry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_apikey_expiry_and_list, setup, teardown),
        cmocka_unit_test(test_rate_limiter),
        cmocka_unit_test_setup_teardown(test_foreign_revoke_seen_by_memo, setup, teardown),
        cmocka_unit_test_setup_teardown(test_authcache_keeps_colliding_credentials, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
