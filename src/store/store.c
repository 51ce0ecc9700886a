/*
 * store.c - creating and opening a data dir, transactions, users' key
 * resolution, and the catalog. The data itself is kept by the backend
 * (backend.h; the SQLite one in src/store/sqlite/).
 */
#include "store/datafile.h"
#include "store/store_priv.h"
#include "store/text.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

char *pvg_strdup(const char *s)
{
    if (!s) return NULL;
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p) memcpy(p, s, n);
    return p;
}

void pvg_free(void *p)
{
    free(p);
}

static void join(char *out, size_t cap, const char *dir, const char *name)
{
    snprintf(out, cap, "%s/%s", dir, name);
}

pvg_backend *pvg_store_backend(pvg_store *s)
{
    return s->be;
}

pvg_status pvg_store_relax_durability(pvg_store *s, pvg_error *err)
{
    return PVG_B(s, set_relaxed_durability, err);
}

pvg_status pvg_store_changes(pvg_store *s, int64_t *changes, pvg_error *err)
{
    return PVG_B(s, changes_get, changes, err);
}

pvg_status pvg_store_read_begin(pvg_store *s, pvg_error *err)
{
    pvg_status st = s->be->ops->read_begin ? PVG_B(s, read_begin, err) : PVG_OK;
    if (st == PVG_OK) s->read_depth++;
    return st;
}

void pvg_store_read_end(pvg_store *s)
{
    if (s->read_depth == 0) return;
    s->read_depth--;
    if (s->be->ops->read_end) s->be->ops->read_end(s->be);
}

pvg_status pvg_store_read_retry(pvg_store *s, pvg_store_reads_fn reads, void *ctx, pvg_error *err)
{
    pvg_status st = PVG_ERR_BUSY;
    for (int attempt = 0; attempt < PVG_STORE_READ_TRIES && st == PVG_ERR_BUSY; attempt++) {
        pvg_error_clear(err);
        st = pvg_store_read_begin(s, err);
        if (st != PVG_OK) continue;
        st = reads(s, ctx, err);
        pvg_store_read_end(s);
    }
    return st;
}

const char *pvg_store_dir(const pvg_store *s)
{
    return s->dir;
}

int64_t pvg_store_now(const pvg_store *s)
{
    return s->fixed_now ? s->fixed_now : (int64_t)time(NULL);
}

void pvg_store_set_clock(pvg_store *s, int64_t fixed_now)
{
    s->fixed_now = fixed_now;
}

int64_t pvg_store_today(const pvg_store *s)
{
    int64_t t = pvg_store_now(s);
    return t >= 0 ? t / 86400 : -((-t + 86399) / 86400);
}

void pvg_store_pseudonym(const pvg_store *s, const char *ext_user, unsigned char *out)
{
    crypto_generichash(out, PVG_PSEUDONYM_BYTES, (const unsigned char *)ext_user, strlen(ext_user),
                       s->keys.pepper, PVG_KEY_BYTES);
}

