/*
 * cmd_server.c - the server commands of the CLI (table cli_cmds_server):
 * serve, apikey create, token issue, audit verify, audit head, audit show.
 */
#include "cli.h"

#include <privguide/assistant.h>

#include <privguide/audit.h>
#include <privguide/auth.h>
#include <privguide/model.h>
#include <privguide/server.h>
#include <privguide/store.h>

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- serve ---- */

static int has_pages(const char *dir)
{
    char p[PATH_MAX];
    struct stat st;
    if ((size_t)snprintf(p, sizeof p, "%s/shop.html", dir) >= sizeof p) return 0;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* The pages: --web-dir, $PVG_WEB_DIR, <exe>/../src/server/web (a build dir
 * inside the source tree), <exe>/../share/privguide/web (installed). */
static const char *find_web_dir(cli_ctx *c, char *buf, size_t len)
{
    if (cli_str(c, "web-dir")) return cli_str(c, "web-dir");
    const char *env = getenv("PVG_WEB_DIR");
    if (env && *env) return env;
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) *slash = 0;
        static const char *rel[] = {"../src/server/web", "../share/privguide/web"};
        for (size_t i = 0; i < 2; i++) {
            if ((size_t)snprintf(buf, len, "%s/%s", exe, rel[i]) >= len) continue;
            char real[PATH_MAX];
            if (has_pages(buf) && realpath(buf, real) && strlen(real) < len) {
                memcpy(buf, real, strlen(real) + 1);
                return buf;
            }
        }
    }
    return NULL;
}

static void fl_flags_need_items(cli_ctx *c);

