/*
 * cli.h - the privguide command-line front-end: command tables, flag
 * parsing and output helpers. The CLI only parses flags, calls the library
 * and prints; exit status 0 success, 1 runtime error, 2 bad usage.
 *
 * Each area (store, model, dp, he, secagg, server) declares its commands once,
 * in a table `cli_cmds_<area>[]` terminated by an all-zero entry; main.c
 * lists the tables.
 */
#ifndef PVG_CLI_H
#define PVG_CLI_H

#include <privguide/common.h>
#include <privguide/eval.h>
#include <stdio.h>

#define CLI_EXIT_OK 0
#define CLI_EXIT_FAIL 1
#define CLI_EXIT_USAGE 2

typedef enum cli_kind { CLI_STR = 1, CLI_INT, CLI_DOUBLE, CLI_BOOL, CLI_LIST } cli_kind;

typedef struct cli_flag {
    const char *name; /* long name without dashes, e.g. "data-dir"; "k" allows -k too */
    cli_kind kind;
    const char *metavar; /* shown in help, e.g. "N" */
    const char *help;
} cli_flag;

typedef struct cli_ctx cli_ctx;

typedef struct cli_command {
    const char *name;      /* "ingest", or "user export" for a two-word command */
    const char *synopsis;  /* positional arguments, e.g. "FILE" or NULL */
    int min_pos, max_pos;  /* how many positional arguments */
    const char *summary;   /* one line */
    const char *details;   /* further help text (may be NULL) */
    const cli_flag *flags; /* terminated by {0}; --help, --data-dir are implicit */
    int (*run)(cli_ctx *c);
} cli_command;

/* Tables, one per area. */
extern const cli_command cli_cmds_store[];
extern const cli_command cli_cmds_model[];
extern const cli_command cli_cmds_dp[];
extern const cli_command cli_cmds_he[];
extern const cli_command cli_cmds_secagg[];
extern const cli_command cli_cmds_server[];
extern const cli_command cli_cmds_ops[];    /* backup, restore, doctor */
extern const cli_command cli_cmds_assist[]; /* assist */
/* The optional language model's flags (serve and assist; cmd_assist.c):
 * --llm-url, --llm-model, --llm-key-file, --llm-timeout-ms. */
#define CLI_LLM_FLAGS                                                                              \
    {"llm-url", CLI_STR, "URL",                                                                    \
     "OpenAI-compatible chat-completions endpoint that phrases the assistant's answers (off by "   \
     "default; sends only the message and the items' title, price, category: docs/assistant.md)"}, \
        {"llm-model", CLI_STR, "NAME", "the model named in the request (default gpt-4o-mini)"},    \
        {"llm-key-file", CLI_STR, "FILE", "the endpoint's API key, first line (mode 0600)"},       \
    {                                                                                              \
        "llm-timeout-ms", CLI_INT, "N",                                                            \
            "the endpoint's time limit per answer (default 5000; the built-in answer after)"       \
    }
struct pvg_assist_llm_options;
void cli_assist_llm_options(cli_ctx *c, struct pvg_assist_llm_options *o);
extern const cli_command cli_cmds_search[]; /* search */
/* monitor alerts, ack, scan, suspend, resume */
extern const cli_command cli_cmds_monitor[];
extern const cli_command cli_cmds_fl[]; /* fl serve, client, simulate */
/* serve --fl-items: starts the federated-training coordinator (cmd_fl.c) and
 * sets o->fl (raising o->max_body_bytes to a MASKED vector when needed);
 * detach after the server stopped. */
struct pvg_server_options;
int cli_fl_attach(cli_ctx *c, struct pvg_server_options *o, void **state);
void cli_fl_detach(void *state);

/* ---- accessors (valid inside run) ---- */
const cli_command *cli_command_of(cli_ctx *c);
int cli_has(cli_ctx *c, const char *flag);             /* given on the command line */
const char *cli_str(cli_ctx *c, const char *flag);     /* NULL when absent */
const char *cli_str_req(cli_ctx *c, const char *flag); /* usage error (exit 2) when absent */
long long cli_int(cli_ctx *c, const char *flag, long long def); /* exit 2 when malformed */
long long cli_int_range(cli_ctx *c, const char *flag, long long def, long long lo, long long hi);
double cli_double(cli_ctx *c, const char *flag, double def); /* exit 2 when malformed */
double cli_double_req(cli_ctx *c, const char *flag);
int cli_bool(cli_ctx *c, const char *flag); /* 1 when given */
int cli_npos(cli_ctx *c);
const char *cli_pos(cli_ctx *c, int i);
/* The data dir: --data-dir, else $PRIVGUIDE_DATA, else ./privguide-data. */
const char *cli_data_dir(cli_ctx *c);
/* Opens the store of the command's data dir. On failure prints
 * "privguide: open store: <why>", sets *rc to CLI_EXIT_FAIL and returns
 * NULL. The store is new: free it with pvg_store_free. */
struct pvg_store *cli_open_store(cli_ctx *c, int *rc);
/* Parses a comma-separated list of doubles (e.g. "10,20,50"). Returns count
 * or exits 2 naming the flag. */
int cli_double_list(cli_ctx *c, const char *flag, double *out, int max);

/* ---- output ---- */
/* Prints "privguide: what: why" (why from err, or from the status) to
 * stderr and returns CLI_EXIT_FAIL. */
