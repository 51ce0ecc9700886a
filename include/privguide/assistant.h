/*
 * privguide/assistant.h - the shopping assistant: understands one English
 * message ("a gift for a tea lover under £10"), retrieves catalog items that
 * satisfy its hard constraints, ranks them (personally only for a shopper
 * who consents, through the access gate) and answers with a reason and the
 * evidence for each item. docs/assistant.md.
 *
 * Two layers:
 *   - the parser (pvg_assist_parse): a message and a vocabulary built from
 *     the catalog -> a plain struct of constraints (no I/O, no state);
 *   - the assistant (pvg_assistant_ask): a conversation over the store's
 *     catalog. Conversations of an identified shopper are personal data:
 *     kept sealed under the shopper's key in the store (listed, exported and
 *     erased with them; policy retention "conversations"); anonymous ones
 *     live only in the assistant's memory, with a TTL and a cap.
 *
 * Hard constraints (price range, category, exclusions) are filters: every
 * item an answer holds satisfies them. Nothing here prints or exits.
 */
#ifndef PRIVGUIDE_ASSISTANT_H
#define PRIVGUIDE_ASSISTANT_H

#include <privguide/access.h>
#include <privguide/common.h>
#include <privguide/store.h>

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default) /* the API; everything else is hidden */

/* Limits of one message and of what the parser keeps of it. */
#define PVG_ASSIST_MESSAGE_MAX 2000 /* bytes; longer messages are refused */
#define PVG_ASSIST_WORD_MAX 32      /* bytes of one kept word */
#define PVG_ASSIST_LIST_MAX 8       /* words kept per list (terms, exclusions, ...) */
#define PVG_ASSIST_PRICE_CAP 1e6    /* prices above are out of range: ignored, noted */
#define PVG_ASSIST_QUANTITY_CAP 10000

typedef char pvg_assist_word[PVG_ASSIST_WORD_MAX];

/* What the previous answer a follow-up refers to. */
typedef enum pvg_assist_ref {
    PVG_ASSIST_REF_NONE = 0,
    PVG_ASSIST_REF_SIMILAR, /* "more like the second one": ref_index */
    PVG_ASSIST_REF_CHEAPER, /* "cheaper" (than the referenced or the previous items) */
    PVG_ASSIST_REF_REFINE   /* "in red", "only the ones without hearts": a refinement */
} pvg_assist_ref;

/* The constraints of one message. Prices are in the catalog's currency
 * (currency records the symbol or word seen: "GBP", "USD", "EUR", "" when
 * none; no conversion is made). Negative prices mean "no bound". */
typedef struct pvg_assist_constraints {
    double price_min, price_max;
    char currency[4];
    int cheap;     /* "cheap", "budget": price_max from the catalog's lower quartile */
    int expensive; /* "luxury", "premium": price_min from the upper quartile */
    /* catalog category names the message names (hard filter; the items'
     * category must be one of them) */
    int n_categories;
    pvg_assist_word categories[PVG_ASSIST_LIST_MAX];
    /* content words (stemmed, lower case) to match against titles: the
     * query; attributes are those that are frequent catalog title words */
    int n_terms;
    pvg_assist_word terms[PVG_ASSIST_LIST_MAX];
    int n_attributes;
    pvg_assist_word attributes[PVG_ASSIST_LIST_MAX];
    /* words no answered item's title or category may contain (hard) */
    int n_exclusions;
    pvg_assist_word exclusions[PVG_ASSIST_LIST_MAX];
    char recipient[PVG_ASSIST_WORD_MAX]; /* "mum", "tea lover", "" */
    char occasion[PVG_ASSIST_WORD_MAX];  /* "christmas", "birthday", "" */
    long quantity;                       /* 0: none said */
    char similar_to[96];                 /* an item id or a title phrase ("similar to <..>"), "" */
    int similar_is_id;                   /* 1: similar_to is an item id of the catalog */
    pvg_assist_ref ref;
    int ref_index;   /* 0-based item of the previous answer; -1: none */
    int replace;     /* "instead", "something else": a new request */
    char notes[160]; /* what was ignored and why ("" when nothing) */
} pvg_assist_constraints;

/* What the parser knows of the catalog: category names with their price
 * quartiles, frequent title words, item ids. Built once, read-only after:
 * safe to share between threads. */
typedef struct pvg_assist_vocab pvg_assist_vocab;

/* Builds the vocabulary from every catalog item of the store (titles,
 * categories, prices, ids). *out is new (pvg_assist_vocab_free).
 * Errors: the store's, PVG_ERR_NOMEM. */
pvg_status pvg_assist_vocab_build(pvg_store *s, pvg_assist_vocab **out,
                                  pvg_error *err) PVG_WARN_UNUSED;

/* Builds it from n items given by the caller (borrowed; tests, files). */
pvg_status pvg_assist_vocab_from_items(const pvg_item *items, size_t n, pvg_assist_vocab **out,
                                       pvg_error *err) PVG_WARN_UNUSED;
void pvg_assist_vocab_free(pvg_assist_vocab *v); /* NULL ok */

/* The lower / upper price quartile of a category ("" or NULL: the whole
 * catalog); -1 when no price is known. */
double pvg_assist_vocab_quartile(const pvg_assist_vocab *v, const char *category, int upper);

