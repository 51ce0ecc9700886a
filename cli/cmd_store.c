/*
 * cmd_store.c - the store commands of the CLI: init, ingest, user
 * export/delete/consent, keys rotate/move, retention sweep, stats, store check.
 */
#include "cli.h"

#include <privguide/access.h>
#include <privguide/store.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- init ---- */

static int run_init(cli_ctx *c)
{
    pvg_store_init_options o = {0};
    o.master_key_in_env = cli_bool(c, "master-key-in-env");
    char *policy = NULL;
    const char *ppath = cli_str(c, "policy");
    if (ppath) {
        FILE *f = fopen(ppath, "rb");
        if (!f) {
            cli_warn("init: %s: %s", ppath, strerror(errno));
            return CLI_EXIT_FAIL;
        }
        size_t cap = 1 << 16, n = 0;
        policy = malloc(cap + 1);
        if (policy) n = fread(policy, 1, cap, f);
        fclose(f);
        if (!policy) return cli_fail("init", PVG_ERR_NOMEM, NULL);
        policy[n] = '\0';
        o.policy_json = policy;
    }
    o.key_file = cli_str(c, "key-file");
    o.database_url = cli_str(c, "database");
    pvg_error err;
    pvg_error_clear(&err);
    pvg_status st = pvg_store_init(cli_data_dir(c), &o, &err);
    free(policy);
    if (st != PVG_OK) return cli_fail("init", st, &err);
    char kf[4096];
    st = pvg_store_key_file(cli_data_dir(c), o.key_file, kf, sizeof kf, &err);
    if (st != PVG_OK) return cli_fail("init: key file", st, &err);
    if (cli_bool(c, "json")) {
        printf("{\"data_dir\":");
        cli_json_string(stdout, cli_data_dir(c));
        printf(",\"key_file\":");
        cli_json_string(stdout, kf);
        printf("}\n");
    } else {
        printf("initialised %s (privguide.db, keystore.db, audit.db, store.id, policy.json)\n",
               cli_data_dir(c));
        printf("key file: %s (0600: the pepper and %s)\n", kf,
               o.master_key_in_env ? "a note that the master key is in $PRIVGUIDE_MASTER_KEY"
                                   : "the master key");
        printf("  It is outside the data dir, so copies and backups of the data hold no key.\n"
               "  Back it up separately now (e.g. cp -p '%s' to an offline or secret store):\n"
               "  without it nobody, you included, can read a shopper's records; with it and a\n"
               "  copy of the data, anyone can. Other machines find it with --key-file or\n"
               "  $PRIVGUIDE_KEY_FILE, or take its text in $PRIVGUIDE_KEYS.\n",
               kf);
    }
    return CLI_EXIT_OK;
}

/* ---- catalog import ---- */

static int run_catalog_import(cli_ctx *c)
{
    const char *fname = cli_str(c, "format");
    pvg_catalog_format fmt = PVG_CATALOG_AUTO;
    if (fname && strcmp(fname, "tsv") == 0)
        fmt = PVG_CATALOG_TSV;
    else if (fname && strcmp(fname, "jsonl") == 0)
        fmt = PVG_CATALOG_JSONL;
    else if (fname && strcmp(fname, "auto") != 0)
        cli_usage_error(c, "--format must be auto, tsv or jsonl");
    int rc = 0;
    pvg_store *s = cli_open_store(c, &rc);
    if (!s) return rc;
    pvg_catalog_import_stats stats;
    pvg_error err;
    pvg_error_clear(&err);
    pvg_status st = pvg_store_catalog_import(s, cli_pos(c, 0), fmt, &stats, &err);
    pvg_store_free(s);
    if (cli_bool(c, "json"))
        printf("{\"lines\":%lld,\"declared\":%lld,\"ok\":%s}\n", stats.lines, stats.declared,
               st == PVG_OK ? "true" : "false");
    else if (st == PVG_OK || stats.declared)
        printf("declared %lld catalogue entries (%lld lines read)%s\n", stats.declared, stats.lines,
               st == PVG_OK ? "" : "; stopped at the line below, the rest not read");
    if (st != PVG_OK) return cli_fail("catalog import", st, &err);
    return CLI_EXIT_OK;
}

typedef struct catalog_print {
    int json, first;
} catalog_print;

