/*
 * audit_writer.c - group commit of audit entries for the server: request
 * threads enqueue an entry and wait; one writer thread appends everything
 * queued in one transaction (pvg_audit_append_many) and wakes them, so an
 * answer with personal data leaves only after its entry is committed.
 * Asynchronous entries (pvg_srv_audit_log_async) wake their requests one by
 * one after the commit, then on_group tells that a whole group is ready
 * (the server scores a group's recommendations as one batch).
 */
#include "server/server_internal.h"

#include "store/store_internal.h"

#include <stdlib.h>
#include <string.h>

struct pvg_srv_audit_item {
    pvg_srv_audit_item *next;
    long long ticket;
    int *done; /* the waiting thread's flags, set under the mutex */
    pvg_status *result;
    void (*wake)(void *); /* async: called after done is set, outside the lock */
    void *wake_ctx;
    char *actor, *action, *subject, *detail;
};

/* An item and its four strings are one allocation. */
static void item_free(pvg_srv_audit_item *it)
{
    free(it);
}

/* ---- deferred WAL checkpoints ----------------------------------------
 * SQLite's automatic checkpoint runs inside the commit that crosses 1000
 * frames: it syncs the WAL, copies it and syncs the database (tens of ms
 * here), and every answer waiting for the next group waits with it. The
 * writer's connection does not checkpoint (wal_defer); the checkpointer
 * thread makes a PASSIVE pass on a side connection each
 * wal_checkpoint_frames new frames (the WAL is synced as often as before,
 * so no commit stays unsynced longer than with the automatic checkpoint).
 * A WAL only restarts from its start when a writer begins after a pass
 * copied all of it, which a side pass alone never does while commits go
 * on: so once the WAL holds wal_reset_frames, right after a side pass left
 * at most wal_tail_frames to copy, the writer makes that short pass itself
 * between two groups, and its next commit restarts the WAL (from twice
 * wal_reset_frames on, after any side pass, when commits come faster than
 * a side pass leaves a short tail). At wal_max_frames it passes at once
 * whatever is left (the bound, should side passes fall behind). A reader holding an old snapshot
 * keeps any pass, ours or SQLite's, from copying past it. */

static pvg_backend_ops const *wal_ops(pvg_srv_audit_writer *w, pvg_backend **b)
{
    *b = pvg_store_backend(w->store);
    return (*b)->ops;
}

/* After a commit (writer thread, mu not held): a side pass asked for, or
 * 1 when the writer should make its own pass (own_running set). */
static int wal_after_commit(pvg_srv_audit_writer *w)
{
    pvg_backend *b;
    const pvg_backend_ops *ops = wal_ops(w, &b);
    long long f = ops->wal_frames(b);
    int own = 0;
    pthread_mutex_lock(&w->mu);
    if (f > w->wal_peak_frames) w->wal_peak_frames = f;
    if (w->ckpt_log >= 0 && f < w->ckpt_log) w->ckpt_log = w->ckpt_done = -1; /* restarted */
    long long left = f - (w->ckpt_done > 0 ? w->ckpt_done : 0);
    if (f >= w->wal_max_frames || (!w->ckpt_running && f >= w->wal_reset_frames &&
                                   (left <= w->wal_tail_frames || f >= 2 * w->wal_reset_frames))) {
        own = 1;
        w->own_running = 1;
    } else if (!w->ckpt_running && left >= w->wal_checkpoint_frames) {
        w->ckpt_running = 1;
        pthread_cond_signal(&w->cv_ckpt);
    }
    pthread_mutex_unlock(&w->mu);
    return own;
}

/* The writer's own pass (own_running set by wal_after_commit). */
static void wal_own_pass(pvg_srv_audit_writer *w)
{
    pvg_backend *b;
    const pvg_backend_ops *ops = wal_ops(w, &b);
    long long log = -1, done = -1;
    /* at the bound a side pass may run: it ends first (one pass at most),
     * as two passes at once would only make ours fail busy */
    pthread_mutex_lock(&w->mu);
    while (w->ckpt_running)
        pthread_cond_wait(&w->cv_done, &w->mu);
    pthread_mutex_unlock(&w->mu);
    pvg_status st = ops->wal_checkpoint(b, 0, &log, &done, NULL);
    pthread_mutex_lock(&w->mu);
    if (st == PVG_OK) {
        w->wal_own_passes++;
        w->ckpt_log = w->ckpt_done = -1;
    }
    w->own_running = 0;
    pthread_cond_broadcast(&w->cv_done); /* a key rotation may wait for it */
    pthread_mutex_unlock(&w->mu);
}

