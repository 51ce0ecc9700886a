/*
 * test_audit_of_user.c - the shopper's view of the audit log
 * (pvg_access_audit_of_user, GET /v1/users/{id}/audit) in both backends:
 * its entries are numbered 1..total among the shopper's own entries, so
 * the numbers say nothing of how many accesses to other shoppers happened
 * in between (the log's global sequence numbers would); and the per-subject
 * read (pvg_audit_foreach_subject, through the log's index by subject)
 * yields exactly the entries a scan of the whole log finds for that
 * subject, in the same order.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <privguide/access.h>
#include <privguide/audit.h>
#include <privguide/store.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char dir[256];
static pvg_store *S;

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/pvg_test_audit_of_user_XXXXXX");
    if (!mkdtemp(dir)) return -1;
    strcat(dir, "/d");
    pvg_error err;
    if (pvg_store_init(dir, NULL, &err) != PVG_OK || pvg_store_open(dir, &S, &err) != PVG_OK) {
        fprintf(stderr, "store: %s\n", err.text);
        return -1;
    }
    pvg_consent c = {1, 1};
    for (const char *const *u = (const char *const[]){"a", "b", NULL}; *u; u++)
        if (pvg_store_consent_set(S, *u, &c, &err) != PVG_OK) return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    pvg_store_free(S);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%.*s'", (int)(strlen(dir) - 2), dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void export_of(pvg_access *g, const char *user)
{
    char *json = NULL;
    pvg_error err;
    assert_int_equal(pvg_access_export(g, user, &json, &err), PVG_OK);
    free(json);
}

typedef struct seen {
    int64_t seq[16];
    char action[16][32];
    int n;
} seen;

static int keep_view(void *ctx, const pvg_access_audit_view *v)
{
    seen *s = ctx;
    assert_true(s->n < 16);
    s->seq[s->n] = v->seq;
    snprintf(s->action[s->n], sizeof s->action[s->n], "%s", v->action);
    s->n++;
    return 0;
}

/* a's entries are interleaved with many of b's: a's view numbers its own
 * 3, 2, 1 (newest first) whatever happened to b in between. */
static void test_numbered_per_shopper(void **state)
{
    (void)state;
    pvg_access g;
    pvg_access_init(&g, S, "cli");
    export_of(&g, "a");
    for (int i = 0; i < 5; i++)
        export_of(&g, "b");
    export_of(&g, "a");
    for (int i = 0; i < 3; i++)
        export_of(&g, "b");
    seen s = {0};
    long long total = 0;
    pvg_error err;
    assert_int_equal(pvg_access_audit_of_user(&g, "a", 10, keep_view, &s, &total, &err), PVG_OK);
    assert_int_equal(total, 3); /* two exports and this read */
    assert_int_equal(s.n, 3);
    assert_string_equal(s.action[0], "audit_read");
    assert_string_equal(s.action[1], "export");
    assert_string_equal(s.action[2], "export");
    for (int i = 0; i < 3; i++)
        assert_int_equal(s.seq[i], 3 - i);
    /* the limit shows the newest, keeping their numbers */
    memset(&s, 0, sizeof s);
    assert_int_equal(pvg_access_audit_of_user(&g, "a", 2, keep_view, &s, &total, &err), PVG_OK);
    assert_int_equal(total, 4);
    assert_int_equal(s.n, 2);
    assert_int_equal(s.seq[0], 4);
    assert_int_equal(s.seq[1], 3);
    /* b's own numbering is just as dense */
    memset(&s, 0, sizeof s);
    assert_int_equal(pvg_access_audit_of_user(&g, "b", 16, keep_view, &s, &total, &err), PVG_OK);
    assert_int_equal(total, 9);
    for (int i = 0; i < s.n; i++)
        assert_int_equal(s.seq[i], 9 - i);
}

typedef struct collect {
    const char *subject; /* NULL: every entry */
    int64_t seq[64];
    int n;
} collect;

static int collect_one(void *ctx, const pvg_audit_entry *e)
{
    collect *c = ctx;
    if (c->subject && strcmp(e->subject, c->subject) != 0) return 0;
    assert_true(c->n < 64);
    c->seq[c->n++] = e->seq;
    return 0;
}

static int stop_at_first(void *ctx, const pvg_audit_entry *e)
{
    (void)e;
    ++*(int *)ctx;
    return 1;
}

static void test_subject_read_matches_scan(void **state)
{
    (void)state;
    pvg_access g;
    pvg_access_init(&g, S, "cli");
    export_of(&g, "a");
    export_of(&g, "b");
    pvg_error err;
    for (const char *const *u = (const char *const[]){"a", "b", "nobody", NULL}; *u; u++) {
        char subject[2 * PVG_PSEUDONYM_BYTES + 1];
        pvg_audit_subject_of_user(S, *u, subject);
        collect scan = {subject, {0}, 0}, byidx = {NULL, {0}, 0};
        assert_int_equal(pvg_audit_foreach(S, 0, 0, collect_one, &scan, &err), PVG_OK);
        assert_int_equal(pvg_audit_foreach_subject(S, subject, collect_one, &byidx, &err), PVG_OK);
        assert_int_equal(byidx.n, scan.n);
        assert_true(strcmp(*u, "nobody") == 0 ? scan.n == 0 : scan.n >= 2);
        for (int i = 0; i < scan.n; i++)
            assert_int_equal(byidx.seq[i], scan.seq[i]);
    }
    /* the callback stops it early */
    char subject_b[2 * PVG_PSEUDONYM_BYTES + 1];
    pvg_audit_subject_of_user(S, "b", subject_b);
    int calls = 0;
    assert_int_equal(pvg_audit_foreach_subject(S, subject_b, stop_at_first, &calls, &err),
                     PVG_ERR_ABORTED);
    assert_int_equal(calls, 1);
    assert_int_equal(pvg_audit_foreach_subject(S, NULL, collect_one, NULL, &err), PVG_ERR_INVALID);
    assert_int_equal(pvg_audit_foreach_subject(NULL, "a", collect_one, NULL, &err),
                     PVG_ERR_INVALID);
    assert_int_equal(pvg_audit_foreach_subject(S, "a", NULL, NULL, &err), PVG_ERR_INVALID);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_numbered_per_shopper),
        cmocka_unit_test(test_subject_read_matches_scan),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
