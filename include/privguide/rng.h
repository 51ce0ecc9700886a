/*
 * privguide/rng.h - the random generators of the library.
 *
 * All randomness in privguide comes from a pvg_rng. The production
 * generator, pvg_rng_new_secure(), is a ChaCha20 keystream keyed from the
 * operating system's CSPRNG through libsodium and rekeyed regularly, so that
 * bulk draws (nonces, noise) do not cost one system call each.
 *
 * A deterministic generator exists for tests and reproducible benchmarks
 * only: pvg_rng_new_INSECURE_deterministic_for_tests(). Its output is fully
 * determined by the seed; it must never feed a privacy release, a key or a
 * nonce in production.
 *
 * The one opt-in: every library function that draws keys, nonces, shares,
 * masks or privacy noise from a caller's generator takes an
 * `allow_insecure_rng` argument or options field (int, 0 by default) and
 * checks the generator with pvg_rng_require_secure(): the deterministic
 * generator is refused with PVG_ERR_POLICY unless allow_insecure_rng is
 * non-zero. Only tests, fuzz harnesses, reproducible benchmarks and the
 * CLI's explicit --seed options set it.
 */
#ifndef PRIVGUIDE_RNG_H
#define PRIVGUIDE_RNG_H

#include <privguide/common.h>

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default) /* the API; everything else is hidden */

typedef struct pvg_rng pvg_rng;

/* new: a CSPRNG seeded from the OS. Returns NULL if out of memory or the
 * system CSPRNG is unavailable. Not thread-safe: one generator per thread. */
pvg_rng *pvg_rng_new_secure(void) PVG_WARN_UNUSED;

/* new: a deterministic ChaCha20 stream from `seed`. FOR TESTS ONLY. */
pvg_rng *pvg_rng_new_INSECURE_deterministic_for_tests(uint64_t seed) PVG_WARN_UNUSED;

/* Frees the generator and wipes its state. NULL ok. */
void pvg_rng_free(pvg_rng *rng);

/* 1 if the generator is the test-only deterministic one, else 0. */
int pvg_rng_is_deterministic(const pvg_rng *rng);

/* The check behind every allow_insecure_rng opt-in: PVG_OK for a secure
 * generator (or NULL: callers that need a generator check for it), or for
 * the deterministic one when allow_insecure_rng is non-zero; otherwise
 * PVG_ERR_POLICY, err saying that the deterministic test generator was
 * refused for `what` (e.g. "a privacy release"). Thread-safe. */
pvg_status pvg_rng_require_secure(const pvg_rng *rng, int allow_insecure_rng, const char *what,
                                  pvg_error *err) PVG_WARN_UNUSED;

/* Fills buf[0..len) with random bytes. */
void pvg_rng_bytes(pvg_rng *rng, void *buf, size_t len);

/* A uniform 64-bit word. */
uint64_t pvg_rng_u64(pvg_rng *rng);

/* A uniform integer in [0, bound) without modulo bias; bound > 0.
 * Returns 0 when bound is 0. */
uint64_t pvg_rng_uniform(pvg_rng *rng, uint64_t bound);

/* A uniform double in [0, 1) with 53 random bits. For non-privacy uses
 * only (sampling negatives, shuffles, initialisation): DP noise never
 * goes through floating point. */
double pvg_rng_double(pvg_rng *rng);

/* A standard normal draw (Box-Muller) for model initialisation. Not for
 * privacy noise: see privguide/dp.h for exact samplers. */
double pvg_rng_normal(pvg_rng *rng);

/* Deterministically derives a child generator (for per-thread streams) from
 * a parent: the child's key is drawn from the parent. The child is
 * deterministic iff the parent is. new; NULL on out of memory. */
pvg_rng *pvg_rng_split(pvg_rng *parent) PVG_WARN_UNUSED;

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