pvg_status pvg_store_init(const char *dir, const pvg_store_init_options *opts, pvg_error *err)
{
    pvg_status st = pvg_init();
    if (st != PVG_OK) return pvg_error_set(err, st, "the system random generator is unavailable");
    char path[4096];
    /* 0700 whatever the umask, an existing directory made so too (datafile.h) */
    st = pvg_datadir_make(dir, 1, NULL, err);
    if (st != PVG_OK) return st;
    if (pvg_backend_exists(dir))
        return pvg_error_set_at(err, PVG_ERR_EXISTS, dir, 0, 0, -1, "a store exists here already");
    const char *db_url =
        opts && opts->database_url ? opts->database_url : getenv(PVG_ENV_DATABASE_URL);
    int in_env = opts && opts->master_key_in_env;
    if (in_env && !(getenv(PVG_ENV_MASTER_KEY) && *getenv(PVG_ENV_MASTER_KEY)))
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "the master key is to come from %s, which is not set",
                             PVG_ENV_MASTER_KEY);
    const char *policy = opts && opts->policy_json ? opts->policy_json : pvg_policy_default_text();
    pvg_policy pol;
    join(path, sizeof path, dir, "policy.json");
    st = pvg_policy_parse(policy, path, &pol, err);
    if (st != PVG_OK) return st;
    pvg_policy_free(&pol);

    /* The keys go outside the data dir, to a file named after a new store id. */
    if (getenv(PVG_ENV_KEYS) && *getenv(PVG_ENV_KEYS))
        return pvg_error_set(
            err, PVG_ERR_INVALID,
            "%s is set: init writes a new key file; unset it, and put the new file's "
            "text into it afterwards if the keys are to come from the environment",
            PVG_ENV_KEYS);
    char sid[2 * PVG_STORE_ID_BYTES + 1];
    unsigned char sidb[PVG_STORE_ID_BYTES];
    randombytes_buf(sidb, sizeof sidb);
    sodium_bin2hex(sid, sizeof sid, sidb, sizeof sidb);
    st = pvg_keys_locate(dir, sid, opts ? opts->key_file : NULL, 1, path, sizeof path, err);
    if (st != PVG_OK) return st;
    st = pvg_keys_create_file(path, sid, in_env, err);
    if (st != PVG_OK) return st;
    char idpath[4096];
    join(idpath, sizeof idpath, dir, PVG_STORE_ID_FILE);
    FILE *idf = NULL;
    st = pvg_datafile_fopen(idpath, "w", &idf, err);
    if (st != PVG_OK) {
        unlink(path);
        return st;
    }
    if (fprintf(idf, "%s\n", sid) < 0 || fclose(idf) != 0) {
        int e = errno;
        unlink(path);
        return pvg_error_set_at(err, PVG_ERR_IO, idpath, 0, 0, -1, "cannot write: %s", strerror(e));
    }

    join(path, sizeof path, dir, "policy.json");
    FILE *f = NULL;
    st = pvg_datafile_fopen(path, "wx", &f, err);
    if (st == PVG_ERR_EXISTS) { /* keep an operator-written policy */
        pvg_error_clear(err);
        st = PVG_OK;
    }
    if (st != PVG_OK) return st;
    if (f) {
        fputs(policy, f);
        if (fclose(f) != 0)
            return pvg_error_set_at(err, PVG_ERR_IO, path, 0, 0, -1, "write failed: %s",
                                    strerror(errno));
    }

    return pvg_backend_create(dir, db_url, sid, err);
}

static pvg_status read_file(const char *path, char **out, pvg_error *err)
{
    FILE *f = NULL;
    pvg_status fst = pvg_datafile_fopen(path, "r", &f, err); /* never through a link */
    if (fst != PVG_OK) return fst;
    size_t cap = 8192, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (n < cap - 1) break;
        if (cap > (16u << 20)) {
            free(buf);
            fclose(f);
            return pvg_error_set_at(err, PVG_ERR_INVALID, path, 0, 0, -1,
                                    "file larger than 16 MiB");
        }
        char *p = realloc(buf, cap * 2);
        if (!p) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = p;
        cap *= 2;
    }
    fclose(f);
    if (!buf) return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    buf[n] = '\0';
    *out = buf;
    return PVG_OK;
}

pvg_status pvg_store_open(const char *dir, pvg_store **out, pvg_error *err)
{
    return pvg_store_open_with(dir, NULL, out, err);
}

