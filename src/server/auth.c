/*
 * auth.c - API keys and user tokens (include/privguide/auth.h): creation,
 * hashed storage in table auth_keys, constant-time checks, revocation.
 */
#include <privguide/auth.h>
#include <privguide/monitor.h>

#include "store/store_internal.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define SECRET_BYTES 32
#define SECRET_B64 43 /* base64url, no padding, of 32 bytes */
#define HASH_BYTES 32

const char *pvg_role_name(pvg_role r)
{
    switch (r) {
    case PVG_ROLE_ADMIN:
        return "admin";
    case PVG_ROLE_ANALYST:
        return "analyst";
    case PVG_ROLE_USER:
        return "user";
    default:
        return "none";
    }
}

pvg_status pvg_role_parse_operator(const char *name, pvg_role *out)
{
    if (name && strcmp(name, "admin") == 0)
        *out = PVG_ROLE_ADMIN;
    else if (name && strcmp(name, "analyst") == 0)
        *out = PVG_ROLE_ANALYST;
    else
        return PVG_ERR_INVALID;
    return PVG_OK;
}

static pvg_role role_from_text(const char *t)
{
    if (!t) return PVG_ROLE_NONE;
    if (strcmp(t, "admin") == 0) return PVG_ROLE_ADMIN;
    if (strcmp(t, "analyst") == 0) return PVG_ROLE_ANALYST;
    if (strcmp(t, "user") == 0) return PVG_ROLE_USER;
    return PVG_ROLE_NONE;
}

/* hash = BLAKE2b-256 keyed by the domain string, of the secret text. */
static void secret_hash(const char *secret, size_t len, unsigned char out[HASH_BYTES])
{
    static const unsigned char domain[32] = "privguide-auth-secret-v1";
    crypto_generichash(out, HASH_BYTES, (const unsigned char *)secret, len, domain, sizeof domain);
}

void pvg_auth_credential_free(char *credential)
{
    if (credential) sodium_free(credential); /* sodium_free wipes before freeing */
}

static pvg_status create_cred(pvg_store *s, const char *kind, pvg_role role, const char *label,
                              const unsigned char *pseudonym, double rate, int64_t expires_at,
                              char **out, pvg_principal *p, pvg_error *err)
{
    if (!s || !out) return pvg_error_set(err, PVG_ERR_INVALID, "credential: NULL argument");
    *out = NULL;
    if (!(rate >= 0) || rate > 1e9)
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "rate: want 0 (unlimited) or a positive number "
                             "of requests per second");
    if (label && strlen(label) > 200)
        return pvg_error_set(err, PVG_ERR_INVALID, "label: longer than 200 bytes");
    unsigned char idb[PVG_AUTH_ID_HEX / 2];
    char id[PVG_AUTH_ID_HEX + 1];
    randombytes_buf(idb, sizeof idb);
    sodium_bin2hex(id, sizeof id, idb, sizeof idb);

    char *cred = sodium_malloc(PVG_AUTH_SECRET_MAX);
    unsigned char *raw = sodium_malloc(SECRET_BYTES);
    if (!cred || !raw) {
        if (cred) sodium_free(cred);
        if (raw) sodium_free(raw);
        return pvg_error_set(err, PVG_ERR_NOMEM, "credential: out of secure memory");
    }
    randombytes_buf(raw, SECRET_BYTES);
    int n = snprintf(cred, PVG_AUTH_SECRET_MAX, "%s_%s_",
                     strcmp(kind, "key") == 0 ? "pvgk" : "pvgt", id);
    sodium_bin2base64(cred + n, PVG_AUTH_SECRET_MAX - (size_t)n, raw, SECRET_BYTES,
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    sodium_free(raw);
    unsigned char h[HASH_BYTES];
    secret_hash(cred, strlen(cred), h);

    pvg_backend_cred c;
    memset(&c, 0, sizeof c);
    snprintf(c.key_id, sizeof c.key_id, "%s", id);
    snprintf(c.kind, sizeof c.kind, "%s", kind);
    snprintf(c.role, sizeof c.role, "%s", pvg_role_name(role));
    c.label = label ? label : "";
    c.has_pseudonym = pseudonym != NULL;
    if (pseudonym) memcpy(c.pseudonym, pseudonym, PVG_PSEUDONYM_BYTES);
    memcpy(c.secret_hash, h, HASH_BYTES);
    c.secret_hash_len = HASH_BYTES;
    c.rate_per_s = rate;
    c.created_at = pvg_store_now(s);
    c.expires_at = expires_at;
    pvg_backend *b = pvg_store_backend(s);
    pvg_status st = b->ops->cred_insert(b, &c, err);
    sodium_memzero(h, sizeof h);
    sodium_memzero(c.secret_hash, sizeof c.secret_hash);
    if (st != PVG_OK) {
        sodium_free(cred);
        return st;
    }
    if (p) {
        memset(p, 0, sizeof *p);
        p->role = role;
        memcpy(p->key_id, id, sizeof p->key_id);
        if (pseudonym) memcpy(p->pseudonym, pseudonym, PVG_PSEUDONYM_BYTES);
        p->rate_per_s = rate;
        p->expires_at = expires_at;
    }
    *out = cred;
    return PVG_OK;
}

