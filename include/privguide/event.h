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
    unsigned fields;      /* PVG_FIELD_* bits of the optional fields present */
    int64_t ts;           /* seconds since the Unix epoch, UTC */
    const char *item;     /* external item id; NULL only for a search without item */
    int64_t item_id;      /* catalog row id when known (store iterators), else 0 */
    double quantity;
    double amount;
    double rating;
    const char *query;    /* NUL-terminated UTF-8 or NULL */
    const char *country;  /* NUL-terminated UTF-8 or NULL */
} pvg_event;

/* A catalog item. Catalog data is not personal and is stored in plaintext. */
typedef struct pvg_item {
    int64_t id;             /* catalog row id (store), 0 when not stored yet */
    const char *ext_id;     /* the shop's item id, e.g. a StockCode */
    const char *title;      /* may be NULL */
    const char *category;   /* may be NULL */
    double price;           /* unit price; negative means unknown */
    const char *attrs_json; /* a JSON object of free attributes, or NULL */
} pvg_item;

/* "view", "cart", "purchase", "return", "rating", "search"; "?" when out of
 * range. Static string. */
const char *pvg_event_type_name(pvg_event_type type);

/* Parses a type name (the names above, exact, lower case). Returns PVG_OK or
 * PVG_ERR_INVALID. */
pvg_status pvg_event_type_parse(const char *name, pvg_event_type *out);

/* "quantity", "amount", "rating", "query", "country" for one PVG_FIELD_* bit;
 * NULL for anything else. */
const char *pvg_event_field_name(unsigned field_bit);

/* Parses a field name into its PVG_FIELD_* bit; 0 when unknown. */
unsigned pvg_event_field_parse(const char *name);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
