/*
 * privguide/import.h - streaming readers of the supported input formats.
 *
 * A reader turns a file into a stream of records: events (with the external
 * user id), catalog items, or rejects (a row that cannot be used, with its
 * 1-based line number, byte offset, a stable reason code, the field at
 * fault and a text saying what was expected; a reject never carries a value
 * of the row, as rows may be personal). Readers never skip a row silently.
 * Every reader normalises user ids with pvg_user_id_normalize and checks
 * item ids with pvg_item_id_check (event.h): ids longer than PVG_ID_MAX
 * bytes are refused ("id_too_long"), never truncated. They do not touch the store: the store's
 * ingest (store.h) and the recommenders' file loaders (model.h) both consume them.
 *
 * Formats:
 *   online-retail   UCI Online Retail CSV (RFC 4180; UTF-8 or Latin-1;
 *                   "12/1/2010 8:26" or "2010-12-01 08:26:00" dates;
 *                   "17850" or "17850.0" customer ids)
 *   movielens       u.data (tab) or ratings.dat ("::"); u.item / movies.dat
 *                   are read as catalogs (format movielens-items)
 *   retailrocket    events.csv: timestamp,visitorid,event,itemid,transactionid
 *   amazon-reviews  Amazon 5-core JSON lines (reviewerID, asin, overall,
 *                   unixReviewTime)
 *   jsonl           the native JSON Lines format (docs/formats.md)
 *   tsv             user<TAB>item<TAB>weight[<TAB>unix_ts]
 * A path ending in ".gz" is decompressed on the fly.
 */
#ifndef PRIVGUIDE_IMPORT_H
#define PRIVGUIDE_IMPORT_H

#include <privguide/common.h>
#include <privguide/event.h>

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default) /* the API; everything else is hidden */

typedef enum pvg_format {
    PVG_FORMAT_ONLINE_RETAIL = 0,
    PVG_FORMAT_MOVIELENS,
    PVG_FORMAT_MOVIELENS_ITEMS,
    PVG_FORMAT_RETAILROCKET,
    PVG_FORMAT_AMAZON_REVIEWS,
    PVG_FORMAT_JSONL,
    PVG_FORMAT_TSV,
    PVG_FORMAT_COUNT
} pvg_format;

/* Names as in the list above. Static string; "?" when out of range. */
const char *pvg_format_name(pvg_format fmt);
/* PVG_OK or PVG_ERR_INVALID for an unknown name. */
pvg_status pvg_format_parse(const char *name, pvg_format *out) PVG_WARN_UNUSED;

typedef enum pvg_record_kind {
    PVG_RECORD_EVENT = 1,    /* user + event (and, for some formats, item too) */
    PVG_RECORD_ITEM = 2,     /* catalog item only */
    PVG_RECORD_REJECT = 3,   /* unusable row: reason + text */
    PVG_RECORD_ANONYMOUS = 4 /* an event without a user id (kept only as an
                                anonymous, non-personal count) */
} pvg_record_kind;

/* One record. Every pointer is borrowed from the reader and valid until the
 * next pvg_reader_next or pvg_reader_free. */
typedef struct pvg_record {
    pvg_record_kind kind;
    long line;          /* 1-based line number in the file */
    long long offset;   /* byte offset of the line's start */
    const char *user;   /* external user id (EVENT), canonical form */
    pvg_event event;    /* EVENT and ANONYMOUS */
    int has_item;       /* 1 when `item` below carries catalog data */
    pvg_item item;      /* ITEM, and EVENT rows that also describe the item */
    const char *reason; /* REJECT: a stable reason code, e.g. "bad_quantity" */
    const char *field;  /* REJECT: the field at fault, e.g. "Quantity" (its name in the
                           format), or NULL when the row as a whole is at fault */
    const char *detail; /* REJECT: what was expected (names the field or column;
                           never quotes the row's content) */
} pvg_record;

typedef enum pvg_encoding {
    PVG_ENCODING_AUTO = 0, /* UTF-8; a line that is not valid UTF-8 is read as Latin-1 */
    PVG_ENCODING_UTF8,     /* invalid UTF-8 rejects the line */
    PVG_ENCODING_LATIN1
} pvg_encoding;

typedef struct pvg_reader_options {
    pvg_encoding encoding;     /* online-retail and CSV formats only */
    size_t max_line_bytes;     /* 0: default 1 MiB; longer lines are rejected */
    double tsv_default_weight; /* unused when 0 */
} pvg_reader_options;

typedef struct pvg_reader pvg_reader;

/* Opens `path` for streaming. opts may be NULL for defaults. On success
 * *out is new. Errors: PVG_ERR_IO (cannot open/read), PVG_ERR_INVALID (bad
 * options, or the header does not match the format; err says what was
 * expected), PVG_ERR_NOMEM. */
pvg_status pvg_reader_open(const char *path, pvg_format fmt, const pvg_reader_options *opts,
                           pvg_reader **out, pvg_error *err) PVG_WARN_UNUSED;

/* Reads the next record into *rec. Returns 1 when a record was produced, 0
 * at end of file, or a negative pvg_status on an I/O error (err filled). */
int pvg_reader_next(pvg_reader *r, pvg_record *rec, pvg_error *err) PVG_WARN_UNUSED;

/* Lines read so far (data lines, header excluded). */
long pvg_reader_lines(const pvg_reader *r);

/* Bytes consumed so far (of the decompressed stream). */
long long pvg_reader_bytes(const pvg_reader *r);

/* Closes and frees. NULL ok. */
void pvg_reader_free(pvg_reader *r);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
