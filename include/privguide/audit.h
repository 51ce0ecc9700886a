/*
 * privguide/audit.h - the hash-chained audit log of accesses to personal
 * data (exports, deletions, consent changes, personalised recommendations,
 * differentially private releases).
 *
 * The log lives in the store's database (privguide.db, table audit_log).
 * Each entry records when, who (the actor: an API key id, a token id or
 * "cli"), what (the action), about whom (the subject: a user pseudonym in
 * hex, never an external id) and a short detail text. Entries are chained:
 *   hash = BLAKE2b-256("pvg-audit-v1" || prev_hash || ts (8 bytes, LE) ||
 *                      len||actor || len||action || len||subject || len||detail)
 * where prev_hash is the previous entry's hash (32 zero bytes for the first)
 * and len is a 4-byte little-endian length. Editing an entry breaks its own
 * hash; removing or reordering entries breaks the link of the next entry.
 * Truncating the tail cannot be seen from the log alone: keep the head hash
 * printed by pvg_audit_verify somewhere else and compare it later.
 *
 * Appends run in a BEGIN IMMEDIATE transaction that reads the current head
 * and inserts after it, so several processes appending to one data dir keep
 * one chain.
 */
#ifndef PRIVGUIDE_AUDIT_H
#define PRIVGUIDE_AUDIT_H

#include <privguide/common.h>
#include <privguide/store.h>

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default) /* the API; everything else is hidden */

#define PVG_AUDIT_HASH_BYTES 32
#define PVG_AUDIT_FIELD_MAX 1024 /* longest actor/action/subject/detail accepted */

/* One entry to append. Strings are borrowed; subject and detail may be
 * NULL (stored as ""). ts 0 means pvg_store_now(). */
typedef struct pvg_audit_record {
    int64_t ts;
    const char *actor;
    const char *action;
    const char *subject;
    const char *detail;
} pvg_audit_record;

/* Appends one entry. *seq_out (may be NULL) gets its sequence number.
 * Errors: PVG_ERR_INVALID (missing actor/action, a field longer than
 * PVG_AUDIT_FIELD_MAX), PVG_ERR_BUSY, PVG_ERR_IO. Not thread-safe on one
 * store; safe across processes. */
pvg_status pvg_audit_append(pvg_store *s, const pvg_audit_record *rec, int64_t *seq_out,
                            pvg_error *err) PVG_WARN_UNUSED;

/* Appends n entries in one transaction (group commit), in array order.
 * All or nothing. Same errors as pvg_audit_append. */
pvg_status pvg_audit_append_many(pvg_store *s, const pvg_audit_record *recs, size_t n,
                                 pvg_error *err) PVG_WARN_UNUSED;

/* Writes the audit subject for an external user id: the hex of its
 * pseudonym (2*PVG_PSEUDONYM_BYTES chars + NUL) into out. */
void pvg_audit_subject_of_user(const pvg_store *s, const char *ext_user,
                               char out[2 * PVG_PSEUDONYM_BYTES + 1]);

/* A stored entry, as shown to pvg_audit_foreach (strings borrowed for the
 * call). */
typedef struct pvg_audit_entry {
    int64_t seq;
    int64_t ts;
    const char *actor, *action, *subject, *detail;
    unsigned char prev_hash[PVG_AUDIT_HASH_BYTES];
    unsigned char hash[PVG_AUDIT_HASH_BYTES];
} pvg_audit_entry;

/* Calls fn for every entry with seq >= from_seq in seq order (at most
 * `limit` entries when limit > 0). fn returns 0 to go on, non-zero to stop
 * (PVG_ERR_ABORTED). Errors: PVG_ERR_IO. */
pvg_status pvg_audit_foreach(pvg_store *s, int64_t from_seq, long long limit,
                             int (*fn)(void *ctx, const pvg_audit_entry *e), void *ctx,
                             pvg_error *err);

typedef enum pvg_audit_problem_kind {
    PVG_AUDIT_EDITED = 1,    /* an entry's content does not match its own hash */
    PVG_AUDIT_REMOVED = 2,   /* entries are missing before this one */
    PVG_AUDIT_REORDERED = 3, /* this entry's predecessor in the chain is elsewhere */
    PVG_AUDIT_HEAD_MISMATCH = 4 /* the head differs from the expected head hash */
} pvg_audit_problem_kind;

#define PVG_AUDIT_MAX_PROBLEMS 16
typedef struct pvg_audit_problem {
    pvg_audit_problem_kind kind;
    int64_t seq;       /* the entry where the problem shows */
    int64_t other_seq; /* REORDERED: the entry whose hash this one links to;
                          REMOVED: the last intact entry before the gap (0: none) */
    char text[200];    /* one sentence saying what and where */
} pvg_audit_problem;

typedef struct pvg_audit_report {
    long long entries;     /* entries checked */
    int64_t first_seq, last_seq;
    char head_hex[2 * PVG_AUDIT_HASH_BYTES + 1]; /* hash of the last entry ("" if empty) */
    int n_problems;        /* problems found (the first PVG_AUDIT_MAX_PROBLEMS are kept) */
    long long problems_total;
    pvg_audit_problem problems[PVG_AUDIT_MAX_PROBLEMS];
} pvg_audit_report;

/* Checks the whole chain. expected_head_hex (may be NULL) is a head hash
 * kept from an earlier verify: the log must still contain that entry, which
 * detects truncation of the tail. Returns PVG_OK when the log is intact,
 * PVG_ERR_CORRUPT when a problem was found (rep lists them, each saying
 * which entry is edited, removed or reordered), PVG_ERR_IO on a read
 * error. rep must not be NULL. */
pvg_status pvg_audit_verify(pvg_store *s, const char *expected_head_hex, pvg_audit_report *rep,
                            pvg_error *err) PVG_WARN_UNUSED;

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