static void *ckpt_main(void *arg)
{
    pvg_srv_audit_writer *w = arg;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!w->ckpt_running && !w->ckpt_stop)
            pthread_cond_wait(&w->cv_ckpt, &w->mu);
        if (w->ckpt_stop) break;
        pvg_backend *b;
        const pvg_backend_ops *ops = wal_ops(w, &b); /* w->store changes only under mu */
        pthread_mutex_unlock(&w->mu);
        long long log = -1, done = -1;
        pvg_status st = ops->wal_checkpoint(b, 1, &log, &done, NULL);
        pthread_mutex_lock(&w->mu);
        if (st == PVG_OK) {
            w->wal_side_passes++;
            w->ckpt_log = log;
            w->ckpt_done = done;
        }
        w->ckpt_running = 0;
        pthread_cond_broadcast(&w->cv_done); /* a key rotation may wait for it */
    }
    w->ckpt_running = 0;
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

void pvg_srv_audit_store_prepare(pvg_store *store)
{
    (void)pvg_store_relax_durability(store, NULL);
    pvg_backend *b = pvg_store_backend(store);
    if (b->ops->wal_defer) (void)b->ops->wal_defer(b, NULL);
}

void pvg_srv_store_prepare(pvg_store *store)
{
    pvg_backend *b = pvg_store_backend(store);
    if (b->ops->wal_autocheckpoint)
        (void)b->ops->wal_autocheckpoint(b, PVG_SRV_WAL_MAX_FRAMES, NULL);
}

static void *writer_main(void *arg)
{
    pvg_srv_audit_writer *w = arg;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!w->head && !w->stop)
            pthread_cond_wait(&w->cv_work, &w->mu);
        if (!w->head && w->stop) break;
        pvg_srv_audit_item *batch = w->head;
        void (*on_commit)(void *) = w->on_commit;
        void *on_commit_ctx = w->on_commit_ctx;
        void (*on_group)(void *) = w->on_group;
        void *on_group_ctx = w->on_group_ctx;
        w->head = w->tail = NULL;
        pthread_mutex_unlock(&w->mu);

        size_t n = 0;
        long long lo = batch->ticket, hi = batch->ticket;
        for (pvg_srv_audit_item *it = batch; it; it = it->next) {
            n++;
            hi = it->ticket;
        }
        pvg_audit_record *recs = calloc(n, sizeof *recs);
        pvg_status st = PVG_ERR_NOMEM;
        if (recs) {
            size_t i = 0;
            for (pvg_srv_audit_item *it = batch; it; it = it->next, i++) {
                recs[i].actor = it->actor;
                recs[i].action = it->action;
                recs[i].subject = it->subject;
                recs[i].detail = it->detail;
            }
            for (int attempt = 0; attempt < 5; attempt++) {
                st = pvg_audit_append_many(w->store, recs, n, NULL);
                if (st != PVG_ERR_BUSY) break;
            }
            free(recs);
        }
        int own_pass = 0;
        if (st == PVG_OK) {
            atomic_fetch_add(&w->metrics->audit_entries, (long long)n);
            atomic_fetch_add(&w->metrics->audit_commits, 1);
            if (on_commit) on_commit(on_commit_ctx);
            if (w->ckpt_started) own_pass = wal_after_commit(w);
        } else
            atomic_fetch_add(&w->metrics->audit_failures, (long long)n);

        pthread_mutex_lock(&w->mu);
        pvg_srv_audit_item *wakes = NULL;
        while (batch) {
            pvg_srv_audit_item *next = batch->next;
            *batch->result = st;
            *batch->done = 1;
            if (batch->wake) { /* keep it to wake outside the lock */
                batch->next = wakes;
                wakes = batch;
            } else {
                item_free(batch);
            }
            batch = next;
        }
        w->committed_upto = hi;
        (void)lo;
        pthread_cond_broadcast(&w->cv_done);
        pthread_mutex_unlock(&w->mu);
        int woke = wakes != NULL;
        /* in queue order (the list is reversed) */
        pvg_srv_audit_item *fwd = NULL;
        while (wakes) {
            pvg_srv_audit_item *next = wakes->next;
            wakes->next = fwd;
            fwd = wakes;
            wakes = next;
        }
        while (fwd) {
            pvg_srv_audit_item *next = fwd->next;
            fwd->wake(fwd->wake_ctx);
            item_free(fwd);
            fwd = next;
        }
        /* the whole group is woken: its requests can go on together */
        if (woke && on_group) on_group(on_group_ctx);
        /* after the group went on: its answers do not wait for the pass */
        if (own_pass) wal_own_pass(w);
        pthread_mutex_lock(&w->mu);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

