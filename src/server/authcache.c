/*
 * authcache.c - a short-lived cache of credential checks for the server:
 * key id -> (BLAKE2b of the whole credential, principal, valid-until). A
 * hit needs the same credential (constant-time comparison) within the TTL
 * (1 s) and before the credential's own expiry, so a revocation made by
 * another process takes effect within the TTL; the server clears the cache
 * itself when it erases a user.
 */
#include "server/server_internal.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SLOTS 16384 /* a power of two: 16 times the credentials the bench cycles through */
#define WINDOW 16   /* slots probed from a credential's home slot */

typedef struct entry {
    int used;
    char key_id[PVG_AUTH_ID_HEX + 1];
    unsigned char h[32];
    pvg_principal p;
    double until;
} entry;

struct pvg_srv_authcache {
    pthread_mutex_t mu;
    double ttl;
    uint64_t generation; /* bumped by every clear: a store check that began
                            before a clear (a revocation, erasure or
                            suspension) is not written back after it */
    entry slots[SLOTS];
};

pvg_srv_authcache *pvg_srv_authcache_new(double ttl_s)
{
    pvg_srv_authcache *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    pthread_mutex_init(&c->mu, NULL);
    c->ttl = ttl_s;
    return c;
}

void pvg_srv_authcache_free(pvg_srv_authcache *c)
{
    if (!c) return;
    pthread_mutex_destroy(&c->mu);
    sodium_memzero(c, sizeof *c);
    free(c);
}

void pvg_srv_authcache_clear(pvg_srv_authcache *c)
{
    if (!c) return;
    pthread_mutex_lock(&c->mu);
    sodium_memzero(c->slots, sizeof c->slots);
    c->generation++;
    pthread_mutex_unlock(&c->mu);
}

/* The home slot of a credential: the value of the first 8 hex digits of
 * its id (pvgk_/pvgt_<16 hex>, uniformly random). An entry lives in one of
 * the WINDOW slots from its home (open addressing), so credentials whose
 * homes collide do not evict each other. (The direct-mapped table before
 * took c & 0x0f of each digit, folding a-f onto 1-6, modulo 1,024: of the
 * bench's 1,000 shoppers 894 shared a slot and missed on every request.) */
static size_t home_of(const char *cred)
{
    uint32_t h = 0;
    for (int i = 5; i < 5 + 8 && cred[i]; i++) {
        char ch = cred[i];
        unsigned d = ch >= '0' && ch <= '9'   ? (unsigned)(ch - '0')
                     : ch >= 'a' && ch <= 'f' ? (unsigned)(ch - 'a' + 10)
                     : ch >= 'A' && ch <= 'F' ? (unsigned)(ch - 'A' + 10)
                                              : (unsigned char)ch;
        h = h * 16 + d;
    }
    return (size_t)((h * 2654435761u) >> 18) & (SLOTS - 1); /* 14 bits of a Fibonacci hash */
}

/* 1 when e holds the credential whose id starts cred + 5. */
static int id_is(const entry *e, const char *cred)
{
    return e->used && strncmp(e->key_id, cred + 5, PVG_AUTH_ID_HEX) == 0 &&
           cred[5 + PVG_AUTH_ID_HEX] == '_';
}

pvg_status pvg_srv_auth_check(pvg_server *srv, pvg_store *s, const char *cred, pvg_principal *out,
                              pvg_error *err)
{
    pvg_srv_authcache *c = srv->authcache;
    size_t len = cred ? strnlen(cred, PVG_AUTH_SECRET_MAX) : 0;
    if (!c || len < 5 + PVG_AUTH_ID_HEX + 1 || len >= PVG_AUTH_SECRET_MAX)
        return pvg_auth_check(s, cred, out, err);
    unsigned char h[32];
    crypto_generichash(h, sizeof h, (const unsigned char *)cred, len, NULL, 0);
    double now = pvg_srv_now();
    int64_t wall = (int64_t)time(NULL);
    size_t home = home_of(cred);
    pthread_mutex_lock(&c->mu);
    uint64_t gen = c->generation;
    for (size_t w = 0; w < WINDOW; w++) {
        entry *e = &c->slots[(home + w) & (SLOTS - 1)];
        if (!id_is(e, cred)) continue;
        if (now < e->until && sodium_memcmp(e->h, h, sizeof h) == 0 &&
            (e->p.expires_at == 0 || wall < e->p.expires_at)) {
            *out = e->p;
            pthread_mutex_unlock(&c->mu);
            sodium_memzero(h, sizeof h);
            return PVG_OK;
        }
        break; /* stale or another secret: checked in the store below */
    }
    pthread_mutex_unlock(&c->mu);
    pvg_status st = pvg_auth_check(s, cred, out, err);
    if (st != PVG_OK) {
        sodium_memzero(h, sizeof h);
        return st;
    }
    pthread_mutex_lock(&c->mu);
    if (c->generation != gen) { /* cleared meanwhile: the answer may predate it */
        pthread_mutex_unlock(&c->mu);
        sodium_memzero(h, sizeof h);
        return PVG_OK;
    }
    /* the credential's own slot, else a free or expired one, else the
     * window's oldest */
    entry *e = NULL;
    for (size_t w = 0; w < WINDOW && !e; w++) {
        entry *x = &c->slots[(home + w) & (SLOTS - 1)];
        if (id_is(x, cred)) e = x;
    }
    for (size_t w = 0; w < WINDOW && !e; w++) {
        entry *x = &c->slots[(home + w) & (SLOTS - 1)];
        if (!x->used || x->until <= now) e = x;
    }
    if (!e) {
        e = &c->slots[home];
        for (size_t w = 1; w < WINDOW; w++) {
            entry *x = &c->slots[(home + w) & (SLOTS - 1)];
            if (x->until < e->until) e = x;
        }
    }
    e->used = 1;
    memcpy(e->key_id, out->key_id, sizeof e->key_id);
    memcpy(e->h, h, sizeof h);
    e->p = *out;
    e->until = now + c->ttl;
    pthread_mutex_unlock(&c->mu);
    sodium_memzero(h, sizeof h);
    return PVG_OK;
}
