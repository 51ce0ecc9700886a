/*
 * test_access.c - the access gate: consent per purpose, the audit entry
 * written first (also for denied and not-found accesses), fail-closed when
 * the audit log cannot be written, erased shoppers not found and answered
 * non-personalised, training selection by consent.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <privguide/access.h>
#include <privguide/monitor.h>
#include <privguide/audit.h>
#include <privguide/auth.h>
#include <privguide/model.h>
#include <privguide/store.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct fx {
    char dir[128];
    pvg_store *s;
    pvg_model *m;
} fx;

static const char *ITEMS[] = {"A1", "A2", "A3", "A4", "B1", "B2", "B3", "B4"};

static void put(pvg_store *s, const char *user, const char *item)
{
    pvg_event ev = {0};
    ev.type = PVG_EVENT_PURCHASE;
    ev.ts = 1700000000;
    ev.item = item;
    pvg_error err;
    int outcome = 0;
    assert_int_equal(pvg_store_event_put(s, user, &ev, NULL, &outcome, &err), PVG_OK);
}

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/pvg_test_access_XXXXXX");
    if (!mkdtemp(f->dir)) return -1;
    strcat(f->dir, "/d");
    pvg_error err;
    if (pvg_store_init(f->dir, NULL, &err) != PVG_OK) return -1;
    if (pvg_store_open(f->dir, &f->s, &err) != PVG_OK) return -1;
    for (int i = 0; i < 8; i++) {
        pvg_item it = {0, ITEMS[i], NULL, NULL, 1.0, NULL, 1, -1};
        if (pvg_store_item_put(f->s, &it, NULL, &err) != PVG_OK) return -1;
    }
    /* two taste groups; every shopper consents (policy default) */
    for (int u = 0; u < 12; u++) {
        char user[16];
        snprintf(user, sizeof user, "u%d", u);
        for (int j = 0; j < 3; j++)
            put(f->s, user, ITEMS[(u % 2) * 4 + (u + j) % 4]);
    }
    pvg_access g;
    pvg_access_init(&g, f->s, "test");
    pvg_dataset *ds = NULL;
    if (pvg_access_training_dataset(&g, NULL, &ds, NULL, &err) != PVG_OK) return -1;
    pvg_train_params p;
    pvg_train_params_default(PVG_MODEL_ITEMKNN, &p);
    pvg_status st = pvg_model_train(ds, &p, &f->m, NULL, &err);
    pvg_dataset_free(ds);
    if (st != PVG_OK) return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    pvg_model_free(f->m);
    pvg_store_free(f->s);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%.*s'", (int)(strlen(f->dir) - 2), f->dir);
    int rc = system(cmd);
    free(f);
    return rc == 0 ? 0 : -1;
}

/* The last audit entry (copied). */
typedef struct last_entry {
    int64_t seq;
    char actor[64], action[64], subject[80], detail[256];
} last_entry;

static int keep_last(void *ctx, const pvg_audit_entry *e)
{
    last_entry *l = ctx;
    l->seq = e->seq;
    snprintf(l->actor, sizeof l->actor, "%s", e->actor);
    snprintf(l->action, sizeof l->action, "%s", e->action);
    snprintf(l->subject, sizeof l->subject, "%s", e->subject);
    snprintf(l->detail, sizeof l->detail, "%s", e->detail);
    return 0;
}

static last_entry last_audit(pvg_store *s)
{
    last_entry l;
    memset(&l, 0, sizeof l);
    assert_int_equal(pvg_audit_foreach(s, 1, 0, keep_last, &l, NULL), PVG_OK);
    return l;
}

/* A sink that records what the gate had done when it was called, and
 * fails on demand. */
typedef struct sink {
    pvg_store *s;
    int fail;
    int calls;
    int data_seen_at_call; /* the data callback's count when the entry was written */
    int *data_count;
} sink;

static pvg_status sink_fn(void *ctx, const pvg_audit_record *rec, pvg_error *err)
{
    sink *k = ctx;
    k->calls++;
    k->data_seen_at_call = k->data_count ? *k->data_count : 0;
    if (k->fail) return pvg_error_set(err, PVG_ERR_IO, "disk full (test)");
    return pvg_audit_append(k->s, rec, NULL, err);
}

static int count_events(void *ctx, const pvg_user_view *u, const pvg_event *ev, size_t n)
{
    (void)u;
    (void)ev;
    *(int *)ctx += (int)n;
    return 0;
}

