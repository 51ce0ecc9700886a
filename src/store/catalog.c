/*
 * catalog.c - the declared catalogue: the operator's own catalogue text
 * (title, description per item id), kept in its own table apart from the
 * items' titles, which an import of transactions sets from each sale row
 * (docs/store.md "The declared catalogue"). Only these calls write it; DP
 * training reads it as public text (src/model/dp_train.c).
 */
#include "store/store_priv.h"
#include "store/text.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CATALOG_BATCH 1000
/* ... or fewer when their lines hold more than this many bytes (a line of
 * padding around valid fields could otherwise keep 1000 x 141 KB) */
#define CATALOG_BATCH_BYTES (8u << 20)
#define STR_(x) #x
#define STR(x) STR_(x)
/* The longest line a catalogue file may have: an id, a title and a
 * description at their limits, JSON-escaped (up to 6 bytes a byte), with
 * room to spare. */
#define CATALOG_LINE_MAX 141312
_Static_assert(CATALOG_LINE_MAX >=
                   6 * (PVG_ID_MAX + PVG_CATALOG_TITLE_MAX + PVG_CATALOG_DESCRIPTION_MAX) + 64,
               "a catalogue line holds an entry at its limits");

/* ---- checking an entry ---------------------------------------------------- */

/* 1 when s[0..n) has a control character (tab allowed when tab_ok): C0,
 * DEL, the C1 controls U+0080..U+009F (UTF-8 C2 80..C2 9F), and the
 * bidirectional embeddings, overrides and isolates U+202A..U+202E and
 * U+2066..U+2069 (E2 80 AA..AE, E2 81 A6..A9), which would let a title
 * shown in a page or a terminal display in another order than it reads.
 * The marks U+200E/U+200F, which right-to-left text uses, are allowed. */
static int has_control(const char *s, size_t n, int tab_ok)
{
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = u[i];
        if ((c < 0x20 && !(tab_ok && c == '\t')) || c == 0x7f) return 1;
        if (c == 0xc2 && i + 1 < n && u[i + 1] >= 0x80 && u[i + 1] <= 0x9f) return 1;
        if (c == 0xe2 && i + 2 < n &&
            ((u[i + 1] == 0x80 && u[i + 2] >= 0xaa && u[i + 2] <= 0xae) ||
             (u[i + 1] == 0x81 && u[i + 2] >= 0xa6 && u[i + 2] <= 0xa9)))
            return 1;
    }
    return 0;
}

/* Why a field of an entry is refused (a static string naming what was
 * expected), or NULL; *field gets the field's name, *at (may be NULL) the
 * byte of the field where the first invalid UTF-8 sequence starts (-1:
 * none). */
static const char *entry_fault(const pvg_catalog_entry *e, const char **field, long long *at)
{
    if (at) *at = -1;
    *field = "id";
    if (!e->ext_id || !*e->ext_id) return "an item id (1.." STR(PVG_ID_MAX) " bytes)";
    size_t n = strlen(e->ext_id);
    if (n > PVG_ID_MAX) return "an item id of at most " STR(PVG_ID_MAX) " bytes";
    if (has_control(e->ext_id, n, 0)) return "an item id without control characters";
    long long bad = pvg_utf8_invalid_at(e->ext_id, n);
    if (bad >= 0) {
        if (at) *at = bad;
        return "an item id in UTF-8";
    }
    *field = "title";
    if (!e->title || !*e->title)
        return "a non-empty title (1.." STR(PVG_CATALOG_TITLE_MAX) " bytes)";
    n = strlen(e->title);
    if (n > PVG_CATALOG_TITLE_MAX) return "a title of at most " STR(PVG_CATALOG_TITLE_MAX) " bytes";
    if (has_control(e->title, n, 0)) return "a title without control characters";
    if ((bad = pvg_utf8_invalid_at(e->title, n)) >= 0) {
        if (at) *at = bad;
        return "a title in UTF-8";
    }
    *field = "description";
    if (!e->description) return NULL;
    n = strlen(e->description);
    if (n > PVG_CATALOG_DESCRIPTION_MAX)
        return "a description of at most " STR(PVG_CATALOG_DESCRIPTION_MAX) " bytes";
    if (has_control(e->description, n, 1))
        return "a description without control characters other than tab";
    if ((bad = pvg_utf8_invalid_at(e->description, n)) >= 0) {
        if (at) *at = bad;
        return "a description in UTF-8";
    }
    return NULL;
}

