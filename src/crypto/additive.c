/*
 * additive.c - additive n-of-n secret sharing over Z_2^bits and its binary
 * serialization (see privguide/shamir.h).
 */
#include <privguide/shamir.h>

#include <string.h>

static uint64_t mask_of(unsigned bits)
{
    return bits >= 64 ? UINT64_MAX : (((uint64_t)1 << bits) - 1);
}

pvg_status pvg_additive_split(const uint64_t *secret, size_t m, unsigned n, unsigned bits,
                              pvg_rng *rng, uint64_t *shares, pvg_error *err)
{
    if (!secret || !rng || !shares || m == 0)
        return pvg_error_set(err, PVG_ERR_INVALID, "additive split: missing argument");
    if (bits < 1 || bits > 64 || n < 2)
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "additive split: expected 1 <= bits <= 64 and n >= 2, got %u, %u",
                             bits, n);
    uint64_t mk = mask_of(bits);
    for (size_t j = 0; j < m; j++) {
        if (secret[j] & ~mk)
            return pvg_error_set(err, PVG_ERR_INVALID, "additive split: element %zu >= 2^%u", j,
                                 bits);
        uint64_t acc = 0;
        for (unsigned i = 1; i < n; i++) {
            uint64_t r = pvg_rng_u64(rng) & mk;
            shares[(size_t)i * m + j] = r;
            acc += r;
        }
        shares[j] = (secret[j] - acc) & mk;
    }
    return PVG_OK;
}

pvg_status pvg_additive_combine(const uint64_t *shares, size_t count, size_t m, unsigned bits,
                                uint64_t *secret, pvg_error *err)
{
    if (!shares || !secret || count == 0 || m == 0 || bits < 1 || bits > 64)
        return pvg_error_set(err, PVG_ERR_INVALID, "additive combine: bad arguments");
    uint64_t mk = mask_of(bits);
    for (size_t j = 0; j < m; j++) {
        uint64_t acc = 0;
        for (size_t i = 0; i < count; i++) {
            uint64_t v = shares[i * m + j];
            if (v & ~mk)
                return pvg_error_set(err, PVG_ERR_INVALID,
                                     "additive combine: share %zu value %zu >= 2^%u", i, j, bits);
            acc += v;
        }
        secret[j] = acc & mk;
    }
    return PVG_OK;
}

size_t pvg_additive_share_size(size_t m)
{
    return PVG_ADDITIVE_SHARE_HEADER + 8 * m;
}

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

size_t pvg_additive_share_encode(uint32_t index, unsigned bits, const uint64_t *values, size_t m,
                                 uint8_t *buf, size_t buf_len)
{
    if (!buf || !values || m == 0 || m > UINT32_MAX || bits < 1 || bits > 64 ||
        buf_len < pvg_additive_share_size(m))
        return 0;
    uint64_t mk = mask_of(bits);
    for (size_t j = 0; j < m; j++)
        if (values[j] & ~mk) return 0;
    memcpy(buf, "PVSS", 4);
    buf[4] = 1;
    buf[5] = 2;
    buf[6] = (uint8_t)bits;
    buf[7] = 0;
    put32(buf + 8, index);
    put32(buf + 12, (uint32_t)m);
    for (size_t j = 0; j < m; j++) {
        put32(buf + 16 + 8 * j, (uint32_t)values[j]);
        put32(buf + 20 + 8 * j, (uint32_t)(values[j] >> 32));
    }
    return pvg_additive_share_size(m);
}

pvg_status pvg_additive_share_decode(const uint8_t *buf, size_t len, uint32_t *index,
                                     unsigned *bits, uint64_t *values, size_t max_m, size_t *m,
                                     pvg_error *err)
{
    if (!buf || len < PVG_ADDITIVE_SHARE_HEADER)
        return pvg_error_set_at(err, PVG_ERR_INVALID, "share", 0, 0, (long long)len,
                                "truncated share: %zu bytes", len);
    if (memcmp(buf, "PVSS", 4) != 0)
        return pvg_error_set_at(err, PVG_ERR_INVALID, "share", 0, 0, 0, "bad magic");
    if (buf[4] != 1)
        return pvg_error_set_at(err, PVG_ERR_UNSUPPORTED, "share", 0, 0, 4,
                                "share version %u, expected 1", buf[4]);
    if (buf[5] != 2)
        return pvg_error_set_at(err, PVG_ERR_INVALID, "share", 0, 0, 5,
                                "share kind %u, expected 2 (additive)", buf[5]);
    unsigned b = buf[6];
    if (b < 1 || b > 64)
        return pvg_error_set_at(err, PVG_ERR_INVALID, "share", 0, 0, 6, "bits %u not in 1..64", b);
    if (buf[7])
        return pvg_error_set_at(err, PVG_ERR_INVALID, "share", 0, 0, 7, "reserved byte not zero");
    uint32_t mv = get32(buf + 12);
    if (mv == 0 || mv > max_m)
        return pvg_error_set_at(err, PVG_ERR_INVALID, "share", 0, 0, 12,
                                "share has %u values, expected 1..%zu", mv, max_m);
    if (len != pvg_additive_share_size(mv))
        return pvg_error_set_at(err, PVG_ERR_INVALID, "share", 0, 0, (long long)len,
                                "share length %zu, expected %zu", len, pvg_additive_share_size(mv));
    uint64_t mk = mask_of(b);
    for (uint32_t j = 0; j < mv; j++) {
        uint64_t v = (uint64_t)get32(buf + 16 + 8 * (size_t)j) |
                     (uint64_t)get32(buf + 20 + 8 * (size_t)j) << 32;
        if (v & ~mk)
            return pvg_error_set_at(err, PVG_ERR_INVALID, "share", 0, 0, 16 + 8 * (long long)j,
                                    "value %u >= 2^%u", j, b);
        values[j] = v;
    }
    *index = get32(buf + 8);
    *bits = b;
    *m = mv;
    return PVG_OK;
}
