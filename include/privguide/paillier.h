/*
 * privguide/paillier.h - Paillier additively homomorphic encryption,
 * interoperable with python-paillier (phe).
 *
 * Scheme: n = p*q with p, q primes of equal length, g = n + 1,
 *   E(m; r) = (1 + m*n) * r^n mod n^2,   D(c) by CRT modulo p^2 and q^2.
 * Homomorphisms: E(a)*E(b) = E(a+b), E(a)^k = E(k*a) (all mod n).
 *
 * Signed integers and decimals are carried as python-paillier's
 * EncodedNumber: value = mantissa * 16^exponent, the mantissa stored mod n,
 * negative mantissas wrapped by adding n, |mantissa| <= max_int = n/3 - 1
 * (integer division); the band between max_int and n - max_int detects
 * overflow. Adding numbers with different exponents first lowers the larger
 * exponent (multiplies the mantissa by a power of 16), as phe does, so a
 * ciphertext made and combined here decodes to the same value in phe and
 * vice versa.
 *
 * Obfuscators (the r^n factor) come from an encryptor (pvg_paillier_enc):
 *   FRESH  r^n mod n^2 with a fresh uniform r each time (phe's way);
 *   DJN    hs^a mod n^2, hs = (-x^2)^n fixed per encryptor, a a fresh random
 *          exponent of twice the security level; fixed-base comb tables
 *          precomputed once (docs/paillier.md has the security argument);
 *   POOL   FRESH obfuscators computed ahead by background threads.
 *
 * Formats (python-paillier's): pheutil JWK keys {"kty":"DAJ","alg":"PAI-GN1",
 * "n":<base64url>} and {"kty":"DAJ","key_ops":["decrypt"],"p","q","pub"};
 * encrypted numbers {"v":"<decimal ciphertext>","e":<exponent>}; the plain
 * list form {"public_key":{"g":G,"n":N},"values":[["<c>",e],...]}.
 *
 * Memory: secret GMP integers are wiped. The first key or encryptor made
 * installs, once (pthread_once), GMP memory functions that wipe every block
 * GMP frees or moves; this is process-wide (a GMP limitation) and affects
 * every GMP user in the process (they keep working: blocks are still
 * malloc/free blocks). Key objects also wipe their integers explicitly.
 *
 * Thread-safety: public and private keys are immutable after creation and
 * may be shared between threads. A ciphertext or an encryptor is used by one
 * thread at a time. The library never prints or exits.
 */
#ifndef PRIVGUIDE_PAILLIER_H
#define PRIVGUIDE_PAILLIER_H

#include <privguide/common.h>
#include <privguide/rng.h>
#include <privguide/store.h>

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default) /* the API; everything else is hidden */

typedef struct pvg_paillier_pub pvg_paillier_pub;
typedef struct pvg_paillier_priv pvg_paillier_priv;
typedef struct pvg_paillier_ct pvg_paillier_ct;
typedef struct pvg_paillier_enc pvg_paillier_enc;

/* Smallest modulus accepted for new keys; loaded keys may not be smaller
 * either. Largest modulus accepted anywhere (bounds parsing work). */
#define PVG_PAILLIER_MIN_BITS 2048
#define PVG_PAILLIER_MAX_BITS 16384
/* The exponent python-paillier's pheutil fixes on output. */
#define PVG_PAILLIER_PHEUTIL_EXPONENT (-32)

/* ---- keys --------------------------------------------------------------- */

/* Generates a key pair with an n of exactly `bits` bits (bits >= 2048,
 * <= PVG_PAILLIER_MAX_BITS): p, q of bits/2 bits each with their two top
 * bits set, drawn from `rng` (NULL: a fresh secure generator), each passing
 * Miller-Rabin with random bases (FIPS 186-5 Table B.1 round counts) and a
 * strong Lucas test; |p - q| > 2^(bits/2 - 100). *pub and *priv are new.
 * A deterministic rng is refused (PVG_ERR_POLICY) unless allow_insecure_rng.
 * Errors: PVG_ERR_INVALID (bits), PVG_ERR_NOMEM, PVG_ERR_POLICY. Thread-safe
 * with distinct rngs. */
