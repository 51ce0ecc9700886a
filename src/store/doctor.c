/*
 * doctor.c - checks of a deployment (include/privguide/doctor.h): the data
 * dir's and files' permissions, the key file's place and mode, the budget,
 * the model file, the port and the free disk space.
 */
#include "store/backend.h"
#include "store/store_priv.h"

#include <privguide/doctor.h>
#include <privguide/model.h>
#include <privguide/server.h>
#include <privguide/store.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#define DOC_MAX 64

typedef struct doc {
    pvg_doctor_finding *f;
    size_t n;
    int problems;
    uid_t owner; /* who must own the data dir and its files */
} doc;

/* s quoted for a POSIX shell when it holds anything but safe characters
 * (a fix is a command an operator may paste: a file name must not run). */
static const char *shq(const char *s, char *buf, size_t cap)
{
    size_t i = 0;
    int safe = *s != 0;
    for (const char *p = s; *p && safe; p++)
        safe = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
               strchr("_./:@%+=,-", *p) != NULL;
    if (safe) return s;
    buf[i++] = '\'';
    for (const char *p = s; *p && i + 5 < cap; p++) {
        if (*p == '\'') {
            memcpy(buf + i, "'\\''", 4);
            i += 4;
        } else {
            buf[i++] = *p;
        }
    }
    buf[i++] = '\'';
    buf[i] = 0;
    return buf;
}
#define SHQ(s) shq((s), (char[8400]){0}, 8400)

static void add(doc *d, const char *check, pvg_doctor_level lv, const char *fix, const char *fmt,
                ...) PVG_PRINTF(5, 6);
static void add(doc *d, const char *check, pvg_doctor_level lv, const char *fix, const char *fmt,
                ...)
{
    if (d->n == DOC_MAX) return;
    pvg_doctor_finding *f = &d->f[d->n++];
    snprintf(f->check, sizeof f->check, "%s", check);
    f->level = lv;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(f->what, sizeof f->what, fmt, ap);
    va_end(ap);
    snprintf(f->fix, sizeof f->fix, "%s", lv == PVG_DOCTOR_OK || !fix ? "" : fix);
    if (lv == PVG_DOCTOR_PROBLEM) d->problems++;
}

static void check_data_dir(doc *d, const char *dir)
{
    struct stat sb;
    char fix[8400];
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        add(d, "data_dir", PVG_DOCTOR_PROBLEM,
            "create it with `privguide init --data-dir DIR`, or give the right --data-dir",
            "%s: %s", dir, errno ? strerror(errno) : "not a directory");
        return;
    }
    int bad = 0;
    if ((sb.st_mode & 077) != 0) {
        snprintf(fix, sizeof fix, "chmod 700 %s", SHQ(dir));
        add(d, "data_dir", PVG_DOCTOR_PROBLEM, fix,
            "%s is mode %03o: others can list or enter it (want 0700)", dir,
            (unsigned)(sb.st_mode & 0777));
        bad = 1;
    }
    if (sb.st_uid != d->owner) {
        snprintf(fix, sizeof fix, "chown -R %u %s (the user the service runs as)",
                 (unsigned)d->owner, SHQ(dir));
        add(d, "data_dir", PVG_DOCTOR_PROBLEM, fix,
            "%s is owned by uid %u, not by the service user (uid %u)", dir, (unsigned)sb.st_uid,
            (unsigned)d->owner);
        bad = 1;
    }
    if (!bad)
        add(d, "data_dir", PVG_DOCTOR_OK, NULL, "%s: mode 0700, owned by uid %u", dir,
            (unsigned)sb.st_uid);
}

/* Files of the data dir (and its model sub-directory): nothing readable by
 * others except store.id and policy.json (not secret), nothing writable by
 * them, everything owned by this user. */
