/*
 * test_assistant_llm.c - the assistant's optional language model
 * (docs/assistant.md, "Language model"), against a fake OpenAI-compatible
 * endpoint served in this process (libmicrohttpd on an ephemeral port)
 * that records every request: the body sent is valid chat-completions
 * JSON holding the current message and the items' title, price and
 * category only - no shopper id, pseudonym, conversation id, item id or
 * earlier turn; a personalised answer is never sent; the items always
 * come from the built-in retrieval; a 500, a malformed, empty or slow
 * reply, or no endpoint at all, falls back to the built-in answer with a
 * reason; the key file is sent as a bearer token and appears in no answer
 * and no error.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <privguide/access.h>
#include <privguide/assistant.h>
#include <privguide/store.h>

#include <jansson.h>
#include <microhttpd.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define KEY "sk-test-5ecret-Key-0123456789"
#define PHRASED "Try the lantern first: it fits your budget."

/* ---- the fake endpoint ---- */

typedef enum mode { OK, STATUS_500, NOT_JSON, NO_CHOICES, EMPTY, SLOW } mode;

typedef struct fake {
    struct MHD_Daemon *d;
    int port;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    mode m;
    int released; /* SLOW: the handler waits until the test sets it */
    int requests;
    char *body; /* the last request body */
    char auth[256];
} fake;

typedef struct conn_buf {
    char *p;
    size_t n;
} conn_buf;

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, const char *text)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_MUST_COPY);
    MHD_add_response_header(r, "Content-Type", "application/json");
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url,
                               const char *method, const char *version, const char *data,
                               size_t *size, void **con_cls)
{
    (void)url;
    (void)version;
    fake *f = cls;
    conn_buf *b = *con_cls;
    if (!b) {
        b = calloc(1, sizeof *b);
        *con_cls = b;
        return MHD_YES;
    }
    if (*size) {
        b->p = realloc(b->p, b->n + *size + 1);
        memcpy(b->p + b->n, data, *size);
        b->n += *size;
        b->p[b->n] = '\0';
        *size = 0;
        return MHD_YES;
    }
    if (strcmp(method, "POST") != 0) return reply(c, 405, "{}");
    const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    pthread_mutex_lock(&f->mu);
    f->requests++;
    pthread_cond_broadcast(&f->cv); /* a test may wait for requests to arrive */
    free(f->body);
    f->body = b->p ? strdup(b->p) : strdup("");
    snprintf(f->auth, sizeof f->auth, "%s", auth ? auth : "");
    mode m = f->m;
    if (m == SLOW)
        while (!f->released)
            pthread_cond_wait(&f->cv, &f->mu);
    pthread_mutex_unlock(&f->mu);
    switch (m) {
    case STATUS_500:
        return reply(c, 500, "{\"error\":{\"message\":\"overloaded\"}}");
    case NOT_JSON:
        return reply(c, 200, "<html>gateway</html>");
    case NO_CHOICES:
        return reply(c, 200, "{\"choices\":[]}");
    case EMPTY:
        return reply(c, 200,
                     "{\"choices\":[{\"message\":{\"role\":\"assistant\",\"content\":\"  "
                     "\\n \"}}]}");
    default:
        return reply(c, 200,
                     "{\"id\":\"x\",\"object\":\"chat.completion\",\"choices\":[{\"index\":0,"
                     "\"message\":{\"role\":\"assistant\",\"content\":\"" PHRASED "\"},"
                     "\"finish_reason\":\"stop\"}]}");
    }
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls,
                      enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)c;
    (void)toe;
    conn_buf *b = *con_cls;
    if (b) {
        free(b->p);
        free(b);
    }
    *con_cls = NULL;
}

static void fake_set(fake *f, mode m)
{
    pthread_mutex_lock(&f->mu);
    f->m = m;
    f->released = 0;
    pthread_mutex_unlock(&f->mu);
}

static void fake_release(fake *f)
{
    pthread_mutex_lock(&f->mu);
    f->released = 1;
    pthread_cond_broadcast(&f->cv);
    pthread_mutex_unlock(&f->mu);
}

/* ---- fixture ---- */

typedef struct fx {
    char dir[256];
    char keyfile[300];
    pvg_store *s;
    fake f;
    pvg_assistant *plain; /* no language model */
    pvg_assistant *llm;   /* the fake endpoint, timeout 300 ms */
} fx;