static int catalog_line(void *ctx, const pvg_catalog_entry *e)
{
    catalog_print *p = ctx;
    if (p->json) {
        printf("%s{\"id\":", p->first ? "" : ",");
        cli_json_string(stdout, e->ext_id);
        printf(",\"title\":");
        cli_json_string(stdout, e->title);
        if (e->description) {
            printf(",\"description\":");
            cli_json_string(stdout, e->description);
        }
        printf("}");
    } else {
        /* the import's own format: id<TAB>title[<TAB>description] */
        printf("%s\t%s%s%s\n", e->ext_id, e->title, e->description ? "\t" : "",
               e->description ? e->description : "");
    }
    p->first = 0;
    return 0;
}

static int run_catalog_list(cli_ctx *c)
{
    int rc = 0;
    pvg_store *s = cli_open_store(c, &rc);
    if (!s) return rc;
    catalog_print p = {cli_bool(c, "json"), 1};
    if (p.json) printf("[");
    pvg_error err;
    pvg_error_clear(&err);
    pvg_status st = pvg_store_catalog_foreach(s, catalog_line, &p, &err);
    pvg_store_free(s);
    if (p.json) printf("]\n");
    if (st != PVG_OK) return cli_fail("catalog list", st, &err);
    return CLI_EXIT_OK;
}

/* ---- ingest ---- */

static void progress(void *ctx, const pvg_ingest_stats *s)
{
    (void)ctx;
    fprintf(stderr, "\r  %lld rows  %lld stored  %lld rejected  %.0f rows/s   ", s->read, s->stored,
            s->rejected, s->seconds > 0 ? s->read / s->seconds : 0.0);
}

/* --progress: one line per committed batch; every line printed is durable. */
static void progress_lines(void *ctx, const pvg_ingest_stats *s)
{
    (void)ctx;
    fprintf(stderr, "committed batch %lld: read %lld stored %lld duplicates %lld\n",
            s->batches_committed, s->read, s->stored, s->duplicates);
    fflush(stderr);
}

static void print_ingest_json(const pvg_ingest_stats *s, const char *reject_path)
{
    printf("{\"read\":%lld,\"accepted\":%lld,\"rejected\":%lld,\"rejected_by_reason\":{", s->read,
           s->accepted, s->rejected);
    for (int i = 0; i < s->n_reasons; i++) {
        if (i) putchar(',');
        cli_json_string(stdout, s->reasons[i].reason);
        printf(":%lld", s->reasons[i].count);
    }
    printf("},\"dropped_fields\":{");
    int first = 1;
    for (int b = 0; b < PVG_FIELD_COUNT; b++)
        if (s->dropped_fields[b]) {
            if (!first) putchar(',');
            first = 0;
            printf("\"%s\":%lld", pvg_event_field_name(1u << b), s->dropped_fields[b]);
        }
    printf("},\"stored\":%lld,\"duplicates\":%lld,\"suppressed\":%lld,\"no_consent\":%lld,"
           "\"anonymous\":%lld,\"items_upserted\":%lld,"
           "\"expired_swept\":%lld,\"batches_committed\":%lld,\"users\":%lld,\"items\":%lld,"
           "\"events\":%lld,\"seconds\":%.3f,\"reject_file\":",
           s->stored, s->duplicates, s->suppressed, s->no_consent, s->anonymous, s->items_upserted,
           s->expired_swept, s->batches_committed, s->users, s->items, s->events, s->seconds);
    if (reject_path)
        cli_json_string(stdout, reject_path);
    else
        printf("null");
    printf("}\n");
}