pvg_status pvg_paillier_keygen(unsigned bits, pvg_rng *rng, int allow_insecure_rng,
                               pvg_paillier_pub **pub, pvg_paillier_priv **priv,
                               pvg_error *err) PVG_WARN_UNUSED;

/* new: a public key from n, big-endian bytes. Errors: PVG_ERR_INVALID (n
 * even, too small or too large: err says which). */
pvg_status pvg_paillier_pub_from_bytes(const unsigned char *n, size_t len, pvg_paillier_pub **out,
                                       pvg_error *err) PVG_WARN_UNUSED;

/* new: a private key from p and q (big-endian bytes) that must multiply to
 * pub's n (PVG_ERR_CRYPTO "key does not match" otherwise); pub is copied.
 * Errors: PVG_ERR_INVALID (p == q, not odd, not invertible), PVG_ERR_CRYPTO. */
pvg_status pvg_paillier_priv_from_pq(const pvg_paillier_pub *pub, const unsigned char *p,
                                     size_t p_len, const unsigned char *q, size_t q_len,
                                     pvg_paillier_priv **out, pvg_error *err) PVG_WARN_UNUSED;

void pvg_paillier_pub_free(pvg_paillier_pub *pub);    /* NULL ok */
void pvg_paillier_priv_free(pvg_paillier_priv *priv); /* wipes; NULL ok */

/* The public half of a private key (borrowed; lives as long as priv). */
const pvg_paillier_pub *pvg_paillier_priv_pub(const pvg_paillier_priv *priv);

/* Size of n in bits. Thread-safe. */
unsigned pvg_paillier_pub_bits(const pvg_paillier_pub *pub);

/* 1 when both keys have the same n. */
int pvg_paillier_pub_equal(const pvg_paillier_pub *a, const pvg_paillier_pub *b);

/* n as a decimal string (new, pvg_free). NULL on out of memory. */
char *pvg_paillier_pub_n_decimal(const pvg_paillier_pub *pub) PVG_WARN_UNUSED;

/* ---- key files (pheutil JWK) -------------------------------------------- */

/* Serialises as pheutil does (new strings, pvg_free). `kid` may be NULL
 * (a default naming privguide is used). The private form embeds "pub". */
pvg_status pvg_paillier_pub_to_jwk(const pvg_paillier_pub *pub, const char *kid, char **out,
                                   pvg_error *err) PVG_WARN_UNUSED;
pvg_status pvg_paillier_priv_to_jwk(const pvg_paillier_priv *priv, const char *kid, char **out,
                                    pvg_error *err) PVG_WARN_UNUSED;

/* Parses a pheutil public key (or the "pub" member of a private key file
 * when given a private key). `source` names the input in errors. Errors:
 * PVG_ERR_INVALID with line/column for JSON syntax, or the field that is
 * missing or wrong ("kty" must be "DAJ", "alg" "PAI-GN1", "n" base64url). */
pvg_status pvg_paillier_pub_from_jwk(const char *json, const char *source, pvg_paillier_pub **out,
                                     pvg_error *err) PVG_WARN_UNUSED;
/* Parses a pheutil private key: "kty":"DAJ", "key_ops" containing
 * "decrypt", base64url "p" and "q", and "pub". Also accepts the older
 * pheutil form with "lambda" and "mu" (the factors are then recovered from
 * the totient). p*q must equal pub's n (PVG_ERR_CRYPTO). */
pvg_status pvg_paillier_priv_from_jwk(const char *json, const char *source, pvg_paillier_priv **out,
                                      pvg_error *err) PVG_WARN_UNUSED;

/* ---- ciphertexts -------------------------------------------------------- */

/* new: an encryption of 0 with exponent 0 and obfuscator 1 (not hiding;
 * the neutral element for sums). `pub` is borrowed and must outlive it.
 * NULL on out of memory. */
pvg_paillier_ct *pvg_paillier_ct_new(const pvg_paillier_pub *pub) PVG_WARN_UNUSED;
void pvg_paillier_ct_free(pvg_paillier_ct *ct); /* NULL ok */
/* Copies src into dst (same key required: PVG_ERR_CRYPTO). */
pvg_status pvg_paillier_ct_copy(pvg_paillier_ct *dst, const pvg_paillier_ct *src,
                                pvg_error *err) PVG_WARN_UNUSED;