static int run_serve(cli_ctx *c)
{
    fl_flags_need_items(c);
    pvg_server_options o;
    memset(&o, 0, sizeof o);
    o.data_dir = cli_data_dir(c);
    o.bind = cli_str(c, "bind");
    o.port = (int)cli_int_range(c, "port", 8080, 0, 65535);
    o.model_path = cli_str(c, "model");
    o.dp_model_path = cli_str(c, "dp-model");
    char wbuf[PATH_MAX];
    o.web_dir = find_web_dir(c, wbuf, sizeof wbuf);
    o.synonyms_path = cli_str(c, "synonyms"); /* NULL: next to the pages; "": none */
    pvg_assist_llm_options llm;
    cli_assist_llm_options(c, &llm);
    o.assist_llm = &llm;
    o.openapi_path = cli_str(c, "openapi");
    o.threads = (int)cli_int_range(c, "threads", 0, 0, 256); /* 0: one per core */
    o.max_body_bytes = (size_t)cli_int_range(c, "max-body", 1 << 20, 1024, 64LL << 20);
    o.timeout_seconds = (int)cli_int_range(c, "timeout", 15, 1, 3600);
    o.reload_ms = (int)cli_int_range(c, "reload-ms", 1000, 50, 3600000);
    o.dataset = cli_str(c, "dataset");
    o.popular_epsilon = cli_double(c, "popular-epsilon", 1.0);
    o.popular_k = (int)cli_int_range(c, "popular-k", 20, 1, 1000);
    o.cache_entries = cli_bool(c, "no-cache") ? -1 : 0;
    o.auth_failure_rate = cli_double(c, "auth-failure-rate", 10);
    o.alert_url = cli_str(c, "alert-webhook");
    o.monitor_off = cli_bool(c, "no-monitor");
    if (o.auth_failure_rate == 0) o.auth_failure_rate = -1; /* 0 on the command line: no limit */
    if (!(o.popular_epsilon > 0)) cli_usage_error(c, "--popular-epsilon: want a number > 0");
    int drain_ms = (int)cli_int_range(c, "drain-ms", 10000, 0, 600000);
    /* the server serves models trained from its store, which live only in
     * the data dir (or its models/ sub-directory), where erasure reaches */
    pvg_error perr;
    pvg_error_clear(&perr);
    if (o.model_path && pvg_model_path_check_store(o.model_path, o.data_dir, &perr) != PVG_OK)
        cli_usage_error(c, "--model: %s", perr.text);
    if (o.dp_model_path && pvg_model_path_check_store(o.dp_model_path, o.data_dir, &perr) != PVG_OK)
        cli_usage_error(c, "--dp-model: %s", perr.text);

    /* Block the stop signals before any thread starts, so every thread
     * inherits the mask and only sigwait below receives them. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    void *fl = NULL; /* federated training (cmd_fl.c, docs/fl-protocol.md) */
    if (cli_has(c, "fl-items")) {
        int rc = cli_fl_attach(c, &o, &fl);
        if (rc != CLI_EXIT_OK) return rc;
    }
    pvg_server *srv = NULL;
    pvg_error err;
    pvg_error_clear(&err);
    pvg_status st = pvg_server_start(&o, &srv, &err);
    if (st != PVG_OK) {
        cli_fl_detach(fl);
        return cli_fail("serve", st, &err);
    }
    int port = pvg_server_port(srv);
    const char *host = o.bind ? o.bind : "127.0.0.1";
    printf("privguide: serving %s on http://%s:%d (model generation %ld)\n", o.data_dir, host, port,
           pvg_server_model_generation(srv));
    if (pvg_server_dp_model_generation(srv))
        printf(
            "  DP model in service: similar items, popular and non-personal lists come from it\n");
    if (o.web_dir)
        printf("  shop demo:          http://%s:%d/shop\n"
               "  privacy portal:     http://%s:%d/portal\n"
               "  operator dashboard: http://%s:%d/dashboard\n",
               host, port, host, port, host, port);
    else
        printf("  pages not served: no web directory found (give --web-dir or PVG_WEB_DIR)\n");
    fflush(stdout);
    const char *port_file = cli_str(c, "port-file");
    if (port_file) {
        char tmp[PATH_MAX];
        FILE *f = (size_t)snprintf(tmp, sizeof tmp, "%s.tmp", port_file) < sizeof tmp
                      ? fopen(tmp, "w")
                      : NULL;
        if (!f || fprintf(f, "%d\n", port) < 0 || fclose(f) != 0 || rename(tmp, port_file) != 0) {
            cli_warn("cannot write the port file %s", port_file);
            pvg_server_free(srv);
            cli_fl_detach(fl);
            return CLI_EXIT_FAIL;
        }
    }
    int sig = 0;
    sigwait(&set, &sig);
    fprintf(stderr, "privguide: %s received: draining requests (up to %d ms)\n",
            sig == SIGTERM ? "SIGTERM" : "SIGINT", drain_ms);
    st = pvg_server_stop(srv, drain_ms, &err);
    pvg_server_free(srv);
    cli_fl_detach(fl);
    if (st != PVG_OK) return cli_fail("serve: stop", st, &err);
    fprintf(stderr, "privguide: stopped cleanly\n");
    return CLI_EXIT_OK;
}

