/*
 * llm.c - the assistant's optional language model (docs/assistant.md,
 * "Language model"): an OpenAI-compatible chat-completions endpoint that
 * phrases an answer the built-in retrieval has already made. What it is
 * sent is minimised (the current message; per answered item its title,
 * price and category); what it returns is only text, never items. Every
 * failure leaves the built-in text and a reason. libcurl, one easy handle
 * per call (no shared state between threads).
 */
#include "assistant/assist_internal.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdatomic.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define LLM_DEFAULT_MODEL "gpt-4o-mini"
#define LLM_DEFAULT_TIMEOUT_MS 5000
#define LLM_MAX_TIMEOUT_MS 120000
#define LLM_KEY_FILE_MAX 4096
#define LLM_REPLY_BYTES_MAX (256 * 1024) /* the HTTP reply read at most */
#define LLM_URL_MAX 2048
#define LLM_MODEL_MAX 200
/* requests in flight at once; more answers keep the built-in text, so a
 * slow endpoint cannot hold every server worker for its timeout */
#define LLM_INFLIGHT_MAX 2

/* The instruction sent with every request (docs/assistant.md quotes it). */
static const char LLM_SYSTEM[] =
    "You phrase the answer of a shop's assistant. Reply to the shopper's message in one to three "
    "short sentences, recommending only the numbered items given, by their titles, in their "
    "order. Never mention any other product, never invent prices or details, and do not ask "
    "questions.";

struct pvg_assist_llm {
    char *url;
    char *model;
    char *auth; /* "Authorization: Bearer <key>" in sodium_malloc memory; NULL: no key */
    long timeout_ms;
    atomic_int inflight;
};

void pvg_assist_llm_free(pvg_assist_llm *l)
{
    if (!l) return;
    free(l->url);
    free(l->model);
    if (l->auth) sodium_free(l->auth); /* wipes */
    free(l);
    curl_global_cleanup();
}

/* The key file's first line into l->auth. */
static pvg_status read_key(pvg_assist_llm *l, const char *path, pvg_error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return pvg_error_set(err, PVG_ERR_INVALID, "llm key file %s: cannot open (%s)", path,
                             strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return pvg_error_set(err, PVG_ERR_INVALID, "llm key file %s: not a regular file", path);
    }
    if (sb.st_mode & 077) {
        close(fd);
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "llm key file %s: readable or writable by group or others (mode "
                             "%03o; expected 0600 or 0400)",
                             path, (unsigned)(sb.st_mode & 0777));
    }
    if (sb.st_size > LLM_KEY_FILE_MAX) {
        close(fd);
        return pvg_error_set(err, PVG_ERR_INVALID, "llm key file %s: larger than %d bytes", path,
                             LLM_KEY_FILE_MAX);
    }
    char *buf = sodium_malloc(LLM_KEY_FILE_MAX + 1);
    if (!buf) {
        close(fd);
        return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    }
    size_t n = 0;
    for (;;) {
        ssize_t r = read(fd, buf + n, LLM_KEY_FILE_MAX - n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            int e = errno;
            close(fd);
            sodium_free(buf);
            return pvg_error_set(err, PVG_ERR_INVALID, "llm key file %s: cannot read (%s)", path,
                                 strerror(e));
        }
        if (r == 0 || (n += (size_t)r) == LLM_KEY_FILE_MAX) break;
    }
    close(fd);
    /* the first line, trailing blanks and CR removed */
    size_t len = 0;
    while (len < n && buf[len] != '\n')
        len++;
    while (len && (buf[len - 1] == '\r' || buf[len - 1] == ' ' || buf[len - 1] == '\t'))
        len--;
    size_t start = 0;
    while (start < len && (buf[start] == ' ' || buf[start] == '\t'))
        start++;
    pvg_status st = PVG_OK;
    if (start == len)
        st = pvg_error_set(err, PVG_ERR_INVALID, "llm key file %s: the first line is empty", path);
    for (size_t i = start; i < len && st == PVG_OK; i++)
        if ((unsigned char)buf[i] < 0x21 || (unsigned char)buf[i] > 0x7e)
            st = pvg_error_set(err, PVG_ERR_INVALID,
                               "llm key file %s: byte %zu of the key is not a printable ASCII "
                               "character",
                               path, i);
    if (st == PVG_OK) {
        static const char pre[] = "Authorization: Bearer ";
        l->auth = sodium_malloc(sizeof pre + (len - start));
        if (!l->auth)
            st = pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
        else {
            memcpy(l->auth, pre, sizeof pre - 1);
            memcpy(l->auth + sizeof pre - 1, buf + start, len - start);
            l->auth[sizeof pre - 1 + len - start] = '\0';
        }
    }
    sodium_free(buf); /* wipes */
    return st;
}

