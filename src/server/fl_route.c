/*
 * fl_route.c - the federated-training routes under /v1/fl/ (declared in
 * the routes table of routes.c): a shopper's client joins the coordinator
 * (fl_net.h) with its shopper token, polls the round's STATE, fetches the
 * broadcast and posts its SecAgg messages. The bodies are binary and
 * versioned (docs/fl-protocol.md); errors are JSON naming the byte offset
 * and what was expected. Nothing here logs a body: the coordinator holds
 * only masked inputs and the unmasked sum.
 */
#include "server/server_internal.h"

#include <privguide/fl_net.h>

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The coordinator, or NULL after a 404 answer. The client's identity: its
 * pseudonym (shopper tokens only reach these routes). */
static pvg_fl_coord *coord_of(pvg_srv_req *r, uint8_t key[PVG_FL_NET_KEY_BYTES])
{
    pvg_fl_coord *c = r->srv->opt.fl;
    if (!c) {
        pvg_srv_reply_error(r, 404, "not_found",
                            "federated training is not enabled on this server (serve --fl)");
        return NULL;
    }
    memset(key, 0, PVG_FL_NET_KEY_BYTES);
    memcpy(key, r->who.pseudonym, sizeof r->who.pseudonym);
    return c;
}

static void reply_bytes(pvg_srv_req *r, uint8_t *b, size_t len)
{
    free(r->out);
    r->status = 200;
    r->ctype = "application/octet-stream";
    r->out = (char *)b;
    r->out_len = len;
}

static void reply_fl_error(pvg_srv_req *r, const char *what, pvg_status st, const pvg_error *e)
{
    if (st == PVG_ERR_STATE) {
        pvg_srv_reply_error(r, 409, "state", "%s: %s", what, e->text);
    } else if (st == PVG_ERR_INVALID || st == PVG_ERR_UNSUPPORTED || st == PVG_ERR_CRYPTO) {
        if (e->offset >= 0)
            pvg_srv_reply_error(r, 400, "invalid", "%s: byte %lld: %s", what, e->offset, e->text);
        else
            pvg_srv_reply_error(r, 400, "invalid", "%s: %s", what, e->text);
    } else {
        pvg_srv_reply_status(r, what, st, e);
    }
}

/* The client's STATE; waited: the answer to a long poll, with its "waited"
 * flag. */
static void state_reply_as(pvg_srv_req *r, pvg_fl_coord *c, const uint8_t *key, int waited)
{
    uint8_t *b = NULL;
    size_t len = 0;
    pvg_error e;
    pvg_status st = waited ? pvg_fl_coord_wait_answer(c, key, &b, &len, &e)
                           : pvg_fl_coord_state(c, key, &b, &len, &e);
    if (st != PVG_OK) {
        reply_fl_error(r, "fl state", st, &e);
        return;
    }
    reply_bytes(r, b, len);
}

void pvg_srv_h_fl_join(pvg_srv_req *r)
{
    uint8_t key[PVG_FL_NET_KEY_BYTES];
    pvg_fl_coord *c = coord_of(r, key);
    if (!c) return;
    if (r->body_len) {
        pvg_srv_reply_error(r, 400, "invalid", "fl join: byte 0: an empty body was expected");
        return;
    }
    pvg_error e;
    pvg_status st = pvg_fl_coord_join(c, key, &e);
    if (st != PVG_OK) {
        reply_fl_error(r, "fl join", st, &e);
        return;
    }
    state_reply_as(r, c, key, 0);
}

/* The coordinator ends a parked poll (its thread, or a server that stops):
 * the answer goes into r and its connection is resumed; the connection's
 * thread sends it (http.c). */
static void wake_parked(void *waiter)
{
    pvg_srv_req *r = waiter;
    uint8_t key[PVG_FL_NET_KEY_BYTES];
    memset(key, 0, sizeof key);
    memcpy(key, r->who.pseudonym, sizeof r->who.pseudonym);
    state_reply_as(r, r->srv->opt.fl, key, 1);
    pvg_srv_req_resume_now(r);
}

