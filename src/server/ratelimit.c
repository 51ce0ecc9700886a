/*
 * ratelimit.c - per-credential token buckets (capacity two seconds of the
 * credential's rate), kept in memory in an open hash table under a mutex.
 */
#include "server/server_internal.h"

#include <stdlib.h>
#include <string.h>

struct pvg_srv_bucket {
    char key[PVG_AUTH_ID_HEX + 1];
    double tokens;
    double last;
};

int pvg_srv_ratelimit_init(pvg_srv_ratelimit *rl)
{
    memset(rl, 0, sizeof *rl);
    pthread_mutex_init(&rl->mu, NULL);
    rl->cap = 256;
    rl->table = calloc(rl->cap, sizeof *rl->table);
    return rl->table ? 0 : -1;
}

void pvg_srv_ratelimit_free(pvg_srv_ratelimit *rl)
{
    if (!rl->table) return;
    for (size_t i = 0; i < rl->cap; i++)
        free(rl->table[i]);
    free(rl->table);
    rl->table = NULL;
    pthread_mutex_destroy(&rl->mu);
}

static size_t slot_hash(const char *k)
{
    size_t h = 1469598103934665603ull;
    for (; *k; k++)
        h = (h ^ (unsigned char)*k) * 1099511628211ull;
    return h;
}

static pvg_srv_bucket **find_slot(pvg_srv_bucket **t, size_t cap, const char *key)
{
    size_t i = slot_hash(key) & (cap - 1);
    while (t[i] && strcmp(t[i]->key, key) != 0)
        i = (i + 1) & (cap - 1);
    return &t[i];
}

static int grow(pvg_srv_ratelimit *rl)
{
    size_t cap = rl->cap * 2;
    pvg_srv_bucket **t = calloc(cap, sizeof *t);
    if (!t) return -1;
    for (size_t i = 0; i < rl->cap; i++)
        if (rl->table[i]) *find_slot(t, cap, rl->table[i]->key) = rl->table[i];
    free(rl->table);
    rl->table = t;
    rl->cap = cap;
    return 0;
}

int pvg_srv_ratelimit_take(pvg_srv_ratelimit *rl, const char *key_id, double rate, double now,
                           double *retry_after_s)
{
    *retry_after_s = 0;
    if (rate <= 0) return 1;
    double burst = rate * 2 < 1 ? 1 : rate * 2;
    int ok = 1;
    pthread_mutex_lock(&rl->mu);
    pvg_srv_bucket **slot = find_slot(rl->table, rl->cap, key_id);
    if (!*slot) {
        if ((rl->n + 1) * 2 > rl->cap && grow(rl) == 0)
            slot = find_slot(rl->table, rl->cap, key_id);
        pvg_srv_bucket *b = calloc(1, sizeof *b);
        if (b) {
            strncpy(b->key, key_id, PVG_AUTH_ID_HEX);
            b->tokens = burst;
            b->last = now;
            *slot = b;
            rl->n++;
        }
    }
    pvg_srv_bucket *b = *slot;
    if (b) {
        b->tokens += (now - b->last) * rate;
        if (b->tokens > burst) b->tokens = burst;
        b->last = now;
        if (b->tokens >= 1) {
            b->tokens -= 1;
        } else {
            ok = 0;
            *retry_after_s = (1 - b->tokens) / rate;
        }
    }
    pthread_mutex_unlock(&rl->mu);
    return ok;
}
