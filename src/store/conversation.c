/*
 * conversation.c - the assistant's conversations of identified shoppers
 * (privguide/store.h, "assistant conversations"): one row per conversation,
 * its state sealed under the shopper's data key.
 *
 * Sealed form: nonce[24] | XChaCha20-Poly1305(state text), associated data
 * "pvg-cv" | u8 1 | pseudonym[16] | conversation id[16] | i64 created_at |
 * i64 expires_day (little-endian): a row moved to another shopper or
 * conversation, or whose expiry was pushed back, fails authentication.
 */
#include "store/store_priv.h"

#include <stdlib.h>
#include <string.h>

#define CONV_AD_BYTES 55
#define CONV_STATE_MAX (1u << 20) /* a conversation's state text, at most */

int pvg_store_conversation_retention_days(const pvg_store *s)
{
    return s->policy.conversation_days > 0 ? s->policy.conversation_days : 30;
}

static void put_le(unsigned char *p, int64_t v)
{
    uint64_t u = (uint64_t)v;
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(u >> (8 * i));
}

static void conv_ad(const unsigned char p[16], const unsigned char cid[16], int64_t created_at,
                    int64_t expires_day, unsigned char ad[CONV_AD_BYTES])
{
    memcpy(ad, "pvg-cv", 6);
    ad[6] = 1;
    memcpy(ad + 7, p, 16);
    memcpy(ad + 23, cid, 16);
    put_le(ad + 39, created_at);
    put_le(ad + 47, expires_day);
}

static pvg_status parse_id(const char *id_hex, unsigned char cid[16], pvg_error *err)
{
    size_t bin_len = 0;
    if (!id_hex || strlen(id_hex) != 2 * PVG_CONVERSATION_ID_BYTES ||
        sodium_hex2bin(cid, 16, id_hex, strlen(id_hex), NULL, &bin_len, NULL) != 0 || bin_len != 16)
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "conversation: expected an id of 32 hexadecimal digits");
    return PVG_OK;
}

pvg_status pvg_store_conversation_put(pvg_store *s, const char *ext_user, const char *id_hex,
                                      int64_t created_at, const char *json, pvg_error *err)
{
    if (!ext_user || !*ext_user) return pvg_error_set(err, PVG_ERR_INVALID, "user: required");
    unsigned char cid[16];
    pvg_status st = parse_id(id_hex, cid, err);
    if (st != PVG_OK) return st;
    size_t n = json ? strlen(json) : 0;
    if (!n || n > CONV_STATE_MAX)
        return pvg_error_set(err, PVG_ERR_INVALID, "conversation: state of %zu bytes (1..%u)", n,
                             CONV_STATE_MAX);
    unsigned char *sealed = malloc(n + PVG_SEAL_OVERHEAD);
    if (!sealed) return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    int own = !s->in_txn;
    st = own ? pvg_store_begin(s, err) : PVG_OK;
    if (st != PVG_OK) {
        free(sealed);
        return st;
    }
    unsigned char p[16];
    pvg_store_pseudonym(s, ext_user, p);
    int gone = 0; /* inside the transaction: a concurrent erasure counts */
    st = PVG_B(s, suppress_has, p, &gone, err);
    if (st == PVG_OK && gone)
        st = pvg_error_set(err, PVG_ERR_ERASED,
                           "conversation: the user was erased (suppression list); nothing is "
                           "recorded about them");
    pvg_keycache_entry *u = NULL;
    if (st == PVG_OK) st = pvg_store_user_resolve(s, p, 1, &u, NULL, err);
    if (st == PVG_OK) {
        int64_t now = pvg_store_now(s);
        pvg_backend_conv c;
        memcpy(c.cid, cid, 16);
        c.created_at = created_at > 0 ? created_at : now;
        c.updated_at = now;
        c.expires_day = pvg_store_today(s) + pvg_store_conversation_retention_days(s);
        unsigned char ad[CONV_AD_BYTES];
        conv_ad(p, cid, c.created_at, c.expires_day, ad);
        pvg_rng_bytes(s->rng, sealed, crypto_aead_xchacha20poly1305_ietf_NPUBBYTES);
        crypto_aead_xchacha20poly1305_ietf_encrypt(
            sealed + crypto_aead_xchacha20poly1305_ietf_NPUBBYTES, NULL,
            (const unsigned char *)json, n, ad, sizeof ad, NULL, sealed, u->key);
        c.sealed = sealed;
        c.sealed_len = n + PVG_SEAL_OVERHEAD;
        st = PVG_B(s, conv_put, p, &c, err);
    }
    if (own) {
        if (st == PVG_OK)
            st = pvg_store_commit(s, err);
        else
            pvg_store_rollback(s);
    }
    free(sealed);
    return st;
}