static void test_purpose_consent_from_policy(void **state)
{
    fx *f = *state;
    int np, na;
    assert_int_equal(pvg_access_purpose_consent(f->s, PVG_PURPOSE_RECOMMEND, &np, &na, NULL),
                     PVG_OK);
    assert_true(np && !na);
    assert_int_equal(pvg_access_purpose_consent(f->s, PVG_PURPOSE_DP_RELEASE, &np, &na, NULL),
                     PVG_OK);
    assert_true(!np && na);
    assert_int_equal(pvg_access_purpose_consent(f->s, PVG_PURPOSE_EXPORT, &np, &na, NULL), PVG_OK);
    assert_true(!np && !na);
    assert_int_equal(pvg_access_purpose_consent(f->s, (pvg_purpose)99, &np, &na, NULL),
                     PVG_ERR_INVALID);
}

/* The answer per purpose is kept beside each store handle's policy: asked
 * again it is the same, and another store's policy keeps its own. */
static void test_purpose_consent_kept_per_store(void **state)
{
    fx *f = *state;
    int np = -1, na = -1;
    for (int rep = 0; rep < 2; rep++) {
        assert_int_equal(pvg_access_purpose_consent(f->s, PVG_PURPOSE_RECOMMEND, &np, &na, NULL),
                         PVG_OK);
        assert_true(np == 1 && na == 0);
    }
    char dir[300];
    snprintf(dir, sizeof dir, "%s2", f->dir);
    pvg_store_init_options o = {0};
    o.policy_json = "{\"version\": 1, \"events\": {\"purchase\": {\"retention_days\": 30, "
                    "\"fields\": []}}, \"purposes\": [{\"name\": \"personalization\", "
                    "\"consent\": \"analytics\", \"event_types\": [\"purchase\"]}]}";
    pvg_error err;
    assert_int_equal(pvg_store_init(dir, &o, &err), PVG_OK);
    pvg_store *s2 = NULL;
    assert_int_equal(pvg_store_open(dir, &s2, &err), PVG_OK);
    for (int rep = 0; rep < 2; rep++) {
        assert_int_equal(pvg_access_purpose_consent(s2, PVG_PURPOSE_RECOMMEND, &np, &na, NULL),
                         PVG_OK);
        assert_true(np == 0 && na == 1);
        assert_int_equal(pvg_access_purpose_consent(f->s, PVG_PURPOSE_RECOMMEND, &np, &na, NULL),
                         PVG_OK);
        assert_true(np == 1 && na == 0);
    }
    pvg_store_free(s2); /* its dir goes with the fixture's */
}

static void test_consent_off_denied_and_audited_first(void **state)
{
    fx *f = *state;
    pvg_access g;
    pvg_access_init(&g, f->s, "key:t1");
    pvg_error err;
    pvg_consent now;
    assert_int_equal(pvg_access_consent_change(&g, "u3", 0, -1, &now, &err), PVG_OK);
    assert_int_equal(now.personalization, 0);
    assert_int_equal(now.analytics, 1);
    last_entry l = last_audit(f->s);
    assert_string_equal(l.action, "consent_change");
    assert_string_equal(l.actor, "key:t1");
    char subj[2 * PVG_PSEUDONYM_BYTES + 1];
    pvg_audit_subject_of_user(f->s, "u3", subj);
    assert_string_equal(l.subject, subj);
    assert_null(strstr(l.detail, "u3")); /* never the external id */

    /* a personal read for a purpose without consent: refused, fn never
     * called, and a denied entry is written first */
    int n = 0;
    sink k = {f->s, 0, 0, 0, &n};
    g.audit = sink_fn;
    g.audit_ctx = &k;
    assert_int_equal(
        pvg_access_user_events(&g, PVG_PURPOSE_RECOMMEND, "u3", count_events, &n, &err),
        PVG_ERR_POLICY);
    assert_int_equal(n, 0);
    assert_int_equal(k.calls, 1);
    l = last_audit(f->s);
    assert_string_equal(l.action, "read_events");
    assert_non_null(strstr(l.detail, "outcome=denied:no_consent"));
    /* the same shopper's export (a right, no consent needed) works, audited first */
    assert_int_equal(pvg_access_user_events(&g, PVG_PURPOSE_EXPORT, "u3", count_events, &n, &err),
                     PVG_OK);
    assert_int_equal(n, 3);
    assert_int_equal(k.data_seen_at_call, 0); /* the entry was written before any event moved */
    assert_int_equal(k.calls, 2);

    /* recommend: non-personalised, with a denied entry */
    pvg_scored_item out[4];
    pvg_access_rec_answer ans;
    pvg_access_rec_request rq = {0};
    rq.model = f->m;
    rq.ext_user = "u3";
    rq.k = 4;
    assert_int_equal(pvg_access_recommend(&g, &rq, out, &ans, &err), PVG_OK);
    assert_int_equal(ans.personalized, 0);
    assert_string_equal(ans.reason, "no_consent");
    assert_true(ans.n > 0);
    pvg_scored_item pop[4];
    size_t np = 0;
    assert_int_equal(pvg_model_popular(f->m, 4, pop, &np, &err), PVG_OK);
    assert_int_equal(ans.n, np);
    for (size_t i = 0; i < np; i++)
        assert_int_equal(out[i].item_index, pop[i].item_index);
    l = last_audit(f->s);
    assert_string_equal(l.action, "recommend");
    assert_non_null(strstr(l.detail, "outcome=denied:no_consent"));

    /* consent back on: personalised, "allowed" entry */
    assert_int_equal(pvg_access_consent_change(&g, "u3", 1, -1, NULL, &err), PVG_OK);
    assert_int_equal(pvg_access_recommend(&g, &rq, out, &ans, &err), PVG_OK);
    assert_int_equal(ans.personalized, 1);
    assert_null(ans.reason);
    l = last_audit(f->s);
    assert_non_null(strstr(l.detail, "outcome=allowed"));
}

