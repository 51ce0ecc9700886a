/*
 * paillier_encode.c - python-paillier's EncodedNumber: signed integers and
 * decimals as mantissa * 16^exponent with the mantissa stored mod n, and
 * decoding back to Python's text of the value.
 *
 * Encoding a float x (phe.EncodedNumber.encode, precision None):
 *   e2 = frexp(x).exponent; lsb = e2 - 53; exponent = floor(lsb / 4)
 *   (precision p given: exponent = floor(log(p) / log(16)));
 *   exponent = min(exponent, max_exponent) when a max is given;
 *   mantissa = round_half_even(x * 16^-exponent) computed exactly;
 *   |mantissa| <= max_int = n/3 - 1, stored as mantissa mod n.
 * An integer is encoded with exponent min(0, max_exponent).
 * Decoding: enc <= max_int: positive; enc >= n - max_int: enc - n; between:
 * overflow. Value = mantissa * 16^exponent, an int when exponent >= 0, else
 * the correctly rounded double mantissa / 16^-exponent (Python's int/int).
 */
#include "crypto/paillier_internal.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

pvg_status pvg_he_encode_mpz(const pvg_paillier_pub *pub, const mpz_t v, mpz_t out, pvg_error *err)
{
    /* Decryption refuses a mantissa of more than bits/2 bits (the sign of a
     * ciphertext made under another key: paillier.c, decrypt_mantissa), so
     * a number is accepted only when it, and a sum of up to 2^32 numbers
     * like it, stays below that: nothing encrypted here fails to decrypt. */
    size_t limit =
        pub->bits / 2 > PVG_HE_SUM_HEADROOM_BITS + 1 ? pub->bits / 2 - PVG_HE_SUM_HEADROOM_BITS : 1;
    if (mpz_cmpabs(v, pub->max_int) > 0 || mpz_sizeinbase(v, 2) > limit)
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "number out of range: its mantissa has %zu bits; this %u-bit key "
                             "encrypts mantissas of at most %zu bits (so that sums of up to 2^%d "
                             "of them still decrypt)",
                             mpz_sizeinbase(v, 2), pub->bits, limit, PVG_HE_SUM_HEADROOM_BITS);
    mpz_mod(out, v, pub->n);
    return PVG_OK;
}

/* floor(a / 4) for signed a. */
static long floor_div4(long a)
{
    return a >= 0 ? a / 4 : -((-a + 3) / 4);
}

pvg_status pvg_he_encode_double(const pvg_paillier_pub *pub, double x, double precision,
                                int has_max, long max_exponent, mpz_t out, long *exponent,
                                pvg_error *err)
{
    if (!isfinite(x))
        return pvg_error_set(err, PVG_ERR_INVALID, "cannot encode %s",
                             isnan(x) ? "NaN" : "infinity");
    long prec_exp;
    if (precision > 0) {
        if (!isfinite(precision))
            return pvg_error_set(err, PVG_ERR_INVALID, "precision must be finite");
        prec_exp = (long)floor(log(precision) / log(16.0));
    } else {
        int e2 = 0;
        (void)frexp(x, &e2);
        long lsb = (long)e2 - DBL_MANT_DIG;
        prec_exp = floor_div4(lsb);
    }
    long e = prec_exp;
    if (has_max && max_exponent < e) e = max_exponent;
    if (e < -PVG_HE_EXP_LIMIT || e > PVG_HE_EXP_LIMIT)
        return pvg_error_set(err, PVG_ERR_INVALID, "exponent %ld is outside [-%d, %d]", e,
                             PVG_HE_EXP_LIMIT, PVG_HE_EXP_LIMIT);
    /* x = M * 2^E exactly, |M| < 2^53 */
    int e2 = 0;
    double frac = frexp(x, &e2);
    double M = ldexp(frac, DBL_MANT_DIG);
    long E = (long)e2 - DBL_MANT_DIG;
    long shift = E - 4 * e; /* value * 16^-e = M * 2^shift */
    mpz_t v;
    mpz_init_set_d(v, M);
    if (shift >= 0) {
        if ((size_t)shift > (size_t)pub->bits + 64) {
            mpz_clear(v);
            if (x == 0) {
                mpz_set_ui(out, 0);
                *exponent = e;
                return PVG_OK;
            }
            return pvg_error_set(err, PVG_ERR_INVALID,
                                 "number out of range for this key at exponent %ld", e);
        }
        mpz_mul_2exp(v, v, (mp_bitcnt_t)shift);
    } else {
        /* round half to even of v / 2^-shift */
        unsigned long s = (unsigned long)(-shift);
        int neg = mpz_sgn(v) < 0;
        mpz_abs(v, v);
        mpz_t q, r, half;
        mpz_inits(q, r, half, NULL);
        mpz_fdiv_q_2exp(q, v, s);
        mpz_fdiv_r_2exp(r, v, s);
        mpz_setbit(half, s - 1);
        int c = mpz_cmp(r, half);
        if (c > 0 || (c == 0 && mpz_odd_p(q))) mpz_add_ui(q, q, 1);
        if (neg) mpz_neg(q, q);
        mpz_swap(v, q);
        mpz_clears(q, r, half, NULL);
    }
    pvg_status st = pvg_he_encode_mpz(pub, v, out, err);
    mpz_clear(v);
    if (st == PVG_OK) *exponent = e;
    return st;
}

