/*
 * privguide/access.h - the access gate: the one library call path for every
 * read or use of a shopper's personal data.
 *
 * Every gated call does, in this order:
 *   1. looks the shopper up (erased or unknown: PVG_ERR_NOT_FOUND, except
 *      recommendations, which answer non-personalised) and checks the
 *      consent switch that the purpose needs (policy.json "purposes": the
 *      entry named like the purpose says which switch, or null for none);
 *   2. appends ONE audit entry (actor, action, subject = the shopper's
 *      pseudonym in hex, never the external id; detail "purpose=P
 *      outcome=O ...") through the gate's audit sink, whatever the outcome
 *      (allowed, denied:no_consent, not_found); when the append fails the
 *      call fails with the append's status and hands over nothing;
 *   3. only then reads, hands over or changes the data (store and model
 *      functions).
 * A purpose whose consent switch is off gives PVG_ERR_POLICY (the distinct
 * "no consent" status), except recommendations (the non-personalised list
 * instead) and iteration over many shoppers (the non-consenting are
 * skipped).
 *
 * Front-ends (CLI, HTTP server) never check consent, write audit entries
 * about personal data or call the gated store/model functions themselves;
 * tests/cli/gate_check.sh enforces it.
 *
 * A pvg_access is a small value the caller fills with pvg_access_init; it
 * borrows the store and the actor string. Use it from one thread at a time
 * (like its store).
 */
#ifndef PRIVGUIDE_ACCESS_H
#define PRIVGUIDE_ACCESS_H

#include <privguide/audit.h>
#include <privguide/common.h>
#include <privguide/model.h>
#include <privguide/paillier.h>
#include <privguide/query.h>
#include <privguide/release.h>
#include <privguide/store.h>

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default) /* the API; everything else is hidden */

/* Why personal data is used. Each purpose names the policy purpose whose
 * "consent" field says which switch it needs (docs/privacy.md). */
typedef enum pvg_purpose {
    PVG_PURPOSE_EXPORT = 1,     /* the shopper's right of access: no consent needed */
    PVG_PURPOSE_ERASURE = 2,    /* the shopper's right to erasure: no consent needed */
    PVG_PURPOSE_CONSENT = 3,    /* reading or changing consent: no consent needed */
    PVG_PURPOSE_RECOMMEND = 4,  /* a personalised list: policy purpose "personalization" */
    PVG_PURPOSE_SIMILAR = 5,    /* similar items asked by a shopper: item-side, no consent */
    PVG_PURPOSE_TRAINING = 6,   /* training/evaluation data: "personalization" */
    PVG_PURPOSE_DP_RELEASE = 7, /* data read of a DP release: "analytics" */
    /* the shopper's own assistant conversation, kept to continue it: no
     * consent needed (the service they asked for; docs/assistant.md) */
    PVG_PURPOSE_CONVERSATION = 9
} pvg_purpose;

/* "export", "erasure", "consent", "recommend", "similar", "training",
 * "dp_release"; "?" out of range. Static string. */
const char *pvg_purpose_name(pvg_purpose p);

/* Appends one audit entry durably; returns PVG_OK only once it is
 * committed. rec and its strings are borrowed for the call. */
typedef pvg_status (*pvg_access_audit_fn)(void *ctx, const pvg_audit_record *rec, pvg_error *err);

typedef struct pvg_access {
    pvg_store *store;          /* borrowed */
    const char *actor;         /* borrowed: "cli", "key:<id>", "token:<id>" */
    pvg_access_audit_fn audit; /* NULL: pvg_audit_append on `store` */
    void *audit_ctx;
} pvg_access;

/* Fills g: store and actor borrowed (both must outlive g), default audit
 * sink (pvg_audit_append on the same store). */
void pvg_access_init(pvg_access *g, pvg_store *store, const char *actor);

/* Which consent switch `purpose` needs under the store's policy:
 * *needs_personalization / *needs_analytics set to 0 or 1. A policy
 * without a "purposes" entry of that name uses the default policy's rule.
 * PVG_ERR_INVALID when the purpose is out of range. */
pvg_status pvg_access_purpose_consent(const pvg_store *s, pvg_purpose purpose,
                                      int *needs_personalization, int *needs_analytics,
                                      pvg_error *err) PVG_WARN_UNUSED;

/* ---- the shopper's rights ---- */

