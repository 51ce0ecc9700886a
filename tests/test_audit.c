/*
 * test_audit.c - the hash-chained audit log: appends (single and grouped),
 * the chain across reopen, and the verifier naming exactly which entry was
 * edited (with and without rehashing), removed (middle, head, tail against
 * an expected head) or reordered.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "t_rawdb.h"

#include <privguide/audit.h>

#include <sodium.h>
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
    pvg_store_close(f->s);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%.*s'", (int)(strlen(f->dir) - 2), f->dir);
    int rc = system(cmd);
    free(f);
    return rc == 0 ? 0 : -1;
}

static void sql(fx *f, const char *q)
{
    assert_int_equal(t_rawdb_exec(f->dir, "privguide.db", q), SQLITE_OK);
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
    pvg_store_close(f->s);
    assert_int_equal(pvg_store_open(f->dir, &f->s, NULL), PVG_OK);
    pvg_audit_record rs[3] = {{0, "a", "delete", "", NULL}, {0, "b", "export", "x", "d"},
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
    fx *f = *state;
    sql(f, "DELETE FROM audit_log WHERE seq=1");
    pvg_audit_report rep;
    assert_int_equal(pvg_audit_verify(f->s, NULL, &rep, NULL), PVG_ERR_CORRUPT);
    assert_int_equal(rep.problems[0].kind, PVG_AUDIT_REMOVED);
    assert_int_equal(rep.problems[0].seq, 2);
}

static void test_truncated_tail(void **state)
{
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
    for (int i = 0; i < rep.n_problems; i++) assert_int_not_equal(rep.problems[i].kind, PVG_AUDIT_EDITED);
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
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
