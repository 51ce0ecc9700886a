/*
 * main.c - entry point of the privguide CLI: finds the command in the
 * tables, parses its flags, runs it, prints help and version.
 */
#include "cli.h"

#include <privguide/store.h>

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_POS 64
#define MAX_GIVEN 64

struct cli_ctx {
    const cli_command *cmd;
    const char *flag_names[MAX_GIVEN];
    const char *flag_values[MAX_GIVEN];
    int n_flags;
    const char *pos[MAX_POS];
    int n_pos;
    char user_id[PVG_ID_MAX + 1]; /* the canonical form of the command's user id */
};

static const char *lookup(cli_ctx *c, const char *flag);

static const cli_command *const *all_tables(void)
{
    static const cli_command *const tables[] = {cli_cmds_store,  cli_cmds_model,  cli_cmds_dp,
                                                cli_cmds_he,     cli_cmds_secagg, cli_cmds_server,
                                                cli_cmds_ops,    cli_cmds_search, cli_cmds_monitor,
                                                cli_cmds_assist, cli_cmds_fl,     NULL};
    return tables;
}

static const cli_flag implicit_flags[] = {
    {"data-dir", CLI_STR, "DIR", "data directory (default $PRIVGUIDE_DATA or ./privguide-data)"},
    {"key-file", CLI_STR, "PATH",
     "the store's key file, never inside the data dir (default $PRIVGUIDE_KEY_FILE, else "
     "$XDG_CONFIG_HOME/privguide/<store id>.key or ~/.config/privguide/<store id>.key)"},
    {"help", CLI_BOOL, NULL, "show this help"},
    {0},
};

static const cli_flag *find_flag(const cli_command *cmd, const char *name, size_t len)
{
    for (const cli_flag *f = cmd->flags; f && f->name; f++)
        if (strlen(f->name) == len && strncmp(f->name, name, len) == 0) return f;
    for (const cli_flag *f = implicit_flags; f->name; f++)
        if (strlen(f->name) == len && strncmp(f->name, name, len) == 0) return f;
    return NULL;
}

static const char *kind_hint(cli_kind k)
{
    switch (k) {
    case CLI_INT:
        return "an integer";
    case CLI_DOUBLE:
        return "a number";
    case CLI_LIST:
        return "a comma-separated list";
    default:
        return "a value";
    }
}

static void print_flags(FILE *f, const cli_flag *flags)
{
    for (const cli_flag *fl = flags; fl && fl->name; fl++) {
        char left[64];
        if (fl->kind == CLI_BOOL)
            snprintf(left, sizeof left, "--%s", fl->name);
        else
            snprintf(left, sizeof left, "--%s %s", fl->name, fl->metavar ? fl->metavar : "V");
        fprintf(f, "  %-30s %s\n", left, fl->help ? fl->help : "");
    }
}

static void command_help(FILE *f, const cli_command *cmd)
{
    fprintf(f, "usage: privguide %s%s%s [flags]\n\n%s\n", cmd->name, cmd->synopsis ? " " : "",
            cmd->synopsis ? cmd->synopsis : "", cmd->summary);
    if (cmd->details) fprintf(f, "\n%s\n", cmd->details);
    fprintf(f, "\nflags:\n");
    print_flags(f, cmd->flags);
    print_flags(f, implicit_flags);
}

static void main_help(FILE *f)
{
    fprintf(f,
            "privguide %s - privacy-preserving shopping guide\n\n"
            "usage: privguide <command> [arguments] [flags]\n"
            "       privguide <command> --help\n"
            "       privguide --version\n\ncommands:\n",
            pvg_version());
    for (const cli_command *const *t = all_tables(); *t; t++)
        for (const cli_command *c = *t; c->name; c++)
            fprintf(f, "  %-22s %s\n", c->name, c->summary);
    fprintf(f, "\nExit status: 0 success, 1 runtime error, 2 bad usage.\n");
}

/* Matches the longest command name (one or two words) at argv[1..]. */
static const cli_command *find_command(int argc, char **argv, int *used)
{
    const cli_command *best = NULL;
    for (const cli_command *const *t = all_tables(); *t; t++) {
        for (const cli_command *c = *t; c->name; c++) {
            const char *sp = strchr(c->name, ' ');
            if (!sp) {
                if (strcmp(argv[1], c->name) == 0 && !best) {
                    best = c;
                    *used = 1;
                }
            } else if (argc > 2 && strlen(argv[1]) == (size_t)(sp - c->name) &&
                       strncmp(argv[1], c->name, (size_t)(sp - c->name)) == 0 &&
                       strcmp(argv[2], sp + 1) == 0) {
                best = c;
                *used = 2;
                return best;
            }
        }
    }
    return best;
}

