/*
 * event_json.c - external ids and the one parser of a JSON event object
 * (event.h, text.h). The JSONL reader (reader.c) and the API's
 * POST /v1/events (server/routes.c) both call pvg_event_from_json, so the
 * same object gets the same verdict and reason code on both paths.
 */
#include <privguide/event.h>

#include "store/text.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define TS_LIMIT 32503680000LL /* 3000-01-01T00:00:00Z */
#define STR_(x) #x
#define STR(x) STR_(x)

static int is_space(char c)
{
    return c == ' ' || c == '\t';
}

static int has_control(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) return 1;
    return 0;
}

pvg_status pvg_user_id_normalize(const char *in, char *out, size_t cap, const char **reason,
                                 pvg_error *err)
{
    const char *why = NULL;
    if (reason) *reason = NULL;
    if (!in) in = "";
    size_t n = strlen(in), start = 0;
    while (start < n && is_space(in[start]))
        start++;
    while (n > start && is_space(in[n - 1]))
        n--;
    const char *s = in + start;
    n -= start;
    /* digits "." zeros -> digits */
    size_t dot = 0;
    while (dot < n && s[dot] >= '0' && s[dot] <= '9')
        dot++;
    if (dot > 0 && dot + 1 < n && s[dot] == '.') {
        size_t k = dot + 1;
        while (k < n && s[k] == '0')
            k++;
        if (k == n) n = dot;
    }
    if (n == 0)
        why = "bad_user_id";
    else if (n > PVG_ID_MAX || n >= cap)
        why = "id_too_long";
    else if (has_control(s, n))
        why = "bad_user_id";
    if (why) {
        if (cap) out[0] = '\0';
        if (reason) *reason = why;
        if (strcmp(why, "id_too_long") == 0)
            return pvg_error_set(err, PVG_ERR_INVALID, "user id: %s: longer than %zu bytes", why,
                                 cap && cap - 1 < PVG_ID_MAX ? cap - 1 : (size_t)PVG_ID_MAX);
        return pvg_error_set(err, PVG_ERR_INVALID, "user id: %s: %s", why,
                             n == 0 ? "empty" : "contains a control character");
    }
    memmove(out, s, n);
    out[n] = '\0';
    return PVG_OK;
}

const char *pvg_item_id_check(const char *id)
{
    if (!id || !*id) return "missing_item";
    size_t n = strlen(id);
    if (n > PVG_ID_MAX) return "id_too_long";
    if (has_control(id, n)) return "bad_item_id";
    return NULL;
}

/* ---- JSON events ------------------------------------------------------ */

static const char *const MEMBERS[] = {"user",   "type",  "item",    "ts", "quantity", "amount",
                                      "rating", "query", "country", "id", NULL};

static pvg_status fault_set(pvg_event_json_fault *f, const char *reason, const char *field,
                            const char *fmt, ...) PVG_PRINTF(4, 5);
static pvg_status fault_set(pvg_event_json_fault *f, const char *reason, const char *field,
                            const char *fmt, ...)
{
    f->reason = reason;
    f->field = field;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(f->detail, sizeof f->detail, fmt, ap);
    va_end(ap);
    return PVG_ERR_INVALID;
}

static const char *type_word(const json_t *v)
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

/* An optional string member of 1..max bytes without NUL or control
 * characters (country, query, id). *out NULL when absent or null. */
static pvg_status opt_string(const json_t *o, const char *name, size_t max, const char **out,
                             pvg_event_json_fault *f)
{
    json_t *v = json_object_get(o, name);
    *out = NULL;
    if (!v || json_is_null(v)) return PVG_OK;
    if (!json_is_string(v))
        return fault_set(f, "bad_type", name, "%s: expected a string, got %s", name, type_word(v));
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    if (n > max) return fault_set(f, "too_long", name, "%s: longer than %zu bytes", name, max);
    if (n == 0 || strlen(s) != n || has_control(s, n))
        return fault_set(f, "bad_value", name,
                         "%s: expected 1..%zu bytes of text without control characters", name, max);
    *out = s;
    return PVG_OK;
}

