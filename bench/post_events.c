/*
 * bench/post_events.c - the write path of POST /v1/events for a heavy
 * shopper: a shopper with 100,000 prior events (spread over many days and
 * items), then POSTs of 1,000 new events for that shopper through
 * pvg_store_events_put, the call the server's handler makes for a request.
 * Reports per-POST wall milliseconds (p50, max) and a final duplicate POST
 * (every event found in the duplicate index). Prints one JSON object.
 *
 * usage: bench_post_events [--prior N] [--posts N] [--batch N]
 * Target: < 100 ms per POST of 1,000 events (docs/store.md).
 */
#include <privguide/store.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Fills n events for `user`, event k of the series at ts0 - k * 37 s, items
 * over a 5,000-item catalog. */
static void fill(pvg_event *ev, pvg_event_in *in, char (*items)[16], size_t n, long k0, int64_t ts0,
                 const char *user)
{
    for (size_t i = 0; i < n; i++) {
        long k = k0 + (long)i;
        memset(&ev[i], 0, sizeof ev[i]);
        ev[i].type = k % 5 == 0 ? PVG_EVENT_PURCHASE : PVG_EVENT_VIEW;
        snprintf(items[i], sizeof items[i], "sku-%ld", (k * 7919) % 5000);
        ev[i].item = items[i];
        ev[i].ts = ts0 - (int64_t)k * 37;
        if (ev[i].type == PVG_EVENT_PURCHASE) {
            ev[i].quantity = 1 + k % 3;
            ev[i].fields = PVG_FIELD_QUANTITY;
        }
        in[i] = (pvg_event_in){user, &ev[i], NULL, (long)i};
    }
}

int main(int argc, char **argv)
{
    long prior = 100000, posts = 20, batch = 1000;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--prior") == 0)
            prior = atol(argv[i + 1]);
        else if (strcmp(argv[i], "--posts") == 0)
            posts = atol(argv[i + 1]);
        else if (strcmp(argv[i], "--batch") == 0)
            batch = atol(argv[i + 1]);
        else {
            fprintf(stderr, "usage: bench_post_events [--prior N] [--posts N] [--batch N]\n");
            return 2;
        }
    }
    if (prior < 0 || posts < 1 || batch < 1 || batch > PVG_EVENTS_PER_USER_MAX) {
        fprintf(stderr, "bench_post_events: want --prior >= 0, --posts >= 1, 1 <= --batch <= %d\n",
                PVG_EVENTS_PER_USER_MAX);
        return 2;
    }
    char root[] = "/tmp/pvg-bench-post-XXXXXX";
    if (!mkdtemp(root)) return 1;
    char dir[600];
    snprintf(dir, sizeof dir, "%s/store", root);
    pvg_error err;
    pvg_error_clear(&err);
    pvg_store *s = NULL;
    if (pvg_store_init(dir, NULL, &err) != PVG_OK || pvg_store_open(dir, &s, &err) != PVG_OK) {
        fprintf(stderr, "bench_post_events: %s\n", err.text);
        return 1;
    }
    const char *user = "heavy-shopper-1";
    pvg_event *ev = calloc((size_t)batch, sizeof *ev);
    pvg_event_in *in = calloc((size_t)batch, sizeof *in);
    pvg_event_out *out = calloc((size_t)batch, sizeof *out);
    char(*items)[16] = calloc((size_t)batch, sizeof *items);
    double *ms = calloc((size_t)posts, sizeof *ms);
    if (!ev || !in || !out || !items || !ms) return 1;
    /* the prior events, in calls of `batch` (spread over ~43 days) */
    int64_t ts0 = pvg_store_now(s) - 60;
    double t0 = wall_ms();
    long done = 0;
    int rc = 0;
    while (done < prior) {
        size_t n = (size_t)(prior - done < batch ? prior - done : batch);
        fill(ev, in, items, n, done, ts0, user);
        long long stored = 0;
        if (pvg_store_events_put(s, in, n, out, &stored, NULL, &err) != PVG_OK ||
            stored != (long long)n) {
            fprintf(stderr, "bench_post_events: prior events: %s (stored %lld of %zu)\n", err.text,
                    stored, n);
            rc = 1;
            goto done;
        }
        done += (long)n;
    }
    double prior_ms = wall_ms() - t0;
    /* the measured POSTs: new events (later timestamps, same shopper) */
    for (long p = 0; p < posts; p++) {
        fill(ev, in, items, (size_t)batch, -(p + 1) * batch, ts0, user);
        long long stored = 0;
        double a = wall_ms();
        pvg_status st = pvg_store_events_put(s, in, (size_t)batch, out, &stored, NULL, &err);
        ms[p] = wall_ms() - a;
        if (st != PVG_OK || stored != batch) {
            fprintf(stderr, "bench_post_events: post %ld: %s (stored %lld)\n", p, err.text, stored);
            rc = 1;
            goto done;
        }
    }
    /* the last POST again: every event is a duplicate */
    long long dups = 0, stored = 0;
    double a = wall_ms();
    if (pvg_store_events_put(s, in, (size_t)batch, out, &stored, &dups, &err) != PVG_OK) {
        fprintf(stderr, "bench_post_events: duplicate post: %s\n", err.text);
        rc = 1;
        goto done;
    }
    double dup_ms = wall_ms() - a;
    pvg_store_counts c;
    if (pvg_store_counts_get(s, &c, &err) != PVG_OK) {
        rc = 1;
        goto done;
    }
    double sum = 0;
    for (long p = 0; p < posts; p++)
        sum += ms[p];
    double first = ms[0], last = ms[posts - 1];
    qsort(ms, (size_t)posts, sizeof *ms, cmp_double);
    printf(
        "{\"prior_events\":%ld,\"posts\":%ld,\"events_per_post\":%ld,\"post_ms_p50\":%.2f,"
        "\"post_ms_max\":%.2f,\"post_ms_mean\":%.2f,\"post_ms_first\":%.2f,\"post_ms_last\":%.2f,"
        "\"duplicate_post_ms\":%.2f,\"duplicates_found\":%lld,\"store_events\":%lld,"
        "\"prior_load_s\":%.2f,\"target_ms\":100,\"note\":\"wall ms per pvg_store_events_put "
        "call (the POST /v1/events write path), one shopper\"}\n",
        prior, posts, batch, ms[posts / 2], ms[posts - 1], sum / (double)posts, first, last, dup_ms,
        dups, c.events, prior_ms / 1e3);
done:
    pvg_store_free(s);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (system(cmd) != 0) fprintf(stderr, "bench_post_events: could not remove %s\n", root);
    free(ev);
    free(in);
    free(out);
    free(items);
    free(ms);
    return rc;
}