static int group_setup(void **state)
{
    const char *src = getenv("PVG_SOURCE_DIR");
    char path[512];
    snprintf(path, sizeof path, "%s/data/online-retail-sample.csv.gz", src ? src : ".");
    fx *x = calloc(1, sizeof *x);
    snprintf(x->dir, sizeof x->dir, "/tmp/pvg_test_llm_XXXXXX");
    if (!mkdtemp(x->dir)) return -1;
    snprintf(x->keyfile, sizeof x->keyfile, "%s/llm.key", x->dir);
    strcat(x->dir, "/d");
    pvg_error err;
    pvg_error_clear(&err);
    if (pvg_store_init(x->dir, NULL, &err) != PVG_OK) return -1;
    if (pvg_store_open(x->dir, &x->s, &err) != PVG_OK) return -1;
    pvg_ingest_options io = {0};
    pvg_ingest_stats stats;
    if (pvg_store_ingest_file(x->s, path, PVG_FORMAT_ONLINE_RETAIL, &io, &stats, &err) != PVG_OK) {
        fprintf(stderr, "ingest %s: %s\n", path, err.text);
        return -1;
    }
    pthread_mutex_init(&x->f.mu, NULL);
    pthread_cond_init(&x->f.cv, NULL);
    x->f.d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
                                  MHD_USE_ERROR_LOG,
                              0, NULL, NULL, handler, &x->f, MHD_OPTION_NOTIFY_COMPLETED, completed,
                              NULL, MHD_OPTION_SOCK_ADDR, NULL, MHD_OPTION_END);
    if (!x->f.d) return -1;
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(x->f.d, MHD_DAEMON_INFO_BIND_PORT);
    if (!di || !di->port) return -1;
    x->f.port = di->port;
    FILE *k = fopen(x->keyfile, "w");
    if (!k || fprintf(k, "  " KEY "  \r\nsecond line ignored\n") < 0 || fclose(k) != 0) return -1;
    if (chmod(x->keyfile, 0600) != 0) return -1;
    if (pvg_assistant_new(NULL, &x->plain, &err) != PVG_OK) return -1;
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/v1/chat/completions", x->f.port);
    pvg_assistant_options o = {0};
    o.llm.url = url;
    o.llm.model = "test-model";
    o.llm.key_file = x->keyfile;
    o.llm.timeout_ms = 300;
    if (pvg_assistant_new(&o, &x->llm, &err) != PVG_OK) {
        fprintf(stderr, "assistant: %s\n", err.text);
        return -1;
    }
    *state = x;
    return 0;
}

static int group_teardown(void **state)
{
    fx *x = *state;
    fake_release(&x->f);
    MHD_stop_daemon(x->f.d);
    free(x->f.body);
    pvg_assistant_free(x->plain);
    pvg_assistant_free(x->llm);
    pvg_store_free(x->s);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%.*s'", (int)(strlen(x->dir) - 2), x->dir);
    if (system(cmd) != 0) return -1;
    free(x);
    return 0;
}

static json_t *ask(fx *x, pvg_assistant *a, const char *user, const char *conv, const char *msg)
{
    pvg_access g;
    pvg_access_init(&g, x->s, "test");
    pvg_assist_request rq = {0};
    rq.message = msg;
    rq.conversation = conv;
    rq.ext_user = user;
    rq.k = 5;
    char *out = NULL;
    pvg_error err;
    pvg_error_clear(&err);
    pvg_status st = pvg_assistant_ask(a, &g, &rq, &out, &err);
    if (st != PVG_OK) fail_msg("ask \"%s\": %s", msg, err.text);
    if (strstr(out, KEY)) fail_msg("the API key is in an answer");
    json_t *o = json_loads(out, 0, NULL);
    pvg_free(out);
    assert_non_null(o);
    return o;
}

static const char *str(json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

static const char *phrasing(json_t *o, const char *k)
{
    return json_string_value(json_object_get(json_object_get(o, "phrasing"), k));
}

static void add_purchases(pvg_store *s, const char *user, const char *const *items, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        pvg_event ev = {0};
        ev.type = PVG_EVENT_PURCHASE;
        ev.ts = 1290000000 + (int64_t)i;
        ev.item = items[i];
        int outcome = 0;
        pvg_error err;
        assert_int_equal(pvg_store_event_put(s, user, &ev, NULL, &outcome, &err), PVG_OK);
    }
}

