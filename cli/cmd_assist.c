/*
 * cmd_assist.c - `privguide assist`: ask the shopping assistant one
 * question over the store's catalog (docs/assistant.md).
 */
#include "cli.h"

#include <privguide/access.h>
#include <privguide/assistant.h>
#include <privguide/store.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const cli_flag assist_flags[] = {
    {"user", CLI_STR, "ID",
     "ask as this shopper: the conversation is stored sealed under their key, and the answer is "
     "personal when they consent to personalisation"},
    {"conversation", CLI_STR, "ID",
     "continue this conversation (a follow-up refines its last answer); needs --user (an "
     "anonymous conversation lives only in a server's memory)"},
    {"k", CLI_INT, "N", "items in the answer, 1..50 (default 5)"},
    {"json", CLI_BOOL, NULL, "print the whole answer as JSON"},
    CLI_LLM_FLAGS,
    {0},
};

void cli_assist_llm_options(cli_ctx *c, pvg_assist_llm_options *o)
{
    memset(o, 0, sizeof *o);
    o->url = cli_str(c, "llm-url");
    o->model = cli_str(c, "llm-model");
    o->key_file = cli_str(c, "llm-key-file");
    o->timeout_ms = (long)cli_int_range(c, "llm-timeout-ms", 5000, 1, 120000);
    if (!o->url && (o->model || o->key_file || cli_has(c, "llm-timeout-ms")))
        cli_usage_error(c, "--llm-model, --llm-key-file and --llm-timeout-ms need --llm-url");
}

static void print_answer(const char *text)
{
    json_t *o = json_loads(text, 0, NULL);
    if (!o) {
        printf("%s\n", text);
        return;
    }
    json_t *c = json_object_get(o, "constraints");
    char *cs = json_dumps(c, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10));
    printf("conversation %s%s\n", json_string_value(json_object_get(o, "conversation")),
           json_is_true(json_object_get(o, "followup")) ? " (follow-up)" : "");
    printf("understood: %s\n", cs ? cs : "?");
    free(cs);
    printf("personalization: %s\n", json_string_value(json_object_get(o, "personalization")));
    json_t *ph = json_object_get(o, "phrasing");
    printf("answer (%s): %s\n", json_string_value(json_object_get(ph, "by")),
           json_string_value(json_object_get(o, "answer")));
    if (json_string_value(json_object_get(ph, "reason")) &&
        strcmp(json_string_value(json_object_get(ph, "by")), "builtin") == 0 &&
        strncmp(json_string_value(json_object_get(ph, "reason")), "no language", 11) != 0)
        printf("  (%s)\n", json_string_value(json_object_get(ph, "reason")));
    json_t *items = json_object_get(o, "items");
    if (!json_array_size(items)) printf("no item satisfies these constraints\n");
    size_t i;
    json_t *it;
    json_array_foreach(items, i, it)
    {
        json_t *p = json_object_get(it, "price");
        printf("%zu. %s  %s", i + 1, json_string_value(json_object_get(it, "item")),
               json_string_value(json_object_get(it, "title"))
                   ? json_string_value(json_object_get(it, "title"))
                   : "");
        if (json_is_number(p)) printf("  %.2f", json_number_value(p));
        printf("\n   %s\n", json_string_value(json_object_get(it, "reason")));
    }
    json_decref(o);
}

static int run_assist(cli_ctx *c)
{
    const char *user = cli_str(c, "user");
    const char *conv = cli_str(c, "conversation");
    if (conv && !user)
        cli_usage_error(c, "--conversation needs --user: an anonymous conversation lives only in "
                           "a server's memory");
    long long k = cli_int_range(c, "k", 5, 1, 50);
    int rc = 0;
    pvg_store *s = cli_open_store(c, &rc);
    if (!s) return rc;
    pvg_assistant *a = NULL;
    pvg_error err;
    pvg_error_clear(&err);
    pvg_assistant_options ao = {0};
    cli_assist_llm_options(c, &ao.llm);
    pvg_status st = pvg_assistant_new(&ao, &a, &err);
    char *out = NULL;
    if (st == PVG_OK) {
        pvg_access g;
        pvg_access_init(&g, s, "cli");
        pvg_assist_request rq = {0};
        rq.message = cli_pos(c, 0);
        rq.conversation = conv;
        rq.ext_user = user;
        rq.k = (size_t)k;
        st = pvg_assistant_ask(a, &g, &rq, &out, &err);
    }
    pvg_assistant_free(a);
    pvg_store_free(s);
    if (st != PVG_OK) return cli_fail("assist", st, &err);
    if (cli_bool(c, "json"))
        printf("%s\n", out);
    else
        print_answer(out);
    pvg_free(out);
    return CLI_EXIT_OK;
}

const cli_command cli_cmds_assist[] = {
    {"assist", "MESSAGE", 1, 1, "ask the shopping assistant (constraints, items, reasons)",
     "Understands prices (\"under \xC2\xA3"
     "10\", \"between 5 and 20 dollars\", \"cheap\"), "
     "categories and\n"
     "attribute words, recipient and occasion, quantity, exclusions (\"not X\", \"without X\"),\n"
     "\"similar to <item>\" and, with --conversation, follow-ups (\"cheaper\", \"more like the "
     "second\n"
     "one\", \"in red\"). Every item satisfies the price, category and exclusion constraints.\n"
     "See docs/assistant.md.",
     assist_flags, run_assist},
    {0},
};
