/*
 * mpc_table.c - the per-group tables of `mpc sum`: a sorted set of group
 * labels with int64 fixed-point totals, and the strict CSV reader that
 * fills one from a party's private file (errors name file:line:column).
 */
#include <privguide/secagg.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct pvg_mpc_table {
    unsigned decimals;
    size_t n, cap;
    char **labels;
    int64_t *values;
};

pvg_mpc_table *pvg_mpc_table_new(unsigned decimals)
{
    if (decimals > 9) return NULL;
    pvg_mpc_table *t = calloc(1, sizeof *t);
    if (t) t->decimals = decimals;
    return t;
}

void pvg_mpc_table_free(pvg_mpc_table *t)
{
    if (!t) return;
    for (size_t i = 0; i < t->n; i++)
        free(t->labels[i]);
    free(t->labels);
    free(t->values);
    free(t);
}

size_t pvg_mpc_table_count(const pvg_mpc_table *t)
{
    return t ? t->n : 0;
}
const char *pvg_mpc_table_label(const pvg_mpc_table *t, size_t i)
{
    return t && i < t->n ? t->labels[i] : NULL;
}
int64_t pvg_mpc_table_value(const pvg_mpc_table *t, size_t i)
{
    return t && i < t->n ? t->values[i] : 0;
}
unsigned pvg_mpc_table_decimals(const pvg_mpc_table *t)
{
    return t ? t->decimals : 0;
}

pvg_status pvg_mpc_table_add(pvg_mpc_table *t, const char *label, int64_t value, pvg_error *err)
{
    if (!t || !label) return pvg_error_set(err, PVG_ERR_INVALID, "mpc table: missing argument");
    size_t len = strlen(label);
    if (len == 0 || len > 255)
        return pvg_error_set(err, PVG_ERR_INVALID, "group label must be 1..255 bytes, got %zu",
                             len);
    size_t lo = 0, hi = t->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(t->labels[mid], label);
        if (c < 0)
            lo = mid + 1;
        else if (c > 0)
            hi = mid;
        else {
            if (__builtin_add_overflow(t->values[mid], value, &t->values[mid]))
                return pvg_error_set(err, PVG_ERR_INVALID, "group '%s': total overflows 64 bits",
                                     label);
            return PVG_OK;
        }
    }
    if (t->n == t->cap) {
        size_t nc = t->cap ? 2 * t->cap : 16;
        char **nl = realloc(t->labels, nc * sizeof *nl);
        if (!nl) return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
        t->labels = nl;
        int64_t *nv = realloc(t->values, nc * sizeof *nv);
        if (!nv) return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
        t->values = nv;
        t->cap = nc;
    }
    char *copy = strdup(label);
    if (!copy) return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    memmove(t->labels + lo + 1, t->labels + lo, (t->n - lo) * sizeof *t->labels);
    memmove(t->values + lo + 1, t->values + lo, (t->n - lo) * sizeof *t->values);
    t->labels[lo] = copy;
    t->values[lo] = value;
    t->n++;
    return PVG_OK;
}

static long find_label(const pvg_mpc_table *t, const char *label)
{
    size_t lo = 0, hi = t->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(t->labels[mid], label);
        if (c < 0)
            lo = mid + 1;
        else if (c > 0)
            hi = mid;
        else
            return (long)mid;
    }
    return -1;
}

int pvg_mpc_table_has(const pvg_mpc_table *t, const char *label)
{
    return t && label && find_label(t, label) >= 0;
}

pvg_status pvg_mpc_table_read_groups(const char *path, pvg_mpc_table **out, pvg_error *err)
{
    if (!path || !out) return pvg_error_set(err, PVG_ERR_INVALID, "mpc: missing argument");
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return pvg_error_set_at(err, PVG_ERR_IO, path, 0, 0, -1, "cannot open: %s",
                                strerror(errno));
    pvg_mpc_table *t = pvg_mpc_table_new(0);
    char *line = NULL;
    size_t cap = 0;
    ssize_t got;
    long ln = 0;
    pvg_status st = t ? PVG_OK : pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    while (st == PVG_OK && (got = getline(&line, &cap, f)) >= 0) {
        ln++;
        size_t len = (size_t)got;
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            len--;
        if (len == 0) continue;
        if (memchr(line, '\0', len) || len > 255) {
            st = pvg_error_set_at(err, PVG_ERR_INVALID, path, ln, 1, -1,
                                  "a group label is 1..255 bytes without NUL");
            break;
        }
        line[len] = '\0';
        if (find_label(t, line) >= 0) {
            st = pvg_error_set_at(err, PVG_ERR_INVALID, path, ln, 1, -1, "group '%s' repeated",
                                  line);
            break;
        }
        pvg_error e2;
        if (pvg_mpc_table_add(t, line, 0, &e2) != PVG_OK)
            st = pvg_error_set_at(err, e2.code, path, ln, 1, -1, "%s", e2.text);
    }
    free(line);
    fclose(f);
    if (st != PVG_OK) {
        pvg_mpc_table_free(t);
        return st;
    }
    *out = t;
    return PVG_OK;
}

/* Parses a decimal with at most `dec` fraction digits into units of
 * 10^-dec. Returns 0 on success. */