/* The shopper's export document (new string, pvg_free; see
 * pvg_store_user_export). PVG_ERR_NOT_FOUND when unknown or erased. */
pvg_status pvg_access_export(pvg_access *g, const char *ext_user, char **json_out,
                             pvg_error *err) PVG_WARN_UNUSED;

/* Erases the shopper (pvg_store_user_delete). before_erase (may be NULL)
 * runs after the audit entry and before the erasure, with the shopper's
 * pseudonym (e.g. to revoke their credentials); a non-OK return stops the
 * erasure and is returned. PVG_ERR_NOT_FOUND when unknown or erased. */
pvg_status pvg_access_erase(pvg_access *g, const char *ext_user,
                            pvg_status (*before_erase)(void *ctx, const unsigned char *pseudonym),
                            void *ctx, pvg_error *err) PVG_WARN_UNUSED;

/* pvg_access_erase with pvg_store_user_erase flags (PVG_ERASE_ALLOW_RETURN:
 * the shopper is not put on the suppression list). */
pvg_status pvg_access_erase_flags(pvg_access *g, const char *ext_user, unsigned flags,
                                  pvg_status (*before_erase)(void *ctx,
                                                             const unsigned char *pseudonym),
                                  void *ctx, pvg_error *err) PVG_WARN_UNUSED;

/* Reads the shopper's consent into *out. PVG_ERR_NOT_FOUND when unknown. */
pvg_status pvg_access_consent_get(pvg_access *g, const char *ext_user, pvg_consent *out,
                                  pvg_error *err) PVG_WARN_UNUSED;

/* Changes consent: personalization / analytics are 0, 1 or -1 (keep). An
 * unknown shopper is created (consent may precede any event) starting from
 * the policy's consent_defaults. *now_out (may be NULL) gets the consent
 * after the change. An erased shopper (suppression list) is refused:
 * PVG_ERR_ERASED, audited as denied:erased. */
pvg_status pvg_access_consent_change(pvg_access *g, const char *ext_user, int personalization,
                                     int analytics, pvg_consent *now_out,
                                     pvg_error *err) PVG_WARN_UNUSED;

/* Hands one shopper's events to fn (pvg_store_user_events) for `purpose`.
 * PVG_ERR_NOT_FOUND when unknown, PVG_ERR_POLICY when the purpose's
 * consent switch is off (audited as denied, fn never called). */
pvg_status pvg_access_user_events(pvg_access *g, pvg_purpose purpose, const char *ext_user,
                                  pvg_user_events_fn fn, void *ctx, pvg_error *err) PVG_WARN_UNUSED;

/* ---- recommendations ---- */

typedef struct pvg_access_rec_request {
    const pvg_model *model; /* borrowed */
    const char *ext_user;
    size_t k;
    int include_seen;
    /* The non-personalised list given when the shopper is unknown, erased,
     * does not consent or is not in the model: model item indices, best
     * first (scores (n-i)/n). NULL: pvg_model_popular (the model's own,
     * non-DP counts). */
    const int64_t *fallback_items;
    size_t n_fallback;
    /* Optional memo of personalised answers (e.g. a server cache), asked
     * only after the consent check and the audit entry: get returns 1 and
     * fills out/n on a hit; put keeps a computed answer. May be NULL. */
    int (*memo_get)(void *ctx, const unsigned char key[16], size_t k, pvg_scored_item *out,
                    size_t *n);
    void (*memo_put)(void *ctx, const unsigned char key[16], size_t k, const pvg_scored_item *items,
                     size_t n);
    void *memo_ctx;
} pvg_access_rec_request;

typedef struct pvg_access_rec_answer {
    int personalized;   /* 1: the shopper's own list */
    const char *reason; /* static; NULL when personalised, else "not_own_token" (a
                           shopper token asking for another shopper), "unknown_user",
                           "no_consent" or "not_in_model" */
    unsigned char user_key[PVG_MODEL_KEY_BYTES]; /* the model key (personalised only) */
    size_t n;                                    /* items written to out */
} pvg_access_rec_answer;

/* Top-k for a shopper into out[k] (out[i].item borrowed from the model).
 * Personalised only when the shopper is known, consents to the purpose
 * "recommend" needs and is in the model; otherwise the non-personalised
 * list, with ans->reason saying why (PVG_OK either way).
 * g->store NULL is allowed only for a model trained from a file
 * (PVG_KEY_SALTED_HASH keying): no store, consent register or audit log
 * governs that file, so the model answers as it is (PVG_ERR_NOT_FOUND for
 * a user it does not know); a store-trained model without its store is
 * PVG_ERR_INVALID. */