static const cli_flag serve_flags[] = {
    {"port", CLI_INT, "N", "TCP port (default 8080; 0: an ephemeral port)"},
    {"bind", CLI_STR, "ADDR", "IPv4 address to listen on (default 127.0.0.1)"},
    {"synonyms", CLI_STR, "FILE", "search synonyms file (default: the installed one; \"\": none)"},
    CLI_LLM_FLAGS,
    {"model", CLI_STR, "FILE",
     "model file trained from the store, in the data dir or its models/ (default "
     "<data-dir>/model.pvgm)"},
    {"dp-model", CLI_STR, "FILE",
     "DP-trained model (train --epsilon) for everything shown to others: similar items, "
     "popular, the list of a shopper without personalisation consent (default "
     "<data-dir>/model-dp.pvgm when it exists; a model trained without DP is refused)"},
    {"web-dir", CLI_STR, "DIR",
     "directory of the pages (default $PVG_WEB_DIR, else found "
     "beside the executable)"},
    {"openapi", CLI_STR, "FILE", "OpenAPI document (default docs/openapi.json of the source tree)"},
    {"threads", CLI_INT, "N",
     "HTTP worker threads (default 0: one per core, at least 2; routes that wait for their audit "
     "entry on the thread may want more)"},
    {"max-body", CLI_INT, "BYTES", "largest request body (default 1048576)"},
    {"timeout", CLI_INT, "S", "idle connection timeout in seconds (default 15)"},
    {"reload-ms", CLI_INT, "MS", "how often the model file is checked (default 1000)"},
    {"dataset", CLI_STR, "NAME",
     "budget ledger charged for the DP popular list (default "
     "\"default\")"},
    {"popular-epsilon", CLI_DOUBLE, "EPS",
     "epsilon of the popular list per model build "
     "(default 1)"},
    {"popular-k", CLI_INT, "K",
     "length of the popular list (default 20: the budget is spread over k rounds)"},
    {"no-cache", CLI_BOOL, NULL, "do not cache recommendations"},
    {"auth-failure-rate", CLI_DOUBLE, "N",
     "failed authentications per second per client address "
     "before 429 (default 10; 0: no limit)"},
    {"alert-webhook", CLI_STR, "URL",
     "access monitoring: POST each alert as JSON to http://host[:port]/path"},
    {"no-monitor", CLI_BOOL, NULL, "no access monitoring (for measuring its cost)"},
    /* federated training under /v1/fl/ (docs/fl-protocol.md) */
    {"fl-items", CLI_STR, "FILE", "serve federated training over this public item list"},
    {"fl-factors", CLI_INT, "K", "federated training: factors (default 32)"},
    {"fl-rounds", CLI_INT, "N", "federated training: rounds, 0 unlimited (default 1)"},
    {"fl-sample-rate", CLI_DOUBLE, "Q", "federated training: Poisson sampling rate (default 1)"},
    {"fl-min-clients", CLI_INT, "N", "federated training: clients before a round (default 3)"},
    {"fl-k", CLI_INT, "K", "federated training: SecAgg+ neighbours (default 0: planned)"},
    {"fl-phase-seconds", CLI_DOUBLE, "S", "federated training: deadline per phase (default 30)"},
    {"fl-epsilon", CLI_DOUBLE, "E", "federated training: client-level DP, charged once"},
    {"fl-delta", CLI_DOUBLE, "D", "federated training: DP delta (default 1/n^1.1)"},
    {"fl-noise", CLI_STR, "MODE", "federated training: distributed (default) or central"},
    {"fl-clip", CLI_DOUBLE, "C", "federated training: L2 bound of one client's update"},
    {"fl-update", CLI_STR, "FORM", "federated training: stats (default with DP) or gradient"},
    {"fl-server-lr", CLI_DOUBLE, "LR", "federated training: server step (default 0.5)"},
    {"fl-noise-ridge", CLI_DOUBLE, "KAPPA",
     "federated training, DP: ridge in noise stds (default 3)"},
    {"fl-average-solves", CLI_BOOL, NULL,
     "federated training, statistics form: item factors are the mean of the rounds' solves"},
    {"fl-item-prior", CLI_STR, "SOURCE",
     "federated training, DP, statistics form: a prior from the declared catalogue's titles, "
     "descriptions, or categories (the descriptions as '|' or ','-separated labels)"},
    {"fl-item-prior-weight", CLI_DOUBLE, "W", "federated training: the item prior's weight (1)"},
    {"fl-item-prior-count", CLI_DOUBLE, "H",
     "federated training: the item prior's count weighting n / (n + H) (default 20)"},
    {"fl-min-survivors", CLI_INT, "N", "federated training: survivor floor of a round"},
    {"fl-server-threads", CLI_INT, "N", "federated training: unmasking threads (default 2)"},
    {"fl-lane-bits", CLI_INT, "B",
     "federated training: SecAgg lane, 32 (default) or 16 (DP runs only, docs/fl-protocol.md)"},
    {"fl-mask-rounds", CLI_INT, "R",
     "federated training: ChaCha rounds of the masks: 8 (default), 12 or 20"},
    {"fl-max-cohort", CLI_INT, "N",
     "federated training: the most clients a round sums, the encoding's room before its sum "
     "wraps (default: 2 q n + 10 sd with a 16-bit lane, 65535 with 32)"},
    {"drain-ms", CLI_INT, "MS",
     "on SIGTERM, wait this long for requests in flight (default "
     "10000)"},
    {"port-file", CLI_STR, "FILE", "write the listening port into FILE once ready"},
    {0},
};