static int run_ingest(cli_ctx *c)
{
    const char *fmt_name = cli_str_req(c, "format");
    pvg_format fmt;
    if (pvg_format_parse(fmt_name, &fmt) != PVG_OK)
        cli_usage_error(c,
                        "--format: unknown format '%s' (expected online-retail, movielens, "
                        "movielens-items, retailrocket, amazon-reviews, jsonl or tsv)",
                        fmt_name);
    pvg_ingest_options o = {0};
    const char *enc = cli_str(c, "encoding");
    if (enc) {
        if (strcmp(enc, "auto") == 0)
            o.reader.encoding = PVG_ENCODING_AUTO;
        else if (strcmp(enc, "utf-8") == 0)
            o.reader.encoding = PVG_ENCODING_UTF8;
        else if (strcmp(enc, "latin-1") == 0)
            o.reader.encoding = PVG_ENCODING_LATIN1;
        else
            cli_usage_error(c, "--encoding: expected auto, utf-8 or latin-1, got '%s'", enc);
    }
    o.batch_rows = (long)cli_int_range(c, "batch", 50000, 1, 10000000);
    o.no_sweep = cli_bool(c, "no-sweep");
    const char *file = cli_pos(c, 0);
    int rc = 0;
    pvg_store *s = cli_open_store(c, &rc);
    if (!s) return rc;
    char reject_path[4096];
    const char *rp = cli_str(c, "rejects");
    int default_rejects = !rp;
    if (!rp) {
        /* One new file per run (DATA_DIR/rejects/FILE.<UTC time>[-N].rejects.tsv):
         * a later run never overwrites an earlier run's rejects; the library
         * creates it 0600 with O_EXCL, refusing any existing path. */
        const char *base = strrchr(file, '/');
        base = base ? base + 1 : file;
        snprintf(reject_path, sizeof reject_path, "%s/rejects", cli_data_dir(c));
        mkdir(reject_path, 0700);
        char stamp[32];
        time_t now = time(NULL);
        struct tm tm;
        strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", gmtime_r(&now, &tm));
        struct stat sb;
        for (int n = 1; n < 1000; n++) {
            char suffix[16] = "";
            if (n > 1) snprintf(suffix, sizeof suffix, "-%d", n);
            snprintf(reject_path, sizeof reject_path, "%s/rejects/%s.%s%s.rejects.tsv",
                     cli_data_dir(c), base, stamp, suffix);
            if (stat(reject_path, &sb) != 0 && errno == ENOENT) break;
        }
        rp = reject_path;
    } else if (strcmp(rp, "none") == 0)
        rp = NULL;
    o.reject_path = rp;
    int interactive = cli_interactive(c) && isatty(STDERR_FILENO);
    if (interactive) o.on_batch = progress;
    if (cli_bool(c, "progress")) {
        o.on_batch = progress_lines;
        interactive = 0;
    }
    pvg_ingest_stats stats;
    pvg_error err;
    pvg_error_clear(&err);
    pvg_status st = pvg_store_ingest_file(s, file, fmt, &o, &stats, &err);
    if (interactive) fputc('\n', stderr);
    pvg_store_free(s);
    if (st == PVG_OK && default_rejects && stats.rejected == 0 && unlink(rp) == 0)
        rp = NULL; /* no rejects: no per-run file left behind */
    if (st != PVG_OK) {
        if (stats.batches_committed)
            cli_warn("ingest: %lld rows in %lld batches were committed before the error",
                     stats.read, stats.batches_committed);
        return cli_fail("ingest", st, &err);
    }
    if (cli_bool(c, "json"))
        print_ingest_json(&stats, rp);
    else {
        printf("read %lld rows: %lld accepted (%lld new events, %lld duplicates, %lld anonymous), "
               "%lld rejected\n",
               stats.read, stats.accepted, stats.stored, stats.duplicates, stats.anonymous,
               stats.rejected);
        if (stats.suppressed)
            printf("  skipped %lld rows of erased users (suppression list)\n", stats.suppressed);
        if (stats.no_consent)
            printf("  skipped %lld events the shoppers' consent does not allow collecting\n",
                   stats.no_consent);
        for (int i = 0; i < stats.n_reasons; i++)
            printf("  rejected %-28s %lld\n", stats.reasons[i].reason, stats.reasons[i].count);
        for (int b = 0; b < PVG_FIELD_COUNT; b++)
            if (stats.dropped_fields[b])
                printf("  dropped field %-23s %lld (not in the data policy)\n",
                       pvg_event_field_name(1u << b), stats.dropped_fields[b]);
        printf("store: %lld users, %lld items, %lld events; %.2f s", stats.users, stats.items,
               stats.events, stats.seconds);
        if (rp && stats.rejected) printf("; rejects in %s", rp);
        printf("\n");
    }
    if (stats.accepted == 0) {
        /* Nothing usable: most often the wrong --format, or not a data file. */
        if (stats.read == 0)
            cli_warn("ingest: %s holds no data rows: nothing was imported", file);
        else
            cli_warn("ingest: none of the %lld rows of %s was accepted (is it really %s? see the "
                     "reasons above%s%s)",
                     stats.read, file, pvg_format_name(fmt), rp ? " and " : "", rp ? rp : "");
        return CLI_EXIT_FAIL;
    }
    return CLI_EXIT_OK;
}

