/*
 * secagg_internal.h - wire format constants and helpers shared by the
 * secure-aggregation client, server and simulator (src/crypto/secagg_*.c).
 *
 * Every message: "PVSA" | version u8 | type u8 | mode u16 | session[16] |
 * sender u32 | recipient u32 | payload_len u32 | payload. The mode bytes
 * are 0 in version 1 (32- or 64-bit words, ChaCha20 masks) and the lane's
 * bits and the masks' rounds in version 2 (16-bit words or ChaCha12/8).
 * Integers are little-endian. The server's id on the wire is 0xFFFFFFFF.
 */
#ifndef PVG_SECAGG_INTERNAL_H
#define PVG_SECAGG_INTERNAL_H

#include <privguide/secagg.h>

#include <stdint.h>
#include <string.h>

#define SA_HDR 36
#define SA_SERVER_ID 0xFFFFFFFFu

enum sa_type {
    SA_ADVERTISE = 1,
    SA_KEYS = 2,
    SA_SHARES = 3,
    SA_FORWARD = 4,
    SA_MASKED = 5,
    SA_UNMASK_REQ = 6,
    SA_UNMASK = 7,
};

/* one Shamir share of a 32-byte secret: 8 field elements */
#define SA_SHARE_ELEMS 8
#define SA_SHARE_BYTES (8 * SA_SHARE_ELEMS)
/* plaintext of a share box: from u32 | to u32 | s_sk share | b share */
#define SA_BOX_PLAIN (8 + 2 * SA_SHARE_BYTES)
/* nonce 24 | ciphertext | tag 16 */
#define SA_BOX_LEN (24 + SA_BOX_PLAIN + 16)
/* one UNMASK entry: owner u32 | kind u8 | share */
#define SA_UNMASK_ENTRY (5 + SA_SHARE_BYTES)

#define SA_KIND_SELF 0 /* share of the self-mask seed b_u (owner survived) */
#define SA_KIND_PAIR 1 /* share of the mask key s_sk_u (owner dropped) */

static inline void sa_put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}
static inline uint32_t sa_get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline void sa_put64(uint8_t *p, uint64_t v)
{
    sa_put32(p, (uint32_t)v);
    sa_put32(p + 4, (uint32_t)(v >> 32));
}
static inline uint64_t sa_get64(const uint8_t *p)
{
    return (uint64_t)sa_get32(p) | (uint64_t)sa_get32(p + 4) << 32;
}

/* n bytes from malloc (release with free): from 1 MiB on, aligned to 2 MiB
 * and advised to the kernel as huge pages (Linux), so that a fresh masked
 * input or broadcast is a few page faults, not one per 4 KiB; NULL when out
 * of memory. */
void *sa_big_alloc(size_t n);

/* Allocates a message with header filled (the session's id and wire version,
 * pvg_secagg_wire_version), payload_len set and the payload zero; returns
 * the buffer (sa_big_alloc: release with free) or NULL. */
uint8_t *sa_msg_new(int type, const pvg_secagg_params *p, uint32_t sender, uint32_t recipient,
                    size_t payload_len);

/* sa_msg_new without the payload's zeroing, for a payload that will hold a
 * secret until it is masked (the MASKED message whose payload is written by
 * the client's update, sa_client_masked_inplace): page-aligned (2 MiB-aligned
 * in huge pages from 1 MiB on), its pages locked (mlock, best effort, as
 * sodium_malloc) and kept out of core dumps. The payload is not initialised.
 * Release with sa_msg_free_locked (wipes, unlocks, frees), or unlock it once
 * its payload is masked (sa_msg_unlock) and release it like any message
 * (free). NULL when out of memory. */
uint8_t *sa_msg_new_locked(int type, const pvg_secagg_params *p, uint32_t sender,
                           uint32_t recipient, size_t payload_len);
/* Unlocks the pages of a message of len bytes from sa_msg_new_locked; its
 * bytes are left as they are. NULL: nothing. */
void sa_msg_unlock(uint8_t *m, size_t len);
/* Wipes len bytes of a message from sa_msg_new_locked (the whole message),
 * unlocks its pages and frees it. NULL: nothing. */
void sa_msg_free_locked(uint8_t *m, size_t len);

/* The MASKED message of client c (its session, id, d and lane), for its
 * input to be written into before pvg_secagg_client_masked_input's checks
 * and masks are done in place (sa_client_masked_inplace): sa_msg_new_locked,
 * SA_HDR + d * bits / 8 bytes (*len); NULL (and *len 0) when out of memory
 * or for 64-bit words. */
uint8_t *sa_client_masked_msg(const pvg_secagg_client *c, size_t *len);
/* pvg_secagg_client_masked_input with the input already the payload of m
 * (from sa_client_masked_msg of c): the same checks of FORWARD, the same
 * masks, added in place, so that m becomes the same message that function
 * returns. On an error m's payload is left as it was (the input), and c's
 * state is as that function leaves it. */
pvg_status sa_client_masked_inplace(pvg_secagg_client *c, const uint8_t *in, size_t in_len,
                                    uint8_t *m, pvg_error *err);

/* Parses and checks a header: magic, version (the session's:
 * PVG_ERR_UNSUPPORTED otherwise), reserved, session, type ==
 * want_type (0: any), recipient, exact total length. On success *payload,
 * *plen, *sender, *type are set. Errors name the byte offset. */
pvg_status sa_msg_parse(const uint8_t *msg, size_t len, const pvg_secagg_params *p, int want_type,
                        uint32_t want_recipient, const uint8_t **payload, size_t *plen,
                        uint32_t *sender, int *type, pvg_error *err);

/* Graph: permutation of 0..n-1 from the session id and its inverse.
 * perm/pos: n words each. */
void sa_graph_perm(const pvg_secagg_params *p, uint32_t *perm, uint32_t *pos);
/* Neighbours of id given perm/pos, ascending; returns count (= k). */
uint32_t sa_graph_neighbours(const pvg_secagg_params *p, const uint32_t *perm, const uint32_t *pos,
                             uint32_t id, uint32_t *out);

/* Box associated data: session | from | to */
void sa_box_ad(const uint8_t session[16], uint32_t from, uint32_t to, uint8_t ad[24]);
/* Self-mask seed commitment: BLAKE2b-256("PVSA-commit" | session | id | b) */
void sa_commit(const uint8_t session[16], uint32_t id, const uint8_t b[32], uint8_t out[32]);

/* Masks of many seeds at once: vec[0..len) (+/-)= the keystream words
 * offset..offset+len of every seeds[32 i] with signs[i] (+1 or -1), i < m,
 * mod 2^bits (16, 32 or 64), ChaCha with `rounds` rounds (8, 12 or 20; 0 =
 * 20). offset: a multiple of 64 / (bits / 8) words (a block boundary). The
 * same result as m calls of pvg_secagg_mask_add_rounds, in one pass over vec. */
void sa_mask_accumulate(void *vec, size_t offset, size_t len, unsigned bits, unsigned rounds,
                        const uint8_t *seeds, const signed char *signs, size_t m);
/* The kernels behind it (tests compare each with the reference). */
enum { SA_KERNEL_GENERIC = 0, SA_KERNEL_AVX512 = 1 };
int sa_mask_kernel_available(int kernel);
void sa_mask_accumulate_with(int kernel, void *vec, size_t offset, size_t len, unsigned bits,
                             unsigned rounds, const uint8_t *seeds, const signed char *signs,
                             size_t m);

/* Binary search in a sorted array; index or -1. */
long sa_find(const uint32_t *a, size_t n, uint32_t x);

#endif