/* Without --fl-items there is no federated training: a --fl-* flag (the
 * item prior's, --fl-epsilon, ...) would be ignored while the server runs
 * without it, so it is refused (exit 2) before anything starts. */
static void fl_flags_need_items(cli_ctx *c)
{
    if (cli_has(c, "fl-items")) return;
    for (const cli_flag *f = serve_flags; f->name; f++)
        if (strncmp(f->name, "fl-", 3) == 0 && cli_has(c, f->name))
            cli_usage_error(c, "--%s needs --fl-items: without it there is no federated training",
                            f->name);
}

/* ---- credentials ---- */

static void print_cred(cli_ctx *c, const char *cred, const pvg_principal *p, const char *user)
{
    if (cli_bool(c, "json")) {
        printf("{\"credential\":");
        cli_json_string(stdout, cred);
        printf(",\"id\":\"%s\",\"role\":\"%s\",\"rate_per_s\":%g,\"expires_at\":%lld", p->key_id,
               pvg_role_name(p->role), p->rate_per_s, (long long)p->expires_at);
        if (user) {
            printf(",\"user\":");
            cli_json_string(stdout, user);
        }
        printf("}\n");
    } else {
        printf("%s\n", cred);
        if (isatty(STDOUT_FILENO))
            fprintf(stderr, "privguide: %s %s (id %s); shown once, stored only as a hash\n",
                    user ? "token for user" : pvg_role_name(p->role), user ? user : "API key",
                    p->key_id);
    }
}

/* "30d", "12h", "45m", "90s", "2w" or plain seconds; "never": 0. Exits 2
 * when malformed or outside 1 s .. 10 years. */
static long long duration_arg(cli_ctx *c, const char *flag)
{
    const char *v = cli_str(c, flag);
    if (!v || strcmp(v, "never") == 0) return 0;
    char *end = NULL;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    long long unit = 1;
    if (end && *end && !end[1]) {
        switch (*end) {
        case 's':
            unit = 1;
            break;
        case 'm':
            unit = 60;
            break;
        case 'h':
            unit = 3600;
            break;
        case 'd':
            unit = 86400;
            break;
        case 'w':
            unit = 7 * 86400;
            break;
        default:
            unit = 0;
        }
        end++;
    }
    if (errno || end == v || !end || *end || unit == 0 || n < 1 || n > 10LL * 366 * 86400 / unit)
        cli_usage_error(c,
                        "--%s: want a duration of 1 s to 10 years such as 30d, 12h, 45m, 90s, "
                        "2w (or never), got \"%s\"",
                        flag, v);
    return n * unit;
}

static int run_apikey_create(cli_ctx *c)
{
    pvg_role role;
    if (pvg_role_parse_operator(cli_str_req(c, "role"), &role) != PVG_OK)
        cli_usage_error(c, "--role: want admin or analyst, got \"%s\"", cli_str(c, "role"));
    double rate = cli_double(c, "rate", 100);
    if (!(rate >= 0)) cli_usage_error(c, "--rate: want 0 (unlimited) or a positive number");
    long long ttl = duration_arg(c, "expires");
    int rc = 0;
    pvg_store *s = cli_open_store(c, &rc);
    if (!s) return rc;
    char *cred = NULL;
    pvg_principal p;
    pvg_error err;
    pvg_error_clear(&err);
    pvg_status st =
        pvg_auth_apikey_create_ttl(s, role, cli_str(c, "label"), rate, ttl, &cred, &p, &err);
    if (st == PVG_OK) {
        char detail[128], when[32] = "never";
        if (p.expires_at) cli_utc_time(p.expires_at, when, sizeof when);
        snprintf(detail, sizeof detail, "API key %s created with role %s, expires %s", p.key_id,
                 pvg_role_name(role), when);
        pvg_audit_record ar = {0, "cli", "apikey_create", "", detail};
        st = pvg_audit_append(s, &ar, NULL, &err);
    }
    pvg_store_free(s);
    if (st != PVG_OK) {
        pvg_auth_credential_free(cred);
        return cli_fail("apikey create", st, &err);
    }
    print_cred(c, cred, &p, NULL);
    pvg_auth_credential_free(cred);
    return CLI_EXIT_OK;
}

