/*
 * cmd_monitor.c - access monitoring from the command line: the stored
 * alerts, acknowledging one, an offline scan of the stored audit log and
 * ledger, and suspending or resuming a credential (include/privguide/
 * monitor.h, docs/monitor.md).
 */
#include "cli.h"

#include <privguide/monitor.h>
#include <privguide/store.h>

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct list_ctx {
    int json;
    json_t *arr;
    long long n;
} list_ctx;

static int list_one(void *ctx, const pvg_monitor_alert *a)
{
    list_ctx *lc = ctx;
    lc->n++;
    if (lc->json) {
        char *j = pvg_monitor_alert_json(a);
        json_t *o = j ? json_loads(j, 0, NULL) : NULL;
        free(j);
        if (o) json_array_append_new(lc->arr, o);
        return 0;
    }
    char when[32];
    cli_utc_time(a->opened, when, sizeof when);
    printf("%4lld %s %-8s %-15s %-22s %-12s %-12s %s\n", (long long)a->id, when, a->severity,
           pvg_monitor_rule_name(a->rule), a->credential[0] ? a->credential : "-",
           a->acknowledged ? "acknowledged" : "open", pvg_monitor_action_name(a->action),
           a->summary);
    printf("     evidence (audit seq):");
    for (size_t i = 0; i < a->n_evidence; i++)
        printf(" %lld", (long long)a->evidence[i]);
    printf("%s\n", a->n_evidence ? "" : " none (request observations)");
    return 0;
}

static int run_alerts(cli_ctx *c)
{
    int rc = 0;
    pvg_store *s = cli_open_store(c, &rc);
    if (!s) return rc;
    list_ctx lc = {cli_bool(c, "json"), json_array(), 0};
    pvg_error err;
    pvg_error_clear(&err);
    pvg_status st = pvg_monitor_alerts_foreach(s, cli_bool(c, "all"), list_one, &lc, &err);
    pvg_store_free(s);
    if (st != PVG_OK) {
        json_decref(lc.arr);
        return cli_fail("monitor alerts", st, &err);
    }
    if (lc.json) {
        json_t *o = json_pack("{s:o}", "alerts", lc.arr);
        char *t = json_dumps(o, JSON_COMPACT);
        printf("%s\n", t ? t : "{}");
        free(t);
        json_decref(o);
    } else {
        json_decref(lc.arr);
        if (!lc.n) printf(cli_bool(c, "all") ? "no alerts\n" : "no open alerts\n");
    }
    return CLI_EXIT_OK;
}

static int run_ack(cli_ctx *c)
{
    const char *v = cli_pos(c, 0);
    char *end = NULL;
    errno = 0;
    long long id = strtoll(v, &end, 10);
    if (errno || end == v || *end || id <= 0)
        cli_usage_error(c, "ID: want a positive alert id, got \"%.40s\"", v);
    int rc = 0;
    pvg_store *s = cli_open_store(c, &rc);
    if (!s) return rc;
    pvg_error err;
    pvg_error_clear(&err);
    pvg_status st = pvg_monitor_alert_ack(s, id, "cli", &err);
    pvg_store_free(s);
    if (st != PVG_OK) return cli_fail("monitor ack", st, &err);
    printf("alert %lld acknowledged\n", id);
    return CLI_EXIT_OK;
}