/* Loads the keyring as pvg_store_open_with finds it (store.h). */
static pvg_status load_keys(pvg_store *s, const char *dir, const pvg_store_open_options *opts,
                            pvg_error *err)
{
    char path[4096];
    join(path, sizeof path, dir, PVG_LEGACY_KEY_FILE);
    if (access(path, F_OK) == 0)
        return pvg_error_set_at(
            err, PVG_ERR_STATE, path, 0, 0, -1,
            "the keys are inside the data dir, so anyone with a copy or backup of "
            "it can read every shopper's data: move them out with `privguide keys "
            "move --key-file PATH` (docs/store.md)");
    char sid[2 * PVG_STORE_ID_BYTES + 1];
    pvg_status st = pvg_keys_store_id(dir, 0, sid, err);
    if (st == PVG_ERR_NOT_FOUND) {
        pvg_error_clear(err);
        sid[0] = '\0';
    } else if (st != PVG_OK) {
        return st;
    }
    const char *env = getenv(PVG_ENV_KEYS);
    if (env && *env && !(opts && opts->key_file)) {
        st = pvg_keys_load_text(env, PVG_ENV_KEYS, &s->keys, err);
        snprintf(path, sizeof path, "%s", PVG_ENV_KEYS);
    } else {
        st = pvg_keys_locate(dir, sid, opts ? opts->key_file : NULL, 0, path, sizeof path, err);
        if (st == PVG_OK) st = pvg_keys_load(path, &s->keys, err);
        if (st == PVG_ERR_NOT_FOUND && !(opts && opts->key_file) &&
            !(getenv(PVG_ENV_KEY_FILE) && *getenv(PVG_ENV_KEY_FILE)))
            pvg_error_set_at(err, st, path, 0, 0, -1,
                             "no key file at the default place for this store: give its path with "
                             "--key-file or %s, or its text in %s",
                             PVG_ENV_KEY_FILE, PVG_ENV_KEYS);
        if (st == PVG_OK && !(s->key_path = pvg_strdup(path)))
            st = pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    }
    if (st == PVG_OK && sid[0] && s->keys.store_id[0] && strcmp(sid, s->keys.store_id) != 0)
        st = pvg_error_set_at(err, PVG_ERR_INVALID, path, 0, 0, -1,
                              "this key file belongs to store %s, but the data dir %s is store %s",
                              s->keys.store_id, dir, sid);
    return st;
}

pvg_status pvg_store_open_with(const char *dir, const pvg_store_open_options *opts, pvg_store **out,
                               pvg_error *err)
{
    *out = NULL;
    pvg_status st = pvg_init();
    if (st != PVG_OK) return pvg_error_set(err, st, "the system random generator is unavailable");
    char path[4096];
    if (!pvg_backend_exists(dir))
        return pvg_error_set_at(err, PVG_ERR_NOT_FOUND, dir, 0, 0, -1,
                                "no privguide store here (run `privguide init` first)");
    pvg_store *s = calloc(1, sizeof *s);
    if (!s) return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    int64_t gen0 = 0;
    s->dir = pvg_strdup(dir);
    s->rng = pvg_rng_new_secure();
    if (!s->dir || !s->rng || pvg_keycache_init(&s->cache, 1u << 14) != PVG_OK) {
        pvg_store_free(s);
        return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    }
    st = load_keys(s, dir, opts, err);
    if (st != PVG_OK) goto fail;
    s->dedup_state = sodium_malloc(sizeof *s->dedup_state);
    if (!s->dedup_state) {
        st = pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
        goto fail;
    }
    crypto_generichash_init(s->dedup_state, s->keys.dedup, PVG_KEY_BYTES, PVG_RID_BYTES);
    join(path, sizeof path, dir, "policy.json");
    char *policy_text = NULL;
    st = read_file(path, &policy_text, err);
    if (st != PVG_OK) goto fail;
    st = pvg_policy_parse(policy_text, path, &s->policy, err);
    free(policy_text);
    if (st != PVG_OK) goto fail;
    st = pvg_backend_open(dir, &s->be, err);
    if (st != PVG_OK) goto fail;
    /* The master key must be the one (or, mid-rotation, one of the two)
     * that wraps the stored data keys. */
    int other = 0;
    st = PVG_B(s, key_other_kid_exists, s->keys.kid,
               s->keys.has_next ? s->keys.next_kid : s->keys.kid, &other, err);
    if (st != PVG_OK) goto fail;
    if (other) {
        st = pvg_error_set_at(err, PVG_ERR_CRYPTO, dir, 0, 0, -1,
                              "the master key does not match the key store (wrong %s or key file?)",
                              PVG_ENV_MASTER_KEY);
        goto fail;
    }
    st = PVG_B(s, changes_get, &gen0, err);
    if (st != PVG_OK) goto fail;
    s->write_gen = gen0;
    s->cache_gen = gen0;
    st = pvg_store_dup_index_ensure(s, err);
    if (st != PVG_OK) goto fail;
    *out = s;
    return PVG_OK;
fail:
    pvg_store_free(s);
    return st;
}