/* ---- user rights ---- */

/* Every access to a user's data goes through the access gate, which checks
 * consent, writes the audit entry first and fails closed. */

static int run_user_export(cli_ctx *c)
{
    int rc = 0;
    pvg_store *s = cli_open_store(c, &rc);
    if (!s) return rc;
    pvg_access g;
    pvg_access_init(&g, s, "cli");
    char *json = NULL;
    pvg_error err;
    pvg_error_clear(&err);
    pvg_status st = pvg_access_export(&g, cli_pos(c, 0), &json, &err);
    pvg_store_free(s);
    if (st != PVG_OK) return cli_fail("user export", st, &err);
    puts(json);
    pvg_free(json);
    return CLI_EXIT_OK;
}

static int run_user_delete(cli_ctx *c)
{
    int rc = 0;
    pvg_store *s = cli_open_store(c, &rc);
    if (!s) return rc;
    pvg_access g;
    pvg_access_init(&g, s, "cli");
    pvg_error err;
    pvg_error_clear(&err);
    int allow_return = cli_bool(c, "allow-return");
    pvg_status st = pvg_access_erase_flags(
        &g, cli_pos(c, 0), allow_return ? PVG_ERASE_ALLOW_RETURN : 0, NULL, NULL, &err);
    /* the erasure vacuumed the touched tables; FULL rewrites them */
    if (st == PVG_OK && cli_bool(c, "vacuum-full")) st = pvg_store_vacuum(s, 1, &err);
    pvg_store_free(s);
    if (st != PVG_OK) return cli_fail("user delete", st, &err);
    if (cli_bool(c, "json"))
        printf("{\"deleted\":true,\"suppressed\":%s}\n", allow_return ? "false" : "true");
    else if (allow_return)
        printf("deleted: the user's data key and records are destroyed (not suppressed: a later "
               "import or event may bring them back)\n");
    else
        printf("deleted: the user's data key and records are destroyed; the user is on the "
               "suppression list (imports skip them)\n");
    return CLI_EXIT_OK;
}

/* -1 when the flag is absent, else 0/1 (usage error when malformed). */
static int parse_switch(cli_ctx *c, const char *flag)
{
    const char *v = cli_str(c, flag);
    if (!v) return -1;
    if (strcmp(v, "on") == 0 || strcmp(v, "true") == 0 || strcmp(v, "yes") == 0) return 1;
    if (strcmp(v, "off") == 0 || strcmp(v, "false") == 0 || strcmp(v, "no") == 0) return 0;
    cli_usage_error(c, "--%s: expected on or off, got '%s'", flag, v);
}

static int run_user_consent(cli_ctx *c)
{
    int p = parse_switch(c, "personalization"), a = parse_switch(c, "analytics");
    int rc = 0;
    pvg_store *s = cli_open_store(c, &rc);
    if (!s) return rc;
    pvg_access g;
    pvg_access_init(&g, s, "cli");
    pvg_error err;
    pvg_error_clear(&err);
    const char *user = cli_pos(c, 0);
    pvg_consent cons = {0};
    pvg_status st = (p >= 0 || a >= 0) ? pvg_access_consent_change(&g, user, p, a, &cons, &err)
                                       : pvg_access_consent_get(&g, user, &cons, &err);
    pvg_store_free(s);
    if (st != PVG_OK) return cli_fail("user consent", st, &err);
    printf("{\"personalization\":%s,\"analytics\":%s}\n", cons.personalization ? "true" : "false",
           cons.analytics ? "true" : "false");
    return CLI_EXIT_OK;
}

/* ---- keys, retention, stats ---- */

/* A store operation that reports one count: open, run, close, print. */
static int run_counted(cli_ctx *c, const char *what,
                       pvg_status (*op)(pvg_store *s, long long *n, pvg_error *err),
                       const char *json_key, const char *text_fmt)
{
    int rc = 0;
    pvg_store *s = cli_open_store(c, &rc);
    if (!s) return rc;
    long long n = 0;
    pvg_error err;
    pvg_error_clear(&err);
    pvg_status st = op(s, &n, &err);
    pvg_store_free(s);
    if (st != PVG_OK) return cli_fail(what, st, &err);
    if (cli_bool(c, "json"))
        printf("{\"%s\":%lld}\n", json_key, n);
    else
        printf(text_fmt, n);
    return CLI_EXIT_OK;
}

