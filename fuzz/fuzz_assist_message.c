/*
 * fuzz_assist_message.c - libFuzzer harness for the assistant's message
 * parser (pvg_assist_parse, src/assistant/parse.c) and what is made of a
 * message: the constraints' JSON, its reading back (a conversation's
 * stored state), the hard-constraint filter, and the language model's
 * request body (src/assistant/llm.c; no request is sent). The first byte
 * chooses the vocabulary (none, or a small catalog's); the rest is the
 * message. Checks: a refusal says why; every kept word is terminated and
 * within the list bounds; prices and quantities are within their caps;
 * the constraints' JSON survives a round trip through the stored form
 * (but for the turn's own reference, new-request flag and notes);
 * the request body is JSON holding the message.
 * Seeds: fuzz/corpus/assist_message/.
 */
#include "fuzz_common.h"

#include "assistant/assist_internal.h"

#include <math.h>

static const char *const ITEMS[][3] = {
    {"85123A", "WHITE HANGING HEART T-LIGHT HOLDER", "holder"},
    {"22423", "REGENCY CAKESTAND 3 TIER", "tier"},
    {"M1", "TEA MUG", "mug"},
    {"M2", "COFFEE MUG", "mug"},
    {"M3", "RED HEART MUG", "mug"},
    {"H1", "GLASS CANDLE HOLDER", "holder"},
    {"H2", "ZINC CANDLE HOLDER", "holder"},
    {"L1", "WHITE METAL LANTERN", "lantern"},
    {"L2", "RED LANTERN", "lantern"},
    {"L3", "GREEN LANTERN", "lantern"},
    {"C1", "CHRISTMAS TREE DECORATION", "decoration"},
    {"C2", "CHRISTMAS STAR DECORATION", "decoration"},
    {"C3", "CHRISTMAS HEART DECORATION", "decoration"},
};
#define N_ITEMS (sizeof ITEMS / sizeof ITEMS[0])

static pvg_item items[N_ITEMS];

static void check_word(const char *w)
{
    if (memchr(w, '\0', PVG_ASSIST_WORD_MAX) == NULL) abort();
}

static void check_list(int n, const pvg_assist_word *w)
{
    if (n < 0 || n > PVG_ASSIST_LIST_MAX) abort();
    for (int i = 0; i < n; i++)
        check_word(w[i]);
}

static void check(const pvg_assist_constraints *c)
{
    check_list(c->n_categories, c->categories);
    check_list(c->n_terms, c->terms);
    check_list(c->n_attributes, c->attributes);
    check_list(c->n_exclusions, c->exclusions);
    check_word(c->recipient);
    check_word(c->occasion);
    if (!memchr(c->similar_to, '\0', sizeof c->similar_to)) abort();
    if (!memchr(c->notes, '\0', sizeof c->notes)) abort();
    if (!memchr(c->currency, '\0', sizeof c->currency)) abort();
    if (isnan(c->price_min) || isnan(c->price_max) || c->price_min > PVG_ASSIST_PRICE_CAP ||
        c->price_max > PVG_ASSIST_PRICE_CAP)
        abort();
    if (c->quantity < 0 || c->quantity > PVG_ASSIST_QUANTITY_CAP) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static pvg_assist_vocab *vocab;
    static pvg_assist_llm *llm;
    if (!vocab) {
        if (pvg_init() != PVG_OK) abort();
        for (size_t i = 0; i < N_ITEMS; i++) {
            items[i].ext_id = ITEMS[i][0];
            items[i].title = ITEMS[i][1];
            items[i].category = ITEMS[i][2];
            items[i].price = 0.5 + (double)i * 1.25;
            items[i].catalog = 1;
        }
        if (pvg_assist_vocab_from_items(items, N_ITEMS, &vocab, NULL) != PVG_OK) abort();
        pvg_assist_llm_options o = {0};
        o.url = "http://127.0.0.1:9/v1/chat/completions"; /* never asked */
        if (pvg_assist_llm_new(&o, &llm, NULL) != PVG_OK || !llm) abort();
    }
    if (size < 1) return 0;
    char *msg = fuzz_text(data + 1, size - 1);
    pvg_assist_constraints c;
    pvg_error err;
    pvg_error_clear(&err);
    pvg_status st = pvg_assist_parse(data[0] & 1 ? vocab : NULL, msg, &c, &err);
    fuzz_check_error(st, &err);
    if (st == PVG_OK) {
        check(&c);
        /* the stored form of a conversation's turn reads back the same */
        json_t *j = pvg_assist_constraints_to_json(&c);
        if (!j) abort();
        pvg_assist_constraints back;
        memset(&back, 0, sizeof back);
        pvg_assist_constraints_from_json(j, &back);
        check(&back);
        json_t *j2 = pvg_assist_constraints_to_json(&back);
        /* a reference to the last answer, "instead" and the notes belong
         * to their turn: merge() takes them from the new message */
        json_t *k1 = json_deep_copy(j);
        json_object_del(k1, "reference");
        json_object_del(k1, "notes");
        json_object_del(k1, "new_request");
        json_object_del(j2, "reference");
        json_object_del(j2, "notes");
        json_object_del(j2, "new_request");
        if (!json_equal(k1, j2)) {
            char *a = json_dumps(j, JSON_COMPACT), *b = json_dumps(j2, JSON_COMPACT);
            fprintf(stderr, "constraints round trip:\n %s\n %s\n", a, b);
            abort();
        }
        json_decref(k1);
        json_decref(j2);
        char *text = pvg_assist_constraints_json(&c);
        if (!text) abort();
        free(text);
        for (size_t i = 0; i < N_ITEMS; i++)
            (void)pvg_assist_item_satisfies(&c, &items[i]);
        /* the language model's request: JSON with the message as given */
        json_t *answer = json_array();
        for (size_t i = 0; i < 3; i++)
            json_array_append_new(answer, json_pack("{s:s, s:s, s:s, s:f}", "item", ITEMS[i][0],
                                                    "title", i == 2 ? msg : ITEMS[i][1], "category",
                                                    ITEMS[i][2], "price", 1.5));
        char *body = pvg_assist_llm_body(llm, msg, answer);
        if (!body) abort();
        json_t *b = json_loads(body, 0, NULL);
        const char *user = json_string_value(
            json_object_get(json_array_get(json_object_get(b, "messages"), 1), "content"));
        if (!b || !user || !strstr(user, msg)) abort();
        json_decref(b);
        free(body);
        json_decref(answer);
        json_decref(j);
    }
    free(msg);
    return 0;
}
