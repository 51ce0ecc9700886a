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
#define PVG_STORE_ID_BYTES 16
#define PVG_RECORD_VERSION 1
#define PVG_WRAPPED_BYTES                                                                          \
    (crypto_aead_xchacha20poly1305_ietf_NPUBBYTES + PVG_KEY_BYTES +                                \
     crypto_aead_xchacha20poly1305_ietf_ABYTES)

/* ---- policy ---- */
typedef struct pvg_policy {
    int allowed[PVG_EVENT_TYPE_COUNT];
    unsigned fields[PVG_EVENT_TYPE_COUNT]; /* PVG_FIELD_* kept per type */
    int retention_days[PVG_EVENT_TYPE_COUNT];
    int basis_collection; /* 1: retention counts from collection time */
    int default_personalization, default_analytics;
    int conversation_days; /* "conversations": {"retention_days"}: default 30 */
    /* how the purposes govern collecting each event type: PVG_COLLECT_* bits */
    unsigned char collect[PVG_EVENT_TYPE_COUNT];
    char *text;             /* the file's text */
    unsigned char memo[16]; /* pvg_store_policy_memo */
} pvg_policy;

enum {
    PVG_COLLECT_NAMED = 1,  /* some purpose uses the type */
    PVG_COLLECT_ALWAYS = 2, /* a purpose without a consent switch uses it */
    PVG_COLLECT_PERS = 4,   /* a purpose under the personalization switch uses it */
    PVG_COLLECT_ANAL = 8    /* a purpose under the analytics switch uses it */
};

/* 1 when collecting events of type t depends on the shopper's consent (some
 * purpose names the type, and every purpose that does is under a switch). */
int pvg_policy_collect_gated(const pvg_policy *p, pvg_event_type t);
/* 1 when a shopper with these consent switches may have events of type t
 * collected: a type no purpose names is governed by the events allow-list
 * alone; else some purpose using it must be switch-free or switched on. */
int pvg_policy_collect_allowed(const pvg_policy *p, pvg_event_type t, int personalization,
                               int analytics);
/* The refusal text for an event of type t the shopper's consent does not
 * allow, into buf. */
void pvg_policy_collect_refusal(const pvg_policy *p, pvg_event_type t, char *buf, size_t cap);

pvg_status pvg_policy_parse(const char *text, const char *source, pvg_policy *out, pvg_error *err);
void pvg_policy_free(pvg_policy *p);
const char *pvg_policy_default_text(void);

/* ---- keys (sodium_malloc'd) ---- */
typedef struct pvg_keyring {
    unsigned char *mem;    /* sodium_malloc: pepper | dedup | master | next | audit */
    unsigned char *pepper; /* pseudonym key */
    unsigned char *dedup;  /* record-id key, derived from the pepper */
    unsigned char *master;
    unsigned char *next;  /* valid when has_next */
    unsigned char *audit; /* audit-chain MAC key, derived from the pepper */
    unsigned char kid[PVG_KID_BYTES], next_kid[PVG_KID_BYTES];
    int has_next;
    int master_from_env;
    int file_from_env;                         /* the whole key file came from PRIVGUIDE_KEYS */
    char store_id[2 * PVG_STORE_ID_BYTES + 1]; /* "" when the file names no store */
    /* Set in a key file moved out of an old data dir: audit entries up to
     * this one were chained without a key (audit.c). */
    int64_t audit_unkeyed_seq;
    unsigned char audit_unkeyed_hash[32];
} pvg_keyring;

/* Cache of unwrapped user keys: open addressing in one sodium_malloc block. */
typedef struct pvg_keycache_entry {
    unsigned char pseudonym[16];
    int64_t user_id;
    unsigned char key[PVG_KEY_BYTES];
    int used;
    uint64_t checked_txn; /* the write transaction (txn_seq) that last saw the row and key */
} pvg_keycache_entry;

typedef struct pvg_keycache {
    pvg_keycache_entry *slots; /* sodium_malloc */
    size_t cap, n;
} pvg_keycache;

/* A chunk a reader skipped (store.c keeps a list while collect_damage). */
enum { PVG_CHUNK_UNREADABLE = 1, PVG_CHUNK_MALFORMED, PVG_CHUNK_DUPLICATE };
typedef struct pvg_chunk_damage {
    int64_t user_id, row;
    unsigned char cid[PVG_BACKEND_PSEUDONYM_BYTES];
    int kind;
} pvg_chunk_damage;
const char *pvg_chunk_damage_name(int kind);

/* Chunk ids met by one reader call: open addressing, a slot being in use
 * when its stamp is the current one (no clearing between calls). */
typedef struct pvg_cid_set {
    unsigned char (*cid)[16];
    uint32_t *stamp;
    size_t cap, n;
    uint32_t cur;
} pvg_cid_set;

