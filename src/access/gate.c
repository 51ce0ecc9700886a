/*
 * gate.c - the access gate (include/privguide/access.h): consent for the
 * purpose, the audit entry first (failing closed), then the data.
 */
#include <privguide/access.h>
#include <privguide/monitor.h>

#include "model/model_internal.h"
#include "store/store_internal.h"

#include <jansson.h>
#include <math.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SUBJECT_LEN (2 * PVG_PSEUDONYM_BYTES + 1)

static const char *const PURPOSE_NAMES[] = {"?",         "export",      "erasure",  "consent",
                                            "recommend", "similar",     "training", "dp_release",
                                            "?",         "conversation"};

const char *pvg_purpose_name(pvg_purpose p)
{
    return (p >= PVG_PURPOSE_EXPORT && p <= PVG_PURPOSE_CONVERSATION) ? PURPOSE_NAMES[p] : "?";
}

void pvg_access_init(pvg_access *g, pvg_store *store, const char *actor)
{
    memset(g, 0, sizeof *g);
    g->store = store;
    g->actor = actor;
}

/* The policy purpose whose "consent" field rules a gate purpose, or NULL
 * for purposes that need no consent (the shopper's rights, item-side). */
static const char *policy_purpose_of(pvg_purpose p)
{
    switch (p) {
    case PVG_PURPOSE_RECOMMEND:
    case PVG_PURPOSE_TRAINING:
        return "personalization";
    case PVG_PURPOSE_DP_RELEASE:
        return "analytics";
    default:
        return NULL;
    }
}

pvg_status pvg_access_purpose_consent(const pvg_store *s, pvg_purpose purpose,
                                      int *needs_personalization, int *needs_analytics,
                                      pvg_error *err)
{
    *needs_personalization = *needs_analytics = 0;
    if (purpose < PVG_PURPOSE_EXPORT ||
        (purpose > PVG_PURPOSE_DP_RELEASE && purpose != PVG_PURPOSE_CONVERSATION))
        return pvg_error_set(err, PVG_ERR_INVALID, "access: purpose %d: expected 1..7 or 9",
                             (int)purpose);
    const char *name = policy_purpose_of(purpose);
    if (!name) return PVG_OK;
    /* the policy's text is fixed while the store is open: its answer per
     * purpose is kept beside it (bit 0: known, 1: personalization, 2: analytics) */
    unsigned char *memo = pvg_store_policy_memo(s);
    unsigned char known = __atomic_load_n(&memo[purpose], __ATOMIC_ACQUIRE);
    if (known & 1) {
        *needs_personalization = (known >> 1) & 1;
        *needs_analytics = (known >> 2) & 1;
        return PVG_OK;
    }
    /* the default rule: a policy purpose is governed by the switch of its name */
    const char *consent = name;
    json_t *root = json_loads(pvg_store_policy_json(s), 0, NULL);
    json_t *arr = json_object_get(root, "purposes");
    size_t i;
    json_t *e;
    json_array_foreach(arr, i, e)
    {
        json_t *n = json_object_get(e, "name");
        if (!json_is_string(n) || strcmp(json_string_value(n), name) != 0) continue;
        json_t *c = json_object_get(e, "consent");
        if (json_is_null(c))
            consent = NULL;
        else if (json_is_string(c)) {
            const char *v = json_string_value(c);
            if (strcmp(v, "personalization") == 0)
                consent = "personalization";
            else if (strcmp(v, "analytics") == 0)
                consent = "analytics";
            else {
                json_decref(root);
                return pvg_error_set_at(err, PVG_ERR_INVALID, "policy.json", 0, 0, -1,
                                        "purposes[%zu].consent: expected \"personalization\", "
                                        "\"analytics\" or null",
                                        i);
            }
        }
        break;
    }
    json_decref(root);
    if (consent && strcmp(consent, "personalization") == 0) *needs_personalization = 1;
    if (consent && strcmp(consent, "analytics") == 0) *needs_analytics = 1;
    __atomic_store_n(&memo[purpose],
                     (unsigned char)(1 | *needs_personalization << 1 | *needs_analytics << 2),
                     __ATOMIC_RELEASE);
    return PVG_OK;
}

/* The policy's consent_defaults (a new shopper's switches). */
static void policy_consent_defaults(const pvg_store *s, pvg_consent *c)
{
    c->personalization = c->analytics = 1;
    json_t *root = json_loads(pvg_store_policy_json(s), 0, NULL);
    json_t *d = json_object_get(root, "consent_defaults");
    json_t *p = json_object_get(d, "personalization"), *a = json_object_get(d, "analytics");
    if (json_is_boolean(p)) c->personalization = json_is_true(p);
    if (json_is_boolean(a)) c->analytics = json_is_true(a);
    json_decref(root);
}

/* Step 2 of every gated call: one entry, written before any data moves. */
static pvg_status audit_first(pvg_access *g, const char *action, const char *subject,
                              pvg_purpose purpose, const char *outcome, const char *extra,
                              pvg_error *err)
{
    char detail[256];
    snprintf(detail, sizeof detail, "purpose=%s outcome=%s%s%s", pvg_purpose_name(purpose), outcome,
             extra && *extra ? " " : "", extra ? extra : "");
    pvg_audit_record rec = {0, g->actor, action, subject, detail};
    pvg_error e;
    pvg_error_clear(&e);
    pvg_status st =
        g->audit ? g->audit(g->audit_ctx, &rec, &e) : pvg_audit_append(g->store, &rec, NULL, &e);
    if (st != PVG_OK)
        return pvg_error_set(err, st, "access: the audit log cannot be written (%s); %s is refused",
                             e.text[0] ? e.text : pvg_strerror(st), action);
    return PVG_OK;
}

/* Step 1 for one shopper: 1 known (consent in *c), 0 unknown, <0 error. */
static int lookup(pvg_access *g, const char *ext_user, pvg_consent *c, pvg_error *err)
{
    pvg_status st = pvg_store_consent_get(g->store, ext_user, c, err);
    if (st == PVG_ERR_NOT_FOUND) {
        pvg_error_clear(err);
        return 0;
    }
    return st == PVG_OK ? 1 : (int)st;
}

static pvg_status not_found(pvg_error *err)
{
    return pvg_error_set(err, PVG_ERR_NOT_FOUND,
                         "unknown user: no data is held about this user (never seen, or erased)");
}

/* Whether consent c allows purpose (needs from the policy). */
static pvg_status allowed(pvg_access *g, pvg_purpose purpose, const pvg_consent *c, int *ok,
                          pvg_error *err)
{
    int np, na;
    pvg_status st = pvg_access_purpose_consent(g->store, purpose, &np, &na, err);
    if (st != PVG_OK) return st;
    *ok = (!np || c->personalization) && (!na || c->analytics);
    return PVG_OK;
}

/* Whether the actor may see ext_user's own data: a shopper token
 * ("token:<id>") whose credential in the store is bound to ext_user, and
 * neither revoked, expired nor suspended by access monitoring (the same
 * rules as pvg_auth_check). Operator keys and the CLI are not. */
