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

#include <privguide/access.h>

#include <privguide/audit.h>
#include <privguide/paillier.h>
#include <privguide/store.h>

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- helpers ---------------------------------------------------------------- */

#define HE_KEY_FILE_MAX (1u << 20)
#define HE_STDIN_MAX (64u << 20) /* the library refuses larger JSON documents */

/* Reads a key file whole. secret: into sodium_malloc memory (free it with
 * free_text(.., 1), which wipes it), read unbuffered so that no stdio buffer
 * keeps a copy; else malloc. */
static char *read_text_file(const char *path, size_t max, int secret, pvg_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        pvg_error_set(err, PVG_ERR_IO, "%s: %s", path, strerror(errno));
        return NULL;
    }
    if (secret) setvbuf(f, NULL, _IONBF, 0);
    char *buf = secret ? sodium_malloc(max + 1) : malloc(max + 1);
    size_t n = buf ? fread(buf, 1, max + 1, f) : 0;
    int bad = ferror(f);
    fclose(f);
    if (!buf) {
        pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
        return NULL;
    }
    if (bad || n > max) {
        if (secret)
            sodium_free(buf); /* wipes */
        else
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
    char *text = read_text_file(path, HE_KEY_FILE_MAX, 0, &err);
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
    char *text = read_text_file(path, HE_KEY_FILE_MAX, 1, &err);
    pvg_paillier_priv *priv = NULL;
    pvg_status st = text ? pvg_paillier_priv_from_jwk(text, path, &priv, &err) : err.code;
    if (text) sodium_free(text); /* wipes the whole buffer, not only up to a NUL */
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
    while (s[i] == ' ' || s[i] == '\t')
        i++;
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
        for (size_t i = 0; i < l->n; i++)
            free(l->meta[i]);
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
        pvg_status st =
            pvg_paillier_list_from_json(all, "stdin", *pub, 0, &lp, &out->cts, &out->n, &err);
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
        sodium_memzero(privj, strlen(privj)); /* memset before free may be optimised away */
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
    int list = cli_bool(c, "list");
    pvg_paillier_ct **all = NULL;
    size_t n_all = 0, cap_all = 0;
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
        if (!list) {
            rc = print_ct(ct);
            continue;
        }
        if (n_all == cap_all) {
            size_t nc = cap_all ? cap_all * 2 : 64;
            pvg_paillier_ct **a = realloc(all, nc * sizeof *a);
            if (!a) {
                rc = cli_fail("he encrypt", PVG_ERR_NOMEM, NULL);
                break;
            }
            all = a;
            cap_all = nc;
        }
        all[n_all++] = ct;
        ct = pvg_paillier_ct_new(pub);
        if (!ct) rc = cli_fail("he encrypt", PVG_ERR_NOMEM, NULL);
    }
    if (list && !rc) {
        char *doc = NULL;
        pvg_error err;
        pvg_error_clear(&err);
        pvg_status st = pvg_paillier_list_to_json(pub, all, n_all, &doc, &err);
        if (st != PVG_OK)
            rc = cli_fail("he encrypt", st, &err);
        else
            puts(doc);
        free(doc);
    }
    pvg_paillier_ct_array_free(all, n_all);
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
    /* the library's batch sum: one Montgomery product a term */
    pvg_status st = sum ? pvg_paillier_sum(sum, l.cts, l.n, &err) : PVG_ERR_NOMEM;
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

