/*
 * cmd_he.c - the he commands of the CLI (table cli_cmds_he): Paillier key
 * generation, encryption, homomorphic sums and products, decryption,
 * encrypted spend totals from the store, and the benchmark.
 *
 * Files and streams use python-paillier's formats: pheutil JWK key files,
 * one {"v": "<ciphertext>", "e": <exponent>} object per line, or the plain
 * list form {"public_key": {...}, "values": [...]} as one document.
 */
#include "cli.h"

#include <privguide/dp.h>
#include <privguide/ledger.h>
#include <privguide/paillier.h>
#include <privguide/store.h>

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- helpers ---------------------------------------------------------------- */

#define HE_KEY_FILE_MAX (1u << 20)
#define HE_STDIN_MAX (256u << 20)

static char *read_text_file(const char *path, size_t max, pvg_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        pvg_error_set(err, PVG_ERR_IO, "%s: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = malloc(max + 1);
    size_t n = buf ? fread(buf, 1, max + 1, f) : 0;
    int bad = ferror(f);
    fclose(f);
    if (!buf) {
        pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
        return NULL;
    }
    if (bad || n > max) {
        free(buf);
        pvg_error_set(err, bad ? PVG_ERR_IO : PVG_ERR_INVALID, "%s: %s", path,
                      bad ? "read error" : "file too large for a key");
        return NULL;
    }
    buf[n] = '\0';
    return buf;
}

static pvg_paillier_pub *load_pub(const char *path, int *rc)
{
    pvg_error err;
    pvg_error_clear(&err);
    char *text = read_text_file(path, HE_KEY_FILE_MAX, &err);
    pvg_paillier_pub *pub = NULL;
    pvg_status st = text ? pvg_paillier_pub_from_jwk(text, path, &pub, &err) : err.code;
    free(text);
    if (st != PVG_OK) {
        *rc = cli_fail("public key", st, &err);
        return NULL;
    }
    return pub;
}

static pvg_paillier_priv *load_priv(const char *path, int *rc)
{
    pvg_error err;
    pvg_error_clear(&err);
    struct stat sb;
    if (stat(path, &sb) == 0 && (sb.st_mode & 077))
        cli_warn("warning: %s is readable by other users (mode %03o); chmod 600 it", path,
                 (unsigned)(sb.st_mode & 0777));
    char *text = read_text_file(path, HE_KEY_FILE_MAX, &err);
    pvg_paillier_priv *priv = NULL;
    pvg_status st = text ? pvg_paillier_priv_from_jwk(text, path, &priv, &err) : err.code;
    if (text) {
        memset(text, 0, strlen(text));
        free(text);
    }
    if (st != PVG_OK) {
        *rc = cli_fail("private key", st, &err);
        return NULL;
    }
    return priv;
}

static void trim(char *s)
{
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' ' || s[n - 1] == '\t'))
        s[--n] = '\0';
    size_t i = 0;
    while (s[i] == ' ' || s[i] == '\t') i++;
    if (i) memmove(s, s + i, n - i + 1);
}

static int print_ct(const pvg_paillier_ct *ct)
{
    char *j = NULL;
    pvg_error err;
    pvg_status st = pvg_paillier_ct_to_json(ct, &j, &err);
    if (st != PVG_OK) return cli_fail("output", st, &err);
    puts(j);
    free(j);
    return 0;
}

/* Reads every ciphertext of stdin: either one object per line, or a single
 * plain list document. *pub (in/out): the key given with --pub, or NULL; a
 * list document supplies its own (checked against --pub when given). */
typedef struct ct_list {
    pvg_paillier_ct **cts;
    char **meta; /* the raw line of each ciphertext (line form), for group/unit */
    size_t n, cap;
    pvg_paillier_pub *own_pub;
} ct_list;

static void ct_list_free(ct_list *l)
{
    pvg_paillier_ct_array_free(l->cts, l->n);
    if (l->meta)
        for (size_t i = 0; i < l->n; i++) free(l->meta[i]);
    free(l->meta);
    pvg_paillier_pub_free(l->own_pub);
    memset(l, 0, sizeof *l);
}