/* Writes entries inside the open transaction: the declared text, and the
 * item as a catalog item with that title (its display title). */
static pvg_status declare_in_txn(pvg_store *s, const pvg_catalog_entry *e, size_t n, pvg_error *err)
{
    int64_t now = pvg_store_now(s);
    for (size_t i = 0; i < n; i++) {
        pvg_status st =
            PVG_B(s, catalog_text_put, e[i].ext_id, e[i].title,
                  e[i].description && *e[i].description ? e[i].description : NULL, now, err);
        if (st != PVG_OK) return st;
        pvg_item it = {0};
        it.ext_id = e[i].ext_id;
        it.title = e[i].title;
        it.price = -1;
        it.catalog = 1;
        st = pvg_store_item_put_ex(s, &it, 0, 1, NULL, err);
        if (st != PVG_OK) return st;
    }
    return PVG_OK;
}

static pvg_status declare_batch(pvg_store *s, const pvg_catalog_entry *e, size_t n, pvg_error *err)
{
    if (n == 0) return PVG_OK;
    pvg_status st = pvg_store_begin(s, err);
    if (st != PVG_OK) return st;
    st = declare_in_txn(s, e, n, err);
    if (st == PVG_OK) return pvg_store_commit(s, err);
    pvg_store_rollback(s);
    return st;
}

pvg_status pvg_store_catalog_declare(pvg_store *s, const pvg_catalog_entry *entries, size_t n,
                                     pvg_error *err)
{
    if (!s || (n && !entries))
        return pvg_error_set(err, PVG_ERR_INVALID, "catalog declare: NULL argument");
    if (s->in_txn)
        return pvg_error_set(err, PVG_ERR_STATE,
                             "catalog declare: not inside pvg_store_begin/commit");
    for (size_t i = 0; i < n; i++) {
        const char *field;
        long long at;
        const char *why = entry_fault(&entries[i], &field, &at);
        if (why) {
            if (at >= 0)
                return pvg_error_set(err, PVG_ERR_INVALID,
                                     "catalog entry %zu: %s: invalid UTF-8 at byte %lld; expected "
                                     "%s",
                                     i, field, at, why);
            return pvg_error_set(err, PVG_ERR_INVALID, "catalog entry %zu: %s: expected %s", i,
                                 field, why);
        }
    }
    return declare_batch(s, entries, n, err);
}

/* ---- reading a catalogue file --------------------------------------------- */

/* One parsed line: the strings point into the line buffer or into json
 * (kept until the batch is written). */
typedef struct pending {
    pvg_catalog_entry *e;
    json_t **json; /* parallel to e: the line's JSON value, or NULL */
    char **text;   /* parallel to e: the line's copy (TSV), or NULL */
    size_t n;
    size_t bytes; /* of the lines held */
} pending;

static void pending_clear(pending *p)
{
    for (size_t i = 0; i < p->n; i++) {
        json_decref(p->json[i]);
        free(p->text[i]);
    }
    p->n = 0;
    p->bytes = 0;
}

static char *trim(char *s)
{
    while (*s == ' ')
        s++;
    size_t n = strlen(s);
    while (n > 0 && s[n - 1] == ' ')
        s[--n] = '\0';
    return s;
}

/* Reads one line (without its "\n" or "\r\n") into buf (cap bytes): 1 read,
 * 0 at the end, -1 too long (the rest of the line is not read), -2 a NUL
 * byte in it, -3 a read error. *len: its length. */
static int read_line(FILE *f, char *buf, size_t cap, size_t *len)
{
    size_t n = 0;
    int c, nul = 0;
    while ((c = getc(f)) != EOF && c != '\n') {
        if (n + 1 >= cap) return -1;
        if (c == 0) nul = 1;
        buf[n++] = (char)c;
    }
    if (ferror(f)) return -3;
    if (c == EOF && n == 0) return 0;
    if (n > 0 && buf[n - 1] == '\r') n--;
    buf[n] = '\0';
    *len = n;
    return nul ? -2 : 1;
}

static int is_blank(const char *s)
{
    for (; *s; s++)
        if (*s != ' ' && *s != '\t') return 0;
    return 1;
}

typedef struct line_fault {
    const char *field;
    const char *why;
    long long column; /* 1-based, or 0 */
} line_fault;