typedef struct list_ctx {
    int json, n;
} list_ctx;

static const char *key_state(const pvg_auth_key_info *k)
{
    return k->revoked ? "revoked" : k->expired ? "expired" : "active";
}

static int list_key(void *ctx, const pvg_auth_key_info *k)
{
    list_ctx *x = ctx;
    char created[32], expires[32] = "never";
    cli_utc_time(k->created_at, created, sizeof created);
    if (k->expires_at) cli_utc_time(k->expires_at, expires, sizeof expires);
    if (x->json) {
        /* one object per line, fields in a fixed order (scripts/demo reads it) */
        printf("{\"id\":\"%s\",\"role\":\"%s\",\"label\":", k->key_id, pvg_role_name(k->role));
        cli_json_string(stdout, k->label);
        printf(",\"state\":\"%s\",\"created_at\":%lld,\"created\":\"%s\",\"expires_at\":%lld,"
               "\"expires\":\"%s\",\"rate_per_s\":%g}\n",
               key_state(k), (long long)k->created_at, created, (long long)k->expires_at, expires,
               k->rate_per_s);
    } else {
        if (x->n == 0)
            printf("%-16s  %-7s  %-7s  %-20s  %-20s  %s\n", "ID", "ROLE", "STATE", "CREATED",
                   "EXPIRES", "LABEL");
        printf("%-16s  %-7s  %-7s  %-20s  %-20s  %s\n", k->key_id, pvg_role_name(k->role),
               key_state(k), created, expires, k->label);
    }
    x->n++;
    return 0;
}

static int run_apikey_list(cli_ctx *c)
{
    int rc = 0;
    pvg_store *s = cli_open_store(c, &rc);
    if (!s) return rc;
    list_ctx x = {cli_bool(c, "json"), 0};
    pvg_error err;
    pvg_error_clear(&err);
    pvg_status st = pvg_auth_apikey_foreach(s, list_key, &x, &err);
    pvg_store_free(s);
    if (st != PVG_OK) return cli_fail("apikey list", st, &err);
    if (!x.json && x.n == 0) printf("no API keys (create one with privguide apikey create)\n");
    return CLI_EXIT_OK;
}

static int run_token_issue(cli_ctx *c)
{
    const char *user = cli_str_req(c, "user");
    long long ttl = cli_int_range(c, "ttl", 30LL * 86400, 1, 10LL * 365 * 86400);
    double rate = cli_double(c, "rate", 20);
    if (!(rate >= 0)) cli_usage_error(c, "--rate: want 0 (unlimited) or a positive number");
    int rc = 0;
    pvg_store *s = cli_open_store(c, &rc);
    if (!s) return rc;
    char *cred = NULL;
    pvg_principal p;
    pvg_error err;
    pvg_error_clear(&err);
    pvg_status st = pvg_auth_token_issue(s, user, ttl, rate, &cred, &p, &err);
    if (st == PVG_OK) {
        char subject[2 * PVG_PSEUDONYM_BYTES + 1], detail[96];
        pvg_audit_subject_of_user(s, user, subject);
        snprintf(detail, sizeof detail, "user token %s issued, ttl %lld s", p.key_id, ttl);
        pvg_audit_record ar = {0, "cli", "token_issue", subject, detail};
        st = pvg_audit_append(s, &ar, NULL, &err);
    }
    pvg_store_free(s);
    if (st != PVG_OK) {
        pvg_auth_credential_free(cred);
        return cli_fail("token issue", st, &err);
    }
    print_cred(c, cred, &p, user);
    pvg_auth_credential_free(cred);
    return CLI_EXIT_OK;
}

