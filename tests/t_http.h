/*
 * t_http.h - a tiny HTTP/1.1 client for the tests that talk to a live server
 * on 127.0.0.1 (linked into every test): one request per connection
 * (Connection: close), 10 s send and receive timeouts, so no test can hang
 * on a silent server.
 */
#ifndef PVG_T_HTTP_H
#define PVG_T_HTTP_H

#include <jansson.h>
#include <stddef.h>

typedef struct t_http_resp {
    int status;
    char *body;         /* new (malloc): the bytes after the header block */
    char headers[4096]; /* the status line and headers, truncated to fit */
} t_http_resp;

/* Every later request connects to 127.0.0.1:*port. The int is borrowed and
 * read at each request, so a test that moves to another server by assigning
 * its port variable needs no other call. */
void t_http_connect_to(const int *port);

/* Frees r->body (r itself is the caller's). */
void t_http_resp_free(t_http_resp *r);

/* Sends raw bytes as they are (a crafted request) and reads the answer until
 * the server closes. Returns 0, or -1 when no connection or no status line
 * (then out holds no body). A server that answers early and closes (413)
 * is not an error. */
int t_http_raw(const char *raw, size_t raw_len, t_http_resp *out);

/* method path with "Authorization: Bearer cred" (cred may be NULL: none) and
 * a JSON body (may be NULL: empty). Returns as t_http_raw. */
int t_http(const char *method, const char *path, const char *cred, const char *body,
           t_http_resp *out);

/* Asserts (cmocka, reported at file:line) that the request gets status, that
 * a refusal (status >= 400) is JSON with a non-empty "message", and that an
 * answer whose Content-Type says JSON parses. Returns the parsed answer (new:
 * json_decref it), NULL for an answer that is not JSON (a page, metrics). */
json_t *t_http_expect_at(const char *file, int line, const char *method, const char *path,
                         const char *cred, const char *body, int status);

/* The short names the server tests call the client by; expect() and
 * expect_free() report a failure at the caller's line. */
typedef t_http_resp resp;

static inline void resp_free(resp *r)
{
    t_http_resp_free(r);
}

static inline int http_raw(const char *raw, size_t raw_len, resp *out)
{
    return t_http_raw(raw, raw_len, out);
}

static inline int http(const char *method, const char *path, const char *cred, const char *body,
                       resp *out)
{
    return t_http(method, path, cred, body, out);
}

#define expect(method, path, cred, body, status)                                                   \
    t_http_expect_at(__FILE__, __LINE__, method, path, cred, body, status)
#define expect_free(method, path, cred, body, status)                                              \
    json_decref(t_http_expect_at(__FILE__, __LINE__, method, path, cred, body, status))

#endif