/* The base-16 exponent of the encrypted number (value = mantissa * 16^e). */
int pvg_paillier_ct_exponent(const pvg_paillier_ct *ct);
/* The key the ciphertext is under (borrowed). */
const pvg_paillier_pub *pvg_paillier_ct_pub(const pvg_paillier_ct *ct);

/* Sets a ciphertext from its decimal text and exponent, checking that c is
 * a unit of Z_{n^2} (0 < c < n^2, gcd(c, n) = 1). Errors: PVG_ERR_INVALID
 * (not a decimal integer, longer than n^2 allows, not in Z*_{n^2}, exponent
 * outside [-100000, 100000]). */
pvg_status pvg_paillier_ct_set_decimal(pvg_paillier_ct *ct, const char *v, long exponent,
                                       pvg_error *err) PVG_WARN_UNUSED;
/* The ciphertext as decimal text (new, pvg_free); NULL on out of memory. */
char *pvg_paillier_ct_decimal(const pvg_paillier_ct *ct) PVG_WARN_UNUSED;

/* {"v": "<c>", "e": <exponent>} (new, pvg_free), as pheutil writes it. */
pvg_status pvg_paillier_ct_to_json(const pvg_paillier_ct *ct, char **out,
                                   pvg_error *err) PVG_WARN_UNUSED;
/* Parses {"v": "<c>", "e": <exponent>} ("v" may also be a JSON integer).
 * Errors: PVG_ERR_INVALID naming source/line/column or the field. */
pvg_status pvg_paillier_ct_from_json(pvg_paillier_ct *ct, const char *json, const char *source,
                                     long line, pvg_error *err) PVG_WARN_UNUSED;

/* The plain list form of python-paillier's documentation:
 * {"public_key": {"g": G, "n": N}, "values": [["<c>", e], ...]} with G and N
 * JSON integers. new string (pvg_free). */
pvg_status pvg_paillier_list_to_json(const pvg_paillier_pub *pub, pvg_paillier_ct *const *cts,
                                     size_t count, char **out, pvg_error *err) PVG_WARN_UNUSED;
/* Parses the plain list form: *pub_out (new) gets the key it names, and
 * *cts_out an array (new, free with pvg_paillier_ct_array_free) of *count
 * ciphertexts under it (they borrow *pub_out: free them first). If `expect`
 * is not NULL the key must equal it (PVG_ERR_CRYPTO). At most max_values
 * values (0: 1,000,000). */
pvg_status pvg_paillier_list_from_json(const char *json, const char *source,
                                       const pvg_paillier_pub *expect, size_t max_values,
                                       pvg_paillier_pub **pub_out, pvg_paillier_ct ***cts_out,
                                       size_t *count, pvg_error *err) PVG_WARN_UNUSED;
void pvg_paillier_ct_array_free(pvg_paillier_ct **cts, size_t count);

/* ---- encryptors ----------------------------------------------------------- */

typedef enum pvg_paillier_obf {
    PVG_PAILLIER_OBF_FRESH = 0, /* r^n mod n^2, fresh uniform r */
    PVG_PAILLIER_OBF_DJN = 1,   /* short-exponent hs^a, fixed-base tables */
    PVG_PAILLIER_OBF_POOL = 2   /* fresh r^n computed ahead by threads */
} pvg_paillier_obf;

typedef struct pvg_paillier_enc_options {
    pvg_paillier_obf mode;
    unsigned threads;       /* POOL: worker threads (0: 1) */
    size_t pool_size;       /* POOL: obfuscators kept ready (0: 256) */
    pvg_rng *rng;           /* borrowed parent generator; children are split
                               from it. NULL: fresh secure generators */
    int allow_insecure_rng; /* 1: accept a deterministic rng (tests only) */
} pvg_paillier_enc_options;

/* new: an encryptor for `pub` (borrowed; must outlive it). DJN precomputes
 * its tables here (about (bits of a)/6 * 63 values mod n^2). POOL starts its
 * threads here. opts NULL: FRESH with a secure generator.
 * Errors: PVG_ERR_NOMEM, PVG_ERR_POLICY (deterministic rng without
 * allow_insecure_rng), PVG_ERR_INTERNAL (thread creation failed). */