static int g_data_calls;
static int memo_get(void *ctx, const unsigned char key[16], size_t k, pvg_scored_item *out,
                    size_t *n)
{
    (void)ctx, (void)key, (void)k, (void)out, (void)n;
    g_data_calls++;
    return 0;
}

static void test_audit_failure_fails_closed(void **state)
{
    fx *f = *state;
    pvg_access g;
    pvg_access_init(&g, f->s, "cli");
    int n = 0;
    sink k = {f->s, 1, 0, 0, &n};
    g.audit = sink_fn;
    g.audit_ctx = &k;
    pvg_error err;
    long long before = last_audit(f->s).seq;

    char *json = (char *)"untouched";
    assert_int_equal(pvg_access_export(&g, "u1", &json, &err), PVG_ERR_IO);
    assert_null(json);
    assert_int_equal(pvg_access_user_events(&g, PVG_PURPOSE_EXPORT, "u1", count_events, &n, &err),
                     PVG_ERR_IO);
    assert_int_equal(n, 0);

    pvg_scored_item out[4];
    pvg_access_rec_answer ans;
    pvg_access_rec_request rq = {0};
    rq.model = f->m;
    rq.ext_user = "u1";
    rq.k = 4;
    rq.memo_get = memo_get;
    g_data_calls = 0;
    assert_int_equal(pvg_access_recommend(&g, &rq, out, &ans, &err), PVG_ERR_IO);
    assert_int_equal(ans.n, 0);
    assert_int_equal(g_data_calls, 0); /* not even the memo was asked */
    assert_int_equal(pvg_access_foreach_user(&g, PVG_PURPOSE_TRAINING, count_events, &n, &err),
                     PVG_ERR_IO);
    assert_int_equal(n, 0);
    /* erasure and consent changes do not happen without their entry */
    assert_int_equal(pvg_access_erase(&g, "u1", NULL, NULL, &err), PVG_ERR_IO);
    assert_int_equal(pvg_store_user_exists(f->s, "u1", NULL), 1);
    assert_int_equal(pvg_access_consent_change(&g, "u1", 0, 0, NULL, &err), PVG_ERR_IO);
    pvg_consent c;
    assert_int_equal(pvg_store_consent_get(f->s, "u1", &c, NULL), PVG_OK);
    assert_int_equal(c.personalization, 1);
    assert_int_equal(last_audit(f->s).seq, before);

    /* the default sink fails closed too: an actor longer than the audit
     * log accepts makes pvg_audit_append refuse, and no data leaves */
    char *big = malloc(PVG_AUDIT_FIELD_MAX + 10);
    memset(big, 'a', PVG_AUDIT_FIELD_MAX + 9);
    big[PVG_AUDIT_FIELD_MAX + 9] = 0;
    pvg_access_init(&g, f->s, big);
    json = NULL;
    assert_int_equal(pvg_access_export(&g, "u1", &json, &err), PVG_ERR_INVALID);
    assert_null(json);
    free(big);
}

/* The deferred gate's writer for the tests: appends the entry at once
 * (so its content can be checked) but leaves the commit report to the
 * test, which plays the writer; fails on demand. */
typedef struct dsink {
    pvg_store *s;
    int fail, calls;
    pvg_access_rec_pending *last;
} dsink;

static pvg_status dsink_fn(void *ctx, const pvg_audit_record *rec, pvg_access_rec_pending *p,
                           pvg_error *err)
{
    dsink *k = ctx;
    k->calls++;
    if (k->fail) return pvg_error_set(err, PVG_ERR_IO, "disk full (test)");
    k->last = p;
    return pvg_audit_append(k->s, rec, NULL, err);
}

