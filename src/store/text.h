/*
 * text.h - small text utilities shared by the readers, the store and the
 * server: UTF-8 validation, Latin-1 transcoding, date-time parsing,
 * money rounding, and the one parser of a JSON event object (used by the
 * JSONL reader and the API's POST /v1/events alike). Internal (not
 * installed).
 */
#ifndef PVG_STORE_TEXT_H
#define PVG_STORE_TEXT_H

#include <privguide/event.h>

#include <stddef.h>
#include <stdint.h>

struct json_t; /* jansson's json_t */

/* Byte offset of the first invalid UTF-8 sequence in s[0..n), or -1 when
 * the text is valid (overlongs, surrogates and > U+10FFFF are invalid). */
long long pvg_utf8_invalid_at(const char *s, size_t n);

/* Transcodes Latin-1 s[0..n) into out (room for 2n+1 bytes); returns the
 * output length and NUL-terminates. */
size_t pvg_latin1_to_utf8(const char *s, size_t n, char *out);

/* Parses "YYYY-MM-DD[ T]HH:MM[:SS][Z|+HH:MM|-HH:MM]", "YYYY-MM-DD" or
 * "M/D/YYYY H:MM[:SS]" as UTC (or with the given offset) into Unix
 * seconds. Returns 0 on success, -1 when malformed or out of range. */
int pvg_parse_datetime(const char *s, int64_t *out);

/* Formats Unix seconds as "YYYY-MM-DDTHH:MM:SSZ" into buf (>= 21 bytes). */
void pvg_format_datetime(int64_t t, char *buf, size_t cap);

/* Days since 1970-01-01 of a civil date (proleptic Gregorian). */
int64_t pvg_days_from_civil(int64_t y, unsigned m, unsigned d);

/* Rounds money to whole cents (half away from zero). */
double pvg_round_cents(double x);

/* ---- one event as a JSON object (event_json.c) --------------------------
 * The grammar of docs/formats.md ("jsonl") and docs/api.md (POST /v1/events):
 * members user, type, item, ts, quantity, amount, rating, query, country,
 * id; any other member is refused. Ids are JSON strings. */

/* What differs between the two callers; everything else is the same code. */
typedef struct pvg_event_json_rules {
    int anonymous_ok;   /* 1: no "user" makes an anonymous event (import);
                           0: "user" is required (API) */
    int64_t default_ts; /* > 0: the time of an event without "ts" (API: now);
                           0: "ts" is required (import) */
} pvg_event_json_rules;

typedef struct pvg_event_json {
    pvg_event event;   /* strings borrowed from the JSON object */
    const char *user;  /* canonical user id (in user_buf), NULL when anonymous */
    const char *dedup; /* the "id" member (deduplication key) or NULL */
    char user_buf[PVG_ID_MAX + 1];
} pvg_event_json;

/* Why an object was refused. Never holds a value taken from the object. */
typedef struct pvg_event_json_fault {
    const char *reason; /* stable reason code (static), e.g. "bad_timestamp" */
    const char *field;  /* the member at fault (static), or NULL for the object */
    char detail[200];   /* what was expected */
} pvg_event_json_fault;

/* Turns one JSON value into an event. Returns PVG_OK with *out filled, or
 * PVG_ERR_INVALID with *fault filled. Reason codes: not_an_object,
 * unknown_field, missing_fields, bad_type, unknown_event_type,
 * bad_user_id, bad_item_id, id_too_long, missing_item, bad_timestamp,
 * bad_number, bad_value, too_long. */
pvg_status pvg_event_from_json(const struct json_t *obj, const pvg_event_json_rules *rules,
                               pvg_event_json *out, pvg_event_json_fault *fault);

#endif
