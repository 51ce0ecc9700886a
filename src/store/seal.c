/*
 * seal.c - the sealed event record: a compact binary encoding of one event
 * and its AEAD sealing under the owner's data key.
 *
 * Plain record (little-endian):
 *   u8 version | u8 type | u8 fields | i64 ts | varint item_id
 *   [f64 quantity] [f64 amount] [f64 rating] [varint len, query] [varint len, country]
 * Records are sealed in chunks (chunk.c): nonce[24] |
 * XChaCha20-Poly1305(plain chunk) | tag[16], with associated data (chunk
 * format 2)
 *   "pvg-ck" | u8 2 | pseudonym[16] | chunk id[16] | i64 expires_day | i64 n_events
 * (little-endian), which binds every column of the chunk row but its row
 * numbers: a chunk moved to another user, given another chunk id, or whose
 * stored expiry or event count was edited fails authentication. Format 1
 * (written before) had "pvg-ck" | u8 1 | pseudonym | chunk id only: still
 * opened, its expiry and count unauthenticated until the chunk is rewritten
 * (compaction, `store check --upgrade`).
 */
#include "store/store_priv.h"

#include <string.h>

size_t pvg_varint_put(unsigned char *p, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (unsigned char)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (unsigned char)v;
    return n;
}

int pvg_varint_get(const unsigned char *p, size_t n, size_t *pos, uint64_t *v)
{
    uint64_t x = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (*pos >= n) return -1;
        unsigned char b = p[(*pos)++];
        x |= (uint64_t)(b & 0x7F) << shift;
        if (!(b & 0x80)) {
            *v = x;
            return 0;
        }
    }
    return -1;
}

static size_t put_f64(unsigned char *p, double d)
{
    memcpy(p, &d, 8);
    return 8;
}

size_t pvg_record_encode(const pvg_event *ev, int64_t item_id, unsigned char *out, size_t cap)
{
    size_t qlen = (ev->fields & PVG_FIELD_QUERY) && ev->query ? strlen(ev->query) : 0;
    size_t clen = (ev->fields & PVG_FIELD_COUNTRY) && ev->country ? strlen(ev->country) : 0;
    size_t need = 3 + 8 + 10 + 24 + 10 + qlen + 10 + clen;
    if (need > cap) return 0;
    size_t n = 0;
    unsigned fields = ev->fields & PVG_FIELD_ALL;
    if (!ev->query) fields &= ~(unsigned)PVG_FIELD_QUERY;
    if (!ev->country) fields &= ~(unsigned)PVG_FIELD_COUNTRY;
    out[n++] = PVG_RECORD_VERSION;
    out[n++] = (unsigned char)ev->type;
    out[n++] = (unsigned char)fields;
    uint64_t ts = (uint64_t)ev->ts;
    for (int i = 0; i < 8; i++)
        out[n++] = (unsigned char)(ts >> (8 * i));
    n += pvg_varint_put(out + n, (uint64_t)item_id);
    if (fields & PVG_FIELD_QUANTITY) n += put_f64(out + n, ev->quantity);
    if (fields & PVG_FIELD_AMOUNT) n += put_f64(out + n, ev->amount);
    if (fields & PVG_FIELD_RATING) n += put_f64(out + n, ev->rating);
    if (fields & PVG_FIELD_QUERY) {
        n += pvg_varint_put(out + n, qlen);
        memcpy(out + n, ev->query, qlen);
        n += qlen;
    }
    if (fields & PVG_FIELD_COUNTRY) {
        n += pvg_varint_put(out + n, clen);
        memcpy(out + n, ev->country, clen);
        n += clen;
    }
    return n;
}

static int get_str(const unsigned char *in, size_t n, size_t *pos, char *buf, size_t cap,
                   size_t *used, const char **out)
{
    uint64_t len;
    if (pvg_varint_get(in, n, pos, &len) || len > n - *pos || *used + len + 1 > cap) return -1;
    memcpy(buf + *used, in + *pos, len);
    buf[*used + len] = '\0';
    *out = buf + *used;
    *used += len + 1;
    *pos += len;
    return 0;
}