/* pvg_access_recommend_begin / _finish: the checks and the entry first,
 * nothing computed (not even the memo asked) for an entry not reported
 * committed or failed; in one finish each shopper gets exactly their own
 * answer or their own error. */
static void test_deferred_recommend_computes_only_committed(void **state)
{
    fx *f = *state;
    pvg_access g;
    pvg_access_init(&g, f->s, "key:t1");
    pvg_error err;
    assert_int_equal(pvg_access_consent_change(&g, "u3", 0, -1, NULL, &err), PVG_OK);
    /* the synchronous answers to compare with */
    pvg_scored_item want1[4], want2[4];
    pvg_access_rec_answer a1, a2;
    pvg_access_rec_request rq = {0};
    rq.model = f->m;
    rq.k = 4;
    rq.ext_user = "u1";
    assert_int_equal(pvg_access_recommend(&g, &rq, want1, &a1, &err), PVG_OK);
    rq.ext_user = "u2";
    assert_int_equal(pvg_access_recommend(&g, &rq, want2, &a2, &err), PVG_OK);
    assert_int_equal(a1.personalized, 1);

    dsink k = {f->s, 0, 0, NULL};
    const char *users[] = {"u1", "u2", "u5", "u3", "nobody", "u1"};
    pvg_access_rec_request rqs[6];
    pvg_access_rec_pending *p[6];
    long long before = last_audit(f->s).seq;
    g_data_calls = 0;
    for (int i = 0; i < 6; i++) {
        memset(&rqs[i], 0, sizeof rqs[i]);
        rqs[i].model = f->m;
        rqs[i].ext_user = users[i];
        rqs[i].k = 4;
        rqs[i].memo_get = memo_get;
        p[i] = NULL;
        assert_int_equal(pvg_access_recommend_begin(&g, &rqs[i], dsink_fn, &k, &p[i], &err),
                         PVG_OK);
        assert_non_null(p[i]);
        assert_ptr_equal(k.last, p[i]); /* the entry was handed over with its pending */
        last_entry l = last_audit(f->s);
        assert_int_equal(l.seq, before + 1 + i); /* one entry each, at begin */
        assert_string_equal(l.action, "recommend");
        assert_non_null(strstr(l.detail, i == 3   ? "outcome=denied:no_consent"
                                         : i == 4 ? "outcome=not_found"
                                                  : "outcome=allowed"));
    }
    assert_int_equal(g_data_calls, 0); /* nothing computed yet */
    /* the writer's word: u1 committed, u2 failed, u5 never answered, the
     * refused ones committed; the last (u1 again) committed */
    pvg_access_rec_committed(p[0], PVG_OK);
    pvg_access_rec_committed(p[1], PVG_ERR_IO);
    pvg_access_rec_committed(p[3], PVG_OK);
    pvg_access_rec_committed(p[4], PVG_OK);
    pvg_access_rec_committed(p[5], PVG_OK);
    assert_int_equal(pvg_access_rec_audit_failed(p[1]), 1);
    assert_int_equal(pvg_access_rec_audit_failed(p[0]), 0);
    assert_int_equal(pvg_access_rec_audit_failed(p[2]), 0);
    pvg_scored_item outs[6][4];
    pvg_scored_item *op[6];
    pvg_access_rec_answer ans[6];
    pvg_status st[6];
    pvg_error errs[6];
    memset(outs, 0xab, sizeof outs);
    for (int i = 0; i < 6; i++)
        op[i] = outs[i];
    pvg_access_recommend_finish(p, 6, op, ans, st, errs);
    assert_int_equal(g_data_calls, 2); /* the memo was asked for the two committed u1 only */
    for (int i = 0; i < 6; i += 5) {
        assert_int_equal(st[i], PVG_OK);
        assert_int_equal(ans[i].personalized, 1);
        assert_int_equal(ans[i].n, a1.n);
        for (size_t q = 0; q < a1.n; q++)
            assert_int_equal(outs[i][q].item_index, want1[q].item_index);
    }
    /* failed and never reported: an error, nothing written to their items */
    assert_int_equal(st[1], PVG_ERR_IO);
    assert_int_equal(ans[1].personalized, 0);
    assert_int_equal(ans[1].n, 0);
    assert_non_null(strstr(errs[1].text, "audit log cannot be written"));
    assert_int_equal(st[2], PVG_ERR_STATE);
    assert_int_equal(ans[2].n, 0);
    unsigned char untouched[sizeof outs[1]];
    memset(untouched, 0xab, sizeof untouched);
    assert_memory_equal(outs[1], untouched, sizeof untouched);
    assert_memory_equal(outs[2], untouched, sizeof untouched);
    /* refused: the non-personalised list, with the reason */
    assert_int_equal(st[3], PVG_OK);
    assert_int_equal(ans[3].personalized, 0);
    assert_string_equal(ans[3].reason, "no_consent");
    assert_int_equal(st[4], PVG_OK);
    assert_string_equal(ans[4].reason, "unknown_user");

    /* an entry the writer refused to queue: an error, no pending */
    k.fail = 1;
    pvg_access_rec_pending *none = (pvg_access_rec_pending *)&k;
    assert_int_equal(pvg_access_recommend_begin(&g, &rqs[0], dsink_fn, &k, &none, &err),
                     PVG_ERR_IO);
    assert_null(none);
    assert_int_equal(g_data_calls, 2);
    /* a shopper token reaches only its own shopper, here too */
    pvg_access_init(&g, f->s, "token:nosuch");
    k.fail = 0;
    assert_int_equal(pvg_access_recommend_begin(&g, &rqs[0], dsink_fn, &k, &none, &err), PVG_OK);
    pvg_access_rec_committed(none, PVG_OK);
    pvg_access_rec_pending *one[1] = {none};
    pvg_access_recommend_finish(one, 1, op, ans, st, errs);
    assert_int_equal(st[0], PVG_OK);
    assert_int_equal(ans[0].personalized, 0);
    assert_string_equal(ans[0].reason, "not_own_token");
}