/* 1: integer literal [+-]?[0-9]+; 2: decimal float literal; 0: neither.
 * *bad gets the offset of the first offending character. */
static int classify(const char *t, size_t *bad)
{
    size_t i = 0;
    if (t[i] == '+' || t[i] == '-') i++;
    size_t digits = 0;
    while (t[i] >= '0' && t[i] <= '9')
        i++, digits++;
    if (t[i] == '\0') {
        if (digits) return 1;
        *bad = i;
        return 0;
    }
    /* decimal: digits [. digits] [e [+-] digits] */
    size_t frac = 0;
    if (t[i] == '.') {
        i++;
        while (t[i] >= '0' && t[i] <= '9')
            i++, frac++;
    }
    if (digits + frac == 0) {
        *bad = i;
        return 0;
    }
    if (t[i] == 'e' || t[i] == 'E') {
        i++;
        if (t[i] == '+' || t[i] == '-') i++;
        size_t ed = 0;
        while (t[i] >= '0' && t[i] <= '9')
            i++, ed++;
        if (!ed) {
            *bad = i;
            return 0;
        }
    }
    if (t[i] != '\0') {
        *bad = i;
        return 0;
    }
    return 2;
}

pvg_status pvg_he_encode_text(const pvg_paillier_pub *pub, const char *text, int has_max,
                              long max_exponent, mpz_t out, long *exponent, pvg_error *err)
{
    if (!text || !*text)
        return pvg_error_set(err, PVG_ERR_INVALID, "expected a number, found an empty string");
    size_t len = strlen(text);
    size_t bad = 0;
    int kind = len > 100000 ? 0 : classify(text, &bad);
    if (len > 100000) bad = 100000;
    if (kind == 0)
        return pvg_error_set_at(err, PVG_ERR_INVALID, "number", 0, (long)bad + 1, (long long)bad,
                                "expected an integer or a decimal number (e.g. -42, 12.35, 1e-3), "
                                "found \"%.40s\"",
                                text);
    if (kind == 1) {
        if (len > mpz_sizeinbase(pub->n, 10) + 2)
            return pvg_error_set(err, PVG_ERR_INVALID,
                                 "integer with %zu digits is out of range for this key", len);
        mpz_t v;
        mpz_init(v);
        mpz_set_str(v, text[0] == '+' ? text + 1 : text, 10);
        long e = 0;
        if (has_max && max_exponent < 0) {
            if (-max_exponent > PVG_HE_EXP_LIMIT) {
                mpz_clear(v);
                return pvg_error_set(err, PVG_ERR_INVALID, "exponent %ld out of range",
                                     max_exponent);
            }
            e = max_exponent;
            mpz_mul_2exp(v, v, (mp_bitcnt_t)(4 * -e));
        }
        pvg_status st = pvg_he_encode_mpz(pub, v, out, err);
        mpz_clear(v);
        if (st == PVG_OK) *exponent = e;
        return st;
    }
    errno = 0;
    char *end = NULL;
    double x = strtod(text, &end);
    if (!end || *end != '\0')
        return pvg_error_set(err, PVG_ERR_INVALID, "malformed decimal number \"%.40s\"", text);
    if (!isfinite(x))
        return pvg_error_set(err, PVG_ERR_INVALID, "number \"%.40s\" does not fit in a double",
                             text);
    return pvg_he_encode_double(pub, x, 0, has_max, max_exponent, out, exponent, err);
}

