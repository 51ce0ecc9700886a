/*
 * analyze.c - words of a text for the search index and its queries: UTF-8
 * decoding (invalid bytes separate words), lower-casing, folding of the
 * common accented Latin letters to ASCII, hyphen groups, English stop
 * words, Snowball stemming (libstemmer), edit distance, and the string map
 * of the index's vocabularies.
 */
#include "search/search_internal.h"

#include <libstemmer.h>

#include <stdlib.h>
#include <string.h>

/* ---- UTF-8 ------------------------------------------------------------------ */

/* Decodes one code point at s[0..n); *adv gets its length. Returns -1 for an
 * invalid sequence (then *adv = 1: the byte is skipped). */
static long utf8_next(const unsigned char *s, size_t n, size_t *adv)
{
    unsigned c = s[0];
    *adv = 1;
    if (c < 0x80) return (long)c;
    size_t len;
    unsigned long cp, min;
    if ((c & 0xE0) == 0xC0) {
        len = 2, cp = c & 0x1F, min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
        len = 3, cp = c & 0x0F, min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
        len = 4, cp = c & 0x07, min = 0x10000;
    } else {
        return -1;
    }
    if (len > n) return -1;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return -1;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return -1;
    *adv = len;
    return (long)cp;
}

static size_t utf8_put(unsigned long cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* U+00C0..U+017F folded to ASCII (lower case); "" where the letter has no
 * ASCII form worth using (kept as the lower-cased letter). */
static const char *const FOLD_C0[64] = {
    "a", "a", "a", "a", "a", "a", "ae", "c",  "e", "e", "e", "e", "i", "i", "i",  "i",
    "d", "n", "o", "o", "o", "o", "o",  NULL, "o", "u", "u", "u", "u", "y", "th", "ss",
    "a", "a", "a", "a", "a", "a", "ae", "c",  "e", "e", "e", "e", "i", "i", "i",  "i",
    "d", "n", "o", "o", "o", "o", "o",  NULL, "o", "u", "u", "u", "u", "y", "th", "y"};

/* U+0100..U+017F: pairs of upper/lower forms of one base letter, in order. */
static const char FOLD_100[129] =
    "aaaaaaccccccccddddeeeeeeeeeegggggggghhhhiiiiiiiiiiiijjkkklllll"
    "lllllnnnnnnnnnoooooooorrrrrrssssssssttttttuuuuuuuuuuuuwwyyyzzzzzzs";

/* Kind of a code point: 0 separator, 1 letter or digit. */
static int cp_is_word(long cp)
{
    if (cp < 0) return 0;
    if (cp < 0x80) {
        return (cp >= '0' && cp <= '9') || (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z');
    }
    if (cp < 0xC0 || cp == 0xD7 || cp == 0xF7) return 0;        /* Latin-1 symbols */
    if (cp >= 0x2000 && cp <= 0x2BFF) return 0;                 /* punctuation, symbols */
    if (cp >= 0x3000 && cp <= 0x303F) return 0;                 /* CJK punctuation */
    if (cp >= 0xFE00 && cp <= 0xFE0F) return 0;                 /* variation selectors */
    if (cp >= 0xFF00 && cp <= 0xFF0F) return 0;                 /* full-width punctuation */
    if (cp >= 0xFFF0 && cp <= 0xFFFF) return 0;                 /* specials */
    if (cp >= 0x1F000 && cp <= 0x1FAFF) return 0;               /* emoji */
    if (cp >= 0xE0000) return 0;                                /* tags, private use */
    if (cp == 0x00AD || cp == 0x200B || cp == 0xFEFF) return 0; /* invisible */
    return 1;
}

/* Appends the folded lower-case form of cp to out; returns bytes written
 * (at most 4). */
static size_t fold_put(long cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char)(cp >= 'A' && cp <= 'Z' ? cp + 32 : cp);
        return 1;
    }
    if (cp >= 0xC0 && cp <= 0xFF && FOLD_C0[cp - 0xC0]) {
        const char *f = FOLD_C0[cp - 0xC0];
        size_t n = strlen(f);
        memcpy(out, f, n);
        return n;
    }
    if (cp >= 0x100 && cp <= 0x17F) {
        if (cp == 0x131) { /* dotless i */
            out[0] = 'i';
            return 1;
        }
        if (cp == 0x152 || cp == 0x153) {
            memcpy(out, "oe", 2);
            return 2;
        }
        if (cp == 0x138) { /* kra */
            out[0] = 'k';
            return 1;
        }
        out[0] = FOLD_100[cp - 0x100];
        return 1;
    }
    /* Greek and Cyrillic capitals to small letters; other scripts unchanged */
    if (cp >= 0x391 && cp <= 0x3A9 && cp != 0x3A2)
        cp += 0x20;
    else if (cp >= 0x410 && cp <= 0x42F)
        cp += 0x20;
    else if (cp >= 0x400 && cp <= 0x40F)
        cp += 0x50;
    return utf8_put((unsigned long)cp, out);
}

