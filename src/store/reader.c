/*
 * reader.c - streaming readers of the supported input formats (import.h).
 *
 * Layering: a line source (zlib's gzread, which reads plain files too) feeds
 * a record splitter (lines; RFC 4180 records for CSV, which may span lines
 * inside quotes), then one parser per format turns a record into a
 * pvg_record. Every row yields exactly one record: an event, an item, an
 * anonymous event, or a reject with a stable reason code, the field at
 * fault and a detail that says what was expected. A reject never carries a
 * value of the row (reject files must hold no personal data): no detail
 * quotes the input, and the JSON parser's own error text (which quotes it)
 * is replaced by a fixed description. Nothing is skipped silently. Ids go
 * through pvg_user_id_normalize / pvg_item_id_check (event.h): an id longer
 * than PVG_ID_MAX is refused ("id_too_long"), never truncated.
 */
#include <privguide/import.h>

#include "store/text.h"

#include <assert.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define DEFAULT_MAX_LINE (1u << 20)
#define READ_CHUNK (1u << 18)
#define MAX_FIELDS 64

static const char *const format_names[PVG_FORMAT_COUNT] = {
    "online-retail", "movielens", "movielens-items", "retailrocket", "amazon-reviews",
    "jsonl",         "tsv"};

const char *pvg_format_name(pvg_format fmt)
{
    return (unsigned)fmt < PVG_FORMAT_COUNT ? format_names[fmt] : "?";
}

pvg_status pvg_format_parse(const char *name, pvg_format *out)
{
    for (int i = 0; name && i < PVG_FORMAT_COUNT; i++)
        if (strcmp(name, format_names[i]) == 0) {
            *out = (pvg_format)i;
            return PVG_OK;
        }
    return PVG_ERR_INVALID;
}

struct pvg_reader {
    gzFile gz;
    char *path;
    pvg_format fmt;
    pvg_reader_options opts;
    size_t max_line;
    /* input buffer */
    char *buf;
    size_t cap, start, end;
    int eof;
    long long consumed; /* bytes of the stream before buf[start] */
    /* current record */
    char *rec; /* record text (NUL-terminated, newline stripped) */
    size_t rec_cap, rec_len;
    long line;      /* 1-based line number of the current record's first line */
    long next_line; /* line number of the next line to read */
    long long rec_offset;
    int too_long;
    /* field splitting */
    char *fieldbuf;
    size_t fieldbuf_cap;
    char *fields[MAX_FIELDS];
    int nfields;
    /* scratch strings for records */
    char user[PVG_ID_MAX + 1];
    char detail[400];
    char *conv; /* Latin-1 -> UTF-8 conversion buffer */
    size_t conv_cap;
    char category[64];
    json_t *json;       /* JSON record kept alive until the next call */
    pvg_event_json jev; /* the event parsed from it (jsonl) */
    char ts_text[32];
    int ml_sep; /* movielens: '\t', ':' (for "::") or '|' */
    long data_lines;
};

/* ---- line source ---------------------------------------------------- */

/* Returns 1 with a line in (*line, *len) (no newline, CR stripped), 0 at
 * EOF, -1 on a read error. A line longer than max_line sets r->too_long,
 * is consumed whole and returned truncated. */
static int next_line(pvg_reader *r, char **line, size_t *len, pvg_error *err)
{
    int too_long = 0;
    for (;;) {
        char *nl = r->end > r->start ? memchr(r->buf + r->start, '\n', r->end - r->start) : NULL;
        if (nl) {
            size_t n = (size_t)(nl - (r->buf + r->start));
            *line = r->buf + r->start;
            *len = n > r->max_line ? r->max_line : n;
            if (n > r->max_line) too_long = 1;
            if (!too_long && *len > 0 && (*line)[*len - 1] == '\r') (*len)--;
            (*line)[*len] = '\0';
            r->consumed += (long long)(n + 1);
            r->start += n + 1;
            r->too_long = too_long;
            r->next_line++;
            return 1;
        }
        size_t pending = r->end - r->start;
        if (pending > r->max_line) {
            /* Discard the over-long prefix, remember the line is too long. */
            too_long = 1;
            r->consumed += (long long)pending;
            r->start = r->end = 0;
            pending = 0;
        }
        if (r->eof) {
            if (pending == 0 && !too_long) return 0;
            *line = r->buf + r->start;
            *len = pending;
            if (*len > 0 && (*line)[*len - 1] == '\r') (*len)--;
            (*line)[*len] = '\0';
            r->consumed += (long long)pending;
            r->start = r->end;
            r->too_long = too_long;
            r->next_line++;
            return 1;
        }
        if (r->start > 0) {
            memmove(r->buf, r->buf + r->start, pending);
            r->start = 0;
            r->end = pending;
        }
        size_t room = r->cap - 1 - r->end;
        int got = gzread(r->gz, r->buf + r->end, (unsigned)(room > READ_CHUNK ? READ_CHUNK : room));
        if (got < 0) {
            int zerr;
            const char *m = gzerror(r->gz, &zerr);
            return pvg_error_set_at(err, PVG_ERR_IO, r->path, r->next_line, 0, r->consumed,
                                    "read failed: %s", m ? m : "unknown error"),
                   -1;
        }
        if (got == 0) r->eof = 1;
        r->end += (size_t)got;
    }
}