int cli_fail(const char *what, pvg_status st, const pvg_error *err);
/* Prints "privguide: <command>: msg" and a hint to stderr; exits 2. */
_Noreturn void cli_usage_error(cli_ctx *c, const char *fmt, ...) PVG_PRINTF(2, 3);
/* Printf to stderr as "privguide: ...". */
void cli_warn(const char *fmt, ...) PVG_PRINTF(1, 2);
/* 1 when stdout is a terminal and --json was not given. */
int cli_interactive(cli_ctx *c);
/* Writes a JSON string literal (with quotes, escaped) to f. */
void cli_json_string(FILE *f, const char *s);
/* Unix time t as ISO-8601 UTC ("2010-12-01T08:26:00Z") into buf (at least
 * 21 bytes; "?" when out of range). Returns buf. */
char *cli_utc_time(long long t, char *buf, size_t len);

/* ---- what the model commands share (cmd_model.c) ---- */
/* The training flags of train, eval, tune and audit fairness. */
#define CLI_HYPER_FLAGS                                                                            \
    {"threads", CLI_INT, "N", "worker threads (default 1)"},                                       \
        {"seed", CLI_INT, "S", "seed of initialisation, sampling and splits (default 42)"},        \
        {"factors", CLI_INT, "N", "ials/bpr: latent factors (default 64)"},                        \
        {"epochs", CLI_INT, "N", "ials/bpr: epochs (default ials 16, bpr 200)"},                   \
        {"reg", CLI_DOUBLE, "X", "ials: lambda (default 0.03); bpr: L2 (default 0.03)"},           \
        {"alpha0", CLI_DOUBLE, "X",                                                                \
         "ials: weight of unobserved pairs (default: derived from --alpha)"},                      \
        {"alpha", CLI_DOUBLE, "X",                                                                 \
         "ials: unobserved pairs' total weight / observed (default 3; alpha0 = X nnz/(U I))"},     \
        {"nu", CLI_DOUBLE, "X", "ials: frequency exponent of the regularisation (default 1)"},     \
        {"confidence", CLI_DOUBLE, "X",                                                            \
         "ials: observed weight 1 + X*log1p(event weight) (default 0 = binary)"},                  \
        {"cg-steps", CLI_INT, "N", "ials: conjugate-gradient steps, 0 = exact solve (default 3)"}, \
        {"lr", CLI_DOUBLE, "X", "bpr: learning rate (default 0.05)"},                              \
        {"lambda", CLI_DOUBLE, "X", "ease: L2 (default 500)"},                                     \
        {"neighbors", CLI_INT, "N", "itemknn: neighbours kept per item (default 400)"},            \
        {"shrink", CLI_DOUBLE, "X", "itemknn: cosine shrinkage (default 10)"},                     \
        {"weights", CLI_STR, "SPEC",                                                               \
         "event weights, e.g. view=1,cart=2,purchase=4,rating=1 (defaults as shown)"},             \
        {"search-weight", CLI_DOUBLE, "W",                                                         \
         "from the store: each of a search's top 3 results weighs W (default 0.25; 0: ignore)"},   \
        {"params", CLI_STR, "FILE",                                                                \
         "hyperparameters chosen by `privguide tune` (flags given override them)"},                \
        {"present", CLI_STR, "TIME",                                                               \
         "ease: the training's present for the recency terms, YYYY-MM-DD[THH:MM:SS] (UTC) or "     \
         "Unix seconds (default with --epsilon: now; without: one second after the latest "        \
         "event; eval temporal: the cut-off)"},                                                    \
        {"no-recency", CLI_BOOL, NULL,                                                             \
         "ease: train without the recency terms (docs/models.md \"Recency\")"},                    \
        {"max-memory", CLI_DOUBLE, "MIB",                                                          \
         "ease: refuse to train when the memory estimate exceeds MIB (default 80% of RAM)"},       \
        {"input", CLI_STR, "FILE", "read events from FILE instead of the store"},                  \
    {                                                                                              \
        "format", CLI_STR, "F",                                                                    \
            "format of --input: online-retail, movielens, amazon-reviews, retailrocket, jsonl, "   \
            "tsv"                                                                                  \
    }

/* Loads the dataset from --input/--format or, without --input, from the
 * store through the access gate (consenting shoppers only). *store_out (may
 * be NULL) receives the open store when the store was used. 0 or an exit
 * status (the failure printed). */
int cli_load_dataset(cli_ctx *c, pvg_dataset **ds, pvg_store **store_out, int quiet);
/* The model type (--model), the protocol (--protocol), the training
 * parameters and the evaluation options from the flags (usage errors exit);
 * need_input: --input is required. */
void cli_eval_setup(cli_ctx *c, const char *verb, int need_input, pvg_model_type *t,
                    pvg_eval_protocol *proto, pvg_train_params *p, pvg_eval_options *o);
/* The recency terms' defaults into p (pvg_train_params_recency_default)
 * from --present and --no-recency, after the DP flags are set (usage
 * errors exit). train: the present without --present is the wall-clock
 * time with --epsilon (a public present), else 0 (the latest event). */
void cli_recency_setup(cli_ctx *c, pvg_train_params *p, int train);
/* A DP training's public item vocabulary from the list file `items` (one id
 * a line, optionally a TAB and the item's catalogue title) into p's dp_items
 * (and dp_item_titles when any line has one); *ids and *buf own it (free
 * both after training). A bad file exits with its file:line. */
void cli_dp_items_load(cli_ctx *c, const char *items, pvg_train_params *p, char ***ids, char **buf);
/* `audit fairness` (cmd_fairness.c), listed in the model table. */
extern const cli_flag cli_fairness_flags[];
extern const char cli_fairness_help[];
int cli_run_audit_fairness(cli_ctx *c);

#endif