void pvg_store_close(pvg_store *s)
{
    pvg_store_free(s);
}

void pvg_store_free(pvg_store *s)
{
    if (!s) return;
    if (s->in_txn) pvg_store_rollback(s);
    if (s->be) s->be->ops->close(s->be);
    pvg_keys_free(&s->keys);
    if (s->dedup_state) sodium_free(s->dedup_state);
    pvg_keycache_free(&s->cache);
    pvg_cid_set_free(&s->seen);
    free(s->damage);
    pvg_policy_free(&s->policy);
    pvg_rng_free(s->rng);
    free(s->key_path);
    free(s->dir);
    free(s);
}

/* ---- the cache rule ----
 *
 * The key cache (user row id and unwrapped data key per pseudonym) is a
 * copy of what the store held at change count cache_gen. Every write that
 * changes users, keys, consent or chunks moves the store-wide counter
 * (backend.h, changes_get), whichever process or connection makes it. So:
 *  - a write transaction reads the counter when it begins (it holds the
 *    write lock from then on, so nobody else can move it until it ends) and
 *    empties the cache when the counter is not cache_gen; its own commit
 *    sets cache_gen to the count it committed;
 *  - a lookup outside a write transaction reads the counter before trusting
 *    a cached entry, and empties the cache when it moved;
 *  - before sealing chunks under a cached key, the write still checks,
 *    inside its transaction, that the user row and wrapped key are there
 *    (chunk.c, check_user_live).
 * A rolled-back transaction empties the cache too. */
static void cache_validate(pvg_store *s, int64_t gen)
{
    if (gen == s->cache_gen) return;
    sodium_memzero(s->cache.slots, s->cache.cap * sizeof *s->cache.slots);
    s->cache.n = 0;
    s->cache_gen = gen;
}

/* ---- transactions ---- */

pvg_status pvg_store_begin(pvg_store *s, pvg_error *err)
{
    if (s->in_txn) return pvg_error_set(err, PVG_ERR_STATE, "a transaction is open already");
    if (s->read_depth) /* every backend alike (SQLite's refuses it too) */
        return pvg_error_set(err, PVG_ERR_STATE, "a read snapshot is open (no writes in it)");
    int64_t gen = 0;
    pvg_status st = PVG_B(s, txn_begin, &gen, err);
    if (st != PVG_OK) return st;
    s->in_txn = 1;
    s->txn_seq++;
    if (gen != s->write_gen) s->foreign_writes++;
    s->write_gen = gen;
    cache_validate(s, gen);
    /* Refuse to wrap keys under a master key a rotation has retired: fine
     * when the marker names the key we wrap under, or (mid-rotation, the
     * rotation not having claimed it yet) our current key. */
    unsigned char kid[PVG_KID_BYTES];
    int found = 0;
    st = PVG_B(s, wrap_kid_get, kid, &found, err);
    if (st == PVG_OK && found &&
        memcmp(kid, s->keys.has_next ? s->keys.next_kid : s->keys.kid, PVG_KID_BYTES) != 0 &&
        memcmp(kid, s->keys.kid, PVG_KID_BYTES) != 0)
        st = pvg_error_set(err, PVG_ERR_BUSY,
                           "the master key was rotated by another process; reopen the store");
    if (st != PVG_OK) pvg_store_rollback(s);
    return st;
}

pvg_status pvg_store_commit(pvg_store *s, pvg_error *err)
{
    if (!s->in_txn) return pvg_error_set(err, PVG_ERR_STATE, "no open transaction");
    /* The backend counts the write, so other writers know their cached
     * view is stale. */
    int64_t gen = 0;
    pvg_status st = PVG_B(s, txn_commit, &gen, err);
    if (st != PVG_OK) {
        pvg_store_rollback(s);
        return st;
    }
    s->write_gen = gen;
    s->cache_gen = gen;
    s->in_txn = 0;
    return PVG_OK;
}

