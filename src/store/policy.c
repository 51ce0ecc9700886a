/*
 * policy.c - the data policy: an allow-list of event types, the fields kept
 * for each, and how many days each type is kept (minimisation and
 * retention). Parsed from policy.json; see docs/store.md for the schema.
 */
#include "store/store_priv.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char DEFAULT_POLICY[] =
    "{\n"
    "  \"version\": 1,\n"
    "  \"retention_basis\": \"collection_time\",\n"
    "  \"events\": {\n"
    "    \"view\":     {\"retention_days\": 180,  \"fields\": []},\n"
    "    \"cart\":     {\"retention_days\": 180,  \"fields\": [\"quantity\"]},\n"
    "    \"purchase\": {\"retention_days\": 1095, \"fields\": [\"quantity\", \"amount\", "
    "\"country\"]},\n"
    "    \"return\":   {\"retention_days\": 1095, \"fields\": [\"quantity\", \"amount\", "
    "\"country\"]},\n"
    "    \"rating\":   {\"retention_days\": 1095, \"fields\": [\"rating\"]},\n"
    "    \"search\":   {\"retention_days\": 30,   \"fields\": [\"query\"]}\n"
    "  },\n"
    "  \"conversations\": {\"retention_days\": 30},\n"
    "  \"consent_defaults\": {\"personalization\": true, \"analytics\": true},\n"
    "  \"purposes\": [\n"
    "    {\"name\": \"personalization\", \"consent\": \"personalization\",\n"
    "     \"description\": \"recommendations and search ranked for you\",\n"
    "     \"event_types\": [\"view\", \"cart\", \"purchase\", \"return\", \"rating\", "
    "\"search\"]},\n"
    "    {\"name\": \"analytics\", \"consent\": \"analytics\",\n"
    "     \"description\": \"aggregate statistics released only with differential privacy\",\n"
    "     \"event_types\": [\"view\", \"cart\", \"purchase\", \"return\", \"rating\"]},\n"
    "    {\"name\": \"orders\", \"consent\": null,\n"
    "     \"description\": \"your purchases and returns, kept for the shop's records\",\n"
    "     \"event_types\": [\"purchase\", \"return\"]}\n"
    "  ]\n"
    "}\n";

const char *pvg_policy_default_text(void)
{
    return DEFAULT_POLICY;
}

void pvg_policy_free(pvg_policy *p)
{
    free(p->text);
    memset(p, 0, sizeof *p);
}