static void check_files_in(doc *d, const char *dir, int *checked, int *bad)
{
    DIR *dd = opendir(dir);
    if (!dd) return;
    struct dirent *de;
    while ((de = readdir(dd)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
        char path[4096 + 256], fix[8400];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        struct stat sb;
        if (lstat(path, &sb) != 0) continue;
        if (S_ISDIR(sb.st_mode)) {
            if (strcmp(de->d_name, PVG_MODEL_SUBDIR) == 0) check_files_in(d, path, checked, bad);
            if ((sb.st_mode & 077) != 0) {
                snprintf(fix, sizeof fix, "chmod 700 %s", SHQ(path));
                add(d, "data_files", PVG_DOCTOR_PROBLEM, fix, "%s is mode %03o (want 0700)", path,
                    (unsigned)(sb.st_mode & 0777));
                (*bad)++;
            }
            continue;
        }
        if (!S_ISREG(sb.st_mode)) continue;
        (*checked)++;
        int public_ok =
            strcmp(de->d_name, PVG_STORE_ID_FILE) == 0 || strcmp(de->d_name, "policy.json") == 0;
        mode_t forbidden = public_ok ? 022 : 077;
        if ((sb.st_mode & forbidden) != 0) {
            snprintf(fix, sizeof fix, "chmod 600 %s", SHQ(path));
            add(d, "data_files", PVG_DOCTOR_PROBLEM, fix, "%s is mode %03o: %s (want 0600)", path,
                (unsigned)(sb.st_mode & 0777),
                public_ok ? "others can change it" : "others can read it");
            (*bad)++;
        } else if (sb.st_uid != d->owner) {
            snprintf(fix, sizeof fix, "chown %u %s", (unsigned)d->owner, SHQ(path));
            add(d, "data_files", PVG_DOCTOR_PROBLEM, fix,
                "%s is owned by uid %u, not by the service user (uid %u)", path,
                (unsigned)sb.st_uid, (unsigned)d->owner);
            (*bad)++;
        }
    }
    closedir(dd);
}

static void check_key_file(doc *d, const char *dir, const char *key_file)
{
    char path[4096], fix[8400];
    pvg_error e;
    pvg_error_clear(&e);
    const char *env_keys = getenv(PVG_ENV_KEYS);
    if (!key_file && env_keys && *env_keys) {
        add(d, "key_file", PVG_DOCTOR_OK, NULL, "the keys come from $%s (no key file)",
            PVG_ENV_KEYS);
        return;
    }
    char legacy[4096 + 32];
    snprintf(legacy, sizeof legacy, "%s/%s", dir, PVG_LEGACY_KEY_FILE);
    if (access(legacy, F_OK) == 0) {
        snprintf(fix, sizeof fix, "privguide keys move --data-dir %s --key-file PATH-OUTSIDE-IT",
                 SHQ(dir));
        add(d, "key_file", PVG_DOCTOR_PROBLEM, fix,
            "%s: the keys are inside the data dir (every copy or backup carries them)", legacy);
        return;
    }
    pvg_status st = pvg_store_key_file(dir, key_file, path, sizeof path, &e);
    if (st == PVG_ERR_INVALID) {
        add(d, "key_file", PVG_DOCTOR_PROBLEM,
            "move the key file out of the data dir (e.g. to /etc/privguide/ or "
            "~/.config/privguide/) and point "
            "--key-file or $PRIVGUIDE_KEY_FILE at it",
            "%s", e.text);
        return;
    }
    if (st != PVG_OK) {
        add(d, "key_file", PVG_DOCTOR_PROBLEM,
            "give the key file with --key-file or $PRIVGUIDE_KEY_FILE", "%s", e.text);
        return;
    }
    struct stat sb;
    if (stat(path, &sb) != 0) {
        add(d, "key_file", PVG_DOCTOR_PROBLEM,
            "restore the key file from its backup (without it no shopper's data can be read), or "
            "give its "
            "path with --key-file",
            "%s: %s", path, strerror(errno));
        return;
    }
    if ((sb.st_mode & 077) != 0) {
        snprintf(fix, sizeof fix, "chmod 600 %s", SHQ(path));
        add(d, "key_file", PVG_DOCTOR_PROBLEM, fix,
            "%s is mode %03o: others can read the keys (want 0600)", path,
            (unsigned)(sb.st_mode & 0777));
        return;
    }
    if (access(path, R_OK) != 0) {
        snprintf(fix, sizeof fix,
                 "make %s readable by uid %u (or pass it with systemd LoadCredential=)", SHQ(path),
                 (unsigned)geteuid());
        add(d, "key_file", PVG_DOCTOR_PROBLEM, fix, "%s: %s", path, strerror(errno));
        return;
    }
    add(d, "key_file", PVG_DOCTOR_OK, NULL, "%s: outside the data dir, mode 0600", path);
}

typedef struct ledger_seen {
    int total;
    double eps;
} ledger_seen;

static int ledger_row(void *ctx, const pvg_backend_ledger_row *r)
{
    ledger_seen *l = ctx;
    if (r->kind == PVG_LEDGER_ROW_TOTAL && !r->migrated) {
        l->total = 1;
        l->eps = r->epsilon;
    }
    return 0;
}

static void check_budget(doc *d, const char *dir)
{
    char fix[8400];
    snprintf(fix, sizeof fix,
             "privguide budget set --epsilon E --delta D --data-dir %s (docs/dp.md)", SHQ(dir));
    if (!pvg_sqlite_backend_exists(dir)) {
        add(d, "budget", PVG_DOCTOR_PROBLEM, "run `privguide init` first", "%s: no privguide store",
            dir);
        return;
    }
    pvg_backend *be = NULL;
    pvg_error e;
    pvg_error_clear(&e);
    ledger_seen l = {0, 0};
    pvg_status st = pvg_sqlite_backend_open(dir, &be, &e);
    if (st == PVG_OK) st = be->ops->ledger_read(be, ledger_row, &l, &e);
    if (be) be->ops->close(be);
    if (st != PVG_OK)
        add(d, "budget", PVG_DOCTOR_PROBLEM, "see the error; `privguide store check`",
            "cannot read the ledger: %s", e.text);
    else if (!l.total)
        add(d, "budget", PVG_DOCTOR_PROBLEM, fix,
            "no privacy budget is set: every DP release (popular list, queries) is refused");
    else
        add(d, "budget", PVG_DOCTOR_OK, NULL, "a total budget is set (epsilon %g)", l.eps);
}

static void check_model(doc *d, const char *dir, const char *model_path)
{
    char buf[4096], fix[8400];
    const char *path =
        model_path ? model_path : pvg_server_default_model_path(dir, buf, sizeof buf);
    snprintf(fix, sizeof fix,
             "privguide train --model ials --data-dir %s --out %s (serve reloads it)", SHQ(dir),
             SHQ(path));
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        add(d, "model", PVG_DOCTOR_PROBLEM, fix,
            "%s: %s: recommendations fall back to the DP popular list", path, strerror(errno));
        return;
    }
    char mg[8];
    int ok = pread(fd, mg, 8, 0) == 8 && memcmp(mg, "PVGMODL", 8) == 0;
    close(fd);
    if (!ok)
        add(d, "model", PVG_DOCTOR_PROBLEM, fix, "%s is not a privguide model file", path);
    else
        add(d, "model", PVG_DOCTOR_OK, NULL, "%s: present and readable", path);
}

