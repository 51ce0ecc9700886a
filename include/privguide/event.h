/*
 * privguide/event.h - the shared vocabulary of shopping data: event types,
 * the event record, and catalog items. Used by the store, the importers,
 * the recommenders, the DP queries and the server alike.
 */
#ifndef PRIVGUIDE_EVENT_H
#define PRIVGUIDE_EVENT_H

#include <privguide/common.h>

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default) /* the API; everything else is hidden */

typedef enum pvg_event_type {
    PVG_EVENT_VIEW = 0,
    PVG_EVENT_CART = 1,
    PVG_EVENT_PURCHASE = 2,
    PVG_EVENT_RETURN = 3,
    PVG_EVENT_RATING = 4,
    PVG_EVENT_SEARCH = 5,
    PVG_EVENT_TYPE_COUNT = 6
} pvg_event_type;

/* Optional fields of an event; a set bit in pvg_event.fields means present. */
enum {
    PVG_FIELD_QUANTITY = 1u << 0, /* units, signed as in the source (returns < 0) */
    PVG_FIELD_AMOUNT = 1u << 1,   /* money for the whole line, signed (returns < 0) */
    PVG_FIELD_RATING = 1u << 2,   /* explicit rating, e.g. 1..5 */
    PVG_FIELD_QUERY = 1u << 3,    /* search query text */
    PVG_FIELD_COUNTRY = 1u << 4,  /* the shopper's country for this event */
    PVG_FIELD_ALL = (1u << 5) - 1
};
#define PVG_FIELD_COUNT 5

/* One event. Strings are borrowed from whoever produced the event (a reader,
 * the store's iterator) and are valid until that producer's next call. */
typedef struct pvg_event {
    pvg_event_type type;
    unsigned fields;  /* PVG_FIELD_* bits of the optional fields present */
    int64_t ts;       /* seconds since the Unix epoch, UTC */
    const char *item; /* external item id; NULL only for a search without item */
    int64_t item_id;  /* catalog row id when known (store iterators), else 0 */
    double quantity;
    double amount;
    double rating;
    const char *query;   /* NUL-terminated UTF-8 or NULL */
    const char *country; /* NUL-terminated UTF-8 or NULL */
} pvg_event;

/* How many of an item's most recent prices the store keeps to give its
 * typical price (pvg_item.price). */
#define PVG_ITEM_PRICE_WINDOW 32

/* A catalog item. Catalog data is not personal and is stored in plaintext. */
typedef struct pvg_item {
    int64_t id;           /* catalog row id (store), 0 when not stored yet */
    const char *ext_id;   /* the shop's item id, e.g. a StockCode */
    const char *title;    /* may be NULL */
    const char *category; /* may be NULL */
    /* Unit price; negative means unknown. Read from the store: the item's
     * typical price, the median of the last PVG_ITEM_PRICE_WINDOW prices
     * seen for it (the lower of the two middle ones for an even count, so
     * always a price that was charged). On put: a price seen for the item
     * (a sale row's unit price, or the operator's), added to that window and
     * kept as its last price. */
    double price;
    const char *attrs_json; /* a JSON object of free attributes, or NULL */
    /* 1: a catalog item, from the operator's catalogue (a catalogue load:
     * pvg_store_catalog_declare/import, a catalogue row of an import such
     * as MovieLens u.item, or a pvg_store_item_put that carried title,
     * category, price or attributes); 0: an item that exists only because
     * an event or a sale row named it (even when the row gave it a title
     * and a price). Only catalog items form the public domain of DP
     * releases (release.h, docs/store.md "Catalog items and the DP
     * domain"). Read from the store; on pvg_store_item_put, 1 here or any
     * catalog field makes the item catalog (and it stays so). */
    int catalog;
    /* Read from the store: the last price seen (negative: unknown). Ignored
     * on put. */
    double last_price;
} pvg_item;

/* "view", "cart", "purchase", "return", "rating", "search"; "?" when out of
 * range. Static string. */
const char *pvg_event_type_name(pvg_event_type type);

/* Parses a type name (the names above, exact, lower case). Returns PVG_OK or
 * PVG_ERR_INVALID. */
pvg_status pvg_event_type_parse(const char *name, pvg_event_type *out) PVG_WARN_UNUSED;

/* "quantity", "amount", "rating", "query", "country" for one PVG_FIELD_* bit;
 * NULL for anything else. */
const char *pvg_event_field_name(unsigned field_bit);

/* Parses a field name into its PVG_FIELD_* bit; 0 when unknown. */
unsigned pvg_event_field_parse(const char *name) PVG_WARN_UNUSED;

/* ---- external ids ----------------------------------------------------- */

/* The longest external user or item id, in bytes (after normalisation). A
 * longer id is refused with the reason code "id_too_long" by every reader,
 * the store's ingest and the API; ids are never truncated. */
#define PVG_ID_MAX 256

/* The one normalisation of an external user id, applied wherever a user id
 * comes in (every reader, the JSON event parser, the CLI and the HTTP API),
 * so that all of them name the same shopper with the same string:
 *   - surrounding ASCII spaces and tabs are removed;
 *   - a decimal id written as a number with a zero fraction loses the
 *     fraction: "17850.0" and "17850.00" become "17850" (spreadsheet
 *     exports write integer ids that way); other ids are kept as they are
 *     ("017850", "c-17850.5" and "u1" are unchanged).
 * Writes the canonical id into out[0..cap) (out may be the same buffer as
 * in; the result is never longer than the input). On failure *reason (when
 * not NULL) is a stable reason code and err names it; out is then "":
 *   "bad_user_id"  empty, or a control character (bytes < 0x20 or 0x7f)
 *   "id_too_long"  more than PVG_ID_MAX bytes, or more than cap - 1
 * Returns PVG_OK or PVG_ERR_INVALID. The text of err never quotes the id. */
pvg_status pvg_user_id_normalize(const char *in, char *out, size_t cap, const char **reason,
                                 pvg_error *err) PVG_WARN_UNUSED;

/* Checks an external item id (not rewritten: item ids are the shop's own
 * codes). Returns NULL when usable, else a stable reason code:
 * "missing_item" (NULL or empty), "bad_item_id" (a control character),
 * "id_too_long" (more than PVG_ID_MAX bytes). */
const char *pvg_item_id_check(const char *id);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