/* ---- the store ---- */
struct pvg_store {
    char *dir;
    pvg_backend *be; /* the storage backend (backend.h) */
    pvg_keyring keys;
    crypto_generichash_state *dedup_state; /* sodium_malloc: BLAKE2b-128 keyed with keys.dedup */
    pvg_keycache cache;
    pvg_policy policy;
    pvg_rng *rng;
    char *key_path; /* the key file (NULL: the keys came from PRIVGUIDE_KEYS) */
    int64_t fixed_now;
    int in_txn;
    /* open read snapshots (pvg_store_read_begin): no transaction in one */
    int read_depth;
    int plaintext_control;    /* benchmarks only: skip sealing (see ingest.c) */
    long long write_gen;      /* the change counter as of our last transaction */
    long long foreign_writes; /* bumped when another writer changed the store since then */
    /* The cache rule (store.c): `cache` holds what the store was at change
     * count cache_gen. A write transaction that finds another count, and a
     * read that does, empties it first. */
    int64_t cache_gen;
    uint64_t txn_seq;          /* write transactions begun on this handle */
    pvg_store_read_stats read; /* what readers skipped (pvg_store_read_stats_get) */
    pvg_cid_set seen;          /* scratch of the chunk reader */
    int collect_damage;        /* readers append skipped chunks to damage */
    pvg_chunk_damage *damage;
    size_t n_damage, damage_cap;
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
    size_t n; /* records in the chunk */
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
 * with. A chunk that fails authentication or is malformed, and a second
 * chunk with an id met already, is skipped and counted (s->read, and the
 * damage list while collect_damage), never fatal: *skipped (may be NULL)
 * says how many this call skipped, *legacy how many format-1 chunks it
 * read. Errors: PVG_ERR_CORRUPT (an authenticated record that does not
 * decode), PVG_ERR_NOMEM, fn's status (err says which user row). */
typedef pvg_status (*pvg_chunk_entry_fn)(void *ctx, int64_t expires_day, const unsigned char *rid,
                                         const unsigned char *rec, size_t len);
pvg_status pvg_store_user_chunks_foreach(pvg_store *s, int64_t user_id,
                                         const unsigned char pseudonym[16],
                                         const unsigned char key[PVG_KEY_BYTES],
                                         pvg_chunk_entry_fn fn, void *ctx, long long *skipped,
                                         long long *legacy, pvg_error *err);
/* Records a skipped chunk (counts; the damage list while collect_damage). */
void pvg_store_note_damage(pvg_store *s, int64_t user_id, int64_t row, const unsigned char *cid,
                           size_t cid_len, int kind);
/* Starts a new reader call on the cid set; 1 when cid was met already in
 * this call (else records it); -1 out of memory. */
void pvg_cid_set_next(pvg_cid_set *c);
int pvg_cid_set_seen(pvg_cid_set *c, const unsigned char cid[16]);
void pvg_cid_set_free(pvg_cid_set *c);
/* Appends the record ids of every event of a user (decrypting its chunks
 * with key) to *rids (realloc'd array of 16-byte ids; *n updated). */
pvg_status pvg_store_user_rids(pvg_store *s, int64_t user_id, const unsigned char pseudonym[16],
                               const unsigned char key[PVG_KEY_BYTES],
                               unsigned char (**rids)[PVG_RID_BYTES], size_t *n, pvg_error *err);
/* When a user has at least min_chunks chunks (single events written one by
 * one), or holds format-1 chunks and min_chunks is 0, rewrites them as one
 * chunk per expiry day in the current format, inside the caller's
 * transaction. Never when one of them was skipped (damaged chunks stay
 * where `store check` finds them); *rewritten (may be NULL): chunks
 * replaced. */
pvg_status pvg_store_user_compact(pvg_store *s, int64_t user_id, const unsigned char pseudonym[16],
                                  const unsigned char key[PVG_KEY_BYTES], size_t min_chunks,
                                  pvg_error *err);
pvg_status pvg_store_user_rewrite(pvg_store *s, int64_t user_id, const unsigned char pseudonym[16],
                                  const unsigned char key[PVG_KEY_BYTES], size_t min_chunks,
                                  long long *rewritten, pvg_error *err);

/* keys.c: the key file (docs/store.md). create writes a new one (0600,
 * refusing to overwrite); load reads a file; load_text parses the text of
 * one (source names it in errors), as given in PRIVGUIDE_KEYS. */
pvg_status pvg_keys_create_file(const char *path, const char *store_id, int master_in_env,
                                pvg_error *err);
pvg_status pvg_keys_load(const char *path, pvg_keyring *kr, pvg_error *err);
/* The store id (hex) in dir/store.id into out; create 1: make a random one
 * when there is none; 2: make it the id given in out (random when out is
 * ""). PVG_ERR_NOT_FOUND when absent and !create. */
#define PVG_STORE_ID_FILE "store.id"
#define PVG_LEGACY_KEY_FILE "master.key" /* the key file inside the data dir of old versions */
pvg_status pvg_keys_store_id(const char *dir, int create, char out[2 * PVG_STORE_ID_BYTES + 1],
                             pvg_error *err);
/* Where the key file of the store in dir lives: key_file when given, else
 * $PRIVGUIDE_KEY_FILE, else the per-user default named after store_id
 * (its directories created 0700 when make_dirs). The absolute path goes to
 * out. PVG_ERR_INVALID when it would be inside the data dir. */
pvg_status pvg_keys_locate(const char *dir, const char *store_id, const char *key_file,
                           int make_dirs, char *out, size_t cap, pvg_error *err);
pvg_status pvg_keys_load_text(const char *text, const char *source, pvg_keyring *kr,
                              pvg_error *err);
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
#define PVG_SEAL_OVERHEAD                                                                          \
    (crypto_aead_xchacha20poly1305_ietf_NPUBBYTES + crypto_aead_xchacha20poly1305_ietf_ABYTES)
size_t pvg_record_encode(const pvg_event *ev, int64_t item_id, unsigned char *out, size_t cap);
pvg_status pvg_record_decode(const unsigned char *in, size_t n, pvg_event *ev, int64_t *item_id,
                             char *strbuf, size_t strcap);
#define PVG_CID_BYTES 16
#define PVG_CHUNK_VERSION 2 /* the chunk format sealed now (seal.c) */
/* Seals a plain chunk into out (n + PVG_SEAL_OVERHEAD bytes), binding the
 * pseudonym, chunk id, expiry day and event count of its row. */
void pvg_chunk_seal(pvg_store *s, const unsigned char key[PVG_KEY_BYTES],
                    const unsigned char pseudonym[16], const unsigned char cid[PVG_CID_BYTES],
                    int64_t expires_day, int64_t n_events, const unsigned char *plain, size_t n,
                    unsigned char *out);
/* Opens a sealed chunk of either format; *version (may be NULL): the format
 * it was sealed in. PVG_ERR_CRYPTO when it fails authentication. */
pvg_status pvg_chunk_open(const unsigned char key[PVG_KEY_BYTES], const unsigned char pseudonym[16],
                          const unsigned char cid[PVG_CID_BYTES], int64_t expires_day,
                          int64_t n_events, const unsigned char *sealed, size_t n,
                          unsigned char *plain, int *version) PVG_WARN_UNUSED;

/* ingest.c: builds the duplicate index of a store made before it (once;
 * a no-op when the store's meta says it is complete). */
pvg_status pvg_store_dup_index_ensure(pvg_store *s, pvg_error *err);

/* store.c helpers */
int64_t pvg_store_today(const pvg_store *s);
pvg_status pvg_store_checkpoint(pvg_store *s, pvg_error *err);
pvg_status pvg_store_item_id_for(pvg_store *s, const char *ext_id, int create, int64_t *id,
                                 pvg_error *err);
/* pvg_store_item_put; add_price 0: it->price (>= 0) is written as the last
 * price only, not added to the window (the caller adds its prices with
 * pvg_store_item_prices_add). catalog 1: the put is a catalogue load (the
 * operator's catalogue: pvg_store_item_put with catalogue data, a
 * catalogue format's item row, pvg_store_catalog_declare) and makes the
 * item a catalog item; 0: it never sets the flag (nor clears it), whatever
 * title, category, price or attributes it carries. Every put made by
 * event or transaction ingestion (a sale row's Description and price, an
 * event's stub) passes 0 (docs/store.md "Catalog items and the DP domain";
 * it->catalog is ignored). */
pvg_status pvg_store_item_put_ex(pvg_store *s, const pvg_item *it, int add_price, int catalog,
                                 int64_t *id_out, pvg_error *err) PVG_WARN_UNUSED;
/* Appends prices[0..n) (oldest first; negative ones skipped) to item row
 * id's window of recent prices, keeps its last PVG_ITEM_PRICE_WINDOW and
 * stores their median as the typical price; in one transaction (the open
 * one, or its own). */
pvg_status pvg_store_item_prices_add(pvg_store *s, int64_t id, const double *prices, size_t n,
                                     pvg_error *err) PVG_WARN_UNUSED;
/* The typical price of a window: the lower median of its last
 * PVG_ITEM_PRICE_WINDOW prices; -1 when n is 0. */
double pvg_item_price_median(const double *prices, size_t n);

#endif