pvg_status pvg_access_recommend(pvg_access *g, const pvg_access_rec_request *req,
                                pvg_scored_item *out, pvg_access_rec_answer *ans,
                                pvg_error *err) PVG_WARN_UNUSED;

/* Items similar to ext_item (pvg_model_similar), audited with the asking
 * shopper's pseudonym as subject (NULL: an operator asked; subject ""). */
pvg_status pvg_access_similar(pvg_access *g, const pvg_model *m, const char *ext_item,
                              const unsigned char *asking_pseudonym_or_null, size_t k,
                              pvg_scored_item *out, size_t *n_out, pvg_error *err) PVG_WARN_UNUSED;

/* ---- "why this?" for a shopper's own recommendations ---- */

/* The evidence from the shopper's own history for n items (model indices)
 * of their list (pvg_model_explain: at most k history items per item into
 * out[i*k ..], n_out[i], info[i] may be NULL). The history is personal
 * data shown back to its owner only: g->actor must be the shopper's own
 * token ("token:<id>"; the gate finds the credential in g->store and
 * checks that it is bound to ext_user, not revoked, not expired); any
 * other actor is refused before the shopper is looked up, so it learns
 * nothing of them. Then as pvg_access_recommend: the shopper is looked up
 * and the consent "recommend" needs (personalization) checked, then ONE
 * audit entry (action "explain", purpose recommend, outcome allowed /
 * denied:no_consent / denied:not_own_token / not_found, detail
 * "... items=N"), and only then the model is asked. *allowed_out 1 when
 * out was filled; else 0 with
 * *reason_out (static) "not_own_token", "unknown_user", "no_consent",
 * "no_model" (m NULL) or "not_in_model", n_out all 0 (PVG_OK either way).
 * Needs g->store. Errors: PVG_ERR_INVALID, the audit write's (nothing
 * handed over), the model's (PVG_ERR_INVALID for an index out of range,
 * PVG_ERR_NOMEM). */
pvg_status pvg_access_explain(pvg_access *g, const pvg_model *m, const char *ext_user,
                              const int64_t *items, size_t n, size_t k, pvg_explain_term *out,
                              size_t *n_out, pvg_explain_info *info, int *allowed_out,
                              const char **reason_out, pvg_error *err) PVG_WARN_UNUSED;

/* ---- personal re-rank of search results ---- */

/* The shopper's model scores for n search candidates (ext_items, catalog
 * item ids, borrowed): scores_out[i] is the model's score of ext_items[i]
 * for the shopper, NAN when the model does not know that item. Done as
 * pvg_access_recommend does: the shopper is looked up and the consent the
 * purpose "recommend" needs (personalization) checked, then ONE audit
 * entry (action "search_rerank", purpose recommend, outcome allowed /
 * denied:no_consent / not_found, detail "... candidates=N"), and only then
 * the model is asked. *personalized_out is 1 when scores_out was filled;
 * else 0 with *reason_out (static) "not_own_token" (a shopper token asking
 * for another shopper), "unknown_user", "no_consent", "no_model" (m NULL) or
 * "not_in_model", and scores_out untouched
 * (PVG_OK either way). Needs g->store. Errors: PVG_ERR_INVALID, the audit
 * write's (nothing scored), PVG_ERR_NOMEM, the model's. */
pvg_status pvg_access_search_rerank(pvg_access *g, const pvg_model *m, const char *ext_user,
                                    const char *const *ext_items, size_t n, double *scores_out,
                                    int *personalized_out, const char **reason_out,
                                    pvg_error *err) PVG_WARN_UNUSED;

/* ---- batch recommendations (an operator's run over many shoppers) ---- */

/* One shopper's outcome in a batch, handed to the caller's callback. */
typedef struct pvg_access_batch_entry {
    size_t index;         /* position in the caller's list (or in the store's user order) */
    const char *ext_user; /* borrowed from the caller's list; NULL for every-shopper runs */
    unsigned char pseudonym[PVG_PSEUDONYM_BYTES]; /* the store pseudonym (zero without store) */
    /* NULL: items holds the shopper's own list; else why they were skipped:
     * "unknown_user" (no data held), "erased" (on the suppression list),
     * "no_consent" (the switch "recommend" needs is off) or "not_in_model" */
    const char *skipped;
    const pvg_scored_item *items; /* n items, best first (borrowed for the call) */
    size_t n;
} pvg_access_batch_entry;