pvg_status pvg_assist_llm_new(const pvg_assist_llm_options *o, pvg_assist_llm **out, pvg_error *err)
{
    *out = NULL;
    if (!o || !o->url || !o->url[0]) return PVG_OK;
    size_t ul = strlen(o->url);
    if (ul > LLM_URL_MAX ||
        (strncasecmp(o->url, "http://", 7) != 0 && strncasecmp(o->url, "https://", 8) != 0))
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "llm url: expected an http:// or https:// URL of at most %d bytes",
                             LLM_URL_MAX);
    for (size_t i = 0; i < ul; i++)
        if ((unsigned char)o->url[i] <= 0x20 || (unsigned char)o->url[i] >= 0x7f)
            return pvg_error_set(err, PVG_ERR_INVALID,
                                 "llm url: byte %zu is a space or not printable ASCII", i);
    const char *model = o->model && o->model[0] ? o->model : LLM_DEFAULT_MODEL;
    if (strlen(model) > LLM_MODEL_MAX)
        return pvg_error_set(err, PVG_ERR_INVALID, "llm model: longer than %d bytes",
                             LLM_MODEL_MAX);
    if (o->timeout_ms < 0 || o->timeout_ms > LLM_MAX_TIMEOUT_MS)
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "llm timeout: expected 1..%d ms (0: %d), got %ld", LLM_MAX_TIMEOUT_MS,
                             LLM_DEFAULT_TIMEOUT_MS, o->timeout_ms);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return pvg_error_set(err, PVG_ERR_INTERNAL, "llm: libcurl initialisation failed");
    pvg_assist_llm *l = calloc(1, sizeof *l);
    if (!l) {
        curl_global_cleanup();
        return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    }
    l->url = strdup(o->url);
    l->model = strdup(model);
    l->timeout_ms = o->timeout_ms ? o->timeout_ms : LLM_DEFAULT_TIMEOUT_MS;
    if (!l->url || !l->model) {
        pvg_assist_llm_free(l);
        return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    }
    if (o->key_file && o->key_file[0]) {
        pvg_status st = read_key(l, o->key_file, err);
        if (st != PVG_OK) {
            pvg_assist_llm_free(l);
            return st;
        }
    }
    *out = l;
    return PVG_OK;
}

char *pvg_assist_llm_body(const pvg_assist_llm *l, const char *message, json_t *items)
{
    size_t cap = 256 + strlen(message);
    size_t i;
    json_t *it;
    json_array_foreach(items, i, it)
    {
        const char *t = json_string_value(json_object_get(it, "title"));
        const char *c = json_string_value(json_object_get(it, "category"));
        cap += 64 + (t ? strlen(t) : 0) + (c ? strlen(c) : 0);
    }
    char *user = malloc(cap);
    if (!user) return NULL;
    size_t n = (size_t)snprintf(user, cap,
                                "Shopper's message: %s\nItems (the only products you may "
                                "mention):",
                                message);
    json_array_foreach(items, i, it)
    {
        const char *t = json_string_value(json_object_get(it, "title"));
        const char *c = json_string_value(json_object_get(it, "category"));
        json_t *p = json_object_get(it, "price");
        char price[32] = "unknown";
        if (json_is_number(p)) snprintf(price, sizeof price, "%.2f", json_number_value(p));
        int k = snprintf(user + n, cap - n, "\n%zu. %s | price %s | category %s", i + 1,
                         t ? t : "(no title)", price, c ? c : "none");
        if (k < 0 || (size_t)k >= cap - n) break;
        n += (size_t)k;
    }
    json_t *body = json_pack("{s:s, s:[{s:s, s:s}, {s:s, s:s}], s:f, s:i}", "model", l->model,
                             "messages", "role", "system", "content", LLM_SYSTEM, "role", "user",
                             "content", user, "temperature", 0.2, "max_tokens", 300);
    free(user);
    if (!body) return NULL;
    char *text = json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(body);
    return text;
}

typedef struct reply_buf {
    char *p;
    size_t n, cap;
    int too_big;
} reply_buf;

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *ctx)
{
    reply_buf *b = ctx;
    size_t len = size * nmemb;
    if (b->n + len > LLM_REPLY_BYTES_MAX) {
        b->too_big = 1;
        return 0; /* aborts the transfer */
    }
    if (b->n + len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + len + 1)
            cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q) return 0;
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->n, ptr, len);
    b->n += len;
    b->p[b->n] = '\0';
    return len;
}

