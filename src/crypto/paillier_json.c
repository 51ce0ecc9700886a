/*
 * paillier_json.c - python-paillier's serialisations: pheutil JWK key files
 * ({"kty":"DAJ","alg":"PAI-GN1","n":base64url} and the private form with
 * base64url "p", "q" and the embedded "pub"), encrypted numbers
 * {"v":"<c>","e":<exponent>}, and the plain list form
 * {"public_key":{"g":G,"n":N},"values":[["<c>",e],...]} in which G and N are
 * JSON integers of thousands of bits.
 *
 * jansson holds integers in 64 bits, so before parsing, integer literals of
 * more than 18 digits outside strings are wrapped in quotes (a lexical pass
 * that tracks strings and escapes); the readers accept both forms.
 */
#include "crypto/paillier_internal.h"

#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HE_JSON_MAX (64u << 20) /* refuse inputs above 64 MiB */

/* A copy of json with long integer literals quoted (malloc). */
static char *quote_big_integers(const char *json)
{
    size_t len = strlen(json);
    /* worst case: every literal of 19+ chars gains 2: at most len/19*2 extra */
    char *out = malloc(len + len / 9 + 3);
    if (!out) return NULL;
    size_t o = 0;
    int in_str = 0;
    for (size_t i = 0; i < len;) {
        char ch = json[i];
        if (in_str) {
            out[o++] = ch;
            if (ch == '\\' && i + 1 < len) {
                out[o++] = json[i + 1];
                i += 2;
                continue;
            }
            if (ch == '"') in_str = 0;
            i++;
            continue;
        }
        if (ch == '"') {
            in_str = 1;
            out[o++] = ch;
            i++;
            continue;
        }
        if (ch == '-' || (ch >= '0' && ch <= '9')) {
            size_t j = i + (ch == '-');
            while (j < len && json[j] >= '0' && json[j] <= '9')
                j++;
            size_t digits = j - i - (ch == '-');
            int is_int = !(j < len && (json[j] == '.' || json[j] == 'e' || json[j] == 'E'));
            if (is_int && digits > 18) {
                out[o++] = '"';
                memcpy(out + o, json + i, j - i);
                o += j - i;
                out[o++] = '"';
            } else {
                memcpy(out + o, json + i, j - i);
                o += j - i;
            }
            if (j == i) j++; /* lone '-' */
            i = j;
            continue;
        }
        out[o++] = ch;
        i++;
    }
    out[o] = '\0';
    return out;
}

/* The members of a private key that are secret. */
#define N_SECRETS 4
static const char *const SECRET_NAMES[N_SECRETS] = {"p", "q", "lambda", "mu"};

/* Takes the string values of the root object's secret members out of q
 * before jansson sees it: each is copied into secure memory (vals[i], NULL
 * when absent; free with sodium_free) and overwritten in q with 'A's, so
 * neither jansson's lexer buffers nor its tree ever hold a secret (they
 * are freed without wiping). A value with an escape is left to jansson
 * (base64url has none). Returns -1 when out of secure memory. */
static int lift_secrets(char *q, char *vals[N_SECRETS])
{
    int depth = 0, want_key = 0;
    for (size_t i = 0; q[i];) {
        char ch = q[i];
        if (ch == '"') {
            size_t k = i + 1;
            int esc = 0;
            while (q[k] && q[k] != '"') {
                if (q[k] == '\\') {
                    esc = 1;
                    if (!q[k + 1]) break;
                    k++;
                }
                k++;
            }
            if (!q[k]) return 0; /* unterminated: jansson reports it */
            int key = depth == 1 && want_key;
            want_key = 0;
            int which = -1;
            for (int n = 0; key && !esc && n < N_SECRETS; n++)
                if (strlen(SECRET_NAMES[n]) == k - i - 1 &&
                    memcmp(q + i + 1, SECRET_NAMES[n], k - i - 1) == 0)
                    which = n;
            i = k + 1;
            if (which < 0) continue;
            size_t v = i;
            while (q[v] == ' ' || q[v] == '\t' || q[v] == '\n' || q[v] == '\r')
                v++;
            if (q[v] != ':') continue;
            v++;
            while (q[v] == ' ' || q[v] == '\t' || q[v] == '\n' || q[v] == '\r')
                v++;
            if (q[v] != '"') continue;
            size_t e = v + 1;
            while (q[e] && q[e] != '"' && q[e] != '\\')
                e++;
            if (q[e] != '"' || vals[which]) continue; /* escaped, or a duplicate: jansson's */
            size_t len = e - v - 1;
            vals[which] = sodium_malloc(len + 1);
            if (!vals[which]) return -1;
            memcpy(vals[which], q + v + 1, len);
            vals[which][len] = 0;
            memset(q + v + 1, 'A', len);
            i = e + 1;
            continue;
        }
        if (ch == '{' || ch == '[') depth++;
        if (ch == '}' || ch == ']') depth--;
        if (depth == 1 && (ch == '{' || ch == ',')) want_key = 1;
        i++;
    }
    return 0;
}