/* Parses one message into *out. The message must be valid UTF-8 of 1 to
 * PVG_ASSIST_MESSAGE_MAX bytes: else PVG_ERR_INVALID with err naming the
 * byte offset of the first invalid byte (or the length). v may be NULL
 * (then no categories, attributes, item ids or "cheap" bounds are known).
 * "cheap" sets price_max to the lower quartile of the named category (or
 * the catalog) unless the message gives a maximum; "luxury" sets price_min
 * to the upper quartile likewise. Never fails on content: what it cannot
 * read is left out (and, for out-of-range numbers, noted in out->notes). */
pvg_status pvg_assist_parse(const pvg_assist_vocab *v, const char *message,
                            pvg_assist_constraints *out, pvg_error *err) PVG_WARN_UNUSED;

/* The constraints as a JSON object text (new string, pvg_free): the
 * fields the server and the CLI show. NULL when out of memory. */
char *pvg_assist_constraints_json(const pvg_assist_constraints *c);

/* 1 when an item (title, category, price) satisfies the hard constraints
 * of c: price within [price_min, price_max] (an item without a price fails
 * any price bound), category among c's categories (when any), and no
 * exclusion word in its title or category words (a word that is the
 * exclusion, its plural, or a longer word starting with it: "spot"
 * excludes "SPOTTY"). */
int pvg_assist_item_satisfies(const pvg_assist_constraints *c, const pvg_item *item);

/* ---- the assistant ---- */

typedef struct pvg_assistant pvg_assistant;

/* An optional OpenAI-compatible chat-completions endpoint that phrases the
 * answer's text (docs/assistant.md, "Language model"). It only phrases:
 * the items and the constraints always come from the built-in retrieval.
 * What is sent is the current message and the answered items' public
 * catalog fields (title, price, category) - never a shopper id, token,
 * pseudonym, history or earlier turn; a personalised answer is never sent.
 * Any failure (connection, timeout, HTTP status, malformed or empty reply)
 * keeps the built-in text and says why. */
typedef struct pvg_assist_llm_options {
    const char *url;      /* e.g. "https://host/v1/chat/completions" (http or https);
                           * NULL or "": no language model (the default) */
    const char *model;    /* the "model" field; NULL: "gpt-4o-mini" */
    const char *key_file; /* the API key (first line; Authorization: Bearer); the file
                           * must not be readable by group or others. NULL: no key */
    long timeout_ms;      /* whole request; 0: 5000; at most 120000 */
} pvg_assist_llm_options;

#define PVG_ASSIST_LLM_REPLY_MAX 2000 /* bytes of phrased text kept; longer is malformed */

typedef struct pvg_assistant_options {
    int64_t anon_ttl_s;         /* anonymous conversations expire after; 0: 1800 s */
    size_t anon_max;            /* anonymous conversations kept at most (oldest go); 0: 1000 */
    int64_t catalog_refresh_s;  /* the catalog snapshot is rebuilt when older; 0: 300 s */
    pvg_assist_llm_options llm; /* all zero: no language model */
} pvg_assistant_options;

/* A new assistant (no store is held: each ask borrows one; the catalog
 * index is rebuilt when older than catalog_refresh_s or asked with another
 * store's directory). opts may be NULL. *out is new (pvg_assistant_free).
 * Calls are serialised by a lock inside (a language model is asked after
 * it is released): any thread may ask. With opts->llm.url, the key file
 * is read here into locked memory (wiped by pvg_assistant_free);
 * PVG_ERR_INVALID for a URL that is not http(s), a timeout out of range,
 * a key file that is unreadable, empty, group/world-readable or holds
 * control characters (the error names the file, never its content). */
pvg_status pvg_assistant_new(const pvg_assistant_options *opts, pvg_assistant **out,
                             pvg_error *err) PVG_WARN_UNUSED;
void pvg_assistant_free(pvg_assistant *a); /* NULL ok; wipes anonymous conversations */

typedef struct pvg_assist_request {
    const char *message;      /* required (pvg_assist_parse's rules) */
    const char *conversation; /* NULL or "": a new conversation; else its id (32 hex) */
    const char *ext_user;     /* NULL: anonymous; else the shopper (their token's user) */
    size_t k;                 /* items wanted, 1..50 (0: 5) */
    /* A differentially private popular list (item ids, most popular first:
     * public once released), for the "popularity" evidence and a small
     * ranking bonus, the same for every caller. NULL: none. */
    const char *const *popular;
    size_t n_popular;
} pvg_assist_request;

/* Answers one message. g: the access gate over the store the answer is
 * drawn from (g->store borrowed for the call). Steps: parse; continue the
 * conversation when an id is given (a follow-up refines its last
 * constraints and items); retrieve candidates from the catalog satisfying
 * the hard constraints; for an identified shopper, ask the gate for their
 * history (purpose "recommend": consent checked and audited first) and,
 * only when allowed, re-rank by similarity to the items they interacted
 * with; save the turn (a shopper's: sealed in the store, audited as
 * "conversation_write"; anonymous: in memory). *json_out (new string,
 * pvg_free): {"conversation", "message", "constraints", "items":[{"item",
 * "title", "category", "price", "reason", "why":{...}}], "personalized",
 * "personalization", "followup", "candidates", "answer" (a sentence or
 * two: the built-in text or the language model's), "phrasing":{"by":
 * "builtin"|"llm", "reason"}}. Errors: PVG_ERR_INVALID
 * (message, k, conversation id malformed), PVG_ERR_NOT_FOUND (no such
 * conversation for this caller, or it expired), PVG_ERR_ERASED (the
 * shopper was erased), the store's and the gate's errors. */
pvg_status pvg_assistant_ask(pvg_assistant *a, pvg_access *g, const pvg_assist_request *req,
                             char **json_out, pvg_error *err) PVG_WARN_UNUSED;

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