static int rec_append(pvg_reader *r, const char *s, size_t n, int with_newline)
{
    size_t need = r->rec_len + n + 2;
    if (need > r->rec_cap) {
        size_t cap = r->rec_cap ? r->rec_cap : 4096;
        while (cap < need)
            cap *= 2;
        char *p = realloc(r->rec, cap);
        if (!p) return -1;
        r->rec = p;
        r->rec_cap = cap;
    }
    if (with_newline) r->rec[r->rec_len++] = '\n';
    memcpy(r->rec + r->rec_len, s, n);
    r->rec_len += n;
    r->rec[r->rec_len] = '\0';
    return 0;
}

/* Reads one raw record line into r->rec. Returns 1, 0 (EOF) or -1. */
static int next_record_line(pvg_reader *r, pvg_error *err)
{
    char *line;
    size_t len;
    int rc = next_line(r, &line, &len, err);
    if (rc <= 0) return rc;
    r->line = r->next_line - 1;
    r->rec_offset = r->consumed - (long long)len - 1;
    if (r->rec_offset < 0) r->rec_offset = 0;
    r->rec_len = 0;
    if (rec_append(r, line, len, 0) < 0)
        return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory reading %s", r->path), -1;
    return 1;
}

/* ---- CSV ------------------------------------------------------------ */

/* Splits r->rec as one RFC 4180 record with separator `sep`. Quoted fields
 * may contain separators, doubled quotes and (when the quote is still open
 * at the end of the line) line breaks: the following lines are appended.
 * Returns 1 ok, 0 with a reject detail in r->detail, -1 fatal. */
static int csv_split(pvg_reader *r, char sep, pvg_error *err)
{
    for (;;) {
        if (r->fieldbuf_cap < r->rec_len + 1) {
            size_t cap = r->rec_len + 1024;
            char *p = realloc(r->fieldbuf, cap);
            if (!p) return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory"), -1;
            r->fieldbuf = p;
            r->fieldbuf_cap = cap;
        }
        const char *s = r->rec;
        size_t n = r->rec_len, i = 0;
        char *o = r->fieldbuf;
        r->nfields = 0;
        int open_quote = 0;
        while (1) {
            if (r->nfields == MAX_FIELDS) {
                snprintf(r->detail, sizeof r->detail, "more than %d fields", MAX_FIELDS);
                return 0;
            }
            r->fields[r->nfields++] = o;
            if (i < n && s[i] == '"') {
                size_t col = i + 1;
                i++;
                for (;;) {
                    if (i >= n) {
                        open_quote = 1;
                        break;
                    }
                    if (s[i] == '"') {
                        if (i + 1 < n && s[i + 1] == '"') {
                            *o++ = '"';
                            i += 2;
                            continue;
                        }
                        i++;
                        break;
                    }
                    *o++ = s[i++];
                }
                if (open_quote) break;
                if (i < n && s[i] != sep) {
                    snprintf(r->detail, sizeof r->detail,
                             "field %d (column %zu): text after the closing quote (expected '%c' "
                             "or end of line)",
                             r->nfields, col, sep == '\t' ? 't' : sep);
                    return 0;
                }
            } else {
                size_t col = i + 1;
                while (i < n && s[i] != sep) {
                    if (s[i] == '"') {
                        snprintf(
                            r->detail, sizeof r->detail,
                            "field %d (column %zu): a quote inside an unquoted field (column %zu)",
                            r->nfields, col, i + 1);
                        return 0;
                    }
                    *o++ = s[i++];
                }
            }
            *o++ = '\0';
            if (i >= n) break;
            i++;          /* separator */
            if (i == n) { /* trailing separator: one more empty field */
                r->fields[r->nfields++] = o;
                *o++ = '\0';
                break;
            }
        }
        if (!open_quote) return 1;
        /* The quote is open: the record continues on the next line. */
        char *line;
        size_t len;
        int rc = next_line(r, &line, &len, err);
        if (rc < 0) return -1;
        if (rc == 0 || r->too_long || r->rec_len + len + 1 > r->max_line) {
            snprintf(r->detail, sizeof r->detail,
                     "field %d: unterminated quoted field (no closing quote before %s)", r->nfields,
                     rc == 0 ? "end of file" : "the line length limit");
            return 0;
        }
        if (rec_append(r, line, len, 1) < 0)
            return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory"), -1;
    }
}

/* ---- helpers -------------------------------------------------------- */

/* Clears rec and stamps it with the current line and offset. */
static void start_record(pvg_reader *r, pvg_record *rec, pvg_record_kind kind)
{
    memset(rec, 0, sizeof *rec);
    rec->kind = kind;
    rec->line = r->line;
    rec->offset = r->rec_offset;
}

/* Makes rec a reject: reason code, the field at fault (static string, or
 * NULL for the row as a whole) and a detail saying what was expected. The
 * detail must never contain a value taken from the row. */
static void reject(pvg_reader *r, pvg_record *rec, const char *reason, const char *field,
                   const char *fmt, ...) PVG_PRINTF(5, 6);
