/*
 * store_priv.h - the store's private structure, shared by the files of
 * src/store/ only (store.c, keys.c, policy.c, seal.c, ingest.c, user.c).
 */
#ifndef PVG_STORE_PRIV_H
#define PVG_STORE_PRIV_H

#include "store/store_internal.h"

#include <privguide/rng.h>
#include <sodium.h>

#define PVG_KEY_BYTES 32
#define PVG_KID_BYTES 8
#define PVG_RID_BYTES 16
#define PVG_RECORD_VERSION 1
#define PVG_WRAPPED_BYTES (crypto_aead_xchacha20poly1305_ietf_NPUBBYTES + PVG_KEY_BYTES + \
                           crypto_aead_xchacha20poly1305_ietf_ABYTES)

/* ---- policy ---- */
typedef struct pvg_policy {
    int allowed[PVG_EVENT_TYPE_COUNT];
    unsigned fields[PVG_EVENT_TYPE_COUNT]; /* PVG_FIELD_* kept per type */
    int retention_days[PVG_EVENT_TYPE_COUNT];
    int basis_collection;                  /* 1: retention counts from collection time */
    int default_personalization, default_analytics;
    char *text;                            /* the file's text */
} pvg_policy;

pvg_status pvg_policy_parse(const char *text, const char *source, pvg_policy *out, pvg_error *err);
void pvg_policy_free(pvg_policy *p);
const char *pvg_policy_default_text(void);

/* ---- keys (sodium_malloc'd) ---- */
typedef struct pvg_keyring {
    unsigned char *mem;    /* sodium_malloc: pepper | dedup | master | next */
    unsigned char *pepper; /* pseudonym key */
    unsigned char *dedup;  /* record-id key, derived from the pepper */
    unsigned char *master;
    unsigned char *next;   /* valid when has_next */
    unsigned char kid[PVG_KID_BYTES], next_kid[PVG_KID_BYTES];
    int has_next;
    int master_from_env;
} pvg_keyring;

/* Cache of unwrapped user keys: open addressing in one sodium_malloc block. */
typedef struct pvg_keycache_entry {
    unsigned char pseudonym[16];
    int64_t user_id;
    unsigned char key[PVG_KEY_BYTES];
    int used;
} pvg_keycache_entry;

typedef struct pvg_keycache {
    pvg_keycache_entry *slots; /* sodium_malloc */
    size_t cap, n;
} pvg_keycache;

/* ---- the store ---- */
struct pvg_store {
    char *dir;
    pvg_backend *be; /* the storage backend (backend.h) */
    pvg_keyring keys;
    crypto_generichash_state *dedup_state; /* sodium_malloc: BLAKE2b-128 keyed with keys.dedup */
    pvg_keycache cache;
    pvg_policy policy;
    pvg_rng *rng;
    int64_t fixed_now;
    int in_txn;
    int plaintext_control; /* benchmarks only: skip sealing (see ingest.c) */
    long long write_gen;      /* the change counter as of our last transaction */
    long long foreign_writes; /* bumped when another writer changed the store since then */
};

/* Shorthand for calling a backend op: PVG_B(s, op, args...). */
#define PVG_B(s, op, ...) ((s)->be->ops->op((s)->be, __VA_ARGS__))

/* chunk.c: a user's new events are sealed together, one chunk per (user,
 * expiry day) per write transaction. Plain chunk: u8 version, then entries
 * rid[16] | varint length | record. */
typedef struct pvg_chunk_builder {
    int64_t user_id;
    int64_t expires_day;
    unsigned char pseudonym[16];
    unsigned char *buf; /* plaintext: wiped before free */
    size_t len, cap;
    size_t n;           /* records in the chunk */
} pvg_chunk_builder;

typedef struct pvg_chunk_set {
    pvg_chunk_builder *v;
    size_t n, cap;
    size_t *slots; /* open addressing over (user_id, expires_day): index + 1 */
    size_t slot_cap;
} pvg_chunk_set;

void pvg_chunks_free(pvg_chunk_set *cs);
pvg_status pvg_chunks_add(pvg_chunk_set *cs, int64_t user_id, int64_t expires_day,
                          const unsigned char pseudonym[16], const unsigned char rid[PVG_RID_BYTES],
                          const unsigned char *record, size_t n);
/* Seals every pending chunk and inserts it (inside the caller's transaction). */
pvg_status pvg_chunks_flush(pvg_store *s, pvg_chunk_set *cs, pvg_error *err);
/* Decrypts every chunk of a user and calls fn for each record in it, with
 * the chunk's expiry day; fn returns PVG_OK to go on or a status to stop
 * with. Errors: PVG_ERR_CRYPTO (a chunk failed authentication),
 * PVG_ERR_CORRUPT, fn's status (err says which user row). */
typedef pvg_status (*pvg_chunk_entry_fn)(void *ctx, int64_t expires_day,
                                         const unsigned char *rid, const unsigned char *rec,
                                         size_t len);