static int run_spend_total(cli_ctx *c)
{
    int rc = 0;
    const char *by = cli_str(c, "group-by");
    pvg_spend_options o = {0};
    if (!by || strcmp(by, "none") == 0)
        o.group_by = PVG_SPEND_BY_NONE;
    else if (strcmp(by, "country") == 0)
        o.group_by = PVG_SPEND_BY_COUNTRY;
    else if (strcmp(by, "category") == 0)
        o.group_by = PVG_SPEND_BY_CATEGORY;
    else
        cli_usage_error(c, "--group-by: expected category, country or none, got \"%s\"", by);
    o.dp = cli_has(c, "epsilon");
    int exact = cli_bool(c, "exact");
    /* DP by default: exact per-group totals hand the key holder what single
     * shoppers spent (a group of one shopper decrypts to that shopper's spend) */
    if (!o.dp && !exact)
        cli_usage_error(
            c, "give --epsilon E (a differentially private release, charged to the ledger), or "
               "--exact for exact totals (operator only; written to the audit log)");
    if (o.dp && exact) cli_usage_error(c, "--exact and --epsilon exclude each other");
    o.epsilon = o.dp ? cli_double(c, "epsilon", 0) : 0;
    o.delta = cli_double(c, "delta", 0);
    if (o.dp && !(o.epsilon > 0 && isfinite(o.epsilon)))
        cli_usage_error(c, "--epsilon must be a positive number");
    if (o.dp && o.group_by == PVG_SPEND_BY_COUNTRY && !(o.delta > 0 && o.delta < 1))
        cli_usage_error(c, "--group-by country with --epsilon needs --delta D (0 < D < 1): the "
                           "set of countries comes from the data and is selected privately");
    o.clamp = cli_double(c, "clamp", 1000.0);
    if (!(o.clamp > 0 && o.clamp < 1e12)) cli_usage_error(c, "--clamp must be in (0, 1e12)");
    o.max_groups = (long)cli_int_range(c, "max-groups", 1, 1, 1000);
    o.dataset = cli_str(c, "dataset");
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    o.threads = (unsigned)cli_int_range(c, "threads", ncpu > 0 && ncpu < 16 ? ncpu : 2, 1, 64);

    pvg_paillier_pub *pub = load_pub(cli_str_req(c, "pub"), &rc);
    if (!pub) return rc;
    pvg_error err;
    pvg_error_clear(&err);
    pvg_store *s = NULL;
    pvg_status st = pvg_store_open(cli_data_dir(c), &s, &err);
    if (st != PVG_OK) {
        pvg_paillier_pub_free(pub);
        return cli_fail("open store", st, &err);
    }
    pvg_spend_result *r = NULL;
    /* through the gate: the release (exact or DP) is in the audit log before
     * anything is computed; no record, no output */
    pvg_access g;
    pvg_access_init(&g, s, "cli");
    st = pvg_access_spend_total(&g, pub, &o, &r, &err);
    if (st != PVG_OK) rc = cli_fail("he spend-total", st, &err);
    if (!rc && exact)
        cli_warn(
            "warning: --exact releases EXACT per-group spend totals, not differentially private: a "
            "group with one shopper decrypts to that shopper's spend. Recorded in the audit log.");
    for (size_t i = 0; !rc && i < r->n; i++) {
        char *cj = NULL;
        st = pvg_paillier_ct_to_json(r->groups[i].total, &cj, &err);
        if (st != PVG_OK) {
            rc = cli_fail("output", st, &err);
            break;
        }
        printf("{\"group\": ");
        cli_json_string(stdout, r->groups[i].name);
        /* never the per-group number of shoppers (exact counts, even with --exact) */
        if (o.dp)
            printf(", \"epsilon\": %.17g, \"noise_scale_cents\": %.17g", o.epsilon, r->noise_scale);
        else
            printf(", \"exact\": true");
        printf(", \"unit\": \"cents\", %s\n", cj + 1); /* splice {"v", "e"} */
        free(cj);
    }
    if (!rc && !cli_bool(c, "json")) {
        if (o.dp)
            cli_warn("%zu encrypted group total%s on stdout (epsilon %g delta %g charged to the "
                     "ledger, discrete-Laplace noise of scale %.6g cents per group); decrypt with "
                     "`privguide he decrypt --priv private.json`",
                     r->n, r->n == 1 ? "" : "s", o.epsilon, o.delta, r->noise_scale);
        else
            cli_warn("%zu EXACT encrypted group total%s on stdout; decrypt with `privguide he "
                     "decrypt --priv private.json`",
                     r->n, r->n == 1 ? "" : "s");
    }
    pvg_spend_result_free(r);
    pvg_store_free(s);
    pvg_paillier_pub_free(pub);
    return rc;
}

/* ---- he bench ------------------------------------------------------------------------ */

/* Single-threaded measures use this thread's CPU time, so that they give
 * the rate of one core even when other processes share the machine; the
 * pool, whose work happens in other threads, is timed by the wall clock. */