/* The body is a chat-completions request of exactly the documented shape. */
static json_t *check_body(const char *body, const char *message, json_t *items)
{
    json_error_t je;
    json_t *b = json_loads(body, JSON_REJECT_DUPLICATES, &je);
    if (!b) fail_msg("request body is not JSON: %s", je.text);
    const char *k;
    json_t *v;
    json_object_foreach(b, k, v)
    {
        if (strcmp(k, "model") && strcmp(k, "messages") && strcmp(k, "temperature") &&
            strcmp(k, "max_tokens"))
            fail_msg("unexpected field \"%s\" in the request", k);
    }
    assert_string_equal(str(b, "model"), "test-model");
    json_t *msgs = json_object_get(b, "messages");
    assert_int_equal(json_array_size(msgs), 2);
    assert_string_equal(str(json_array_get(msgs, 0), "role"), "system");
    assert_string_equal(str(json_array_get(msgs, 1), "role"), "user");
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(json_object_size(json_array_get(msgs, i)), 2);
        assert_non_null(str(json_array_get(msgs, i), "content"));
    }
    assert_true(json_is_number(json_object_get(b, "temperature")));
    assert_true(json_is_integer(json_object_get(b, "max_tokens")));
    const char *user = str(json_array_get(msgs, 1), "content");
    assert_non_null(strstr(user, message));
    /* every answered item's title is there, no item id is */
    size_t i;
    json_t *it;
    json_array_foreach(items, i, it)
    {
        if (str(it, "title")) assert_non_null(strstr(user, str(it, "title")));
        const char *id = str(it, "item");
        if (!str(it, "title") || !strstr(str(it, "title"), id)) assert_null(strstr(body, id));
    }
    return b;
}

static void test_request_minimised(void **state)
{
    fx *x = *state;
    static const char *const bought[] = {"22960", "22961", "21137", "85099B"};
    /* a shopper with a history, without personalisation consent: the
     * answer is not personal, so it may be phrased */
    add_purchases(x->s, "llm-shopper-7", bought, 4);
    pvg_access g;
    pvg_access_init(&g, x->s, "test");
    assert_int_equal(pvg_access_consent_change(&g, "llm-shopper-7", 0, -1, NULL, NULL), PVG_OK);
    fake_set(&x->f, OK);
    const char *first = "a red lantern for my sister under \xC2\xA3"
                        "10";
    json_t *o = ask(x, x->llm, "llm-shopper-7", NULL, first);
    assert_string_equal(phrasing(o, "by"), "llm");
    assert_true(json_is_null(json_object_get(json_object_get(o, "phrasing"), "reason")));
    assert_string_equal(str(o, "answer"), PHRASED);
    assert_true(json_array_size(json_object_get(o, "items")) > 0);
    /* the items are the built-in retrieval's, whatever the model says */
    json_t *p = ask(x, x->plain, "llm-shopper-7", NULL, first);
    assert_true(json_equal(json_object_get(o, "items"), json_object_get(p, "items")));
    assert_string_equal(phrasing(p, "by"), "builtin");
    pthread_mutex_lock(&x->f.mu);
    char *body1 = strdup(x->f.body);
    assert_string_equal(x->f.auth, "Bearer " KEY);
    pthread_mutex_unlock(&x->f.mu);
    json_t *b = check_body(body1, first, json_object_get(o, "items"));
    json_decref(b);
    /* no identifier: external id, pseudonym (hex), conversation id */
    unsigned char ps[PVG_PSEUDONYM_BYTES];
    pvg_store_pseudonym(x->s, "llm-shopper-7", ps);
    char hex[2 * PVG_PSEUDONYM_BYTES + 1];
    sodium_bin2hex(hex, sizeof hex, ps, sizeof ps);
    assert_null(strstr(body1, "llm-shopper-7"));
    assert_null(strstr(body1, hex));
    assert_null(strstr(body1, str(o, "conversation")));
    assert_null(strstr(body1, KEY));
    /* a follow-up sends only its own message: not the first turn's */
    char conv[64];
    snprintf(conv, sizeof conv, "%s", str(o, "conversation"));
    json_t *o2 = ask(x, x->llm, "llm-shopper-7", conv, "cheaper");
    assert_string_equal(phrasing(o2, "by"), "llm");
    pthread_mutex_lock(&x->f.mu);
    char *body2 = strdup(x->f.body);
    pthread_mutex_unlock(&x->f.mu);
    json_decref(check_body(body2, "cheaper", json_object_get(o2, "items")));
    assert_null(strstr(body2, "sister"));
    assert_null(strstr(body2, conv));
    assert_null(strstr(body2, "llm-shopper-7"));
    /* the purchased items' ids appear nowhere */
    for (size_t i = 0; i < 4; i++) {
        char needle[32];
        snprintf(needle, sizeof needle, "\"%s\"", bought[i]);
        assert_null(strstr(body1, needle));
        assert_null(strstr(body2, needle));
    }
    free(body1);
    free(body2);
    json_decref(o);
    json_decref(o2);
    json_decref(p);
}