static void test_erased_not_found_and_non_personalised(void **state)
{
    fx *f = *state;
    pvg_access g;
    pvg_access_init(&g, f->s, "cli");
    pvg_error err;
    assert_int_equal(pvg_access_erase(&g, "u4", NULL, NULL, &err), PVG_OK);
    last_entry l = last_audit(f->s);
    assert_string_equal(l.action, "delete");
    char *json = NULL;
    assert_int_equal(pvg_access_export(&g, "u4", &json, &err), PVG_ERR_NOT_FOUND);
    assert_null(json);
    l = last_audit(f->s); /* the attempt is on record */
    assert_string_equal(l.action, "export");
    assert_non_null(strstr(l.detail, "outcome=not_found"));
    assert_int_equal(pvg_access_erase(&g, "u4", NULL, NULL, &err), PVG_ERR_NOT_FOUND);
    pvg_consent c;
    assert_int_equal(pvg_access_consent_get(&g, "u4", &c, &err), PVG_ERR_NOT_FOUND);
    int n = 0;
    assert_int_equal(pvg_access_user_events(&g, PVG_PURPOSE_EXPORT, "u4", count_events, &n, &err),
                     PVG_ERR_NOT_FOUND);

    /* the model still holds u4 (trained before the erasure): the gate must
     * not personalise for them */
    unsigned char key[16];
    assert_int_equal(pvg_model_user_key(f->m, f->s, "u4", key, &err), PVG_OK);
    pvg_scored_item out[4];
    size_t nm = 0;
    assert_int_equal(pvg_model_recommend(f->m, key, 4, 0, out, &nm, &err), PVG_OK);
    pvg_access_rec_answer ans;
    pvg_access_rec_request rq = {0};
    rq.model = f->m;
    rq.ext_user = "u4";
    rq.k = 4;
    int64_t fallback[] = {7, 6};
    rq.fallback_items = fallback;
    rq.n_fallback = 2;
    assert_int_equal(pvg_access_recommend(&g, &rq, out, &ans, &err), PVG_OK);
    assert_int_equal(ans.personalized, 0);
    assert_string_equal(ans.reason, "unknown_user");
    assert_int_equal(ans.n, 2);
    assert_int_equal(out[0].item_index, 7);
    assert_int_equal(out[1].item_index, 6);
    assert_string_equal(out[0].item, pvg_model_item_id(f->m, 7));
}

static void test_training_selects_by_consent(void **state)
{
    fx *f = *state;
    pvg_access g;
    pvg_access_init(&g, f->s, "cli");
    pvg_error err;
    int n_all = 0, n_train = 0, n_dp = 0;
    assert_int_equal(pvg_access_foreach_user(&g, PVG_PURPOSE_TRAINING, count_events, &n_all, &err),
                     PVG_OK);
    assert_int_equal(n_all, 36);
    assert_int_equal(pvg_access_consent_change(&g, "u5", 0, -1, NULL, &err), PVG_OK);
    assert_int_equal(pvg_access_consent_change(&g, "u6", -1, 0, NULL, &err), PVG_OK);
    assert_int_equal(
        pvg_access_foreach_user(&g, PVG_PURPOSE_TRAINING, count_events, &n_train, &err), PVG_OK);
    assert_int_equal(n_train, 33); /* u5 left out */
    last_entry l = last_audit(f->s);
    assert_string_equal(l.action, "read_all");
    assert_string_equal(l.subject, "*");
    assert_non_null(strstr(l.detail, "purpose=training"));
    assert_int_equal(pvg_access_foreach_user(&g, PVG_PURPOSE_DP_RELEASE, count_events, &n_dp, &err),
                     PVG_OK);
    assert_int_equal(n_dp, 33); /* u6 left out */
    assert_int_equal(pvg_access_foreach_user(&g, PVG_PURPOSE_EXPORT, count_events, &n_dp, &err),
                     PVG_ERR_INVALID);
    pvg_dataset *ds = NULL;
    pvg_dataset_load_stats st;
    assert_int_equal(pvg_access_training_dataset(&g, NULL, &ds, &st, &err), PVG_OK);
    assert_int_equal(pvg_dataset_n_users(ds), 11);
    assert_int_equal(st.records, 33);
    pvg_dataset_free(ds);
}