/* Returns 0 to go on, non-zero to stop the batch (PVG_ERR_ABORTED). */
typedef int (*pvg_access_batch_fn)(void *ctx, const pvg_access_batch_entry *e);

/* Personalised top-k for many shoppers from one model, in blocks of at
 * most 4096 shoppers: for each block, every shopper is looked up and their
 * consent checked (as pvg_access_recommend does), then ONE audit entry per
 * shopper is written (action "recommend", outcome as for the single call,
 * detail "... batch=1"), all entries of the block in one transaction
 * (pvg_audit_append_many; a custom sink gets them one by one), and only
 * then the model is asked (pvg_model_recommend_batch, `threads` threads)
 * for the allowed shoppers. Unlike the single call, a shopper who does not
 * get their own list is skipped with a reason (no non-personalised list).
 * fn sees every shopper, in order. ext_users NULL: every shopper of the
 * store (n_users ignored), identified by pseudonym only; a model trained
 * from a file (g->store NULL) needs ext_users and is not audited (as in
 * pvg_access_recommend). Errors: PVG_ERR_INVALID (k 0, a store-trained
 * model without its store, every-shopper run without a store), the audit
 * write's error (nothing of that block is computed or handed over),
 * PVG_ERR_ABORTED, PVG_ERR_NOMEM; the model's errors. */
pvg_status pvg_access_recommend_batch(pvg_access *g, const pvg_model *m,
                                      const char *const *ext_users, size_t n_users, size_t k,
                                      int include_seen, int threads, pvg_access_batch_fn fn,
                                      void *ctx, pvg_error *err) PVG_WARN_UNUSED;

/* Items similar to each of n items (pvg_model_similar), for an operator:
 * ONE audit entry for the whole batch (action "similar", subject "",
 * detail "... k=K items=N batch=1"), written first, then fn is called per
 * item in order with e->ext_user = the item id and e->skipped
 * "unknown_item" when the model does not know it. ext_items NULL: every
 * item of the model, in index order. Errors: the audit write's, those of
 * pvg_model_similar other than PVG_ERR_NOT_FOUND, PVG_ERR_ABORTED. */
pvg_status pvg_access_similar_batch(pvg_access *g, const pvg_model *m, const char *const *ext_items,
                                    size_t n_items, size_t k, int threads, pvg_access_batch_fn fn,
                                    void *ctx, pvg_error *err) PVG_WARN_UNUSED;

/* ---- many shoppers ---- */

/* Hands every shopper whose consent the purpose needs to fn
 * (pvg_store_foreach_user with the matching flags); one audit entry,
 * subject "*". purpose must be TRAINING or DP_RELEASE (else
 * PVG_ERR_INVALID). */
pvg_status pvg_access_foreach_user(pvg_access *g, pvg_purpose purpose, pvg_user_events_fn fn,
                                   void *ctx, pvg_error *err) PVG_WARN_UNUSED;

/* The training data: every consenting shopper's events (purpose TRAINING)
 * in a new store-keyed dataset, as pvg_dataset_load_store would build it.
 * PVG_ERR_INVALID when no usable event is left. stats may be NULL. */
pvg_status pvg_access_training_dataset(pvg_access *g, const pvg_event_weights *weights,
                                       pvg_dataset **out, pvg_dataset_load_stats *stats,
                                       pvg_error *err) PVG_WARN_UNUSED;

/* A DP query (pvg_query_run, which reads only analytics-consenting
 * shoppers), audited first as purpose DP_RELEASE. *out is new. */
pvg_status pvg_access_dp_query(pvg_access *g, const pvg_query_spec *spec, pvg_rng *rng,
                               pvg_query_result **out, pvg_error *err) PVG_WARN_UNUSED;

/* Encrypted spend totals per group (pvg_paillier_spend_total, which reads
 * only analytics-consenting shoppers), audited first as purpose
 * DP_RELEASE: action "he_spend_total" for a DP release, or
 * "he_spend_total_exact" for exact totals (opts->dp 0: not differentially
 * private; only the operator's tools may ask for them). *out is new
 * (pvg_spend_result_free). */