static int read_cts(const pvg_paillier_pub **pub, ct_list *out)
{
    memset(out, 0, sizeof *out);
    size_t cap = 1 << 16, len = 0;
    char *all = malloc(cap + 1);
    if (!all) return cli_fail("stdin", PVG_ERR_NOMEM, NULL);
    size_t got;
    while ((got = fread(all + len, 1, cap - len, stdin)) > 0) {
        len += got;
        if (len == cap) {
            if (cap >= HE_STDIN_MAX) {
                free(all);
                cli_warn("stdin: input larger than %u bytes", HE_STDIN_MAX);
                return CLI_EXIT_FAIL;
            }
            char *bigger = realloc(all, cap * 2 + 1);
            if (!bigger) {
                free(all);
                return cli_fail("stdin", PVG_ERR_NOMEM, NULL);
            }
            all = bigger;
            cap *= 2;
        }
    }
    all[len] = '\0';
    pvg_error err;
    pvg_error_clear(&err);
    if (strstr(all, "\"public_key\"") && strstr(all, "\"values\"")) {
        pvg_paillier_pub *lp = NULL;
        pvg_status st = pvg_paillier_list_from_json(all, "stdin", *pub, 0, &lp, &out->cts, &out->n,
                                                    &err);
        free(all);
        if (st != PVG_OK) return cli_fail("stdin", st, &err);
        out->own_pub = lp;
        *pub = lp;
        return 0;
    }
    if (!*pub) {
        free(all);
        cli_warn("stdin: ciphertexts one per line need the public key: give --pub FILE");
        return CLI_EXIT_USAGE;
    }
    long lineno = 0;
    char *save = NULL;
    int rc = 0;
    for (char *line = strtok_r(all, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        lineno++;
        trim(line);
        if (!*line) continue;
        if (out->n == out->cap) {
            size_t nc = out->cap ? out->cap * 2 : 64;
            pvg_paillier_ct **c2 = realloc(out->cts, nc * sizeof *c2);
            if (c2) out->cts = c2;
            char **m2 = realloc(out->meta, nc * sizeof *m2);
            if (m2) out->meta = m2;
            if (!c2 || !m2) {
                rc = cli_fail("stdin", PVG_ERR_NOMEM, NULL);
                break;
            }
            out->cap = nc;
        }
        pvg_paillier_ct *ct = pvg_paillier_ct_new(*pub);
        if (!ct) {
            rc = cli_fail("stdin", PVG_ERR_NOMEM, NULL);
            break;
        }
        pvg_status st = pvg_paillier_ct_from_json(ct, line, "stdin", lineno, &err);
        if (st != PVG_OK) {
            pvg_paillier_ct_free(ct);
            rc = cli_fail("stdin", st, &err);
            break;
        }
        out->meta[out->n] = strdup(line);
        out->cts[out->n++] = ct;
    }
    free(all);
    if (rc) ct_list_free(out);
    return rc;
}

static pvg_paillier_enc *fresh_enc(const pvg_paillier_pub *pub, pvg_paillier_obf mode, int *rc)
{
    pvg_paillier_enc_options o = {.mode = mode};
    pvg_paillier_enc *enc = NULL;
    pvg_error err;
    pvg_error_clear(&err);
    pvg_status st = pvg_paillier_enc_new(pub, &o, &enc, &err);
    if (st != PVG_OK) *rc = cli_fail("encryptor", st, &err);
    return enc;
}

static int parse_mode(cli_ctx *c, pvg_paillier_obf *mode)
{
    const char *m = cli_str(c, "obfuscator");
    if (!m || strcmp(m, "djn") == 0)
        *mode = PVG_PAILLIER_OBF_DJN;
    else if (strcmp(m, "fresh") == 0)
        *mode = PVG_PAILLIER_OBF_FRESH;
    else
        cli_usage_error(c, "--obfuscator: expected djn or fresh, got \"%s\"", m);
    return 0;
}

/* ---- he keygen ------------------------------------------------------------------ */

static int write_file(const char *path, const char *text, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, mode);
    if (fd < 0) {
        cli_warn("he keygen: %s: %s%s", path, strerror(errno),
                 errno == EEXIST ? " (refusing to overwrite a key)" : "");
        return CLI_EXIT_FAIL;
    }
    size_t len = strlen(text), off = 0;
    while (off < len) {
        ssize_t w = write(fd, text + off, len - off);
        if (w < 0) {
            if (errno == EINTR) continue;
            cli_warn("he keygen: %s: %s", path, strerror(errno));
            close(fd);
            return CLI_EXIT_FAIL;
        }
        off += (size_t)w;
    }
    if (write(fd, "\n", 1) != 1 || fsync(fd) != 0 || close(fd) != 0) {
        cli_warn("he keygen: %s: %s", path, strerror(errno));
        return CLI_EXIT_FAIL;
    }
    return 0;
}

static int run_keygen(cli_ctx *c)
{
    long long bits = cli_int_range(c, "bits", 3072, PVG_PAILLIER_MIN_BITS, PVG_PAILLIER_MAX_BITS);
    if (bits % 2) cli_usage_error(c, "--bits must be even");
    const char *dir = cli_str_req(c, "out");
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        cli_warn("he keygen: %s: %s", dir, strerror(errno));
        return CLI_EXIT_FAIL;
    }
    char pubp[4096], privp[4096];
    snprintf(pubp, sizeof pubp, "%s/public.json", dir);
    snprintf(privp, sizeof privp, "%s/private.json", dir);
    if (access(pubp, F_OK) == 0 || access(privp, F_OK) == 0) {
        cli_warn("he keygen: %s already holds a key (public.json or private.json); refusing to "
                 "overwrite",
                 dir);
        return CLI_EXIT_FAIL;
    }
    pvg_error err;
    pvg_error_clear(&err);
    pvg_paillier_pub *pub = NULL;
    pvg_paillier_priv *priv = NULL;
    pvg_status st = pvg_paillier_keygen((unsigned)bits, NULL, 0, &pub, &priv, &err);
    if (st != PVG_OK) return cli_fail("he keygen", st, &err);
    char date[64];
    time_t now = time(NULL);
    struct tm tmv;
    gmtime_r(&now, &tmv);
    strftime(date, sizeof date, "%Y-%m-%d %H:%M:%S", &tmv);
    char kid_pub[128], kid_priv[128];
    snprintf(kid_pub, sizeof kid_pub, "Paillier public key generated by privguide on %s", date);
    snprintf(kid_priv, sizeof kid_priv, "Paillier private key generated by privguide on %s", date);
    char *pubj = NULL, *privj = NULL;
    st = pvg_paillier_pub_to_jwk(pub, kid_pub, &pubj, &err);
    if (st == PVG_OK) st = pvg_paillier_priv_to_jwk(priv, kid_priv, &privj, &err);
    int rc = 0;
    if (st != PVG_OK) rc = cli_fail("he keygen", st, &err);
    if (!rc) rc = write_file(privp, privj, 0600);
    if (!rc) rc = write_file(pubp, pubj, 0644);
    if (!rc) {
        if (cli_bool(c, "json")) {
            printf("{\"bits\": %lld, \"public\": ", bits);
            cli_json_string(stdout, pubp);
            printf(", \"private\": ");
            cli_json_string(stdout, privp);
            printf("}\n");
        } else {
            printf("wrote %s and %s (mode 0600), %lld-bit modulus\n", pubp, privp, bits);
        }
    }
    if (privj) {
        memset(privj, 0, strlen(privj));
        free(privj);
    }
    free(pubj);
    pvg_paillier_priv_free(priv);
    pvg_paillier_pub_free(pub);
    return rc;
}

