/*
 * ease_dual.c - EASE training time against numpy's dual form on the same
 * data, in one run: a synthetic 1,900-user x 15,000-item set (power-law
 * activity and popularity, bench_gen_synthetic), trained with
 * pvg_model_train (which picks the dual form: users < items), then the
 * same matrix through numpy (X X^T + lambda I inverted, B from
 * X^T K^-1 X; float32 and float64), both over the items with interactions.
 * Both print the sum of |B| and of B^2 as a check that they computed the
 * same matrix.
 *
 * Usage: bench_ease_dual [users=1900] [items=15000] [events=300000]
 *                        [threads=2] [primal=0]
 * primal=1 also times the primal form (m^3: minutes at 15,000 items).
 * Needs python3 with numpy for the comparison (Debian python3-numpy;
 * $PVG_PYTHON, python3 or /usr/bin/python3, the first that has it);
 * without it the numpy fields are null. Prints one JSON line.
 */
#include "model/model_internal.h"

#include <privguide/model.h>

#include <libgen.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static const char NUMPY_SCRIPT[] =
    "import sys, time\n"
    "import numpy as np\n"
    "path, lam, dt = sys.argv[1], float(sys.argv[2]), sys.argv[3]\n"
    "u = {}; it = {}; rows = []; cols = []\n"
    "for line in open(path):\n"
    "    f = line.split('\\t')\n"
    "    rows.append(u.setdefault(f[0], len(u))); cols.append(it.setdefault(f[1], len(it)))\n"
    "X = np.zeros((len(u), len(it)), dtype=dt)\n"
    "X[rows, cols] = 1\n"
    "t0 = time.perf_counter()\n"
    "K = X @ X.T\n"
    "K[np.diag_indices_from(K)] += lam\n"
    "Q = np.linalg.inv(K)\n"
    "M = X.T @ (Q @ X)\n"
    "B = M / (1 - np.diag(M))\n"
    "B[np.diag_indices_from(B)] = 0\n"
    "t = time.perf_counter() - t0\n"
    "print(t, float(np.abs(B).sum(dtype=np.float64)), float((B.astype(np.float64) ** 2).sum()),"
    " X.shape[0], X.shape[1])\n";

/* Runs the numpy dual form; 0 and the figures on success. */
static int run_numpy(const char *py, const char *tmp, const char *tsv, double lambda,
                     const char *dtype, double *secs, double *abs_sum, double *sq_sum)
{
    char script[PATH_MAX], cmd[3 * PATH_MAX];
    snprintf(script, sizeof script, "%s/ease_numpy.py", tmp);
    FILE *f = fopen(script, "w");
    if (!f) return -1;
    fputs(NUMPY_SCRIPT, f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "%s %s %s %g %s", py, script, tsv, lambda, dtype);
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    long nu, ni;
    int got = fscanf(p, "%lf %lf %lf %ld %ld", secs, abs_sum, sq_sum, &nu, &ni);
    int rc = pclose(p);
    return got == 5 && rc == 0 ? 0 : -1;
}

static void b_sums(const pvg_model *m, double *abs_sum, double *sq_sum)
{
    size_t n = pvg_model_n_items(m);
    double a = 0, s = 0;
    for (size_t q = 0; q < n * n; q++) {
        a += fabs(m->ease_B[q]);
        s += (double)m->ease_B[q] * m->ease_B[q];
    }
    *abs_sum = a;
    *sq_sum = s;
}