/* A TSV line "id<TAB>title[<TAB>description]": fills e (pointing into line). */
static int parse_tsv(char *line, pvg_catalog_entry *e, line_fault *f)
{
    char *tab = strchr(line, '\t');
    if (!tab) {
        f->field = "line";
        f->why = "id<TAB>title[<TAB>description] (no tab found)";
        return -1;
    }
    *tab = '\0';
    char *title = tab + 1, *desc = NULL;
    char *tab2 = strchr(title, '\t');
    if (tab2) {
        *tab2 = '\0';
        desc = tab2 + 1;
    }
    e->ext_id = trim(line);
    e->title = trim(title);
    e->description = desc && !is_blank(desc) ? trim(desc) : NULL;
    return 0;
}

/* A JSONL line: fills e (pointing into *out, which the caller keeps). */
static int parse_jsonl(const char *line, size_t len, pvg_catalog_entry *e, json_t **out,
                       line_fault *f)
{
    json_error_t je;
    json_t *o = json_loadb(line, len, JSON_REJECT_DUPLICATES, &je);
    *out = o;
    f->field = "line";
    if (!o) {
        f->why = "one JSON object (the line does not parse as JSON)";
        f->column = je.column > 0 ? je.column : 0;
        return -1;
    }
    if (!json_is_object(o)) {
        f->why = "a JSON object";
        return -1;
    }
    const char *key;
    json_t *v;
    json_object_foreach(o, key, v)
    {
        if (strcmp(key, "id") && strcmp(key, "title") && strcmp(key, "description")) {
            /* the member's name comes from the input: not repeated */
            f->why = "only the members id, title and description";
            return -1;
        }
    }
    static const char *const names[3] = {"id", "title", "description"};
    const char *vals[3] = {NULL, NULL, NULL};
    for (int i = 0; i < 3; i++) {
        v = json_object_get(o, names[i]);
        if (!v || json_is_null(v)) {
            if (i < 2) {
                f->field = names[i];
                f->why = i == 0 ? "an \"id\" member (a string)" : "a \"title\" member (a string)";
                return -1;
            }
            continue;
        }
        if (!json_is_string(v)) {
            f->field = names[i];
            f->why = "a JSON string";
            return -1;
        }
        if (strlen(json_string_value(v)) != json_string_length(v)) {
            f->field = names[i];
            f->why = "text without a NUL character";
            return -1;
        }
        /* trimmed in place: jansson's string buffers are the object's own */
        vals[i] = trim((char *)json_string_value(v));
    }
    e->ext_id = vals[0];
    e->title = vals[1];
    e->description = vals[2] && *vals[2] ? vals[2] : NULL;
    return 0;
}