/* Cuts a word at PVG_SEARCH_WORD_MAX bytes on a code point boundary. */
static size_t cut_word(const char *w, size_t len)
{
    if (len <= PVG_SEARCH_WORD_MAX) return len;
    size_t n = PVG_SEARCH_WORD_MAX;
    while (n > 0 && ((unsigned char)w[n] & 0xC0) == 0x80)
        n--;
    return n;
}

int pvg_search_words(const char *text, size_t n, pvg_sw_fn fn, void *ctx)
{
    const unsigned char *s = (const unsigned char *)text;
    /* a hyphen group: up to 8 parts kept for the joined form */
    char word[PVG_SEARCH_WORD_MAX + 8];
    size_t wlen = 0;
    int in_word = 0;
    char joined[PVG_SEARCH_WORD_MAX + 8];
    size_t jlen = 0;
    int parts = 0, joined_ok = 1;
    size_t i = 0;
    while (i <= n) {
        size_t adv = 1;
        long cp = i < n ? utf8_next(s + i, n - i, &adv) : -1;
        int is_word = i < n && cp_is_word(cp);
        if (is_word) {
            char buf[8];
            size_t k = fold_put(cp, buf);
            if (wlen + k <= PVG_SEARCH_WORD_MAX + 4) {
                memcpy(word + wlen, buf, k);
                wlen += k;
            }
            in_word = 1;
            i += adv;
            continue;
        }
        /* an apostrophe inside a word joins its halves ("men's" -> "mens") */
        if (in_word && i < n && (cp == '\'' || cp == 0x2019) && i + adv < n) {
            size_t adv2;
            long nx = utf8_next(s + i + adv, n - i - adv, &adv2);
            if (cp_is_word(nx)) {
                i += adv;
                continue;
            }
        }
        if (in_word) {
            size_t len = cut_word(word, wlen);
            int hyphen_next = 0;
            if (i < n && cp == '-' && i + 1 < n) {
                size_t adv2;
                long nx = utf8_next(s + i + 1, n - i - 1, &adv2);
                hyphen_next = cp_is_word(nx);
            }
            if (hyphen_next || parts > 0) {
                unsigned fl = PVG_SW_PART;
                if (jlen + len <= PVG_SEARCH_WORD_MAX) {
                    memcpy(joined + jlen, word, len);
                    jlen += len;
                } else {
                    joined_ok = 0;
                }
                parts++;
                int last = !hyphen_next && i >= n;
                int r = fn(ctx, word, len, fl | (last ? PVG_SW_LAST : 0));
                if (r) return r;
                if (!hyphen_next) {
                    if (joined_ok && parts >= 2) {
                        r = fn(ctx, joined, jlen, PVG_SW_JOINED | (i >= n ? PVG_SW_LAST : 0));
                        if (r) return r;
                    }
                    parts = 0, jlen = 0, joined_ok = 1;
                }
            } else {
                int r = fn(ctx, word, len, i >= n ? PVG_SW_LAST : 0);
                if (r) return r;
            }
            wlen = 0;
            in_word = 0;
        }
        i += adv;
    }
    return 0;
}

/* ---- stop words ------------------------------------------------------------- */

static const char *const STOP[] = {
    "a",    "about", "after", "all",   "also",  "am",    "an",   "and",   "any",   "are",   "as",
    "at",   "be",    "been",  "being", "but",   "by",    "can",  "could", "did",   "do",    "does",
    "for",  "from",  "had",   "has",   "have",  "he",    "her",  "here",  "him",   "his",   "how",
    "i",    "if",    "in",    "into",  "is",    "it",    "its",  "just",  "me",    "my",    "of",
    "on",   "or",    "our",   "she",   "so",    "some",  "than", "that",  "the",   "their", "them",
    "then", "there", "these", "they",  "this",  "those", "to",   "too",   "very",  "was",   "we",
    "were", "what",  "when",  "where", "which", "who",   "will", "with",  "would", "you",   "your"};

static int stop_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

int pvg_search_is_stopword(const char *word, size_t len)
{
    char key[16];
    if (len == 0 || len >= sizeof key) return 0;
    memcpy(key, word, len);
    key[len] = 0;
    const char *k = key;
    return bsearch(&k, STOP, sizeof STOP / sizeof STOP[0], sizeof STOP[0], stop_cmp) != NULL;
}

/* ---- stemming --------------------------------------------------------------- */

struct sb_stemmer *pvg_search_stemmer_new(void)
{
    return sb_stemmer_new("english", "UTF_8");
}

void pvg_search_stemmer_free(struct sb_stemmer *st)
{
    if (st) sb_stemmer_delete(st);
}