static void check_port(doc *d, const char *bind_addr, int port)
{
    char fix[8400];
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, bind_addr, &a.sin_addr) != 1) {
        add(d, "port", PVG_DOCTOR_PROBLEM, "give an IPv4 address with --bind",
            "%s: not an IPv4 address", bind_addr);
        return;
    }
    struct sockaddr_in ca = a;
    if (a.sin_addr.s_addr == htonl(INADDR_ANY)) ca.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0) {
        add(d, "port", PVG_DOCTOR_PROBLEM, "see the error", "socket: %s", strerror(errno));
        return;
    }
    if (connect(s, (struct sockaddr *)&ca, sizeof ca) == 0) {
        /* something listens: is it privguide? */
        static const char req[] = "GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n";
        char resp[2048];
        size_t got = 0;
        int okw = write(s, req, sizeof req - 1) == (ssize_t)(sizeof req - 1);
        struct pollfd pf = {.fd = s, .events = POLLIN};
        while (okw && got < sizeof resp - 1 && poll(&pf, 1, 3000) > 0) {
            ssize_t r = read(s, resp + got, sizeof resp - 1 - got);
            if (r <= 0) break;
            got += (size_t)r;
        }
        resp[got] = 0;
        close(s);
        if (strstr(resp, "\"status\"") && strstr(resp, "\"model\""))
            add(d, "port", PVG_DOCTOR_OK, NULL, "%s:%d: privguide is serving (/healthz answers)",
                bind_addr, port);
        else {
            snprintf(fix, sizeof fix,
                     "stop what listens on %s:%d (ss -ltnp 'sport = :%d'), or run serve on another "
                     "--port",
                     bind_addr, port, port);
            add(d, "port", PVG_DOCTOR_PROBLEM, fix,
                "%s:%d is taken by something that is not privguide serve", bind_addr, port);
        }
        return;
    }
    close(s);
    s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    if (s >= 0) setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (s >= 0 && bind(s, (struct sockaddr *)&a, sizeof a) == 0) {
        add(d, "port", PVG_DOCTOR_OK, NULL, "%s:%d is free for serve", bind_addr, port);
    } else {
        snprintf(fix, sizeof fix, "free %s:%d or run serve on another --port", bind_addr, port);
        add(d, "port", PVG_DOCTOR_PROBLEM, fix, "%s:%d cannot be bound: %s", bind_addr, port,
            strerror(errno));
    }
    if (s >= 0) close(s);
}