/* Parses one decimal field of the wait value at v[*i] (digits only, no
 * leading zero unless "0", at most max) up to the separator sep (0: the
 * end). -1 on error, with *i the offset of the fault. */
static int wait_field(const char *v, size_t *i, unsigned long long max, char sep,
                      unsigned long long *out)
{
    size_t s = *i;
    unsigned long long x = 0;
    while (v[*i] >= '0' && v[*i] <= '9') {
        if (*i > s && v[s] == '0') return -1; /* a leading zero */
        unsigned d = (unsigned)(v[*i] - '0');
        if (d > max || x > (max - d) / 10) return -1; /* beyond max */
        x = x * 10 + d;
        (*i)++;
    }
    if (*i == s || v[*i] != sep) return -1;
    if (sep) (*i)++;
    *out = x;
    return 0;
}

int pvg_srv_fl_wait_parse(const char *v, uint64_t *round, int *phase, uint32_t *ms, size_t *at,
                          const char **expected, const char **then)
{
    static const struct {
        const char *what;
        unsigned long long max;
        char sep;
    } f[4] = {
        {"the version 1", 1, '.'},
        {"the round of the STATE seen (0..2^64-1, decimal)", UINT64_MAX, '.'},
        {"the phase of the STATE seen (0..7)", 7, '.'},
        {"the longest wait in ms (0..4294967295; the server waits at most 30000)", UINT32_MAX, 0}};
    unsigned long long x[4];
    size_t i = 0;
    for (int k = 0; k < 4; k++) {
        size_t start = i;
        int ok = wait_field(v, &i, f[k].max, f[k].sep, &x[k]) == 0;
        if (!ok || (k == 0 && x[0] != 1)) {
            *at = ok ? start : i; /* a well-formed version other than 1: at its start */
            *expected = f[k].what;
            *then = f[k].sep ? "'.'" : "the end";
            return -1;
        }
    }
    *round = x[1];
    *phase = (int)x[2];
    *ms = (uint32_t)x[3];
    return 0;
}

/* pvg_srv_fl_wait_parse, or a 400 naming the byte offset and what was
 * expected there. */
static int wait_parse(pvg_srv_req *r, const char *v, uint64_t *round, int *phase, uint32_t *ms)
{
    size_t at = 0;
    const char *what = NULL, *then = NULL;
    if (pvg_srv_fl_wait_parse(v, round, phase, ms, &at, &what, &then) == 0) return 0;
    pvg_srv_reply_error(r, 400, "invalid",
                        "query parameter wait: byte %zu: %s was expected, then %s "
                        "(\"VERSION.ROUND.PHASE.MS\", e.g. \"1.3.2.30000\")",
                        at, what, then);
    return -1;
}

void pvg_srv_h_fl_state(pvg_srv_req *r)
{
    uint8_t key[PVG_FL_NET_KEY_BYTES];
    pvg_fl_coord *c = coord_of(r, key);
    if (!c) return;
    const char *v = NULL;
    if (pvg_srv_req_query_one(r, "wait", &v) != 0) return;
    if (!v) { /* a plain poll */
        state_reply_as(r, c, key, 0);
        return;
    }
    uint64_t round = 0;
    int phase = 0;
    uint32_t ms = 0;
    if (wait_parse(r, v, &round, &phase, &ms) != 0) return;
    /* a long poll: the connection is suspended (no worker thread blocked) until
       the coordinator's (round, phase) changes or the wait ends */
    if (atomic_load(&r->srv->draining) || pvg_srv_req_suspend(r) != 0) {
        state_reply_as(r, c, key, 1); /* the server stops: answered at once */
        return;
    }
    int parked = 0;
    pvg_error e;
    pvg_status st = pvg_fl_coord_park(c, key, round, phase, ms, wake_parked, r, &parked, &e);
    if (parked) {
        /* a stop that began before the wait was parked has already woken the
           parked polls: end this one too (r stays valid until this returns) */
        if (atomic_load(&r->srv->draining)) pvg_fl_coord_wake_all(c);
        return;
    }
    if (st == PVG_OK) {
        state_reply_as(r, c, key, 1); /* the state changed since the client looked */
    } else {
        if (st == PVG_ERR_BUSY) snprintf(r->retry_after, sizeof r->retry_after, "1");
        reply_fl_error(r, "fl state", st, &e);
    }
    pvg_srv_req_resume_now(r);
}