size_t pvg_search_stem(struct sb_stemmer *st, const char *word, size_t len, char *out, size_t cap)
{
    if (len >= cap) len = cap - 1;
    int digits = 0;
    for (size_t i = 0; i < len; i++)
        if (word[i] >= '0' && word[i] <= '9') digits = 1;
    if (st && !digits && len > 2) {
        const sb_symbol *r = sb_stemmer_stem(st, (const sb_symbol *)word, (int)len);
        if (r) {
            size_t n = (size_t)sb_stemmer_length(st);
            if (n > 0 && n < cap) {
                memcpy(out, r, n);
                out[n] = 0;
                return n;
            }
        }
    }
    memcpy(out, word, len);
    out[len] = 0;
    return len;
}

/* ---- edit distance ------------------------------------------------------------ */

int pvg_search_osa(const char *a, size_t la, const char *b, size_t lb, int max)
{
    if (la > PVG_SEARCH_WORD_MAX || lb > PVG_SEARCH_WORD_MAX) return max + 1;
    size_t diff = la > lb ? la - lb : lb - la;
    if ((int)diff > max) return max + 1;
    int rows[3][PVG_SEARCH_WORD_MAX + 2];
    int *pp = rows[0], *p = rows[1], *c = rows[2];
    for (size_t j = 0; j <= lb; j++)
        p[j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        c[0] = (int)i;
        int best = c[0];
        for (size_t j = 1; j <= lb; j++) {
            int cost = a[i - 1] == b[j - 1] ? 0 : 1;
            int v = p[j] + 1;
            if (c[j - 1] + 1 < v) v = c[j - 1] + 1;
            if (p[j - 1] + cost < v) v = p[j - 1] + cost;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && pp[j - 2] + 1 < v)
                v = pp[j - 2] + 1;
            c[j] = v;
            if (v < best) best = v;
        }
        if (best > max) return max + 1;
        int *t = pp;
        pp = p, p = c, c = t;
    }
    return p[lb] > max ? max + 1 : p[lb];
}

/* ---- string map ---------------------------------------------------------------- */

uint64_t pvg_search_hash(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 32;
    return h;
}

long pvg_smap_find(const pvg_smap *m, const char *key, size_t len)
{
    if (!m->cap) return -1;
    size_t mask = m->cap - 1;
    for (size_t i = pvg_search_hash(key, len) & mask;; i = (i + 1) & mask) {
        uint32_t v = m->slots[i];
        if (!v) return -1;
        uint32_t id = v - 1;
        if (m->lens[id] == len && memcmp(m->keys[id], key, len) == 0) return (long)id;
    }
}

static int smap_grow(pvg_smap *m)
{
    size_t cap = m->cap ? m->cap * 2 : 1024;
    uint32_t *slots = calloc(cap, sizeof *slots);
    if (!slots) return -1;
    for (size_t id = 0; id < m->n; id++) {
        size_t i = pvg_search_hash(m->keys[id], m->lens[id]) & (cap - 1);
        while (slots[i])
            i = (i + 1) & (cap - 1);
        slots[i] = (uint32_t)id + 1;
    }
    free(m->slots);
    m->slots = slots;
    m->cap = cap;
    return 0;
}

long pvg_smap_intern(pvg_smap *m, const char *key, size_t len, int *added)
{
    if (added) *added = 0;
    long id = pvg_smap_find(m, key, len);
    if (id >= 0) return id;
    if ((m->n + 1) * 2 > m->cap && smap_grow(m)) return -1;
    if (m->n == m->keys_cap) {
        size_t nc = m->keys_cap ? m->keys_cap * 2 : 1024;
        char **k = realloc(m->keys, nc * sizeof *k);
        if (!k) return -1;
        m->keys = k;
        uint32_t *l = realloc(m->lens, nc * sizeof *l);
        if (!l) return -1;
        m->lens = l;
        m->keys_cap = nc;
    }
    char *copy = malloc(len + 1);
    if (!copy) return -1;
    memcpy(copy, key, len);
    copy[len] = 0;
    id = (long)m->n;
    m->keys[id] = copy;
    m->lens[id] = (uint32_t)len;
    m->n++;
    size_t mask = m->cap - 1;
    size_t i = pvg_search_hash(key, len) & mask;
    while (m->slots[i])
        i = (i + 1) & mask;
    m->slots[i] = (uint32_t)id + 1;
    if (added) *added = 1;
    return id;
}

void pvg_smap_free(pvg_smap *m)
{
    for (size_t i = 0; i < m->n; i++)
        free(m->keys[i]);
    free(m->keys);
    free(m->lens);
    free(m->slots);
    memset(m, 0, sizeof *m);
}

size_t pvg_smap_bytes(const pvg_smap *m)
{
    size_t b = m->cap * sizeof(uint32_t) + m->keys_cap * (sizeof(char *) + sizeof(uint32_t));
    for (size_t i = 0; i < m->n; i++)
        b += m->lens[i] + 1 + 16;
    return b;
}