pvg_status pvg_store_catalog_import(pvg_store *s, const char *path, pvg_catalog_format fmt,
                                    pvg_catalog_import_stats *stats, pvg_error *err)
{
    pvg_catalog_import_stats local;
    if (!stats) stats = &local;
    memset(stats, 0, sizeof *stats);
    if (!s || !path) return pvg_error_set(err, PVG_ERR_INVALID, "catalog import: NULL argument");
    if (s->in_txn)
        return pvg_error_set(err, PVG_ERR_STATE,
                             "catalog import: not inside pvg_store_begin/commit");
    if (fmt != PVG_CATALOG_AUTO && fmt != PVG_CATALOG_TSV && fmt != PVG_CATALOG_JSONL)
        return pvg_error_set(err, PVG_ERR_INVALID, "catalog import: unknown format %d", (int)fmt);
    FILE *f = fopen(path, "rb");
    if (!f)
        return pvg_error_set_at(err, errno == ENOENT ? PVG_ERR_NOT_FOUND : PVG_ERR_IO, path, 0, 0,
                                -1, "cannot open: %s", strerror(errno));
    pending p = {0};
    p.e = malloc(CATALOG_BATCH * sizeof *p.e);
    p.json = malloc(CATALOG_BATCH * sizeof *p.json);
    p.text = malloc(CATALOG_BATCH * sizeof *p.text);
    char *buf = malloc(CATALOG_LINE_MAX + 1);
    pvg_status st = PVG_OK;
    if (!p.e || !p.json || !p.text || !buf) {
        st = pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
        goto done;
    }
    long line_no = 0;
    for (;;) {
        size_t len = 0;
        int r = read_line(f, buf, CATALOG_LINE_MAX + 1, &len);
        if (r == 0) break;
        line_no++;
        stats->lines = line_no;
        long long bom = 0; /* bytes before buf[0] on this line */
        if (line_no == 1 && len >= 3 && memcmp(buf, "\xef\xbb\xbf", 3) == 0) {
            /* a UTF-8 byte order mark is not part of the first id */
            memmove(buf, buf + 3, len - 2);
            len -= 3;
            bom = 3;
        }
        line_fault lf = {0};
        if (r == -3) {
            st = pvg_error_set_at(err, PVG_ERR_IO, path, line_no, 0, -1, "read error");
            break;
        }
        if (r == -1) {
            lf.field = "line";
            lf.why = "a line of at most " STR(CATALOG_LINE_MAX) " bytes";
        } else if (r == -2) {
            lf.field = "line";
            lf.why = "text without a NUL byte";
        } else if (is_blank(buf)) {
            continue;
        }
        if (!lf.why && fmt == PVG_CATALOG_AUTO) {
            const char *q = buf;
            while (*q == ' ' || *q == '\t')
                q++;
            fmt = *q == '{' ? PVG_CATALOG_JSONL : PVG_CATALOG_TSV;
        }
        pvg_catalog_entry e = {0};
        json_t *js = NULL;
        char *text = NULL;
        if (!lf.why) {
            if (fmt == PVG_CATALOG_JSONL) {
                parse_jsonl(buf, len, &e, &js, &lf);
            } else if (!(text = strdup(buf))) {
                st = pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
                break;
            } else {
                parse_tsv(text, &e, &lf);
            }
        }
        long long at = -1;
        if (!lf.why) {
            lf.why = entry_fault(&e, &lf.field, &at);
            if (lf.why && at >= 0 && fmt == PVG_CATALOG_TSV && text) {
                /* the column of the bad byte in the line */
                const char *base = strcmp(lf.field, "id") == 0      ? e.ext_id
                                   : strcmp(lf.field, "title") == 0 ? e.title
                                                                    : e.description;
                lf.column = (long long)(base - text) + at + 1;
            }
        }
        if (lf.why) {
            if (lf.column > 0) lf.column += bom; /* a column of the file's line */
            json_decref(js);
            free(text);
            /* what came before the bad line is declared: nothing accepted is lost */
            pvg_error keep;
            pvg_error_clear(&keep);
            st = declare_batch(s, p.e, p.n, &keep);
            if (st != PVG_OK) {
                if (err) *err = keep;
                break;
            }
            stats->declared += (long long)p.n;
            pending_clear(&p);
            if (at >= 0 && lf.column == 0)
                st = pvg_error_set_at(err, PVG_ERR_INVALID, path, line_no, 0, -1,
                                      "%s: invalid UTF-8 at byte %lld of the field; expected %s",
                                      lf.field, at, lf.why);
            else
                st = pvg_error_set_at(err, PVG_ERR_INVALID, path, line_no, (long)lf.column, -1,
                                      "%s: expected %s", lf.field, lf.why);
            break;
        }
        p.e[p.n] = e;
        p.json[p.n] = js;
        p.text[p.n] = text;
        p.n++;
        p.bytes += len;
        if (p.n == CATALOG_BATCH || p.bytes > CATALOG_BATCH_BYTES) {
            st = declare_batch(s, p.e, p.n, err);
            if (st != PVG_OK) break;
            stats->declared += (long long)p.n;
            pending_clear(&p);
        }
    }
    if (st == PVG_OK) {
        st = declare_batch(s, p.e, p.n, err);
        if (st == PVG_OK) stats->declared += (long long)p.n;
    }
done:
    if (p.json && p.text) pending_clear(&p);
    free(p.e);
    free(p.json);
    free(p.text);
    free(buf);
    fclose(f);
    return st;
}

/* ---- reading the declared catalogue --------------------------------------- */

typedef struct foreach_ctx {
    int (*fn)(void *ctx, const pvg_catalog_entry *entry);
    void *ctx;
} foreach_ctx;

static int foreach_cb(void *vctx, const char *ext_id, const char *title, const char *description,
                      int64_t updated_at)
{
    (void)updated_at;
    foreach_ctx *c = vctx;
    pvg_catalog_entry e = {ext_id, title, description};
    return c->fn(c->ctx, &e);
}

pvg_status pvg_store_catalog_foreach(pvg_store *s,
                                     int (*fn)(void *ctx, const pvg_catalog_entry *entry),
                                     void *ctx, pvg_error *err)
{
    if (!s || !fn) return pvg_error_set(err, PVG_ERR_INVALID, "catalog foreach: NULL argument");
    foreach_ctx c = {fn, ctx};
    return PVG_B(s, catalog_text_foreach, foreach_cb, &c, err);
}