/* ---- he encrypt ----------------------------------------------------------------- */

static int run_encrypt(cli_ctx *c)
{
    int rc = 0;
    pvg_paillier_pub *pub = load_pub(cli_str_req(c, "pub"), &rc);
    if (!pub) return rc;
    long long maxe = cli_int_range(c, "exponent", PVG_PAILLIER_PHEUTIL_EXPONENT, -1000, 1000);
    pvg_paillier_obf mode;
    parse_mode(c, &mode);
    pvg_paillier_enc *enc = fresh_enc(pub, mode, &rc);
    pvg_paillier_ct *ct = enc ? pvg_paillier_ct_new(pub) : NULL;
    if (enc && !ct) rc = cli_fail("he encrypt", PVG_ERR_NOMEM, NULL);
    char *line = NULL;
    size_t cap = 0;
    long lineno = 0;
    while (ct && !rc && getline(&line, &cap, stdin) >= 0) {
        lineno++;
        trim(line);
        if (!*line) continue;
        pvg_error err;
        pvg_error_clear(&err);
        pvg_status st = pvg_paillier_encrypt_text(enc, line, (int)maxe, ct, &err);
        if (st != PVG_OK) {
            char where[64];
            snprintf(where, sizeof where, "stdin:%ld", lineno);
            rc = cli_fail(where, st, &err);
            break;
        }
        rc = print_ct(ct);
    }
    free(line);
    pvg_paillier_ct_free(ct);
    pvg_paillier_enc_free(enc);
    pvg_paillier_pub_free(pub);
    return rc;
}

/* ---- he add / he multiply --------------------------------------------------------- */

static int run_add(cli_ctx *c)
{
    int rc = 0;
    pvg_paillier_pub *given = NULL;
    if (cli_str(c, "pub") && !(given = load_pub(cli_str(c, "pub"), &rc))) return rc;
    const pvg_paillier_pub *pub = given;
    ct_list l;
    rc = read_cts(&pub, &l);
    if (rc) {
        pvg_paillier_pub_free(given);
        return rc;
    }
    pvg_paillier_ct *sum = pvg_paillier_ct_new(pub);
    pvg_error err;
    pvg_error_clear(&err);
    pvg_status st = sum ? PVG_OK : PVG_ERR_NOMEM;
    for (size_t i = 0; i < l.n && st == PVG_OK; i++)
        st = i == 0 ? pvg_paillier_ct_copy(sum, l.cts[0], &err)
                    : pvg_paillier_add(sum, sum, l.cts[i], &err);
    if (st == PVG_OK && l.n == 0) cli_warn("he add: no ciphertexts on stdin; the sum is E(0)");
    pvg_paillier_enc *enc = st == PVG_OK ? fresh_enc(pub, PVG_PAILLIER_OBF_FRESH, &rc) : NULL;
    if (st != PVG_OK)
        rc = cli_fail("he add", st, &err);
    else if (enc) {
        st = pvg_paillier_rerandomize(enc, sum, &err); /* never leak the summands' randomness */
        rc = st == PVG_OK ? print_ct(sum) : cli_fail("he add", st, &err);
    }
    pvg_paillier_enc_free(enc);
    pvg_paillier_ct_free(sum);
    ct_list_free(&l);
    pvg_paillier_pub_free(given);
    return rc;
}

static int run_multiply(cli_ctx *c)
{
    int rc = 0;
    const char *k = cli_str_req(c, "scalar");
    pvg_paillier_pub *given = NULL;
    if (cli_str(c, "pub") && !(given = load_pub(cli_str(c, "pub"), &rc))) return rc;
    const pvg_paillier_pub *pub = given;
    ct_list l;
    rc = read_cts(&pub, &l);
    if (rc) {
        pvg_paillier_pub_free(given);
        return rc;
    }
    pvg_paillier_enc *enc = fresh_enc(pub, PVG_PAILLIER_OBF_FRESH, &rc);
    pvg_error err;
    pvg_error_clear(&err);
    for (size_t i = 0; enc && !rc && i < l.n; i++) {
        pvg_status st = pvg_paillier_mul_text(l.cts[i], l.cts[i], k, &err);
        if (st == PVG_OK) st = pvg_paillier_rerandomize(enc, l.cts[i], &err);
        rc = st == PVG_OK ? print_ct(l.cts[i]) : cli_fail("he multiply", st, &err);
    }
    pvg_paillier_enc_free(enc);
    ct_list_free(&l);
    pvg_paillier_pub_free(given);
    return rc;
}

/* ---- he decrypt ------------------------------------------------------------------- */

/* Cents (an integer text) as a decimal amount "-12.35". */
static void cents_text(const char *v, char *out, size_t len)
{
    int neg = v[0] == '-';
    const char *d = v + neg;
    size_t n = strlen(d);
    if (n <= 2)
        snprintf(out, len, "%s0.%s%s", neg ? "-" : "", n == 1 ? "0" : "", d);
    else
        snprintf(out, len, "%s%.*s.%s", neg ? "-" : "", (int)(n - 2), d, d + n - 2);
}