pvg_status pvg_record_decode(const unsigned char *in, size_t n, pvg_event *ev, int64_t *item_id,
                             char *strbuf, size_t strcap)
{
    memset(ev, 0, sizeof *ev);
    if (n < 11 || in[0] != PVG_RECORD_VERSION || in[1] >= PVG_EVENT_TYPE_COUNT ||
        (in[2] & ~PVG_FIELD_ALL))
        return PVG_ERR_CORRUPT;
    ev->type = (pvg_event_type)in[1];
    ev->fields = in[2];
    uint64_t ts = 0;
    for (int i = 0; i < 8; i++)
        ts |= (uint64_t)in[3 + i] << (8 * i);
    ev->ts = (int64_t)ts;
    size_t pos = 11, used = 0;
    uint64_t id;
    if (pvg_varint_get(in, n, &pos, &id)) return PVG_ERR_CORRUPT;
    *item_id = (int64_t)id;
    ev->item_id = (int64_t)id;
    double *dst[3] = {&ev->quantity, &ev->amount, &ev->rating};
    unsigned bits[3] = {PVG_FIELD_QUANTITY, PVG_FIELD_AMOUNT, PVG_FIELD_RATING};
    for (int i = 0; i < 3; i++)
        if (ev->fields & bits[i]) {
            if (n - pos < 8) return PVG_ERR_CORRUPT;
            memcpy(dst[i], in + pos, 8);
            pos += 8;
        }
    if ((ev->fields & PVG_FIELD_QUERY) && get_str(in, n, &pos, strbuf, strcap, &used, &ev->query))
        return PVG_ERR_CORRUPT;
    if ((ev->fields & PVG_FIELD_COUNTRY) &&
        get_str(in, n, &pos, strbuf, strcap, &used, &ev->country))
        return PVG_ERR_CORRUPT;
    return pos == n ? PVG_OK : PVG_ERR_CORRUPT;
}

#define CHUNK_AD_V1 39
#define CHUNK_AD_V2 55

static void put_i64(unsigned char *p, int64_t v)
{
    uint64_t u = (uint64_t)v;
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(u >> (8 * i));
}

/* Builds the associated data of chunk format `version`; returns its length. */
static size_t chunk_ad(int version, const unsigned char pseudonym[16],
                       const unsigned char cid[PVG_CID_BYTES], int64_t expires_day,
                       int64_t n_events, unsigned char ad[CHUNK_AD_V2])
{
    memcpy(ad, "pvg-ck", 6);
    ad[6] = (unsigned char)version;
    memcpy(ad + 7, pseudonym, 16);
    memcpy(ad + 23, cid, PVG_CID_BYTES);
    if (version == 1) return CHUNK_AD_V1;
    put_i64(ad + 39, expires_day);
    put_i64(ad + 47, n_events);
    return CHUNK_AD_V2;
}

void pvg_chunk_seal(pvg_store *s, const unsigned char key[PVG_KEY_BYTES],
                    const unsigned char pseudonym[16], const unsigned char cid[PVG_CID_BYTES],
                    int64_t expires_day, int64_t n_events, const unsigned char *plain, size_t n,
                    unsigned char *out)
{
    unsigned char ad[CHUNK_AD_V2];
    size_t adn = chunk_ad(PVG_CHUNK_VERSION, pseudonym, cid, expires_day, n_events, ad);
    pvg_rng_bytes(s->rng, out, crypto_aead_xchacha20poly1305_ietf_NPUBBYTES);
    crypto_aead_xchacha20poly1305_ietf_encrypt(out + crypto_aead_xchacha20poly1305_ietf_NPUBBYTES,
                                               NULL, plain, n, ad, adn, NULL, out, key);
}

pvg_status pvg_chunk_open(const unsigned char key[PVG_KEY_BYTES], const unsigned char pseudonym[16],
                          const unsigned char cid[PVG_CID_BYTES], int64_t expires_day,
                          int64_t n_events, const unsigned char *sealed, size_t n,
                          unsigned char *plain, int *version)
{
    if (n < PVG_SEAL_OVERHEAD) return PVG_ERR_CRYPTO;
    unsigned char ad[CHUNK_AD_V2];
    /* The current format first; format 1 only when that fails (the tag is
     * checked before anything is decrypted, so a miss costs one MAC). */
    for (int v = PVG_CHUNK_VERSION; v >= 1; v--) {
        size_t adn = chunk_ad(v, pseudonym, cid, expires_day, n_events, ad);
        if (crypto_aead_xchacha20poly1305_ietf_decrypt(
                plain, NULL, NULL, sealed + crypto_aead_xchacha20poly1305_ietf_NPUBBYTES,
                n - crypto_aead_xchacha20poly1305_ietf_NPUBBYTES, ad, adn, sealed, key) == 0) {
            if (version) *version = v;
            return PVG_OK;
        }
    }
    return PVG_ERR_CRYPTO;
}
