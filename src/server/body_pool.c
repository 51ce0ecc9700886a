/*
 * body_pool.c - the request bodies' buffers of more than 64 KiB (the
 * federated clients' masked inputs, 2.6 MB each at 20,000 items and 32
 * factors) are kept for the next request instead of being freed: a fresh
 * buffer of that size is 650 page faults and an munmap (with a TLB
 * shootdown across the server's threads) per message, with the copies of
 * its growth most of the server's CPU in a 20,000-item round on 2 cores
 * (bench/fl.c, docs/fl-protocol.md). The bytes a body wrote are wiped
 * before its buffer is kept, or freed to the heap (every body's, the small
 * ones' too), so no body waits in the pool or the heap for the next
 * request (what lies past them is heap memory as malloc gives it, never
 * read: a body is read up to its length). A new buffer of more than
 * 1 MiB is a mapping of its own, 2 MiB-aligned and advised to the kernel as
 * huge pages: a burst of bodies beyond the pool then costs a few faults each.
 * Such a mapping grows with mremap (pvg_srv_body_grow): its pages move, its
 * bytes are not copied, and what the server maps for a body stays within
 * twice the bytes received (a declared length is never mapped ahead of the
 * bytes: anyone may declare one, before any credential).
 */
#define _GNU_SOURCE /* mremap */
#include "server/server_internal.h"

#include <sodium.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>

/* The bytes of the mapping of a buffer of cap bytes (more than
 * PVG_SRV_BODY_HUGE_MIN): whole 4 KiB pages. */
static size_t map_len(size_t cap)
{
    return (cap + 4095) & ~(size_t)4095;
}

void pvg_srv_body_release(char *b, size_t cap)
{
    if (!b) return;
    if (cap > PVG_SRV_BODY_HUGE_MIN)
        munmap(b, map_len(cap));
    else
        free(b);
}

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
        pvg_srv_body_release(p->buf[i], p->cap[i]); /* wiped when kept */
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
    if (cap <= PVG_SRV_BODY_HUGE_MIN) return NULL;
    const size_t huge = (size_t)2 << 20;
    size_t len = map_len(cap);
    if (len < cap || len > SIZE_MAX - huge) return NULL;
    /* address space of len + 2 MiB, trimmed to len from a 2 MiB boundary */
    char *p = mmap(NULL, len + huge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return NULL;
    char *a = (char *)(((uintptr_t)p + huge - 1) & ~(uintptr_t)(huge - 1));
    if (a > p) munmap(p, (size_t)(a - p));
    char *end = p + len + huge;
    if (end > a + len) munmap(a + len, (size_t)(end - (a + len)));
#ifdef MADV_HUGEPAGE
    (void)madvise(a, len, MADV_HUGEPAGE); /* advice: 4 KiB pages where it is not taken */
#endif
    return a;
}

char *pvg_srv_body_grow(char *b, size_t cap, size_t new_cap)
{
    if (!b || cap <= PVG_SRV_BODY_HUGE_MIN || new_cap <= cap) return NULL;
    size_t ol = map_len(cap), nl = map_len(new_cap);
    if (nl < new_cap) return NULL;
    void *q = mremap(b, ol, nl, MREMAP_MAYMOVE);
    if (q == MAP_FAILED) return NULL;
#ifdef MADV_HUGEPAGE
    (void)madvise(q, nl, MADV_HUGEPAGE);
#endif
    return q;
}

void pvg_srv_body_give(pvg_server *srv, char *b, size_t cap, size_t used)
{
    if (!b) return;
    pvg_srv_body_pool *p = &srv->bodies;
    int keep = p->init && cap >= PVG_SRV_BODY_POOL_MIN && cap <= srv->opt.max_body_bytes + 1;
    /* the bytes a body wrote are wiped before its buffer is kept or goes
     * back to the heap (a mapping's pages go back to the kernel, which
     * zeroes them before any reuse) */
    if (keep || cap <= PVG_SRV_BODY_HUGE_MIN) sodium_memzero(b, used < cap ? used : cap);
    if (!keep) {
        pvg_srv_body_release(b, cap);
        return;
    }
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
            size_t tc = p->cap[small];
            p->bytes = p->bytes - p->cap[small] + cap;
            p->buf[small] = b;
            p->cap[small] = cap;
            b = t;
            cap = tc;
        }
    }
    pthread_mutex_unlock(&p->mu);
    pvg_srv_body_release(b, cap);
}