static double cpu_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static double wall_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* Runs an encryption loop for at least `seconds` and `min_ops`. */
static double bench_encrypt(pvg_paillier_enc *enc, pvg_paillier_ct *ct, double seconds,
                            long min_ops, double (*now_s)(void), pvg_status *st, pvg_error *err)
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
    if (!(pool_secs >= 5 && pool_secs <= 600))
        cli_usage_error(c, "--pool-seconds must be in [5, 600]");
    pvg_error err;
    pvg_error_clear(&err);
    pvg_status st;
    double t0 = cpu_s();
    pvg_paillier_pub *pub = NULL;
    pvg_paillier_priv *priv = NULL;
    st = pvg_paillier_keygen((unsigned)bits, NULL, 0, &pub, &priv, &err);
    if (st != PVG_OK) return cli_fail("he bench: keygen", st, &err);
    double keygen_s = cpu_s() - t0;
    int rc = 0;
    pvg_paillier_ct *ct = pvg_paillier_ct_new(pub), *ct2 = pvg_paillier_ct_new(pub);
    double enc_fresh = 0, enc_djn = 0, enc_pool = 0, dec = 0, add = 0, mul = 0;
    pvg_paillier_enc *fresh = fresh_enc(pub, PVG_PAILLIER_OBF_FRESH, &rc);
    if (fresh) enc_fresh = bench_encrypt(fresh, ct, secs, 10, cpu_s, &st, &err);
    pvg_paillier_enc *djn =
        rc ? NULL : fresh_enc(pub, PVG_PAILLIER_OBF_DJN, &rc); /* setup untimed */
    if (djn && st == PVG_OK) enc_djn = bench_encrypt(djn, ct, secs, 10, cpu_s, &st, &err);
    if (!rc && st == PVG_OK) {
        /* the pool starts empty: the whole window is refilled by its threads */
        pvg_paillier_enc_options o = {
            .mode = PVG_PAILLIER_OBF_POOL, .threads = (unsigned)threads, .pool_size = 64};
        pvg_paillier_enc *pool = NULL;
        st = pvg_paillier_enc_new(pub, &o, &pool, &err);
        if (st == PVG_OK) enc_pool = bench_encrypt(pool, ct, pool_secs, 10, wall_s, &st, &err);
        pvg_paillier_enc_free(pool);
    }
    if (!rc && st == PVG_OK) st = pvg_paillier_encrypt_text(djn, "12.35", INT_MAX, ct, &err);
    if (!rc && st == PVG_OK) st = pvg_paillier_encrypt_text(djn, "-3.5", INT_MAX, ct2, &err);
    if (!rc && st == PVG_OK) {
        long ops = 0;
        double t1 = cpu_s(), t;
        do {
            double v;
            st = pvg_paillier_decrypt_double(priv, ct, &v, &err);
            ops++;
            t = cpu_s();
        } while (st == PVG_OK && (t - t1 < secs || ops < 10));
        dec = (double)ops / (t - t1);
    }
    if (!rc && st == PVG_OK) {
        long ops = 0;
        double t1 = cpu_s(), t;
        do {
            for (int k = 0; k < 256 && st == PVG_OK; k++)
                st = pvg_paillier_add(ct2, ct2, ct, &err);
            ops += 256;
            t = cpu_s();
        } while (st == PVG_OK && t - t1 < secs);
        add = (double)ops / (t - t1);
    }
    if (!rc && st == PVG_OK) {
        /* scalar: a float amount, encoded as python-paillier does (53-bit mantissa) */
        long ops = 0;
        double t1 = cpu_s(), t;
        do {
            st = pvg_paillier_mul_text(ct2, ct, "1.0625", &err);
            ops++;
            t = cpu_s();
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
        json_object_set_new(o, "timing", json_string("thread CPU time, pool: wall clock"));
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
    {"list", CLI_BOOL, NULL,
     "print one python-paillier list document {\"public_key\", \"values\"}"},
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
    {"epsilon", CLI_DOUBLE, "E",
     "add encrypted discrete-Laplace noise for E-DP and charge the ledger"},
    {"exact", CLI_BOOL, NULL,
     "instead of --epsilon: exact totals (operator only; warned and audited)"},
    {"delta", CLI_DOUBLE, "D",
     "with --group-by country and --epsilon: delta of the country selection"},
    {"clamp", CLI_DOUBLE, "C",
     "with --epsilon: bound of one user's total per group (default 1000)"},
    {"max-groups", CLI_INT, "K", "with --epsilon: groups one user may contribute to (default 1)"},
    {"dataset", CLI_STR, "NAME",
     "label noted with the release (charged to the store budget as spend_totals)"},
    {"threads", CLI_INT, "N", "threads encrypting the users' subtotals (default: CPUs online)"},
    {"json", CLI_BOOL, NULL, "no summary on stderr (stdout is JSON lines either way)"},
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
     "group and prints one re-randomised ciphertext per group. --epsilon is required:\n"
     "contributions are bounded (--clamp, --max-groups), encrypted discrete-Laplace noise is\n"
     "added before anything leaves, and the release is charged to the privacy budget ledger.\n"
     "--exact instead releases exact totals: a warning on stderr and an audit log entry\n"
     "(action he_spend_total_exact) before any output. Shopper counts are never printed.\n"
     "Output: one JSON line per group on stdout; then, unless --json, a summary on stderr\n"
     "(groups, the epsilon and delta charged, the noise scale).",
     spend_flags, run_spend_total},
    {"he bench", NULL, 0, 0, "measure Paillier key generation, encryption, decryption, sums",
     "encrypt_per_s uses a fresh r^n per encryption; encrypt_djn_per_s the short-exponent\n"
     "obfuscator (its per-key tables are built before timing); the pool figure is measured\n"
     "from an empty pool over --pool-seconds of wall time. Every other figure is one core's:\n"
     "single-threaded, timed by the thread's CPU time (robust to other load).",
     bench_flags, run_bench},
    {0},
};
