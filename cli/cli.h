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
extern const cli_command cli_cmds_search[]; /* search */

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

#endif