pvg_status pvg_he_decode_mantissa(const pvg_paillier_pub *pub, const mpz_t enc, mpz_t mant,
                                  pvg_error *err)
{
    if (mpz_sgn(enc) < 0 || mpz_cmp(enc, pub->n) >= 0)
        return pvg_error_set(err, PVG_ERR_INVALID, "corrupted encoding: not in [0, n)");
    if (mpz_cmp(enc, pub->max_int) <= 0) {
        mpz_set(mant, enc);
        return PVG_OK;
    }
    if (mpz_cmp(enc, pub->neg_floor) >= 0) {
        mpz_sub(mant, enc, pub->n);
        return PVG_OK;
    }
    return pvg_error_set(err, PVG_ERR_INVALID,
                         "overflow detected in the decrypted number (the value left +-max_int), or "
                         "the ciphertext was made under another key");
}

pvg_status pvg_he_mantissa_to_double(const mpz_t mant, long exponent, double *out, pvg_error *err)
{
    *out = 0;
    if (mpz_sgn(mant) == 0) return PVG_OK;
    int neg = mpz_sgn(mant) < 0;
    mpz_t a;
    mpz_init(a);
    mpz_abs(a, mant);
    long scale = exponent * 4; /* value = a * 2^scale */
    size_t L = mpz_sizeinbase(a, 2);
    /* Keep 53 significant bits, fewer when the result is subnormal so the
     * rounding happens once. */
    long top = (long)L + scale; /* value in [2^(top-1), 2^top) */
    long keep = DBL_MANT_DIG;
    if (top - DBL_MANT_DIG < -1074) keep = top + 1074; /* subnormal: lsb is 2^-1074 */
    double d;
    if (keep <= 0) {
        /* below half the smallest subnormal unless exactly representable halves */
        d = 0;
        if (keep == 0) {
            /* value in [2^-1075, 2^-1074): rounds to 2^-1074 unless exactly the half */
            mpz_t half;
            mpz_init(half);
            mpz_setbit(half, L - 1);
            d = mpz_cmp(a, half) > 0 ? ldexp(1.0, -1074) : 0.0;
            mpz_clear(half);
        }
    } else if ((long)L <= keep) {
        d = ldexp(mpz_get_d(a), (int)(scale < -100000 ? -100000 : scale > 100000 ? 100000 : scale));
    } else {
        unsigned long s = (unsigned long)((long)L - keep);
        mpz_t q, r, half;
        mpz_inits(q, r, half, NULL);
        mpz_fdiv_q_2exp(q, a, s);
        mpz_fdiv_r_2exp(r, a, s);
        mpz_setbit(half, s - 1);
        int c = mpz_cmp(r, half);
        if (c > 0 || (c == 0 && mpz_odd_p(q))) mpz_add_ui(q, q, 1);
        long sc = scale + (long)s;
        if (sc > 100000) sc = 100000;
        if (sc < -100000) sc = -100000;
        d = ldexp(mpz_get_d(q), (int)sc);
        mpz_clears(q, r, half, NULL);
    }
    mpz_clear(a);
    if (isinf(d))
        return pvg_error_set(err, PVG_ERR_INVALID, "decoded result too large for a double");
    *out = neg ? -d : d;
    return PVG_OK;
}