typedef struct open_ctx {
    const unsigned char *p;
    const unsigned char *key;
    int64_t today;
    void (*fn)(void *ctx, const pvg_conversation_view *c);
    void *ctx;
    long long unreadable, expired, handed;
    pvg_status st;
} open_ctx;

static int open_one(void *vctx, const pvg_backend_conv *c)
{
    open_ctx *o = vctx;
    if (c->expires_day <= o->today) { /* the sweep has not run yet: gone all the same */
        o->expired++;
        return 0;
    }
    if (c->sealed_len < PVG_SEAL_OVERHEAD || c->sealed_len - PVG_SEAL_OVERHEAD > CONV_STATE_MAX) {
        o->unreadable++;
        return 0;
    }
    size_t n = c->sealed_len - PVG_SEAL_OVERHEAD;
    char *plain = malloc(n + 1);
    if (!plain) {
        o->st = PVG_ERR_NOMEM;
        return 1;
    }
    unsigned char ad[CONV_AD_BYTES];
    conv_ad(o->p, c->cid, c->created_at, c->expires_day, ad);
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(
            (unsigned char *)plain, NULL, NULL,
            c->sealed + crypto_aead_xchacha20poly1305_ietf_NPUBBYTES,
            c->sealed_len - crypto_aead_xchacha20poly1305_ietf_NPUBBYTES, ad, sizeof ad, c->sealed,
            o->key) != 0) {
        free(plain);
        o->unreadable++;
        return 0;
    }
    plain[n] = '\0';
    char hex[2 * PVG_CONVERSATION_ID_BYTES + 1];
    sodium_bin2hex(hex, sizeof hex, c->cid, 16);
    pvg_conversation_view v = {hex, c->created_at, c->updated_at, c->expires_day * 86400, plain};
    o->fn(o->ctx, &v);
    o->handed++;
    sodium_memzero(plain, n);
    free(plain);
    return 0;
}

/* The shopper's row and key (no user is created): PVG_ERR_NOT_FOUND when
 * unknown or shredded. */
static pvg_status user_key(pvg_store *s, const char *ext_user, unsigned char p[16],
                           pvg_keycache_entry **u, pvg_error *err)
{
    if (!ext_user || !*ext_user) return pvg_error_set(err, PVG_ERR_INVALID, "user: required");
    pvg_store_pseudonym(s, ext_user, p);
    pvg_status st = pvg_store_user_resolve(s, p, 0, u, NULL, err);
    if (st == PVG_ERR_NOT_FOUND)
        return pvg_error_set(err, PVG_ERR_NOT_FOUND, "unknown user: no conversation is held");
    return st;
}

pvg_status pvg_store_conversation_get(pvg_store *s, const char *ext_user, const char *id_hex,
                                      void (*fn)(void *ctx, const pvg_conversation_view *c),
                                      void *ctx, pvg_error *err)
{
    unsigned char cid[16], p[16];
    pvg_status st = parse_id(id_hex, cid, err);
    if (st != PVG_OK) return st;
    pvg_keycache_entry *u;
    if ((st = user_key(s, ext_user, p, &u, err)) != PVG_OK) return st;
    open_ctx o = {p, u->key, pvg_store_today(s), fn, ctx, 0, 0, 0, PVG_OK};
    st = PVG_B(s, conv_get, p, cid, open_one, &o, err);
    if (st == PVG_ERR_ABORTED) st = o.st;
    if (st != PVG_OK) {
        if (st == PVG_ERR_NOMEM) pvg_error_set(err, st, "out of memory");
        return st;
    }
    if (o.unreadable)
        return pvg_error_set(err, PVG_ERR_CRYPTO,
                             "conversation %s: fails authentication under the user's key", id_hex);
    if (!o.handed) return pvg_error_set(err, PVG_ERR_NOT_FOUND, "conversation %s: expired", id_hex);
    return PVG_OK;
}

pvg_status pvg_store_conversations_foreach(pvg_store *s, const char *ext_user,
                                           void (*fn)(void *ctx, const pvg_conversation_view *c),
                                           void *ctx, long long *unreadable, pvg_error *err)
{
    if (unreadable) *unreadable = 0;
    unsigned char p[16];
    pvg_keycache_entry *u;
    pvg_status st = user_key(s, ext_user, p, &u, err);
    if (st != PVG_OK) return st;
    open_ctx o = {p, u->key, pvg_store_today(s), fn, ctx, 0, 0, 0, PVG_OK};
    st = PVG_B(s, convs_foreach_user, p, open_one, &o, err);
    if (st == PVG_ERR_ABORTED) {
        st = o.st;
        if (st == PVG_ERR_NOMEM) pvg_error_set(err, st, "out of memory");
    }
    if (unreadable) *unreadable = o.unreadable;
    return st;
}