static pvg_status actor_owns(pvg_access *g, const unsigned char ps[PVG_PSEUDONYM_BYTES], int *own,
                             pvg_error *err)
{
    *own = 0;
    if (!g->actor || strncmp(g->actor, "token:", 6) != 0) return PVG_OK;
    pvg_backend *b = pvg_store_backend(g->store);
    pvg_backend_cred c;
    pvg_status st = b->ops->cred_get(b, g->actor + 6, &c, err);
    if (st == PVG_ERR_NOT_FOUND) {
        pvg_error_clear(err);
        return PVG_OK;
    }
    if (st != PVG_OK) return st;
    sodium_memzero(c.secret_hash, sizeof c.secret_hash);
    *own = strcmp(c.kind, "token") == 0 && c.has_pseudonym &&
           sodium_memcmp(ps, c.pseudonym, PVG_PSEUDONYM_BYTES) == 0 && !c.revoked &&
           (!c.expires_at || pvg_store_now(g->store) < c.expires_at);
    if (!*own) return PVG_OK;
    int suspended = 0;
    st = pvg_monitor_is_suspended(g->store, g->actor + 6, &suspended, NULL, 0, err);
    if (st != PVG_OK) {
        *own = 0;
        return st;
    }
    *own = !suspended;
    return PVG_OK;
}

/* The reads of personal_read_begin, in one snapshot (pvg_store_read_retry
 * may run them again): whether the actor owns the shopper (when asked), then
 * the shopper's consent and whether it allows the purpose. */
struct personal_reads {
    pvg_access *g;
    const unsigned char *ps;
    pvg_purpose purpose;
    int check_owner;
    int own, known, ok; /* out */
};

static pvg_status personal_reads_run(pvg_store *s, void *ctx, pvg_error *err)
{
    (void)s;
    struct personal_reads *r = ctx;
    r->own = 1, r->known = 0, r->ok = 0;
    pvg_status st = r->check_owner ? actor_owns(r->g, r->ps, &r->own, err) : PVG_OK;
    if (st != PVG_OK || !r->own) return st;
    pvg_consent c;
    st = pvg_store_consent_get_pseudonym(r->g->store, r->ps, &c, err);
    r->known = st == PVG_OK;
    if (st == PVG_ERR_NOT_FOUND) {
        pvg_error_clear(err);
        return PVG_OK;
    }
    if (st == PVG_OK) st = allowed(r->g, r->purpose, &c, &r->ok, err);
    return st;
}

/* The preamble of a gated read of one shopper's personal data, in this
 * order: (1) the actor, when only the shopper's own token may read
 * (own_only), and always when the actor is a shopper token (a token reaches
 * only its own shopper); another actor is refused without the shopper being
 * looked up; (2) the shopper, looked up; (3) the consent `purpose` needs; (4) ONE
 * audit entry (action, purpose, the outcome, detail `extra` plus
 * " answer=<refused_answer>" when refused), before anything personal is
 * read. With no refusal, key gets the shopper's key in m first (the model
 * itself is asked only after the entry). *reason: NULL to go on, else
 * (static) "not_own_token", "unknown_user", "no_consent" or "no_model" (m
 * NULL, audited as allowed: nothing is read). Errors: the credential's or
 * the shopper's lookup, the key derivation, the audit write. */
static pvg_status personal_read_begin(pvg_access *g, const char *action, pvg_purpose purpose,
                                      const char *ext_user, const pvg_model *m, int own_only,
                                      const char *extra, const char *refused_answer,
                                      unsigned char key[PVG_MODEL_KEY_BYTES], const char **reason,
                                      pvg_error *err)
{
    *reason = NULL;
    /* the shopper's pseudonym once: the audit subject, the token's owner
       and the consent row are all keyed by it */
    unsigned char ps[PVG_PSEUDONYM_BYTES];
    pvg_store_pseudonym(g->store, ext_user, ps);
    char subject[SUBJECT_LEN];
    sodium_bin2hex(subject, sizeof subject, ps, sizeof ps);
    /* a shopper token reaches only its own shopper, on every path (the
       front-end's routes need not be trusted to check it) */
    int token = g->actor && strncmp(g->actor, "token:", 6) == 0;
    /* the credential, its suspension and the consent from one snapshot of
       the store (which may answer from its memo while nothing changed; a
       snapshot the store saw change between two of its reads answers busy
       and is read again) */
    struct personal_reads r = {g, ps, purpose, own_only || token, 1, 0, 0};
    pvg_status st = pvg_store_read_retry(g->store, personal_reads_run, &r, err);
    int own = r.own, known = r.known, ok = r.ok;
    if (st != PVG_OK) return st;
    *reason = !own     ? "not_own_token"
              : !known ? "unknown_user"
              : !ok    ? "no_consent"
              : !m     ? "no_model"
                       : NULL;
    if (!*reason) {
        if (pvg_model_keying(m) == PVG_KEY_STORE_PSEUDONYM) /* the same key, not derived again */
            memcpy(key, ps, PVG_MODEL_KEY_BYTES);
        else
            st = pvg_model_user_key(m, g->store, ext_user, key, err);
        if (st != PVG_OK) return st;
    }
    char detail[96];
    snprintf(detail, sizeof detail, "%s%s%s", extra, *reason ? " answer=" : "",
             *reason ? refused_answer : "");
    return audit_first(g, action, subject, purpose,
                       !own     ? "denied:not_own_token"
                       : !known ? "not_found"
                       : !ok    ? "denied:no_consent"
                                : "allowed",
                       detail, err);
}

pvg_status pvg_access_export(pvg_access *g, const char *ext_user, char **json_out, pvg_error *err)
{
    *json_out = NULL;
    char subject[SUBJECT_LEN];
    pvg_audit_subject_of_user(g->store, ext_user, subject);
    pvg_consent c;
    int known = lookup(g, ext_user, &c, err);
    if (known < 0) return (pvg_status)known;
    pvg_status st = audit_first(g, "export", subject, PVG_PURPOSE_EXPORT,
                                known ? "allowed" : "not_found", NULL, err);
    if (st != PVG_OK) return st;
    if (!known) return not_found(err);
    return pvg_store_user_export(g->store, ext_user, json_out, err);
}

pvg_status pvg_access_erase(pvg_access *g, const char *ext_user,
                            pvg_status (*before_erase)(void *ctx, const unsigned char *pseudonym),
                            void *ctx, pvg_error *err)
{
    return pvg_access_erase_flags(g, ext_user, 0, before_erase, ctx, err);
}

pvg_status pvg_access_erase_flags(pvg_access *g, const char *ext_user, unsigned flags,
                                  pvg_status (*before_erase)(void *ctx,
                                                             const unsigned char *pseudonym),
                                  void *ctx, pvg_error *err)
{
    char subject[SUBJECT_LEN];
    pvg_audit_subject_of_user(g->store, ext_user, subject);
    pvg_consent c;
    int known = lookup(g, ext_user, &c, err);
    if (known < 0) return (pvg_status)known;
    pvg_status st =
        audit_first(g, "delete", subject, PVG_PURPOSE_ERASURE, known ? "allowed" : "not_found",
                    (flags & PVG_ERASE_ALLOW_RETURN) ? "crypto-shredding allow_return"
                                                     : "crypto-shredding suppressed",
                    err);
    if (st != PVG_OK) return st;
    if (!known) return not_found(err);
    if (before_erase) {
        unsigned char ps[PVG_PSEUDONYM_BYTES];
        pvg_store_pseudonym(g->store, ext_user, ps);
        st = before_erase(ctx, ps);
        if (st != PVG_OK)
            return pvg_error_set(err, st, "erasure: preparing step failed (%s)", pvg_strerror(st));
    }
    return pvg_store_user_erase(g->store, ext_user, flags, err);
}

pvg_status pvg_access_consent_get(pvg_access *g, const char *ext_user, pvg_consent *out,
                                  pvg_error *err)
{
    char subject[SUBJECT_LEN];
    pvg_audit_subject_of_user(g->store, ext_user, subject);
    int known = lookup(g, ext_user, out, err);
    if (known < 0) return (pvg_status)known;
    pvg_status st = audit_first(g, "consent_read", subject, PVG_PURPOSE_CONSENT,
                                known ? "allowed" : "not_found", NULL, err);
    if (st != PVG_OK) return st;
    if (!known) {
        memset(out, 0, sizeof *out);
        return not_found(err);
    }
    return PVG_OK;
}