static void test_similar_and_file_model(void **state)
{
    fx *f = *state;
    pvg_access g;
    pvg_access_init(&g, f->s, "token:abc");
    pvg_error err;
    unsigned char ps[PVG_PSEUDONYM_BYTES];
    pvg_store_pseudonym(f->s, "u2", ps);
    pvg_scored_item out[3];
    size_t n = 0;
    assert_int_equal(pvg_access_similar(&g, f->m, "A1", ps, 3, out, &n, &err), PVG_OK);
    assert_true(n > 0);
    last_entry l = last_audit(f->s);
    char subj[2 * PVG_PSEUDONYM_BYTES + 1];
    pvg_audit_subject_of_user(f->s, "u2", subj);
    assert_string_equal(l.action, "similar");
    assert_string_equal(l.subject, subj);
    /* a store-trained model without its store is refused */
    pvg_access none;
    pvg_access_init(&none, NULL, "cli");
    pvg_access_rec_answer ans;
    pvg_access_rec_request rq = {0};
    rq.model = f->m;
    rq.ext_user = "u2";
    rq.k = 3;
    assert_int_equal(pvg_access_recommend(&none, &rq, out, &ans, &err), PVG_ERR_INVALID);
}

/* Explains item "A3" for `user` as `actor`: *allowed, the reason. */
static const char *explain_as(fx *f, const char *actor, const char *user, int *allowed)
{
    pvg_access g;
    pvg_access_init(&g, f->s, actor);
    int64_t items[1] = {pvg_model_item_index(f->m, "A3")};
    assert_true(items[0] >= 0);
    pvg_explain_term out[3];
    size_t n_out[1] = {99};
    const char *reason = NULL;
    pvg_error err;
    if (pvg_access_explain(&g, f->m, user, items, 1, 3, out, n_out, NULL, allowed, &reason, &err) !=
        PVG_OK)
        fail_msg("explain: %s", err.text);
    if (!*allowed) assert_int_equal(n_out[0], 0);
    return reason ? reason : "";
}

/* The gate, not only the front-end, checks that a shopper token is the
 * shopper's: a token bound to u0 gets no explanation of another shopper's
 * history through the library call, nor learns whether they exist. */