pvg_status pvg_paillier_enc_new(const pvg_paillier_pub *pub, const pvg_paillier_enc_options *opts,
                                pvg_paillier_enc **out, pvg_error *err) PVG_WARN_UNUSED;
/* Stops the pool threads, wipes and frees. NULL ok. */
void pvg_paillier_enc_free(pvg_paillier_enc *enc);

/* Bits of the DJN random exponent (2 x security level of the modulus). */
unsigned pvg_paillier_djn_exponent_bits(unsigned modulus_bits);

/* Encrypts a number given as text: an integer ("-42", any size) is encoded
 * with exponent 0; a decimal ("12.35", "-1e-3", "inf" refused) is parsed as
 * an IEEE double and encoded as python-paillier encodes a float. The result
 * exponent is then lowered to `max_exponent` when that is smaller (pass
 * PVG_PAILLIER_PHEUTIL_EXPONENT to match pheutil, or INT_MAX for none).
 * Errors: PVG_ERR_INVALID (not a number: err has the offset; out of range
 * |mantissa| > max_int). */
pvg_status pvg_paillier_encrypt_text(pvg_paillier_enc *enc, const char *text, int max_exponent,
                                     pvg_paillier_ct *out, pvg_error *err) PVG_WARN_UNUSED;
/* Encrypts a double as python-paillier encodes a float (precision <= 0:
 * exact; > 0: exponent floor(log16(precision))), then lowers the exponent to
 * max_exponent when smaller. Errors: PVG_ERR_INVALID (NaN, infinite, out of
 * range). */
pvg_status pvg_paillier_encrypt_double(pvg_paillier_enc *enc, double x, double precision,
                                       int max_exponent, pvg_paillier_ct *out,
                                       pvg_error *err) PVG_WARN_UNUSED;
/* Encrypts an integer with exponent 0. */
pvg_status pvg_paillier_encrypt_int64(pvg_paillier_enc *enc, int64_t x, pvg_paillier_ct *out,
                                      pvg_error *err) PVG_WARN_UNUSED;
/* Multiplies ct by a fresh obfuscator (re-randomisation). */
pvg_status pvg_paillier_rerandomize(pvg_paillier_enc *enc, pvg_paillier_ct *ct,
                                    pvg_error *err) PVG_WARN_UNUSED;

/* ---- homomorphic operations (public key only) ------------------------------ */

/* out = a + b (out may alias a or b). Exponents are aligned to the smaller
 * one first. Errors: PVG_ERR_CRYPTO (different keys). The result is not
 * re-randomised: do that before it leaves (pvg_paillier_rerandomize). */
pvg_status pvg_paillier_add(pvg_paillier_ct *out, const pvg_paillier_ct *a,
                            const pvg_paillier_ct *b, pvg_error *err) PVG_WARN_UNUSED;
/* out = a + x for a plaintext number given as text (parsed as in
 * pvg_paillier_encrypt_text, encoded with max exponent a's exponent). */
pvg_status pvg_paillier_add_text(pvg_paillier_ct *out, const pvg_paillier_ct *a, const char *x,
                                 pvg_error *err) PVG_WARN_UNUSED;
/* out = a * k for a plaintext scalar given as text (integers exponent 0,
 * decimals encoded as python-paillier floats); the exponents add. */
pvg_status pvg_paillier_mul_text(pvg_paillier_ct *out, const pvg_paillier_ct *a, const char *k,
                                 pvg_error *err) PVG_WARN_UNUSED;
pvg_status pvg_paillier_mul_int64(pvg_paillier_ct *out, const pvg_paillier_ct *a, int64_t k,
                                  pvg_error *err) PVG_WARN_UNUSED;
/* out = -a. */
pvg_status pvg_paillier_negate(pvg_paillier_ct *out, const pvg_paillier_ct *a,
                               pvg_error *err) PVG_WARN_UNUSED;
/* Lowers ct's exponent to new_exp (<= current; PVG_ERR_INVALID otherwise). */
pvg_status pvg_paillier_decrease_exponent(pvg_paillier_ct *ct, int new_exp,
                                          pvg_error *err) PVG_WARN_UNUSED;
