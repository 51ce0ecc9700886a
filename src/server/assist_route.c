/*
 * assist_route.c - the shopping assistant's routes (docs/api.md):
 *   POST /v1/assist                  anonymous; the conversation lives in
 *                                    the server's memory (TTL, cap)
 *   POST /v1/users/{id}/assist       the shopper (their token, or an admin
 *                                    key): the conversation is stored sealed
 *                                    under their key; personal re-rank only
 *                                    with their consent (the access gate)
 *   GET  /v1/users/{id}/conversations  the shopper's conversations (portal)
 */
#include "server/server_internal.h"

#include <privguide/assistant.h>

#include <stdlib.h>
#include <string.h>

/* The DP popular list of the model in service (public), as item ids. */
typedef struct popular_ids {
    pvg_srv_model *m;
    const char **ids;
    size_t n;
} popular_ids;

static void popular_take(pvg_srv_req *r, popular_ids *p)
{
    memset(p, 0, sizeof *p);
    p->m = pvg_srv_model_acquire(r->srv);
    if (!p->m) return;
    const pvg_srv_popular *pop = atomic_load(&p->m->popular);
    if (!pop || !pop->n) return;
    p->ids = calloc(pop->n, sizeof *p->ids);
    if (!p->ids) return;
    for (size_t i = 0; i < pop->n; i++)
        p->ids[i] = pop->items[i].ext_id;
    p->n = pop->n;
}

static void popular_drop(popular_ids *p)
{
    free(p->ids);
    if (p->m) pvg_srv_model_release(p->m);
}

static void assist(pvg_srv_req *r, const char *user)
{
    json_t *body = pvg_srv_req_json(r);
    if (!body) return;
    json_t *msg = json_object_get(body, "message");
    json_t *conv = json_object_get(body, "conversation");
    json_t *k = json_object_get(body, "k");
    if (!json_is_object(body) || !json_is_string(msg)) {
        json_decref(body);
        pvg_srv_reply_error(r, 400, "invalid",
                            "body: expected {\"message\": string, \"conversation\": id or null, "
                            "\"k\": 1..50}");
        return;
    }
    if (!user && json_object_get(body, "user")) {
        json_decref(body);
        pvg_srv_reply_error(r, 400, "invalid",
                            "user: a shopper asks through POST /v1/users/{id}/assist with their "
                            "token; this route is anonymous");
        return;
    }
    if ((conv && !json_is_null(conv) && !json_is_string(conv)) ||
        (k && (!json_is_integer(k) || json_integer_value(k) < 1 || json_integer_value(k) > 50))) {
        json_decref(body);
        pvg_srv_reply_error(r, 400, "invalid",
                            "conversation: expected a string id or null; k: an integer 1..50");
        return;
    }
    pvg_assist_request rq = {0};
    rq.message = json_string_value(msg);
    rq.conversation = json_string_value(conv);
    rq.ext_user = user;
    rq.k = k ? (size_t)json_integer_value(k) : 0;
    popular_ids pop;
    popular_take(r, &pop);
    rq.popular = pop.ids;
    rq.n_popular = pop.n;
    pvg_access g;
    pvg_srv_access_init(r, &g);
    char *out = NULL;
    pvg_error e;
    pvg_error_clear(&e);
    pvg_status st = pvg_assistant_ask(r->srv->assistant, &g, &rq, &out, &e);
    popular_drop(&pop);
    json_decref(body);
    if (st != PVG_OK) {
        pvg_srv_reply_access(r, "assist", st, &e);
        return;
    }
    free(r->out);
    r->out = strdup(out);
    pvg_free(out);
    if (!r->out) {
        pvg_srv_reply_error(r, 500, "internal", "out of memory");
        return;
    }
    r->out_len = strlen(r->out);
    r->status = 200;
    r->ctype = "application/json";
}

void pvg_srv_h_assist(pvg_srv_req *r)
{
    assist(r, NULL);
}

void pvg_srv_h_user_assist(pvg_srv_req *r)
{
    assist(r, r->params[0]);
}

static void conversation_json(void *ctx, const pvg_conversation_view *c)
{
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(c->id));
    json_object_set_new(o, "created_at", json_integer(c->created_at));
    json_object_set_new(o, "updated_at", json_integer(c->updated_at));
    json_object_set_new(o, "expires_at", json_integer(c->expires_at));
    json_t *state = json_loads(c->json, 0, NULL);
    json_t *turns = json_object_get(state, "turns");
    json_object_set_new(o, "turns", turns ? json_incref(turns) : json_array());
    json_decref(state);
    json_array_append_new(ctx, o);
}

void pvg_srv_h_conversations(pvg_srv_req *r)
{
    const char *user = r->params[0];
    json_t *arr = json_array();
    pvg_access g;
    pvg_srv_access_init(r, &g);
    pvg_error e;
    pvg_error_clear(&e);
    pvg_status st = pvg_access_conversations(&g, user, conversation_json, arr, &e);
    if (st != PVG_OK) {
        json_decref(arr);
        pvg_srv_reply_access(r, "conversations", st, &e);
        return;
    }
    pvg_srv_reply_json(r, 200,
                       json_pack("{s:s, s:o, s:i}", "user", user, "conversations", arr,
                                 "retention_days",
                                 pvg_store_conversation_retention_days(pvg_srv_req_store(r))));
}
