/*
 * check.c - what the readers skipped, and `store check`: finding chunks
 * that fail authentication, replayed (duplicated) chunk rows and chunks
 * whose user row or key is gone; moving them to the quarantine; rewriting
 * format-1 chunks in the current format.
 */
#include "store/store_priv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- what readers skipped ---- */

const char *pvg_chunk_damage_name(int kind)
{
    switch (kind) {
    case PVG_CHUNK_UNREADABLE:
        return "failed authentication";
    case PVG_CHUNK_MALFORMED:
        return "malformed";
    case PVG_CHUNK_DUPLICATE:
        return "duplicate chunk id";
    default:
        return "damaged";
    }
}

void pvg_store_note_damage(pvg_store *s, int64_t user_id, int64_t row, const unsigned char *cid,
                           size_t cid_len, int kind)
{
    if (kind == PVG_CHUNK_DUPLICATE)
        s->read.chunks_duplicate++;
    else
        s->read.chunks_unreadable++;
    s->read.last_user_id = user_id;
    char hex[2 * PVG_CID_BYTES + 1] = "?";
    if (cid && cid_len == PVG_CID_BYTES) sodium_bin2hex(hex, sizeof hex, cid, cid_len);
    snprintf(s->read.last, sizeof s->read.last, "user row %lld: chunk %s: %s", (long long)user_id,
             hex, pvg_chunk_damage_name(kind));
    if (!s->collect_damage) return;
    if (s->n_damage == s->damage_cap) {
        size_t cap = s->damage_cap ? s->damage_cap * 2 : 8;
        pvg_chunk_damage *nd = realloc(s->damage, cap * sizeof *nd);
        if (!nd) return; /* the counts above still say it */
        s->damage = nd;
        s->damage_cap = cap;
    }
    pvg_chunk_damage *d = &s->damage[s->n_damage++];
    memset(d, 0, sizeof *d);
    d->user_id = user_id;
    d->row = row;
    d->kind = kind;
    if (cid && cid_len == PVG_CID_BYTES) memcpy(d->cid, cid, PVG_CID_BYTES);
}

void pvg_store_read_stats_get(const pvg_store *s, pvg_store_read_stats *out)
{
    *out = s->read;
}

void pvg_store_read_stats_reset(pvg_store *s)
{
    memset(&s->read, 0, sizeof s->read);
}

/* ---- store check ---- */

typedef struct check_user {
    int64_t id;
    unsigned char pseudonym[16];
    int has_key, key_ok, problems;
    long long legacy;
} check_user;

typedef struct problem {
    int64_t user_id, row;
    unsigned char cid[PVG_CID_BYTES];
    int has_cid;
    const char *what;
    size_t user; /* index into users, (size_t)-1 when its row is gone */
} problem;

typedef struct check_ctx {
    pvg_store *s;
    check_user *users;
    size_t n_users, cap_users;
    problem *probs;
    size_t n_probs, cap_probs;
    pvg_cid_set ids;      /* ids of authentic chunks, store-wide */
    size_t cur;           /* index of the user whose key is in key, or (size_t)-1 */
    unsigned char *key;   /* sodium_malloc */
    unsigned char *plain; /* wiped before free */
    size_t plain_cap;
    pvg_store_check_report *rep;
    pvg_status st;
    pvg_error *err;
} check_ctx;

static int take_user(void *vctx, const pvg_backend_user *u)
{
    check_ctx *c = vctx;
    if (c->n_users == c->cap_users) {
        size_t cap = c->cap_users ? c->cap_users * 2 : 1024;
        check_user *nu = realloc(c->users, cap * sizeof *nu);
        if (!nu) {
            c->st = pvg_error_set(c->err, PVG_ERR_NOMEM, "out of memory");
            return 1;
        }
        c->users = nu;
        c->cap_users = cap;
    }
    check_user *cu = &c->users[c->n_users++];
    memset(cu, 0, sizeof *cu);
    cu->id = u->id;
    memcpy(cu->pseudonym, u->pseudonym, 16);
    return 0;
}

