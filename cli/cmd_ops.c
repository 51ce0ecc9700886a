/*
 * cmd_ops.c - operating a deployment: backup, restore, doctor
 * (docs/deploy.md).
 */
#include "cli.h"

#include <privguide/backup.h>
#include <privguide/doctor.h>

#include <pwd.h>
#include <stdio.h>
#include <string.h>

static int run_backup(cli_ctx *c)
{
    pvg_error err;
    pvg_error_clear(&err);
    pvg_backup_info info;
    const char *out = cli_str(c, "out"), *keys_out = cli_str(c, "keys-out");
    if (!out && !keys_out)
        cli_usage_error(c, "--out: give the data backup's file (and --keys-out)");
    pvg_status st = pvg_store_backup(cli_data_dir(c), out, keys_out, &info, &err);
    if (st != PVG_OK) return cli_fail("backup", st, &err);
    if (cli_bool(c, "json")) {
        printf("{\"out\":");
        if (out)
            cli_json_string(stdout, out);
        else
            printf("null");
        printf(",\"keys_out\":");
        if (keys_out)
            cli_json_string(stdout, keys_out);
        else
            printf("null");
        printf(",\"store_id\":\"%s\",\"files\":%d,\"bytes\":%lld,\"key_file\":false}\n",
               info.store_id, info.files, info.bytes);
    } else {
        printf("backup of store %s: %s%s%s%s (%d files, %lld bytes; never the key file)\n",
               info.store_id, out ? "data in " : "", out ? out : "",
               keys_out ? (out ? ", key store in " : "key store in ") : "",
               keys_out ? keys_out : "", info.files, info.bytes);
        printf(
            "  The data backup holds no key; the key-store backup holds wrapped keys: keep it no\n"
            "  longer than your erasure deadline. Restoring needs both and the key file.\n");
    }
    return CLI_EXIT_OK;
}

static int run_restore(cli_ctx *c)
{
    if (!cli_has(c, "data-dir"))
        cli_usage_error(c, "--data-dir: give the new data dir to restore into");
    pvg_error err;
    pvg_error_clear(&err);
    pvg_backup_info info;
    pvg_status st = pvg_store_restore(cli_pos(c, 0), cli_str_req(c, "keys"), cli_data_dir(c),
                                      cli_str(c, "key-file"), &info, &err);
    if (st != PVG_OK) return cli_fail("restore", st, &err);
    if (cli_bool(c, "json")) {
        printf("{\"data_dir\":");
        cli_json_string(stdout, cli_data_dir(c));
        printf(",\"store_id\":\"%s\",\"files\":%d,\"bytes\":%lld,\"suppressed\":%lld,\"erased_"
               "again\":%lld}\n",
               info.store_id, info.files, info.bytes, info.suppressed, info.erased_again);
    } else {
        printf("restored store %s into %s (%d files, %lld bytes)\n"
               "  suppression list: %lld erased shoppers; %lld found still present (or without a "
               "key) and erased again\n",
               info.store_id, cli_data_dir(c), info.files, info.bytes, info.suppressed,
               info.erased_again);
    }
    return CLI_EXIT_OK;
}

static int run_doctor(cli_ctx *c)
{
    pvg_doctor_options o;
    memset(&o, 0, sizeof o);
    o.data_dir = cli_data_dir(c);
    o.key_file = cli_str(c, "key-file");
    o.model_path = cli_str(c, "model");
    o.bind = cli_str(c, "bind");
    o.port = cli_bool(c, "no-port") ? -1 : (int)cli_int_range(c, "port", 8080, 1, 65535);
    const char *user = cli_str(c, "service-user");
    if (user) {
        struct passwd *pw = getpwnam(user);
        if (!pw) cli_usage_error(c, "--service-user: no user \"%s\" on this system", user);
        o.owner_uid = pw->pw_uid;
    }
    o.min_free_bytes = cli_int_range(c, "min-free-mb", 1024, 1, 1LL << 40) << 20;
    pvg_doctor_finding *f = NULL;
    size_t n = 0;
    int problems = 0;
    pvg_error err;
    pvg_error_clear(&err);
    pvg_status st = pvg_doctor_run(&o, &f, &n, &problems, &err);
    if (st != PVG_OK) return cli_fail("doctor", st, &err);
    if (cli_bool(c, "json")) {
        printf("{\"data_dir\":");
        cli_json_string(stdout, o.data_dir);
        printf(",\"problems\":%d,\"findings\":[", problems);
        for (size_t i = 0; i < n; i++) {
            printf("%s{\"check\":\"%s\",\"ok\":%s,\"what\":", i ? "," : "", f[i].check,
                   f[i].level == PVG_DOCTOR_OK ? "true" : "false");
            cli_json_string(stdout, f[i].what);
            printf(",\"fix\":");
            cli_json_string(stdout, f[i].fix);
            printf("}");
        }
        printf("]}\n");
    } else {
        for (size_t i = 0; i < n; i++) {
            printf("%-8s %-10s %s\n", f[i].level == PVG_DOCTOR_OK ? "ok" : "PROBLEM", f[i].check,
                   f[i].what);
            if (f[i].level != PVG_DOCTOR_OK) printf("%-8s %-10s fix: %s\n", "", "", f[i].fix);
        }
        printf("%d problem%s\n", problems, problems == 1 ? "" : "s");
    }
    pvg_doctor_finding_free(f);
    return problems ? CLI_EXIT_FAIL : CLI_EXIT_OK;
}