void pvg_store_rollback(pvg_store *s)
{
    s->be->ops->txn_rollback(s->be);
    s->in_txn = 0;
    /* Cached keys of users created in the rolled-back transaction are gone. */
    sodium_memzero(s->cache.slots, s->cache.cap * sizeof *s->cache.slots);
    s->cache.n = 0;
}

pvg_status pvg_store_checkpoint(pvg_store *s, pvg_error *err)
{
    return PVG_B(s, checkpoint, err);
}

/* ---- users ---- */

/* Unwraps a stored key with the keyring; PVG_ERR_CRYPTO when it cannot be. */
static pvg_status unwrap_stored(const pvg_keyring *kr, const unsigned char p[16],
                                const pvg_backend_key *k, unsigned char key[PVG_KEY_BYTES])
{
    if (k->kid_len != PVG_KID_BYTES || k->wrapped_len > sizeof k->wrapped) return PVG_ERR_CRYPTO;
    return pvg_keys_unwrap(kr, k->kid, p, k->wrapped, k->wrapped_len, key);
}

pvg_status pvg_store_user_key(pvg_store *s, const unsigned char p[16],
                              unsigned char key[PVG_KEY_BYTES], pvg_error *err)
{
    pvg_backend_key k;
    pvg_status st = PVG_B(s, key_get, p, &k, err);
    if (st != PVG_OK) return st;
    st = unwrap_stored(&s->keys, p, &k, key);
    sodium_memzero(&k, sizeof k);
    if (st != PVG_OK)
        return pvg_error_set(err, PVG_ERR_CRYPTO,
                             "a data key cannot be unwrapped with the master key");
    return PVG_OK;
}

pvg_status pvg_store_user_resolve(pvg_store *s, const unsigned char p[16], int create,
                                  pvg_keycache_entry **out, int *created, pvg_error *err)
{
    if (created) *created = 0;
    if (!s->in_txn) { /* the cache rule: a read trusts the cache only at the current count */
        int64_t gen = 0;
        pvg_status gs = PVG_B(s, changes_get, &gen, err);
        if (gs != PVG_OK) return gs;
        cache_validate(s, gen);
    }
    pvg_keycache_entry *e = pvg_keycache_find(&s->cache, p);
    if (e) {
        *out = e;
        return PVG_OK;
    }
    pvg_backend_user u;
    pvg_status st = PVG_B(s, user_get, p, &u, err);
    if (st != PVG_OK && st != PVG_ERR_NOT_FOUND) return st;
    int64_t uid = st == PVG_OK ? u.id : 0;
    if (uid) {
        pvg_backend_key k;
        st = PVG_B(s, key_get, p, &k, err);
        if (st == PVG_OK) {
            e = pvg_keycache_insert(&s->cache, p);
            e->user_id = uid;
            e->checked_txn = s->in_txn ? s->txn_seq : 0;
            st = unwrap_stored(&s->keys, p, &k, e->key);
            sodium_memzero(&k, sizeof k);
            if (st != PVG_OK) {
                pvg_keycache_remove(&s->cache, p);
                return pvg_error_set(
                    err, PVG_ERR_CRYPTO,
                    "user row %lld: the data key cannot be unwrapped with the master key",
                    (long long)uid);
            }
            *out = e;
            return PVG_OK;
        }
        if (st != PVG_ERR_NOT_FOUND) return st;
        /* A user row without a key: a deletion was interrupted after the key
         * was destroyed. The records are unreadable; finish the deletion. */
        if (!create) return pvg_error_set(err, PVG_ERR_NOT_FOUND, "unknown user");
        pvg_error_clear(err);
        st = PVG_B(s, user_delete, uid, p, err);
        if (st != PVG_OK) return st;
    }
    if (!create) return pvg_error_set(err, PVG_ERR_NOT_FOUND, "unknown user");
    pvg_error_clear(err);
    st = PVG_B(s, user_insert, p, pvg_store_now(s), s->policy.default_personalization,
               s->policy.default_analytics, &uid, err);
    if (st != PVG_OK) return st;
    e = pvg_keycache_insert(&s->cache, p);
    e->user_id = uid;
    e->checked_txn = s->in_txn ? s->txn_seq : 0;
    pvg_rng_bytes(s->rng, e->key, PVG_KEY_BYTES);
    unsigned char w[PVG_WRAPPED_BYTES];
    const unsigned char *mk = s->keys.has_next ? s->keys.next : s->keys.master;
    const unsigned char *kid = s->keys.has_next ? s->keys.next_kid : s->keys.kid;
    pvg_keys_wrap(s, mk, p, e->key, w);
    st = PVG_B(s, key_put, p, kid, w, sizeof w, err);
    if (st != PVG_OK) {
        pvg_keycache_remove(&s->cache, p);
        return st;
    }
    if (created) *created = 1;
    *out = e;
    return PVG_OK;
}