pvg_status pvg_auth_apikey_create(pvg_store *s, pvg_role role, const char *label, double rate_per_s,
                                  char **credential_out, pvg_principal *principal_out,
                                  pvg_error *err)
{
    return pvg_auth_apikey_create_ttl(s, role, label, rate_per_s, 0, credential_out, principal_out,
                                      err);
}

pvg_status pvg_auth_apikey_create_ttl(pvg_store *s, pvg_role role, const char *label,
                                      double rate_per_s, int64_t ttl_seconds, char **credential_out,
                                      pvg_principal *principal_out, pvg_error *err)
{
    if (role != PVG_ROLE_ADMIN && role != PVG_ROLE_ANALYST)
        return pvg_error_set(err, PVG_ERR_INVALID, "role: want admin or analyst");
    if (ttl_seconds < 0 || ttl_seconds > 10LL * 366 * 86400)
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "expiry: want 1 second to 10 years (or 0: never), got %lld s",
                             (long long)ttl_seconds);
    int64_t exp = ttl_seconds && s ? pvg_store_now(s) + ttl_seconds : 0;
    return create_cred(s, "key", role, label, NULL, rate_per_s, exp, credential_out, principal_out,
                       err);
}

typedef struct key_list_ctx {
    int (*fn)(void *ctx, const pvg_auth_key_info *k);
    void *ctx;
    int64_t now;
} key_list_ctx;

static int key_list_one(void *ctx, const pvg_backend_cred *c)
{
    key_list_ctx *x = ctx;
    if (strcmp(c->kind, "key") != 0) return 0; /* API keys only, not shopper tokens */
    pvg_auth_key_info k;
    memset(&k, 0, sizeof k);
    snprintf(k.key_id, sizeof k.key_id, "%.16s", c->key_id);
    k.role = role_from_text(c->role);
    k.label = c->label ? c->label : "";
    k.rate_per_s = c->rate_per_s;
    k.created_at = c->created_at;
    k.expires_at = c->expires_at;
    k.revoked = c->revoked != 0;
    k.expired = c->expires_at && x->now >= c->expires_at;
    return x->fn(x->ctx, &k);
}

pvg_status pvg_auth_apikey_foreach(pvg_store *s, int (*fn)(void *ctx, const pvg_auth_key_info *k),
                                   void *ctx, pvg_error *err)
{
    if (!s || !fn) return pvg_error_set(err, PVG_ERR_INVALID, "apikey list: NULL argument");
    key_list_ctx x = {fn, ctx, pvg_store_now(s)};
    pvg_backend *b = pvg_store_backend(s);
    return b->ops->creds_foreach(b, key_list_one, &x, err);
}