static int run_revoke(cli_ctx *c)
{
    const char *id = cli_pos(c, 0);
    int rc = 0;
    pvg_store *s = cli_open_store(c, &rc);
    if (!s) return rc;
    pvg_error err;
    pvg_error_clear(&err);
    pvg_status st = pvg_auth_revoke(s, id, &err);
    if (st == PVG_OK) {
        char detail[96];
        snprintf(detail, sizeof detail, "credential %.20s revoked", id);
        pvg_audit_record ar = {0, "cli", "credential_revoke", "", detail};
        st = pvg_audit_append(s, &ar, NULL, &err);
    }
    pvg_store_free(s);
    if (st != PVG_OK) return cli_fail("apikey revoke", st, &err);
    printf("revoked %s (running servers refuse it within 1 s)\n", id);
    return CLI_EXIT_OK;
}

static const cli_flag no_flags[] = {{0}};

static const cli_flag apikey_flags[] = {
    {"role", CLI_STR, "ROLE", "admin or analyst (required)"},
    {"label", CLI_STR, "TEXT", "a note kept with the key"},
    {"rate", CLI_DOUBLE, "N", "requests per second allowed (default 100; 0: unlimited)"},
    {"expires", CLI_STR, "DURATION",
     "the key expires after DURATION: 30d, 12h, 45m, 90s, 2w (default never)"},
    {"json", CLI_BOOL, NULL, "print JSON"},
    {0},
};

static const cli_flag list_flags[] = {
    {"json", CLI_BOOL, NULL,
     "one JSON object per key: id, role, label, state, created_at, created, expires_at, "
     "expires, rate_per_s"},
    {0},
};

static const cli_flag token_flags[] = {
    {"user", CLI_STR, "ID", "the shopper's external id (required)"},
    {"ttl", CLI_INT, "SECONDS", "validity (default 30 days)"},
    {"rate", CLI_DOUBLE, "N", "requests per second allowed (default 20; 0: unlimited)"},
    {"json", CLI_BOOL, NULL, "print JSON"},
    {0},
};

/* ---- audit ---- */

static const char *kind_name(pvg_audit_problem_kind k)
{
    switch (k) {
    case PVG_AUDIT_EDITED:
        return "edited";
    case PVG_AUDIT_REMOVED:
        return "removed";
    case PVG_AUDIT_REORDERED:
        return "reordered";
    case PVG_AUDIT_HEAD_MISMATCH:
        return "head_mismatch";
    case PVG_AUDIT_UNKEYED:
        return "unkeyed";
    }
    return "?";
}

