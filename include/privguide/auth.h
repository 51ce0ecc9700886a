/*
 * privguide/auth.h - credentials of the HTTP API: operator API keys with a
 * role (admin, analyst) and per-user tokens that reach only that user's own
 * resources.
 *
 * A credential is shown once, at creation, as "pvgk_<id>_<secret>" (API
 * key) or "pvgt_<id>_<secret>" (user token): <id> is 16 hex digits naming
 * the row, <secret> 43 base64url characters (32 random bytes). The store
 * keeps only BLAKE2b-256 of the secret keyed by a fixed domain string (the
 * secrets are full-entropy, so no password hash is needed), compared in
 * constant time. A user token is bound to the user's pseudonym: the
 * external id is never stored. Tables auth_keys in privguide.db.
 */
#ifndef PRIVGUIDE_AUTH_H
#define PRIVGUIDE_AUTH_H

#include <privguide/common.h>
#include <privguide/store.h>

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default) /* the API; everything else is hidden */

typedef enum pvg_role {
    PVG_ROLE_NONE = 0,    /* unauthenticated */
    PVG_ROLE_ADMIN = 1,   /* operator: everything */
    PVG_ROLE_ANALYST = 2, /* operator: aggregates, metrics, item lists; no personal data */
    PVG_ROLE_USER = 3     /* a shopper: their own resources only */
} pvg_role;

/* "none", "admin", "analyst", "user". Static string. */
const char *pvg_role_name(pvg_role r);
/* Parses "admin" or "analyst" (the roles an API key may have). PVG_OK or
 * PVG_ERR_INVALID. */
pvg_status pvg_role_parse_operator(const char *name, pvg_role *out) PVG_WARN_UNUSED;

#define PVG_AUTH_ID_HEX 16
#define PVG_AUTH_SECRET_MAX 96 /* longest credential string, with NUL */

/* Who a valid credential belongs to. */
typedef struct pvg_principal {
    pvg_role role;
    char key_id[PVG_AUTH_ID_HEX + 1];
    unsigned char pseudonym[PVG_PSEUDONYM_BYTES]; /* PVG_ROLE_USER only */
    double rate_per_s;                            /* allowed requests per second; 0: unlimited */
    int64_t expires_at;                           /* 0: never */
} pvg_principal;

/* Creates an operator API key with `role` (admin or analyst), a free label
 * (may be NULL) and a rate limit in requests per second (0: unlimited).
 * On success *credential_out is new secure memory (sodium_malloc) holding
 * the NUL-terminated credential; free it with pvg_auth_credential_free.
 * *principal_out (may be NULL) describes the key. Errors: PVG_ERR_INVALID,
 * PVG_ERR_BUSY, PVG_ERR_IO, PVG_ERR_NOMEM. */
pvg_status pvg_auth_apikey_create(pvg_store *s, pvg_role role, const char *label, double rate_per_s,
                                  char **credential_out, pvg_principal *principal_out,
                                  pvg_error *err) PVG_WARN_UNUSED;

/* As pvg_auth_apikey_create, for a key that expires ttl_seconds after
 * pvg_store_now() (1 second to 10 years; 0: never). The server refuses it
 * from then on with 401 naming the expiry. */
pvg_status pvg_auth_apikey_create_ttl(pvg_store *s, pvg_role role, const char *label,
                                      double rate_per_s, int64_t ttl_seconds, char **credential_out,
                                      pvg_principal *principal_out, pvg_error *err) PVG_WARN_UNUSED;

/* What is known of an API key (never its secret). */
typedef struct pvg_auth_key_info {
    char key_id[PVG_AUTH_ID_HEX + 1];
    pvg_role role;
    const char *label; /* borrowed for the call; "" when none */
    double rate_per_s;
    int64_t created_at;
    int64_t expires_at; /* 0: never */
    int revoked;
    int expired; /* expires_at reached at pvg_store_now() */
} pvg_auth_key_info;

/* Calls fn for every API key (user tokens are not listed), oldest first,
 * revoked and expired ones included. fn returns non-zero to stop
 * (PVG_ERR_ABORTED). Errors: PVG_ERR_IO. */
pvg_status pvg_auth_apikey_foreach(pvg_store *s, int (*fn)(void *ctx, const pvg_auth_key_info *k),
                                   void *ctx, pvg_error *err) PVG_WARN_UNUSED;

/* Issues a token for external user `ext_user`, valid for ttl_seconds (> 0)
 * from pvg_store_now(), limited to rate_per_s (0: unlimited). The user need
 * not exist yet; an erased one (suppression list) is refused with
 * PVG_ERR_ERASED. Output as for pvg_auth_apikey_create. */
pvg_status pvg_auth_token_issue(pvg_store *s, const char *ext_user, int64_t ttl_seconds,
                                double rate_per_s, char **credential_out,
                                pvg_principal *principal_out, pvg_error *err) PVG_WARN_UNUSED;

/* Wipes and frees a credential returned above. NULL ok. */
void pvg_auth_credential_free(char *credential);

/* Checks a presented credential (borrowed; any bytes). On success fills
 * *out. Errors: PVG_ERR_PERMISSION (malformed, unknown, wrong secret,
 * revoked or expired; err says which of malformed/unknown/expired/revoked
 * without revealing secrets), PVG_ERR_STATE (a valid credential that access
 * monitoring suspended: monitor.h, pvg_monitor_resume lifts it), PVG_ERR_IO.
 * Not thread-safe on one store. */
pvg_status pvg_auth_check(pvg_store *s, const char *credential, pvg_principal *out,
                          pvg_error *err) PVG_WARN_UNUSED;

/* 1 when principal p may act on external user ext_user's resources: an
 * admin always, a user token only for its own user, others never. */
int pvg_auth_may_access_user(const pvg_store *s, const pvg_principal *p, const char *ext_user);

/* Revokes one credential by id. PVG_ERR_NOT_FOUND when unknown. */
pvg_status pvg_auth_revoke(pvg_store *s, const char *key_id, pvg_error *err) PVG_WARN_UNUSED;

/* Revokes every token of a user (after erasure). *n_out (may be NULL) gets
 * how many were revoked. */
pvg_status pvg_auth_revoke_user(pvg_store *s, const unsigned char pseudonym[PVG_PSEUDONYM_BYTES],
                                long long *n_out, pvg_error *err) PVG_WARN_UNUSED;

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