static void reject(pvg_reader *r, pvg_record *rec, const char *reason, const char *field,
                   const char *fmt, ...)
{
    start_record(r, rec, PVG_RECORD_REJECT);
    rec->reason = reason;
    rec->field = field;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->detail, sizeof r->detail, fmt, ap);
    va_end(ap);
    rec->detail = r->detail;
}

/* A reject whose detail csv_split already wrote into r->detail. */
static void reject_kept(pvg_reader *r, pvg_record *rec, const char *reason, const char *field)
{
    start_record(r, rec, PVG_RECORD_REJECT);
    rec->reason = reason;
    rec->field = field;
    rec->detail = r->detail;
}

/* Normalises a user id into r->user. Returns 1 ok, 0 with rec a reject. */
static int take_user(pvg_reader *r, pvg_record *rec, const char *raw, const char *field)
{
    const char *why;
    if (pvg_user_id_normalize(raw, r->user, sizeof r->user, &why, NULL) == PVG_OK) return 1;
    if (strcmp(why, "id_too_long") == 0)
        reject(r, rec, why, field, "%s: longer than %d bytes", field, PVG_ID_MAX);
    else
        reject(r, rec, why, field, "%s: expected a non-empty id without control characters", field);
    return 0;
}

/* Checks an item id. Returns 1 ok, 0 with rec a reject. */
static int check_item(pvg_reader *r, pvg_record *rec, const char *id, const char *field)
{
    const char *why = pvg_item_id_check(id);
    if (!why) return 1;
    if (strcmp(why, "id_too_long") == 0)
        reject(r, rec, why, field, "%s: longer than %d bytes", field, PVG_ID_MAX);
    else if (strcmp(why, "missing_item") == 0)
        reject(r, rec, why, field, "%s: required (empty)", field);
    else
        reject(r, rec, why, field, "%s: expected an id without control characters", field);
    return 0;
}

/* Ensures r->rec is UTF-8 per the encoding option. Returns 1 ok, 0 reject. */
static int fix_encoding(pvg_reader *r, pvg_record *rec, pvg_encoding enc)
{
    long long bad = pvg_utf8_invalid_at(r->rec, r->rec_len);
    if (enc == PVG_ENCODING_LATIN1 || (bad >= 0 && enc == PVG_ENCODING_AUTO)) {
        if (enc != PVG_ENCODING_LATIN1 && bad < 0) return 1;
        size_t need = r->rec_len * 2 + 1;
        if (need > r->conv_cap) {
            char *p = realloc(r->conv, need);
            if (!p) return reject(r, rec, "out_of_memory", NULL, "out of memory"), 0;
            r->conv = p;
            r->conv_cap = need;
        }
        size_t n = pvg_latin1_to_utf8(r->rec, r->rec_len, r->conv);
        r->rec_len = 0;
        if (rec_append(r, r->conv, n, 0) < 0)
            return reject(r, rec, "out_of_memory", NULL, "out of memory"), 0;
        return 1;
    }
    if (bad >= 0) {
        reject(r, rec, "invalid_utf8", NULL, "invalid UTF-8 at byte %lld of the line (column %lld)",
               bad, bad + 1);
        return 0;
    }
    return 1;
}

static const char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        s[--n] = '\0';
    return s;
}

/* 1 when s is a non-empty string of ASCII digits. */
static int all_digits(const char *s)
{
    if (!*s) return 0;
    for (; *s; s++)
        if (*s < '0' || *s > '9') return 0;
    return 1;
}

static int parse_double(const char *s, double *out)
{
    if (!*s) return 0;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || !isfinite(v)) return 0;
    *out = v;
    return 1;
}

static int parse_i64(const char *s, long long *out)
{
    if (!*s) return 0;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end) return 0;
    *out = v;
    return 1;
}

/* ---- format parsers ------------------------------------------------- */

static const char ONLINE_RETAIL_HEADER[] =
    "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country";

/* Derives a coarse product category from a free-text title: its last word
 * of letters, lower-cased ("WHITE METAL LANTERN" -> "lantern"). Online
 * Retail has no category column; this documented heuristic groups items by
 * product noun. */
static const char *derive_category(pvg_reader *r, const char *title)
{
    if (!title || !*title) return NULL;
    const char *end = title + strlen(title);
    const char *best_s = NULL, *best_e = NULL;
    const char *p = end;
    while (p > title) {
        while (p > title && !((p[-1] >= 'A' && p[-1] <= 'Z') || (p[-1] >= 'a' && p[-1] <= 'z')))
            p--;
        const char *e = p;
        while (p > title && ((p[-1] >= 'A' && p[-1] <= 'Z') || (p[-1] >= 'a' && p[-1] <= 'z')))
            p--;
        if (e - p >= 3) {
            best_s = p;
            best_e = e;
            break;
        }
    }
    if (!best_s) return NULL;
    size_t n = (size_t)(best_e - best_s);
    if (n >= sizeof r->category) n = sizeof r->category - 1;
    for (size_t i = 0; i < n; i++) {
        char c = best_s[i];
        r->category[i] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
    }
    r->category[n] = '\0';
    return r->category;
}