static void secrets_free(char *vals[N_SECRETS])
{
    for (int n = 0; n < N_SECRETS; n++) {
        if (vals[n]) sodium_free(vals[n]); /* wipes */
        vals[n] = NULL;
    }
}

/* secrets: non-NULL for a private key (lift_secrets). */
static pvg_status parse_json(const char *json, const char *source, long line_base, json_t **out,
                             char *secrets[N_SECRETS], pvg_error *err)
{
    *out = NULL;
    if (!json) return pvg_error_set(err, PVG_ERR_INVALID, "%s: no input", source);
    /* Every key parser comes through here: libsodium must be initialised
     * before sodium_malloc, and the wiping GMP hooks installed before the
     * first mpz holding key material is allocated. */
    if (pvg_init() != PVG_OK) return pvg_error_set(err, PVG_ERR_INTERNAL, "libsodium init failed");
    pvg_he_gmp_init();
    if (strlen(json) > HE_JSON_MAX)
        return pvg_error_set_at(err, PVG_ERR_INVALID, source, line_base, 0, -1,
                                "input larger than %u bytes", HE_JSON_MAX);
    char *q = quote_big_integers(json);
    if (!q) return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    if (secrets && lift_secrets(q, secrets) != 0) {
        sodium_memzero(q, strlen(q));
        free(q);
        secrets_free(secrets);
        return pvg_error_set(err, PVG_ERR_NOMEM, "out of secure memory");
    }
    json_error_t je;
    json_t *root = json_loads(q, JSON_REJECT_DUPLICATES, &je);
    sodium_memzero(q, strlen(q)); /* a private key's digits were copied here */
    free(q);
    if (!root && secrets) secrets_free(secrets);
    if (!root)
        return pvg_error_set_at(err, PVG_ERR_INVALID, source,
                                line_base > 0 ? line_base + je.line - 1 : je.line, je.column, -1,
                                "malformed JSON: %s", je.text);
    if (!json_is_object(root)) {
        json_decref(root);
        if (secrets) secrets_free(secrets);
        return pvg_error_set_at(err, PVG_ERR_INVALID, source, line_base > 0 ? line_base : 1, 1, 0,
                                "expected a JSON object");
    }
    *out = root;
    return PVG_OK;
}

/* A big integer held as a decimal string or a JSON integer. */
static pvg_status get_decimal(json_t *v, const char *source, long line, const char *field,
                              size_t max_digits, mpz_t out, pvg_error *err)
{
    if (!v)
        return pvg_error_set_at(err, PVG_ERR_INVALID, source, line, 0, -1, "missing field \"%s\"",
                                field);
    char buf[32];
    const char *s;
    if (json_is_string(v)) {
        s = json_string_value(v);
    } else if (json_is_integer(v)) {
        snprintf(buf, sizeof buf, "%lld", (long long)json_integer_value(v));
        s = buf;
    } else {
        return pvg_error_set_at(err, PVG_ERR_INVALID, source, line, 0, -1,
                                "field \"%s\": expected a decimal integer (string or number)",
                                field);
    }
    size_t len = strlen(s);
    if (len == 0 || len > max_digits)
        return pvg_error_set_at(err, PVG_ERR_INVALID, source, line, 0, -1,
                                "field \"%s\": %s (%zu digits, at most %zu accepted)", field,
                                len ? "too long" : "empty", len, max_digits);
    for (size_t i = 0; i < len; i++)
        if (s[i] < '0' || s[i] > '9')
            return pvg_error_set_at(
                err, PVG_ERR_INVALID, source, line, 0, -1,
                "field \"%s\": expected decimal digits, found '%c' at offset %zu", field, s[i], i);
    mpz_set_str(out, s, 10);
    return PVG_OK;
}