pvg_status pvg_policy_parse(const char *text, const char *source, pvg_policy *out, pvg_error *err)
{
    memset(out, 0, sizeof *out);
    json_error_t jerr;
    json_t *root = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return pvg_error_set_at(err, PVG_ERR_INVALID, source, jerr.line, jerr.column, jerr.position,
                                "%s", jerr.text);
    pvg_status st = PVG_OK;
    json_t *ver = json_object_get(root, "version");
    json_t *events = json_object_get(root, "events");
    if (!json_is_object(root) || !json_is_integer(ver) || json_integer_value(ver) != 1) {
        st = pvg_error_set_at(err, PVG_ERR_INVALID, source, 0, 0, -1,
                              "\"version\": expected 1 (the only policy version)");
        goto out;
    }
    if (!json_is_object(events)) {
        st = pvg_error_set_at(
            err, PVG_ERR_INVALID, source, 0, 0, -1,
            "\"events\": expected an object of event type -> {retention_days, fields}");
        goto out;
    }
    const char *tname;
    json_t *tv;
    json_object_foreach(events, tname, tv)
    {
        pvg_event_type t;
        if (pvg_event_type_parse(tname, &t) != PVG_OK) {
            st = pvg_error_set_at(err, PVG_ERR_INVALID, source, 0, 0, -1,
                                  "events.%s: unknown event type (expected view, cart, purchase, "
                                  "return, rating or search)",
                                  tname);
            goto out;
        }
        json_t *days = json_object_get(tv, "retention_days");
        json_t *fields = json_object_get(tv, "fields");
        if (!json_is_integer(days) || json_integer_value(days) < 1 ||
            json_integer_value(days) > 36500) {
            st = pvg_error_set_at(err, PVG_ERR_INVALID, source, 0, 0, -1,
                                  "events.%s.retention_days: expected an integer from 1 to 36500",
                                  tname);
            goto out;
        }
        if (fields && !json_is_array(fields)) {
            st = pvg_error_set_at(err, PVG_ERR_INVALID, source, 0, 0, -1,
                                  "events.%s.fields: expected an array of field names", tname);
            goto out;
        }
        size_t i;
        json_t *f;
        unsigned mask = 0;
        json_array_foreach(fields, i, f)
        {
            unsigned bit = json_is_string(f) ? pvg_event_field_parse(json_string_value(f)) : 0;
            if (!bit) {
                st = pvg_error_set_at(err, PVG_ERR_INVALID, source, 0, 0, -1,
                                      "events.%s.fields[%zu]: expected one of quantity, amount, "
                                      "rating, query, country",
                                      tname, i);
                goto out;
            }
            mask |= bit;
        }
        out->allowed[t] = 1;
        out->fields[t] = mask;
        out->retention_days[t] = (int)json_integer_value(days);
    }
    json_t *basis = json_object_get(root, "retention_basis");
    if (basis) {
        const char *b = json_is_string(basis) ? json_string_value(basis) : "";
        if (strcmp(b, "collection_time") == 0)
            out->basis_collection = 1;
        else if (strcmp(b, "event_time") != 0) {
            st = pvg_error_set_at(
                err, PVG_ERR_INVALID, source, 0, 0, -1,
                "\"retention_basis\": expected \"event_time\" or \"collection_time\"");
            goto out;
        }
    }
    out->default_personalization = 1;
    out->default_analytics = 1;
    json_t *cd = json_object_get(root, "consent_defaults");
    if (cd) {
        json_t *p = json_object_get(cd, "personalization"), *a = json_object_get(cd, "analytics");
        if (!json_is_object(cd) || (p && !json_is_boolean(p)) || (a && !json_is_boolean(a))) {
            st = pvg_error_set_at(
                err, PVG_ERR_INVALID, source, 0, 0, -1,
                "\"consent_defaults\": expected {\"personalization\": bool, \"analytics\": bool}");
            goto out;
        }
        if (p) out->default_personalization = json_is_true(p);
        if (a) out->default_analytics = json_is_true(a);
    }
    /* the assistant's conversations: {"retention_days": N}, default 30 */
    out->conversation_days = 30;
    json_t *conv = json_object_get(root, "conversations");
    if (conv) {
        json_t *cd = json_object_get(conv, "retention_days");
        if (!json_is_object(conv) || !json_is_integer(cd) || json_integer_value(cd) < 1 ||
            json_integer_value(cd) > 36500) {
            st = pvg_error_set_at(err, PVG_ERR_INVALID, source, 0, 0, -1,
                                  "\"conversations\".retention_days: expected an integer from 1 "
                                  "to 36500");
            goto out;
        }
        out->conversation_days = (int)json_integer_value(cd);
    }
    json_t *purposes = json_object_get(root, "purposes");
    if (purposes && !json_is_array(purposes)) {
        st = pvg_error_set_at(
            err, PVG_ERR_INVALID, source, 0, 0, -1,
            "\"purposes\": expected an array of {name, description, event_types, consent}");
        goto out;
    }
    /* every purpose: a name, and the consent switch that governs it: absent
     * or null (none: e.g. orders), "personalization" or "analytics" */
    for (size_t i = 0; purposes && i < json_array_size(purposes); i++) {
        json_t *pu = json_array_get(purposes, i);
        json_t *c = json_is_object(pu) ? json_object_get(pu, "consent") : NULL;
        const char *cs = json_string_value(c);
        if (!json_is_object(pu) || !json_is_string(json_object_get(pu, "name"))) {
            st =
                pvg_error_set_at(err, PVG_ERR_INVALID, source, 0, 0, -1,
                                 "\"purposes\"[%zu]: expected an object with a string \"name\"", i);
            goto out;
        }
        if (c && !json_is_null(c) &&
            !(cs && (strcmp(cs, "personalization") == 0 || strcmp(cs, "analytics") == 0))) {
            st =
                pvg_error_set_at(err, PVG_ERR_INVALID, source, 0, 0, -1,
                                 "\"purposes\"[%zu].consent: expected null, \"personalization\" or "
                                 "\"analytics\"",
                                 i);
            goto out;
        }
        /* the switch: "consent" when present (null: none); absent, the
         * switch named like the purpose, if any */
        const char *sw = c ? cs : json_string_value(json_object_get(pu, "name"));
        unsigned char bit = PVG_COLLECT_ALWAYS;
        if (sw && strcmp(sw, "personalization") == 0) bit = PVG_COLLECT_PERS;
        if (sw && strcmp(sw, "analytics") == 0) bit = PVG_COLLECT_ANAL;
        size_t k;
        json_t *et;
        json_array_foreach(json_object_get(pu, "event_types"), k, et)
        {
            pvg_event_type t;
            if (json_is_string(et) && pvg_event_type_parse(json_string_value(et), &t) == PVG_OK)
                out->collect[t] |= (unsigned char)(PVG_COLLECT_NAMED | bit);
        }
    }
    out->text = strdup(text);
    if (!out->text) st = pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
out:
    json_decref(root);
    return st;
}

const char *pvg_store_policy_json(const pvg_store *s)
{
    return s->policy.text;
}

unsigned char *pvg_store_policy_memo(const pvg_store *s)
{
    return ((pvg_store *)s)->policy.memo; /* a cache beside the immutable text */
}

int pvg_store_policy_allows(const pvg_store *s, pvg_event_type type)
{
    return (unsigned)type < PVG_EVENT_TYPE_COUNT && s->policy.allowed[type];
}

int pvg_policy_collect_gated(const pvg_policy *p, pvg_event_type t)
{
    if ((unsigned)t >= PVG_EVENT_TYPE_COUNT) return 0;
    unsigned char c = p->collect[t];
    return (c & PVG_COLLECT_NAMED) && !(c & PVG_COLLECT_ALWAYS);
}

int pvg_policy_collect_allowed(const pvg_policy *p, pvg_event_type t, int personalization,
                               int analytics)
{
    if (!pvg_policy_collect_gated(p, t)) return 1;
    unsigned char c = p->collect[t];
    return ((c & PVG_COLLECT_PERS) && personalization) || ((c & PVG_COLLECT_ANAL) && analytics);
}

void pvg_policy_collect_refusal(const pvg_policy *p, pvg_event_type t, char *buf, size_t cap)
{
    unsigned char c = (unsigned)t < PVG_EVENT_TYPE_COUNT ? p->collect[t] : 0;
    int pers = (c & PVG_COLLECT_PERS) != 0, anal = (c & PVG_COLLECT_ANAL) != 0;
    snprintf(buf, cap, "the shopper does not consent to any purpose that uses %s events (%s%s%s)",
             pvg_event_type_name(t), pers ? "personalization" : "", pers && anal ? " or " : "",
             anal ? "analytics" : "");
}