pvg_status pvg_access_consent_change(pvg_access *g, const char *ext_user, int personalization,
                                     int analytics, pvg_consent *now_out, pvg_error *err)
{
    if (personalization < -1 || personalization > 1 || analytics < -1 || analytics > 1)
        return pvg_error_set(err, PVG_ERR_INVALID, "consent: switches are 0, 1 or -1 (keep)");
    char subject[SUBJECT_LEN];
    pvg_audit_subject_of_user(g->store, ext_user, subject);
    pvg_consent c;
    int known = lookup(g, ext_user, &c, err);
    if (known < 0) return (pvg_status)known;
    if (!known) {
        /* an erased shopper is not re-created by a consent change */
        int gone = 0;
        pvg_status sst = pvg_store_user_suppressed(g->store, ext_user, &gone, err);
        if (sst != PVG_OK) return sst;
        if (gone) {
            sst = audit_first(g, "consent_change", subject, PVG_PURPOSE_CONSENT, "denied:erased",
                              NULL, err);
            if (sst != PVG_OK) return sst;
            return pvg_error_set(err, PVG_ERR_ERASED,
                                 "consent: the user was erased at their request (suppression "
                                 "list); nothing is recorded about them");
        }
        policy_consent_defaults(g->store, &c);
    }
    if (personalization >= 0) c.personalization = personalization;
    if (analytics >= 0) c.analytics = analytics;
    char extra[96];
    snprintf(extra, sizeof extra, "personalization=%s analytics=%s%s",
             c.personalization ? "on" : "off", c.analytics ? "on" : "off",
             known ? "" : " new_user");
    pvg_status st =
        audit_first(g, "consent_change", subject, PVG_PURPOSE_CONSENT, "allowed", extra, err);
    if (st != PVG_OK) return st;
    st = pvg_store_consent_set(g->store, ext_user, &c, err);
    if (st == PVG_OK && now_out) *now_out = c;
    return st;
}

pvg_status pvg_access_user_events(pvg_access *g, pvg_purpose purpose, const char *ext_user,
                                  pvg_user_events_fn fn, void *ctx, pvg_error *err)
{
    char subject[SUBJECT_LEN];
    pvg_audit_subject_of_user(g->store, ext_user, subject);
    pvg_consent c;
    int known = lookup(g, ext_user, &c, err);
    if (known < 0) return (pvg_status)known;
    int ok = 0;
    pvg_status st = known ? allowed(g, purpose, &c, &ok, err) : PVG_OK;
    if (st != PVG_OK) return st;
    st = audit_first(g, "read_events", subject, purpose,
                     !known ? "not_found"
                     : ok   ? "allowed"
                            : "denied:no_consent",
                     NULL, err);
    if (st != PVG_OK) return st;
    if (!known) return not_found(err);
    if (!ok)
        return pvg_error_set(err, PVG_ERR_POLICY, "the user does not consent to the purpose %s",
                             pvg_purpose_name(purpose));
    return pvg_store_user_events(g->store, ext_user, fn, ctx, err);
}

/* ---- assistant conversations ---- */

pvg_status pvg_access_conversation_read(pvg_access *g, const char *ext_user, const char *id_hex,
                                        void (*fn)(void *ctx, const pvg_conversation_view *c),
                                        void *ctx, pvg_error *err)
{
    char subject[SUBJECT_LEN];
    pvg_audit_subject_of_user(g->store, ext_user, subject);
    pvg_consent c;
    int known = lookup(g, ext_user, &c, err);
    if (known < 0) return (pvg_status)known;
    pvg_status st = audit_first(g, "conversation_read", subject, PVG_PURPOSE_CONVERSATION,
                                known ? "allowed" : "not_found", NULL, err);
    if (st != PVG_OK) return st;
    if (!known) return not_found(err);
    return pvg_store_conversation_get(g->store, ext_user, id_hex, fn, ctx, err);
}

pvg_status pvg_access_conversation_write(pvg_access *g, const char *ext_user, const char *id_hex,
                                         int64_t created_at, const char *json, pvg_error *err)
{
    char subject[SUBJECT_LEN];
    pvg_audit_subject_of_user(g->store, ext_user, subject);
    int gone = 0;
    pvg_status st = pvg_store_user_suppressed(g->store, ext_user, &gone, err);
    if (st != PVG_OK) return st;
    st = audit_first(g, "conversation_write", subject, PVG_PURPOSE_CONVERSATION,
                     gone ? "denied:erased" : "allowed", NULL, err);
    if (st != PVG_OK) return st;
    if (gone)
        return pvg_error_set(err, PVG_ERR_ERASED,
                             "the user was erased (suppression list); nothing is recorded about "
                             "them");
    return pvg_store_conversation_put(g->store, ext_user, id_hex, created_at, json, err);
}

pvg_status pvg_access_conversations(pvg_access *g, const char *ext_user,
                                    void (*fn)(void *ctx, const pvg_conversation_view *c),
                                    void *ctx, pvg_error *err)
{
    char subject[SUBJECT_LEN];
    pvg_audit_subject_of_user(g->store, ext_user, subject);
    pvg_consent c;
    int known = lookup(g, ext_user, &c, err);
    if (known < 0) return (pvg_status)known;
    pvg_status st = audit_first(g, "conversations_read", subject, PVG_PURPOSE_EXPORT,
                                known ? "allowed" : "not_found", NULL, err);
    if (st != PVG_OK) return st;
    if (!known) return not_found(err);
    return pvg_store_conversations_foreach(g->store, ext_user, fn, ctx, NULL, err);
}

/* ---- recommendations ---- */

static pvg_status fallback_list(const pvg_access_rec_request *req, pvg_scored_item *out, size_t *n,
                                pvg_error *err)
{
    if (!req->fallback_items) return pvg_model_popular(req->model, req->k, out, n, err);
    size_t m = req->n_fallback < req->k ? req->n_fallback : req->k;
    for (size_t i = 0; i < m; i++) {
        out[i].item_index = req->fallback_items[i];
        out[i].item = pvg_model_item_id(req->model, req->fallback_items[i]);
        out[i].score = (float)((double)(req->n_fallback - i) / (double)req->n_fallback);
    }
    *n = m;
    return PVG_OK;
}

/* The synchronous writer of pvg_access_recommend: the gate's own sink (or
 * the store's log) has committed the entry when it returns. */
static pvg_status sync_enqueue(void *ctx, const pvg_audit_record *rec, pvg_access_rec_pending *p,
                               pvg_error *err)
{
    pvg_access *g = ctx;
    pvg_status st =
        g->audit ? g->audit(g->audit_ctx, rec, err) : pvg_audit_append(g->store, rec, NULL, err);
    if (st == PVG_OK) pvg_access_rec_committed(p, PVG_OK);
    return st;
}