pvg_status pvg_access_spend_total(pvg_access *g, const pvg_paillier_pub *pub,
                                  const pvg_spend_options *opts, pvg_spend_result **out,
                                  pvg_error *err) PVG_WARN_UNUSED;

/* ---- DP releases shown to people other than the operator ---- */

/* Items similar to ext_item from a DP co-occurrence release (release.h),
 * the answer for shoppers and analysts (the non-DP model is the
 * operator's only): audited like pvg_access_similar, with "source=dp_release"
 * and the release id. item_row_id is the catalog row id of ext_item (the
 * release's domain ids), or <= 0 when the catalog has no such item.
 * *out borrows from r; *n_out 0 when the item is outside the release's
 * domain (PVG_ERR_NOT_FOUND). */
pvg_status pvg_access_similar_released(pvg_access *g, const pvg_dp_cooc *r, int64_t release_id,
                                       const char *ext_item, int64_t item_row_id,
                                       const unsigned char *asking_pseudonym_or_null,
                                       const pvg_dp_similar **out, size_t *n_out,
                                       pvg_error *err) PVG_WARN_UNUSED;

/* ---- assistant conversations (docs/assistant.md) ---- */

/* Reads conversation id_hex of the shopper (pvg_store_conversation_get),
 * audited first (action "conversation_read", purpose conversation).
 * PVG_ERR_NOT_FOUND when the shopper or the conversation is unknown. */
pvg_status pvg_access_conversation_read(pvg_access *g, const char *ext_user, const char *id_hex,
                                        void (*fn)(void *ctx, const pvg_conversation_view *c),
                                        void *ctx, pvg_error *err) PVG_WARN_UNUSED;

/* Writes the shopper's conversation (pvg_store_conversation_put), audited
 * first (action "conversation_write", purpose conversation). An erased
 * shopper: PVG_ERR_ERASED, audited as denied:erased. */
pvg_status pvg_access_conversation_write(pvg_access *g, const char *ext_user, const char *id_hex,
                                         int64_t created_at, const char *json,
                                         pvg_error *err) PVG_WARN_UNUSED;

/* Every conversation of the shopper, newest first (the privacy portal's
 * list; pvg_store_conversations_foreach), audited first (action
 * "conversations_read", purpose export). PVG_ERR_NOT_FOUND when the
 * shopper is unknown or erased. */
pvg_status pvg_access_conversations(pvg_access *g, const char *ext_user,
                                    void (*fn)(void *ctx, const pvg_conversation_view *c),
                                    void *ctx, pvg_error *err) PVG_WARN_UNUSED;

/* ---- collection and the shopper's view of the audit log ---- */

/* Records a batch of events for the shopper-facing front-ends: exactly
 * pvg_store_events_put, which applies the policy and its purpose
 * limitation at collection (a refused event gets PVG_ERR_POLICY, reason
 * "no_consent", and never reaches the store). Collection reads nothing that
 * is held, so it writes no audit entry (the events show in the export).
 * Counts and errors as pvg_store_events_put. */
pvg_status pvg_access_events_record(pvg_access *g, const pvg_event_in *in, size_t n,
                                    pvg_event_out *out, long long *stored, long long *duplicates,
                                    pvg_error *err) PVG_WARN_UNUSED;

/* One audit entry about a shopper as shown to that shopper: what the log
 * says about the access without the operator's details (no credential id,
 * no detail text beyond purpose and outcome). Strings are static or
 * borrowed for the callback. */
typedef struct pvg_access_audit_view {
    int64_t seq;            /* the entry's number among the shopper's own entries: 1 for the
                               first since the account began (or came back after an erasure),
                               total for the newest; not the log's global sequence number,
                               whose gaps would count the accesses to everyone else */
    int64_t ts;             /* seconds since the epoch */
    const char *actor_kind; /* "you" (the shopper's own token), "operator" (an API key or the
                               command line), "service" (the server itself), "other" */
    const char *action;     /* "export", "recommend", "consent_change", ... */
    const char *purpose;    /* the gate purpose ("export", "recommend", ...), "" if none */
    const char *outcome;    /* "allowed", "denied:no_consent", "not_found", ... */
} pvg_access_audit_view;