static int parse_online_retail(pvg_reader *r, pvg_record *rec, pvg_error *err)
{
    if (!fix_encoding(r, rec, r->opts.encoding)) return 1;
    int rc = csv_split(r, ',', err);
    if (rc < 0) return -1;
    if (rc == 0) return reject_kept(r, rec, "bad_quoting", NULL), 1;
    if (r->nfields < 8)
        return reject(r, rec, "missing_fields", NULL, "expected 8 fields (%s), found %d",
                      ONLINE_RETAIL_HEADER, r->nfields),
               1;
    if (r->nfields > 8)
        return reject(r, rec, "extra_fields", NULL, "expected 8 fields (%s), found %d",
                      ONLINE_RETAIL_HEADER, r->nfields),
               1;
    const char *invoice = trim(r->fields[0]);
    const char *stock = trim(r->fields[1]);
    const char *desc = trim(r->fields[2]);
    const char *qty_s = trim(r->fields[3]);
    const char *date_s = trim(r->fields[4]);
    const char *price_s = trim(r->fields[5]);
    const char *cust = trim(r->fields[6]);
    const char *country = trim(r->fields[7]);
    long long qty;
    double price;
    int64_t ts;
    if (!*invoice)
        return reject(r, rec, "missing_invoice", "InvoiceNo", "field 1 InvoiceNo is empty"), 1;
    if (!check_item(r, rec, stock, "StockCode")) return 1;
    if (!parse_i64(qty_s, &qty))
        return reject(r, rec, "bad_quantity", "Quantity", "field 4 Quantity: expected an integer"),
               1;
    if (pvg_parse_datetime(date_s, &ts) != 0)
        return reject(r, rec, "bad_date", "InvoiceDate",
                      "field 5 InvoiceDate: expected 'YYYY-MM-DD HH:MM[:SS]' or 'M/D/YYYY H:MM'"),
               1;
    if (!parse_double(price_s, &price))
        return reject(r, rec, "bad_price", "UnitPrice",
                      "field 6 UnitPrice: expected a decimal number"),
               1;
    /* Rows that are not shopping events still name a real catalog item:
     * they are rejected, but their StockCode enters the catalog. */
    const char *why = NULL, *why_field = NULL;
    int is_return = invoice[0] == 'C' || invoice[0] == 'c';
    if (invoice[0] == 'A' || invoice[0] == 'a') {
        why = "adjustment_invoice";
        why_field = "InvoiceNo";
        snprintf(r->detail, sizeof r->detail,
                 "field 1 InvoiceNo starts with A: an accounting adjustment, not a shopping event");
    } else if (qty == 0) {
        why = "zero_quantity";
        why_field = "Quantity";
        snprintf(r->detail, sizeof r->detail, "field 4 Quantity is 0");
    } else if (!is_return && qty < 0) {
        why = "negative_quantity";
        why_field = "Quantity";
        snprintf(r->detail, sizeof r->detail,
                 "field 4 Quantity is negative on an invoice that is not a cancellation (C...): "
                 "a stock adjustment, not a shopping event");
    } else if (is_return && qty > 0) {
        why = "positive_return_quantity";
        why_field = "Quantity";
        snprintf(r->detail, sizeof r->detail,
                 "field 4 Quantity is positive on a cancellation invoice");
    } else if (price < 0) {
        why = "bad_price";
        why_field = "UnitPrice";
        snprintf(r->detail, sizeof r->detail, "field 6 UnitPrice is negative");
    }
    if (why) {
        reject_kept(r, rec, why, why_field);
        rec->has_item = 1;
        rec->item.ext_id = stock;
        rec->item.title = *desc ? desc : NULL;
        rec->item.category = derive_category(r, desc);
        rec->item.price = -1; /* the row's price is not a selling price */
        return 1;
    }

    start_record(r, rec, PVG_RECORD_EVENT);
    rec->event.type = is_return ? PVG_EVENT_RETURN : PVG_EVENT_PURCHASE;
    rec->event.ts = ts;
    rec->event.item = stock;
    rec->event.quantity = (double)qty;
    rec->event.amount = pvg_round_cents((double)qty * price);
    rec->event.fields = PVG_FIELD_QUANTITY | PVG_FIELD_AMOUNT;
    if (*country) {
        rec->event.country = country;
        rec->event.fields |= PVG_FIELD_COUNTRY;
    }
    rec->has_item = 1;
    rec->item.ext_id = stock;
    rec->item.title = *desc ? desc : NULL;
    rec->item.category = derive_category(r, desc);
    rec->item.price = price;
    if (!*cust) {
        rec->kind = PVG_RECORD_ANONYMOUS;
        return 1;
    }
    if (!take_user(r, rec, cust, "CustomerID")) return 1;
    if (!all_digits(r->user))
        return reject(r, rec, "bad_user_id", "CustomerID",
                      "field 7 CustomerID: expected digits (optionally '.0')"),
               1;
    rec->kind = PVG_RECORD_EVENT;
    rec->user = r->user;
    return 1;
}

