/* t_http.c - the tests' HTTP/1.1 client (t_http.h). */
#define _GNU_SOURCE /* strcasestr */
#include "t_http.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

static const int *port_of_server;

void t_http_connect_to(const int *port)
{
    port_of_server = port;
}

void t_http_resp_free(t_http_resp *r)
{
    free(r->body);
    r->body = NULL;
}

int t_http_raw(const char *raw, size_t raw_len, t_http_resp *out)
{
    memset(out, 0, sizeof *out);
    if (!port_of_server) {
        fprintf(stderr, "t_http: no server port (t_http_connect_to)\n");
        return -1;
    }
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)*port_of_server);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    size_t off = 0;
    while (off < raw_len) {
        ssize_t k = send(fd, raw + off, raw_len - off, MSG_NOSIGNAL);
        if (k <= 0) break; /* the server may answer early (413) and close */
        off += (size_t)k;
    }
    size_t cap = 65536, n = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    for (;;) {
        if (n + 1 >= cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
        ssize_t k = recv(fd, buf + n, cap - n - 1, 0);
        if (k <= 0) break;
        n += (size_t)k;
    }
    close(fd);
    buf[n] = 0;
    if (sscanf(buf, "HTTP/1.%*d %d", &out->status) != 1) {
        free(buf);
        return -1;
    }
    char *sep = strstr(buf, "\r\n\r\n");
    if (sep) {
        size_t hl = (size_t)(sep - buf);
        if (hl >= sizeof out->headers) hl = sizeof out->headers - 1;
        memcpy(out->headers, buf, hl);
        out->headers[hl] = 0;
        out->body = strdup(sep + 4);
    } else {
        out->body = strdup("");
    }
    free(buf);
    return 0;
}

int t_http(const char *method, const char *path, const char *cred, const char *body,
           t_http_resp *out)
{
    size_t bl = body ? strlen(body) : 0;
    size_t cap = bl + 1024 + strlen(path);
    char *raw = malloc(cap);
    assert_non_null(raw);
    int n = snprintf(raw, cap,
                     "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n%s%s%s"
                     "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
                     method, path, cred ? "Authorization: Bearer " : "", cred ? cred : "",
                     cred ? "\r\n" : "", bl);
    if (bl) memcpy(raw + n, body, bl);
    int rc = t_http_raw(raw, (size_t)n + bl, out);
    free(raw);
    return rc;
}

json_t *t_http_expect_at(const char *file, int line, const char *method, const char *path,
                         const char *cred, const char *body, int status)
{
    t_http_resp r;
    _assert_int_equal(t_http(method, path, cred, body, &r), 0, file, line);
    if (r.status != status)
        fprintf(stderr, "%s:%d: %s %s: got %d, want %d: %s\n", file, line, method, path, r.status,
                status, r.body);
    _assert_int_equal(r.status, status, file, line);
    json_t *j = json_loads(r.body, 0, NULL);
    /* Refusals are JSON; so is every answer that says it is. */
    int want_json = status >= 400 || strcasestr(r.headers, "Content-Type: application/json");
    if (!j && want_json)
        fprintf(stderr, "%s:%d: %s %s: no JSON in: %.300s\n", file, line, method, path, r.body);
    t_http_resp_free(&r);
    if (want_json) _assert_true(j != NULL, "a JSON answer", file, line);
    if (status >= 400) {
        json_t *m = json_object_get(j, "message");
        _assert_true(json_is_string(m) && strlen(json_string_value(m)) > 0,
                     "a non-empty JSON \"message\"", file, line);
    }
    return j;
}