static int run_decrypt(cli_ctx *c)
{
    int rc = 0;
    pvg_paillier_priv *priv = load_priv(cli_str_req(c, "priv"), &rc);
    if (!priv) return rc;
    const pvg_paillier_pub *pub = pvg_paillier_priv_pub(priv);
    ct_list l;
    rc = read_cts(&pub, &l);
    if (rc) {
        pvg_paillier_priv_free(priv);
        return rc;
    }
    int exact = cli_bool(c, "exact"), json = cli_bool(c, "json");
    for (size_t i = 0; i < l.n && !rc; i++) {
        char *v = NULL;
        pvg_error err;
        pvg_error_clear(&err);
        pvg_status st = exact ? pvg_paillier_decrypt_exact(priv, l.cts[i], &v, &err)
                              : pvg_paillier_decrypt_text(priv, l.cts[i], &v, &err);
        if (st != PVG_OK) {
            char where[64];
            snprintf(where, sizeof where, "value %zu", i + 1);
            rc = cli_fail(where, st, &err);
            break;
        }
        /* spend-total lines carry "group" and "unit": "cents" */
        const char *group = NULL;
        int cents = 0;
        json_t *meta = l.meta && l.meta[i] ? json_loads(l.meta[i], 0, NULL) : NULL;
        if (meta) {
            group = json_string_value(json_object_get(meta, "group"));
            const char *unit = json_string_value(json_object_get(meta, "unit"));
            cents = unit && strcmp(unit, "cents") == 0 && pvg_paillier_ct_exponent(l.cts[i]) >= 0;
        }
        char amount[256];
        const char *shown = v;
        if (cents && strlen(v) < sizeof amount - 4) {
            cents_text(v, amount, sizeof amount);
            shown = amount;
        }
        if (json) {
            printf("{");
            if (group) {
                printf("\"group\": ");
                cli_json_string(stdout, group);
                printf(", ");
            }
            printf("\"value\": ");
            cli_json_string(stdout, shown);
            printf("}\n");
        } else if (group) {
            printf("%s\t%s\n", group, shown);
        } else {
            printf("%s\n", shown);
        }
        json_decref(meta);
        free(v);
    }
    ct_list_free(&l);
    pvg_paillier_priv_free(priv);
    return rc;
}

/* ---- he spend-total ------------------------------------------------------------------ */

enum { BY_NONE = 0, BY_COUNTRY, BY_CATEGORY };

typedef struct sp_group {
    char *name;
    long long users;
    pvg_paillier_ct *sum;
} sp_group;

typedef struct sp_item {
    int64_t id;
    int group; /* index, -1 empty slot */
} sp_item;

typedef struct sp_ctx {
    pvg_store *s;
    int by;
    const pvg_paillier_pub *pub;
    pvg_paillier_enc *enc;
    sp_group *groups;
    size_t ng, gcap;
    sp_item *items; /* open addressing: item row id -> group */
    size_t icap;
    /* per user scratch */
    int *ug;
    int64_t *ucents;
    size_t un, ucap;
    int dp;
    int64_t clamp_cents;
    long max_groups;
    long long users_seen, events_used;
    pvg_status st;
    pvg_error err;
} sp_ctx;

static int group_index(sp_ctx *x, const char *name)
{
    for (size_t i = 0; i < x->ng; i++)
        if (strcmp(x->groups[i].name, name) == 0) return (int)i;
    if (x->ng == x->gcap) {
        size_t nc = x->gcap ? x->gcap * 2 : 32;
        sp_group *g = realloc(x->groups, nc * sizeof *g);
        if (!g) return -1;
        x->groups = g;
        x->gcap = nc;
    }
    sp_group *g = &x->groups[x->ng];
    g->name = strdup(name);
    g->users = 0;
    g->sum = pvg_paillier_ct_new(x->pub);
    if (!g->name || !g->sum) {
        free(g->name);
        pvg_paillier_ct_free(g->sum);
        return -1;
    }
    return (int)x->ng++;
}

static int item_group(sp_ctx *x, int64_t item_id)
{
    if (x->icap == 0) {
        x->icap = 1 << 16;
        x->items = malloc(x->icap * sizeof *x->items);
        if (!x->items) return -1;
        for (size_t i = 0; i < x->icap; i++) x->items[i].group = -2;
    }
    size_t mask = x->icap - 1, h = (size_t)((uint64_t)item_id * 0x9E3779B97F4A7C15ull) & mask;
    size_t probes = 0;
    while (x->items[h].group != -2 && x->items[h].id != item_id && probes++ < x->icap)
        h = (h + 1) & mask;
    if (x->items[h].group != -2 && x->items[h].id == item_id) return x->items[h].group;
    pvg_item *it = NULL;
    const char *cat = "(uncategorised)";
    pvg_error e;
    if (item_id > 0 && pvg_store_item_get_by_id(x->s, item_id, &it, &e) == PVG_OK && it &&
        it->category && *it->category)
        cat = it->category;
    int g = group_index(x, cat);
    pvg_item_free(it);
    if (probes < x->icap / 2) {
        x->items[h].id = item_id;
        x->items[h].group = g;
    }
    return g;
}