static size_t find_user(const check_ctx *c, int64_t id)
{
    size_t lo = 0, hi = c->n_users;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (c->users[mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < c->n_users && c->users[lo].id == id ? lo : (size_t)-1;
}

static int add_problem(check_ctx *c, const pvg_backend_chunk *ch, size_t user, const char *what)
{
    if (c->n_probs == c->cap_probs) {
        size_t cap = c->cap_probs ? c->cap_probs * 2 : 64;
        problem *np = realloc(c->probs, cap * sizeof *np);
        if (!np) {
            c->st = pvg_error_set(c->err, PVG_ERR_NOMEM, "out of memory");
            return 1;
        }
        c->probs = np;
        c->cap_probs = cap;
    }
    problem *p = &c->probs[c->n_probs++];
    memset(p, 0, sizeof *p);
    p->user_id = ch->user_id;
    p->row = ch->row;
    p->has_cid = ch->cid_len == PVG_CID_BYTES;
    if (p->has_cid) memcpy(p->cid, ch->cid, PVG_CID_BYTES);
    p->what = what;
    p->user = user;
    if (user != (size_t)-1) c->users[user].problems++;
    return 0;
}

static int check_chunk(void *vctx, const pvg_backend_chunk *ch)
{
    check_ctx *c = vctx;
    pvg_store *s = c->s;
    c->rep->chunks++;
    size_t ui = find_user(c, ch->user_id);
    if (ui == (size_t)-1) {
        c->rep->orphaned++;
        return add_problem(c, ch, ui, "user row missing");
    }
    check_user *u = &c->users[ui];
    if (c->cur != ui) { /* chunks come in user order: one unwrap per user */
        c->cur = ui;
        pvg_status st = pvg_store_user_key(s, u->pseudonym, c->key, c->err);
        u->has_key = st != PVG_ERR_NOT_FOUND;
        u->key_ok = st == PVG_OK;
        if (st != PVG_OK && st != PVG_ERR_NOT_FOUND && st != PVG_ERR_CRYPTO) {
            c->st = st;
            return 1;
        }
        pvg_error_clear(c->err);
    }
    if (!u->has_key) {
        c->rep->keyless++;
        return add_problem(c, ch, ui, "data key missing");
    }
    if (ch->cid_len != PVG_CID_BYTES || ch->sealed_len < PVG_SEAL_OVERHEAD) {
        c->rep->unreadable++;
        return add_problem(c, ch, ui, pvg_chunk_damage_name(PVG_CHUNK_MALFORMED));
    }
    size_t pn = ch->sealed_len - PVG_SEAL_OVERHEAD;
    if (pn > c->plain_cap) {
        if (c->plain) sodium_memzero(c->plain, c->plain_cap);
        free(c->plain);
        c->plain_cap = pn * 2;
        c->plain = malloc(c->plain_cap);
        if (!c->plain) {
            c->plain_cap = 0;
            c->st = pvg_error_set(c->err, PVG_ERR_NOMEM, "out of memory");
            return 1;
        }
    }
    int version = 0;
    if (!u->key_ok || pvg_chunk_open(c->key, u->pseudonym, ch->cid, ch->expires_day, ch->n_events,
                                     ch->sealed, ch->sealed_len, c->plain, &version) != PVG_OK) {
        c->rep->unreadable++;
        return add_problem(c, ch, ui, pvg_chunk_damage_name(PVG_CHUNK_UNREADABLE));
    }
    sodium_memzero(c->plain, pn);
    /* Only authentic chunks claim their id: a forged row cannot push the
     * real one out as "the copy". */
    int seen = pvg_cid_set_seen(&c->ids, ch->cid);
    if (seen < 0) {
        c->st = pvg_error_set(c->err, PVG_ERR_NOMEM, "out of memory");
        return 1;
    }
    if (seen) {
        c->rep->duplicate++;
        return add_problem(c, ch, ui, pvg_chunk_damage_name(PVG_CHUNK_DUPLICATE));
    }
    if (version < PVG_CHUNK_VERSION) {
        c->rep->legacy++;
        u->legacy++;
    }
    return 0;
}

static pvg_status quarantine_all(check_ctx *c, pvg_error *err)
{
    pvg_store *s = c->s;
    pvg_status st = pvg_store_begin(s, err);
    if (st != PVG_OK) return st;
    for (size_t i = 0; i < c->n_probs && st == PVG_OK; i++) {
        problem *p = &c->probs[i];
        const unsigned char *pseud = p->user != (size_t)-1 ? c->users[p->user].pseudonym : NULL;
        st = PVG_B(s, chunk_quarantine, p->row, pseud, p->what, pvg_store_now(s), err);
    }
    if (st == PVG_OK)
        st = pvg_store_commit(s, err);
    else
        pvg_store_rollback(s);
    if (st != PVG_OK) return st;
    c->rep->quarantined = (long long)c->n_probs;
    return PVG_OK;
}

static pvg_status upgrade_users(check_ctx *c, int quarantined, pvg_error *err)
{
    pvg_store *s = c->s;
    for (size_t i = 0; i < c->n_users; i++) {
        check_user *u = &c->users[i];
        /* A user with a problem chunk still in place is left alone (the
         * rewrite would skip it anyway). */
        if (!u->legacy || (u->problems && !quarantined) || !u->key_ok) continue;
        pvg_status st = pvg_store_begin(s, err);
        if (st != PVG_OK) return st;
        pvg_keycache_entry *e;
        long long n = 0;
        st = pvg_store_user_resolve(s, u->pseudonym, 0, &e, NULL, err);
        if (st == PVG_OK && e->user_id != u->id)
            st = pvg_error_set(err, PVG_ERR_BUSY, "user row %lld changed during the check",
                               (long long)u->id);
        if (st == PVG_OK) st = pvg_store_user_rewrite(s, u->id, u->pseudonym, e->key, 0, &n, err);
        if (st == PVG_OK)
            st = pvg_store_commit(s, err);
        else
            pvg_store_rollback(s);
        if (st != PVG_OK) return st;
        c->rep->upgraded += n;
    }
    return PVG_OK;
}

pvg_status pvg_store_check(pvg_store *s, unsigned flags, pvg_store_check_fn fn, void *ctx,
                           pvg_store_check_report *out, pvg_error *err)
{
    memset(out, 0, sizeof *out);
    if (s->in_txn) return pvg_error_set(err, PVG_ERR_STATE, "cannot check inside a transaction");
    check_ctx c;
    memset(&c, 0, sizeof c);
    c.s = s;
    c.cur = (size_t)-1;
    c.rep = out;
    c.err = err;
    c.key = sodium_malloc(PVG_KEY_BYTES);
    pvg_status st = c.key ? PVG_OK : pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    if (st == PVG_OK) {
        st = PVG_B(s, users_foreach, NULL, take_user, &c, err);
        if (st == PVG_ERR_ABORTED) st = c.st;
    }
    out->users = (long long)c.n_users;
    if (st == PVG_OK) {
        pvg_cid_set_next(&c.ids);
        st = PVG_B(s, chunks_scan, check_chunk, &c, err);
        if (st == PVG_ERR_ABORTED) st = c.st;
    }
    if (c.key) sodium_free(c.key);
    if (c.plain) {
        sodium_memzero(c.plain, c.plain_cap);
        free(c.plain);
    }
    if (st == PVG_OK && (flags & PVG_CHECK_QUARANTINE) && c.n_probs) st = quarantine_all(&c, err);
    if (st == PVG_OK && fn)
        for (size_t i = 0; i < c.n_probs; i++) {
            char hex[2 * PVG_CID_BYTES + 1] = "?";
            if (c.probs[i].has_cid) sodium_bin2hex(hex, sizeof hex, c.probs[i].cid, PVG_CID_BYTES);
            fn(ctx, c.probs[i].user_id, c.probs[i].row, hex, c.probs[i].what,
               (flags & PVG_CHECK_QUARANTINE) != 0);
        }
    if (st == PVG_OK && (flags & PVG_CHECK_UPGRADE))
        st = upgrade_users(&c, (flags & PVG_CHECK_QUARANTINE) != 0, err);
    if (st == PVG_OK)
        st = PVG_B(s, chunks_cid_index, (flags & PVG_CHECK_QUARANTINE) != 0, &out->cid_index, err);
    if (st == PVG_OK) st = PVG_B(s, quarantine_count, &out->in_quarantine, err);
    pvg_cid_set_free(&c.ids);
    free(c.users);
    free(c.probs);
    return st;
}