static void group_help(FILE *f, const char *group)
{
    size_t gl = strlen(group);
    fprintf(f, "usage: privguide %s <subcommand> [flags]\n\nsubcommands:\n", group);
    for (const cli_command *const *t = all_tables(); *t; t++)
        for (const cli_command *c = *t; c->name; c++)
            if (strncmp(c->name, group, gl) == 0 && c->name[gl] == ' ')
                fprintf(f, "  %-22s %s\n", c->name, c->summary);
}

static int is_group(const char *word)
{
    size_t wl = strlen(word);
    for (const cli_command *const *t = all_tables(); *t; t++)
        for (const cli_command *c = *t; c->name; c++)
            if (strncmp(c->name, word, wl) == 0 && c->name[wl] == ' ') return 1;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        main_help(stderr);
        return CLI_EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        main_help(stdout);
        return CLI_EXIT_OK;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
        printf("privguide %s\n", pvg_version());
        return CLI_EXIT_OK;
    }
    if (pvg_init() != PVG_OK) {
        fprintf(stderr, "privguide: init: the system random generator is unavailable\n");
        return CLI_EXIT_FAIL;
    }
    /* Global options (the implicit flags that take a value, such as
     * --data-dir) may stand before the command, as in git and docker: move
     * them behind the command words and parse them like any other flag. */
    int g = 1;
    while (g < argc && strncmp(argv[g], "--", 2) == 0 && argv[g][2]) {
        const char *name = argv[g] + 2, *eq = strchr(name, '=');
        size_t nl = eq ? (size_t)(eq - name) : strlen(name);
        const cli_flag *fl = NULL;
        for (const cli_flag *f = implicit_flags; f->name; f++)
            if (f->kind != CLI_BOOL && strlen(f->name) == nl && strncmp(f->name, name, nl) == 0)
                fl = f;
        if (!fl) break;
        if (!eq && g + 1 >= argc) {
            fprintf(stderr, "privguide: flag --%s needs %s\n", fl->name, kind_hint(fl->kind));
            return CLI_EXIT_USAGE;
        }
        g += eq ? 1 : 2;
    }
    if (g > 1) {
        if (g >= argc) {
            fprintf(stderr,
                    "privguide: missing command after the global options (see privguide --help)\n");
            return CLI_EXIT_USAGE;
        }
        int cmd_used = 0;
        const cli_command *probe = find_command(argc - (g - 1), argv + (g - 1), &cmd_used);
        int words = probe ? cmd_used : 1;
        static char **moved; /* lives until exit (reachable: not a leak) */
        moved = malloc(sizeof(char *) * (size_t)(argc + 1));
        if (!moved) return CLI_EXIT_FAIL;
        int m = 0;
        moved[m++] = argv[0];
        for (int i = 0; i < words; i++)
            moved[m++] = argv[g + i];
        for (int i = 1; i < g; i++)
            moved[m++] = argv[i];
        for (int i = g + words; i < argc; i++)
            moved[m++] = argv[i];
        moved[m] = NULL;
        argv = moved;
    }
    int used = 0;
    const cli_command *cmd = find_command(argc, argv, &used);
    if (!cmd) {
        if (is_group(argv[1])) {
            int want_help =
                argc > 2 && (strcmp(argv[2], "--help") == 0 || strcmp(argv[2], "-h") == 0);
            if (!want_help)
                fprintf(stderr, "privguide: %s: unknown or missing subcommand%s%s\n", argv[1],
                        argc > 2 ? " " : "", argc > 2 ? argv[2] : "");
            group_help(want_help ? stdout : stderr, argv[1]);
            return want_help ? CLI_EXIT_OK : CLI_EXIT_USAGE;
        }
        fprintf(stderr, "privguide: %s: unknown command (see privguide --help)\n", argv[1]);
        return CLI_EXIT_USAGE;
    }

    static cli_ctx ctx;
    ctx.cmd = cmd;
    int only_pos = 0;
    for (int i = 1 + used; i < argc; i++) {
        const char *a = argv[i];
        if (!only_pos && strcmp(a, "--") == 0) {
            only_pos = 1;
            continue;
        }
        if (!only_pos && a[0] == '-' && a[1] != '\0' &&
            !(isdigit((unsigned char)a[1]) || a[1] == '.')) {
            const char *name = a + (a[1] == '-' ? 2 : 1);
            const char *eq = strchr(name, '=');
            size_t nl = eq ? (size_t)(eq - name) : strlen(name);
            if (a[1] != '-' && nl != 1) {
                fprintf(stderr, "privguide: %s: unknown flag %s (flags are --name)\n", cmd->name,
                        a);
                return CLI_EXIT_USAGE;
            }
            const cli_flag *fl = find_flag(cmd, name, nl);
            if (!fl) {
                fprintf(stderr, "privguide: %s: unknown flag %s (see privguide %s --help)\n",
                        cmd->name, a, cmd->name);
                return CLI_EXIT_USAGE;
            }
            if (strcmp(fl->name, "help") == 0) {
                command_help(stdout, cmd);
                return CLI_EXIT_OK;
            }
            const char *val = "1";
            if (fl->kind != CLI_BOOL) {
                if (eq)
                    val = eq + 1;
                else if (i + 1 < argc)
                    val = argv[++i];
                else {
                    fprintf(stderr, "privguide: %s: flag --%s needs %s\n", cmd->name, fl->name,
                            kind_hint(fl->kind));
                    return CLI_EXIT_USAGE;
                }
            } else if (eq) {
                fprintf(stderr, "privguide: %s: flag --%s takes no value\n", cmd->name, fl->name);
                return CLI_EXIT_USAGE;
            }
            if (ctx.n_flags == MAX_GIVEN) {
                fprintf(stderr, "privguide: %s: too many flags\n", cmd->name);
                return CLI_EXIT_USAGE;
            }
            ctx.flag_names[ctx.n_flags] = fl->name;
            ctx.flag_values[ctx.n_flags++] = val;
        } else {
            if (ctx.n_pos == MAX_POS) {
                fprintf(stderr, "privguide: %s: too many arguments\n", cmd->name);
                return CLI_EXIT_USAGE;
            }
            ctx.pos[ctx.n_pos++] = a;
        }
    }
    if (ctx.n_pos < cmd->min_pos || ctx.n_pos > cmd->max_pos) {
        if (ctx.n_pos < cmd->min_pos)
            fprintf(stderr, "privguide: %s: missing argument %s\n", cmd->name,
                    cmd->synopsis ? cmd->synopsis : "");
        else
            fprintf(stderr, "privguide: %s: unexpected argument '%s'\n", cmd->name,
                    ctx.pos[cmd->max_pos]);
        fprintf(stderr, "usage: privguide %s %s (see --help)\n", cmd->name,
                cmd->synopsis ? cmd->synopsis : "");
        return CLI_EXIT_USAGE;
    }
    /* A user id coming in (USER_ID argument or --user) takes its one canonical
     * form (pvg_user_id_normalize), as in every reader and the HTTP API. */
    for (int i = 0; i <= ctx.n_flags; i++) {
        const char **id =
            i < ctx.n_flags
                ? (strcmp(ctx.flag_names[i], "user") == 0 ? &ctx.flag_values[i] : NULL)
                : (cmd->synopsis && strcmp(cmd->synopsis, "USER_ID") == 0 ? &ctx.pos[0] : NULL);
        pvg_error err;
        if (id && *id &&
            pvg_user_id_normalize(*id, ctx.user_id, sizeof ctx.user_id, NULL, &err) != PVG_OK)
            cli_usage_error(&ctx, "%s", err.text);
        if (id && *id) *id = ctx.user_id;
    }
    /* --key-file holds for every store this process opens (the server's
     * connections too), and wins over keys given in $PRIVGUIDE_KEYS. */
    const char *kf = lookup(&ctx, "key-file");
    if (kf) {
        if (!*kf) cli_usage_error(&ctx, "--key-file: expected a path");
        setenv(PVG_ENV_KEY_FILE, kf, 1);
        unsetenv(PVG_ENV_KEYS);
    }
    return cmd->run(&ctx);
}

