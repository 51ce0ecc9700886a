/*
 * bench/paillier.c - Paillier homomorphic addition and decryption rates,
 * per kernel: one JSON object on stdout.
 *
 *   bench_paillier [--bits 2048] [--seconds 0.5] [--count 512] [--threads 2]
 *
 * add:     pvg_paillier_add(out, a, b) over pairs of fresh ciphertexts
 * sum:     pvg_paillier_sum over `count` ciphertexts, terms per second
 * naive:   the reference product mpz_mul + mpz_mod
 * encrypt: pvg_paillier_encrypt_int64 with the DJN encryptor (tables
 *          built before timing) and with a fresh r^n each time
 * decrypt: pvg_paillier_decrypt_double one at a time, and
 *          pvg_paillier_decrypt_batch_double with 1 and `threads` threads
 * Single-threaded figures use this thread's CPU time (the machine is shared;
 * CPU time is what another process's load does not inflate), best of 5;
 * the threaded decryption uses wall time, best of 5, with its CPU time
 * beside it.
 */
#include <privguide/paillier.h>

#include "crypto/paillier_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double clk(clockid_t id)
{
    struct timespec t;
    clock_gettime(id, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void die(const char *what, pvg_status st, const pvg_error *err)
{
    fprintf(stderr, "bench_paillier: %s: %s (%s)\n", what, pvg_strerror(st), err->text);
    exit(1);
}

typedef struct ctx {
    pvg_paillier_pub *pub;
    pvg_paillier_priv *priv;
    pvg_paillier_ct **cts;
    size_t count;
    double seconds;
} ctx;

/* operations per CPU-second of `add` (best of 5 rounds of >= seconds/5) */
static double rate_add(ctx *c)
{
    pvg_paillier_ct *out = pvg_paillier_ct_new(c->pub);
    pvg_error err;
    double best = 0;
    for (int round = 0; round < 5; round++) {
        double t0 = clk(CLOCK_THREAD_CPUTIME_ID), t1;
        size_t ops = 0;
        do {
            for (size_t i = 0; i + 1 < c->count; i += 2, ops++) {
                pvg_status st = pvg_paillier_add(out, c->cts[i], c->cts[i + 1], &err);
                if (st != PVG_OK) die("add", st, &err);
            }
            t1 = clk(CLOCK_THREAD_CPUTIME_ID);
        } while (t1 - t0 < c->seconds / 5);
        if (ops / (t1 - t0) > best) best = (double)ops / (t1 - t0);
    }
    pvg_paillier_ct_free(out);
    return best;
}

static double rate_sum(ctx *c)
{
    pvg_paillier_ct *out = pvg_paillier_ct_new(c->pub);
    pvg_error err;
    double best = 0;
    for (int round = 0; round < 5; round++) {
        double t0 = clk(CLOCK_THREAD_CPUTIME_ID), t1;
        size_t ops = 0;
        do {
            pvg_status st = pvg_paillier_sum(out, c->cts, c->count, &err);
            if (st != PVG_OK) die("sum", st, &err);
            ops += c->count;
            t1 = clk(CLOCK_THREAD_CPUTIME_ID);
        } while (t1 - t0 < c->seconds / 5);
        if (ops / (t1 - t0) > best) best = (double)ops / (t1 - t0);
    }
    pvg_paillier_ct_free(out);
    return best;
}

static double rate_naive(ctx *c)
{
    mpz_t out;
    mpz_init(out);
    double best = 0;
    for (int round = 0; round < 5; round++) {
        double t0 = clk(CLOCK_THREAD_CPUTIME_ID), t1;
        size_t ops = 0;
        do {
            for (size_t i = 0; i + 1 < c->count; i += 2, ops++)
                pvg_he_mulmod_naive(c->pub, out, c->cts[i]->c, c->cts[i + 1]->c);
            t1 = clk(CLOCK_THREAD_CPUTIME_ID);
        } while (t1 - t0 < c->seconds / 5);
        if (ops / (t1 - t0) > best) best = (double)ops / (t1 - t0);
    }
    mpz_clear(out);
    return best;
}

/* encryptions per CPU-second with an encryptor of the given mode */
static double rate_encrypt(ctx *c, pvg_paillier_obf mode)
{
    pvg_error err;
    pvg_paillier_enc *enc;
    pvg_paillier_enc_options eo = {.mode = mode};
    pvg_status st = pvg_paillier_enc_new(c->pub, &eo, &enc, &err);
    if (st != PVG_OK) die("encryptor", st, &err);
    pvg_paillier_ct *out = pvg_paillier_ct_new(c->pub);
    double best = 0;
    for (int round = 0; round < 5; round++) {
        double t0 = clk(CLOCK_THREAD_CPUTIME_ID), t1;
        size_t ops = 0;
        do {
            st = pvg_paillier_encrypt_int64(enc, (int64_t)(ops * 7919 % 100000) - 50000, out, &err);
            if (st != PVG_OK) die("encrypt", st, &err);
            ops++;
            t1 = clk(CLOCK_THREAD_CPUTIME_ID);
        } while (t1 - t0 < c->seconds / 5);
        if (ops / (t1 - t0) > best) best = (double)ops / (t1 - t0);
    }
    pvg_paillier_ct_free(out);
    pvg_paillier_enc_free(enc);
    return best;
}

static double rate_decrypt_one(ctx *c, size_t n)
{
    pvg_error err;
    double best = 0, d;
    for (int round = 0; round < 5; round++) {
        double t0 = clk(CLOCK_THREAD_CPUTIME_ID);
        for (size_t i = 0; i < n; i++) {
            pvg_status st = pvg_paillier_decrypt_double(c->priv, c->cts[i], &d, &err);
            if (st != PVG_OK) die("decrypt", st, &err);
        }
        double t1 = clk(CLOCK_THREAD_CPUTIME_ID);
        if (n / (t1 - t0) > best) best = (double)n / (t1 - t0);
    }
    return best;
}

/* wall-clock rate and CPU-seconds per ciphertext of the batch call */
static double rate_decrypt_batch(ctx *c, size_t n, unsigned threads, double *cpu_per)
{
    pvg_error err;
    double best = 0, *d = malloc(n * sizeof *d);
    *cpu_per = 0;
    for (int round = 0; round < 5; round++) {
        double t0 = clk(CLOCK_MONOTONIC), p0 = clk(CLOCK_PROCESS_CPUTIME_ID);
        pvg_status st = pvg_paillier_decrypt_batch_double(c->priv, c->cts, n, threads, d, &err);
        if (st != PVG_OK) die("decrypt batch", st, &err);
        double t1 = clk(CLOCK_MONOTONIC), p1 = clk(CLOCK_PROCESS_CPUTIME_ID);
        if (n / (t1 - t0) > best) {
            best = (double)n / (t1 - t0);
            *cpu_per = (p1 - p0) / (double)n;
        }
    }
    free(d);
    return best;
}

int main(int argc, char **argv)
{
    unsigned bits = 2048, threads = 2;
    size_t count = 512, ndec = 64;
    double seconds = 0.5;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--bits") && i + 1 < argc)
            bits = (unsigned)atoi(argv[++i]);
        else if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
            seconds = atof(argv[++i]);
        else if (!strcmp(argv[i], "--count") && i + 1 < argc)
            count = (size_t)atol(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = (unsigned)atoi(argv[++i]);
        else if (!strcmp(argv[i], "--decrypt") && i + 1 < argc)
            ndec = (size_t)atol(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_paillier [--bits B] [--seconds S] [--count N] "
                            "[--threads T] [--decrypt N]\n");
            return 2;
        }
    }
    if (count < 2) count = 2;
    if (ndec > count) ndec = count;
    ctx c = {.count = count, .seconds = seconds};
    pvg_error err;
    pvg_status st = pvg_paillier_keygen(bits, NULL, 0, &c.pub, &c.priv, &err);
    if (st != PVG_OK) die("keygen", st, &err);
    pvg_paillier_enc *enc;
    pvg_paillier_enc_options eo = {.mode = PVG_PAILLIER_OBF_DJN};
    if ((st = pvg_paillier_enc_new(c.pub, &eo, &enc, &err)) != PVG_OK) die("encryptor", st, &err);
    c.cts = calloc(count, sizeof *c.cts);
    for (size_t i = 0; i < count; i++) {
        c.cts[i] = pvg_paillier_ct_new(c.pub);
        st = pvg_paillier_encrypt_int64(enc, (int64_t)(i * 7919 % 100000) - 50000, c.cts[i], &err);
        if (st != PVG_OK) die("encrypt", st, &err);
    }
    pvg_paillier_enc_free(enc);

    int ifma = pvg_he_cpu_has_ifma();
    double add_ifma = 0, sum_ifma = 0, add_mpn, sum_mpn, naive;
    pvg_he_mont *m = c.pub->mont;
    if (ifma) {
        pvg_he_mont_set_kernel(m, PVG_HE_KERNEL_IFMA);
        add_ifma = rate_add(&c);
        sum_ifma = rate_sum(&c);
    }
    pvg_he_mont_set_kernel(m, PVG_HE_KERNEL_MPN);
    add_mpn = rate_add(&c);
    sum_mpn = rate_sum(&c);
    naive = rate_naive(&c);
    pvg_he_mont_set_kernel(m, ifma ? PVG_HE_KERNEL_IFMA : PVG_HE_KERNEL_MPN);

    double enc_djn = rate_encrypt(&c, PVG_PAILLIER_OBF_DJN);
    double enc_fresh = rate_encrypt(&c, PVG_PAILLIER_OBF_FRESH);
    double dec_one = rate_decrypt_one(&c, ndec), cpu1, cpuT;
    double dec_b1 = rate_decrypt_batch(&c, ndec, 1, &cpu1);
    double dec_bt = rate_decrypt_batch(&c, ndec, threads, &cpuT);

    printf("{\"bench\":\"paillier\",\"bits\":%u,\"cpu_avx512ifma\":%s,\"kernel\":\"%s\","
           "\"ciphertexts\":%zu,\"clock\":\"thread CPU time, best of 5\","
           "\"add_per_s\":%.0f,\"sum_terms_per_s\":%.0f,"
           "\"add_per_s_ifma\":%.0f,\"sum_terms_per_s_ifma\":%.0f,"
           "\"add_per_s_mpn\":%.0f,\"sum_terms_per_s_mpn\":%.0f,"
           "\"mulmod_naive_per_s\":%.0f,"
           "\"encrypt_djn_per_s\":%.1f,\"encrypt_fresh_per_s\":%.1f,"
           "\"decrypt_per_s\":%.1f,\"decrypt_batch\":%zu,"
           "\"decrypt_batch_1thread_per_s_wall\":%.1f,"
           "\"decrypt_batch_threads\":%u,\"decrypt_batch_per_s_wall\":%.1f,"
           "\"decrypt_batch_cpu_s_per_ct\":%.6f}\n",
           bits, ifma ? "true" : "false", pvg_paillier_kernel(c.pub), count,
           ifma ? add_ifma : add_mpn, ifma ? sum_ifma : sum_mpn, add_ifma, sum_ifma, add_mpn,
           sum_mpn, naive, enc_djn, enc_fresh, dec_one, ndec, dec_b1, threads, dec_bt, cpuT);
    for (size_t i = 0; i < count; i++)
        pvg_paillier_ct_free(c.cts[i]);
    free(c.cts);
    pvg_paillier_priv_free(c.priv);
    pvg_paillier_pub_free(c.pub);
    return 0;
}