pvg_status pvg_access_recommend(pvg_access *g, const pvg_access_rec_request *req,
                                pvg_scored_item *out, pvg_access_rec_answer *ans, pvg_error *err)
{
    memset(ans, 0, sizeof *ans);
    if (!req->model || !req->ext_user || req->k == 0)
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "recommend: model, user and k >= 1 are required");
    if (!g->store) {
        /* a model trained from a file outside any store: no consent register
         * or audit log governs that file; the answer is the model's own */
        if (pvg_model_keying(req->model) != PVG_KEY_SALTED_HASH)
            return pvg_error_set(err, PVG_ERR_INVALID,
                                 "recommend: a model trained from a store needs that store");
        unsigned char fkey[PVG_MODEL_KEY_BYTES];
        size_t fn = 0;
        pvg_status fst = pvg_model_user_key(req->model, NULL, req->ext_user, fkey, err);
        if (fst == PVG_OK)
            fst = pvg_model_recommend(req->model, fkey, req->k, req->include_seen, out, &fn, err);
        if (fst != PVG_OK) return fst;
        ans->personalized = 1;
        memcpy(ans->user_key, fkey, sizeof fkey);
        ans->n = fn;
        return PVG_OK;
    }
    /* the deferred gate's two halves with a writer that has committed the
     * entry when it returns: one path decides for both front-ends */
    pvg_access_rec_pending *p = NULL;
    pvg_status st = pvg_access_recommend_begin(g, req, sync_enqueue, g, &p, err);
    if (st != PVG_OK) return st;
    pvg_status fst;
    pvg_error fe;
    pvg_access_recommend_finish(&p, 1, &out, ans, &fst, &fe);
    if (fst != PVG_OK && err) *err = fe;
    return fst;
}

pvg_status pvg_access_similar(pvg_access *g, const pvg_model *m, const char *ext_item,
                              const unsigned char *asking_pseudonym_or_null, size_t k,
                              pvg_scored_item *out, size_t *n_out, pvg_error *err)
{
    *n_out = 0;
    char subject[SUBJECT_LEN] = "";
    if (asking_pseudonym_or_null)
        for (int i = 0; i < PVG_PSEUDONYM_BYTES; i++)
            snprintf(subject + 2 * i, 3, "%02x", asking_pseudonym_or_null[i]);
    char extra[32];
    snprintf(extra, sizeof extra, "k=%zu", k);
    pvg_status st = audit_first(g, "similar", subject, PVG_PURPOSE_SIMILAR, "allowed", extra, err);
    if (st != PVG_OK) return st;
    return pvg_model_similar(m, ext_item, k, out, n_out, err);
}

/* ---- "why this?" ---- */

pvg_status pvg_access_explain(pvg_access *g, const pvg_model *m, const char *ext_user,
                              const int64_t *items, size_t n, size_t k, pvg_explain_term *out,
                              size_t *n_out, pvg_explain_info *info, int *allowed_out,
                              const char **reason_out, pvg_error *err)
{
    *allowed_out = 0;
    *reason_out = NULL;
    if (!g->store || !ext_user || (n && (!items || !n_out || (k && !out))))
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "explain: store, user, items and the output arrays are required");
    for (size_t i = 0; i < n; i++)
        n_out[i] = 0;
    /* the evidence is the shopper's history: shown to the shopper's own
     * token only (checked here, whatever the front-end checked) */
    char extra[32];
    snprintf(extra, sizeof extra, "items=%zu", n);
    unsigned char key[PVG_MODEL_KEY_BYTES];
    const char *reason;
    pvg_status st = personal_read_begin(g, "explain", PVG_PURPOSE_RECOMMEND, ext_user, m, 1, extra,
                                        "none", key, &reason, err);
    if (st != PVG_OK) return st;
    if (reason) {
        *reason_out = reason;
        return PVG_OK;
    }
    st = pvg_model_explain(m, key, items, n, k, out, n_out, info, err);
    if (st == PVG_ERR_NOT_FOUND) {
        pvg_error_clear(err);
        *reason_out = "not_in_model";
        return PVG_OK;
    }
    if (st != PVG_OK) return st;
    *allowed_out = 1;
    return PVG_OK;
}

/* ---- personal re-rank of search results ---- */

pvg_status pvg_access_search_rerank(pvg_access *g, const pvg_model *m, const char *ext_user,
                                    const char *const *ext_items, size_t n, double *scores_out,
                                    int *personalized_out, const char **reason_out, pvg_error *err)
{
    *personalized_out = 0;
    *reason_out = NULL;
    if (!g->store || !ext_user || (n && (!ext_items || !scores_out)))
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "search_rerank: store, user and the candidate arrays are required");
    char extra[40];
    snprintf(extra, sizeof extra, "candidates=%zu", n);
    unsigned char key[PVG_MODEL_KEY_BYTES];
    const char *reason;
    pvg_status st = personal_read_begin(g, "search_rerank", PVG_PURPOSE_RECOMMEND, ext_user, m, 0,
                                        extra, "non_personalised", key, &reason, err);
    if (st != PVG_OK) return st;
    if (reason) {
        *reason_out = reason;
        return PVG_OK;
    }
    /* one scoring pass over every item (seen ones included: a shopper may
     * search for what they bought before), then the candidates' scores */
    size_t ni = pvg_model_n_items(m), got = 0;
    pvg_scored_item *all = malloc((ni ? ni : 1) * sizeof *all);
    double *by_index = malloc((ni ? ni : 1) * sizeof *by_index);
    if (!all || !by_index) {
        free(all);
        free(by_index);
        return pvg_error_set(err, PVG_ERR_NOMEM, "search_rerank: out of memory");
    }
    st = ni ? pvg_model_recommend(m, key, ni, 1, all, &got, err) : PVG_OK;
    if (st == PVG_ERR_NOT_FOUND) {
        pvg_error_clear(err);
        free(all);
        free(by_index);
        *reason_out = "not_in_model";
        return PVG_OK;
    }
    if (st != PVG_OK) {
        free(all);
        free(by_index);
        return st;
    }
    for (size_t i = 0; i < ni; i++)
        by_index[i] = NAN;
    for (size_t i = 0; i < got; i++)
        if (all[i].item_index >= 0 && (size_t)all[i].item_index < ni)
            by_index[all[i].item_index] = all[i].score;
    for (size_t i = 0; i < n; i++) {
        int64_t ix = ext_items[i] ? pvg_model_item_index(m, ext_items[i]) : -1;
        scores_out[i] = ix >= 0 && (size_t)ix < ni ? by_index[ix] : NAN;
    }
    free(all);
    free(by_index);
    *personalized_out = 1;
    return PVG_OK;
}

/* ---- batch recommendations ---- */

#define BATCH_BLOCK 4096

/* One shopper of a batch while it is decided. */
typedef struct batch_user {
    unsigned char ps[PVG_PSEUDONYM_BYTES];
    const char *skipped;
    int known;
    pvg_consent c;
} batch_user;

typedef struct user_list {
    batch_user *u;
    size_t n, cap;
} user_list;

static int list_take(void *ctx, const pvg_user_view *v)
{
    user_list *l = ctx;
    if (l->n == l->cap) {
        size_t nc = l->cap ? 2 * l->cap : 1024;
        batch_user *nu = realloc(l->u, nc * sizeof *nu);
        if (!nu) return 1;
        l->u = nu;
        l->cap = nc;
    }
    batch_user *b = &l->u[l->n++];
    memset(b, 0, sizeof *b);
    memcpy(b->ps, v->pseudonym, PVG_PSEUDONYM_BYTES);
    b->known = 1;
    b->c.personalization = v->consent_personalization;
    b->c.analytics = v->consent_analytics;
    return 0;
}

static void hex16(const unsigned char *p, char out[SUBJECT_LEN])
{
    for (int i = 0; i < PVG_PSEUDONYM_BYTES; i++)
        snprintf(out + 2 * i, 3, "%02x", p[i]);
}

/* Writes the block's audit entries (one per shopper) before any data of
 * theirs is read; fails closed. */