/* u.data "u\ti\tr\tts", ratings.dat "u::i::r::ts" */
static int parse_movielens(pvg_reader *r, pvg_record *rec, pvg_error *err)
{
    if (!fix_encoding(r, rec, PVG_ENCODING_AUTO)) return 1;
    if (!r->ml_sep) r->ml_sep = strstr(r->rec, "::") ? ':' : '\t';
    char *f[6];
    int nf = 0;
    char *p = r->rec;
    while (nf < 6) {
        f[nf++] = p;
        char *q = r->ml_sep == ':' ? strstr(p, "::") : strchr(p, '\t');
        if (!q) break;
        *q = '\0';
        p = q + (r->ml_sep == ':' ? 2 : 1);
    }
    const char *sep = r->ml_sep == ':' ? "'::'" : "tabs";
    if (nf < 4)
        return reject(r, rec, "missing_fields", NULL,
                      "expected 4 fields separated by %s (user, item, rating, timestamp), found %d",
                      sep, nf),
               1;
    if (nf > 4)
        return reject(r, rec, "extra_fields", NULL, "expected 4 fields separated by %s, found more",
                      sep),
               1;
    double rating;
    long long ts;
    const char *user = trim(f[0]), *item = trim(f[1]);
    if (!take_user(r, rec, user, "user")) return 1;
    if (!check_item(r, rec, item, "item")) return 1;
    if (!parse_double(trim(f[2]), &rating))
        return reject(r, rec, "bad_rating", "rating", "field 3 rating: expected a number"), 1;
    if (!parse_i64(trim(f[3]), &ts) || ts < 0)
        return reject(r, rec, "bad_timestamp", "timestamp",
                      "field 4 timestamp: expected Unix seconds"),
               1;
    start_record(r, rec, PVG_RECORD_EVENT);
    rec->user = r->user;
    rec->event.type = PVG_EVENT_RATING;
    rec->event.ts = ts;
    rec->event.item = item;
    rec->event.rating = rating;
    rec->event.fields = PVG_FIELD_RATING;
    return 1;
}

static const char *const ml_genres[19] = {
    "unknown",     "Action", "Adventure", "Animation", "Children's", "Comedy",  "Crime",
    "Documentary", "Drama",  "Fantasy",   "Film-Noir", "Horror",     "Musical", "Mystery",
    "Romance",     "Sci-Fi", "Thriller",  "War",       "Western"};

/* u.item "id|title|date|video|url|19 flags" or movies.dat "id::title::genres" */
static int parse_movielens_items(pvg_reader *r, pvg_record *rec, pvg_error *err)
{
    if (!fix_encoding(r, rec, PVG_ENCODING_AUTO)) return 1;
    start_record(r, rec, PVG_RECORD_EVENT);
    if (strstr(r->rec, "::")) {
        char *a = r->rec, *b = strstr(a, "::");
        *b = '\0';
        char *title = b + 2, *c = strstr(title, "::");
        if (!c) return reject(r, rec, "missing_fields", NULL, "expected id::title::genres"), 1;
        *c = '\0';
        char *genres = c + 2, *bar = strchr(genres, '|');
        if (bar) *bar = '\0';
        if (!check_item(r, rec, trim(a), "movie id")) return 1;
        rec->kind = PVG_RECORD_ITEM;
        rec->has_item = 1;
        rec->item.ext_id = trim(a);
        rec->item.title = title;
        rec->item.category = *genres ? genres : NULL;
        rec->item.price = -1;
        return 1;
    }
    char *f[24];
    int nf = 0;
    char *p = r->rec;
    while (nf < 24) {
        f[nf++] = p;
        char *q = strchr(p, '|');
        if (!q) break;
        *q = '\0';
        p = q + 1;
    }
    if (nf < 5)
        return reject(r, rec, "missing_fields", NULL,
                      "expected id|title|date|video|url|genre flags, found %d fields", nf),
               1;
    if (!check_item(r, rec, trim(f[0]), "movie id")) return 1;
    rec->kind = PVG_RECORD_ITEM;
    rec->has_item = 1;
    rec->item.ext_id = trim(f[0]);
    rec->item.title = f[1];
    rec->item.price = -1;
    for (int g = 0; g < 19 && 5 + g < nf; g++)
        if (f[5 + g][0] == '1') {
            rec->item.category = ml_genres[g];
            break;
        }
    return 1;
}

static int parse_retailrocket(pvg_reader *r, pvg_record *rec, pvg_error *err)
{
    if (!fix_encoding(r, rec, PVG_ENCODING_UTF8)) return 1;
    int rc = csv_split(r, ',', err);
    if (rc < 0) return -1;
    if (rc == 0) return reject_kept(r, rec, "bad_quoting", NULL), 1;
    if (r->nfields != 5)
        return reject(
                   r, rec, r->nfields < 5 ? "missing_fields" : "extra_fields", NULL,
                   "expected 5 fields (timestamp,visitorid,event,itemid,transactionid), found %d",
                   r->nfields),
               1;
    long long ms;
    if (!parse_i64(trim(r->fields[0]), &ms) || ms < 0)
        return reject(r, rec, "bad_timestamp", "timestamp",
                      "field 1 timestamp: expected Unix milliseconds"),
               1;
    const char *visitor = trim(r->fields[1]), *ev = trim(r->fields[2]), *item = trim(r->fields[3]);
    start_record(r, rec, PVG_RECORD_EVENT);
    pvg_event_type t;
    if (strcmp(ev, "view") == 0)
        t = PVG_EVENT_VIEW;
    else if (strcmp(ev, "addtocart") == 0)
        t = PVG_EVENT_CART;
    else if (strcmp(ev, "transaction") == 0)
        t = PVG_EVENT_PURCHASE;
    else
        return reject(r, rec, "unknown_event_type", "event",
                      "field 3 event: expected view, addtocart or transaction"),
               1;
    if (!take_user(r, rec, visitor, "visitorid")) return 1;
    if (!check_item(r, rec, item, "itemid")) return 1;
    start_record(r, rec, PVG_RECORD_EVENT);
    rec->kind = PVG_RECORD_EVENT;
    rec->user = r->user;
    rec->event.type = t;
    rec->event.ts = ms / 1000;
    rec->event.item = item;
    if (t == PVG_EVENT_PURCHASE) {
        rec->event.quantity = 1;
        rec->event.fields = PVG_FIELD_QUANTITY;
    }
    return 1;
}

