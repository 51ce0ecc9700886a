/*
 * rng.c - ChaCha20 keystream generators: the production CSPRNG (keyed from
 * the OS through libsodium, rekeyed every 1 MiB of output, with fast key
 * erasure) and the test-only deterministic generator.
 *
 * Layout: a 32-byte key and a 512-byte buffer of keystream live in
 * sodium_malloc'd memory (guarded, locked, wiped on free). Each refill
 * produces 32 + 512 bytes; the first 32 replace the key (forward secrecy:
 * a later compromise of the state does not reveal earlier output).
 */
#include <privguide/rng.h>

#include <math.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#define RNG_BUF 512
#define RNG_RESEED_BYTES (1u << 20)

struct pvg_rng {
    unsigned char *key; /* sodium_malloc: 32 bytes */
    unsigned char *buf; /* sodium_malloc: RNG_BUF bytes */
    size_t pos;         /* next unused byte in buf */
    uint64_t counter;   /* nonce for the next refill */
    size_t since_reseed;
    int deterministic;
    int have_spare;
    double spare;
};

static pvg_rng *rng_alloc(void)
{
    if (pvg_init() != PVG_OK) return NULL;
    pvg_rng *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->key = sodium_malloc(crypto_stream_chacha20_KEYBYTES);
    r->buf = sodium_malloc(RNG_BUF);
    if (!r->key || !r->buf) {
        pvg_rng_free(r);
        return NULL;
    }
    r->pos = RNG_BUF;
    return r;
}

static void rng_refill(pvg_rng *r)
{
    unsigned char block[crypto_stream_chacha20_KEYBYTES + RNG_BUF];
    unsigned char nonce[crypto_stream_chacha20_NONCEBYTES];
    if (!r->deterministic && r->since_reseed >= RNG_RESEED_BYTES) {
        /* Mix fresh OS entropy into the key. */
        unsigned char fresh[32];
        randombytes_buf(fresh, sizeof fresh);
        crypto_generichash(r->key, 32, fresh, sizeof fresh, r->key, 32);
        sodium_memzero(fresh, sizeof fresh);
        r->since_reseed = 0;
    }
    memset(nonce, 0, sizeof nonce);
    for (int i = 0; i < 8 && i < (int)sizeof nonce; i++)
        nonce[i] = (unsigned char)(r->counter >> (8 * i));
    r->counter++;
    crypto_stream_chacha20(block, sizeof block, nonce, r->key);
    memcpy(r->key, block, crypto_stream_chacha20_KEYBYTES);
    memcpy(r->buf, block + crypto_stream_chacha20_KEYBYTES, RNG_BUF);
    sodium_memzero(block, sizeof block);
    r->pos = 0;
    r->since_reseed += RNG_BUF;
}

pvg_rng *pvg_rng_new_secure(void)
{
    pvg_rng *r = rng_alloc();
    if (!r) return NULL;
    randombytes_buf(r->key, crypto_stream_chacha20_KEYBYTES);
    return r;
}

pvg_rng *pvg_rng_new_INSECURE_deterministic_for_tests(uint64_t seed)
{
    pvg_rng *r = rng_alloc();
    if (!r) return NULL;
    unsigned char s[8];
    for (int i = 0; i < 8; i++)
        s[i] = (unsigned char)(seed >> (8 * i));
    crypto_generichash(r->key, 32, s, sizeof s, (const unsigned char *)"pvg-test-rng", 12);
    r->deterministic = 1;
    return r;
}

pvg_rng *pvg_rng_split(pvg_rng *parent)
{
    pvg_rng *r = rng_alloc();
    if (!r) return NULL;
    pvg_rng_bytes(parent, r->key, crypto_stream_chacha20_KEYBYTES);
    r->deterministic = parent->deterministic;
    return r;
}

void pvg_rng_free(pvg_rng *r)
{
    if (!r) return;
    sodium_free(r->key);
    sodium_free(r->buf);
    free(r);
}

int pvg_rng_is_deterministic(const pvg_rng *r)
{
    return r ? r->deterministic : 0;
}

pvg_status pvg_rng_require_secure(const pvg_rng *r, int allow_insecure_rng, const char *what,
                                  pvg_error *err)
{
    if (!pvg_rng_is_deterministic(r) || allow_insecure_rng) return PVG_OK;
    return pvg_error_set(err, PVG_ERR_POLICY,
                         "refusing the deterministic test generator for %s (allow_insecure_rng "
                         "is for tests and reproducible benchmarks only)",
                         what ? what : "this operation");
}

void pvg_rng_bytes(pvg_rng *r, void *out, size_t len)
{
    unsigned char *p = out;
    while (len > 0) {
        if (r->pos == RNG_BUF) rng_refill(r);
        size_t n = RNG_BUF - r->pos;
        if (n > len) n = len;
        memcpy(p, r->buf + r->pos, n);
        sodium_memzero(r->buf + r->pos, n); /* used output is erased */
        r->pos += n;
        p += n;
        len -= n;
    }
}

uint64_t pvg_rng_u64(pvg_rng *r)
{
    unsigned char b[8];
    pvg_rng_bytes(r, b, 8);
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)b[i] << (8 * i);
    return v;
}

uint64_t pvg_rng_uniform(pvg_rng *r, uint64_t bound)
{
    if (bound == 0) return 0;
    /* Rejection sampling: accept v below the largest multiple of bound. */
    uint64_t threshold = (uint64_t)(-bound) % bound; /* 2^64 mod bound */
    for (;;) {
        uint64_t v = pvg_rng_u64(r);
        if (v >= threshold) return v % bound;
    }
}

double pvg_rng_double(pvg_rng *r)
{
    return (double)(pvg_rng_u64(r) >> 11) * 0x1.0p-53;
}

double pvg_rng_normal(pvg_rng *r)
{
    if (r->have_spare) {
        r->have_spare = 0;
        return r->spare;
    }
    double u, v, s;
    do {
        u = 2.0 * pvg_rng_double(r) - 1.0;
        v = 2.0 * pvg_rng_double(r) - 1.0;
        s = u * u + v * v;
    } while (s >= 1.0 || s == 0.0);
    double m = sqrt(-2.0 * log(s) / s);
    r->spare = v * m;
    r->have_spare = 1;
    return u * m;
}