pvg_status pvg_store_user_chunks_foreach(pvg_store *s, int64_t user_id,
                                         const unsigned char pseudonym[16],
                                         const unsigned char key[PVG_KEY_BYTES],
                                         pvg_chunk_entry_fn fn, void *ctx, pvg_error *err);
/* Appends the record ids of every event of a user (decrypting its chunks
 * with key) to *rids (realloc'd array of 16-byte ids; *n updated). */
pvg_status pvg_store_user_rids(pvg_store *s, int64_t user_id, const unsigned char pseudonym[16],
                               const unsigned char key[PVG_KEY_BYTES],
                               unsigned char (**rids)[PVG_RID_BYTES], size_t *n, pvg_error *err);
/* When a user has at least min_chunks chunks (single events written one by
 * one), rewrites them as one chunk per expiry day, inside the caller's
 * transaction. */
pvg_status pvg_store_user_compact(pvg_store *s, int64_t user_id, const unsigned char pseudonym[16],
                                  const unsigned char key[PVG_KEY_BYTES], size_t min_chunks,
                                  pvg_error *err);

/* keys.c */
pvg_status pvg_keys_create_file(const char *path, int master_in_env, pvg_error *err);
pvg_status pvg_keys_load(const char *path, pvg_keyring *kr, pvg_error *err);
void pvg_keys_free(pvg_keyring *kr);
void pvg_kid_of(const unsigned char key[PVG_KEY_BYTES], unsigned char kid[PVG_KID_BYTES]);
void pvg_keys_wrap(pvg_store *s, const unsigned char *master, const unsigned char pseudonym[16],
                   const unsigned char key[PVG_KEY_BYTES], unsigned char out[PVG_WRAPPED_BYTES]);
pvg_status pvg_keys_unwrap(const pvg_keyring *kr, const unsigned char *kid,
                           const unsigned char pseudonym[16], const unsigned char *wrapped,
                           size_t wrapped_len, unsigned char key[PVG_KEY_BYTES]) PVG_WARN_UNUSED;
pvg_status pvg_keycache_init(pvg_keycache *c, size_t cap);
void pvg_keycache_free(pvg_keycache *c);
pvg_keycache_entry *pvg_keycache_find(pvg_keycache *c, const unsigned char pseudonym[16]);
pvg_keycache_entry *pvg_keycache_insert(pvg_keycache *c, const unsigned char pseudonym[16]);
void pvg_keycache_remove(pvg_keycache *c, const unsigned char pseudonym[16]);

/* Unwraps a user's data key from the key store into key (sodium_malloc'd
 * by the caller). PVG_ERR_NOT_FOUND when the key is gone (a shredded
 * user), PVG_ERR_CRYPTO when it cannot be unwrapped. */
pvg_status pvg_store_user_key(pvg_store *s, const unsigned char pseudonym[16],
                              unsigned char key[PVG_KEY_BYTES], pvg_error *err);

/* Resolves a user: finds (or, when create, creates with a new data key)
 * the user and returns the cache entry holding its id and key. */
pvg_status pvg_store_user_resolve(pvg_store *s, const unsigned char pseudonym[16], int create,
                                  pvg_keycache_entry **out, int *created, pvg_error *err);

/* seal.c: record serialisation and sealing */
size_t pvg_varint_put(unsigned char *p, uint64_t v);
int pvg_varint_get(const unsigned char *p, size_t n, size_t *pos, uint64_t *v);
#define PVG_SEAL_OVERHEAD (crypto_aead_xchacha20poly1305_ietf_NPUBBYTES + \
                           crypto_aead_xchacha20poly1305_ietf_ABYTES)
size_t pvg_record_encode(const pvg_event *ev, int64_t item_id, unsigned char *out, size_t cap);
pvg_status pvg_record_decode(const unsigned char *in, size_t n, pvg_event *ev, int64_t *item_id,
                             char *strbuf, size_t strcap);
#define PVG_CID_BYTES 16
void pvg_chunk_seal(pvg_store *s, const unsigned char key[PVG_KEY_BYTES],
                    const unsigned char pseudonym[16], const unsigned char cid[PVG_CID_BYTES],
                    const unsigned char *plain, size_t n, unsigned char *out);
pvg_status pvg_chunk_open(const unsigned char key[PVG_KEY_BYTES], const unsigned char pseudonym[16],
                          const unsigned char cid[PVG_CID_BYTES], const unsigned char *sealed,
                          size_t n, unsigned char *plain) PVG_WARN_UNUSED;

/* ingest.c: builds the duplicate index of a store made before it (once;
 * a no-op when the store's meta says it is complete). */
pvg_status pvg_store_dup_index_ensure(pvg_store *s, pvg_error *err);

/* store.c helpers */
int64_t pvg_store_today(const pvg_store *s);
pvg_status pvg_store_checkpoint(pvg_store *s, pvg_error *err);
pvg_status pvg_store_item_id_for(pvg_store *s, const char *ext_id, int create, int64_t *id,
                                 pvg_error *err);

#endif