/* ---- accessors ---- */

const cli_command *cli_command_of(cli_ctx *c)
{
    return c->cmd;
}

static const char *lookup(cli_ctx *c, const char *flag)
{
    const char *v = NULL;
    for (int i = 0; i < c->n_flags; i++)
        if (strcmp(c->flag_names[i], flag) == 0) v = c->flag_values[i]; /* last one wins */
    return v;
}

int cli_has(cli_ctx *c, const char *flag)
{
    return lookup(c, flag) != NULL;
}

const char *cli_str(cli_ctx *c, const char *flag)
{
    return lookup(c, flag);
}

const char *cli_str_req(cli_ctx *c, const char *flag)
{
    const char *v = lookup(c, flag);
    if (!v) cli_usage_error(c, "missing required flag --%s", flag);
    return v;
}

long long cli_int(cli_ctx *c, const char *flag, long long def)
{
    const char *v = lookup(c, flag);
    if (!v) return def;
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || end == v || *end)
        cli_usage_error(c, "--%s: expected an integer, got '%s'", flag, v);
    return x;
}

long long cli_int_range(cli_ctx *c, const char *flag, long long def, long long lo, long long hi)
{
    long long x = cli_int(c, flag, def);
    if (x < lo || x > hi)
        cli_usage_error(c, "--%s: expected an integer in [%lld, %lld], got %lld", flag, lo, hi, x);
    return x;
}

