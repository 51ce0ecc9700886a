/*
 * body_pool.c - the request bodies' buffers of more than 64 KiB (the
 * federated clients' masked inputs, 2.6 MB each at 20,000 items and 32
 * factors) are kept for the next request instead of being freed: a fresh
 * buffer of that size is 650 page faults and an munmap (with a TLB
 * shootdown across the server's threads) per message, with the copies of
 * its growth most of the server's CPU in a 20,000-item round on 2 cores
 * (bench/fl.c, docs/fl-protocol.md). The bytes a body wrote are wiped
 * before its buffer is kept, so no body waits in the pool for the next
 * request (what lies past them is heap memory as malloc gives it, never
 * read: a body is read up to its length). A new buffer of
 * 1 MiB or more is advised to the kernel as huge pages (sa_big_alloc): a
 * burst of bodies beyond the pool then costs a few faults each.
 */
#include "crypto/secagg_internal.h"
#include "server/server_internal.h"

#include <sodium.h>
#include <stdlib.h>

void pvg_srv_body_pool_init(pvg_server *srv)
{
    pvg_srv_body_pool *p = &srv->bodies;
    pthread_mutex_init(&p->mu, NULL);
    p->n = 0;
    p->bytes = 0;
    p->init = 1;
}

void pvg_srv_body_pool_free(pvg_server *srv)
{
    pvg_srv_body_pool *p = &srv->bodies;
    if (!p->init) return;
    for (int i = 0; i < p->n; i++)
        free(p->buf[i]); /* wiped when kept */
    p->n = 0;
    p->bytes = 0;
    pthread_mutex_destroy(&p->mu);
    p->init = 0;
}

char *pvg_srv_body_take(pvg_server *srv, size_t need, size_t *cap)
{
    pvg_srv_body_pool *p = &srv->bodies;
    if (!p->init || need < PVG_SRV_BODY_POOL_MIN) return NULL;
    char *b = NULL;
    pthread_mutex_lock(&p->mu);
    int best = -1;
    for (int i = 0; i < p->n; i++) /* the smallest that fits */
        if (p->cap[i] >= need && (best < 0 || p->cap[i] < p->cap[best])) best = i;
    if (best >= 0) {
        b = p->buf[best];
        *cap = p->cap[best];
        p->bytes -= p->cap[best];
        p->n--;
        p->buf[best] = p->buf[p->n];
        p->cap[best] = p->cap[p->n];
    }
    pthread_mutex_unlock(&p->mu);
    return b;
}

char *pvg_srv_body_new(size_t cap)
{
    return cap >= PVG_SRV_BODY_HUGE_MIN ? sa_big_alloc(cap) : NULL;
}

void pvg_srv_body_give(pvg_server *srv, char *b, size_t cap, size_t used)
{
    if (!b) return;
    pvg_srv_body_pool *p = &srv->bodies;
    if (!p->init || cap < PVG_SRV_BODY_POOL_MIN || cap > srv->opt.max_body_bytes + 1) {
        free(b);
        return;
    }
    sodium_memzero(b, used < cap ? used : cap);
    pthread_mutex_lock(&p->mu);
    if (p->n < PVG_SRV_BODY_POOL_MAX && p->bytes + cap <= PVG_SRV_BODY_POOL_BYTES) {
        p->buf[p->n] = b;
        p->cap[p->n] = cap;
        p->bytes += cap;
        p->n++;
        b = NULL;
    } else if (p->n > 0) { /* full: keep the larger of this one and the smallest kept */
        int small = 0;
        for (int i = 1; i < p->n; i++)
            if (p->cap[i] < p->cap[small]) small = i;
        if (p->cap[small] < cap && p->bytes - p->cap[small] + cap <= PVG_SRV_BODY_POOL_BYTES) {
            char *t = p->buf[small];
            p->bytes = p->bytes - p->cap[small] + cap;
            p->buf[small] = b;
            p->cap[small] = cap;
            b = t;
        }
    }
    pthread_mutex_unlock(&p->mu);
    free(b);
}