static int sp_user(void *ctx, const pvg_user_view *user, const pvg_event *ev, size_t n)
{
    sp_ctx *x = ctx;
    x->un = 0;
    for (size_t i = 0; i < n; i++) {
        if (!(ev[i].fields & PVG_FIELD_AMOUNT)) continue;
        if (ev[i].type != PVG_EVENT_PURCHASE && ev[i].type != PVG_EVENT_RETURN) continue;
        if (!isfinite(ev[i].amount)) continue;
        int g;
        if (x->by == BY_COUNTRY)
            g = group_index(x, (ev[i].fields & PVG_FIELD_COUNTRY) && ev[i].country && *ev[i].country
                                   ? ev[i].country
                                   : "(unknown)");
        else if (x->by == BY_CATEGORY)
            g = item_group(x, ev[i].item_id);
        else
            g = group_index(x, "all");
        if (g < 0) {
            x->st = pvg_error_set(&x->err, PVG_ERR_NOMEM, "out of memory");
            return 1;
        }
        int64_t cents = (int64_t)llround(ev[i].amount * 100.0);
        size_t k;
        for (k = 0; k < x->un; k++)
            if (x->ug[k] == g) break;
        if (k == x->un) {
            if (x->un == x->ucap) {
                size_t nc = x->ucap ? x->ucap * 2 : 16;
                int *a = realloc(x->ug, nc * sizeof *a);
                if (a) x->ug = a;
                int64_t *b = realloc(x->ucents, nc * sizeof *b);
                if (b) x->ucents = b;
                if (!a || !b) {
                    x->st = pvg_error_set(&x->err, PVG_ERR_NOMEM, "out of memory");
                    return 1;
                }
                x->ucap = nc;
            }
            x->ug[k] = g;
            x->ucents[k] = 0;
            x->un++;
        }
        x->ucents[k] += cents;
        x->events_used++;
    }
    if (x->un) x->users_seen++;
    /* The client side: each (user, group) subtotal is encrypted under the
     * analyst's key; the platform only multiplies ciphertexts. With DP, a
     * user's contribution is bounded first: at most max_groups groups (the
     * first ones seen), each subtotal clamped to [-clamp, clamp]. */
    size_t limit = x->dp && (size_t)x->max_groups < x->un ? (size_t)x->max_groups : x->un;
    pvg_paillier_ct *ct = pvg_paillier_ct_new(x->pub);
    if (!ct) {
        x->st = pvg_error_set(&x->err, PVG_ERR_NOMEM, "out of memory");
        return 1;
    }
    for (size_t k = 0; k < limit; k++) {
        int64_t v = x->ucents[k];
        if (x->dp) {
            if (v > x->clamp_cents) v = x->clamp_cents;
            if (v < -x->clamp_cents) v = -x->clamp_cents;
        }
        sp_group *g = &x->groups[x->ug[k]];
        x->st = pvg_paillier_encrypt_int64(x->enc, v, ct, &x->err);
        if (x->st == PVG_OK) x->st = pvg_paillier_add(g->sum, g->sum, ct, &x->err);
        if (x->st != PVG_OK) break;
        g->users++;
    }
    pvg_paillier_ct_free(ct);
    return x->st != PVG_OK;
}

static int cmp_group(const void *a, const void *b)
{
    return strcmp(((const sp_group *)a)->name, ((const sp_group *)b)->name);
}

static int sp_catalog_item(void *ctx, const pvg_item *it)
{
    sp_ctx *x = ctx;
    return group_index(x, it->category && *it->category ? it->category : "(uncategorised)") < 0;
}