static pvg_status audit_block(pvg_access *g, const batch_user *bu, size_t n, size_t k,
                              pvg_error *err)
{
    pvg_audit_record *recs = calloc(n ? n : 1, sizeof *recs);
    char *text = malloc((n ? n : 1) * (SUBJECT_LEN + 128));
    if (!recs || !text) {
        free(recs);
        free(text);
        return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        char *subj = text + i * (SUBJECT_LEN + 128), *detail = subj + SUBJECT_LEN;
        hex16(bu[i].ps, subj);
        const char *outcome = !bu[i].known ? "not_found"
                              : bu[i].skipped && strcmp(bu[i].skipped, "no_consent") == 0
                                  ? "denied:no_consent"
                                  : "allowed";
        snprintf(detail, 128, "purpose=%s outcome=%s k=%zu batch=1%s",
                 pvg_purpose_name(PVG_PURPOSE_RECOMMEND), outcome, k,
                 bu[i].skipped ? " answer=skipped" : "");
        recs[i] = (pvg_audit_record){0, g->actor, "recommend", subj, detail};
    }
    pvg_status st = PVG_OK;
    pvg_error e;
    pvg_error_clear(&e);
    if (g->audit) {
        for (size_t i = 0; st == PVG_OK && i < n; i++)
            st = g->audit(g->audit_ctx, &recs[i], &e);
    } else {
        st = pvg_audit_append_many(g->store, recs, n, &e);
    }
    free(recs);
    free(text);
    if (st != PVG_OK)
        return pvg_error_set(err, st,
                             "access: the audit log cannot be written (%s); the batch of "
                             "recommendations is refused",
                             e.text[0] ? e.text : pvg_strerror(st));
    return PVG_OK;
}

pvg_status pvg_access_recommend_batch(pvg_access *g, const pvg_model *m,
                                      const char *const *ext_users, size_t n_users, size_t k,
                                      int include_seen, int threads, pvg_access_batch_fn fn,
                                      void *ctx, pvg_error *err)
{
    if (!m || !fn || k == 0)
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "recommend: model, callback and k >= 1 are required");
    int store_model = pvg_model_keying(m) == PVG_KEY_STORE_PSEUDONYM;
    if (!g->store && store_model)
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "recommend: a model trained from a store needs that store");
    if (!ext_users && !g->store)
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "recommend: every shopper of a store needs the store (a model trained "
                             "from a file cannot list its users)");
    if (g->store && !store_model)
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "recommend: a model trained from a file is not used with a store");
    int np = 0, na = 0;
    pvg_status st = g->store
                        ? pvg_access_purpose_consent(g->store, PVG_PURPOSE_RECOMMEND, &np, &na, err)
                        : PVG_OK;
    if (st != PVG_OK) return st;
    user_list all = {0};
    if (!ext_users) {
        st = pvg_store_users_list(g->store, list_take, &all, err);
        if (st == PVG_ERR_ABORTED) st = pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
        if (st != PVG_OK) {
            free(all.u);
            return st;
        }
        n_users = all.n;
    }
    size_t blk = n_users < BATCH_BLOCK ? (n_users ? n_users : 1) : BATCH_BLOCK;
    batch_user *bu = ext_users ? calloc(blk, sizeof *bu) : NULL;
    unsigned char *keys = malloc(16 * blk);
    size_t *pos = malloc(blk * sizeof *pos), *nout = malloc(blk * sizeof *nout);
    pvg_scored_item *out = malloc(blk * k * sizeof *out);
    if ((ext_users && !bu) || !keys || !pos || !nout || !out) {
        st = pvg_error_set(err, PVG_ERR_NOMEM, "out of memory for a batch of %zu x %zu", blk, k);
        goto done;
    }
    for (size_t b0 = 0; st == PVG_OK && b0 < n_users; b0 += blk) {
        size_t nb = n_users - b0 < blk ? n_users - b0 : blk;
        batch_user *u = ext_users ? bu : all.u + b0;
        /* 1. who they are, consent for the purpose */
        for (size_t i = 0; i < nb && st == PVG_OK; i++) {
            if (!ext_users) {
                u[i].skipped = (!np || u[i].c.personalization) && (!na || u[i].c.analytics)
                                   ? NULL
                                   : "no_consent";
                continue;
            }
            memset(&u[i], 0, sizeof u[i]);
            const char *id = ext_users[b0 + i];
            if (!g->store) {
                u[i].known = 1;
                continue;
            }
            pvg_store_pseudonym(g->store, id, u[i].ps);
            st = pvg_store_consent_get_pseudonym(g->store, u[i].ps, &u[i].c, err);
            if (st == PVG_ERR_NOT_FOUND) {
                pvg_error_clear(err);
                int gone = 0;
                st = pvg_store_user_suppressed(g->store, id, &gone, err);
                u[i].skipped = gone ? "erased" : "unknown_user";
            } else if (st == PVG_OK) {
                u[i].known = 1;
                if (!((!np || u[i].c.personalization) && (!na || u[i].c.analytics)))
                    u[i].skipped = "no_consent";
            }
        }
        if (st != PVG_OK) break;
        /* 2. one entry per shopper, durably, before the model is asked */
        if (g->store && (st = audit_block(g, u, nb, k, err)) != PVG_OK) break;
        /* 3. the allowed shoppers' lists, in one batched call */
        size_t na_ = 0;
        for (size_t i = 0; i < nb && st == PVG_OK; i++) {
            if (u[i].skipped) continue;
            unsigned char *key = keys + 16 * na_;
            if (g->store)
                memcpy(key, u[i].ps, 16);
            else
                st = pvg_model_user_key(m, NULL, ext_users[b0 + i], key, err);
            if (st == PVG_OK && pvg_model_find_user(m, key) < 0) {
                u[i].skipped = "not_in_model";
                continue;
            }
            pos[na_++] = i;
        }
        if (st != PVG_OK) break;
        st = pvg_model_recommend_batch(m, keys, na_, k, include_seen, threads, out, nout, err);
        if (st != PVG_OK) break;
        /* 4. every shopper of the block, in order */
        size_t q = 0;
        for (size_t i = 0; i < nb; i++) {
            pvg_access_batch_entry e;
            memset(&e, 0, sizeof e);
            e.index = b0 + i;
            e.ext_user = ext_users ? ext_users[b0 + i] : NULL;
            memcpy(e.pseudonym, u[i].ps, PVG_PSEUDONYM_BYTES);
            e.skipped = u[i].skipped;
            if (!e.skipped && q < na_ && pos[q] == i) {
                e.items = out + q * k;
                e.n = nout[q];
                q++;
            }
            if (fn(ctx, &e)) {
                st = pvg_error_set(err, PVG_ERR_ABORTED, "recommend: stopped by the caller");
                break;
            }
        }
    }
done:
    free(all.u);
    free(bu);
    free(keys);
    free(pos);
    free(nout);
    free(out);
    return st;
}

typedef struct similar_ctx {
    const pvg_model *m;
    const char *const *ids;
    size_t b0, k;
    pvg_scored_item *out;
    size_t *nout;
    pvg_status *st;
    pvg_error *errs;
} similar_ctx;

static void similar_range(void *ctx, int tid, size_t lo, size_t hi)
{
    (void)tid;
    similar_ctx *c = ctx;
    for (size_t i = lo; i < hi; i++) {
        size_t j = c->b0 + i;
        const char *id = c->ids ? c->ids[j] : pvg_model_item_id(c->m, (int64_t)j);
        pvg_error_clear(&c->errs[i]);
        c->st[i] = pvg_model_similar(c->m, id, c->k, c->out + i * c->k, &c->nout[i], &c->errs[i]);
    }
}

