/*
 * event.c - names of event types and optional fields.
 */
#include <privguide/event.h>

#include <string.h>

static const char *const type_names[PVG_EVENT_TYPE_COUNT] = {"view",   "cart",   "purchase",
                                                             "return", "rating", "search"};
static const char *const field_names[PVG_FIELD_COUNT] = {"quantity", "amount", "rating", "query",
                                                         "country"};

const char *pvg_event_type_name(pvg_event_type type)
{
    return (unsigned)type < PVG_EVENT_TYPE_COUNT ? type_names[type] : "?";
}

pvg_status pvg_event_type_parse(const char *name, pvg_event_type *out)
{
    for (int i = 0; name && i < PVG_EVENT_TYPE_COUNT; i++)
        if (strcmp(name, type_names[i]) == 0) {
            *out = (pvg_event_type)i;
            return PVG_OK;
        }
    return PVG_ERR_INVALID;
}

const char *pvg_event_field_name(unsigned bit)
{
    for (int i = 0; i < PVG_FIELD_COUNT; i++)
        if (bit == (1u << i)) return field_names[i];
    return NULL;
}

unsigned pvg_event_field_parse(const char *name)
{
    for (int i = 0; name && i < PVG_FIELD_COUNT; i++)
        if (strcmp(name, field_names[i]) == 0) return 1u << i;
    return 0;
}