pvg_status pvg_store_user_id(pvg_store *s, const char *ext_user, int64_t *user_id, pvg_error *err)
{
    unsigned char p[16];
    pvg_store_pseudonym(s, ext_user, p);
    pvg_keycache_entry *e;
    pvg_status st = pvg_store_user_resolve(s, p, 0, &e, NULL, err);
    if (st != PVG_OK) return st;
    *user_id = e->user_id;
    return PVG_OK;
}

int pvg_store_user_exists(pvg_store *s, const char *ext_user, pvg_error *err)
{
    int64_t id;
    pvg_status st = pvg_store_user_id(s, ext_user, &id, err);
    if (st == PVG_OK) return 1;
    if (st == PVG_ERR_NOT_FOUND) {
        pvg_error_clear(err);
        return 0;
    }
    return st;
}

/* ---- catalog ---- */

/* ---- typical prices ---- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double pvg_item_price_median(const double *prices, size_t n)
{
    if (n == 0) return -1;
    double v[PVG_ITEM_PRICE_WINDOW];
    if (n > PVG_ITEM_PRICE_WINDOW) {
        prices += n - PVG_ITEM_PRICE_WINDOW;
        n = PVG_ITEM_PRICE_WINDOW;
    }
    memcpy(v, prices, n * sizeof *v);
    qsort(v, n, sizeof *v, cmp_double);
    return v[(n - 1) / 2]; /* the lower middle one: always a price that was charged */
}

/* Parses a stored window (prices separated by spaces, oldest first) into
 * out (room for PVG_ITEM_PRICE_WINDOW); a malformed text counts as empty
 * from its first bad token (the window refills from the next prices). */
static size_t window_parse(const char *t, double *out)
{
    size_t n = 0;
    while (t && *t && n < PVG_ITEM_PRICE_WINDOW) {
        while (*t == ' ')
            t++;
        if (!*t) break;
        char *end;
        double v = strtod(t, &end);
        if (end == t || !(v >= 0) || !isfinite(v)) break;
        out[n++] = v;
        t = end;
    }
    return n;
}

pvg_status pvg_store_item_prices_add(pvg_store *s, int64_t id, const double *prices, size_t n,
                                     pvg_error *err)
{
    if (n == 0) return PVG_OK;
    if (n > PVG_ITEM_PRICE_WINDOW) { /* only the last ones can stay */
        prices += n - PVG_ITEM_PRICE_WINDOW;
        n = PVG_ITEM_PRICE_WINDOW;
    }
    int own = !s->in_txn; /* read, merge and write in one transaction */
    pvg_status st = own ? pvg_store_begin(s, err) : PVG_OK;
    if (st != PVG_OK) return st;
    char *old = NULL;
    st = PVG_B(s, item_prices_get, id, &old, err);
    if (st == PVG_OK) {
        double w[2 * PVG_ITEM_PRICE_WINDOW];
        size_t k = window_parse(old, w);
        for (size_t i = 0; i < n; i++)
            if (prices[i] >= 0 && isfinite(prices[i])) w[k++] = prices[i];
        size_t first = k > PVG_ITEM_PRICE_WINDOW ? k - PVG_ITEM_PRICE_WINDOW : 0;
        char text[PVG_ITEM_PRICE_WINDOW * 26 + 1];
        size_t len = 0;
        for (size_t i = first; i < k; i++)
            len += (size_t)snprintf(text + len, sizeof text - len, "%s%.15g", len ? " " : "", w[i]);
        text[len] = 0;
        st = PVG_B(s, item_prices_set, id, k > first ? text : NULL,
                   pvg_item_price_median(w + first, k - first), err);
    }
    free(old);
    if (own) {
        if (st == PVG_OK)
            st = pvg_store_commit(s, err);
        else
            pvg_store_rollback(s);
    }
    return st;
}