static int run_spend_total(cli_ctx *c)
{
    int rc = 0;
    const char *by = cli_str(c, "group-by");
    sp_ctx x;
    memset(&x, 0, sizeof x);
    if (!by || strcmp(by, "none") == 0)
        x.by = BY_NONE;
    else if (strcmp(by, "country") == 0)
        x.by = BY_COUNTRY;
    else if (strcmp(by, "category") == 0)
        x.by = BY_CATEGORY;
    else
        cli_usage_error(c, "--group-by: expected category, country or none, got \"%s\"", by);
    x.dp = cli_has(c, "epsilon");
    double epsilon = x.dp ? cli_double(c, "epsilon", 0) : 0;
    double delta = cli_double(c, "delta", 0);
    if (x.dp && !(epsilon > 0 && isfinite(epsilon)))
        cli_usage_error(c, "--epsilon must be a positive number");
    if (x.dp && x.by == BY_COUNTRY && !(delta > 0 && delta < 1))
        cli_usage_error(c, "--group-by country with --epsilon needs --delta D (0 < D < 1): the "
                           "set of countries comes from the data and is selected privately");
    double clamp = cli_double(c, "clamp", 1000.0);
    if (!(clamp > 0 && clamp < 1e12)) cli_usage_error(c, "--clamp must be in (0, 1e12)");
    x.clamp_cents = (int64_t)llround(clamp * 100.0);
    x.max_groups = (long)cli_int_range(c, "max-groups", 1, 1, 1000);
    const char *dataset = cli_str(c, "dataset");
    if (!dataset) dataset = PVG_LEDGER_DEFAULT_DATASET;

    pvg_paillier_pub *pub = load_pub(cli_str_req(c, "pub"), &rc);
    if (!pub) return rc;
    x.pub = pub;
    pvg_error err;
    pvg_error_clear(&err);
    pvg_status st = pvg_store_open(cli_data_dir(c), &x.s, &err);
    if (st != PVG_OK) {
        pvg_paillier_pub_free(pub);
        return cli_fail("open store", st, &err);
    }
    x.enc = fresh_enc(pub, PVG_PAILLIER_OBF_DJN, &rc);
    pvg_rng *rng = pvg_rng_new_secure();
    if (!rng) rc = cli_fail("he spend-total", PVG_ERR_NOMEM, NULL);
    /* With DP and categories, the domain is the catalog (not personal). */
    if (!rc && x.dp && x.by == BY_CATEGORY) {
        st = pvg_store_items_foreach(x.s, sp_catalog_item, &x, &err);
        if (st != PVG_OK) rc = cli_fail("catalog", st, &err);
    }
    if (!rc && x.dp && x.by == BY_NONE && group_index(&x, "all") < 0)
        rc = cli_fail("he spend-total", PVG_ERR_NOMEM, NULL);
    if (!rc) {
        pvg_error_clear(&x.err);
        x.st = PVG_OK;
        st = pvg_store_foreach_user(x.s, PVG_FOREACH_REQUIRE_ANALYTICS, sp_user, &x, &err);
        if (x.st != PVG_OK)
            rc = cli_fail("he spend-total", x.st, &x.err);
        else if (st != PVG_OK)
            rc = cli_fail("read store", st, &err);
    }
    /* DP: private group selection (countries), encrypted noise, ledger. */
    double eps_sum = epsilon, eps_sel = 0;
    int64_t sens = x.clamp_cents * (int64_t)x.max_groups;
    char *keep = calloc(x.ng ? x.ng : 1, 1);
    if (!keep && !rc) rc = cli_fail("he spend-total", PVG_ERR_NOMEM, NULL);
    for (size_t i = 0; keep && i < x.ng; i++) keep[i] = 1;
    pvg_dp_noise_info info;
    memset(&info, 0, sizeof info);
    if (!rc && x.dp) {
        if (x.by == BY_COUNTRY) {
            eps_sel = epsilon / 2;
            eps_sum = epsilon / 2;
            pvg_dp_partition_rule rule;
            st = pvg_dp_partition_rule_make(eps_sel, delta, x.max_groups, &rule, &err);
            if (st != PVG_OK) rc = cli_fail("group selection", st, &err);
            for (size_t i = 0; !rc && i < x.ng; i++)
                keep[i] = (char)pvg_dp_partition_keep(rng, &rule, x.groups[i].users, NULL);
        }
        pvg_paillier_ct *noise = pvg_paillier_ct_new(pub);
        for (size_t i = 0; !rc && i < x.ng; i++) {
            if (!keep[i]) continue;
            int64_t z = 0;
            st = pvg_dp_laplace_int(rng, 0, sens, eps_sum, 0, &z, &info, &err);
            if (st == PVG_OK) st = pvg_paillier_encrypt_int64(x.enc, z, noise, &err);
            if (st == PVG_OK) st = pvg_paillier_add(x.groups[i].sum, x.groups[i].sum, noise, &err);
            if (st != PVG_OK) rc = cli_fail("noise", st, &err);
        }
        pvg_paillier_ct_free(noise);
        if (!rc) {
            char what[160];
            snprintf(what, sizeof what, "encrypted spend total by %s (clamp %.2f, max %ld groups)",
                     by ? by : "none", clamp, x.max_groups);
            st = pvg_ledger_charge(x.s, dataset, what, "discrete-laplace",
                                   epsilon, x.by == BY_COUNTRY ? delta : 0, NULL, &err);
            if (st != PVG_OK) rc = cli_fail("privacy budget", st, &err);
        }
    }
    /* Every ciphertext that leaves is re-randomised. */
    for (size_t i = 0; !rc && i < x.ng; i++) {
        st = pvg_paillier_rerandomize(x.enc, x.groups[i].sum, &err);
        if (st != PVG_OK) rc = cli_fail("he spend-total", st, &err);
    }
    if (!rc) {
        /* sort groups (and their keep flags) by name */
        for (size_t i = 0; i < x.ng; i++) x.groups[i].users = keep[i] ? x.groups[i].users : -1;
        qsort(x.groups, x.ng, sizeof *x.groups, cmp_group);
        for (size_t i = 0; i < x.ng; i++) {
            if (x.groups[i].users < 0) continue;
            char *cj = NULL;
            st = pvg_paillier_ct_to_json(x.groups[i].sum, &cj, &err);
            if (st != PVG_OK) {
                rc = cli_fail("output", st, &err);
                break;
            }
            printf("{\"group\": ");
            cli_json_string(stdout, x.groups[i].name);
            if (!x.dp) printf(", \"users\": %lld", x.groups[i].users);
            else printf(", \"epsilon\": %.17g, \"noise_scale_cents\": %.17g", epsilon, info.scale);
            printf(", \"unit\": \"cents\", %s\n", cj + 1); /* splice {"v","e"} */
            free(cj);
        }
        if (!cli_bool(c, "json") && isatty(2))
            cli_warn("%lld users, %lld purchase/return lines, %zu groups; decrypt with `privguide "
                     "he decrypt --priv private.json`",
                     x.users_seen, x.events_used, x.ng);
    }
    free(keep);
    for (size_t i = 0; i < x.ng; i++) {
        free(x.groups[i].name);
        pvg_paillier_ct_free(x.groups[i].sum);
    }
    free(x.groups);
    free(x.items);
    free(x.ug);
    free(x.ucents);
    pvg_rng_free(rng);
    pvg_paillier_enc_free(x.enc);
    pvg_store_close(x.s);
    pvg_paillier_pub_free(pub);
    return rc;
}

/* ---- he bench ------------------------------------------------------------------------ */

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* Runs an encryption loop for at least `seconds` and `min_ops`. */
static double bench_encrypt(pvg_paillier_enc *enc, pvg_paillier_ct *ct, double seconds,
                            long min_ops, pvg_status *st, pvg_error *err)
{
    static const char *vals[] = {"12.35", "-4.99", "1234.5", "0.01", "77"};
    long ops = 0;
    double t0 = now_s(), t;
    do {
        *st = pvg_paillier_encrypt_text(enc, vals[ops % 5], INT_MAX, ct, err);
        if (*st != PVG_OK) return 0;
        ops++;
        t = now_s();
    } while (t - t0 < seconds || ops < min_ops);
    return (double)ops / (t - t0);
}