/* out = cts[0] + ... + cts[count-1] (count 0: an encryption of 0 with
 * obfuscator 1, exponent 0). Terms are aligned to the smallest exponent as
 * pvg_paillier_add does; one Montgomery product per term (the power of R
 * it carries is removed once at the end). `cts` borrowed; out may be one of
 * them; all under out's key. Errors: PVG_ERR_CRYPTO (another key), PVG_ERR_INVALID
 * (NULL term, exponent alignment), PVG_ERR_NOMEM. Not re-randomised. */
pvg_status pvg_paillier_sum(pvg_paillier_ct *out, pvg_paillier_ct *const *cts, size_t count,
                            pvg_error *err) PVG_WARN_UNUSED;
/* The kernel the key's products mod n^2 use: "avx512ifma" (chosen at run
 * time when the CPU has AVX-512 IFMA) or "mpn" (static string). */
const char *pvg_paillier_kernel(const pvg_paillier_pub *pub);

/* ---- decryption -------------------------------------------------------------- */

/* Decrypts and decodes to text as Python prints the decoded value: an
 * integer for exponents >= 0 ("-42"), else the shortest repr of the float
 * mantissa / 16^-exponent ("12.35", "1e-05", "-3.0"). new string.
 * Errors: PVG_ERR_CRYPTO (ciphertext under another key: its public key
 * differs from priv's, or the plaintext's magnitude reaches 2^(bits(n)/2),
 * which no encoded number does and a ciphertext made under another key or
 * corrupted gives with probability 1 - ~2^-(bits(n)/2)), PVG_ERR_INVALID
 * (overflow band: the sum left the +-max_int range, which a ciphertext under
 * another key also hits a third of the time; or a float overflow). The same
 * for the two functions below. */
pvg_status pvg_paillier_decrypt_text(const pvg_paillier_priv *priv, const pvg_paillier_ct *ct,
                                     char **out, pvg_error *err) PVG_WARN_UNUSED;
/* Decrypts and decodes to the nearest double (round half to even). */
pvg_status pvg_paillier_decrypt_double(const pvg_paillier_priv *priv, const pvg_paillier_ct *ct,
                                       double *out, pvg_error *err) PVG_WARN_UNUSED;
/* Decrypts and decodes to the exact decimal value mantissa * 16^exponent
 * (finite for every exponent), e.g. "12.3499999999999996447286321199499070644378662109375". */
pvg_status pvg_paillier_decrypt_exact(const pvg_paillier_priv *priv, const pvg_paillier_ct *ct,
                                      char **out, pvg_error *err) PVG_WARN_UNUSED;
/* Decrypts cts[0..count) (borrowed) with `threads` threads started and
 * joined inside the call (0: one per online CPU), sharing out the
 * ciphertexts (their two CRT halves when there are fewer ciphertexts than
 * threads); the same constant-time decryption as above. out[i] as
 * pvg_paillier_decrypt_double / pvg_paillier_decrypt_text would give (text:
 * new strings, pvg_free each). On error out is all 0 / NULL and err names
 * the first failing index. */
pvg_status pvg_paillier_decrypt_batch_double(const pvg_paillier_priv *priv,
                                             pvg_paillier_ct *const *cts, size_t count,
                                             unsigned threads, double *out,
                                             pvg_error *err) PVG_WARN_UNUSED;
pvg_status pvg_paillier_decrypt_batch_text(const pvg_paillier_priv *priv,
                                           pvg_paillier_ct *const *cts, size_t count,
                                           unsigned threads, char **out,
                                           pvg_error *err) PVG_WARN_UNUSED;

/* ---- packing ------------------------------------------------------------------ */

/* Packs `count` non-negative integers, each < 2^slot_bits, into one
 * plaintext with slots of slot_bits + headroom_bits bits (headroom: room for
 * 2^headroom_bits additions without carry), and encrypts it (exponent 0).
 * count * (slot_bits + headroom_bits) must stay below bits(n) - 2.
 * Errors: PVG_ERR_INVALID (value too large, too many slots). */