static const char *json_type_word(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
        return "an integer";
    case JSON_REAL:
        return "a number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    default:
        return "null";
    }
}

/* A fixed description of a JSON syntax error. jansson's own text quotes the
 * input (e.g. "invalid token near 'alice'"), so it is never passed on. */
static const char *json_error_words(const json_error_t *e)
{
    switch (json_error_code(e)) {
    case json_error_premature_end_of_input:
        return "the JSON text ends too early";
    case json_error_end_of_input_expected:
        return "text after the JSON value";
    case json_error_invalid_utf8:
        return "invalid UTF-8";
    case json_error_invalid_syntax:
        return "invalid JSON syntax";
    case json_error_invalid_format:
        return "invalid JSON";
    case json_error_wrong_type:
        return "wrong JSON type";
    case json_error_null_character:
        return "a NUL character";
    case json_error_null_value:
        return "a null value";
    case json_error_null_byte_in_key:
        return "a NUL byte in a member name";
    case json_error_duplicate_key:
        return "a member name appears twice";
    case json_error_numeric_overflow:
        return "a number out of range";
    case json_error_item_not_found:
        return "a required member is missing";
    case json_error_index_out_of_range:
        return "an index out of range";
    case json_error_out_of_memory:
        return "out of memory";
    default:
        return "invalid JSON";
    }
}