/* ---- base64url integers ------------------------------------------------------- */

static char *int_to_b64(const mpz_t x)
{
    size_t n = 0;
    unsigned char *bytes = mpz_export(NULL, &n, 1, 1, 1, 0, x);
    if (!bytes || n == 0) {
        /* x == 0: python refuses (assert); never happens for keys */
        void (*freefn)(void *, size_t);
        mp_get_memory_functions(NULL, NULL, &freefn);
        if (bytes) freefn(bytes, n);
        return NULL;
    }
    size_t blen = sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    char *s = malloc(blen);
    if (s) sodium_bin2base64(s, blen, bytes, n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    sodium_memzero(bytes, n);
    void (*freefn)(void *, size_t);
    mp_get_memory_functions(NULL, NULL, &freefn);
    freefn(bytes, n);
    return s;
}

/* lifted: the member's text taken out by lift_secrets, or NULL (then v's). */
static pvg_status b64_to_int(json_t *v, const char *lifted, const char *source, const char *field,
                             mpz_t out, pvg_error *err)
{
    if (!v)
        return pvg_error_set_at(err, PVG_ERR_INVALID, source, 0, 0, -1, "missing field \"%s\"",
                                field);
    if (!json_is_string(v))
        return pvg_error_set_at(err, PVG_ERR_INVALID, source, 0, 0, -1,
                                "field \"%s\": expected a base64url string", field);
    const char *s = lifted ? lifted : json_string_value(v);
    size_t len = strlen(s);
    if (len == 0 || len > PVG_PAILLIER_MAX_BITS / 6 + 8)
        return pvg_error_set_at(err, PVG_ERR_INVALID, source, 0, 0, -1,
                                "field \"%s\": base64url text of %zu characters is %s", field, len,
                                len ? "too long" : "empty");
    size_t cap = len * 3 / 4 + 3;
    unsigned char *bin = sodium_malloc(cap);
    if (!bin) return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    size_t n = 0;
    const char *end = NULL;
    int rc = sodium_base642bin(bin, cap, s, len, NULL, &n, &end,
                               sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    if (rc != 0 || (end && *end))
        rc = sodium_base642bin(bin, cap, s, len, NULL, &n, &end, sodium_base64_VARIANT_URLSAFE);
    if (rc != 0 || (end && *end) || n == 0) {
        size_t off = end ? (size_t)(end - s) : 0;
        sodium_free(bin);
        return pvg_error_set_at(err, PVG_ERR_INVALID, source, 0, 0, -1,
                                "field \"%s\": invalid base64url at character %zu", field, off);
    }
    mpz_import(out, n, 1, 1, 1, 0, bin);
    sodium_free(bin);
    return PVG_OK;
}

/* ---- keys ------------------------------------------------------------------------ */

static json_t *pub_jwk_object(const pvg_paillier_pub *pub, const char *kid)
{
    char *n64 = int_to_b64(pub->n);
    if (!n64) return NULL;
    json_t *o = json_object();
    json_t *ops = json_array();
    if (!o || !ops) {
        free(n64);
        json_decref(o);
        json_decref(ops);
        return NULL;
    }
    json_array_append_new(ops, json_string("encrypt"));
    json_object_set_new(o, "kty", json_string("DAJ"));
    json_object_set_new(o, "alg", json_string("PAI-GN1"));
    json_object_set_new(o, "key_ops", ops);
    json_object_set_new(o, "n", json_string(n64));
    json_object_set_new(o, "kid",
                        json_string(kid ? kid : "Paillier public key generated by privguide"));
    free(n64);
    return o;
}

/* Serialises o (stolen) into one malloc'd string of the exact size:
 * json_dumpb writes straight into it, where json_dumps would grow a buffer
 * by realloc and leave unwiped partial copies of a private key behind. */
static pvg_status dump(json_t *o, char **out, pvg_error *err)
{
    size_t need = o ? json_dumpb(o, NULL, 0, JSON_PRESERVE_ORDER) : 0;
    char *s = need ? malloc(need + 1) : NULL;
    if (s && json_dumpb(o, s, need, JSON_PRESERVE_ORDER) != need) {
        sodium_memzero(s, need);
        free(s);
        s = NULL;
    }
    json_decref(o);
    if (!s) return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    s[need] = 0;
    *out = s;
    return PVG_OK;
}

pvg_status pvg_paillier_pub_to_jwk(const pvg_paillier_pub *pub, const char *kid, char **out,
                                   pvg_error *err)
{
    *out = NULL;
    return dump(pub_jwk_object(pub, kid), out, err);
}

pvg_status pvg_paillier_priv_to_jwk(const pvg_paillier_priv *priv, const char *kid, char **out,
                                    pvg_error *err)
{
    *out = NULL;
    json_t *pubo = pub_jwk_object(priv->pub, NULL);
    char *p64 = int_to_b64(priv->p);
    char *q64 = int_to_b64(priv->q);
    json_t *o = json_object();
    json_t *ops = json_array();
    pvg_status st = PVG_OK;
    if (!pubo || !p64 || !q64 || !o || !ops) {
        json_decref(pubo);
        json_decref(o);
        json_decref(ops);
        st = pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    } else {
        json_array_append_new(ops, json_string("decrypt"));
        json_object_set_new(o, "kty", json_string("DAJ"));
        json_object_set_new(o, "key_ops", ops);
        json_object_set_new(o, "p", json_string(p64));
        json_object_set_new(o, "q", json_string(q64));
        json_object_set_new(o, "pub", pubo);
        json_object_set_new(o, "kid",
                            json_string(kid ? kid : "Paillier private key generated by privguide"));
        /* jansson keeps its own copies of p64/q64: wiped when freed below by
         * the wiping allocator only for GMP; overwrite the strings first. */
        json_t *pv = json_object_get(o, "p"), *qv = json_object_get(o, "q");
        st = dump(json_incref(o), out, err);
        sodium_memzero((char *)json_string_value(pv), strlen(json_string_value(pv)));
        sodium_memzero((char *)json_string_value(qv), strlen(json_string_value(qv)));
        json_decref(o);
    }
    if (p64) sodium_memzero(p64, strlen(p64));
    if (q64) sodium_memzero(q64, strlen(q64));
    free(p64);
    free(q64);
    return st;
}

static pvg_status pub_from_obj(json_t *o, const char *source, pvg_paillier_pub **out,
                               pvg_error *err)
{
    json_t *kty = json_object_get(o, "kty");
    if (!json_is_string(kty) || strcmp(json_string_value(kty), "DAJ") != 0)
        return pvg_error_set_at(err, PVG_ERR_INVALID, source, 0, 0, -1,
                                "not a Paillier key: field \"kty\" must be \"DAJ\"");
    json_t *alg = json_object_get(o, "alg");
    if (!json_is_string(alg) || strcmp(json_string_value(alg), "PAI-GN1") != 0)
        return pvg_error_set_at(err, PVG_ERR_INVALID, source, 0, 0, -1,
                                "not a Paillier public key: field \"alg\" must be \"PAI-GN1\"");
    mpz_t n;
    mpz_init(n);
    pvg_status st = b64_to_int(json_object_get(o, "n"), NULL, source, "n", n, err);
    if (st == PVG_OK) {
        st = pvg_he_pub_from_mpz(n, PVG_PAILLIER_MIN_BITS, out, err);
        if (st != PVG_OK) {
            char msg[PVG_ERROR_TEXT_LEN];
            snprintf(msg, sizeof msg, "%s", err ? err->text : "");
            st = pvg_error_set_at(err, st, source, 0, 0, -1, "field \"n\": %s", msg);
        }
    }
    mpz_clear(n);
    return st;
}

pvg_status pvg_paillier_pub_from_jwk(const char *json, const char *source, pvg_paillier_pub **out,
                                     pvg_error *err)
{
    *out = NULL;
    if (!source) source = "public key";
    json_t *root = NULL;
    pvg_status st = parse_json(json, source, 0, &root, NULL, err);
    if (st != PVG_OK) return st;
    json_t *o = root;
    if (!json_object_get(root, "n") && json_is_object(json_object_get(root, "pub")))
        o = json_object_get(root, "pub");
    st = pub_from_obj(o, source, out, err);
    json_decref(root);
    return st;
}

/* p and q from n and phi = (p-1)(q-1): p+q = n - phi + 1, p-q = sqrt((p+q)^2 - 4n). */
static int factors_from_totient(const mpz_t n, const mpz_t phi, mpz_t p, mpz_t q)
{
    mpz_t s, d, t;
    mpz_inits(s, d, t, NULL);
    mpz_sub(s, n, phi);
    mpz_add_ui(s, s, 1);
    mpz_mul(t, s, s);
    mpz_submul_ui(t, n, 4);
    int ok = mpz_sgn(t) > 0 && mpz_perfect_square_p(t);
    if (ok) {
        mpz_sqrt(d, t);
        mpz_sub(q, s, d);
        mpz_fdiv_q_2exp(q, q, 1);
        mpz_sub(p, s, q);
        mpz_mul(t, p, q);
        ok = mpz_cmp(t, n) == 0;
    }
    pvg_he_mpz_wipe(s);
    pvg_he_mpz_wipe(d);
    pvg_he_mpz_wipe(t);
    return ok;
}

pvg_status pvg_paillier_priv_from_jwk(const char *json, const char *source, pvg_paillier_priv **out,
                                      pvg_error *err)
{
    *out = NULL;
    if (!source) source = "private key";
    json_t *root = NULL;
    char *sec[N_SECRETS] = {NULL, NULL, NULL, NULL}; /* p, q, lambda, mu */
    pvg_status st = parse_json(json, source, 0, &root, sec, err);
    if (st != PVG_OK) return st;
    pvg_paillier_pub *pub = NULL;
    mpz_t p, q, lam;
    mpz_inits(p, q, lam, NULL);
    json_t *kty = json_object_get(root, "kty");
    json_t *ops = json_object_get(root, "key_ops");
    json_t *pubo = json_object_get(root, "pub");
    int has_decrypt = 0;
    size_t i;
    json_t *opv;
    if (json_is_array(ops))
        json_array_foreach(ops, i, opv) if (json_is_string(opv) &&
                                            strcmp(json_string_value(opv), "decrypt") == 0)
            has_decrypt = 1;
    if (!json_is_string(kty) || strcmp(json_string_value(kty), "DAJ") != 0) {
        st = pvg_error_set_at(err, PVG_ERR_INVALID, source, 0, 0, -1,
                              "not a Paillier key: field \"kty\" must be \"DAJ\"");
    } else if (!has_decrypt) {
        st = pvg_error_set_at(err, PVG_ERR_INVALID, source, 0, 0, -1,
                              "not a private key: field \"key_ops\" must contain \"decrypt\"");
    } else if (!json_is_object(pubo)) {
        st = pvg_error_set_at(err, PVG_ERR_INVALID, source, 0, 0, -1,
                              "missing field \"pub\" (the public key object)");
    } else {
        st = pub_from_obj(pubo, source, &pub, err);
    }
    if (st == PVG_OK) {
        if (json_object_get(root, "p") || !json_object_get(root, "lambda")) {
            st = b64_to_int(json_object_get(root, "p"), sec[0], source, "p", p, err);
            if (st == PVG_OK)
                st = b64_to_int(json_object_get(root, "q"), sec[1], source, "q", q, err);
        } else {
            st = b64_to_int(json_object_get(root, "lambda"), sec[2], source, "lambda", lam, err);
            if (st == PVG_OK && !factors_from_totient(pub->n, lam, p, q))
                st = pvg_error_set_at(err, PVG_ERR_CRYPTO, source, 0, 0, -1,
                                      "key does not match: \"lambda\" is not the totient of n");
        }
    }
    if (st == PVG_OK) st = pvg_he_priv_from_mpz(pub, p, q, out, err);
    /* wipe the key material jansson holds */
    const char *fields[] = {"p", "q", "lambda", "mu"};
    for (size_t f = 0; f < 4; f++) {
        json_t *v = json_object_get(root, fields[f]);
        if (json_is_string(v)) sodium_memzero((char *)json_string_value(v), json_string_length(v));
    }
    json_decref(root);
    secrets_free(sec);
    pvg_he_mpz_wipe(p);
    pvg_he_mpz_wipe(q);
    pvg_he_mpz_wipe(lam);
    pvg_paillier_pub_free(pub);
    return st;
}

/* ---- encrypted numbers ------------------------------------------------------------- */

pvg_status pvg_paillier_ct_to_json(const pvg_paillier_ct *ct, char **out, pvg_error *err)
{
    *out = NULL;
    size_t len = mpz_sizeinbase(ct->c, 10) + 48;
    char *s = malloc(len);
    if (!s) return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    memcpy(s, "{\"v\": \"", 7);
    mpz_get_str(s + 7, 10, ct->c);
    size_t o = strlen(s);
    snprintf(s + o, len - o, "\", \"e\": %d}", ct->exponent);
    *out = s;
    return PVG_OK;
}

static pvg_status ct_from_values(pvg_paillier_ct *ct, json_t *v, json_t *e, const char *source,
                                 long line, pvg_error *err)
{
    if (!e || !json_is_integer(e))
        return pvg_error_set_at(err, PVG_ERR_INVALID, source, line, 0, -1,
                                "field \"e\": expected an integer exponent");
    json_int_t ev = json_integer_value(e);
    if (ev < -PVG_HE_EXP_LIMIT || ev > PVG_HE_EXP_LIMIT)
        return pvg_error_set_at(err, PVG_ERR_INVALID, source, line, 0, -1,
                                "field \"e\": exponent %lld outside [-%d, %d]", (long long)ev,
                                PVG_HE_EXP_LIMIT, PVG_HE_EXP_LIMIT);
    mpz_t c;
    mpz_init(c);
    pvg_status st = get_decimal(v, source, line, "v", mpz_sizeinbase(ct->pub->n2, 10) + 1, c, err);
    if (st == PVG_OK && !pvg_he_in_group(ct->pub, c))
        st = pvg_error_set_at(err, PVG_ERR_INVALID, source, line, 0, -1,
                              "field \"v\": ciphertext is not in Z*_{n^2} of this key (zero, too "
                              "large, or sharing a factor with n): made under another key, or "
                              "corrupt");
    if (st == PVG_OK) {
        mpz_swap(ct->c, c);
        ct->exponent = (int)ev;
    }
    mpz_clear(c);
    return st;
}

pvg_status pvg_paillier_ct_from_json(pvg_paillier_ct *ct, const char *json, const char *source,
                                     long line, pvg_error *err)
{
    if (!source) source = "encrypted number";
    json_t *root = NULL;
    pvg_status st = parse_json(json, source, line, &root, NULL, err);
    if (st != PVG_OK) return st;
    st = ct_from_values(ct, json_object_get(root, "v"), json_object_get(root, "e"), source, line,
                        err);
    json_decref(root);
    return st;
}

pvg_status pvg_paillier_list_to_json(const pvg_paillier_pub *pub, pvg_paillier_ct *const *cts,
                                     size_t count, char **out, pvg_error *err)
{
    *out = NULL;
    size_t nd = mpz_sizeinbase(pub->n, 10), cd = mpz_sizeinbase(pub->n2, 10);
    size_t cap = 2 * nd + 64 + count * (cd + 32);
    char *s = malloc(cap);
    if (!s) return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    size_t o = 0;
    o += (size_t)snprintf(s + o, cap - o, "{\"public_key\": {\"g\": ");
    mpz_t g;
    mpz_init(g);
    mpz_add_ui(g, pub->n, 1);
    mpz_get_str(s + o, 10, g);
    o += strlen(s + o);
    mpz_clear(g);
    o += (size_t)snprintf(s + o, cap - o, ", \"n\": ");
    mpz_get_str(s + o, 10, pub->n);
    o += strlen(s + o);
    o += (size_t)snprintf(s + o, cap - o, "}, \"values\": [");
    for (size_t i = 0; i < count; i++) {
        if (!pvg_paillier_pub_equal(cts[i]->pub, pub)) {
            free(s);
            return pvg_error_set(err, PVG_ERR_CRYPTO,
                                 "key does not match: value %zu is under another key", i);
        }
        o += (size_t)snprintf(s + o, cap - o, "%s[\"", i ? ", " : "");
        mpz_get_str(s + o, 10, cts[i]->c);
        o += strlen(s + o);
        o += (size_t)snprintf(s + o, cap - o, "\", %d]", cts[i]->exponent);
    }
    snprintf(s + o, cap - o, "]}");
    *out = s;
    return PVG_OK;
}

pvg_status pvg_paillier_list_from_json(const char *json, const char *source,
                                       const pvg_paillier_pub *expect, size_t max_values,
                                       pvg_paillier_pub **pub_out, pvg_paillier_ct ***cts_out,
                                       size_t *count, pvg_error *err)
{
    *pub_out = NULL;
    *cts_out = NULL;
    *count = 0;
    if (!source) source = "encrypted list";
    if (!max_values) max_values = 1000000;
    json_t *root = NULL;
    pvg_status st = parse_json(json, source, 0, &root, NULL, err);
    if (st != PVG_OK) return st;
    pvg_paillier_pub *pub = NULL;
    pvg_paillier_ct **cts = NULL;
    size_t n_ok = 0;
    json_t *pk = json_object_get(root, "public_key");
    json_t *vals = json_object_get(root, "values");
    mpz_t n;
    mpz_init(n);
    if (!json_is_object(pk)) {
        st = pvg_error_set_at(err, PVG_ERR_INVALID, source, 0, 0, -1,
                              "missing object \"public_key\"");
        goto done;
    }
    st = get_decimal(json_object_get(pk, "n"), source, 0, "public_key.n",
                     PVG_PAILLIER_MAX_BITS / 3 + 2, n, err);
    if (st != PVG_OK) goto done;
    st = pvg_he_pub_from_mpz(n, PVG_PAILLIER_MIN_BITS, &pub, err);
    if (st != PVG_OK) goto done;
    json_t *g = json_object_get(pk, "g");
    if (g) {
        mpz_t gv;
        mpz_init(gv);
        st = get_decimal(g, source, 0, "public_key.g", PVG_PAILLIER_MAX_BITS / 3 + 2, gv, err);
        mpz_sub_ui(gv, gv, 1);
        if (st == PVG_OK && mpz_cmp(gv, n) != 0)
            st = pvg_error_set_at(err, PVG_ERR_UNSUPPORTED, source, 0, 0, -1,
                                  "field \"public_key.g\": only g = n + 1 is supported");
        mpz_clear(gv);
        if (st != PVG_OK) goto done;
    }
    if (expect && !pvg_paillier_pub_equal(expect, pub)) {
        st = pvg_error_set_at(err, PVG_ERR_CRYPTO, source, 0, 0, -1,
                              "key does not match: the list names another public key");
        goto done;
    }
    if (!json_is_array(vals)) {
        st = pvg_error_set_at(err, PVG_ERR_INVALID, source, 0, 0, -1, "missing array \"values\"");
        goto done;
    }
    size_t nv = json_array_size(vals);
    if (nv > max_values) {
        st = pvg_error_set_at(err, PVG_ERR_INVALID, source, 0, 0, -1,
                              "%zu values: at most %zu accepted", nv, max_values);
        goto done;
    }
    cts = calloc(nv ? nv : 1, sizeof *cts);
    if (!cts) {
        st = pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < nv; i++) {
        json_t *pair = json_array_get(vals, i);
        char where[64];
        snprintf(where, sizeof where, "values[%zu]", i);
        if (!json_is_array(pair) || json_array_size(pair) != 2) {
            st = pvg_error_set_at(err, PVG_ERR_INVALID, source, 0, 0, -1,
                                  "%s: expected [\"<ciphertext>\", exponent]", where);
            goto done;
        }
        cts[i] = pvg_paillier_ct_new(pub);
        if (!cts[i]) {
            st = pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
            goto done;
        }
        n_ok = i + 1;
        st = ct_from_values(cts[i], json_array_get(pair, 0), json_array_get(pair, 1), source, 0,
                            err);
        if (st != PVG_OK) {
            char msg[PVG_ERROR_TEXT_LEN];
            snprintf(msg, sizeof msg, "%s", err ? err->text : "");
            st = pvg_error_set_at(err, st, source, 0, 0, -1, "%s: %s", where, msg);
            goto done;
        }
    }
    *count = nv;
done:
    mpz_clear(n);
    json_decref(root);
    if (st != PVG_OK) {
        pvg_paillier_ct_array_free(cts, n_ok);
        pvg_paillier_pub_free(pub);
        *count = 0;
        return st;
    }
    *pub_out = pub;
    *cts_out = cts;
    return PVG_OK;
}