pvg_status pvg_paillier_encrypt_packed(pvg_paillier_enc *enc, const uint64_t *values, size_t count,
                                       unsigned slot_bits, unsigned headroom_bits,
                                       pvg_paillier_ct *out, pvg_error *err) PVG_WARN_UNUSED;
/* How many slots of (slot_bits + headroom_bits) fit in one plaintext. */
size_t pvg_paillier_packed_capacity(const pvg_paillier_pub *pub, unsigned slot_bits,
                                    unsigned headroom_bits);
/* Decrypts a packed sum into out[0..count): each slot is read with
 * slot_bits + headroom_bits bits; a slot that does not fit in 64 bits is
 * PVG_ERR_INVALID. */
pvg_status pvg_paillier_decrypt_packed(const pvg_paillier_priv *priv, const pvg_paillier_ct *ct,
                                       size_t count, unsigned slot_bits, unsigned headroom_bits,
                                       uint64_t *out, pvg_error *err) PVG_WARN_UNUSED;

/* ---- encrypted spend totals (paillier_spend.c) ------------------------------ */

typedef enum pvg_spend_group_by {
    PVG_SPEND_BY_NONE = 0,    /* one group, "all" */
    PVG_SPEND_BY_COUNTRY = 1, /* the event's country ("(unknown)" when absent) */
    PVG_SPEND_BY_CATEGORY = 2 /* the item's catalog category ("(uncategorised)") */
} pvg_spend_group_by;

typedef struct pvg_spend_options {
    pvg_spend_group_by group_by;
    int dp;                 /* 1: bound contributions, add encrypted noise, charge the ledger */
    double epsilon;         /* dp: total epsilon of the release (> 0) */
    double delta;           /* dp with country: delta of the private country selection */
    double clamp;           /* dp: bound of one user's subtotal per group, currency units */
    long max_groups;        /* dp: groups one user contributes to (>= 1; 0: 1) */
    const char *dataset;    /* dp: label noted in the release (charged as "spend_totals") */
    pvg_rng *rng;           /* borrowed; NULL: secure generators */
    int allow_insecure_rng; /* 1: accept a deterministic rng (tests only) */
    unsigned threads;       /* threads encrypting the users' subtotals (0: 1) */
} pvg_spend_options;

typedef struct pvg_spend_group {
    char *name;             /* group name (owned by the result) */
    long long users;        /* users who contributed; -1 in DP results (not released) */
    pvg_paillier_ct *total; /* E(sum of cents [+ noise]), re-randomised, exponent 0;
                               borrows the `pub` given to pvg_paillier_spend_total */
} pvg_spend_group;

typedef struct pvg_spend_result {
    size_t n; /* groups, sorted by name */
    pvg_spend_group *groups;
    long long users, events; /* users and purchase/return lines read (not released) */
    double noise_scale;      /* dp: discrete Laplace scale in cents per group; else 0 */
} pvg_spend_result;

/* Encrypted total spend per group. Every user with analytics consent is read
 * from the store; each user's subtotal per group (purchases minus returns,
 * rounded to cents, exponent 0) is encrypted under `pub` as that user's
 * client would (DJN obfuscator) and the platform multiplies the ciphertexts
 * of each group. Without dp the totals are exact; with dp, each user
 * contributes to at most max_groups groups with subtotals clamped to
 * [-clamp, clamp], the groups are the catalog's categories (public) or, for
 * countries, a private selection (Laplace thresholding at epsilon/2, delta),
 * encrypted discrete-Laplace noise of scale (clamp * max_groups) / epsilon'
 * is added to each total, and (epsilon, delta) is charged to the ledger
 * before the result is returned. Every total is re-randomised.
 * *out is new (pvg_spend_result_free). Errors: those of the store, the
 * ledger (PVG_ERR_BUDGET), PVG_ERR_INVALID (options), PVG_ERR_NOMEM. */
pvg_status pvg_paillier_spend_total(pvg_store *s, const pvg_paillier_pub *pub,
                                    const pvg_spend_options *opts, pvg_spend_result **out,
                                    pvg_error *err) PVG_WARN_UNUSED;
void pvg_spend_result_free(pvg_spend_result *r); /* NULL ok */

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