pvg_status pvg_auth_token_issue(pvg_store *s, const char *ext_user, int64_t ttl_seconds,
                                double rate_per_s, char **credential_out,
                                pvg_principal *principal_out, pvg_error *err)
{
    if (!s || !ext_user || !ext_user[0])
        return pvg_error_set(err, PVG_ERR_INVALID, "user: an external user id is required");
    if (ttl_seconds <= 0 || ttl_seconds > 10LL * 366 * 86400)
        return pvg_error_set(err, PVG_ERR_INVALID, "ttl: want 1 second to 10 years, got %lld",
                             (long long)ttl_seconds);
    int gone = 0; /* an erased shopper gets no token: nothing of theirs may be recorded */
    pvg_status sst = pvg_store_user_suppressed(s, ext_user, &gone, err);
    if (sst != PVG_OK) return sst;
    if (gone)
        return pvg_error_set(err, PVG_ERR_ERASED,
                             "token: the user was erased at their request (suppression list)");
    unsigned char ps[PVG_PSEUDONYM_BYTES];
    pvg_store_pseudonym(s, ext_user, ps);
    return create_cred(s, "token", PVG_ROLE_USER, NULL, ps, rate_per_s,
                       pvg_store_now(s) + ttl_seconds, credential_out, principal_out, err);
}

static int is_hex(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'a' && p[i] <= 'f'))) return 0;
    return 1;
}

/* The reads of pvg_auth_check, in one snapshot (pvg_store_read_retry may
 * run them again): the credential's row and whether it is suspended. */
struct cred_reads {
    const char *id;
    pvg_backend_cred *c;
    int suspended; /* out */
    char *why;
    size_t why_len;
};

static pvg_status cred_reads_run(pvg_store *s, void *ctx, pvg_error *err)
{
    struct cred_reads *r = ctx;
    r->suspended = 0;
    pvg_backend *b = pvg_store_backend(s);
    pvg_status st = b->ops->cred_get(b, r->id, r->c, err);
    if (st == PVG_OK)
        st = pvg_monitor_is_suspended(s, r->id, &r->suspended, r->why, r->why_len, err);
    return st;
}

