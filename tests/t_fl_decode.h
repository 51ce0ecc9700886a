/*
 * t_fl_decode.h - the federated tests' plain aggregate: every chosen
 * client's encoded update against a model's broadcast, summed mod 2^32 and
 * decoded without noise, as the server would after unmasking.
 */
#ifndef PVG_T_FL_DECODE_H
#define PVG_T_FL_DECODE_H

#include <privguide/fl.h>

#include <stddef.h>
#include <stdint.h>

/* Into out: the decoded sum over the clients u < n_users (all when take is
 * NULL, else those with take[u]) whose items are items[indptr[u] ..
 * indptr[u+1]), then one more client holding extra[0..n_extra) (extra may
 * be NULL). factors (may be NULL): client u's user factor is written at
 * factors + u * k. The clients draw from a deterministic generator of this
 * seed. Fails the calling cmocka test on any error. */
void t_fl_decoded_sum(const pvg_fl_model *m, size_t n_items, const uint64_t *indptr,
                      const uint32_t *items, size_t n_users, const uint8_t *take,
                      const uint32_t *extra, size_t n_extra, double *out, float *factors, size_t k,
                      uint64_t seed);

#endif