/* The public item list the coordinator trains over, in its order (a client
 * maps its shopper's events to item indices with it): {"n", "items"}. */
void pvg_srv_h_fl_items(pvg_srv_req *r)
{
    const pvg_server_options *o = &r->srv->opt;
    if (!o->fl || !o->fl_items) {
        pvg_srv_reply_error(r, 404, "not_found",
                            "federated training's item list is not served here (serve --fl-items)");
        return;
    }
    json_t *a = json_array();
    for (size_t i = 0; i < o->fl_n_items; i++)
        json_array_append_new(a, json_string(o->fl_items[i]));
    pvg_srv_reply_json(r, 200, json_pack("{s:I, s:o}", "n", (json_int_t)o->fl_n_items, "items", a));
}

void pvg_srv_stop_fl_waits(pvg_server *srv)
{
    if (srv->opt.fl) pvg_fl_coord_wake_all(srv->opt.fl);
}

static void broadcast_release(void *ref)
{
    pvg_fl_broadcast_ref_free(ref);
}

void pvg_srv_h_fl_broadcast(pvg_srv_req *r)
{
    uint8_t key[PVG_FL_NET_KEY_BYTES];
    pvg_fl_coord *c = coord_of(r, key);
    if (!c) return;
    const char *v = NULL;
    if (pvg_srv_req_query_one(r, "round", &v) != 0) return;
    char *end = NULL;
    errno = 0;
    unsigned long long round = v ? strtoull(v, &end, 10) : 0;
    if (!v || errno || end == v || *end || round == 0 || v[0] == '-') {
        pvg_srv_reply_error(r, 400, "invalid",
                            "query parameter round: want the round number (1, 2, ...), got "
                            "\"%.40s\"",
                            v ? v : "");
        return;
    }
    /* only a member of round `round`'s cohort gets its broadcast: the model
     * goes to the clients that train it, not to every shopper token */
    uint8_t *b = NULL;
    size_t len = 0;
    pvg_error e;
    pvg_status st = pvg_fl_coord_state(c, key, &b, &len, &e);
    if (st != PVG_OK) {
        reply_fl_error(r, "fl broadcast", st, &e);
        return;
    }
    pvg_fl_state fs;
    st = pvg_fl_state_parse(b, len, &fs, &e);
    free(b);
    b = NULL;
    if (st != PVG_OK || fs.id == PVG_FL_NET_NO_ID || fs.round != round) {
        pvg_srv_reply_error(r, 404, "not_found",
                            "fl broadcast: this client is not in round %llu's cohort", round);
        return;
    }
    /* the coordinator's bytes, shared by every answer still sending them */
    pvg_fl_broadcast_ref *ref = NULL;
    const uint8_t *data = NULL;
    len = 0;
    st = pvg_fl_coord_broadcast_ref(c, round, &ref, &data, &len, &e);
    if (st != PVG_OK) {
        reply_fl_error(r, "fl broadcast", st, &e);
        return;
    }
    pvg_srv_reply_shared(r, 200, "application/octet-stream", data, len, broadcast_release, ref);
}

void pvg_srv_h_fl_message(pvg_srv_req *r)
{
    uint8_t key[PVG_FL_NET_KEY_BYTES];
    pvg_fl_coord *c = coord_of(r, key);
    if (!c) return;
    size_t cap = pvg_fl_coord_max_message(c);
    if (r->body_len > cap) {
        pvg_srv_reply_error(r, 413, "too_large",
                            "fl message: %zu bytes; a SecAgg message of this session has at "
                            "most %zu",
                            r->body_len, cap);
        return;
    }
    pvg_error e;
    pvg_status st = pvg_fl_coord_submit(c, key, (const uint8_t *)r->body, r->body_len, &e);
    if (st != PVG_OK) {
        reply_fl_error(r, "fl message", st, &e);
        return;
    }
    state_reply_as(r, c, key, 0);
}