pvg_status pvg_access_similar_batch(pvg_access *g, const pvg_model *m, const char *const *ext_items,
                                    size_t n_items, size_t k, int threads, pvg_access_batch_fn fn,
                                    void *ctx, pvg_error *err)
{
    if (!m || !fn || k == 0)
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "similar: model, callback and k >= 1 are required");
    if (!ext_items) n_items = pvg_model_n_items(m);
    if (g->store) {
        char extra[64];
        snprintf(extra, sizeof extra, "k=%zu items=%zu batch=1", k, n_items);
        pvg_status ast = audit_first(g, "similar", "", PVG_PURPOSE_SIMILAR, "allowed", extra, err);
        if (ast != PVG_OK) return ast;
    }
    size_t blk = n_items < BATCH_BLOCK ? (n_items ? n_items : 1) : BATCH_BLOCK;
    pvg_scored_item *out = malloc(blk * k * sizeof *out);
    size_t *nout = malloc(blk * sizeof *nout);
    pvg_status *sts = malloc(blk * sizeof *sts);
    pvg_error *errs = malloc(blk * sizeof *errs);
    pvg_status st = PVG_OK;
    if (!out || !nout || !sts || !errs)
        st = pvg_error_set(err, PVG_ERR_NOMEM, "out of memory for a batch of %zu x %zu", blk, k);
    for (size_t b0 = 0; st == PVG_OK && b0 < n_items; b0 += blk) {
        size_t nb = n_items - b0 < blk ? n_items - b0 : blk;
        similar_ctx c = {m, ext_items, b0, k, out, nout, sts, errs};
        pvg_parallel_for(threads < 1 ? 1 : threads, nb, 64, similar_range, &c);
        for (size_t i = 0; i < nb && st == PVG_OK; i++) {
            pvg_access_batch_entry e;
            memset(&e, 0, sizeof e);
            e.index = b0 + i;
            e.ext_user = ext_items ? ext_items[b0 + i] : pvg_model_item_id(m, (int64_t)(b0 + i));
            if (sts[i] == PVG_ERR_NOT_FOUND) {
                e.skipped = "unknown_item";
            } else if (sts[i] != PVG_OK) {
                *err = errs[i];
                st = sts[i];
                break;
            } else {
                e.items = out + i * k;
                e.n = nout[i];
            }
            if (fn(ctx, &e))
                st = pvg_error_set(err, PVG_ERR_ABORTED, "similar: stopped by the caller");
        }
    }
    free(out);
    free(nout);
    free(sts);
    free(errs);
    return st;
}

/* ---- many shoppers ---- */

pvg_status pvg_access_foreach_user(pvg_access *g, pvg_purpose purpose, pvg_user_events_fn fn,
                                   void *ctx, pvg_error *err)
{
    if (purpose != PVG_PURPOSE_TRAINING && purpose != PVG_PURPOSE_DP_RELEASE)
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "access: iterating shoppers is for training or a DP release, not %s",
                             pvg_purpose_name(purpose));
    int np, na;
    pvg_status st = pvg_access_purpose_consent(g->store, purpose, &np, &na, err);
    if (st != PVG_OK) return st;
    unsigned flags =
        (np ? PVG_FOREACH_REQUIRE_PERSONALIZATION : 0u) | (na ? PVG_FOREACH_REQUIRE_ANALYTICS : 0u);
    char extra[64];
    snprintf(extra, sizeof extra, "consenting=%s",
             np && na ? "personalization+analytics"
             : np     ? "personalization"
             : na     ? "analytics"
                      : "all");
    st = audit_first(g, "read_all", "*", purpose, "allowed", extra, err);
    if (st != PVG_OK) return st;
    return pvg_store_foreach_user(g->store, flags, fn, ctx, err);
}

pvg_status pvg_access_training_dataset(pvg_access *g, const pvg_event_weights *weights,
                                       pvg_dataset **out, pvg_dataset_load_stats *stats,
                                       pvg_error *err)
{
    *out = NULL;
    pvg_dataset_load_stats s = {0};
    pvg_dataset *ds;
    pvg_status st = pvg_dataset_new_store_linked(g->store, weights, &ds, err);
    if (st != PVG_OK) return st;
    pvg_dataset_store_ctx c = {ds, &s, err, PVG_OK};
    st = pvg_access_foreach_user(g, PVG_PURPOSE_TRAINING, pvg_dataset_store_user_cb, &c, err);
    if (stats) *stats = s;
    if (c.st != PVG_OK) st = c.st;
    if (st == PVG_OK && pvg_dataset_n_events(ds) == 0)
        st = pvg_error_set(err, PVG_ERR_INVALID,
                           "the store holds no usable events of users who consent to the purpose "
                           "training");
    if (st != PVG_OK) {
        pvg_dataset_free(ds);
        return st;
    }
    *out = ds;
    return PVG_OK;
}

/* The DP-release readers (query engine, spend totals) select shoppers by
 * analytics consent; a policy that ties DP releases to another switch
 * cannot be honoured by them. `who` names the reader in the message. */
static pvg_status dp_release_consent_check(pvg_access *g, const char *who, pvg_error *err)
{
    int np, na;
    pvg_status st = pvg_access_purpose_consent(g->store, PVG_PURPOSE_DP_RELEASE, &np, &na, err);
    if (st != PVG_OK) return st;
    if (np)
        return pvg_error_set(err, PVG_ERR_UNSUPPORTED,
                             "policy: DP releases tied to personalization consent are not "
                             "supported (%s selects by analytics consent)",
                             who);
    return PVG_OK;
}

pvg_status pvg_access_dp_query(pvg_access *g, const pvg_query_spec *spec, pvg_rng *rng,
                               pvg_query_result **out, pvg_error *err)
{
    *out = NULL;
    pvg_status st = dp_release_consent_check(g, "the query engine", err);
    if (st != PVG_OK) return st;
    /* the query's shape and parameters: access monitoring (monitor.h) finds
     * near-identical queries repeated to average their noise away */
    char extra[200];
    snprintf(extra, sizeof extra,
             "query=%s dataset=%s type=%s value=%s group=%s clamp=%g:%g q=%g bins=%d eps=%g",
             pvg_query_kind_name(spec->kind), spec->dataset ? spec->dataset : "default",
             spec->event_type >= 0 ? pvg_event_type_name((pvg_event_type)spec->event_type) : "all",
             spec->value == PVG_QUERY_VALUE_AMOUNT   ? "amount"
             : spec->value == PVG_QUERY_VALUE_EVENTS ? "events"
                                                     : "quantity",
             pvg_query_group_name(spec->group_by), spec->has_clamp ? spec->clamp_lo : 0.0,
             spec->has_clamp ? spec->clamp_hi : 0.0, spec->quantile, spec->bins, spec->epsilon);
    st = audit_first(g, "dp_query", "*", PVG_PURPOSE_DP_RELEASE, "allowed", extra, err);
    if (st != PVG_OK) return st;
    return pvg_query_run(g->store, spec, rng, out, err);
}

pvg_status pvg_access_spend_total(pvg_access *g, const pvg_paillier_pub *pub,
                                  const pvg_spend_options *opts, pvg_spend_result **out,
                                  pvg_error *err)
{
    *out = NULL;
    pvg_status st = dp_release_consent_check(g, "the spend total", err);
    if (st != PVG_OK) return st;
    const char *by = opts->group_by == PVG_SPEND_BY_COUNTRY    ? "country"
                     : opts->group_by == PVG_SPEND_BY_CATEGORY ? "category"
                                                               : "none";
    char extra[128];
    if (opts->dp)
        snprintf(extra, sizeof extra, "group_by=%s epsilon=%.6g delta=%.3g", by, opts->epsilon,
                 opts->delta);
    else
        snprintf(extra, sizeof extra, "group_by=%s exact=1 (not differentially private)", by);
    st = audit_first(g, opts->dp ? "he_spend_total" : "he_spend_total_exact", "*",
                     PVG_PURPOSE_DP_RELEASE, "allowed", extra, err);
    if (st != PVG_OK) return st;
    return pvg_paillier_spend_total(g->store, pub, opts, out, err);
}