typedef struct titles_ctx {
    const char *const *ids;
    size_t *order; /* indices of ids, sorted by id */
    size_t n;
    pvg_catalog_field field;
    char **titles;
    size_t found;
    int nomem;
} titles_ctx;

static int titles_cb(void *vctx, const pvg_catalog_entry *e)
{
    titles_ctx *c = vctx;
    size_t lo = 0, hi = c->n;
    while (lo < hi) { /* the first position whose id is >= e->ext_id */
        size_t mid = (lo + hi) / 2;
        if (strcmp(c->ids[c->order[mid]], e->ext_id) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (; lo < c->n && strcmp(c->ids[c->order[lo]], e->ext_id) == 0; lo++) {
        size_t i = c->order[lo];
        const char *t = c->field == PVG_CATALOG_FIELD_DESCRIPTION ? e->description : e->title;
        if (c->titles[i] || !t || !t[0]) continue;
        if (!(c->titles[i] = strdup(t))) {
            c->nomem = 1;
            return 1;
        }
        c->found++;
    }
    return 0;
}

/* Sorts the indices a[0..n) by ids[a[i]] (a stable merge sort: qsort
 * would need the ids in a global to compare indices). */
static void merge_sort(const char *const *ids, size_t *a, size_t *tmp, size_t n)
{
    if (n < 2) return;
    size_t h = n / 2;
    merge_sort(ids, a, tmp, h);
    merge_sort(ids, a + h, tmp, n - h);
    size_t i = 0, j = h, k = 0;
    while (i < h && j < n)
        tmp[k++] = strcmp(ids[a[i]], ids[a[j]]) <= 0 ? a[i++] : a[j++];
    while (i < h)
        tmp[k++] = a[i++];
    while (j < n)
        tmp[k++] = a[j++];
    memcpy(a, tmp, n * sizeof *a);
}

pvg_status pvg_store_catalog_texts(pvg_store *s, const char *const *ids, size_t n,
                                   pvg_catalog_field field, char ***titles, size_t *n_found,
                                   pvg_error *err)
{
    if (titles) *titles = NULL;
    if (n_found) *n_found = 0;
    if (!s || !titles || (n && !ids))
        return pvg_error_set(err, PVG_ERR_INVALID, "catalog texts: NULL argument");
    if (field != PVG_CATALOG_FIELD_TITLE && field != PVG_CATALOG_FIELD_DESCRIPTION)
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "catalog texts: field %d, expected PVG_CATALOG_FIELD_TITLE (0) or "
                             "PVG_CATALOG_FIELD_DESCRIPTION (1)",
                             (int)field);
    for (size_t i = 0; i < n; i++)
        if (!ids[i]) return pvg_error_set(err, PVG_ERR_INVALID, "catalog texts: id %zu is NULL", i);
    titles_ctx c = {.ids = ids, .n = n, .field = field};
    c.titles = calloc(n ? n : 1, sizeof *c.titles);
    c.order = malloc((n ? n : 1) * sizeof *c.order);
    size_t *tmp = malloc((n ? n : 1) * sizeof *tmp);
    if (!c.titles || !c.order || !tmp) {
        free(c.titles);
        free(c.order);
        free(tmp);
        return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < n; i++)
        c.order[i] = i;
    merge_sort(ids, c.order, tmp, n);
    free(tmp);
    pvg_status st = n ? pvg_store_catalog_foreach(s, titles_cb, &c, err) : PVG_OK;
    if (st == PVG_ERR_ABORTED && c.nomem) st = pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    free(c.order);
    if (st != PVG_OK) {
        pvg_catalog_titles_free(c.titles, n);
        return st;
    }
    *titles = c.titles;
    if (n_found) *n_found = c.found;
    return PVG_OK;
}

pvg_status pvg_store_catalog_titles(pvg_store *s, const char *const *ids, size_t n, char ***titles,
                                    size_t *n_found, pvg_error *err)
{
    return pvg_store_catalog_texts(s, ids, n, PVG_CATALOG_FIELD_TITLE, titles, n_found, err);
}

void pvg_catalog_titles_free(char **titles, size_t n)
{
    if (!titles) return;
    for (size_t i = 0; i < n; i++)
        free(titles[i]);
    free(titles);
}
