/*
 * text.c - UTF-8 validation, Latin-1 transcoding, date-time parsing and
 * formatting, money rounding (see text.h).
 */
#include "store/text.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

long long pvg_utf8_invalid_at(const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < n) {
        /* Fast path over ASCII, 8 bytes at a time. */
        while (i + 8 <= n) {
            uint64_t w;
            memcpy(&w, s + i, 8);
            if (w & 0x8080808080808080ull) break;
            i += 8;
        }
        if (i >= n) break;
        unsigned char c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t len;
        uint32_t cp;
        if (c >= 0xC2 && c <= 0xDF) {
            len = 2;
            cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            len = 3;
            cp = c & 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            len = 4;
            cp = c & 0x07;
        } else
            return (long long)i;
        if (i + len > n) return (long long)i;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return (long long)i;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return (long long)i;
        i += len;
    }
    return -1;
}

size_t pvg_latin1_to_utf8(const char *str, size_t n, char *out)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < 0x80)
            out[o++] = (char)s[i];
        else {
            out[o++] = (char)(0xC0 | (s[i] >> 6));
            out[o++] = (char)(0x80 | (s[i] & 0x3F));
        }
    }
    out[o] = '\0';
    return o;
}

int64_t pvg_days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = (unsigned)(y - era * 400);
    const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static int days_in_month(int64_t y, unsigned m)
{
    static const int dm[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0)) return 29;
    return dm[m - 1];
}

/* Reads 1..maxd digits; returns digits read (0 = none). */
static int digits(const char **p, int maxd, long *out)
{
    long v = 0;
    int n = 0;
    while (n < maxd && **p >= '0' && **p <= '9') {
        v = v * 10 + (**p - '0');
        (*p)++;
        n++;
    }
    *out = v;
    return n;
}

int pvg_parse_datetime(const char *s, int64_t *out)
{
    long y, mo, d, h = 0, mi = 0, sec = 0;
    const char *p = s;
    long a;
    int na = digits(&p, 4, &a);
    if (na == 4 && *p == '-') {
        y = a;
        p++;
        if (digits(&p, 2, &mo) != 2 || *p++ != '-' || digits(&p, 2, &d) != 2) return -1;
        if (*p == ' ' || *p == 'T') {
            p++;
            if (digits(&p, 2, &h) != 2 || *p++ != ':' || digits(&p, 2, &mi) != 2) return -1;
            if (*p == ':') {
                p++;
                if (digits(&p, 2, &sec) != 2) return -1;
                if (*p == '.') { /* fractional seconds: ignored */
                    p++;
                    long frac;
                    if (!digits(&p, 9, &frac)) return -1;
                }
            }
        }
    } else if (na >= 1 && na <= 2 && *p == '/') {
        mo = a;
        p++;
        if (!digits(&p, 2, &d) || *p++ != '/' || digits(&p, 4, &y) != 4) return -1;
        if (*p == ' ') {
            p++;
            if (!digits(&p, 2, &h) || *p++ != ':' || digits(&p, 2, &mi) != 2) return -1;
            if (*p == ':') {
                p++;
                if (digits(&p, 2, &sec) != 2) return -1;
            }
        }
    } else
        return -1;
    long off = 0;
    if (*p == 'Z')
        p++;
    else if (*p == '+' || *p == '-') {
        int sign = *p == '-' ? -1 : 1;
        p++;
        long oh, om = 0;
        if (digits(&p, 2, &oh) != 2) return -1;
        if (*p == ':') p++;
        if (*p) {
            if (digits(&p, 2, &om) != 2) return -1;
        }
        if (oh > 23 || om > 59) return -1;
        off = sign * (oh * 3600 + om * 60);
    }
    if (*p) return -1;
    if (y < 1970 || y > 9999 || mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, (unsigned)mo) ||
        h > 23 || mi > 59 || sec > 60)
        return -1;
    *out =
        pvg_days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 + h * 3600 + mi * 60 + sec - off;
    return 0;
}

void pvg_format_datetime(int64_t t, char *buf, size_t cap)
{
    int64_t days = t >= 0 ? t / 86400 : -((-t + 86399) / 86400);
    int64_t rem = t - days * 86400;
    /* civil_from_days */
    int64_t z = days + 719468;
    const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    const unsigned doe = (unsigned)(z - era * 146097);
    const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t y = (int64_t)yoe + era * 400;
    const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const unsigned mp = (5 * doy + 2) / 153;
    const unsigned d = doy - (153 * mp + 2) / 5 + 1;
    const unsigned m = mp < 10 ? mp + 3 : mp - 9;
    y += m <= 2;
    snprintf(buf, cap, "%04lld-%02u-%02uT%02d:%02d:%02dZ", (long long)y, m, d, (int)(rem / 3600),
             (int)(rem / 60 % 60), (int)(rem % 60));
}

double pvg_round_cents(double x)
{
    return round(x * 100.0) / 100.0;
}