int pvg_srv_audit_writer_start(pvg_srv_audit_writer *w, pvg_store *store, pvg_srv_metrics *m)
{
    memset(w, 0, sizeof *w);
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv_work, NULL);
    pthread_cond_init(&w->cv_done, NULL);
    pthread_cond_init(&w->cv_ckpt, NULL);
    w->store = store;
    w->metrics = m;
    w->ckpt_log = w->ckpt_done = -1;
    w->wal_checkpoint_frames = PVG_SRV_WAL_CHECKPOINT_FRAMES;
    w->wal_reset_frames = PVG_SRV_WAL_RESET_FRAMES;
    w->wal_tail_frames = PVG_SRV_WAL_TAIL_FRAMES;
    w->wal_max_frames = PVG_SRV_WAL_MAX_FRAMES;
    /* deferred checkpoints when the backend has them (else its commits
     * checkpoint as they always did) */
    pvg_backend *b = pvg_store_backend(store);
    if (b->ops->wal_defer && b->ops->wal_frames && b->ops->wal_checkpoint &&
        b->ops->wal_defer(b, NULL) == PVG_OK &&
        pthread_create(&w->ckpt_thread, NULL, ckpt_main, w) == 0)
        w->ckpt_started = 1;
    else if (b->ops->wal_autocheckpoint) /* no checkpointer: the commits checkpoint again */
        (void)b->ops->wal_autocheckpoint(b, PVG_SRV_WAL_CHECKPOINT_FRAMES, NULL);
    if (pthread_create(&w->thread, NULL, writer_main, w) != 0) {
        if (w->ckpt_started) {
            pthread_mutex_lock(&w->mu);
            w->ckpt_stop = 1;
            pthread_cond_signal(&w->cv_ckpt);
            pthread_mutex_unlock(&w->mu);
            pthread_join(w->ckpt_thread, NULL);
            w->ckpt_started = 0;
        }
        return -1;
    }
    w->started = 1;
    return 0;
}

static pvg_srv_audit_item *item_new(const char *actor, const char *action, const char *subject,
                                    const char *detail)
{
    const char *f[4] = {actor ? actor : "?", action ? action : "?", subject ? subject : "",
                        detail ? detail : ""};
    size_t len[4], total = sizeof(pvg_srv_audit_item);
    for (int i = 0; i < 4; i++) {
        len[i] = strlen(f[i]) + 1;
        total += len[i];
    }
    pvg_srv_audit_item *it = calloc(1, total);
    if (!it) return NULL;
    char *p = (char *)(it + 1);
    char **dst[4] = {&it->actor, &it->action, &it->subject, &it->detail};
    for (int i = 0; i < 4; i++) {
        memcpy(p, f[i], len[i]);
        *dst[i] = p;
        p += len[i];
    }
    return it;
}

pvg_status pvg_srv_audit_log_async(pvg_srv_audit_writer *w, const char *actor, const char *action,
                                   const char *subject, const char *detail, int *done,
                                   pvg_status *result, void (*wake)(void *), void *wake_ctx)
{
    pvg_srv_audit_item *it = item_new(actor, action, subject, detail);
    if (!it) return PVG_ERR_NOMEM;
    it->done = done;
    it->result = result;
    it->wake = wake;
    it->wake_ctx = wake_ctx;
    pthread_mutex_lock(&w->mu);
    if (!w->started || w->stop) {
        pthread_mutex_unlock(&w->mu);
        item_free(it);
        return PVG_ERR_STATE;
    }
    it->ticket = ++w->enqueued;
    if (w->tail)
        w->tail->next = it;
    else
        w->head = it;
    w->tail = it;
    pthread_cond_signal(&w->cv_work);
    pthread_mutex_unlock(&w->mu);
    return PVG_OK;
}

pvg_status pvg_srv_audit_log(pvg_srv_audit_writer *w, const char *actor, const char *action,
                             const char *subject, const char *detail)
{
    pvg_srv_audit_item *it = item_new(actor, action, subject, detail);
    if (!it) return PVG_ERR_NOMEM;
    pthread_mutex_lock(&w->mu);
    if (!w->started || w->stop) {
        pthread_mutex_unlock(&w->mu);
        item_free(it);
        return PVG_ERR_STATE;
    }
    int done = 0;
    pvg_status result = PVG_ERR_INTERNAL;
    it->done = &done;
    it->result = &result;
    it->ticket = ++w->enqueued;
    if (w->tail)
        w->tail->next = it;
    else
        w->head = it;
    w->tail = it;
    pthread_cond_signal(&w->cv_work);
    while (!done)
        pthread_cond_wait(&w->cv_done, &w->mu);
    pthread_mutex_unlock(&w->mu);
    return result;
}

void pvg_srv_audit_writer_stop(pvg_srv_audit_writer *w)
{
    if (!w->started) return;
    pthread_mutex_lock(&w->mu);
    w->stop = 1;
    pthread_cond_signal(&w->cv_work);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    w->started = 0;
    if (w->ckpt_started) { /* after the writer: it may have asked for a pass */
        pthread_mutex_lock(&w->mu);
        w->ckpt_stop = 1;
        pthread_cond_signal(&w->cv_ckpt);
        pthread_mutex_unlock(&w->mu);
        pthread_join(w->ckpt_thread, NULL);
        w->ckpt_started = 0;
    }
    pthread_cond_destroy(&w->cv_ckpt);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv_work);
    pthread_cond_destroy(&w->cv_done);
}