static int run_audit_verify(cli_ctx *c)
{
    int rc = 0;
    pvg_store *s = cli_open_store(c, &rc);
    if (!s) return rc;
    pvg_audit_report rep;
    pvg_error err;
    pvg_error_clear(&err);
    const char *anchor = cli_str(c, "anchor");
    if (!anchor) anchor = cli_str(c, "expect-head");
    pvg_status st = pvg_audit_verify(s, anchor, &rep, &err);
    pvg_store_free(s);
    if (st != PVG_OK && st != PVG_ERR_CORRUPT) return cli_fail("audit verify", st, &err);
    if (cli_bool(c, "json")) {
        json_t *probs = json_array();
        for (int i = 0; i < rep.n_problems; i++)
            json_array_append_new(probs, json_pack("{s:s, s:I, s:I, s:s}", "kind",
                                                   kind_name(rep.problems[i].kind), "seq",
                                                   (json_int_t)rep.problems[i].seq, "other_seq",
                                                   (json_int_t)rep.problems[i].other_seq, "text",
                                                   rep.problems[i].text));
        json_t *o =
            json_pack("{s:b, s:I, s:I, s:I, s:s, s:I, s:I, s:I, s:o}", "ok", st == PVG_OK,
                      "entries", (json_int_t)rep.entries, "first_seq", (json_int_t)rep.first_seq,
                      "last_seq", (json_int_t)rep.last_seq, "head", rep.head_hex, "unkeyed",
                      (json_int_t)rep.unkeyed, "unkeyed_upto", (json_int_t)rep.unkeyed_upto,
                      "problems_total", (json_int_t)rep.problems_total, "problems", probs);
        char *t = json_dumps(o, JSON_COMPACT);
        printf("%s\n", t ? t : "{}");
        free(t);
        json_decref(o);
    } else if (st == PVG_OK) {
        printf("audit log intact: %lld entries (seq %lld..%lld), head %s\n", rep.entries,
               (long long)rep.first_seq, (long long)rep.last_seq,
               rep.head_hex[0] ? rep.head_hex : "(empty)");
        if (rep.unkeyed)
            printf(
                "  %lld older entries (up to seq %lld) were chained without a key, before the keys "
                "left the data dir; every later entry carries a MAC\n",
                rep.unkeyed, (long long)rep.unkeyed_upto);
        if (anchor) printf("  the anchored head is in place\n");
    } else {
        printf("audit log TAMPERED: %lld problem(s) in %lld entries\n", rep.problems_total,
               rep.entries);
        for (int i = 0; i < rep.n_problems; i++)
            printf("  %s: %s\n", kind_name(rep.problems[i].kind), rep.problems[i].text);
        if (rep.problems_total > rep.n_problems)
            printf("  ... and %lld more\n", rep.problems_total - rep.n_problems);
    }
    return st == PVG_OK ? CLI_EXIT_OK : CLI_EXIT_FAIL;
}

typedef struct show_ctx {
    int json;
} show_ctx;

static int show_entry(void *ctx, const pvg_audit_entry *e)
{
    show_ctx *sc = ctx;
    char when[32];
    cli_utc_time(e->ts, when, sizeof when);
    if (sc->json) {
        json_t *o = json_pack("{s:I, s:I, s:s, s:s, s:s, s:s, s:s}", "seq", (json_int_t)e->seq,
                              "ts", (json_int_t)e->ts, "time", when, "actor", e->actor, "action",
                              e->action, "subject", e->subject, "detail", e->detail);
        char *t = json_dumps(o, JSON_COMPACT);
        printf("%s\n", t ? t : "{}");
        free(t);
        json_decref(o);
    } else {
        printf("%6lld %s %-24s %-15s %-32s %s\n", (long long)e->seq, when, e->actor, e->action,
               e->subject, e->detail);
    }
    return 0;
}

static int run_audit_show(cli_ctx *c)
{
    int rc = 0;
    pvg_store *s = cli_open_store(c, &rc);
    if (!s) return rc;
    show_ctx sc = {cli_bool(c, "json")};
    pvg_error err;
    pvg_error_clear(&err);
    pvg_status st =
        pvg_audit_foreach(s, cli_int(c, "from", 0), cli_int(c, "limit", 0), show_entry, &sc, &err);
    pvg_store_free(s);
    if (st != PVG_OK) return cli_fail("audit show", st, &err);
    return CLI_EXIT_OK;
}

static int run_audit_head(cli_ctx *c)
{
    int rc = 0;
    pvg_store *s = cli_open_store(c, &rc);
    if (!s) return rc;
    pvg_audit_head_info h;
    pvg_error err;
    pvg_error_clear(&err);
    pvg_status st = pvg_audit_head(s, &h, &err);
    pvg_store_free(s);
    if (st != PVG_OK) return cli_fail("audit head", st, &err);
    if (cli_bool(c, "json")) {
        json_t *o = h.seq ? json_pack("{s:I, s:s, s:I, s:s, s:b}", "seq", (json_int_t)h.seq, "mac",
                                      h.mac_hex, "ts", (json_int_t)h.ts, "anchor", h.anchor,
                                      "keyed", h.keyed)
                          : json_pack("{s:I, s:n, s:n, s:n, s:b}", "seq", (json_int_t)0, "mac",
                                      "ts", "anchor", "keyed", 0);
        char *t = json_dumps(o, JSON_COMPACT);
        printf("%s\n", t ? t : "{}");
        free(t);
        json_decref(o);
    } else if (!h.seq) {
        printf("the audit log is empty\n");
    } else {
        char when[32];
        cli_utc_time(h.ts, when, sizeof when);
        printf("seq %lld\nmac %s\ntime %s (%lld)\nanchor %s\n", (long long)h.seq, h.mac_hex, when,
               (long long)h.ts, h.anchor);
        if (!h.keyed) printf("warning: the head carries no MAC under this store's key\n");
    }
    return CLI_EXIT_OK;
}