/* ---- DP releases shown to people other than the operator ---- */

pvg_status pvg_access_similar_released(pvg_access *g, const pvg_dp_cooc *r, int64_t release_id,
                                       const char *ext_item, int64_t item_row_id,
                                       const unsigned char *asking_pseudonym_or_null,
                                       const pvg_dp_similar **out, size_t *n_out, pvg_error *err)
{
    *out = NULL;
    *n_out = 0;
    if (!r || !ext_item)
        return pvg_error_set(err, PVG_ERR_INVALID, "similar: a release and an item are required");
    char subject[SUBJECT_LEN] = "";
    if (asking_pseudonym_or_null)
        for (int i = 0; i < PVG_PSEUDONYM_BYTES; i++)
            snprintf(subject + 2 * i, 3, "%02x", asking_pseudonym_or_null[i]);
    char extra[64];
    snprintf(extra, sizeof extra, "source=dp_release release=%lld", (long long)release_id);
    pvg_status st = audit_first(g, "similar", subject, PVG_PURPOSE_SIMILAR, "allowed", extra, err);
    if (st != PVG_OK) return st;
    if (item_row_id <= 0)
        return pvg_error_set(err, PVG_ERR_NOT_FOUND, "item \"%.100s\" is not in the catalog",
                             ext_item);
    return pvg_dp_cooc_similar(r, item_row_id, out, n_out, err);
}

/* ---- collection ---- */

pvg_status pvg_access_events_record(pvg_access *g, const pvg_event_in *in, size_t n,
                                    pvg_event_out *out, long long *stored, long long *duplicates,
                                    pvg_error *err)
{
    /* the consent rule of collection lives in the store (every writer
     * applies it: this route, file ingest, the CLI) */
    return pvg_store_events_put(g->store, in, n, out, stored, duplicates, err);
}

/* ---- the shopper's view of the audit log ---- */

typedef struct audit_slot {
    int64_t ts;
    const char *actor_kind;
    char action[48], purpose[24], outcome[48];
} audit_slot;

typedef struct audit_scan {
    const char *subject;
    audit_slot *ring;
    size_t cap;
    long long total;
} audit_scan;

static const char *actor_kind_of(const char *actor)
{
    if (strncmp(actor, "token:", 6) == 0) return "you";
    if (strncmp(actor, "key:", 4) == 0 || strcmp(actor, "cli") == 0) return "operator";
    if (strcmp(actor, "server") == 0) return "service";
    return "other";
}

/* Copies the value of "name=" in an audit detail ("purpose=P outcome=O
 * ...") into buf ("" when absent). */
static void detail_field(const char *detail, const char *name, char *buf, size_t cap)
{
    buf[0] = 0;
    size_t nl = strlen(name);
    for (const char *p = detail; p && *p; p = strchr(p, ' '), p = p ? p + 1 : NULL) {
        if (strncmp(p, name, nl) == 0 && p[nl] == '=') {
            size_t len = strcspn(p + nl + 1, " ");
            if (len >= cap) len = cap - 1;
            memcpy(buf, p + nl + 1, len);
            buf[len] = 0;
            return;
        }
    }
}

static int audit_scan_one(void *ctx, const pvg_audit_entry *e)
{
    audit_scan *a = ctx;
    if (!e->subject || strcmp(e->subject, a->subject) != 0) return 0;
    if (e->action && strcmp(e->action, "delete") == 0 && e->detail &&
        strstr(e->detail, "outcome=allowed")) {
        /* an erasure ends the account: a shopper who comes back (same id,
         * so the same pseudonym) sees only what happened since */
        a->total = 0;
        return 0;
    }
    audit_slot *s = &a->ring[(size_t)(a->total % (long long)a->cap)];
    a->total++;
    s->ts = e->ts;
    s->actor_kind = actor_kind_of(e->actor ? e->actor : "");
    snprintf(s->action, sizeof s->action, "%s", e->action ? e->action : "");
    detail_field(e->detail, "purpose", s->purpose, sizeof s->purpose);
    detail_field(e->detail, "outcome", s->outcome, sizeof s->outcome);
    return 0;
}

pvg_status pvg_access_audit_of_user(pvg_access *g, const char *ext_user, size_t limit,
                                    int (*fn)(void *ctx, const pvg_access_audit_view *v), void *ctx,
                                    long long *total, pvg_error *err)
{
    if (total) *total = 0;
    if (!ext_user || !fn || limit < 1 || limit > 10000)
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "audit of user: a user, a callback and a limit 1..10000 are "
                             "required (limit %zu)",
                             limit);
    char subject[SUBJECT_LEN];
    pvg_audit_subject_of_user(g->store, ext_user, subject);
    pvg_consent c;
    int known = lookup(g, ext_user, &c, err);
    if (known < 0) return (pvg_status)known;
    pvg_status st = audit_first(g, "audit_read", subject, PVG_PURPOSE_EXPORT,
                                known ? "allowed" : "not_found", NULL, err);
    if (st != PVG_OK) return st;
    if (!known) return not_found(err);
    audit_scan a = {subject, calloc(limit, sizeof(audit_slot)), limit, 0};
    if (!a.ring) return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    st = pvg_audit_foreach_subject(g->store, subject, audit_scan_one, &a, err);
    if (st == PVG_OK) {
        if (total) *total = a.total;
        size_t shown = a.total < (long long)limit ? (size_t)a.total : limit;
        for (size_t i = 0; i < shown; i++) {
            const audit_slot *s =
                &a.ring[(size_t)((a.total - 1 - (long long)i) % (long long)limit)];
            /* numbered among the shopper's own entries, never by the log's
             * global sequence: the gaps between those would tell the
             * shopper how many audited accesses others made in between */
            pvg_access_audit_view v = {
                a.total - (long long)i, s->ts, s->actor_kind, s->action, s->purpose, s->outcome};
            if (fn(ctx, &v)) break;
        }
    }
    free(a.ring);
    return st;
}

/* ---- recommendations whose audit entry commits later ---- */

/* The contract (access.h): begin checks and enqueues, nothing personal is
 * computed; the writer's pvg_access_rec_committed moves `state` from
 * QUEUED to COMMITTED only with PVG_OK; finish computes only for
 * COMMITTED. */
enum { REC_QUEUED = 0, REC_COMMITTED = 1, REC_FAILED = 2 };

struct pvg_access_rec_pending {
    pvg_access_rec_request req; /* pointers borrowed until the finish */
    const char *reason;         /* static; NULL: allowed (key set) */
    unsigned char key[PVG_MODEL_KEY_BYTES];
    pvg_status audit_st; /* written before state (release) */
    _Atomic int state;
};

typedef struct begin_sink {
    pvg_access_audit_async_fn fn;
    void *ctx;
    pvg_access_rec_pending *p;
    int queued;
} begin_sink;

/* The gate's audit sink during begin: the entry goes to the caller's
 * writer with the pending it belongs to. */
static pvg_status begin_enqueue(void *ctx, const pvg_audit_record *rec, pvg_error *err)
{
    begin_sink *b = ctx;
    if (b->queued) /* one entry per request, never a second */
        return pvg_error_set(err, PVG_ERR_INTERNAL, "access: a second audit entry");
    pvg_status st = b->fn(b->ctx, rec, b->p, err);
    if (st == PVG_OK) b->queued = 1;
    return st;
}