static int parse_fixed(const char *s, size_t len, unsigned dec, int64_t *out)
{
    size_t i = 0;
    int neg = 0;
    if (i < len && (s[i] == '-' || s[i] == '+')) neg = s[i++] == '-';
    uint64_t v = 0;
    size_t digits = 0, frac = 0;
    int dot = 0;
    for (; i < len; i++) {
        char ch = s[i];
        if (ch == '.' && !dot) {
            dot = 1;
            continue;
        }
        if (ch < '0' || ch > '9') return -1;
        if (dot && ++frac > dec) return -2;
        if (v > (UINT64_MAX - 9) / 10) return -3;
        v = v * 10 + (uint64_t)(ch - '0');
        digits++;
    }
    if (!digits) return -1;
    for (; frac < dec; frac++) {
        if (v > UINT64_MAX / 10) return -3;
        v *= 10;
    }
    if (v > (uint64_t)INT64_MAX) return -3;
    *out = neg ? -(int64_t)v : (int64_t)v;
    return 0;
}

pvg_status pvg_mpc_table_read_csv(const char *path, unsigned decimals, const pvg_mpc_table *allowed,
                                  pvg_mpc_table **out, pvg_error *err)
{
    if (!path || !out) return pvg_error_set(err, PVG_ERR_INVALID, "mpc: missing argument");
    *out = NULL;
    if (decimals > 9) return pvg_error_set(err, PVG_ERR_INVALID, "decimals must be 0..9");
    FILE *f = fopen(path, "rb");
    if (!f)
        return pvg_error_set_at(err, PVG_ERR_IO, path, 0, 0, -1, "cannot open: %s",
                                strerror(errno));
    pvg_mpc_table *t = pvg_mpc_table_new(decimals);
    char *line = NULL, label[256];
    size_t cap = 0;
    ssize_t got;
    long ln = 0;
    pvg_status st = PVG_OK;
    if (!t) st = pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    while (st == PVG_OK && (got = getline(&line, &cap, f)) >= 0) {
        ln++;
        size_t len = (size_t)got;
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            len--;
        if (len == 0) continue;
        if (memchr(line, '\0', len)) {
            st = pvg_error_set_at(err, PVG_ERR_INVALID, path, ln, 0, -1, "NUL byte in line");
            break;
        }
        /* group field */
        size_t i = 0, ll = 0;
        if (line[0] == '"') {
            i = 1;
            for (;;) {
                if (i >= len) {
                    st = pvg_error_set_at(err, PVG_ERR_INVALID, path, ln, (long)i + 1, -1,
                                          "unterminated quoted group");
                    break;
                }
                if (line[i] == '"') {
                    if (i + 1 < len && line[i + 1] == '"') {
                        if (ll < 255) label[ll] = '"';
                        ll++;
                        i += 2;
                        continue;
                    }
                    i++;
                    break;
                }
                if (ll < 255) label[ll] = line[i];
                ll++;
                i++;
            }
            if (st != PVG_OK) break;
            if (i >= len || line[i] != ',') {
                st = pvg_error_set_at(err, PVG_ERR_INVALID, path, ln, (long)i + 1, -1,
                                      "expected ',' after the quoted group");
                break;
            }
        } else {
            while (i < len && line[i] != ',') {
                if (line[i] == '"') {
                    st = pvg_error_set_at(err, PVG_ERR_INVALID, path, ln, (long)i + 1, -1,
                                          "stray quote in unquoted group");
                    break;
                }
                if (ll < 255) label[ll] = line[i];
                ll++;
                i++;
            }
            if (st != PVG_OK) break;
            if (i >= len) {
                st = pvg_error_set_at(err, PVG_ERR_INVALID, path, ln, (long)len + 1, -1,
                                      "expected 2 fields (group,value), found 1");
                break;
            }
        }
        if (ll == 0 || ll > 255) {
            st = pvg_error_set_at(err, PVG_ERR_INVALID, path, ln, 1, -1,
                                  "group must be 1..255 bytes, got %zu", ll);
            break;
        }
        label[ll] = '\0';
        size_t vstart = i + 1;
        const char *v = line + vstart;
        size_t vlen = len - vstart;
        if (memchr(v, ',', vlen)) {
            st = pvg_error_set_at(
                err, PVG_ERR_INVALID, path, ln,
                (long)(vstart + (size_t)((const char *)memchr(v, ',', vlen) - v)) + 1, -1,
                "expected 2 fields (group,value), found more");
            break;
        }
        while (vlen && (*v == ' ' || *v == '\t')) {
            v++;
            vlen--;
            vstart++;
        }
        while (vlen && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
            vlen--;
        if (ln == 1 && strcmp(label, "group") == 0 && vlen == 5 && memcmp(v, "value", 5) == 0)
            continue; /* header */
        if (allowed && !pvg_mpc_table_has(allowed, label)) {
            st = pvg_error_set_at(err, PVG_ERR_INVALID, path, ln, 1, -1,
                                  "group '%s' is not in the agreed group list", label);
            break;
        }
        int64_t val;
        int rc = parse_fixed(v, vlen, decimals, &val);
        if (rc != 0) {
            st = pvg_error_set_at(err, PVG_ERR_INVALID, path, ln, (long)vstart + 1, -1,
                                  "value '%.*s': %s", (int)(vlen > 40 ? 40 : vlen), v,
                                  rc == -2   ? "more fraction digits than --decimals allows"
                                  : rc == -3 ? "out of range"
                                             : "expected a decimal number");
            break;
        }
        pvg_error e2;
        if (pvg_mpc_table_add(t, label, val, &e2) != PVG_OK) {
            st = pvg_error_set_at(err, e2.code, path, ln, 1, -1, "%s", e2.text);
            break;
        }
    }
    if (st == PVG_OK && ferror(f))
        st = pvg_error_set_at(err, PVG_ERR_IO, path, ln, 0, -1, "read error");
    free(line);
    fclose(f);
    if (st != PVG_OK) {
        pvg_mpc_table_free(t);
        return st;
    }
    *out = t;
    return PVG_OK;
}