static void test_explain_token_bound_to_shopper(void **state)
{
    fx *f = *state;
    pvg_error err;
    char *cred = NULL, *cred2 = NULL;
    pvg_principal p, p2;
    assert_int_equal(pvg_auth_token_issue(f->s, "u0", 3600, 0, &cred, &p, &err), PVG_OK);
    assert_int_equal(pvg_auth_token_issue(f->s, "u0", 3600, 0, &cred2, &p2, &err), PVG_OK);
    char actor[64], revoked[64];
    snprintf(actor, sizeof actor, "token:%s", p.key_id);
    snprintf(revoked, sizeof revoked, "token:%s", p2.key_id);
    assert_int_equal(pvg_auth_revoke(f->s, p2.key_id, &err), PVG_OK);
    int allowed = -1;
    /* the shopper's own token: the evidence */
    assert_string_equal(explain_as(f, actor, "u0", &allowed), "");
    assert_int_equal(allowed, 1);
    last_entry l = last_audit(f->s);
    assert_string_equal(l.action, "explain");
    assert_string_equal(l.actor, actor);
    assert_non_null(strstr(l.detail, "outcome=allowed"));
    /* u0's token asking for u1 (known, consenting): refused and audited */
    assert_string_equal(explain_as(f, actor, "u1", &allowed), "not_own_token");
    assert_int_equal(allowed, 0);
    l = last_audit(f->s);
    char subj[2 * PVG_PSEUDONYM_BYTES + 1];
    pvg_audit_subject_of_user(f->s, "u1", subj);
    assert_string_equal(l.action, "explain");
    assert_string_equal(l.subject, subj);
    assert_non_null(strstr(l.detail, "outcome=denied:not_own_token"));
    assert_non_null(strstr(l.detail, "answer=none"));
    /* ... and for an unknown shopper the same answer (no existence oracle) */
    assert_string_equal(explain_as(f, actor, "nobody", &allowed), "not_own_token");
    /* a token id the store does not know, a revoked token of u0, an
     * operator: refused */
    assert_string_equal(explain_as(f, "token:00000000deadbeef", "u0", &allowed), "not_own_token");
    assert_string_equal(explain_as(f, revoked, "u0", &allowed), "not_own_token");
    assert_string_equal(explain_as(f, "cli", "u0", &allowed), "not_own_token");
    assert_int_equal(allowed, 0);
    /* u0's own token, suspended by access monitoring: refused as well
     * (another front-end than the server, whose authentication refuses it
     * first, gets the same answer from the gate) */
    assert_int_equal(pvg_monitor_suspend(f->s, p.key_id, "cli", "test", &err), PVG_OK);
    assert_string_equal(explain_as(f, actor, "u0", &allowed), "not_own_token");
    assert_int_equal(allowed, 0);
    assert_int_equal(pvg_monitor_resume(f->s, p.key_id, "cli", &err), PVG_OK);
    assert_string_equal(explain_as(f, actor, "u0", &allowed), "");
    assert_int_equal(allowed, 1);
    /* recommend and search re-rank: u0's token asking for u1 gets the
       non-personalised list and no scores, audited as refused */
    pvg_access g;
    pvg_access_init(&g, f->s, actor);
    pvg_scored_item out[4];
    pvg_access_rec_answer ans;
    pvg_access_rec_request rq = {0};
    rq.model = f->m;
    rq.ext_user = "u1";
    rq.k = 4;
    assert_int_equal(pvg_access_recommend(&g, &rq, out, &ans, &err), PVG_OK);
    assert_int_equal(ans.personalized, 0);
    assert_string_equal(ans.reason, "not_own_token");
    l = last_audit(f->s);
    assert_string_equal(l.action, "recommend");
    assert_non_null(strstr(l.detail, "outcome=denied:not_own_token"));
    rq.ext_user = "u0"; /* its own shopper: personalised */
    assert_int_equal(pvg_access_recommend(&g, &rq, out, &ans, &err), PVG_OK);
    assert_int_equal(ans.personalized, 1);
    const char *items[1] = {"A3"};
    double sc[1] = {-1};
    int pers = -1;
    const char *why = NULL;
    assert_int_equal(pvg_access_search_rerank(&g, f->m, "u1", items, 1, sc, &pers, &why, &err),
                     PVG_OK);
    assert_int_equal(pers, 0);
    assert_string_equal(why, "not_own_token");
    assert_true(sc[0] == -1); /* untouched */
    /* an operator (the CLI) still reaches any consenting shopper */
    pvg_access op;
    pvg_access_init(&op, f->s, "cli");
    rq.ext_user = "u1";
    assert_int_equal(pvg_access_recommend(&op, &rq, out, &ans, &err), PVG_OK);
    assert_int_equal(ans.personalized, 1);
    pvg_auth_credential_free(cred);
    pvg_auth_credential_free(cred2);
}

/* A recommend through gate g for user: the refusal reason ("" when
 * personalised). */
static const char *recommend_reason(fx *f, pvg_access *g, const char *user)
{
    pvg_scored_item out[4];
    pvg_access_rec_answer ans;
    pvg_access_rec_request rq = {0};
    rq.model = f->m;
    rq.ext_user = user;
    rq.k = 4;
    pvg_error err;
    assert_int_equal(pvg_access_recommend(g, &rq, out, &ans, &err), PVG_OK);
    return ans.personalized ? "" : ans.reason;
}

/* The gate's lookups may come from the store's memo of earlier requests;
 * a change made through another handle (another process: the CLI beside a
 * server) holds from the very next request on this one: consent off and on,
 * a suspension and its resumption, a revocation, an erasure, a shopper who
 * was unknown and now is known. */
