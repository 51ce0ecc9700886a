/*
 * audit_user.c - benchmark of the shopper's view of the audit log
 * (pvg_access_audit_of_user, GET /v1/users/{id}/audit): a store whose log
 * holds `entries` entries about `shoppers` shoppers, one of whom ("me") has
 * `own` of them spread evenly through the log; times reading me's newest
 * 100 entries (each read also appends its own "audit_read" entry, as the
 * route does). Wall time: the read is I/O-bound. Prints one JSON object.
 *
 * Usage: bench_audit_user [entries=1000000] [shoppers=1000] [own=100] [reads=7]
 * (the store is SQLite in a temporary dir, or PostgreSQL when
 * $PRIVGUIDE_DATABASE_URL is set)
 */
#include <privguide/access.h>
#include <privguide/audit.h>
#include <privguide/store.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double wall_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int count_view(void *ctx, const pvg_access_audit_view *v)
{
    (void)v;
    ++*(long long *)ctx;
    return 0;
}

static int fail(const char *what, const pvg_error *err)
{
    fprintf(stderr, "bench_audit_user: %s: %s\n", what, err ? err->text : "failed");
    return 1;
}

int main(int argc, char **argv)
{
    long long entries = argc > 1 ? atoll(argv[1]) : 1000000;
    int shoppers = argc > 2 ? atoi(argv[2]) : 1000;
    long long own = argc > 3 ? atoll(argv[3]) : 100;
    int reads = argc > 4 ? atoi(argv[4]) : 7;
    if (entries < 1 || shoppers < 2 || own < 1 || own > entries || reads < 1 || reads > 100) {
        fprintf(stderr, "usage: bench_audit_user [entries] [shoppers>=2] [own<=entries] "
                        "[reads 1..100]\n");
        return 2;
    }
    char root[] = "/tmp/pvg-bench-audit-XXXXXX", dir[600], keys[600];
    if (!mkdtemp(root)) return fail("mkdtemp", NULL);
    snprintf(dir, sizeof dir, "%s/store", root);
    snprintf(keys, sizeof keys, "%s/keys", root);
    setenv("PRIVGUIDE_KEY_FILE", keys, 1);
    pvg_error err;
    pvg_error_clear(&err);
    pvg_store *s = NULL;
    if (pvg_store_init(dir, NULL, &err) != PVG_OK || pvg_store_open(dir, &s, &err) != PVG_OK)
        return fail("store", &err);
    pvg_consent c = {1, 1};
    if (pvg_store_consent_set(s, "me", &c, &err) != PVG_OK) return fail("consent", &err);

    /* subjects: "me" and shoppers - 1 others */
    char(*subj)[2 * PVG_PSEUDONYM_BYTES + 1] = calloc((size_t)shoppers, sizeof *subj);
    if (!subj) return fail("out of memory", NULL);
    for (int i = 0; i < shoppers; i++) {
        char ext[32];
        if (i == 0)
            snprintf(ext, sizeof ext, "me");
        else
            snprintf(ext, sizeof ext, "shopper-%d", i);
        pvg_audit_subject_of_user(s, ext, subj[i]);
    }
    enum { BATCH = 10000 };
    pvg_audit_record *recs = calloc(BATCH, sizeof *recs);
    if (!recs) return fail("out of memory", NULL);
    long long stride = entries / own, mine = 0;
    uint64_t x = 12345;
    double t0 = wall_s();
    for (long long done = 0; done < entries;) {
        size_t n = 0;
        for (; n < BATCH && done < entries; n++, done++) {
            x = x * 6364136223846793005ULL + 1442695040888963407ULL;
            int who = done % stride == 0 && mine < own ? 0 : 1 + (int)((x >> 33) % (shoppers - 1));
            if (who == 0) mine++;
            recs[n].ts = 1700000000 + done / 100;
            recs[n].actor = who == 0 ? "token:0123456789abcdef" : "key:fedcba9876543210";
            recs[n].action = "recommend";
            recs[n].subject = subj[who];
            recs[n].detail = "purpose=recommend outcome=allowed";
        }
        if (pvg_audit_append_many(s, recs, n, &err) != PVG_OK) return fail("append", &err);
    }
    double fill = wall_s() - t0;

    pvg_access g;
    pvg_access_init(&g, s, "token:0123456789abcdef");
    double *ms = calloc((size_t)reads, sizeof *ms);
    if (!ms) return fail("out of memory", NULL);
    long long total = 0, shown = 0;
    for (int r = 0; r < reads; r++) {
        shown = 0;
        double a = wall_s();
        if (pvg_access_audit_of_user(&g, "me", 100, count_view, &shown, &total, &err) != PVG_OK)
            return fail("audit of user", &err);
        ms[r] = (wall_s() - a) * 1e3;
    }
    double first = ms[0];
    qsort(ms, (size_t)reads, sizeof *ms, cmp_double);
    /* the reads' own entries are about "me" too */
    if (total != mine + reads || shown != (total < 100 ? total : 100))
        return fail("wrong count of entries", NULL);
    printf("{\"bench\":\"audit_user\",\"backend\":\"%s\",\"entries\":%lld,\"shoppers\":%d,"
           "\"own_entries\":%lld,\"fill_seconds\":%.2f,\"reads\":%d,"
           "\"read_ms\":{\"first\":%.3f,\"min\":%.3f,\"median\":%.3f,\"max\":%.3f}}\n",
           getenv("PRIVGUIDE_DATABASE_URL") && *getenv("PRIVGUIDE_DATABASE_URL") ? "postgres"
                                                                                 : "sqlite",
           entries, shoppers, mine, fill, reads, first, ms[0], ms[reads / 2], ms[reads - 1]);
    free(ms);
    free(recs);
    free(subj);
    pvg_store_free(s);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (system(cmd) != 0) fprintf(stderr, "bench_audit_user: could not remove %s\n", root);
    return 0;
}