static int run_keys_rotate(cli_ctx *c)
{
    return run_counted(c, "keys rotate", pvg_store_keys_rotate, "rewrapped",
                       getenv(PVG_ENV_MASTER_KEY) && *getenv(PVG_ENV_MASTER_KEY)
                           ? "rotated the master key: %lld data keys rewrapped; now set "
                             "PRIVGUIDE_MASTER_KEY to the new key\n"
                           : "rotated the master key: %lld data keys rewrapped\n");
}

static int run_keys_move(cli_ctx *c)
{
    char to[4096];
    pvg_error err;
    pvg_error_clear(&err);
    pvg_status st =
        pvg_store_keys_move(cli_data_dir(c), cli_str(c, "key-file"), to, sizeof to, &err);
    if (st != PVG_OK) return cli_fail("keys move", st, &err);
    if (cli_bool(c, "json")) {
        printf("{\"key_file\":");
        cli_json_string(stdout, to);
        printf("}\n");
    } else {
        printf(
            "moved the keys out of %s to %s\n"
            "  %s/master.key was overwritten and removed. Back the key file up separately.\n"
            "  Copies and backups of the data dir made before this still hold the old key file:\n"
            "  destroy them, or treat the keys as exposed (`privguide keys rotate` replaces the\n"
            "  master key; the pepper, which names every shopper, cannot be replaced).\n",
            cli_data_dir(c), to, cli_data_dir(c));
    }
    return CLI_EXIT_OK;
}

static int run_keys_where(cli_ctx *c)
{
    const char *env = getenv(PVG_ENV_KEYS);
    char kf[4096];
    pvg_error err;
    pvg_error_clear(&err);
    if (env && *env) {
        snprintf(kf, sizeof kf, "$%s", PVG_ENV_KEYS);
    } else {
        pvg_status st = pvg_store_key_file(cli_data_dir(c), NULL, kf, sizeof kf, &err);
        if (st != PVG_OK) return cli_fail("keys where", st, &err);
    }
    if (cli_bool(c, "json")) {
        printf("{\"key_file\":");
        cli_json_string(stdout, kf);
        printf(",\"exists\":%s}\n", env && *env             ? "true"
                                    : access(kf, F_OK) == 0 ? "true"
                                                            : "false");
    } else {
        printf("%s\n", kf);
    }
    return CLI_EXIT_OK;
}

static int run_retention_sweep(cli_ctx *c)
{
    return run_counted(c, "retention sweep", pvg_store_retention_sweep, "deleted",
                       "deleted %lld expired events\n");
}

static int run_stats(cli_ctx *c)
{
    int rc = 0;
    pvg_store *s = cli_open_store(c, &rc);
    if (!s) return rc;
    pvg_store_counts n;
    pvg_error err;
    pvg_error_clear(&err);
    pvg_status st = pvg_store_counts_get(s, &n, &err);
    pvg_store_free(s);
    if (st != PVG_OK) return cli_fail("stats", st, &err);
    if (cli_bool(c, "json"))
        printf("{\"users\":%lld,\"items\":%lld,\"events\":%lld,\"anonymous_rows\":%lld,\"wrapped_"
               "keys\":%lld}\n",
               n.users, n.items, n.events, n.anonymous_rows, n.wrapped_keys);
    else
        printf("users %lld\nitems %lld\nevents %lld\nanonymous rows %lld\nwrapped data keys %lld\n",
               n.users, n.items, n.events, n.anonymous_rows, n.wrapped_keys);
    return CLI_EXIT_OK;
}

/* ---- store check ---- */

typedef struct check_print {
    int json, first;
} check_print;

static void check_problem(void *ctx, int64_t user_id, int64_t row, const char *chunk,
                          const char *problem, int quarantined)
{
    check_print *p = ctx;
    if (p->json) {
        printf("%s{\"user_row\":%lld,\"chunk_row\":%lld,\"chunk\":\"%s\",\"problem\":\"%s\","
               "\"quarantined\":%s}",
               p->first ? "" : ",", (long long)user_id, (long long)row, chunk, problem,
               quarantined ? "true" : "false");
        p->first = 0;
    } else
        printf("user row %lld, chunk row %lld (%s): %s%s\n", (long long)user_id, (long long)row,
               chunk, problem, quarantined ? " -> quarantined" : "");
}