static int run_scan(cli_ctx *c)
{
    int rc = 0;
    pvg_store *s = cli_open_store(c, &rc);
    if (!s) return rc;
    pvg_monitor_scan_report rep;
    pvg_error err;
    pvg_error_clear(&err);
    pvg_status st = pvg_monitor_scan(s, NULL, &rep, &err);
    pvg_store_free(s);
    if (st != PVG_OK) return cli_fail("monitor scan", st, &err);
    if (cli_bool(c, "json")) {
        json_t *by = json_object();
        for (int r = 0; r < PVG_MON_N_RULES; r++)
            json_object_set_new(by, pvg_monitor_rule_name((pvg_monitor_rule)r),
                                json_integer(rep.by_rule[r]));
        json_t *o = json_pack("{s:I, s:I, s:I, s:I, s:o}", "entries", (json_int_t)rep.entries,
                              "charges", (json_int_t)rep.charges, "raised", (json_int_t)rep.raised,
                              "new", (json_int_t)rep.stored, "by_rule", by);
        char *t = json_dumps(o, JSON_COMPACT);
        printf("%s\n", t ? t : "{}");
        free(t);
        json_decref(o);
    } else {
        printf("scanned %lld audit entries and %lld budget charges: %lld alert(s) raised, %lld "
               "new\n",
               rep.entries, rep.charges, rep.raised, rep.stored);
        for (int r = 0; r < PVG_MON_N_RULES; r++)
            if (rep.by_rule[r])
                printf("  %-16s %lld\n", pvg_monitor_rule_name((pvg_monitor_rule)r),
                       rep.by_rule[r]);
    }
    return CLI_EXIT_OK;
}

static int run_suspend_resume(cli_ctx *c, int suspend)
{
    int rc = 0;
    pvg_store *s = cli_open_store(c, &rc);
    if (!s) return rc;
    pvg_error err;
    pvg_error_clear(&err);
    const char *id = cli_pos(c, 0);
    const char *reason = cli_str(c, "reason");
    pvg_status st = suspend
                        ? pvg_monitor_suspend(s, id, "cli", reason ? reason : "by an admin", &err)
                        : pvg_monitor_resume(s, id, "cli", &err);
    pvg_store_free(s);
    if (st != PVG_OK) return cli_fail(suspend ? "monitor suspend" : "monitor resume", st, &err);
    printf("credential %s %s\n", id, suspend ? "suspended" : "resumed");
    return CLI_EXIT_OK;
}

static int run_suspend(cli_ctx *c)
{
    return run_suspend_resume(c, 1);
}

static int run_resume(cli_ctx *c)
{
    return run_suspend_resume(c, 0);
}

static const cli_flag alerts_flags[] = {
    {"json", CLI_BOOL, NULL,
     "print JSON: {\"alerts\": [...]} as GET /v1/admin/alerts, with count and threshold"},
    {"all", CLI_BOOL, NULL, "acknowledged alerts too"},
    {0},
};

static const cli_flag scan_flags[] = {
    {"json", CLI_BOOL, NULL, "print JSON"},
    {0},
};

static const cli_flag suspend_flags[] = {
    {"reason", CLI_STR, "TEXT", "why (kept with the suspension and in the audit log)"},
    {0},
};

static const cli_flag no_flags[] = {{0}};

const cli_command cli_cmds_monitor[] = {
    {"monitor alerts", NULL, 0, 0, "list the alerts of access monitoring",
     "Open alerts, oldest first: id, time (UTC), severity, rule, credential, state, action,\n"
     "summary, and the audit entries (seq) that are its evidence. See docs/monitor.md.",
     alerts_flags, run_alerts},
    {"monitor ack", "ID", 1, 1, "acknowledge an alert (audited)", NULL, no_flags, run_ack},
    {"monitor scan", NULL, 0, 0, "evaluate the monitoring rules over the stored audit log",
     "Replays the whole audit log and the budget ledger through the rules, in time order, and\n"
     "stores the alerts raised (an alert already stored is not stored twice). A scan acts on\n"
     "no credential. Failed authentications and client addresses are seen only by a running\n"
     "server: their rules need `serve`.",
     scan_flags, run_scan},
    {"monitor suspend", "ID", 1, 1, "suspend a credential (API key or token id; audited)",
     "Every server on this data dir refuses it (403) until `monitor resume ID`.", suspend_flags,
     run_suspend},
    {"monitor resume", "ID", 1, 1, "lift the suspension of a credential (audited)", NULL, no_flags,
     run_resume},
    {0},
};