static void test_personal_answer_not_sent(void **state)
{
    fx *x = *state;
    static const char *const bought[] = {"22960", "22961", "21137", "85099B", "22197"};
    add_purchases(x->s, "llm-consenting", bought, 5);
    fake_set(&x->f, OK);
    pthread_mutex_lock(&x->f.mu);
    int before = x->f.requests;
    pthread_mutex_unlock(&x->f.mu);
    json_t *o = ask(x, x->llm, "llm-consenting", NULL, "red christmas candle holder");
    assert_true(json_is_true(json_object_get(o, "personalized")));
    assert_string_equal(phrasing(o, "by"), "builtin");
    assert_non_null(strstr(phrasing(o, "reason"), "personalised"));
    pthread_mutex_lock(&x->f.mu);
    assert_int_equal(x->f.requests, before);
    pthread_mutex_unlock(&x->f.mu);
    json_decref(o);
}

static void fallback(fx *x, mode m, const char *want_reason)
{
    fake_set(&x->f, m);
    json_t *o = ask(x, x->llm, NULL, NULL, "cake cases");
    json_t *p = ask(x, x->plain, NULL, NULL, "cake cases");
    if (m == SLOW) fake_release(&x->f);
    assert_string_equal(phrasing(o, "by"), "builtin");
    const char *r = phrasing(o, "reason");
    if (!r || !strstr(r, want_reason))
        fail_msg("mode %d: reason \"%s\", expected it to hold \"%s\"", (int)m, r ? r : "(none)",
                 want_reason);
    assert_null(strstr(r, KEY));
    /* the built-in answer, and the same items */
    assert_string_equal(str(o, "answer"), str(p, "answer"));
    assert_true(json_equal(json_object_get(o, "items"), json_object_get(p, "items")));
    assert_true(json_array_size(json_object_get(o, "items")) > 0);
    json_decref(o);
    json_decref(p);
}

static void test_fallbacks(void **state)
{
    fx *x = *state;
    fallback(x, STATUS_500, "(HTTP error status)");
    fallback(x, NOT_JSON, "malformed reply: not JSON");
    fallback(x, NO_CHOICES, "malformed reply: no string choices[0].message.content");
    fallback(x, EMPTY, "empty reply");
    fallback(x, SLOW, "timeout after 300 ms");
    /* the plain assistant says no model is configured */
    json_t *p = ask(x, x->plain, NULL, NULL, "lanterns");
    assert_string_equal(phrasing(p, "reason"), "no language model configured");
    assert_non_null(strstr(str(p, "answer"), "Here are"));
    json_decref(p);
}

typedef struct asker {
    fx *x;
    pvg_assistant *a;
    char *out;
    pvg_status st;
} asker;

static void *ask_thread(void *p)
{
    asker *t = p;
    pvg_access g;
    pvg_access_init(&g, t->x->s, "test");
    pvg_assist_request rq = {0};
    rq.message = "lanterns";
    pvg_error err;
    pvg_error_clear(&err);
    t->st = pvg_assistant_ask(t->a, &g, &rq, &t->out, &err);
    return NULL;
}

/* Two requests stalled at the endpoint: a third answer does not wait for
 * them (the built-in text at once, "busy"), so a stalled endpoint cannot
 * hold every server worker. */
static void test_inflight_cap(void **state)
{
    fx *x = *state;
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/v1/chat/completions", x->f.port);
    pvg_assistant_options o = {0};
    o.llm.url = url;
    o.llm.timeout_ms = 60000;
    pvg_assistant *a = NULL;
    assert_int_equal(pvg_assistant_new(&o, &a, NULL), PVG_OK);
    fake_set(&x->f, SLOW);
    pthread_mutex_lock(&x->f.mu);
    int before = x->f.requests;
    pthread_mutex_unlock(&x->f.mu);
    asker t[2] = {{x, a, NULL, PVG_OK}, {x, a, NULL, PVG_OK}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&th[i], NULL, ask_thread, &t[i]), 0);
    pthread_mutex_lock(&x->f.mu);
    while (x->f.requests < before + 2)
        pthread_cond_wait(&x->f.cv, &x->f.mu);
    pthread_mutex_unlock(&x->f.mu);
    json_t *r = ask(x, a, NULL, NULL, "lanterns");
    assert_string_equal(phrasing(r, "by"), "builtin");
    assert_non_null(strstr(phrasing(r, "reason"), "busy"));
    json_decref(r);
    pthread_mutex_lock(&x->f.mu);
    assert_int_equal(x->f.requests, before + 2);
    pthread_mutex_unlock(&x->f.mu);
    fake_release(&x->f);
    for (int i = 0; i < 2; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(t[i].st, PVG_OK);
        json_t *o2 = json_loads(t[i].out, 0, NULL);
        assert_string_equal(phrasing(o2, "by"), "llm");
        json_decref(o2);
        pvg_free(t[i].out);
    }
    /* the slots are free again */
    fake_set(&x->f, OK);
    r = ask(x, a, NULL, NULL, "lanterns");
    assert_string_equal(phrasing(r, "by"), "llm");
    json_decref(r);
    pvg_assistant_free(a);
}