static const cli_flag doctor_flags[] = {
    {"model", CLI_STR, "FILE", "the model file serve uses (default <data dir>/model.pvgm)"},
    {"bind", CLI_STR, "ADDR", "the address serve binds (default 127.0.0.1)"},
    {"port", CLI_INT, "N", "the port serve uses: free, or privguide serving there (default 8080)"},
    {"no-port", CLI_BOOL, NULL, "skip the port check"},
    {"service-user", CLI_STR, "NAME",
     "the user serve runs as, who must own the data dir (default: this user)"},
    {"min-free-mb", CLI_INT, "N",
     "free space wanted on the data dir's file system (default 1024; and 5%)"},
    {"json", CLI_BOOL, NULL, "print JSON"},
    {0},
};

static const cli_flag backup_flags[] = {
    {"out", CLI_STR, "FILE",
     "the data backup to write (must not exist; written 0600; holds no key)"},
    {"keys-out", CLI_STR, "FILE", "the key-store backup to write (wrapped data keys; 0600)"},
    {"json", CLI_BOOL, NULL, "print JSON"},
    {0},
};
static const cli_flag restore_flags[] = {
    {"keys", CLI_STR, "FILE", "the key-store backup (backup --keys-out) of the same store"},
    {"json", CLI_BOOL, NULL, "print JSON"},
    {0},
};

const cli_command cli_cmds_ops[] = {
    {"backup", NULL, 0, 0,
     "write consistent backups of the data and of the key store (never the key file)",
     "The databases are copied as of one point in time while other processes (a running server)\n"
     "go on writing. --out gets the data (sealed events, catalog, ledger, audit, suppression "
     "list,\n"
     "policy.json, the data dir's model files) and no key of any kind; --keys-out gets the key\n"
     "store (each shopper's data key, wrapped under the master key). Keeping them apart is what\n"
     "lets an erasure reach backups: a destroyed key shreds the shopper in every data backup, and\n"
     "only key-store backups older than the erasure still hold it, so keep those no longer than\n"
     "your erasure deadline. The key file (pepper, master key) is never included. A PostgreSQL\n"
     "store is backed up with pg_dump (docs/deploy.md). docs/privacy.md, \"Backups\".",
     backup_flags, run_backup},
    {"restore", "FILE", 1, 1, "restore a data backup and a key-store backup into a new data dir",
     "--data-dir names the new data dir (created 0700; an existing one must be empty), --keys the\n"
     "key-store backup. Integrity hashes and manifests are checked before anything is written,\n"
     "the store is opened with its key file (--key-file or the default place for its store id),\n"
     "the backup's suppression list is applied again, and shoppers whose key the key store does\n"
     "not hold are removed (their records are shredded). A failed restore removes what it wrote.",
     restore_flags, run_restore},
    {"doctor", NULL, 0, 0, "check a deployment and say what to fix (exit 1 on any problem)",
     "Checks: the data dir (0700, owned by this user) and its files (0600; store.id and\n"
     "policy.json may be world-readable), the key file (outside the data dir, present, 0600),\n"
     "a privacy budget set, the model file present and readable, the port free or privguide\n"
     "serving on it, and free disk space. Each problem comes with its fix. Changes nothing.",
     doctor_flags, run_doctor},
    {0},
};