/* The phrased text of a chat-completions reply: choices[0].message.content,
 * trimmed, control characters other than newlines made spaces. */
static char *reply_text(const reply_buf *b, char *reason, size_t cap)
{
    json_error_t je;
    json_t *r = json_loadb(b->p ? b->p : "", b->n, 0, &je);
    if (!r) {
        snprintf(reason, cap, "malformed reply: not JSON (byte %d: %s)", je.position, je.text);
        return NULL;
    }
    json_t *content = json_object_get(
        json_object_get(json_array_get(json_object_get(r, "choices"), 0), "message"), "content");
    if (!json_is_string(content)) {
        json_decref(r);
        snprintf(reason, cap, "malformed reply: no string choices[0].message.content");
        return NULL;
    }
    const char *s = json_string_value(content);
    size_t len = json_string_length(content);
    while (len && (unsigned char)*s <= 0x20) {
        s++;
        len--;
    }
    while (len && (unsigned char)s[len - 1] <= 0x20)
        len--;
    char *out = NULL;
    if (!len)
        snprintf(reason, cap, "empty reply");
    else if (len > PVG_ASSIST_LLM_REPLY_MAX)
        snprintf(reason, cap, "malformed reply: text of %zu bytes (more than %d)", len,
                 PVG_ASSIST_LLM_REPLY_MAX);
    else if (!(out = malloc(len + 1)))
        snprintf(reason, cap, "out of memory");
    else {
        for (size_t i = 0; i < len; i++) {
            unsigned char ch = (unsigned char)s[i];
            out[i] = (ch < 0x20 && ch != '\n') || ch == 0x7f ? ' ' : (char)ch;
        }
        out[len] = '\0';
    }
    json_decref(r);
    return out;
}

int pvg_assist_llm_phrase(const pvg_assist_llm *l, const char *message, json_t *items, char **text,
                          char *reason, size_t cap)
{
    *text = NULL;
    pvg_assist_llm *lm = (pvg_assist_llm *)l; /* the in-flight counter only */
    if (atomic_fetch_add(&lm->inflight, 1) >= LLM_INFLIGHT_MAX) {
        atomic_fetch_sub(&lm->inflight, 1);
        snprintf(reason, cap, "busy: %d requests already in flight", LLM_INFLIGHT_MAX);
        return 0;
    }
    char *body = pvg_assist_llm_body(l, message, items);
    if (!body) {
        atomic_fetch_sub(&lm->inflight, 1);
        snprintf(reason, cap, "out of memory");
        return 0;
    }
    CURL *h = curl_easy_init();
    struct curl_slist *hdr = NULL, *tmp;
    reply_buf b = {0};
    char errbuf[CURL_ERROR_SIZE] = "";
    int ok = 0;
    if (!h) {
        snprintf(reason, cap, "libcurl: cannot create a handle");
        goto done;
    }
    hdr = curl_slist_append(NULL, "Content-Type: application/json");
    if (hdr && (tmp = curl_slist_append(hdr, "Expect:"))) hdr = tmp;
    if (hdr && l->auth && (tmp = curl_slist_append(hdr, l->auth))) hdr = tmp;
    if (!hdr) {
        snprintf(reason, cap, "out of memory");
        goto done;
    }
    curl_easy_setopt(h, CURLOPT_URL, l->url);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, l->timeout_ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, l->timeout_ms);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L); /* the key goes to the configured URL only */
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
#else
    curl_easy_setopt(h, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    CURLcode rc = curl_easy_perform(h);
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    if (rc == CURLE_OPERATION_TIMEDOUT)
        snprintf(reason, cap, "timeout after %ld ms", l->timeout_ms);
    else if (b.too_big)
        snprintf(reason, cap, "malformed reply: larger than %d bytes", LLM_REPLY_BYTES_MAX);
    else if (rc != CURLE_OK)
        snprintf(reason, cap, "request failed: %s", errbuf[0] ? errbuf : curl_easy_strerror(rc));
    else if (status < 200 || status > 299)
        snprintf(reason, cap, "HTTP status %ld", status);
    else if ((*text = reply_text(&b, reason, cap)))
        ok = 1;
done:
    curl_slist_free_all(hdr);
    if (h) curl_easy_cleanup(h);
    free(b.p);
    free(body);
    atomic_fetch_sub(&lm->inflight, 1);
    return ok;
}
