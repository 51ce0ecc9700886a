/*
 * recs_json.c - the personalised recommendation answer written straight
 * into one buffer: the same bytes as building it with jansson and
 * json_dumps(JSON_COMPACT | JSON_REAL_PRECISION(9)) (key order, string
 * escapes, number format), without a jansson object per field and item.
 */
#include "server/server_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct buf {
    char *p;
    size_t n, cap;
    int bad; /* out of memory */
} buf;

static void put(buf *b, const char *s, size_t n)
{
    if (b->bad) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->n + n + 1)
            cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q) {
            b->bad = 1;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void puts_(buf *b, const char *s)
{
    put(b, s, strlen(s));
}

/* 1 when s is valid UTF-8 as jansson's json_string accepts it (no
 * overlong forms, no surrogates, nothing above U+10FFFF). */
static int utf8_ok(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        unsigned c = *p;
        size_t len;
        unsigned cp;
        if (c < 0x80) {
            p++;
            continue;
        } else if (c >= 0xC2 && c <= 0xDF) {
            len = 2;
            cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            len = 3;
            cp = c & 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            len = 4;
            cp = c & 0x07;
        } else {
            return 0;
        }
        for (size_t i = 1; i < len; i++) {
            if ((p[i] & 0xC0) != 0x80) return 0;
            cp = (cp << 6) | (p[i] & 0x3F);
        }
        if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10FFFF ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        p += len;
    }
    return 1;
}

/* A JSON string as jansson dumps it by default: '"' and '\\' escaped, the
 * control characters as \b \f \n \r \t or \u00XX, everything else (UTF-8,
 * '/') as it is. */
static void put_str(buf *b, const char *s)
{
    put(b, "\"", 1);
    const char *run = s;
    for (const char *p = s; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        put(b, run, (size_t)(p - run));
        run = p + 1;
        char esc[8];
        switch (c) {
        case '"':
            puts_(b, "\\\"");
            break;
        case '\\':
            puts_(b, "\\\\");
            break;
        case '\b':
            puts_(b, "\\b");
            break;
        case '\f':
            puts_(b, "\\f");
            break;
        case '\n':
            puts_(b, "\\n");
            break;
        case '\r':
            puts_(b, "\\r");
            break;
        case '\t':
            puts_(b, "\\t");
            break;
        default:
            snprintf(esc, sizeof esc, "\\u%04X", c);
            puts_(b, esc);
        }
    }
    puts_(b, run);
    put(b, "\"", 1);
}

/* A real as jansson writes it with precision 9: "%.9g", a ".0" when that
 * reads as an integer, no '+' or leading zeros in the exponent. */
static void put_real(buf *b, double v)
{
    char t[64];
    int n = snprintf(t, sizeof t, "%.9g", v);
    if (n < 0 || (size_t)n >= sizeof t - 3) {
        b->bad = 1;
        return;
    }
    for (char *q = t; *q; q++)
        if (*q == ',') *q = '.'; /* a locale's decimal comma */
    if (!strchr(t, '.') && !strchr(t, 'e')) strcat(t, ".0");
    char *e = strchr(t, 'e');
    if (e) {
        char *start = e + 1, *end = e + 2;
        if (*start == '-') start++;
        while (*end == '0')
            end++;
        if (end != start) memmove(start, end, strlen(end) + 1);
    }
    puts_(b, t);
}

char *pvg_srv_recs_json(const pvg_srv_model *m, const char *user, const pvg_scored_item *items,
                        size_t n, size_t *len)
{
    *len = 0;
    if (!utf8_ok(user)) return NULL;
    for (size_t i = 0; i < n; i++) {
        const char *id = pvg_model_item_id(m->model, items[i].item_index);
        const pvg_srv_catalog_entry *c = &m->catalog[items[i].item_index];
        if ((id && !utf8_ok(id)) || (c->title && !utf8_ok(c->title)) ||
            (c->price >= 0 && !isfinite(c->price)) ||
            (c->last_price >= 0 && !isfinite(c->last_price)))
            return NULL; /* jansson's way (a key left out) is the reference: use it */
    }
    buf b = {0};
    puts_(&b, "{\"user\":");
    put_str(&b, user);
    puts_(&b, ",\"personalized\":true,\"source\":\"model\",\"items\":[");
    for (size_t i = 0; i < n; i++) {
        const char *id = pvg_model_item_id(m->model, items[i].item_index);
        const pvg_srv_catalog_entry *c = &m->catalog[items[i].item_index];
        puts_(&b, i ? ",{\"item\":" : "{\"item\":");
        put_str(&b, id ? id : "");
        puts_(&b, ",\"title\":");
        if (c->title)
            put_str(&b, c->title);
        else
            puts_(&b, "null");
        puts_(&b, ",\"price\":");
        if (c->price >= 0)
            put_real(&b, c->price);
        else
            puts_(&b, "null");
        puts_(&b, ",\"last_price\":");
        if (c->last_price >= 0)
            put_real(&b, c->last_price);
        else
            puts_(&b, "null");
        puts_(&b, ",\"score\":");
        put_real(&b, isfinite(items[i].score) ? (double)items[i].score : 0.0);
        puts_(&b, "}");
    }
    char gen[32];
    snprintf(gen, sizeof gen, "],\"model_generation\":%ld}", m->generation);
    puts_(&b, gen);
    if (b.bad) {
        free(b.p);
        return NULL;
    }
    *len = b.n;
    return b.p;
}