static int run_store_check(cli_ctx *c)
{
    int rc = 0;
    pvg_store *s = cli_open_store(c, &rc);
    if (!s) return rc;
    unsigned flags = (cli_bool(c, "quarantine") ? PVG_CHECK_QUARANTINE : 0u) |
                     (cli_bool(c, "upgrade") ? PVG_CHECK_UPGRADE : 0u);
    check_print p = {cli_bool(c, "json"), 1};
    if (p.json) printf("{\"problems\":[");
    pvg_store_check_report r;
    pvg_error err;
    pvg_error_clear(&err);
    pvg_status st = pvg_store_check(s, flags, check_problem, &p, &r, &err);
    pvg_store_free(s);
    if (st != PVG_OK) {
        if (p.json) printf("]}\n");
        return cli_fail("store check", st, &err);
    }
    long long problems = r.unreadable + r.duplicate + r.orphaned + r.keyless;
    if (p.json)
        printf("],\"users\":%lld,\"chunks\":%lld,\"unreadable\":%lld,\"duplicate\":%lld,"
               "\"orphaned\":%lld,"
               "\"keyless\":%lld,\"legacy\":%lld,\"quarantined\":%lld,\"upgraded\":%lld,"
               "\"in_quarantine\":%lld,\"cid_index\":%s,\"ok\":%s}\n",
               r.users, r.chunks, r.unreadable, r.duplicate, r.orphaned, r.keyless, r.legacy,
               r.quarantined, r.upgraded, r.in_quarantine, r.cid_index ? "true" : "false",
               problems == r.quarantined ? "true" : "false");
    else {
        printf("checked %lld chunks of %lld users: %lld failing authentication or malformed, %lld "
               "duplicated, "
               "%lld without a user row, %lld without a data key\n",
               r.chunks, r.users, r.unreadable, r.duplicate, r.orphaned, r.keyless);
        if (r.legacy)
            printf("%lld chunks in format 1 (expiry not authenticated; --upgrade rewrites them)\n",
                   r.legacy);
        if (r.upgraded) printf("rewrote %lld format-1 chunks in the current format\n", r.upgraded);
        if (r.quarantined) printf("quarantined %lld chunks\n", r.quarantined);
        printf("quarantine holds %lld chunks; unique chunk-id index %s\n", r.in_quarantine,
               r.cid_index ? "in place"
                           : "missing (duplicated rows keep it from being built: --quarantine)");
    }
    /* Exit 1 while problem chunks are still in the readers' way. */
    return problems == r.quarantined ? CLI_EXIT_OK : CLI_EXIT_FAIL;
}

/* ---- migrate, store copy ---- */

static int run_migrate(cli_ctx *c)
{
    int from = 0, to = 0;
    pvg_error err;
    pvg_error_clear(&err);
    pvg_status st = pvg_store_migrate(cli_data_dir(c), &from, &to, &err);
    if (st != PVG_OK) return cli_fail("migrate", st, &err);
    if (cli_bool(c, "json"))
        printf("{\"from\":%d,\"to\":%d}\n", from, to);
    else if (from == to)
        printf("schema version %d: up to date\n", to);
    else
        printf("schema version %d -> %d\n", from, to);
    return CLI_EXIT_OK;
}

static int run_store_copy(cli_ctx *c)
{
    const char *from = cli_str(c, "from") ? cli_str(c, "from") : cli_data_dir(c);
    const char *to = cli_str(c, "to");
    if (!to) cli_usage_error(c, "--to: the new data dir is required");
    pvg_store_copy_report r;
    pvg_error err;
    pvg_error_clear(&err);
    pvg_status st = pvg_store_copy(from, to, cli_str(c, "database"), &r, &err);
    if (st != PVG_OK) return cli_fail("store copy", st, &err);
    if (cli_bool(c, "json"))
        printf("{\"backend\":\"%s\",\"users\":%lld,\"chunks\":%lld,\"events\":%lld,"
               "\"releases\":%lld,\"audit_entries\":%lld,\"orphan_chunks\":%lld,"
               "\"verified_users\":%lld,\"conversations\":%lld,\"quarantined\":%lld,"
               "\"ingest_runs\":%lld,\"cached_releases\":%lld,\"meta_rows\":%lld}\n",
               r.to_backend, r.users, r.chunks, r.events, r.releases, r.audit_entries,
               r.chunks_left, r.digests, r.conversations, r.quarantined, r.ingest_runs,
               r.cached_releases, r.meta_rows);
    else
        printf(
            "copied to %s (%s): %lld users, %lld chunks (%lld events), %lld releases, %lld audit "
            "entries, %lld conversations, %lld quarantined chunks, %lld ingest runs, %lld cached "
            "releases, %lld settings; verified: counts, %lld per-user digests, table digests, "
            "audit head\n",
            to, r.to_backend, r.users, r.chunks, r.events, r.releases, r.audit_entries,
            r.conversations, r.quarantined, r.ingest_runs, r.cached_releases, r.meta_rows,
            r.digests);
    return CLI_EXIT_OK;
}