pvg_status pvg_auth_check(pvg_store *s, const char *cred, pvg_principal *out, pvg_error *err)
{
    if (!s || !out) return pvg_error_set(err, PVG_ERR_INVALID, "auth check: NULL argument");
    memset(out, 0, sizeof *out);
    if (!cred) return pvg_error_set(err, PVG_ERR_PERMISSION, "no credential");
    size_t len = strnlen(cred, PVG_AUTH_SECRET_MAX);
    const size_t want = 5 + PVG_AUTH_ID_HEX + 1 + SECRET_B64;
    if (len != want || (strncmp(cred, "pvgk_", 5) != 0 && strncmp(cred, "pvgt_", 5) != 0) ||
        !is_hex(cred + 5, PVG_AUTH_ID_HEX) || cred[5 + PVG_AUTH_ID_HEX] != '_')
        return pvg_error_set(
            err, PVG_ERR_PERMISSION,
            "malformed credential (want pvgk_<id>_<secret> or pvgt_<id>_<secret>)");
    char id[PVG_AUTH_ID_HEX + 1];
    memcpy(id, cred + 5, PVG_AUTH_ID_HEX);
    id[PVG_AUTH_ID_HEX] = 0;
    const char *want_kind = cred[3] == 'k' ? "key" : "token";

    /* the credential and its suspension from one snapshot of the store
     * (which may answer from its memo while neither was written; a
     * snapshot the store saw change between its two reads answers busy and
     * is read again); the suspension is access monitoring's (monitor.h),
     * kept in the store for every process */
    pvg_backend_cred c;
    memset(&c, 0, sizeof c);
    char why[200];
    struct cred_reads r = {id, &c, 0, why, sizeof why};
    pvg_status st = pvg_store_read_retry(s, cred_reads_run, &r, err);
    int suspended = r.suspended;
    if (st != PVG_OK) sodium_memzero(c.secret_hash, sizeof c.secret_hash);
    if (st == PVG_ERR_NOT_FOUND)
        return pvg_error_set(err, PVG_ERR_PERMISSION, "unknown credential");
    if (st != PVG_OK) return st;
    unsigned char h[HASH_BYTES];
    secret_hash(cred, len, h);
    int ok = c.secret_hash_len == HASH_BYTES && sodium_memcmp(h, c.secret_hash, HASH_BYTES) == 0;
    sodium_memzero(h, sizeof h);
    sodium_memzero(c.secret_hash, sizeof c.secret_hash);
    ok = ok && strcmp(c.kind, want_kind) == 0;
    if (!ok) return pvg_error_set(err, PVG_ERR_PERMISSION, "unknown credential");
    if (c.revoked) return pvg_error_set(err, PVG_ERR_PERMISSION, "credential revoked");
    if (suspended)
        return pvg_error_set(err, PVG_ERR_STATE,
                             "credential %s is suspended (%s); an admin may resume it "
                             "(privguide monitor resume %s)",
                             id, why, id);
    int64_t exp = c.expires_at;
    if (exp && pvg_store_now(s) >= exp) {
        char when[32] = "?";
        time_t t = (time_t)exp;
        struct tm tm;
        if (gmtime_r(&t, &tm)) strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
        return pvg_error_set(err, PVG_ERR_PERMISSION, "credential expired at %s (id %s): %s", when,
                             id,
                             cred[3] == 'k' ? "create a new API key (privguide apikey create)"
                                            : "ask for a new token");
    }
    out->role = role_from_text(c.role);
    memcpy(out->key_id, id, sizeof out->key_id);
    if (c.has_pseudonym) memcpy(out->pseudonym, c.pseudonym, PVG_PSEUDONYM_BYTES);
    out->rate_per_s = c.rate_per_s;
    out->expires_at = exp;
    if (out->role == PVG_ROLE_NONE)
        return pvg_error_set(err, PVG_ERR_PERMISSION, "credential has no valid role");
    return PVG_OK;
}

int pvg_auth_may_access_user(const pvg_store *s, const pvg_principal *p, const char *ext_user)
{
    if (!p || !ext_user) return 0;
    if (p->role == PVG_ROLE_ADMIN) return 1;
    if (p->role != PVG_ROLE_USER) return 0;
    unsigned char ps[PVG_PSEUDONYM_BYTES];
    pvg_store_pseudonym(s, ext_user, ps);
    return sodium_memcmp(ps, p->pseudonym, PVG_PSEUDONYM_BYTES) == 0;
}

pvg_status pvg_auth_revoke(pvg_store *s, const char *key_id, pvg_error *err)
{
    if (!s || !key_id) return pvg_error_set(err, PVG_ERR_INVALID, "revoke: NULL argument");
    pvg_backend *b = pvg_store_backend(s);
    long long n = 0;
    pvg_status st = b->ops->cred_revoke(b, key_id, &n, err);
    if (st != PVG_OK) return st;
    if (n == 0) return pvg_error_set(err, PVG_ERR_NOT_FOUND, "no credential with id %.20s", key_id);
    return PVG_OK;
}

pvg_status pvg_auth_revoke_user(pvg_store *s, const unsigned char pseudonym[PVG_PSEUDONYM_BYTES],
                                long long *n_out, pvg_error *err)
{
    if (n_out) *n_out = 0;
    pvg_backend *b = pvg_store_backend(s);
    long long n = 0;
    pvg_status st = b->ops->cred_revoke_user(b, pseudonym, &n, err);
    if (st == PVG_OK && n_out) *n_out = n;
    return st;
}