int main(int argc, char **argv)
{
    const char *users = argc > 1 ? argv[1] : "1900";
    const char *items = argc > 2 ? argv[2] : "15000";
    const char *events = argc > 3 ? argv[3] : "300000";
    int threads = argc > 4 ? atoi(argv[4]) : 2;
    int primal = argc > 5 ? atoi(argv[5]) : 0;
    char self[PATH_MAX], gen[PATH_MAX + 32], cmd[4 * PATH_MAX];
    ssize_t sl = readlink("/proc/self/exe", self, sizeof self - 1);
    if (sl <= 0) return 1;
    self[sl] = 0;
    snprintf(gen, sizeof gen, "%s/bench_gen_synthetic", dirname(self));
    char tmp[] = "/tmp/pvg_bench_ease.XXXXXX";
    if (!mkdtemp(tmp)) return 1;
    char tsv[PATH_MAX];
    snprintf(tsv, sizeof tsv, "%s/events.tsv", tmp);
    snprintf(cmd, sizeof cmd, "%s %s %s %s %s 11 > /dev/null", gen, tsv, users, items, events);
    int rc = 1;
    if (system(cmd) != 0) {
        fprintf(stderr, "bench_ease_dual: %s failed\n", gen);
        goto done;
    }
    pvg_error err;
    pvg_error_clear(&err);
    pvg_dataset *ds;
    pvg_event_weights w;
    pvg_event_weights_default(&w);
    if (pvg_dataset_load_file(tsv, PVG_FORMAT_TSV, NULL, &w, &ds, NULL, &err) != PVG_OK) {
        fprintf(stderr, "bench_ease_dual: %s\n", err.text);
        goto done;
    }
    pvg_train_params p;
    pvg_train_params_default(PVG_MODEL_EASE, &p);
    p.threads = threads;
    pvg_train_estimate est;
    if (pvg_model_memory_estimate(ds, &p, &est, &err) != PVG_OK) goto done;
    double t0 = now();
    pvg_model *m;
    if (pvg_model_train(ds, &p, &m, NULL, &err) != PVG_OK) {
        fprintf(stderr, "bench_ease_dual: %s\n", err.text);
        goto done;
    }
    double t_ours = now() - t0, our_abs, our_sq;
    b_sums(m, &our_abs, &our_sq);
    pvg_model_free(m);
    double t_primal = -1;
    if (primal) {
        pvg_csr R, C;
        if (pvg_csr_build(ds->n_users, ds->n_items, ds->n_ev, ds->ev_user, ds->ev_item, ds->ev_w,
                          NULL, &R) != PVG_OK ||
            pvg_csr_transpose(&R, &C) != PVG_OK)
            goto done;
        float *B = malloc(ds->n_items * ds->n_items * sizeof *B);
        t0 = now();
        if (B && pvg_ease_fit_form(&R, &C, ds->n_items, (float)p.ease_lambda, threads,
                                   PVG_EASE_PRIMAL, B, &err) == PVG_OK)
            t_primal = now() - t0;
        free(B);
        pvg_csr_free(&R);
        pvg_csr_free(&C);
    }
    size_t nu = pvg_dataset_n_users(ds), ni = pvg_dataset_n_items(ds),
           nev = pvg_dataset_n_events(ds);
    pvg_dataset_free(ds);
    double np32 = -1, np32_abs = 0, np32_sq = 0, np64 = -1, np64_abs = 0, np64_sq = 0;
    /* $PVG_PYTHON, else the first of python3 and /usr/bin/python3 (Debian's
     * python3-numpy) that has numpy */
    const char *pys[] = {getenv("PVG_PYTHON"), "python3", "/usr/bin/python3"}, *py = NULL;
    for (int i = 0; i < 3 && !py; i++) {
        if (!pys[i]) continue;
        snprintf(cmd, sizeof cmd, "%s -c 'import numpy' 2>/dev/null", pys[i]);
        if (system(cmd) == 0) py = pys[i];
    }
    if (py) {
        if (run_numpy(py, tmp, tsv, p.ease_lambda, "float32", &np32, &np32_abs, &np32_sq))
            np32 = -1;
        if (run_numpy(py, tmp, tsv, p.ease_lambda, "float64", &np64, &np64_abs, &np64_sq))
            np64 = -1;
    }
    printf("{\"bench\": \"ease_dual\", \"users\": %zu, \"items\": %zu, \"events\": %zu, "
           "\"items_with_interactions\": %zu, \"form\": \"%s\", \"memory_estimate_mib\": %.0f, "
           "\"threads\": %d, \"lambda\": %g, \"train_seconds\": %.3f, ",
           nu, ni, nev, est.items, est.form, est.bytes / 1048576.0, threads, p.ease_lambda, t_ours);
    if (t_primal >= 0) printf("\"primal_seconds\": %.3f, ", t_primal);
    printf("\"b_abs_sum\": %.6g, \"b_sq_sum\": %.6g, ", our_abs, our_sq);
    if (np32 >= 0)
        printf(
            "\"numpy_f32_seconds\": %.3f, \"numpy_f32_b_abs_sum\": %.6g, \"numpy_f32_b_sq_sum\": "
            "%.6g, \"ratio_vs_numpy_f32\": %.3f, ",
            np32, np32_abs, np32_sq, t_ours / np32);
    else
        printf("\"numpy_f32_seconds\": null, ");
    if (np64 >= 0)
        printf(
            "\"numpy_f64_seconds\": %.3f, \"numpy_f64_b_abs_sum\": %.6g, \"ratio_vs_numpy_f64\": "
            "%.3f}\n",
            np64, np64_abs, t_ours / np64);
    else
        printf("\"numpy_f64_seconds\": null}\n");
    rc = 0;
done:
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", tmp);
    return rc;
}