static const cli_flag copy_flags[] = {
    {"from", CLI_STR, "DIR", "the data dir to copy (default: --data-dir)"},
    {"to", CLI_STR, "DIR", "the new data dir"},
    {"database", CLI_STR, "URL", "put the copy in this PostgreSQL database (default: SQLite)"},
    {"json", CLI_BOOL, NULL, "print JSON"},
    {0},
};

static const cli_flag check_flags[] = {
    {"quarantine", CLI_BOOL, NULL,
     "move every problem chunk to the quarantine (kept sealed; erased with its user)"},
    {"upgrade", CLI_BOOL, NULL,
     "rewrite format-1 chunks in the current format (expiry authenticated)"},
    {"json", CLI_BOOL, NULL, "print JSON"},
    {0},
};

static const cli_flag init_flags[] = {
    {"policy", CLI_STR, "FILE", "data policy to install (default: the built-in policy)"},
    {"master-key-in-env", CLI_BOOL, NULL,
     "keep the master key out of the key file; read it from $PRIVGUIDE_MASTER_KEY"},
    {"database", CLI_STR, "URL",
     "keep the store in this PostgreSQL database (default: $PRIVGUIDE_DATABASE_URL, else SQLite)"},
    {"json", CLI_BOOL, NULL, "print JSON"},
    {0},
};
static const cli_flag ingest_flags[] = {
    {"format", CLI_STR, "F",
     "online-retail, movielens, movielens-items, retailrocket, amazon-reviews, jsonl, tsv"},
    {"rejects", CLI_STR, "PATH",
     "reject file, created 0600 and never over an existing file (default: a new "
     "DATA_DIR/rejects/FILE.<UTC time>.rejects.tsv per run, removed when nothing was rejected; "
     "'none' for no file)"},
    {"encoding", CLI_STR, "E", "auto (default: UTF-8, Latin-1 lines detected), utf-8 or latin-1"},
    {"batch", CLI_INT, "N", "rows per committed batch (default 50000)"},
    {"no-sweep", CLI_BOOL, NULL, "skip the retention sweep after the import"},
    {"progress", CLI_BOOL, NULL, "print a line to stderr after each committed (durable) batch"},
    {"json", CLI_BOOL, NULL, "print one JSON object of counts"},
    {0},
};
static const cli_flag catalog_flags[] = {
    {"format", CLI_STR, "F",
     "auto (default: jsonl when the first line starts with '{'), tsv or jsonl"},
    {"json", CLI_BOOL, NULL, "print one JSON object of counts"},
    {0},
};
static const cli_flag json_only[] = {
    {"json", CLI_BOOL, NULL, "print JSON"},
    {0},
};
static const cli_flag delete_flags[] = {
    {"allow-return", CLI_BOOL, NULL,
     "do not put the user on the suppression list (a later import or event may bring them back)"},
    {"vacuum-full", CLI_BOOL, NULL,
     "then rewrite the touched tables (PostgreSQL VACUUM FULL, SQLite VACUUM; locks them)"},
    {"json", CLI_BOOL, NULL, "print JSON"},
    {0},
};
static const cli_flag consent_flags[] = {
    {"personalization", CLI_STR, "on|off", "set consent to personalised recommendations"},
    {"analytics", CLI_STR, "on|off", "set consent to use in (DP) analytics"},
    {0},
};