static void test_changes_by_another_handle_hold_at_once(void **state)
{
    fx *f = *state;
    pvg_error err;
    pvg_store *o = NULL; /* the other process */
    assert_int_equal(pvg_store_open(f->dir, &o, &err), PVG_OK);
    char *cred = NULL;
    pvg_principal p;
    assert_int_equal(pvg_auth_token_issue(f->s, "u2", 3600, 0, &cred, &p, &err), PVG_OK);
    char actor[64];
    snprintf(actor, sizeof actor, "token:%s", p.key_id);
    pvg_access g, op;
    pvg_access_init(&g, f->s, actor);
    pvg_access_init(&op, f->s, "cli");
    pvg_principal who;
    for (int i = 0; i < 2; i++) { /* the second time from the memo */
        assert_string_equal(recommend_reason(f, &g, "u2"), "");
        assert_int_equal(pvg_auth_check(f->s, cred, &who, &err), PVG_OK);
    }
    /* consent */
    pvg_consent off = {0, 1}, on = {1, 1};
    assert_int_equal(pvg_store_consent_set(o, "u2", &off, &err), PVG_OK);
    assert_string_equal(recommend_reason(f, &g, "u2"), "no_consent");
    assert_int_equal(pvg_store_consent_set(o, "u2", &on, &err), PVG_OK);
    assert_string_equal(recommend_reason(f, &g, "u2"), "");
    /* suspension (the authentication and the gate) */
    assert_int_equal(pvg_monitor_suspend(o, p.key_id, "cli", "test", &err), PVG_OK);
    assert_string_equal(recommend_reason(f, &g, "u2"), "not_own_token");
    assert_int_equal(pvg_auth_check(f->s, cred, &who, &err), PVG_ERR_STATE);
    assert_int_equal(pvg_monitor_resume(o, p.key_id, "cli", &err), PVG_OK);
    assert_string_equal(recommend_reason(f, &g, "u2"), "");
    assert_int_equal(pvg_auth_check(f->s, cred, &who, &err), PVG_OK);
    /* revocation */
    assert_int_equal(pvg_auth_revoke(o, p.key_id, &err), PVG_OK);
    assert_string_equal(recommend_reason(f, &g, "u2"), "not_own_token");
    assert_int_equal(pvg_auth_check(f->s, cred, &who, &err), PVG_ERR_PERMISSION);
    /* erasure */
    assert_string_equal(recommend_reason(f, &op, "u3"), "");
    pvg_access og;
    pvg_access_init(&og, o, "cli");
    assert_int_equal(pvg_access_erase(&og, "u3", NULL, NULL, &err), PVG_OK);
    assert_string_equal(recommend_reason(f, &op, "u3"), "unknown_user");
    /* unknown, then known (not to the model) */
    assert_string_equal(recommend_reason(f, &op, "newcomer"), "unknown_user");
    assert_int_equal(pvg_store_consent_set(o, "newcomer", &on, &err), PVG_OK);
    assert_string_equal(recommend_reason(f, &op, "newcomer"), "not_in_model");
    pvg_store_free(o);
    pvg_auth_credential_free(cred);
}

static int count_deletes(void *ctx, const pvg_access_audit_view *v)
{
    int *n = ctx;
    if (strcmp(v->action, "delete") == 0 || strcmp(v->action, "export") == 0) (*n)++;
    return 0;
}

/* A shopper erased with "allow return" who comes back (the same id, so the
 * same pseudonym) sees only the audit entries of the new account. */
static void test_audit_of_user_after_return(void **state)
{
    fx *f = *state;
    pvg_access g;
    pvg_access_init(&g, f->s, "cli");
    pvg_error err;
    char *json = NULL;
    assert_int_equal(pvg_access_export(&g, "u3", &json, &err), PVG_OK);
    free(json);
    assert_int_equal(pvg_access_erase_flags(&g, "u3", PVG_ERASE_ALLOW_RETURN, NULL, NULL, &err),
                     PVG_OK);
    put(f->s, "u3", "i1");
    int seen = 0;
    long long total = 0;
    assert_int_equal(pvg_access_audit_of_user(&g, "u3", 50, count_deletes, &seen, &total, &err),
                     PVG_OK);
    assert_int_equal(seen, 0); /* neither the old export nor the erasure */
    assert_int_equal(pvg_access_export(&g, "u3", &json, &err), PVG_OK);
    free(json);
    seen = 0;
    assert_int_equal(pvg_access_audit_of_user(&g, "u3", 50, count_deletes, &seen, &total, &err),
                     PVG_OK);
    assert_int_equal(seen, 1); /* the new account's export */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_purpose_consent_from_policy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_purpose_consent_kept_per_store, setup, teardown),
        cmocka_unit_test_setup_teardown(test_audit_of_user_after_return, setup, teardown),
        cmocka_unit_test_setup_teardown(test_consent_off_denied_and_audited_first, setup, teardown),
        cmocka_unit_test_setup_teardown(test_audit_failure_fails_closed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deferred_recommend_computes_only_committed, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_erased_not_found_and_non_personalised, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_training_selects_by_consent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_similar_and_file_model, setup, teardown),
        cmocka_unit_test_setup_teardown(test_explain_token_bound_to_shopper, setup, teardown),
        cmocka_unit_test_setup_teardown(test_changes_by_another_handle_hold_at_once, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