pvg_status pvg_access_recommend_begin(pvg_access *g, const pvg_access_rec_request *req,
                                      pvg_access_audit_async_fn enqueue, void *ctx,
                                      pvg_access_rec_pending **out, pvg_error *err)
{
    *out = NULL;
    if (!req || !req->model || !req->ext_user || req->k == 0 || !enqueue)
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "recommend: model, user, k >= 1 and an audit writer are required");
    if (!g->store)
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "recommend: the deferred gate needs a store (a model trained from a "
                             "file: pvg_access_recommend)");
    pvg_access_rec_pending *p = calloc(1, sizeof *p);
    if (!p) return pvg_error_set(err, PVG_ERR_NOMEM, "recommend: out of memory");
    p->req = *req;
    atomic_init(&p->state, REC_QUEUED);
    begin_sink b = {enqueue, ctx, p, 0};
    pvg_access g2 = *g;
    g2.audit = begin_enqueue;
    g2.audit_ctx = &b;
    char extra[32];
    snprintf(extra, sizeof extra, "k=%zu", req->k);
    /* the same checks and the same entry as pvg_access_recommend; the key
     * and the reason are in p before the entry is queued */
    pvg_status st =
        personal_read_begin(&g2, "recommend", PVG_PURPOSE_RECOMMEND, req->ext_user, req->model, 0,
                            extra, "non_personalised", p->key, &p->reason, err);
    if (st != PVG_OK) {
        if (b.queued) /* cannot happen (the entry is the last step); never free what the
                         writer holds */
            return st;
        sodium_memzero(p->key, sizeof p->key);
        free(p);
        return st;
    }
    *out = p;
    return PVG_OK;
}

void pvg_access_rec_committed(pvg_access_rec_pending *p, pvg_status status)
{
    p->audit_st = status;
    atomic_store_explicit(&p->state, status == PVG_OK ? REC_COMMITTED : REC_FAILED,
                          memory_order_release);
}

int pvg_access_rec_audit_failed(const pvg_access_rec_pending *p)
{
    return atomic_load_explicit(&((pvg_access_rec_pending *)p)->state, memory_order_acquire) ==
           REC_FAILED;
}

void pvg_access_rec_pending_free(pvg_access_rec_pending *p)
{
    if (!p) return;
    sodium_memzero(p->key, sizeof p->key);
    free(p);
}

/* The answers of the allowed pendings sel[0..n) (same model, k and
 * include_seen), scored in one call. */
static void finish_scored(pvg_access_rec_pending *const *p, const size_t *sel, size_t n,
                          pvg_scored_item *const *outs, pvg_access_rec_answer *ans, pvg_status *st,
                          pvg_error *errs)
{
    const pvg_access_rec_request *r0 = &p[sel[0]]->req;
    size_t k = r0->k;
    unsigned char *keys = malloc(n * PVG_MODEL_KEY_BYTES);
    pvg_scored_item *buf = malloc(n * k * sizeof *buf);
    size_t *nout = malloc(n * sizeof *nout);
    pvg_status *sts = malloc(n * sizeof *sts);
    pvg_error e;
    pvg_error_clear(&e);
    if (!keys || !buf || !nout || !sts) {
        for (size_t q = 0; q < n; q++)
            st[sel[q]] = pvg_error_set(&errs[sel[q]], PVG_ERR_NOMEM, "recommend: out of memory");
        goto done;
    }
    for (size_t q = 0; q < n; q++)
        memcpy(keys + q * PVG_MODEL_KEY_BYTES, p[sel[q]]->key, PVG_MODEL_KEY_BYTES);
    (void)pvg_model_recommend_many(r0->model, keys, n, k, r0->include_seen, buf, nout, sts, &e);
    for (size_t q = 0; q < n; q++) {
        size_t i = sel[q];
        const pvg_access_rec_request *rq = &p[i]->req;
        if (sts[q] == PVG_OK) {
            memcpy(outs[i], buf + q * k, nout[q] * sizeof *buf);
            ans[i].personalized = 1;
            memcpy(ans[i].user_key, p[i]->key, PVG_MODEL_KEY_BYTES);
            ans[i].n = nout[q];
            if (rq->memo_put) rq->memo_put(rq->memo_ctx, p[i]->key, k, outs[i], nout[q]);
            st[i] = PVG_OK;
        } else if (sts[q] == PVG_ERR_NOT_FOUND) {
            size_t nn = 0;
            st[i] = fallback_list(rq, outs[i], &nn, &errs[i]);
            if (st[i] == PVG_OK) {
                ans[i].reason = "not_in_model";
                ans[i].n = nn;
            }
        } else {
            st[i] = sts[q];
            errs[i] = e;
            if (errs[i].code == PVG_OK)
                (void)pvg_error_set(&errs[i], sts[q], "recommend: %s", pvg_strerror(sts[q]));
        }
    }
done:
    if (keys) sodium_memzero(keys, n * PVG_MODEL_KEY_BYTES);
    free(keys);
    free(buf);
    free(nout);
    free(sts);
}

void pvg_access_recommend_finish(pvg_access_rec_pending *const *p, size_t n,
                                 pvg_scored_item *const *outs, pvg_access_rec_answer *ans,
                                 pvg_status *st, pvg_error *errs)
{
    size_t *todo = malloc((n ? n : 1) * sizeof *todo), *sel = malloc((n ? n : 1) * sizeof *sel);
    size_t nt = 0;
    for (size_t i = 0; i < n; i++) {
        memset(&ans[i], 0, sizeof ans[i]);
        pvg_error_clear(&errs[i]);
        st[i] = PVG_ERR_INTERNAL;
        const pvg_access_rec_request *rq = &p[i]->req;
        int state = atomic_load_explicit(&p[i]->state, memory_order_acquire);
        if (state != REC_COMMITTED) {
            /* no committed entry: nothing is computed */
            pvg_status a = state == REC_FAILED ? p[i]->audit_st : PVG_ERR_STATE;
            if (a == PVG_OK) a = PVG_ERR_STATE;
            st[i] = pvg_error_set(&errs[i], a,
                                  "access: the audit log cannot be written (%s); recommend is "
                                  "refused",
                                  state == REC_FAILED ? pvg_strerror(a)
                                                      : "the entry was not committed");
            continue;
        }
        if (p[i]->reason) {
            size_t nn = 0;
            st[i] = fallback_list(rq, outs[i], &nn, &errs[i]);
            if (st[i] == PVG_OK) {
                ans[i].reason = p[i]->reason;
                ans[i].n = nn;
            }
            continue;
        }
        size_t nn = 0;
        if (rq->memo_get && rq->memo_get(rq->memo_ctx, p[i]->key, rq->k, outs[i], &nn)) {
            ans[i].personalized = 1;
            memcpy(ans[i].user_key, p[i]->key, PVG_MODEL_KEY_BYTES);
            ans[i].n = nn;
            st[i] = PVG_OK;
            continue;
        }
        if (!todo || !sel) {
            st[i] = pvg_error_set(&errs[i], PVG_ERR_NOMEM, "recommend: out of memory");
            continue;
        }
        todo[nt++] = i;
    }
    /* the rest in groups of the same model, k and include_seen: one
     * batched call each */
    for (size_t a = 0; a < nt; a++) {
        if (todo[a] == SIZE_MAX) continue;
        const pvg_access_rec_request *ra = &p[todo[a]]->req;
        size_t ns = 0;
        for (size_t b = a; b < nt; b++) {
            if (todo[b] == SIZE_MAX) continue;
            const pvg_access_rec_request *rb = &p[todo[b]]->req;
            if (rb->model != ra->model || rb->k != ra->k || rb->include_seen != ra->include_seen)
                continue;
            sel[ns++] = todo[b];
            if (b != a) todo[b] = SIZE_MAX;
        }
        todo[a] = SIZE_MAX;
        finish_scored(p, sel, ns, outs, ans, st, errs);
    }
    free(todo);
    free(sel);
    for (size_t i = 0; i < n; i++)
        pvg_access_rec_pending_free(p[i]);
}