pvg_status pvg_store_item_put_ex(pvg_store *s, const pvg_item *it, int add_price, int catalog,
                                 int64_t *id_out, pvg_error *err)
{
    if (!it || !it->ext_id || !*it->ext_id)
        return pvg_error_set(err, PVG_ERR_INVALID, "item: ext_id is required");
    if (it->attrs_json) {
        long long bad = pvg_utf8_invalid_at(it->attrs_json, strlen(it->attrs_json));
        if (bad >= 0)
            return pvg_error_set(err, PVG_ERR_INVALID,
                                 "item attributes: invalid UTF-8 at byte %lld", bad);
    }
    /* Only the caller decides whether this put is a catalogue load: the
     * fields do not (a sale row carries a title and a price too, and one
     * shopper's row must not put an item into the public domain). 0 never
     * sets the flag and never clears it. */
    pvg_item flagged = *it;
    flagged.catalog = catalog ? 1 : 0;
    it = &flagged;
    int64_t id = 0;
    pvg_status st = PVG_B(s, item_find, it->ext_id, &id, err);
    if (st == PVG_OK) {
        st = PVG_B(s, item_update, id, it, pvg_store_now(s), err);
    } else if (st == PVG_ERR_NOT_FOUND) {
        pvg_error_clear(err);
        st = PVG_B(s, item_insert, it, pvg_store_now(s), &id, err);
    }
    if (st == PVG_OK && add_price && it->price >= 0)
        st = pvg_store_item_prices_add(s, id, &it->price, 1, err);
    if (st == PVG_OK && id_out) *id_out = id;
    return st;
}

pvg_status pvg_store_item_put(pvg_store *s, const pvg_item *it, int64_t *id_out, pvg_error *err)
{
    /* the operator's own put: catalogue data (or it->catalog) makes a
     * catalog item; a bare id does not */
    int catalog =
        it && (it->catalog || it->title || it->category || it->price >= 0 || it->attrs_json);
    return pvg_store_item_put_ex(s, it, 1, catalog, id_out, err);
}

pvg_status pvg_store_item_id_for(pvg_store *s, const char *ext_id, int create, int64_t *id,
                                 pvg_error *err)
{
    pvg_status st = PVG_B(s, item_find, ext_id, id, err);
    if (st != PVG_ERR_NOT_FOUND || !create) return st;
    pvg_error_clear(err);
    pvg_item it = {0};
    it.ext_id = ext_id;
    it.price = -1;
    return pvg_store_item_put_ex(s, &it, 0, 0, id, err);
}

pvg_status pvg_store_item_get(pvg_store *s, const char *ext_id, pvg_item **out, pvg_error *err)
{
    return PVG_B(s, item_get, ext_id ? ext_id : "", 0, out, err);
}

pvg_status pvg_store_item_get_by_id(pvg_store *s, int64_t id, pvg_item **out, pvg_error *err)
{
    return PVG_B(s, item_get, NULL, id, out, err);
}

void pvg_item_free(pvg_item *item)
{
    free(item);
}

pvg_status pvg_store_items_foreach(pvg_store *s, int (*fn)(void *ctx, const pvg_item *item),
                                   void *ctx, pvg_error *err)
{
    return PVG_B(s, items_foreach, fn, ctx, err);
}

pvg_status pvg_store_anonymous_foreach(pvg_store *s,
                                       int (*fn)(void *ctx, int64_t item_id, pvg_event_type type,
                                                 long long count, double quantity),
                                       void *ctx, pvg_error *err)
{
    return PVG_B(s, anon_foreach, fn, ctx, err);
}

pvg_status pvg_store_counts_get(pvg_store *s, pvg_store_counts *out, pvg_error *err)
{
    return PVG_B(s, counts, out, err);
}