/* Loads r->rec as one JSON object into r->json. Returns 1 ok, 0 rejected. */
static int load_json_line(pvg_reader *r, pvg_record *rec)
{
    json_error_t jerr;
    if (r->json) {
        json_decref(r->json);
        r->json = NULL;
    }
    long long bad = pvg_utf8_invalid_at(r->rec, r->rec_len);
    if (bad >= 0)
        return reject(r, rec, "invalid_utf8", NULL,
                      "invalid UTF-8 at byte %lld of the line (column %lld)", bad, bad + 1),
               0;
    r->json = json_loadb(r->rec, r->rec_len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
    if (!r->json)
        return reject(r, rec, "bad_json", NULL, "column %d: %s", jerr.column,
                      json_error_words(&jerr)),
               0;
    if (!json_is_object(r->json))
        return reject(r, rec, "not_an_object", NULL, "expected a JSON object, got %s",
                      json_type_word(r->json)),
               0;
    return 1;
}

static int parse_amazon(pvg_reader *r, pvg_record *rec, pvg_error *err)
{
    if (!load_json_line(r, rec)) return 1;
    json_t *o = r->json;
    json_t *u = json_object_get(o, "reviewerID"), *a = json_object_get(o, "asin"),
           *ov = json_object_get(o, "overall"), *t = json_object_get(o, "unixReviewTime");
    if (!json_is_string(u))
        return reject(r, rec, u ? "bad_type" : "missing_fields", "reviewerID",
                      "field \"reviewerID\": expected a non-empty string%s", u ? "" : " (missing)"),
               1;
    if (!json_is_string(a))
        return reject(r, rec, a ? "bad_type" : "missing_item", "asin",
                      "field \"asin\": expected a non-empty string%s", a ? "" : " (missing)"),
               1;
    if (!json_is_number(ov))
        return reject(r, rec, ov ? "bad_rating" : "missing_fields", "overall",
                      "field \"overall\": expected a number%s", ov ? "" : " (missing)"),
               1;
    if (!json_is_integer(t) || json_integer_value(t) < 0)
        return reject(r, rec, t ? "bad_timestamp" : "missing_fields", "unixReviewTime",
                      "field \"unixReviewTime\": expected Unix seconds (integer)%s",
                      t ? "" : " (missing)"),
               1;
    if (strlen(json_string_value(u)) != json_string_length(u))
        return reject(r, rec, "bad_user_id", "reviewerID",
                      "field \"reviewerID\": contains a NUL character"),
               1;
    if (strlen(json_string_value(a)) != json_string_length(a))
        return reject(r, rec, "bad_item_id", "asin", "field \"asin\": contains a NUL character"), 1;
    if (!take_user(r, rec, json_string_value(u), "reviewerID")) return 1;
    if (!check_item(r, rec, json_string_value(a), "asin")) return 1;
    start_record(r, rec, PVG_RECORD_EVENT);
    rec->user = r->user;
    rec->event.type = PVG_EVENT_RATING;
    rec->event.ts = (int64_t)json_integer_value(t);
    rec->event.item = json_string_value(a);
    rec->event.rating = json_number_value(ov);
    rec->event.fields = PVG_FIELD_RATING;
    return 1;
}

/* A catalog record of the native format: {"type":"item", ...}. */
static int parse_jsonl_item(pvg_reader *r, pvg_record *rec)
{
    json_t *o = r->json;
    json_t *it = json_object_get(o, "item");
    if (it && !json_is_null(it) && !json_is_string(it))
        return reject(r, rec, "bad_type", "item", "field \"item\": expected a string, got %s",
                      json_type_word(it)),
               1;
    const char *item = json_is_string(it) ? json_string_value(it) : NULL;
    if (item && strlen(item) != json_string_length(it))
        return reject(r, rec, "bad_item_id", "item", "field \"item\": contains a NUL character"), 1;
    if (!check_item(r, rec, item, "item")) return 1;
    start_record(r, rec, PVG_RECORD_ITEM);
    rec->has_item = 1;
    rec->item.ext_id = item;
    rec->item.price = -1;
    static const char *const strs[] = {"title", "category"};
    for (int i = 0; i < 2; i++) {
        json_t *v = json_object_get(o, strs[i]);
        if (v && !json_is_string(v) && !json_is_null(v))
            return reject(r, rec, "bad_type", strs[i], "field \"%s\": expected a string, got %s",
                          strs[i], json_type_word(v)),
                   1;
        if (json_is_string(v)) {
            if (i == 0)
                rec->item.title = json_string_value(v);
            else
                rec->item.category = json_string_value(v);
        }
    }
    json_t *pr = json_object_get(o, "price");
    if (pr && !json_is_null(pr)) {
        if (!json_is_number(pr) || json_number_value(pr) < 0)
            return reject(r, rec, "bad_price", "price", "field \"price\": expected a number >= 0"),
                   1;
        rec->item.price = json_number_value(pr);
    }
    json_t *attrs = json_object_get(o, "attributes");
    if (attrs && !json_is_null(attrs)) {
        if (!json_is_object(attrs))
            return reject(r, rec, "bad_type", "attributes",
                          "field \"attributes\": expected an object, got %s",
                          json_type_word(attrs)),
                   1;
        /* Kept as compact JSON; the text lives in r->conv. */
        char *txt = json_dumps(attrs, JSON_COMPACT | JSON_SORT_KEYS);
        if (txt) {
            size_t n = strlen(txt) + 1;
            if (n > r->conv_cap) {
                char *p = realloc(r->conv, n);
                if (p) {
                    r->conv = p;
                    r->conv_cap = n;
                }
            }
            if (n <= r->conv_cap) {
                memcpy(r->conv, txt, n);
                rec->item.attrs_json = r->conv;
            }
            free(txt);
        }
    }
    return 1;
}

/* Native JSON Lines (docs/formats.md). An event line is parsed by
 * pvg_event_from_json, the same code as the API's POST /v1/events. */
static int parse_jsonl(pvg_reader *r, pvg_record *rec, pvg_error *err)
{
    if (!load_json_line(r, rec)) return 1;
    json_t *type = json_object_get(r->json, "type");
    if (json_is_string(type) && strcmp(json_string_value(type), "item") == 0)
        return parse_jsonl_item(r, rec);
    static const pvg_event_json_rules rules = {.anonymous_ok = 1, .default_ts = 0};
    pvg_event_json_fault fault;
    if (pvg_event_from_json(r->json, &rules, &r->jev, &fault) != PVG_OK)
        return reject(r, rec, fault.reason, fault.field, "%s", fault.detail), 1;
    start_record(r, rec, r->jev.user ? PVG_RECORD_EVENT : PVG_RECORD_ANONYMOUS);
    rec->event = r->jev.event;
    rec->user = r->jev.user;
    return 1;
}

/* user<TAB>item<TAB>weight[<TAB>unix_ts]: a rating event whose rating is
 * the weight (the recommenders use it as the interaction weight). */
static int parse_tsv(pvg_reader *r, pvg_record *rec, pvg_error *err)
{
    if (!fix_encoding(r, rec, PVG_ENCODING_UTF8)) return 1;
    char *f[5];
    int nf = 0;
    char *p = r->rec;
    while (nf < 5) {
        f[nf++] = p;
        char *q = strchr(p, '\t');
        if (!q) break;
        *q = '\0';
        p = q + 1;
    }
    if (nf < 3)
        return reject(r, rec, "missing_fields", NULL,
                      "expected user<TAB>item<TAB>weight[<TAB>unix_ts], found %d fields", nf),
               1;
    if (nf > 4)
        return reject(r, rec, "extra_fields", NULL, "expected at most 4 tab-separated fields"), 1;
    double w;
    long long ts = 0;
    if (!take_user(r, rec, f[0], "user")) return 1;
    if (!check_item(r, rec, f[1], "item")) return 1;
    if (!parse_double(f[2], &w))
        return reject(r, rec, "bad_weight", "weight", "field 3 weight: expected a number"), 1;
    if (nf == 4 && (!parse_i64(f[3], &ts) || ts < 0))
        return reject(r, rec, "bad_timestamp", "unix_ts",
                      "field 4 timestamp: expected Unix seconds"),
               1;
    start_record(r, rec, PVG_RECORD_EVENT);
    rec->user = r->user;
    rec->event.type = PVG_EVENT_RATING;
    rec->event.ts = ts;
    rec->event.item = f[1];
    rec->event.rating = w;
    rec->event.fields = PVG_FIELD_RATING;
    return 1;
}

/* ---- public API ------------------------------------------------------ */

static int check_header(pvg_reader *r, pvg_error *err)
{
    const char *expect = NULL;
    if (r->fmt == PVG_FORMAT_ONLINE_RETAIL) expect = ONLINE_RETAIL_HEADER;
    if (r->fmt == PVG_FORMAT_RETAILROCKET)
        expect = "timestamp,visitorid,event,itemid,transactionid";
    if (!expect) return 0;
    char *line;
    size_t len;
    int rc = next_line(r, &line, &len, err);
    if (rc < 0) return -1;
    if (rc == 0)
        return pvg_error_set_at(err, PVG_ERR_INVALID, r->path, 1, 0, 0,
                                "empty file: expected the header '%s'", expect),
               -1;
    if (len >= 3 && (unsigned char)line[0] == 0xEF && (unsigned char)line[1] == 0xBB &&
        (unsigned char)line[2] == 0xBF) {
        line += 3;
        len -= 3;
    }
    if (len != strlen(expect) || memcmp(line, expect, len) != 0)
        /* The line found is not quoted: in a file of another format it is
         * a data row, which may be personal. */
        return pvg_error_set_at(err, PVG_ERR_INVALID, r->path, 1, 1, 0,
                                "not a %s file: expected the header '%s' on line 1, found another "
                                "line of %zu bytes",
                                pvg_format_name(r->fmt), expect, len),
               -1;
    return 0;
}

pvg_status pvg_reader_open(const char *path, pvg_format fmt, const pvg_reader_options *opts,
                           pvg_reader **out, pvg_error *err)
{
    *out = NULL;
    if (!path || (unsigned)fmt >= PVG_FORMAT_COUNT)
        return pvg_error_set(err, PVG_ERR_INVALID, "reader: missing path or unknown format");
    pvg_reader *r = calloc(1, sizeof *r);
    if (!r) return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    if (opts) r->opts = *opts;
    r->fmt = fmt;
    r->max_line = r->opts.max_line_bytes ? r->opts.max_line_bytes : DEFAULT_MAX_LINE;
    r->cap = r->max_line + READ_CHUNK + 2;
    r->buf = malloc(r->cap);
    r->path = strdup(path);
    r->next_line = 1;
    if (!r->buf || !r->path) {
        pvg_reader_free(r);
        return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    }
    r->gz = gzopen(path, "rb");
    if (!r->gz) {
        pvg_status st =
            pvg_error_set_at(err, errno == ENOENT ? PVG_ERR_NOT_FOUND : PVG_ERR_IO, path, 0, 0, -1,
                             "cannot open: %s", strerror(errno ? errno : EIO));
        pvg_reader_free(r);
        return st;
    }
    gzbuffer(r->gz, 1u << 17);
    if (check_header(r, err) < 0) {
        pvg_status st = err ? err->code : PVG_ERR_INVALID;
        pvg_reader_free(r);
        return st;
    }
    *out = r;
    return PVG_OK;
}

int pvg_reader_next(pvg_reader *r, pvg_record *rec, pvg_error *err)
{
    for (;;) {
        int rc = next_record_line(r, err);
        if (rc <= 0) return rc < 0 ? (err ? err->code : PVG_ERR_IO) : 0;
        r->data_lines++;
        if (r->rec_len == 0 && !r->too_long) {
            reject(r, rec, "empty_line", NULL, "empty line (expected a %s row)",
                   pvg_format_name(r->fmt));
            return 1;
        }
        if (r->too_long) {
            reject(r, rec, "line_too_long", NULL, "line longer than %zu bytes", r->max_line);
            return 1;
        }
        switch (r->fmt) {
        case PVG_FORMAT_ONLINE_RETAIL:
            rc = parse_online_retail(r, rec, err);
            break;
        case PVG_FORMAT_MOVIELENS:
            rc = parse_movielens(r, rec, err);
            break;
        case PVG_FORMAT_MOVIELENS_ITEMS:
            rc = parse_movielens_items(r, rec, err);
            break;
        case PVG_FORMAT_RETAILROCKET:
            rc = parse_retailrocket(r, rec, err);
            break;
        case PVG_FORMAT_AMAZON_REVIEWS:
            rc = parse_amazon(r, rec, err);
            break;
        case PVG_FORMAT_JSONL:
            rc = parse_jsonl(r, rec, err);
            break;
        case PVG_FORMAT_TSV:
            rc = parse_tsv(r, rec, err);
            break;
        default: /* pvg_reader_open admits only the formats above */
            assert(!"reader of an unknown format");
            return pvg_error_set(err, PVG_ERR_INTERNAL, "bad format");
        }
        if (rc < 0) return err ? err->code : PVG_ERR_IO;
        return 1;
    }
}

long pvg_reader_lines(const pvg_reader *r)
{
    return r ? r->data_lines : 0;
}

long long pvg_reader_bytes(const pvg_reader *r)
{
    return r ? r->consumed : 0;
}

void pvg_reader_free(pvg_reader *r)
{
    if (!r) return;
    if (r->gz) gzclose(r->gz);
    if (r->json) json_decref(r->json);
    free(r->buf);
    free(r->rec);
    free(r->fieldbuf);
    free(r->conv);
    free(r->path);
    free(r);
}