void pvg_he_double_repr(double x, char *buf, size_t len)
{
    if (x == 0) {
        snprintf(buf, len, "%s", signbit(x) ? "-0.0" : "0.0");
        return;
    }
    /* shortest round-tripping digits */
    char e[40];
    int prec;
    for (prec = 1; prec <= 17; prec++) {
        snprintf(e, sizeof e, "%.*e", prec - 1, x);
        if (strtod(e, NULL) == x) break;
    }
    /* e = [-]D[.DDD]e[+-]XX */
    char digits[24];
    size_t nd = 0;
    const char *s = e;
    int neg = 0;
    if (*s == '-') neg = 1, s++;
    for (; *s && *s != 'e'; s++)
        if (*s >= '0' && *s <= '9') digits[nd++] = *s;
    digits[nd] = '\0';
    int exp10 = atoi(s + 1);
    while (nd > 1 && digits[nd - 1] == '0')
        digits[--nd] = '\0';
    int decpt = exp10 + 1; /* value = 0.digits * 10^decpt */
    char out[64];
    size_t o = 0;
    if (neg) out[o++] = '-';
    if (decpt > -4 && decpt <= 16) {
        /* fixed notation (Python 'r': exponent form when decpt <= -4 or > 16) */
        if (decpt <= 0) {
            out[o++] = '0';
            out[o++] = '.';
            for (int i = 0; i < -decpt; i++)
                out[o++] = '0';
            for (size_t i = 0; i < nd; i++)
                out[o++] = digits[i];
        } else {
            for (int i = 0; i < decpt; i++)
                out[o++] = (size_t)i < nd ? digits[i] : '0';
            out[o++] = '.';
            if ((size_t)decpt < nd)
                for (size_t i = (size_t)decpt; i < nd; i++)
                    out[o++] = digits[i];
            else
                out[o++] = '0';
        }
        out[o] = '\0';
    } else {
        out[o++] = digits[0];
        if (nd > 1) {
            out[o++] = '.';
            for (size_t i = 1; i < nd; i++)
                out[o++] = digits[i];
        }
        out[o] = '\0';
        snprintf(out + o, sizeof out - o, "e%c%02d", exp10 < 0 ? '-' : '+', abs(exp10));
    }
    snprintf(buf, len, "%s", out);
}

/* mant * 16^exponent for exponent >= 0 as an integer string (malloc). */
static pvg_status int_text(const mpz_t mant, long exponent, char **out, pvg_error *err)
{
    mpz_t v;
    mpz_init(v);
    mpz_mul_2exp(v, mant, (mp_bitcnt_t)(4 * exponent));
    char *s = malloc(mpz_sizeinbase(v, 10) + 2);
    if (!s) {
        mpz_clear(v);
        return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    }
    mpz_get_str(s, 10, v);
    mpz_clear(v);
    *out = s;
    return PVG_OK;
}

pvg_status pvg_he_mantissa_to_text(const mpz_t mant, long exponent, char **out, pvg_error *err)
{
    *out = NULL;
    if (exponent >= 0) return int_text(mant, exponent, out, err);
    double d;
    pvg_status st = pvg_he_mantissa_to_double(mant, exponent, &d, err);
    if (st != PVG_OK) return st;
    char buf[64];
    pvg_he_double_repr(d, buf, sizeof buf);
    *out = strdup(buf);
    if (!*out) return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    return PVG_OK;
}

pvg_status pvg_he_mantissa_to_exact(const mpz_t mant, long exponent, char **out, pvg_error *err)
{
    *out = NULL;
    if (exponent >= 0) return int_text(mant, exponent, out, err);
    /* mant / 2^(4k) = mant * 5^(4k) / 10^(4k) */
    unsigned long k4 = (unsigned long)(-exponent) * 4;
    mpz_t v;
    mpz_init(v);
    mpz_ui_pow_ui(v, 5, k4);
    mpz_mul(v, v, mant);
    int neg = mpz_sgn(v) < 0;
    mpz_abs(v, v);
    size_t nd = mpz_sizeinbase(v, 10) + 2;
    char *digits = malloc(nd);
    char *s = malloc(nd + k4 + 4);
    if (!digits || !s) {
        free(digits);
        free(s);
        mpz_clear(v);
        return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    }
    mpz_get_str(digits, 10, v);
    mpz_clear(v);
    size_t L = strlen(digits);
    size_t o = 0;
    if (neg) s[o++] = '-';
    if (L <= k4) {
        s[o++] = '0';
        s[o++] = '.';
        for (size_t i = 0; i < k4 - L; i++)
            s[o++] = '0';
        memcpy(s + o, digits, L);
        o += L;
    } else {
        memcpy(s + o, digits, L - k4);
        o += L - k4;
        s[o++] = '.';
        memcpy(s + o, digits + (L - k4), k4);
        o += k4;
    }
    s[o] = '\0';
    free(digits);
    /* trim trailing zeros of the fraction and a bare point */
    while (o > 0 && s[o - 1] == '0')
        s[--o] = '\0';
    if (o > 0 && s[o - 1] == '.') s[--o] = '\0';
    if (strcmp(s, "-0") == 0) strcpy(s, "0");
    *out = s;
    return PVG_OK;
}
