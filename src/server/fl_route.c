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

static void state_reply(pvg_srv_req *r, pvg_fl_coord *c, const uint8_t *key)
{
    uint8_t *b = NULL;
    size_t len = 0;
    pvg_error e;
    pvg_status st = pvg_fl_coord_state(c, key, &b, &len, &e);
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
    state_reply(r, c, key);
}

void pvg_srv_h_fl_state(pvg_srv_req *r)
{
    uint8_t key[PVG_FL_NET_KEY_BYTES];
    pvg_fl_coord *c = coord_of(r, key);
    if (c) state_reply(r, c, key);
}

void pvg_srv_h_fl_broadcast(pvg_srv_req *r)
{
    uint8_t key[PVG_FL_NET_KEY_BYTES];
    pvg_fl_coord *c = coord_of(r, key);
    if (!c) return;
    const char *v = pvg_srv_req_query(r, "round");
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
    len = 0;
    st = pvg_fl_coord_broadcast(c, round, &b, &len, &e);
    if (st != PVG_OK) {
        reply_fl_error(r, "fl broadcast", st, &e);
        return;
    }
    reply_bytes(r, b, len);
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
    state_reply(r, c, key);
}