static int run_bench(cli_ctx *c)
{
    long long bits = cli_int_range(c, "bits", 2048, PVG_PAILLIER_MIN_BITS, PVG_PAILLIER_MAX_BITS);
    if (bits % 2) cli_usage_error(c, "--bits must be even");
    long long threads = cli_int_range(c, "threads", 1, 1, 64);
    double secs = cli_double(c, "seconds", 2.0);
    double pool_secs = cli_double(c, "pool-seconds", 5.0);
    if (!(secs > 0 && secs <= 600)) cli_usage_error(c, "--seconds must be in (0, 600]");
    if (!(pool_secs >= 5 && pool_secs <= 600)) cli_usage_error(c, "--pool-seconds must be in [5, 600]");
    pvg_error err;
    pvg_error_clear(&err);
    pvg_status st;
    double t0 = now_s();
    pvg_paillier_pub *pub = NULL;
    pvg_paillier_priv *priv = NULL;
    st = pvg_paillier_keygen((unsigned)bits, NULL, 0, &pub, &priv, &err);
    if (st != PVG_OK) return cli_fail("he bench: keygen", st, &err);
    double keygen_s = now_s() - t0;
    int rc = 0;
    pvg_paillier_ct *ct = pvg_paillier_ct_new(pub), *ct2 = pvg_paillier_ct_new(pub);
    double enc_fresh = 0, enc_djn = 0, enc_pool = 0, dec = 0, add = 0, mul = 0;
    pvg_paillier_enc *fresh = fresh_enc(pub, PVG_PAILLIER_OBF_FRESH, &rc);
    if (fresh) enc_fresh = bench_encrypt(fresh, ct, secs, 10, &st, &err);
    pvg_paillier_enc *djn = rc ? NULL : fresh_enc(pub, PVG_PAILLIER_OBF_DJN, &rc); /* setup untimed */
    if (djn && st == PVG_OK) enc_djn = bench_encrypt(djn, ct, secs, 10, &st, &err);
    if (!rc && st == PVG_OK) {
        /* the pool starts empty: the whole window is refilled by its threads */
        pvg_paillier_enc_options o = {.mode = PVG_PAILLIER_OBF_POOL, .threads = (unsigned)threads,
                                      .pool_size = 64};
        pvg_paillier_enc *pool = NULL;
        st = pvg_paillier_enc_new(pub, &o, &pool, &err);
        if (st == PVG_OK) enc_pool = bench_encrypt(pool, ct, pool_secs, 10, &st, &err);
        pvg_paillier_enc_free(pool);
    }
    if (!rc && st == PVG_OK) st = pvg_paillier_encrypt_text(djn, "12.35", INT_MAX, ct, &err);
    if (!rc && st == PVG_OK) st = pvg_paillier_encrypt_text(djn, "-3.5", INT_MAX, ct2, &err);
    if (!rc && st == PVG_OK) {
        long ops = 0;
        double t1 = now_s(), t;
        do {
            double v;
            st = pvg_paillier_decrypt_double(priv, ct, &v, &err);
            ops++;
            t = now_s();
        } while (st == PVG_OK && (t - t1 < secs || ops < 10));
        dec = (double)ops / (t - t1);
    }
    if (!rc && st == PVG_OK) {
        long ops = 0;
        double t1 = now_s(), t;
        do {
            for (int k = 0; k < 256 && st == PVG_OK; k++) st = pvg_paillier_add(ct2, ct2, ct, &err);
            ops += 256;
            t = now_s();
        } while (st == PVG_OK && t - t1 < secs);
        add = (double)ops / (t - t1);
    }
    if (!rc && st == PVG_OK) {
        /* scalar: a float amount, encoded as python-paillier does (53-bit mantissa) */
        long ops = 0;
        double t1 = now_s(), t;
        do {
            st = pvg_paillier_mul_text(ct2, ct, "1.0625", &err);
            ops++;
            t = now_s();
        } while (st == PVG_OK && (t - t1 < secs || ops < 10));
        mul = (double)ops / (t - t1);
    }
    if (!rc && st != PVG_OK) rc = cli_fail("he bench", st, &err);
    if (!rc) {
        json_t *o = json_object();
        json_object_set_new(o, "bits", json_integer(bits));
        json_object_set_new(o, "threads", json_integer(threads));
        json_object_set_new(o, "keygen_seconds", json_real(keygen_s));
        json_object_set_new(o, "encrypt_per_s", json_real(enc_fresh));
        json_object_set_new(o, "encrypt_djn_per_s", json_real(enc_djn));
        json_object_set_new(o, "encrypt_pool_sustained_per_s", json_real(enc_pool));
        json_object_set_new(o, "decrypt_per_s", json_real(dec));
        json_object_set_new(o, "add_per_s", json_real(add));
        json_object_set_new(o, "scalar_mul_per_s", json_real(mul));
        json_object_set_new(o, "djn_exponent_bits",
                            json_integer(pvg_paillier_djn_exponent_bits((unsigned)bits)));
        json_object_set_new(o, "pool_seconds", json_real(pool_secs));
        char *s = json_dumps(o, JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
        json_decref(o);
        if (cli_bool(c, "json") || !cli_interactive(c)) {
            puts(s ? s : "{}");
        } else {
            printf("Paillier %lld bits (one core unless noted)\n", bits);
            printf("  keygen                 %10.3f s\n", keygen_s);
            printf("  encrypt (fresh r^n)    %10.1f /s\n", enc_fresh);
            printf("  encrypt (DJN)          %10.1f /s\n", enc_djn);
            printf("  encrypt (pool, %lld thr) %10.1f /s sustained over %.0f s\n", threads,
                   enc_pool, pool_secs);
            printf("  decrypt (CRT)          %10.1f /s\n", dec);
            printf("  add                    %10.0f /s\n", add);
            printf("  scalar multiply        %10.1f /s\n", mul);
        }
        free(s);
    }
    pvg_paillier_enc_free(fresh);
    pvg_paillier_enc_free(djn);
    pvg_paillier_ct_free(ct);
    pvg_paillier_ct_free(ct2);
    pvg_paillier_priv_free(priv);
    pvg_paillier_pub_free(pub);
    return rc;
}

/* ---- table ------------------------------------------------------------------------------ */

static const cli_flag keygen_flags[] = {
    {"bits", CLI_INT, "B", "modulus size in bits, even, >= 2048 (default 3072)"},
    {"out", CLI_STR, "DIR", "directory for public.json and private.json (created 0700)"},
    {"json", CLI_BOOL, NULL, "print the file names as JSON"},
    {0},
};

static const cli_flag encrypt_flags[] = {
    {"pub", CLI_STR, "FILE", "public key (pheutil JWK)"},
    {"exponent", CLI_INT, "E", "lower every exponent to at most E (default -32, as pheutil)"},
    {"obfuscator", CLI_STR, "KIND", "djn (short exponent, default) or fresh (r^n per encryption)"},
    {0},
};

static const cli_flag add_flags[] = {
    {"pub", CLI_STR, "FILE", "public key (needed unless stdin is a list document with its key)"},
    {0},
};

static const cli_flag mul_flags[] = {
    {"scalar", CLI_STR, "K", "plaintext multiplier: an integer or a decimal"},
    {"pub", CLI_STR, "FILE", "public key (needed unless stdin is a list document with its key)"},
    {0},
};

static const cli_flag decrypt_flags[] = {
    {"priv", CLI_STR, "FILE", "private key (pheutil JWK)"},
    {"exact", CLI_BOOL, NULL, "print the exact decimal value instead of Python's float text"},
    {"json", CLI_BOOL, NULL, "one JSON object per value"},
    {0},
};

static const cli_flag spend_flags[] = {
    {"pub", CLI_STR, "FILE", "the analyst's public key"},
    {"group-by", CLI_STR, "G", "category, country or none (default none)"},
    {"epsilon", CLI_DOUBLE, "E", "add encrypted discrete-Laplace noise for E-DP and charge the ledger"},
    {"delta", CLI_DOUBLE, "D", "with --group-by country and --epsilon: delta of the country selection"},
    {"clamp", CLI_DOUBLE, "C", "with --epsilon: bound of one user's total per group (default 1000)"},
    {"max-groups", CLI_INT, "K", "with --epsilon: groups one user may contribute to (default 1)"},
    {"dataset", CLI_STR, "NAME", "budget ledger to charge (default \"default\")"},
    {"json", CLI_BOOL, NULL, "no summary on stderr"},
    {0},
};

static const cli_flag bench_flags[] = {
    {"bits", CLI_INT, "B", "modulus size (default 2048)"},
    {"threads", CLI_INT, "N", "background threads filling the obfuscator pool (default 1)"},
    {"seconds", CLI_DOUBLE, "S", "time per measurement (default 2)"},
    {"pool-seconds", CLI_DOUBLE, "S", "pool measurement window, >= 5 (default 5)"},
    {"json", CLI_BOOL, NULL, "print JSON"},
    {0},
};

const cli_command cli_cmds_he[] = {
    {"he keygen", NULL, 0, 0, "generate a Paillier key pair (python-paillier pheutil format)",
     "Writes DIR/public.json and DIR/private.json (mode 0600) as pheutil JWK files:\n"
     "{\"kty\":\"DAJ\",\"alg\":\"PAI-GN1\",\"n\":base64url} and the private form with p, q.",
     keygen_flags, run_keygen},
    {"he encrypt", NULL, 0, 0, "encrypt numbers read from stdin, one per line",
     "Integers are encoded exactly, decimals as python-paillier encodes floats (base 16\n"
     "exponents). Output: one {\"v\": \"<ciphertext>\", \"e\": <exponent>} per line.",
     encrypt_flags, run_encrypt},
    {"he add", NULL, 0, 0, "sum the encrypted numbers on stdin (no private key needed)",
     "Reads one encrypted number per line (with --pub) or a python-paillier list document\n"
     "{\"public_key\": {\"n\": N}, \"values\": [[\"<c>\", e], ...]}; prints the re-randomised sum.",
     add_flags, run_add},
    {"he multiply", NULL, 0, 0, "multiply each encrypted number on stdin by a plaintext scalar",
     NULL, mul_flags, run_multiply},
    {"he decrypt", NULL, 0, 0, "decrypt the encrypted numbers on stdin",
     "Prints each value as Python prints the decoded number (integers exactly, decimals as\n"
     "the nearest double); spend-total lines print \"group<TAB>amount\".",
     decrypt_flags, run_decrypt},
    {"he spend-total", NULL, 0, 0, "encrypted total spend per group, from the store",
     "Each user's total spend (purchases minus returns, in cents) is encrypted under the\n"
     "analyst's public key as a client would; the platform multiplies the ciphertexts of each\n"
     "group and prints one re-randomised ciphertext per group. With --epsilon, contributions\n"
     "are bounded (--clamp, --max-groups), encrypted discrete-Laplace noise is added before\n"
     "anything leaves, and the release is charged to the privacy budget ledger.",
     spend_flags, run_spend_total},
    {"he bench", NULL, 0, 0, "measure Paillier key generation, encryption, decryption, sums",
     "encrypt_per_s uses a fresh r^n per encryption; encrypt_djn_per_s the short-exponent\n"
     "obfuscator (its per-key tables are built before timing); the pool figure is measured\n"
     "from an empty pool over --pool-seconds. Single-threaded except the pool's workers.",
     bench_flags, run_bench},
    {0},
};
