/*
 * paillier_decrypt.c - batch decryption: ciphertexts (or, when there are
 * fewer ciphertexts than threads, the two CRT halves of each: c^(p-1) mod
 * p^2 and c^(q-1) mod q^2, constant-time) are tasks shared out between
 * threads started and joined inside the call by a shared counter, so one
 * ciphertext alone still uses two cores. Recombination and decoding then
 * run in the calling thread. No state outlives the call.
 */
#include "crypto/paillier_internal.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct dec_job {
    const pvg_paillier_priv *k;
    pvg_paillier_ct *const *cts;
    int paired; /* 1: task i is ct i, both halves; 0: task 2i+h is half h of ct i */
    size_t tasks;
    atomic_size_t next;
    mpz_t *half; /* [2 * count]: m_p, m_q */
} dec_job;

static void *dec_worker(void *arg)
{
    dec_job *j = arg;
    for (;;) {
        size_t i = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed);
        if (i >= j->tasks) break;
        if (j->paired)
            pvg_he_decrypt_halves(j->k, j->cts[i]->c, j->half[2 * i], j->half[2 * i + 1]);
        else
            pvg_he_decrypt_half(j->k, j->cts[i / 2]->c, (int)(i & 1), j->half[i]);
    }
    return NULL;
}

/* Decrypts every ciphertext into mant[i] (signed mantissas, initialised by
 * the caller). */
static pvg_status dec_batch(const pvg_paillier_priv *k, pvg_paillier_ct *const *cts, size_t count,
                            unsigned threads, mpz_t *mant, pvg_error *err)
{
    if (count && !cts) return pvg_error_set(err, PVG_ERR_INVALID, "decrypt: NULL ciphertext array");
    for (size_t i = 0; i < count; i++) {
        if (!cts[i])
            return pvg_error_set(err, PVG_ERR_INVALID, "decrypt: ciphertext %zu is NULL", i);
        if (!pvg_paillier_pub_equal(k->pub, cts[i]->pub))
            return pvg_error_set(err, PVG_ERR_CRYPTO,
                                 "key does not match: ciphertext %zu is under another public key",
                                 i);
        if (!pvg_he_in_group(k->pub, cts[i]->c))
            return pvg_error_set(err, PVG_ERR_INVALID, "ciphertext %zu is not in Z*_{n^2}", i);
    }
    if (count == 0) return PVG_OK;
    if (count > SIZE_MAX / (2 * sizeof(mpz_t)))
        return pvg_error_set(err, PVG_ERR_NOMEM, "decrypt: %zu ciphertexts is too many", count);
    dec_job j = {.k = k, .cts = cts};
    atomic_init(&j.next, 0);
    j.half = malloc(2 * count * sizeof *j.half);
    if (!j.half) return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < 2 * count; i++)
        mpz_init(j.half[i]);
    if (threads == 0) {
        long online = sysconf(_SC_NPROCESSORS_ONLN);
        threads = online > 0 ? (unsigned)online : 1;
    }
    if (threads > 64) threads = 64;
    /* whole ciphertexts per task when there are enough of them (on IFMA
     * their two halves run interleaved), else halves, so one ciphertext
     * still uses two threads */
    j.paired = count >= threads;
    j.tasks = j.paired ? count : 2 * count;
    if (threads > j.tasks) threads = (unsigned)j.tasks;
    pthread_t tid[64];
    unsigned started = 0;
    for (unsigned t = 1; t < threads; t++) {
        if (pthread_create(&tid[started], NULL, dec_worker, &j) != 0) break; /* fewer threads */
        started++;
    }
    dec_worker(&j);
    for (unsigned t = 0; t < started; t++)
        pthread_join(tid[t], NULL);
    pvg_status st = PVG_OK;
    mpz_t m;
    mpz_init(m);
    for (size_t i = 0; i < count && st == PVG_OK; i++) {
        pvg_he_decrypt_crt(k, j.half[2 * i], j.half[2 * i + 1], m);
        st = pvg_he_decode_mantissa(k->pub, m, mant[i], err);
        if (st != PVG_OK && err) {
            char why[PVG_ERROR_TEXT_LEN];
            memcpy(why, err->text, sizeof why);
            why[sizeof why - 1] = 0;
            st = pvg_error_set(err, st, "ciphertext %zu: %.280s", i, why);
        }
    }
    pvg_he_mpz_wipe(m);
    for (size_t i = 0; i < 2 * count; i++)
        pvg_he_mpz_wipe(j.half[i]);
    free(j.half);
    return st;
}

/* Runs the batch and calls put(i) for every result; on error undoes
 * nothing itself (callers clean their outputs). */
static pvg_status batch(const pvg_paillier_priv *priv, pvg_paillier_ct *const *cts, size_t count,
                        unsigned threads, double *dout, char **tout, pvg_error *err)
{
    if (!priv) return pvg_error_set(err, PVG_ERR_INVALID, "decrypt: NULL private key");
    mpz_t *mant = count ? malloc(count * sizeof *mant) : NULL;
    if (count && !mant) return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < count; i++)
        mpz_init(mant[i]);
    pvg_status st = dec_batch(priv, cts, count, threads, mant, err);
    for (size_t i = 0; i < count && st == PVG_OK; i++) {
        if (dout) st = pvg_he_mantissa_to_double(mant[i], cts[i]->exponent, &dout[i], err);
        if (tout) st = pvg_he_mantissa_to_text(mant[i], cts[i]->exponent, &tout[i], err);
    }
    for (size_t i = 0; i < count; i++)
        pvg_he_mpz_wipe(mant[i]);
    free(mant);
    return st;
}

pvg_status pvg_paillier_decrypt_batch_double(const pvg_paillier_priv *priv,
                                             pvg_paillier_ct *const *cts, size_t count,
                                             unsigned threads, double *out, pvg_error *err)
{
    if (count && !out) return pvg_error_set(err, PVG_ERR_INVALID, "decrypt: NULL output array");
    pvg_status st = batch(priv, cts, count, threads, out, NULL, err);
    if (st != PVG_OK)
        for (size_t i = 0; i < count; i++)
            out[i] = 0;
    return st;
}

pvg_status pvg_paillier_decrypt_batch_text(const pvg_paillier_priv *priv,
                                           pvg_paillier_ct *const *cts, size_t count,
                                           unsigned threads, char **out, pvg_error *err)
{
    if (count && !out) return pvg_error_set(err, PVG_ERR_INVALID, "decrypt: NULL output array");
    for (size_t i = 0; i < count; i++)
        out[i] = NULL;
    pvg_status st = batch(priv, cts, count, threads, NULL, out, err);
    if (st != PVG_OK)
        for (size_t i = 0; i < count; i++) {
            free(out[i]);
            out[i] = NULL;
        }
    return st;
}