const cli_command cli_cmds_store[] = {
    {"init", NULL, 0, 0,
     "create a data dir (databases, store.id, policy.json) and its key file (0600) outside it",
     "The key file holds the pepper (pseudonyms) and the master key (wraps every user's data "
     "key).\n"
     "It goes to --key-file, $PRIVGUIDE_KEY_FILE, or by default $XDG_CONFIG_HOME/privguide/ (or\n"
     "~/.config/privguide/) as <store id>.key; never inside the data dir. Back it up separately.",
     init_flags, run_init},
    {"ingest", "FILE", 1, 1, "import a file (streaming, batched, idempotent) under the data policy",
     "Rows that cannot be used go to the reject file with line, byte offset, reason and field "
     "(never\n"
     "the row's values). A .gz file is read directly. Re-running the same import stores nothing\n"
     "twice. Exits 1 when no row was accepted (e.g. the wrong --format).",
     ingest_flags, run_ingest},
    {"catalog import", "FILE", 1, 1,
     "declare the shop's catalogue text (item id and title): the public text DP training uses",
     "Lines id<TAB>title[<TAB>description], or JSONL {\"id\": .., \"title\": .., "
     "\"description\": ..}.\n"
     "Only this command sets the declared text: imports of sales and the events API never do\n"
     "(their rows may rename an item's display title, not its declared one). A store-trained DP\n"
     "model takes its items and their titles from the declared catalogue (docs/store.md). The\n"
     "first bad line stops the import with FILE:LINE and the field; the lines before it stay\n"
     "declared. Rerunning a file declares the same text again.",
     catalog_flags, run_catalog_import},
    {"catalog list", NULL, 0, 0, "print the declared catalogue (id<TAB>title[<TAB>description])",
     "In id byte order; --json prints an array of {\"id\", \"title\", \"description\"}. Only\n"
     "declared text: titles sale rows gave items are not listed.",
     json_only, run_catalog_list},
    {"user export", "USER_ID", 1, 1, "print as JSON everything held about a user", NULL, json_only,
     run_user_export},
    {"user delete", "USER_ID", 1, 1, "crypto-shred a user: destroy their data key and records",
     "Their pseudonym then goes on the suppression list: re-imports skip their rows (counted as\n"
     "suppressed) and events, consent changes and tokens for them are refused. --allow-return\n"
     "skips the list.",
     delete_flags, run_user_delete},
    {"user consent", "USER_ID", 1, 1, "show or set a user's consent switches", NULL, consent_flags,
     run_user_consent},
    {"keys rotate", NULL, 0, 0,
     "rewrap every data key under a new master key (safe to interrupt; rerun to finish)",
     "With the master key in $PRIVGUIDE_MASTER_KEY, put the new key in $PRIVGUIDE_NEW_MASTER_KEY.",
     json_only, run_keys_rotate},
    {"keys move", NULL, 0, 0, "move the keys of an old data dir (its master.key) out of it",
     "Writes the key file to --key-file PATH (or $PRIVGUIDE_KEY_FILE, or the default place),\n"
     "then overwrites and removes DATA_DIR/master.key. Safe to rerun if interrupted. Stores\n"
     "with master.key inside are refused by every other command until it is moved.",
     json_only, run_keys_move},
    {"keys where", NULL, 0, 0, "print the path of the store's key file (outside the data dir)",
     "The path from --key-file, $PRIVGUIDE_KEY_FILE or the default place for this store's id;\n"
     "\"$PRIVGUIDE_KEYS\" when the keys come from that variable.",
     json_only, run_keys_where},
    {"retention sweep", NULL, 0, 0, "delete events whose retention period has passed", NULL,
     json_only, run_retention_sweep},
    {"stats", NULL, 0, 0, "counts of users, items, events and keys in the store", NULL, json_only,
     run_stats},
    {"store check", NULL, 0, 0,
     "find chunks that fail authentication, replayed chunk rows, chunks without a user row or key",
     "Decrypts every chunk under its user's key. Exit status 1 when problems are found and left in "
     "place.\n"
     "--quarantine moves them out of the readers' way (kept sealed, removed with their user on "
     "erasure).",
     check_flags, run_store_check},
    {"migrate", NULL, 0, 0, "create or upgrade the store's database schema (versioned)",
     "Refuses a store whose schema is newer than this privguide knows.", json_only, run_migrate},
    {"store copy", NULL, 0, 0, "copy a store to a new data dir, into PostgreSQL or SQLite",
     "Sealed data, wrapped keys, ledger and audit log are copied as stored (no key is needed;\n"
     "the same key file opens the copy), then verified by counts and a digest per user.",
     copy_flags, run_store_copy},
    {0},
};