/* The audit entries whose subject is ext_user's pseudonym (never another
 * shopper's, never the bulk entries with subject "*"), read through the
 * log's index by subject (pvg_audit_foreach_subject), newest first: at
 * most `limit` (1..10000) handed to fn, *total (may be NULL) gets how many
 * there are. The read itself is audited first (action "audit_read",
 * purpose export) and is the newest entry shown. PVG_ERR_NOT_FOUND when the
 * shopper is unknown or erased. fn returns non-zero to stop early. */
pvg_status pvg_access_audit_of_user(pvg_access *g, const char *ext_user, size_t limit,
                                    int (*fn)(void *ctx, const pvg_access_audit_view *v), void *ctx,
                                    long long *total, pvg_error *err) PVG_WARN_UNUSED;

/* ---- recommendations whose audit entry commits later (servers) ---- */

/* A recommendation between its gate checks and its answer: the shopper was
 * checked and the audit entry handed to the caller's writer, which has not
 * committed it yet. Opaque; made by pvg_access_recommend_begin, freed by
 * pvg_access_recommend_finish (or pvg_access_rec_pending_free). */
typedef struct pvg_access_rec_pending pvg_access_rec_pending;

/* Queues rec (borrowed for the call: copy it) for a durable append and
 * returns at once: PVG_OK when queued, else the reason nothing was queued.
 * When queued, the writer later calls pvg_access_rec_committed(p, status)
 * exactly once, with PVG_OK only after the entry is committed. */
typedef pvg_status (*pvg_access_audit_async_fn)(void *ctx, const pvg_audit_record *rec,
                                                pvg_access_rec_pending *p, pvg_error *err);

/* pvg_access_recommend in two halves, so that a server can keep many
 * requests in flight and score those of one audit commit as one batch.
 * begin does step 1 and hands step 2 over: the actor (a shopper token
 * reaches only its own shopper), the shopper's lookup and consent, the
 * model key (only when allowed), then the ONE audit entry (the same entry
 * pvg_access_recommend writes) to enqueue(ctx, ...). Nothing personal is
 * computed: the model is not asked. *out (new) is then pending until the
 * writer calls pvg_access_rec_committed; only pvg_access_recommend_finish
 * computes anything, and only for entries committed with PVG_OK.
 * req and every pointer in it (model, ext_user, fallback_items, memo_ctx)
 * are borrowed until the finish. Needs g->store (a model trained from a
 * file: use pvg_access_recommend); g's audit sink is not used. Errors (no
 * *out, nothing queued): PVG_ERR_INVALID, the lookups', the key's, the
 * enqueue's (then the audit log cannot be written: answer as an audit
 * failure). */
pvg_status pvg_access_recommend_begin(pvg_access *g, const pvg_access_rec_request *req,
                                      pvg_access_audit_async_fn enqueue, void *ctx,
                                      pvg_access_rec_pending **out, pvg_error *err) PVG_WARN_UNUSED;

/* The writer's word on p's entry: PVG_OK committed, else the append's
 * error (the answer will then be that error, with nothing computed).
 * Thread-safe against a concurrent finish of other pendings; call once. */
void pvg_access_rec_committed(pvg_access_rec_pending *p, pvg_status status);

/* 1 when p's entry failed to commit (the caller answers "audit log
 * unavailable"), 0 otherwise. */
int pvg_access_rec_audit_failed(const pvg_access_rec_pending *p);

/* The answers of n pendings (each its own shopper, model and k), freed
 * here (steals p[0..n)). The allowed shoppers whose entries are committed
 * and who miss the memo are scored together per (model, k) in one batched
 * call (pvg_model's serving queue); every other one gets its
 * non-personalised list or its error. For each i: st[i] PVG_OK with
 * ans[i] and outs[i][0..ans[i].n) (outs[i] holds the request's k items;
 * items borrowed from the model), else the error in errs[i] and nothing
 * in outs[i]: an entry not (yet) committed gives its audit error (or
 * PVG_ERR_STATE when the writer never answered) and nothing computed. One
 * shopper's failure never changes another's answer. */
void pvg_access_recommend_finish(pvg_access_rec_pending *const *p, size_t n,
                                 pvg_scored_item *const *outs, pvg_access_rec_answer *ans,
                                 pvg_status *st, pvg_error *errs);

/* Frees a pending whose answer is not wanted (nothing is computed); NULL
 * is a no-op. The writer must not call pvg_access_rec_committed on it
 * afterwards. */
void pvg_access_rec_pending_free(pvg_access_rec_pending *p);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