static void test_unreachable(void **state)
{
    fx *x = *state;
    /* a port that was just free: nothing listens there */
    struct MHD_Daemon *d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD, 0, NULL, NULL, handler,
                                            &x->f, MHD_OPTION_END);
    assert_non_null(d);
    int port = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT)->port;
    MHD_stop_daemon(d);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/v1/chat/completions", port);
    pvg_assistant_options o = {0};
    o.llm.url = url;
    o.llm.timeout_ms = 2000;
    pvg_assistant *a = NULL;
    pvg_error err;
    pvg_error_clear(&err);
    assert_int_equal(pvg_assistant_new(&o, &a, &err), PVG_OK);
    json_t *r = ask(x, a, NULL, NULL, "lanterns");
    assert_string_equal(phrasing(r, "by"), "builtin");
    assert_non_null(strstr(phrasing(r, "reason"), "request failed"));
    /* libcurl's message names the endpoint's host and port: not for callers */
    assert_null(strstr(phrasing(r, "reason"), "127.0.0.1"));
    json_decref(r);
    pvg_assistant_free(a);
}

static void test_key_file_and_options(void **state)
{
    fx *x = *state;
    pvg_assistant_options o = {0};
    o.llm.url = "http://127.0.0.1:9/v1/chat/completions";
    o.llm.key_file = x->keyfile;
    pvg_assistant *a = NULL;
    pvg_error err;
    /* readable by others: refused, the error names the file, not the key */
    assert_int_equal(chmod(x->keyfile, 0644), 0);
    pvg_error_clear(&err);
    assert_int_equal(pvg_assistant_new(&o, &a, &err), PVG_ERR_INVALID);
    assert_null(a);
    assert_non_null(strstr(err.text, x->keyfile));
    assert_null(strstr(err.text, KEY));
    assert_int_equal(chmod(x->keyfile, 0600), 0);
    /* missing; empty first line; a control character in the key */
    char path[320];
    snprintf(path, sizeof path, "%s.missing", x->keyfile);
    o.llm.key_file = path;
    assert_int_equal(pvg_assistant_new(&o, &a, &err), PVG_ERR_INVALID);
    static const char *const bad[] = {"\n" KEY "\n", "sk-ab\x01"
                                                     "cd\n"};
    for (size_t i = 0; i < 2; i++) {
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        fputs(bad[i], f);
        fclose(f);
        assert_int_equal(chmod(path, 0600), 0);
        pvg_error_clear(&err);
        assert_int_equal(pvg_assistant_new(&o, &a, &err), PVG_ERR_INVALID);
        assert_null(strstr(err.text, KEY));
        assert_null(strstr(err.text, "sk-ab"));
    }
    remove(path);
    /* URLs and timeouts */
    o.llm.key_file = NULL;
    o.llm.url = "ftp://127.0.0.1/x";
    assert_int_equal(pvg_assistant_new(&o, &a, &err), PVG_ERR_INVALID);
    o.llm.url = "http://127.0.0.1/a b";
    assert_int_equal(pvg_assistant_new(&o, &a, &err), PVG_ERR_INVALID);
    o.llm.url = "http://127.0.0.1/";
    o.llm.timeout_ms = -1;
    assert_int_equal(pvg_assistant_new(&o, &a, &err), PVG_ERR_INVALID);
    o.llm.timeout_ms = 0;
    assert_int_equal(pvg_assistant_new(&o, &a, &err), PVG_OK);
    pvg_assistant_free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_minimised), cmocka_unit_test(test_personal_answer_not_sent),
        cmocka_unit_test(test_fallbacks),         cmocka_unit_test(test_inflight_cap),
        cmocka_unit_test(test_unreachable),       cmocka_unit_test(test_key_file_and_options),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