pvg_status pvg_event_from_json(const struct json_t *obj, const pvg_event_json_rules *rules,
                               pvg_event_json *out, pvg_event_json_fault *f)
{
    static const pvg_event_json_rules none = {0};
    if (!rules) rules = &none;
    memset(out, 0, sizeof *out);
    memset(f, 0, sizeof *f);
    const json_t *o = obj;
    if (!o || !json_is_object(o))
        return fault_set(f, "not_an_object", NULL, "expected a JSON object, got %s",
                         o ? type_word(o) : "nothing");
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)o, key, val)
    {
        int known = 0;
        for (int i = 0; MEMBERS[i] && !known; i++)
            known = strcmp(MEMBERS[i], key) == 0;
        /* The member's name is not repeated: it comes from the input. */
        if (!known)
            return fault_set(
                f, "unknown_field", NULL,
                "a member outside the event grammar (expected only user, type, item, ts, "
                "quantity, amount, rating, query, country, id)");
    }
    /* type */
    json_t *type = json_object_get(o, "type");
    if (!type || json_is_null(type))
        return fault_set(f, "missing_fields", "type",
                         "type: required (view, cart, purchase, return, rating or search)");
    if (!json_is_string(type))
        return fault_set(f, "bad_type", "type", "type: expected a string, got %s", type_word(type));
    pvg_event *ev = &out->event;
    if (pvg_event_type_parse(json_string_value(type), &ev->type) != PVG_OK)
        return fault_set(f, "unknown_event_type", "type",
                         "type: expected view, cart, purchase, return, rating or search");
    /* user */
    json_t *user = json_object_get(o, "user");
    if (!user || json_is_null(user)) {
        if (!rules->anonymous_ok) return fault_set(f, "missing_fields", "user", "user: required");
    } else if (!json_is_string(user)) {
        return fault_set(f, "bad_type", "user", "user: expected a string, got %s", type_word(user));
    } else {
        const char *why;
        if (strlen(json_string_value(user)) != json_string_length(user))
            return fault_set(f, "bad_user_id", "user", "user: contains a NUL character");
        if (pvg_user_id_normalize(json_string_value(user), out->user_buf, sizeof out->user_buf,
                                  &why, NULL) != PVG_OK)
            return fault_set(f, why, "user",
                             strcmp(why, "id_too_long") == 0
                                 ? "user: longer than " STR(PVG_ID_MAX) " bytes"
                                 : "user: expected a non-empty id without control characters");
        out->user = out->user_buf;
    }
    /* item */
    json_t *item = json_object_get(o, "item");
    if (item && !json_is_null(item)) {
        if (!json_is_string(item))
            return fault_set(f, "bad_type", "item", "item: expected a string, got %s",
                             type_word(item));
        const char *s = json_string_value(item);
        if (strlen(s) != json_string_length(item))
            return fault_set(f, "bad_item_id", "item", "item: contains a NUL character");
        if (*s) {
            const char *why = pvg_item_id_check(s);
            if (why)
                return fault_set(f, why, "item",
                                 strcmp(why, "id_too_long") == 0
                                     ? "item: longer than " STR(PVG_ID_MAX) " bytes"
                                     : "item: expected an id without control characters");
            ev->item = s;
        }
    }
    if (!ev->item && ev->type != PVG_EVENT_SEARCH)
        return fault_set(f, "missing_item", "item", "item: required for a %s event",
                         pvg_event_type_name(ev->type));
    /* ts */
    json_t *ts = json_object_get(o, "ts");
    if (!ts || json_is_null(ts)) {
        if (rules->default_ts <= 0)
            return fault_set(f, "missing_fields", "ts",
                             "ts: required (Unix seconds or an ISO 8601 date-time)");
        ev->ts = rules->default_ts;
    } else {
        int64_t when = -1;
        if (json_is_integer(ts))
            when = (int64_t)json_integer_value(ts);
        else if (!json_is_string(ts) || pvg_parse_datetime(json_string_value(ts), &when) != 0)
            when = -1;
        if (when < 0 || when >= TS_LIMIT)
            return fault_set(
                f, "bad_timestamp", "ts",
                "ts: expected Unix seconds (an integer >= 0) or an ISO 8601 date-time, "
                "before the year 3000");
        ev->ts = when;
    }
    /* numbers */
    static const char *const nums[] = {"quantity", "amount", "rating"};
    static const unsigned bits[] = {PVG_FIELD_QUANTITY, PVG_FIELD_AMOUNT, PVG_FIELD_RATING};
    double *dst[] = {&ev->quantity, &ev->amount, &ev->rating};
    for (int i = 0; i < 3; i++) {
        json_t *v = json_object_get(o, nums[i]);
        if (!v || json_is_null(v)) continue;
        if (!json_is_number(v))
            return fault_set(f, "bad_type", nums[i], "%s: expected a number, got %s", nums[i],
                             type_word(v));
        double x = json_number_value(v);
        if (!isfinite(x))
            return fault_set(f, "bad_number", nums[i], "%s: expected a finite number", nums[i]);
        *dst[i] = x;
        ev->fields |= bits[i];
    }
    /* strings */
    pvg_status st;
    if ((st = opt_string(o, "query", 1024, &ev->query, f)) != PVG_OK) return st;
    if ((st = opt_string(o, "country", 64, &ev->country, f)) != PVG_OK) return st;
    if ((st = opt_string(o, "id", PVG_ID_MAX, &out->dedup, f)) != PVG_OK) return st;
    if (ev->query) ev->fields |= PVG_FIELD_QUERY;
    if (ev->country) ev->fields |= PVG_FIELD_COUNTRY;
    if (ev->type == PVG_EVENT_SEARCH && !ev->query)
        return fault_set(f, "missing_fields", "query", "query: required for a search event");
    if (ev->type == PVG_EVENT_RATING && !(ev->fields & PVG_FIELD_RATING))
        return fault_set(f, "missing_fields", "rating", "rating: required for a rating event");
    return PVG_OK;
}