double cli_double(cli_ctx *c, const char *flag, double def)
{
    const char *v = lookup(c, flag);
    if (!v) return def;
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || end == v || *end || !isfinite(x))
        cli_usage_error(c, "--%s: expected a number, got '%s'", flag, v);
    return x;
}

double cli_double_req(cli_ctx *c, const char *flag)
{
    if (!lookup(c, flag)) cli_usage_error(c, "missing required flag --%s", flag);
    return cli_double(c, flag, 0);
}

int cli_bool(cli_ctx *c, const char *flag)
{
    return lookup(c, flag) != NULL;
}

int cli_npos(cli_ctx *c)
{
    return c->n_pos;
}

const char *cli_pos(cli_ctx *c, int i)
{
    return i >= 0 && i < c->n_pos ? c->pos[i] : NULL;
}

const char *cli_data_dir(cli_ctx *c)
{
    const char *d = lookup(c, "data-dir");
    if (d) return d;
    d = getenv("PRIVGUIDE_DATA");
    if (d && *d) return d;
    return "./privguide-data";
}

struct pvg_store *cli_open_store(cli_ctx *c, int *rc)
{
    pvg_store *s = NULL;
    pvg_error err;
    pvg_error_clear(&err);
    pvg_status st = pvg_store_open(cli_data_dir(c), &s, &err);
    if (st != PVG_OK) {
        *rc = cli_fail("open store", st, &err);
        return NULL;
    }
    return s;
}

int cli_double_list(cli_ctx *c, const char *flag, double *out, int max)
{
    const char *v = lookup(c, flag);
    if (!v) return 0;
    int n = 0;
    const char *p = v;
    while (*p) {
        char *end;
        errno = 0;
        double x = strtod(p, &end);
        if (errno || end == p || !isfinite(x) || (*end && *end != ','))
            cli_usage_error(c, "--%s: expected comma-separated numbers, got '%s'", flag, v);
        if (n == max) cli_usage_error(c, "--%s: at most %d values", flag, max);
        out[n++] = x;
        p = *end ? end + 1 : end;
    }
    return n;
}

/* ---- output ---- */

int cli_fail(const char *what, pvg_status st, const pvg_error *err)
{
    char buf[PVG_ERROR_TEXT_LEN + PVG_ERROR_SOURCE_LEN + 64];
    if (err && err->code != PVG_OK)
        pvg_error_format(err, buf, sizeof buf);
    else
        snprintf(buf, sizeof buf, "%s", pvg_strerror(st));
    /* a library message that names the same place ("query: ...") is not
     * prefixed twice */
    const char *why = buf;
    size_t wl = strlen(what);
    if (strncmp(why, what, wl) == 0 && why[wl] == ':' && why[wl + 1] == ' ') why += wl + 2;
    fprintf(stderr, "privguide: %s: %s\n", what, why);
    return CLI_EXIT_FAIL;
}

void cli_usage_error(cli_ctx *c, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "privguide: %s: ", c->cmd->name);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (see privguide %s --help)\n", c->cmd->name);
    exit(CLI_EXIT_USAGE);
}

void cli_warn(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "privguide: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

int cli_interactive(cli_ctx *c)
{
    return !cli_bool(c, "json") && isatty(STDOUT_FILENO);
}

char *cli_utc_time(long long t, char *buf, size_t len)
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (len == 0) return buf;
    if (!gmtime_r(&tt, &tm) || strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(buf, len, "?");
    return buf;
}

void cli_json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        switch (*p) {
        case '"':
            fputs("\\\"", f);
            break;
        case '\\':
            fputs("\\\\", f);
            break;
        case '\n':
            fputs("\\n", f);
            break;
        case '\r':
            fputs("\\r", f);
            break;
        case '\t':
            fputs("\\t", f);
            break;
        default:
            if (*p < 0x20)
                fprintf(f, "\\u%04x", *p);
            else
                fputc(*p, f);
        }
    }
    fputc('"', f);
}
