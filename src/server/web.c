/*
 * web.c - serves the pages and their assets from the web directory
 * (pvg_server_options.web_dir): plain files with a fixed set of extensions,
 * names restricted to [A-Za-z0-9._-] so no path can leave the directory.
 */
#include "server/server_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct {
    const char *ext, *ctype;
} TYPES[] = {
    {".html", "text/html; charset=utf-8"},
    {".css", "text/css; charset=utf-8"},
    {".js", "text/javascript; charset=utf-8"},
    {".svg", "image/svg+xml"},
    {".png", "image/png"},
    {".ico", "image/x-icon"},
    {".wasm", "application/wasm"}, /* the browser federated client (wasm/) */
};

void pvg_srv_serve_static(pvg_srv_req *r, const char *name)
{
    if (!r->srv->web_dir) {
        pvg_srv_reply_error(r, 404, "not_found",
                            "pages are not served (no web directory configured)");
        return;
    }
    size_t len = strlen(name);
    int ok = len > 0 && len < 128 && name[0] != '.';
    for (size_t i = 0; ok && i < len; i++) {
        char c = name[i];
        ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
             c == '.' || c == '_' || c == '-';
    }
    const char *ctype = NULL;
    for (size_t i = 0; ok && i < sizeof TYPES / sizeof TYPES[0]; i++) {
        size_t el = strlen(TYPES[i].ext);
        if (len > el && strcmp(name + len - el, TYPES[i].ext) == 0) ctype = TYPES[i].ctype;
    }
    if (!ok || !ctype) {
        pvg_srv_reply_error(r, 404, "not_found", "no page asset \"%.100s\"", name);
        return;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", r->srv->web_dir, name);
    FILE *f = fopen(path, "rb");
    if (!f) {
        pvg_srv_reply_error(r, 404, "not_found", "no page asset \"%.100s\"", name);
        return;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (n < cap) break;
        if (cap >= (8u << 20)) {
            free(buf);
            buf = NULL;
            break;
        }
        char *nb = realloc(buf, cap * 2);
        if (!nb) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = nb;
        cap *= 2;
    }
    fclose(f);
    if (!buf) {
        pvg_srv_reply_error(r, 500, "internal", "cannot read page asset \"%.100s\"", name);
        return;
    }
    free(r->out);
    r->out = buf;
    r->out_len = n;
    r->status = 200;
    r->ctype = ctype;
}