static void check_disk(doc *d, const char *dir, long long min_free)
{
    struct statvfs v;
    if (statvfs(dir, &v) != 0) {
        add(d, "disk", PVG_DOCTOR_PROBLEM, "see the error", "%s: statvfs: %s", dir,
            strerror(errno));
        return;
    }
    long long avail = (long long)v.f_bavail * (long long)v.f_frsize;
    long long size = (long long)v.f_blocks * (long long)v.f_frsize;
    double pct = size > 0 ? 100.0 * (double)avail / (double)size : 0;
    if (avail < min_free || pct < 5.0)
        add(d, "disk", PVG_DOCTOR_PROBLEM,
            "free space on that file system, or move the data dir to a larger one (ingest, erasure "
            "checkpoints and "
            "backups need room)",
            "%s: %.1f MiB free (%.1f%%), want at least %.1f MiB and 5%%", dir,
            (double)avail / 1048576.0, pct, (double)min_free / 1048576.0);
    else
        add(d, "disk", PVG_DOCTOR_OK, NULL, "%s: %.1f MiB free (%.1f%%)", dir,
            (double)avail / 1048576.0, pct);
}

pvg_status pvg_doctor_run(const pvg_doctor_options *o, pvg_doctor_finding **out, size_t *n,
                          int *problems, pvg_error *err)
{
    *out = NULL;
    *n = 0;
    if (problems) *problems = 0;
    if (!o || !o->data_dir || !*o->data_dir)
        return pvg_error_set(err, PVG_ERR_INVALID, "doctor: data_dir: required");
    doc d = {calloc(DOC_MAX, sizeof(pvg_doctor_finding)), 0, 0,
             o->owner_uid > 0 ? (uid_t)o->owner_uid : geteuid()};
    if (!d.f) return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    check_data_dir(&d, o->data_dir);
    int checked = 0, bad = 0;
    check_files_in(&d, o->data_dir, &checked, &bad);
    if (!bad)
        add(&d, "data_files", PVG_DOCTOR_OK, NULL, "%d files: none readable or writable by others",
            checked);
    check_key_file(&d, o->data_dir, o->key_file);
    check_budget(&d, o->data_dir);
    check_model(&d, o->data_dir, o->model_path);
    if (o->port >= 0) check_port(&d, o->bind ? o->bind : "127.0.0.1", o->port ? o->port : 8080);
    check_disk(&d, o->data_dir, o->min_free_bytes > 0 ? o->min_free_bytes : (1LL << 30));
    *out = d.f;
    *n = d.n;
    if (problems) *problems = d.problems;
    return PVG_OK;
}

void pvg_doctor_finding_free(pvg_doctor_finding *f)
{
    free(f);
}
