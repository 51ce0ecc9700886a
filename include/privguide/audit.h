/*
 * privguide/audit.h - the hash-chained audit log of accesses to personal
 * data (exports, deletions, consent changes, personalised recommendations,
 * differentially private releases).
 *
 * The log lives in the store's database (privguide.db, table audit_log).
 * Each entry records when, who (the actor: an API key id, a token id or
 * "cli"), what (the action), about whom (the subject: a user pseudonym in
 * hex, never an external id) and a short detail text. Entries are chained
 * by a MAC:
 *   mac = BLAKE2b-256(key = K, "pvg-audit-v2" || prev_mac || ts (8 bytes,
 *                     LE) || len||actor || len||action || len||subject ||
 *                     len||detail)
 * where prev_mac is the previous entry's MAC (32 zero bytes for the first),
 * len is a 4-byte little-endian length and K = BLAKE2b-256(key = pepper,
 * "pvg-audit-mac-v2") comes from the key file, which is never in the data
 * dir. Editing an entry breaks its own MAC; removing or reordering entries
 * breaks the link of the next entry; and since only a holder of the key file
 * can compute MACs, deleting entries and re-chaining the rest is detected as
 * well. Truncating the tail cannot be seen from the log alone: anchor the
 * head (pvg_audit_head, `privguide audit head`) somewhere else and pass it
 * to pvg_audit_verify later.
 *
 * Logs written before the keys moved out of the data dir were chained
 * without a key (the same formula, unkeyed, with "pvg-audit-v1"). `privguide
 * keys move` records in the key file the last such entry (seq and hash);
 * verify accepts unkeyed entries up to it (counted in `unkeyed`), checks
 * that entry is still there unchanged, and requires a MAC on every later
 * entry.
 *
 * Appends run in a write transaction that reads the current head and
 * inserts after it, so several processes appending to one data dir keep one
 * chain.
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
                             pvg_error *err) PVG_WARN_UNUSED;

/* Calls fn for every entry whose subject is `subject` (borrowed; e.g. from
 * pvg_audit_subject_of_user) in seq order, read through the log's index by
 * subject: the cost follows that subject's entries, not the length of the
 * log. fn as for pvg_audit_foreach. Errors: PVG_ERR_INVALID (NULL
 * argument), PVG_ERR_IO. */
pvg_status pvg_audit_foreach_subject(pvg_store *s, const char *subject,
                                     int (*fn)(void *ctx, const pvg_audit_entry *e), void *ctx,
                                     pvg_error *err) PVG_WARN_UNUSED;

typedef enum pvg_audit_problem_kind {
    PVG_AUDIT_EDITED = 1,        /* an entry's content does not match its own hash */
    PVG_AUDIT_REMOVED = 2,       /* entries are missing before this one */
    PVG_AUDIT_REORDERED = 3,     /* this entry's predecessor in the chain is elsewhere */
    PVG_AUDIT_HEAD_MISMATCH = 4, /* the anchored head is not in the log (truncated or edited) */
    PVG_AUDIT_UNKEYED = 5        /* an entry after the unkeyed part has no valid MAC but an
                                    unkeyed hash: written or re-chained without the key */
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
    long long entries; /* entries checked */
    int64_t first_seq, last_seq;
    char head_hex[2 * PVG_AUDIT_HASH_BYTES + 1]; /* MAC of the last entry ("" if empty) */
    long long unkeyed;    /* entries accepted with an unkeyed hash (older logs, see above) */
    int64_t unkeyed_upto; /* the last entry that may be unkeyed (0: none) */
    int n_problems;       /* problems found (the first PVG_AUDIT_MAX_PROBLEMS are kept) */
    long long problems_total;
    pvg_audit_problem problems[PVG_AUDIT_MAX_PROBLEMS];
} pvg_audit_report;

/* Checks the whole chain. anchor (may be NULL) is a head kept from an
 * earlier pvg_audit_head or verify: "SEQ:MAC" (the anchor form) or just the
 * MAC in hex; the log must still hold that entry (at that seq), which
 * detects truncation of the tail. Returns PVG_OK when the log is intact,
 * PVG_ERR_CORRUPT when a problem was found (rep lists them, each saying
 * which entry is edited, removed, reordered or unkeyed), PVG_ERR_INVALID (a
 * malformed anchor), PVG_ERR_IO on a read error. rep must not be NULL. */
pvg_status pvg_audit_verify(pvg_store *s, const char *anchor, pvg_audit_report *rep,
                            pvg_error *err) PVG_WARN_UNUSED;

/* The head of the log, for anchoring elsewhere (a ticket, a log server,
 * another machine). */
typedef struct pvg_audit_head_info {
    int64_t seq; /* 0 when the log is empty */
    int64_t ts;
    char mac_hex[2 * PVG_AUDIT_HASH_BYTES + 1];
    char anchor[2 * PVG_AUDIT_HASH_BYTES + 24]; /* "SEQ:MAC", what pvg_audit_verify takes */
    int keyed; /* 1 when the head's MAC verifies under this store's key */
} pvg_audit_head_info;

/* Fills *out with the last entry of the log (seq 0 and empty strings when
 * the log is empty). Does not check the chain (pvg_audit_verify does).
 * Errors: PVG_ERR_INVALID (NULL argument), PVG_ERR_IO. */
pvg_status pvg_audit_head(pvg_store *s, pvg_audit_head_info *out, pvg_error *err) PVG_WARN_UNUSED;

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