static const cli_flag head_flags[] = {
    {"json", CLI_BOOL, NULL, "print JSON: {seq, mac, ts, anchor, keyed}"},
    {0},
};

static const cli_flag verify_flags[] = {
    {"anchor", CLI_STR, "SEQ:MAC",
     "a head printed by an earlier `audit head` (or verify): "
     "detects a truncated tail"},
    {"expect-head", CLI_STR, "MAC", "the same as --anchor with the MAC alone (older form)"},
    {"json", CLI_BOOL, NULL, "print JSON"},
    {0},
};

static const cli_flag show_flags[] = {
    {"from", CLI_INT, "SEQ", "first entry to show"},
    {"limit", CLI_INT, "N", "at most N entries"},
    {"json", CLI_BOOL, NULL, "print JSON lines"},
    {0},
};

const cli_command cli_cmds_server[] = {
    {"serve", NULL, 0, 0, "run the HTTP API and the web pages",
     "Serves the JSON API under /v1, /healthz, /metrics, /v1/openapi.json and the pages /shop,\n"
     "/portal and /dashboard. The model file is watched and reloaded atomically. SIGTERM or\n"
     "SIGINT stop accepting connections, drain requests in flight and exit 0.",
     serve_flags, run_serve},
    {"apikey create", NULL, 0, 0, "create an operator API key (printed once)",
     "Roles: admin (everything) and analyst (aggregates, item lists, metrics; no personal\n"
     "data). The key is stored only as a hash. Send it as \"Authorization: Bearer <key>\".\n"
     "With --expires the server refuses it from then on (401 naming the expiry).",
     apikey_flags, run_apikey_create},
    {"apikey list", NULL, 0, 0, "list the API keys (never their secrets)",
     "One line per key, oldest first: id, role, state (active, expired, revoked), created and\n"
     "expiry times (ISO-8601 UTC), label. User tokens are not listed.",
     list_flags, run_apikey_list},
    {"apikey revoke", "ID", 1, 1, "revoke an API key or a user token by its id",
     "ID is the 16 hex digits after pvgk_ or pvgt_ (printed by apikey create --json and\n"
     "token issue --json, and shown as the actor of audit entries).",
     no_flags, run_revoke},
    {"token issue", NULL, 0, 0, "issue a shopper's token (printed once)",
     "A token reaches only its own user's resources: recommendations, data export, consent\n"
     "and erasure. Stored only as a hash, bound to the user's pseudonym.",
     token_flags, run_token_issue},
    {"audit verify", NULL, 0, 0, "check the MAC chain of the audit log",
     "Exit 0 when intact; exit 1 naming every edited, removed, reordered or unkeyed entry, and a\n"
     "truncated tail when --anchor names a head kept elsewhere. The MACs are keyed by the key\n"
     "file: entries deleted and the rest re-chained without it are found.",
     verify_flags, run_audit_verify},
    {"audit head", NULL, 0, 0, "print the head of the audit log (seq, MAC, time) for anchoring",
     "Keep the anchor line (SEQ:MAC) somewhere the data dir's users cannot change (a ticket,\n"
     "another machine); `audit verify --anchor SEQ:MAC` then detects entries removed after it.",
     head_flags, run_audit_head},
    {"audit show", NULL, 0, 0, "print audit log entries",
     "One line per entry: seq, time (ISO-8601 UTC), actor, action, subject, detail. --json\n"
     "keeps the Unix time as \"ts\" beside \"time\".",
     show_flags, run_audit_show},
    {0},
};
