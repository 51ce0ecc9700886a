/*
 * recs_json.c - the personalised recommendation answer written straight
 * into one buffer: the same bytes as building it with jansson and
 * json_dumps(JSON_COMPACT | JSON_REAL_PRECISION(9)) (key order, string
 * escapes, number format), without a jansson object per field and item.
 */
#include "server/server_internal.h"

#include <math.h>
#include <stdint.h>
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

/* "%.9g" of v (finite, not zero) by exact integer arithmetic when
 * |v| = m * 2^-e2 with 0 < e2 <= 127 and at most 22 fraction digits are
 * needed (every price and score in practice): the 9 significant digits
 * rounded to nearest, ties to even, as glibc's printf rounds; 0 when v is
 * outside that range (the caller uses snprintf). */
static size_t g9_exact(double v, char *out)
{
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    int neg = (int)(bits >> 63);
    int be = (int)((bits >> 52) & 0x7ff);
    uint64_t m = bits & ((1ULL << 52) - 1);
    if (be == 0 || be == 0x7ff) return 0; /* subnormal, zero, not finite */
    m |= 1ULL << 52;
    int e2 = 1075 - be; /* |v| = m / 2^e2 */
    if (e2 <= 0 || e2 > 127) return 0;
    /* trailing zero bits off the mantissa: smaller numbers below */
    while (!(m & 1) && e2 > 1) {
        m >>= 1;
        e2--;
    }
    /* the decimal exponent from the binary one (|v| in [2^eb, 2^(eb+1)):
     * off by one at most, corrected below) */
    int d = (int)floor((be - 1023) * 0.30102999566398120);
    static const unsigned __int128 one = 1;
    unsigned __int128 q = 0;
    for (int tries = 0; tries < 4; tries++) {
        int s = 8 - d; /* digits = round(a * 10^s) */
        if (s < 0 || s > 22) return 0;
        unsigned __int128 p10 = 1;
        for (int i = 0; i < s; i++)
            p10 *= 10;
        unsigned __int128 n = (unsigned __int128)m * p10; /* < 2^53 * 10^22 < 2^127 */
        unsigned __int128 den = one << e2;
        q = n >> e2;
        unsigned __int128 rem = n & (den - 1);
        if (q >= 1000000000) {
            d++;
            continue;
        }
        if (q < 100000000) {
            d--;
            continue;
        }
        unsigned __int128 half = den >> 1;
        if (rem > half || (rem == half && (q & 1))) q++;
        if (q == 1000000000) {
            q = 100000000;
            d++;
        }
        break;
    }
    if (q < 100000000 || q >= 1000000000) return 0;
    char dig[10];
    unsigned long long u = (unsigned long long)q;
    for (int i = 8; i >= 0; i--) {
        dig[i] = (char)('0' + u % 10);
        u /= 10;
    }
    int nd = 9; /* significant digits without the trailing zeros (%g drops them) */
    while (nd > 1 && dig[nd - 1] == '0')
        nd--;
    size_t k = 0;
    if (neg) out[k++] = '-';
    if (d >= -4 && d < 9) {
        if (d >= 0) {
            for (int i = 0; i <= d; i++)
                out[k++] = i < nd ? dig[i] : '0';
            if (nd > d + 1) {
                out[k++] = '.';
                for (int i = d + 1; i < nd; i++)
                    out[k++] = dig[i];
            } else {
                out[k++] = '.'; /* jansson: ".0" when it reads as an integer */
                out[k++] = '0';
            }
        } else {
            out[k++] = '0';
            out[k++] = '.';
            for (int i = 0; i < -d - 1; i++)
                out[k++] = '0';
            for (int i = 0; i < nd; i++)
                out[k++] = dig[i];
        }
    } else {
        out[k++] = dig[0];
        if (nd > 1) {
            out[k++] = '.';
            for (int i = 1; i < nd; i++)
                out[k++] = dig[i];
        }
        /* jansson: no '+', no leading zeros in the exponent */
        k += (size_t)sprintf(out + k, "e%d", d);
    }
    out[k] = 0;
    return k;
}

size_t pvg_srv_real9(double v, char out[40])
{
    if (!isfinite(v)) { /* no JSON number: snprintf would give "nan", "inf" */
        out[0] = 0;
        return 0;
    }
    size_t k = g9_exact(v, out);
    if (k) return k;
    int n = snprintf(out, 40, "%.9g", v);
    if (n < 0 || n >= 36) {
        out[0] = 0;
        return 0;
    }
    for (char *q = out; *q; q++)
        if (*q == ',') *q = '.'; /* a locale's decimal comma */
    if (!strchr(out, '.') && !strchr(out, 'e')) strcat(out, ".0");
    char *e = strchr(out, 'e');
    if (e) {
        char *start = e + 1, *end = e + 2;
        if (*start == '-') start++;
        while (*end == '0')
            end++;
        if (end != start) memmove(start, end, strlen(end) + 1);
    }
    return strlen(out);
}

/* A real as jansson writes it with precision 9 (pvg_srv_real9). */
static void put_real(buf *b, double v)
{
    char t[40];
    size_t n = pvg_srv_real9(v, t);
    if (!n) {
        b->bad = 1;
        return;
    }
    put(b, t, n);
}

/* Whether entry c of item id may be written by pvg_srv_recs_json. */
static int entry_ok(const char *id, const pvg_srv_catalog_entry *c)
{
    return !(id && !utf8_ok(id)) && !(c->title && !utf8_ok(c->title)) &&
           !(c->price >= 0 && !isfinite(c->price)) &&
           !(c->last_price >= 0 && !isfinite(c->last_price));
}

void pvg_srv_catalog_json_mark(pvg_srv_model *m)
{
    size_t n = pvg_model_n_items(m->model);
    for (size_t i = 0; i < n; i++)
        m->catalog[i].json_ok =
            entry_ok(pvg_model_item_id(m->model, (int64_t)i), &m->catalog[i]) ? 1 : 2;
}

char *pvg_srv_recs_json(const pvg_srv_model *m, const char *user, const pvg_scored_item *items,
                        size_t n, size_t *len)
{
    *len = 0;
    if (!utf8_ok(user)) return NULL;
    for (size_t i = 0; i < n; i++) {
        const pvg_srv_catalog_entry *c = &m->catalog[items[i].item_index];
        if (c->json_ok == 2 ||
            (c->json_ok == 0 && !entry_ok(pvg_model_item_id(m->model, items[i].item_index), c)))
            return NULL; /* jansson's way (a key left out) is the reference: use it */
    }
    /* one allocation in the usual case: the strings' lengths and room for
     * the fixed text and numbers of each item */
    size_t want = 128 + strlen(user);
    for (size_t i = 0; i < n; i++) {
        const char *id = pvg_model_item_id(m->model, items[i].item_index);
        const char *t = m->catalog[items[i].item_index].title;
        want += 128 + (id ? strlen(id) : 0) + (t ? strlen(t) : 0);
    }
    buf b = {malloc(want), 0, want, 0};
    if (!b.p) return NULL;
    b.p[0] = 0;
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
