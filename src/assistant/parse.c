/*
 * parse.c - constraint understanding for the assistant (privguide/assistant.h):
 * one English message -> prices, categories, attribute words, recipient,
 * occasion, quantity, exclusions, "similar to", references to the previous
 * answer. Rule-based over a token stream; the catalog vocabulary (category
 * names, frequent title words, item ids, price quartiles) comes from
 * pvg_assist_vocab. The rules are written out in docs/assistant.md.
 */
#include "assistant/assist_internal.h"

#include <ctype.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- words ---- */

static int in_list(const char *w, const char *const *list)
{
    for (size_t i = 0; list[i]; i++)
        if (strcmp(w, list[i]) == 0) return 1;
    return 0;
}

void pvg_assist_stem(const char *in, char *out, size_t cap)
{
    size_t n = strlen(in);
    if (n >= cap) n = cap - 1;
    memcpy(out, in, n);
    out[n] = '\0';
    /* plurals only: "candles" -> "candle", "boxes" -> "box", "berries" -> "berry" */
    if (n > 4 && strcmp(out + n - 3, "ies") == 0) {
        out[n - 3] = 'y';
        out[n - 2] = '\0';
    } else if (n > 4 && (strcmp(out + n - 4, "ches") == 0 || strcmp(out + n - 4, "shes") == 0 ||
                         strcmp(out + n - 3, "xes") == 0 || strcmp(out + n - 4, "sses") == 0)) {
        out[n - 2] = '\0';
    } else if (n > 3 && out[n - 1] == 's' && out[n - 2] != 's' && out[n - 2] != 'u' &&
               out[n - 2] != 'i' && !(n >= 4 && strcmp(out + n - 3, "mas") == 0)) {
        out[n - 1] = '\0';
    }
}

static const char *const STOP[] = {
    "a",       "an",        "the",       "i",          "im",          "me",           "my",
    "we",      "our",       "us",        "you",        "your",        "for",          "of",
    "to",      "in",        "on",        "at",         "and",         "or",           "with",
    "is",      "are",       "be",        "some",       "any",         "something",    "anything",
    "thing",   "things",    "stuff",     "item",       "items",       "product",      "products",
    "gift",    "gifts",     "present",   "presents",   "idea",        "ideas",        "please",
    "pls",     "want",      "wanted",    "need",       "needs",       "looking",      "look",
    "find",    "show",      "give",      "get",        "buy",         "got",          "would",
    "could",   "can",       "should",    "that",       "this",        "these",        "those",
    "it",      "its",       "one",       "ones",       "what",        "which",        "who",
    "good",    "nice",      "great",     "lovely",     "best",        "perfect",      "really",
    "very",    "too",       "also",      "just",       "only",        "more",         "less",
    "than",    "recommend", "suggest",   "suggestion", "suggestions", "help",         "maybe",
    "them",    "they",      "she",       "he",         "him",         "her",          "his",
    "someone", "somebody",  "so",        "as",         "by",          "from",         "up",
    "into",    "out",       "all",       "much",       "many",        "there",        "here",
    "have",    "has",       "had",       "do",         "does",        "did",          "am",
    "was",     "were",      "been",      "if",         "then",        "else",         "way",
    "kind",    "sort",      "type",      "set",        "how",         "about",        "what",
    "other",   "others",    "again",     "same",       "version",     "options",      "option",
    "choice",  "instead",   "different", "new",        "lot",         "lots",         "bit",
    "little",  "each",      "per",       "pack",       "pieces",      "piece",        "x",
    "ok",      "okay",      "hi",        "hello",      "hey",         "thanks",       "thank",
    "let",     "lets",      "see",       "now",        "which",       "will",         "go",
    "going",   "loves",     "likes",     "love",       "like",        "lover",        "lovers",
    "fan",     "fans",      "addict",    "around",     "under",       "over",         "below",
    "above",   "between",   "within",    "upto",       "cost",        "costs",        "costing",
    "price",   "priced",    "prices",    "pay",        "spend",       "money",        "cheap",
    "cheaper", "cheapest",  "expensive", "pricey",     "one",         "two",          "three",
    "four",    "five",      "six",       "seven",      "eight",       "nine",         "ten",
    "eleven",  "twelve",    "dozen",     "pair",       "couple",      "first",        "second",
    "third",   "fourth",    "fifth",     "last",       "1st",         "2nd",          "3rd",
    "4th",     "5th",       "both",      "either",     "not",         "no",           "without",
    "except",  "excluding", "but",       "don",        "dont",        "doesn",        "doesnt",
    "isnt",    "am",        "buying",    "shopping",   "shop",        "gifting",      "give",
    "giving",  "send",      "sending",   "similar",    "alternative", "alternatives", "suitable",
    "ideal",   "something", "year",      "old",        "olds",        "least",        "most",
    "max",     "maximum",   "min",       "minimum",    "budget",      "quid",         "pounds",
    "pound",   "dollars",   "dollar",    "bucks",      "euros",       "euro",         "gbp",
    "usd",     "eur",       "pence",     NULL};

static int is_stop(const char *w)
{
    return in_list(w, STOP);
}

/* ---- tokens ---- */

enum { T_WORD, T_NUM, T_CUR, T_DASH, T_PUNCT, T_LT, T_GT };

typedef struct tok {
    int kind;
    char text[PVG_ASSIST_WORD_MAX]; /* lower case; T_CUR: "GBP"/"USD"/"EUR" */
    double value;                   /* T_NUM */
    int huge;                       /* T_NUM above the caps */
    int used;                       /* consumed by a rule */
    int noterm;                     /* never a content term */
} tok;

#define TOK_MAX 512

typedef struct toks {
    tok v[TOK_MAX];
    int n;
} toks;

/* Length of the valid UTF-8 sequence at p (n bytes left), 0 when invalid. */
static size_t utf8_len(const unsigned char *p, size_t n)
{
    unsigned c = p[0];
    size_t len;
    unsigned min;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
        min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        min = 0x10000;
    } else
        return 0;
    if (n < len) return 0;
    unsigned cp = c & (0x7F >> len);
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (p[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return len;
}

static void push(toks *t, int kind, const char *s, size_t n, double value)
{
    if (t->n == TOK_MAX) return; /* the rest of a very long message is not read */
    tok *k = &t->v[t->n++];
    memset(k, 0, sizeof *k);
    k->kind = kind;
    if (n >= sizeof k->text) n = sizeof k->text - 1;
    for (size_t i = 0; i < n; i++)
        k->text[i] = kind == T_CUR ? s[i] : (char)tolower((unsigned char)s[i]);
    k->value = value;
}

static void tokenize(const char *msg, size_t len, toks *t)
{
    const unsigned char *p = (const unsigned char *)msg;
    size_t i = 0;
    t->n = 0;
    while (i < len) {
        unsigned c = p[i];
        if (c == 0xC2 && i + 1 < len && p[i + 1] == 0xA3) { /* £ */
            push(t, T_CUR, "GBP", 3, 0);
            i += 2;
        } else if (c == 0xE2 && i + 2 < len && p[i + 1] == 0x82 && p[i + 2] == 0xAC) { /* € */
            push(t, T_CUR, "EUR", 3, 0);
            i += 3;
        } else if (c == '$') {
            push(t, T_CUR, "USD", 3, 0);
            i++;
        } else if (isdigit(c) || (c == '.' && i + 1 < len && isdigit(p[i + 1]))) {
            char buf[64];
            size_t b = 0, digits = 0;
            int dot = 0;
            while (i < len &&
                   (isdigit(p[i]) || (p[i] == '.' && !dot && i + 1 < len && isdigit(p[i + 1])) ||
                    (p[i] == ',' && i + 3 < len && isdigit(p[i + 1]) && isdigit(p[i + 2]) &&
                     isdigit(p[i + 3]) && !dot))) {
                if (p[i] == '.') dot = 1;
                if (p[i] != ',') {
                    if (isdigit(p[i]) && !dot) digits++;
                    if (b + 1 < sizeof buf) buf[b++] = (char)p[i];
                }
                i++;
            }
            buf[b] = '\0';
            double v = digits > 15 ? HUGE_VAL : strtod(buf, NULL);
            push(t, T_NUM, buf, b, v);
            t->v[t->n - 1].huge = !(v <= PVG_ASSIST_PRICE_CAP);
            /* "10p", "5k", "2nd": letters glued to a number */
            size_t s = i;
            while (i < len && isalpha(p[i]))
                i++;
            if (i > s) {
                char w[16];
                size_t wn = i - s < sizeof w - 1 ? i - s : sizeof w - 1;
                for (size_t j = 0; j < wn; j++)
                    w[j] = (char)tolower(p[s + j]);
                w[wn] = '\0';
                if (strcmp(w, "st") == 0 || strcmp(w, "nd") == 0 || strcmp(w, "rd") == 0 ||
                    strcmp(w, "th") == 0) {
                    /* an ordinal: "2nd" */
                    tok *k = &t->v[t->n - 1];
                    k->kind = T_WORD;
                    snprintf(k->text, sizeof k->text, "%.8s%s", buf, w);
                } else
                    push(t, T_WORD, (const char *)p + s, i - s, 0);
            }
        } else if (isalpha(c)) {
            size_t s = i;
            char w[PVG_ASSIST_WORD_MAX];
            size_t wn = 0;
            while (i < len && (isalnum(p[i]) || p[i] == '\'' ||
                               (p[i] == '-' && i + 1 < len && isalpha(p[i + 1]) && wn < 12))) {
                if (p[i] == '\'') {
                    /* "mother's" -> "mother", "don't" -> "dont" */
                    if (i + 1 < len && (p[i + 1] == 's' || p[i + 1] == 'S') &&
                        (i + 2 >= len || !isalnum(p[i + 2]))) {
                        i += 2;
                        break;
                    }
                } else if (p[i] == '-') {
                    /* "t-light" stays one word ("tlight" is how titles spell it apart) */
                } else if (wn + 1 < sizeof w)
                    w[wn++] = (char)p[i];
                i++;
            }
            (void)s;
            push(t, T_WORD, w, wn, 0);
        } else if (c == '-') {
            push(t, T_DASH, "-", 1, 0);
            i++;
        } else if (c == '<') {
            push(t, T_LT, "<", 1, 0);
            i++;
        } else if (c == '>') {
            push(t, T_GT, ">", 1, 0);
            i++;
        } else if (c == ',' || c == '.' || c == ';' || c == '!' || c == '?' || c == ':' ||
                   c == '(' || c == ')') {
            push(t, T_PUNCT, (const char *)p + i, 1, 0);
            i++;
        } else if (c >= 0x80) {
            size_t l = utf8_len(p + i, len - i);
            i += l ? l : 1; /* other non-ASCII text separates words */
        } else {
            i++;
        }
    }
}

static int is_word(const toks *t, int i, const char *w)
{
    return i >= 0 && i < t->n && t->v[i].kind == T_WORD && strcmp(t->v[i].text, w) == 0;
}

static const char *cur_word(const char *w)
{
    static const char *const GBP[] = {"pounds", "pound", "quid", "gbp", NULL};
    static const char *const USD[] = {"dollars", "dollar", "bucks", "usd", NULL};
    static const char *const EUR[] = {"euros", "euro", "eur", NULL};
    if (in_list(w, GBP)) return "GBP";
    if (in_list(w, USD)) return "USD";
    if (in_list(w, EUR)) return "EUR";
    return NULL;
}

/* A money amount at token i: [cur] NUM [cur | currency word | p/pence].
 * Returns the number of tokens (0 when no number there); *explicit_cur: a
 * currency was written. */
static int money_at(toks *t, int i, double *value, const char **cur, int *explicit_cur, int *huge)
{
    int s = i;
    *cur = NULL;
    *explicit_cur = 0;
    if (i < t->n && t->v[i].kind == T_CUR) {
        *cur = t->v[i].text;
        *explicit_cur = 1;
        i++;
    }
    if (i >= t->n || t->v[i].kind != T_NUM) return 0;
    *value = t->v[i].value;
    *huge = t->v[i].huge;
    i++;
    if (i < t->n && t->v[i].kind == T_CUR) {
        *cur = t->v[i].text;
        *explicit_cur = 1;
        i++;
    } else if (i < t->n && t->v[i].kind == T_WORD) {
        const char *c = cur_word(t->v[i].text);
        if (c) {
            *cur = c;
            *explicit_cur = 1;
            i++;
        } else if (strcmp(t->v[i].text, "p") == 0 || strcmp(t->v[i].text, "pence") == 0) {
            *cur = "GBP";
            *explicit_cur = 1;
            *value /= 100.0;
            i++;
        }
    }
    return i - s;
}

static void use(toks *t, int from, int n)
{
    for (int i = from; i < from + n && i < t->n; i++)
        t->v[i].used = 1;
}

static void note(pvg_assist_constraints *c, const char *fmt, double v)
{
    size_t l = strlen(c->notes);
    if (l + 1 >= sizeof c->notes) return;
    snprintf(c->notes + l, sizeof c->notes - l, "%s", l ? "; " : "");
    l = strlen(c->notes);
    snprintf(c->notes + l, sizeof c->notes - l, fmt, v);
}

static void set_cur(pvg_assist_constraints *c, const char *cur)
{
    if (cur && !c->currency[0]) snprintf(c->currency, sizeof c->currency, "%s", cur);
}

/* Takes a price bound: kind 'max', 'min'. Out-of-range values are noted. */
static void bound(pvg_assist_constraints *c, int kind, double v, int huge)
{
    if (huge || !(v >= 0) || v > PVG_ASSIST_PRICE_CAP) {
        note(c, "a price of %.3g is out of range and was ignored", v);
        return;
    }
    if (kind == 'x')
        c->price_max = c->price_max < 0 ? v : fmin(c->price_max, v);
    else
        c->price_min = fmax(c->price_min, v);
}

/* Multi-word cue at i: returns its length in tokens, 0 when none. */
static int cue(const toks *t, int i, const char *const *phrase)
{
    int k = 0;
    for (; phrase[k]; k++)
        if (!is_word(t, i + k, phrase[k])) return 0;
    return k;
}

static const char *const *MAX_CUES[] = {(const char *const[]){"under", NULL},
                                        (const char *const[]){"below", NULL},
                                        (const char *const[]){"less", "than", NULL},
                                        (const char *const[]){"cheaper", "than", NULL},
                                        (const char *const[]){"lower", "than", NULL},
                                        (const char *const[]){"up", "to", NULL},
                                        (const char *const[]){"upto", NULL},
                                        (const char *const[]){"max", NULL},
                                        (const char *const[]){"maximum", NULL},
                                        (const char *const[]){"at", "most", NULL},
                                        (const char *const[]){"no", "more", "than", NULL},
                                        (const char *const[]){"not", "more", "than", NULL},
                                        (const char *const[]){"within", NULL},
                                        (const char *const[]){"budget", "of", NULL},
                                        (const char *const[]){"budget", "is", NULL},
                                        (const char *const[]){"budget", NULL},
                                        (const char *const[]){"no", "over", NULL},
                                        (const char *const[]){"nothing", "over", NULL},
                                        (const char *const[]){"nothing", "above", NULL},
                                        (const char *const[]){"not", "over", NULL},
                                        (const char *const[]){"for", "less", "than", NULL},
                                        NULL};
static const char *const *MIN_CUES[] = {(const char *const[]){"over", NULL},
                                        (const char *const[]){"above", NULL},
                                        (const char *const[]){"more", "than", NULL},
                                        (const char *const[]){"at", "least", NULL},
                                        (const char *const[]){"min", NULL},
                                        (const char *const[]){"minimum", NULL},
                                        (const char *const[]){"upwards", "of", NULL},
                                        (const char *const[]){"from", NULL},
                                        (const char *const[]){"starting", "at", NULL},
                                        NULL};
static const char *const *ABOUT_CUES[] = {
    (const char *const[]){"around", NULL},  (const char *const[]){"about", NULL},
    (const char *const[]){"roughly", NULL}, (const char *const[]){"approximately", NULL},
    (const char *const[]){"approx", NULL},  (const char *const[]){"circa", NULL},
    (const char *const[]){"ish", NULL},     NULL};

static int cue_any(const toks *t, int i, const char *const *const *cues)
{
    for (size_t k = 0; cues[k]; k++) {
        int n = cue(t, i, cues[k]);
        if (n) return n;
    }
    return 0;
}

/* A bare number after a cue is a price when what follows is not a noun
 * (end, punctuation, a stop word or a currency). */
static int bare_price_ok(const toks *t, int after)
{
    if (after >= t->n) return 1;
    const tok *k = &t->v[after];
    if (k->kind != T_WORD) return 1;
    return is_stop(k->text) || cur_word(k->text) != NULL || strcmp(k->text, "each") == 0;
}

static void parse_prices(toks *t, pvg_assist_constraints *c)
{
    for (int i = 0; i < t->n; i++) {
        if (t->v[i].used) continue;
        double v1, v2;
        const char *c1, *c2;
        int e1, e2, h1, h2;
        int n;
        /* between X and Y / from X to Y */
        if ((is_word(t, i, "between") || is_word(t, i, "from")) &&
            (n = money_at(t, i + 1, &v1, &c1, &e1, &h1)) > 0 &&
            (is_word(t, i + 1 + n, "and") || is_word(t, i + 1 + n, "to") ||
             (i + 1 + n < t->n && t->v[i + 1 + n].kind == T_DASH))) {
            int m = money_at(t, i + 2 + n, &v2, &c2, &e2, &h2);
            if (m > 0) {
                bound(c, 'n', v1, h1);
                bound(c, 'x', v2, h2);
                set_cur(c, c1 ? c1 : c2);
                use(t, i, 2 + n + m);
                continue;
            }
        }
        /* X-Y, X to Y (at least one side a money amount, or X-Y bare) */
        if ((n = money_at(t, i, &v1, &c1, &e1, &h1)) > 0 && i + n < t->n &&
            (t->v[i + n].kind == T_DASH || is_word(t, i + n, "to"))) {
            int m = money_at(t, i + n + 1, &v2, &c2, &e2, &h2);
            if (m > 0 && (e1 || e2 || t->v[i + n].kind == T_DASH) &&
                (e1 || e2 || bare_price_ok(t, i + n + 1 + m)) && v2 >= v1) {
                bound(c, 'n', v1, h1);
                bound(c, 'x', v2, h2);
                set_cur(c, c1 ? c1 : c2);
                use(t, i, n + 1 + m);
                continue;
            }
        }
        int kind = 0, cn = 0;
        if ((cn = cue_any(t, i, MAX_CUES)))
            kind = 'x';
        else if ((cn = cue_any(t, i, MIN_CUES)))
            kind = 'n';
        else if ((cn = cue_any(t, i, ABOUT_CUES)))
            kind = 'a';
        else if (i < t->n && t->v[i].kind == T_LT)
            kind = 'x', cn = 1;
        else if (i < t->n && t->v[i].kind == T_GT)
            kind = 'n', cn = 1;
        if (kind) {
            n = money_at(t, i + cn, &v1, &c1, &e1, &h1);
            if (n > 0 && (e1 || bare_price_ok(t, i + cn + n))) {
                /* "£10 or less" style postfixes are covered by the cue */
                if (kind == 'a') {
                    if (h1 || v1 > PVG_ASSIST_PRICE_CAP)
                        bound(c, 'x', v1, 1);
                    else {
                        bound(c, 'n', v1 * 0.8, 0);
                        bound(c, 'x', v1 * 1.2, 0);
                    }
                } else
                    bound(c, kind, v1, h1);
                set_cur(c, c1);
                use(t, i, cn + n);
                continue;
            }
        }
        /* a money amount with a currency and no cue: "£10 or less", "£20 or
         * more", else a budget (maximum) */
        if ((n = money_at(t, i, &v1, &c1, &e1, &h1)) > 0 && e1) {
            int k2 = 'x';
            int extra = 0;
            if (is_word(t, i + n, "or") &&
                (is_word(t, i + n + 1, "more") || is_word(t, i + n + 1, "above") ||
                 is_word(t, i + n + 1, "over") || is_word(t, i + n + 1, "upwards"))) {
                k2 = 'n';
                extra = 2;
            } else if (is_word(t, i + n, "or") &&
                       (is_word(t, i + n + 1, "less") || is_word(t, i + n + 1, "under") ||
                        is_word(t, i + n + 1, "below") || is_word(t, i + n + 1, "cheaper")))
                extra = 2;
            else if (is_word(t, i + n, "ish"))
                k2 = 'a', extra = 1;
            if (k2 == 'a') {
                bound(c, 'n', v1 * 0.8, h1);
                bound(c, 'x', v1 * 1.2, h1);
            } else
                bound(c, k2, v1, h1);
            set_cur(c, c1);
            use(t, i, n + extra);
            if (i > 0 && (is_word(t, i - 1, "for") || is_word(t, i - 1, "spend") ||
                          is_word(t, i - 1, "cost")))
                use(t, i - 1, 1);
        }
    }
    if (c->price_min >= 0 && c->price_max >= 0 && c->price_min > c->price_max) {
        double x = c->price_min;
        c->price_min = c->price_max;
        c->price_max = x;
    }
}

/* ---- quantity ---- */

static const struct {
    const char *w;
    int v;
} NUMBER_WORDS[] = {{"two", 2},     {"three", 3},   {"four", 4},   {"five", 5},      {"six", 6},
                    {"seven", 7},   {"eight", 8},   {"nine", 9},   {"ten", 10},      {"eleven", 11},
                    {"twelve", 12}, {"twenty", 20}, {"dozen", 12}, {"hundred", 100}, {NULL, 0}};

static int number_word(const char *w)
{
    for (size_t i = 0; NUMBER_WORDS[i].w; i++)
        if (strcmp(w, NUMBER_WORDS[i].w) == 0) return NUMBER_WORDS[i].v;
    return 0;
}

static void parse_quantity(toks *t, pvg_assist_constraints *c)
{
    for (int i = 0; i < t->n && !c->quantity; i++) {
        if (t->v[i].used) continue;
        long q = 0;
        int n = 0;
        if (is_word(t, i, "half") && is_word(t, i + 1, "a") && is_word(t, i + 2, "dozen"))
            q = 6, n = 3;
        else if ((is_word(t, i, "a") || is_word(t, i, "one")) && is_word(t, i + 1, "dozen"))
            q = 12, n = 2;
        else if (is_word(t, i, "a") && (is_word(t, i + 1, "pair") || is_word(t, i + 1, "couple")) &&
                 is_word(t, i + 2, "of"))
            q = 2, n = 3;
        else if ((is_word(t, i, "pair") || is_word(t, i, "couple")) && is_word(t, i + 1, "of"))
            q = 2, n = 2;
        else if ((is_word(t, i, "set") || is_word(t, i, "pack") || is_word(t, i, "box")) &&
                 is_word(t, i + 1, "of") && i + 2 < t->n && t->v[i + 2].kind == T_NUM &&
                 !t->v[i + 2].used)
            q = t->v[i + 2].huge ? -1 : (long)t->v[i + 2].value, n = 3;
        else if (t->v[i].kind == T_NUM && i + 1 < t->n && t->v[i + 1].kind == T_WORD &&
                 !is_stop(t->v[i + 1].text) && !(i > 0 && t->v[i - 1].kind == T_CUR))
            q = t->v[i].huge ? -1 : (long)t->v[i].value, n = 1;
        else if (t->v[i].kind == T_WORD && number_word(t->v[i].text) && i + 1 < t->n &&
                 t->v[i + 1].kind == T_WORD &&
                 (!is_stop(t->v[i + 1].text) || is_word(t, i + 1, "dozen")))
            q = number_word(t->v[i].text) * (is_word(t, i + 1, "dozen") ? 12 : 1),
            n = is_word(t, i + 1, "dozen") ? 2 : 1;
        if (!n) continue;
        if (q < 1 || q > PVG_ASSIST_QUANTITY_CAP) {
            note(c, "a quantity of %.3g is out of range and was ignored",
                 q < 0 ? t->v[i + n - 1].value : (double)q);
            use(t, i, n);
            continue;
        }
        c->quantity = q;
        use(t, i, n);
    }
}

/* ---- recipient and occasion ---- */

static const char *const RECIPIENTS[] = {
    "mum",        "mom",         "mother",   "mummy",       "dad",          "father",   "daddy",
    "wife",       "husband",     "sister",   "brother",     "friend",       "friends",  "boss",
    "teacher",    "teachers",    "kid",      "kids",        "child",        "children", "son",
    "daughter",   "grandma",     "granny",   "grandmother", "nan",          "nana",     "grandad",
    "grandpa",    "grandfather", "baby",     "girlfriend",  "boyfriend",    "partner",  "colleague",
    "colleagues", "neighbour",   "neighbor", "niece",       "nephew",       "aunt",     "auntie",
    "uncle",      "toddler",     "girl",     "girls",       "boy",          "boys",     "gardener",
    "cook",       "baker",       "man",      "woman",       "men",          "women",    "him",
    "her",        "family",      "host",     "hostess",     "grandparents", "parents",  "couple",
    "students",   "student",     "nurse",    "bride",       "groom",        NULL};

static const struct {
    const char *w, *w2, *name;
} OCCASIONS[] = {{"christmas", NULL, "christmas"},       {"xmas", NULL, "christmas"},
                 {"birthday", NULL, "birthday"},         {"wedding", NULL, "wedding"},
                 {"anniversary", NULL, "anniversary"},   {"easter", NULL, "easter"},
                 {"valentine", NULL, "valentine's day"}, {"valentines", NULL, "valentine's day"},
                 {"halloween", NULL, "halloween"},       {"mother", "day", "mother's day"},
                 {"mothers", "day", "mother's day"},     {"father", "day", "father's day"},
                 {"fathers", "day", "father's day"},     {"baby", "shower", "baby shower"},
                 {"housewarming", NULL, "housewarming"}, {"retirement", NULL, "retirement"},
                 {"graduation", NULL, "graduation"},     {"party", NULL, "party"},
                 {"secret", "santa", "secret santa"},    {"new", "year", "new year"},
                 {"thanksgiving", NULL, "thanksgiving"}, {"diwali", NULL, "diwali"},
                 {"hanukkah", NULL, "hanukkah"},         {"eid", NULL, "eid"},
                 {"christening", NULL, "christening"},   {NULL, NULL, NULL}};

/* Adds a content word (stemmed) to terms unless there already. */
static void add_word(pvg_assist_word *list, int *n, const char *w)
{
    char st[PVG_ASSIST_WORD_MAX];
    pvg_assist_stem(w, st, sizeof st);
    if (!st[0]) return;
    for (int i = 0; i < *n; i++)
        if (strcmp(list[i], st) == 0) return;
    if (*n == PVG_ASSIST_LIST_MAX) return;
    snprintf(list[(*n)++], PVG_ASSIST_WORD_MAX, "%s", st);
}

/* dst = a sep b, cut to cap - 1 bytes at a UTF-8 character boundary. */
static void join_words(char *dst, size_t cap, const char *a, const char *sep, const char *b)
{
    size_t n = 0;
    const char *parts[3] = {a, sep, b};
    int cut = 0;
    for (int k = 0; k < 3 && !cut; k++)
        for (const char *p = parts[k]; *p; p++) {
            if (n + 1 >= cap) {
                cut = 1;
                break;
            }
            dst[n++] = *p;
        }
    if (cut) { /* drop a character the cut split */
        size_t m = n;
        while (m > 0 && ((unsigned char)dst[m - 1] & 0xC0) == 0x80)
            m--;
        if (m > 0 && ((unsigned char)dst[m - 1] & 0x80)) {
            unsigned char lead = (unsigned char)dst[m - 1];
            size_t want = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
            if (n - (m - 1) < want) n = m - 1;
        }
    }
    dst[n] = 0;
}
static void parse_people(toks *t, const pvg_assist_vocab *v, pvg_assist_constraints *c)
{
    for (int i = 0; i < t->n; i++) {
        if (t->v[i].used || t->v[i].kind != T_WORD) continue;
        /* occasions first: "mother's day" is an occasion, not a recipient */
        for (size_t o = 0; OCCASIONS[o].w && !c->occasion[0]; o++) {
            if (!is_word(t, i, OCCASIONS[o].w)) continue;
            if (OCCASIONS[o].w2 && !is_word(t, i + 1, OCCASIONS[o].w2)) continue;
            snprintf(c->occasion, sizeof c->occasion, "%s", OCCASIONS[o].name);
            int n = OCCASIONS[o].w2 ? 2 : 1;
            /* an occasion the catalog's titles name ("CHRISTMAS") is also a word to match */
            char ost[PVG_ASSIST_WORD_MAX];
            pvg_assist_stem(OCCASIONS[o].name, ost, sizeof ost);
            if (n == 1 && v && pvg_assist_vocab_word_count(v, ost) >= 3)
                add_word(c->terms, &c->n_terms, OCCASIONS[o].name);
            use(t, i, n);
            if (is_word(t, i - 1, "for")) use(t, i - 1, 1);
        }
        if (t->v[i].used) continue;
        /* "X lover", "X fan", "X addict", "loves X", "who likes X" */
        if (!c->recipient[0] && i + 1 < t->n &&
            (is_word(t, i + 1, "lover") || is_word(t, i + 1, "lovers") ||
             is_word(t, i + 1, "fan") || is_word(t, i + 1, "addict") ||
             is_word(t, i + 1, "enthusiast")) &&
            !is_stop(t->v[i].text)) {
            join_words(c->recipient, sizeof c->recipient, t->v[i].text, " ", t->v[i + 1].text);
            add_word(c->terms, &c->n_terms, t->v[i].text);
            t->v[i].noterm = 1;
            use(t, i, 2);
            continue;
        }
        if (!c->recipient[0] &&
            (is_word(t, i, "loves") || is_word(t, i, "likes") || is_word(t, i, "into")) &&
            (is_word(t, i - 1, "who") || is_word(t, i - 1, "that") || is_word(t, i - 1, "she") ||
             is_word(t, i - 1, "he") || is_word(t, i - 1, "mum") || is_word(t, i - 1, "dad")) &&
            i + 1 < t->n && t->v[i + 1].kind == T_WORD && !is_stop(t->v[i + 1].text)) {
            join_words(c->recipient, sizeof c->recipient, t->v[i + 1].text, " lover", "");
            add_word(c->terms, &c->n_terms, t->v[i + 1].text);
            use(t, i, 2);
            continue;
        }
        /* for [my|a|an|the|his|her|our] RECIPIENT */
        if (!c->recipient[0] && is_word(t, i, "for")) {
            int j = i + 1;
            if (is_word(t, j, "my") || is_word(t, j, "a") || is_word(t, j, "an") ||
                is_word(t, j, "the") || is_word(t, j, "his") || is_word(t, j, "our") ||
                is_word(t, j, "your") ||
                (is_word(t, j, "her") && j + 1 < t->n && t->v[j + 1].kind == T_WORD &&
                 in_list(t->v[j + 1].text, RECIPIENTS)))
                j++;
            /* "for my little sister": one adjective between */
            if (j + 1 < t->n && t->v[j].kind == T_WORD && !in_list(t->v[j].text, RECIPIENTS) &&
                t->v[j + 1].kind == T_WORD && in_list(t->v[j + 1].text, RECIPIENTS) &&
                (is_word(t, j, "little") || is_word(t, j, "big") || is_word(t, j, "best") ||
                 is_word(t, j, "old") || is_word(t, j, "young") || is_word(t, j, "new") ||
                 is_word(t, j, "elderly")))
                j++;
            if (j < t->n && t->v[j].kind == T_WORD && in_list(t->v[j].text, RECIPIENTS) &&
                !is_word(t, j + 1, "day")) { /* "for father's day": an occasion */
                snprintf(c->recipient, sizeof c->recipient, "%s", t->v[j].text);
                use(t, i, j - i + 1);
                continue;
            }
        }
        /* "my mum", "mum's birthday" without "for" */
        if (!c->recipient[0] && (is_word(t, i - 1, "my") || is_word(t, i - 1, "our")) &&
            in_list(t->v[i].text, RECIPIENTS) && !is_word(t, i + 1, "day")) {
            snprintf(c->recipient, sizeof c->recipient, "%s", t->v[i].text);
            use(t, i - 1, 2);
        }
    }
}

/* ---- exclusions ---- */

static const char *const NEG[] = {"not",   "no",      "without", "except", "excluding", "exclude",
                                  "avoid", "nothing", "non",     "minus",  NULL};
static const char *const SKIP_AFTER_NEG[] = {"a",    "an",   "the", "any", "too",        "with",
                                             "more", "made", "of",  "in",  "containing", "that",
                                             "is",   "are",  "so",  NULL};
static const char *const EXPENSIVE[] = {"expensive", "pricey", "costly", "dear", NULL};

static void parse_exclusions(toks *t, pvg_assist_constraints *c)
{
    for (int i = 0; i < t->n; i++) {
        if (t->v[i].used || t->v[i].kind != T_WORD) continue;
        int neg = in_list(t->v[i].text, NEG);
        int span = 1;
        if (!neg && (is_word(t, i, "dont") || is_word(t, i, "doesnt") || is_word(t, i, "isnt")) &&
            (is_word(t, i + 1, "want") || is_word(t, i + 1, "like") || is_word(t, i + 1, "need") ||
             is_word(t, i + 1, "include") || is_word(t, i + 1, "have") || is_word(t, i + 1, "be")))
            neg = 1, span = 2;
        if (!neg && is_word(t, i, "other") && is_word(t, i + 1, "than")) neg = 1, span = 2;
        if (!neg) continue;
        int j = i + span;
        while (j < t->n && t->v[j].kind == T_WORD && in_list(t->v[j].text, SKIP_AFTER_NEG))
            j++;
        if (j >= t->n || t->v[j].kind != T_WORD) continue;
        if (in_list(t->v[j].text, EXPENSIVE)) { /* "not too expensive" */
            c->cheap = 1;
            use(t, i, j - i + 1);
            continue;
        }
        if (is_word(t, j, "cheap")) {
            c->expensive = 1;
            use(t, i, j - i + 1);
            continue;
        }
        if (is_stop(t->v[j].text) || t->v[j].used) continue;
        add_word(c->exclusions, &c->n_exclusions, t->v[j].text);
        use(t, i, j - i + 1);
        /* "no hearts or stars", "without glass, plastic" */
        int k = j + 1;
        while (k + 1 < t->n &&
               ((t->v[k].kind == T_WORD &&
                 (strcmp(t->v[k].text, "or") == 0 || strcmp(t->v[k].text, "nor") == 0)) ||
                (t->v[k].kind == T_PUNCT && t->v[k].text[0] == ',')) &&
               t->v[k + 1].kind == T_WORD && !is_stop(t->v[k + 1].text) && !t->v[k + 1].used) {
            add_word(c->exclusions, &c->n_exclusions, t->v[k + 1].text);
            use(t, k, 2);
            k += 2;
        }
    }
}

/* ---- similar to, references ---- */

static const struct {
    const char *w;
    int index;
} ORDINALS[] = {{"first", 0}, {"1st", 0},    {"second", 1}, {"2nd", 1},   {"third", 2},
                {"3rd", 2},   {"fourth", 3}, {"4th", 3},    {"fifth", 4}, {"5th", 4},
                {"last", -2}, {"top", 0},    {NULL, 0}};

static int ordinal_at(const toks *t, int i)
{
    for (size_t o = 0; ORDINALS[o].w; o++)
        if (is_word(t, i, ORDINALS[o].w)) return ORDINALS[o].index;
    return -1;
}

static const char *const PHRASE_STOP[] = {
    "under",   "below", "less", "over",   "above",  "between", "for",
    "without", "not",   "but",  "no",     "except", "around",  "in",
    "cheaper", "from",  "max",  "within", "that",   "which",   NULL};

static const char *const *SIMILAR_CUES[] = {(const char *const[]){"similar", "to", NULL},
                                            (const char *const[]){"something", "like", NULL},
                                            (const char *const[]){"things", "like", NULL},
                                            (const char *const[]){"items", "like", NULL},
                                            (const char *const[]){"more", "like", NULL},
                                            (const char *const[]){"same", "as", NULL},
                                            (const char *const[]){"alternative", "to", NULL},
                                            (const char *const[]){"alternatives", "to", NULL},
                                            (const char *const[]){"similar", NULL},
                                            (const char *const[]){"like", NULL},
                                            NULL};

static void parse_similar(toks *t, const pvg_assist_vocab *v, pvg_assist_constraints *c)
{
    for (int i = 0; i < t->n; i++) {
        if (t->v[i].used) continue;
        int n = cue_any(t, i, SIMILAR_CUES);
        if (!n) continue;
        int bare_like = n == 1 && is_word(t, i, "like");
        int j = i + n;
        if (is_word(t, j - 1, "similar") && is_word(t, j, "one")) j++;
        while (is_word(t, j, "the") || is_word(t, j, "a") || is_word(t, j, "an") ||
               is_word(t, j, "item") || is_word(t, j, "that") || is_word(t, j, "this") ||
               is_word(t, j, "those") || is_word(t, j, "product"))
            j++;
        int ord = ordinal_at(t, j);
        if (ord != -1 || is_word(t, j, "one") || is_word(t, j, "it") || is_word(t, j, "ones") ||
            (j >= t->n && !bare_like)) {
            /* a reference to the previous answer: "more like the second one" */
            c->ref = PVG_ASSIST_REF_SIMILAR;
            c->ref_index = ord == -1 ? (c->ref_index >= 0 ? c->ref_index : 0) : ord;
            int e = j + (ord != -1 ? 1 : 0);
            if (is_word(t, e, "one") || is_word(t, e, "ones") || is_word(t, e, "it")) e++;
            use(t, i, e - i);
            continue;
        }
        /* "like" alone is a similar-to cue only before an item id or a quoted
         * title of the catalog: "something like 85123A" */
        int start = j;
        char phrase[sizeof c->similar_to] = "";
        size_t pl = 0;
        while (j < t->n && (t->v[j].kind == T_WORD || t->v[j].kind == T_NUM) &&
               !in_list(t->v[j].text, PHRASE_STOP) && j - start < 8) {
            size_t wl = strlen(t->v[j].text);
            if (pl + wl + 2 >= sizeof phrase) break;
            if (pl) phrase[pl++] = ' ';
            memcpy(phrase + pl, t->v[j].text, wl);
            pl += wl;
            phrase[pl] = '\0';
            j++;
        }
        if (!pl) continue;
        /* an item id: one token the catalog knows (ids are matched without case) */
        int is_id = 0;
        if (j - start == 1 && v && pvg_assist_vocab_has_id(v, phrase)) {
            is_id = 1;
            pvg_assist_vocab_canonical_id(v, phrase, phrase, sizeof phrase);
        }
        if (j - start == 2 && v && t->v[start].kind == T_NUM && t->v[start + 1].kind == T_WORD) {
            /* "85123A" tokenised as 85123 + a */
            char id[64];
            snprintf(id, sizeof id, "%s%s", t->v[start].text, t->v[start + 1].text);
            if (pvg_assist_vocab_has_id(v, id)) {
                is_id = 1;
                pvg_assist_vocab_canonical_id(v, id, phrase, sizeof phrase);
            }
        }
        if (bare_like && !is_id && !(j - start >= 2)) continue; /* "I like tea": not a reference */
        snprintf(c->similar_to, sizeof c->similar_to, "%s", phrase);
        c->similar_is_id = is_id;
        if (is_id) {
            use(t, start, j - start);
        } else {
            /* the phrase's words are content words to match: keep them as terms */
            for (int k = start; k < j; k++)
                if (t->v[k].kind == T_WORD && !is_stop(t->v[k].text))
                    add_word(c->terms, &c->n_terms, t->v[k].text);
            use(t, start, j - start);
        }
        use(t, i, n);
    }
}

static const char *const COLOURS[] = {
    "red",  "blue",   "green", "pink",   "white",   "black", "yellow", "orange",    "purple",
    "gold", "silver", "grey",  "gray",   "cream",   "ivory", "brown",  "turquoise", "lilac",
    "navy", "teal",   "blush", "copper", "natural", "beige", NULL};

static void parse_refs(toks *t, pvg_assist_constraints *c)
{
    for (int i = 0; i < t->n; i++) {
        if (t->v[i].used) continue;
        if (is_word(t, i, "cheaper") || (is_word(t, i, "less") && is_word(t, i + 1, "expensive"))) {
            c->ref = PVG_ASSIST_REF_CHEAPER;
            int n = is_word(t, i, "less") ? 2 : 1;
            /* "cheaper than the first one", "a cheaper version of the second" */
            int j = i + n;
            while (is_word(t, j, "than") || is_word(t, j, "the") || is_word(t, j, "version") ||
                   is_word(t, j, "of") || is_word(t, j, "one") || is_word(t, j, "ones") ||
                   is_word(t, j, "that") || is_word(t, j, "this") || is_word(t, j, "option"))
                j++;
            int ord = ordinal_at(t, j);
            if (ord != -1) {
                c->ref_index = ord;
                j++;
                if (is_word(t, j, "one")) j++;
            }
            use(t, i, j - i);
            continue;
        }
        if (is_word(t, i, "instead") || (is_word(t, i, "something") && is_word(t, i + 1, "else")) ||
            (is_word(t, i, "start") && is_word(t, i + 1, "over")) ||
            (is_word(t, i, "new") && is_word(t, i + 1, "search"))) {
            c->replace = 1;
            use(t, i, is_word(t, i, "instead") ? 1 : 2);
            continue;
        }
        /* "in red" and friends: a refinement of the last answer */
        if (is_word(t, i, "in") && i + 1 < t->n && in_list(t->v[i + 1].text, COLOURS)) {
            if (c->ref == PVG_ASSIST_REF_NONE) c->ref = PVG_ASSIST_REF_REFINE;
            t->v[i].used = 1;
        }
        if (i == 0 && (is_word(t, 0, "only") || is_word(t, 0, "just") || is_word(t, 0, "but") ||
                       is_word(t, 0, "and") || is_word(t, 0, "also") || is_word(t, 0, "with") ||
                       (is_word(t, 0, "what") && is_word(t, 1, "about")) ||
                       (is_word(t, 0, "how") && is_word(t, 1, "about")) ||
                       (is_word(t, 0, "any") && t->n <= 4) ||
                       (is_word(t, 0, "show") && is_word(t, 1, "more")) ||
                       (is_word(t, 0, "more") && !is_word(t, 1, "than"))))
            if (c->ref == PVG_ASSIST_REF_NONE) c->ref = PVG_ASSIST_REF_REFINE;
    }
}

static const char *const CHEAP[] = {"cheap",   "cheapest", "inexpensive", "budget", "affordable",
                                    "bargain", "bargains", "lowcost",     NULL};
static const char *const LUXURY[] = {"luxury",  "luxurious", "premium",  "posh", "fancy",
                                     "splurge", "highend",   "upmarket", NULL};

static void parse_price_words(toks *t, pvg_assist_constraints *c)
{
    for (int i = 0; i < t->n; i++) {
        if (t->v[i].used || t->v[i].kind != T_WORD) continue;
        if (in_list(t->v[i].text, CHEAP) ||
            (is_word(t, i, "low") && (is_word(t, i + 1, "cost") || is_word(t, i + 1, "price"))) ||
            (is_word(t, i, "pocket") && is_word(t, i + 1, "money")) ||
            (is_word(t, i, "stocking") &&
             (is_word(t, i + 1, "filler") || is_word(t, i + 1, "fillers")))) {
            c->cheap = 1;
            use(t, i,
                is_word(t, i, "low") || is_word(t, i, "pocket") || is_word(t, i, "stocking") ? 2
                                                                                             : 1);
        } else if (in_list(t->v[i].text, LUXURY) || in_list(t->v[i].text, EXPENSIVE) ||
                   (is_word(t, i, "high") && is_word(t, i + 1, "end"))) {
            c->expensive = 1;
            use(t, i, is_word(t, i, "high") ? 2 : 1);
        }
    }
}

/* ---- the rest: content words, categories, attributes ---- */

static void parse_terms(toks *t, const pvg_assist_vocab *v, pvg_assist_constraints *c)
{
    int cat_tok = -1;
    for (int i = 0; i < t->n; i++) {
        tok *k = &t->v[i];
        if (k->used || k->noterm || k->kind != T_WORD || strlen(k->text) < 2 || is_stop(k->text))
            continue;
        add_word(c->terms, &c->n_terms, k->text);
        char st[PVG_ASSIST_WORD_MAX];
        pvg_assist_stem(k->text, st, sizeof st);
        /* colours describe a product, never name its category ("in red") */
        if (v && pvg_assist_vocab_is_category(v, st) && !in_list(k->text, COLOURS)) cat_tok = i;
    }
    /* The category: the last content word that is a catalog category (the
     * product noun, as titles put it last); earlier category words stay
     * attribute words. "mugs or teapots": both. */
    if (cat_tok >= 0) {
        char st[PVG_ASSIST_WORD_MAX];
        pvg_assist_stem(t->v[cat_tok].text, st, sizeof st);
        add_word(c->categories, &c->n_categories, st);
        int j = cat_tok - 1;
        while (j >= 1 &&
               (is_word(t, j, "or") || (t->v[j].kind == T_PUNCT && t->v[j].text[0] == ','))) {
            char s2[PVG_ASSIST_WORD_MAX];
            pvg_assist_stem(t->v[j - 1].text, s2, sizeof s2);
            if (t->v[j - 1].kind != T_WORD || !pvg_assist_vocab_is_category(v, s2)) break;
            add_word(c->categories, &c->n_categories, s2);
            j -= 2;
        }
    }
    for (int i = 0; i < c->n_terms; i++) {
        int is_cat = 0;
        for (int j = 0; j < c->n_categories; j++)
            if (strcmp(c->terms[i], c->categories[j]) == 0) is_cat = 1;
        if (!is_cat && v && pvg_assist_vocab_word_count(v, c->terms[i]) >= 3)
            add_word(c->attributes, &c->n_attributes, c->terms[i]);
    }
}

pvg_status pvg_assist_parse(const pvg_assist_vocab *v, const char *message,
                            pvg_assist_constraints *out, pvg_error *err)
{
    memset(out, 0, sizeof *out);
    out->price_min = out->price_max = -1;
    out->ref_index = -1;
    if (!message) return pvg_error_set(err, PVG_ERR_INVALID, "message: required");
    size_t len = strnlen(message, PVG_ASSIST_MESSAGE_MAX + 1);
    if (len > PVG_ASSIST_MESSAGE_MAX)
        return pvg_error_set(err, PVG_ERR_INVALID, "message: longer than %d bytes",
                             PVG_ASSIST_MESSAGE_MAX);
    const unsigned char *p = (const unsigned char *)message;
    int blank = 1;
    for (size_t i = 0; i < len;) {
        size_t l = utf8_len(p + i, len - i);
        if (!l)
            return pvg_error_set(err, PVG_ERR_INVALID,
                                 "message: invalid UTF-8 at byte offset %zu (0x%02x)", i, p[i]);
        if (l > 1 || !isspace(p[i])) blank = 0;
        i += l;
    }
    if (blank) return pvg_error_set(err, PVG_ERR_INVALID, "message: empty (expected a request)");
    toks *t = calloc(1, sizeof *t);
    if (!t) return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    tokenize(message, len, t);
    parse_prices(t, out);
    parse_similar(t, v, out);
    parse_refs(t, out);
    parse_exclusions(t, out); /* before occasions: "no christmas designs" */
    parse_people(t, v, out);
    parse_price_words(t, out);
    parse_quantity(t, out);
    parse_terms(t, v, out);
    free(t);
    /* relative price words, resolved against the catalog */
    if (v && out->cheap && out->price_max < 0) {
        double q = pvg_assist_vocab_quartile(v, out->n_categories ? out->categories[0] : NULL, 0);
        if (q >= 0) out->price_max = q;
    }
    if (v && out->expensive && out->price_min < 0) {
        double q = pvg_assist_vocab_quartile(v, out->n_categories ? out->categories[0] : NULL, 1);
        if (q >= 0) out->price_min = q;
    }
    return PVG_OK;
}

/* ---- hard constraints ---- */

int pvg_assist_words_contain(const char *text, const char *stem, int prefix)
{
    if (!text) return 0;
    char w[PVG_ASSIST_WORD_MAX], st[PVG_ASSIST_WORD_MAX];
    size_t n = 0;
    for (const char *p = text;; p++) {
        if (*p && isalnum((unsigned char)*p)) {
            if (n + 1 < sizeof w) w[n++] = (char)tolower((unsigned char)*p);
            continue;
        }
        if (*p == '-' && n) continue; /* "T-LIGHT" -> "tlight", as the parser reads it */
        if (n) {
            w[n] = '\0';
            pvg_assist_stem(w, st, sizeof st);
            if (strcmp(st, stem) == 0 || strcmp(w, stem) == 0) return 1;
            /* a longer word made on it: "spot" excludes "SPOTTY", "heart" "HEARTS" */
            size_t sl = strlen(stem);
            if (prefix && sl >= 3 && strncmp(w, stem, sl) == 0) return 1;
            n = 0;
        }
        if (!*p) break;
    }
    return 0;
}

int pvg_assist_item_satisfies(const pvg_assist_constraints *c, const pvg_item *item)
{
    if (c->price_min >= 0 || c->price_max >= 0) {
        if (!(item->price >= 0)) return 0;
        if (c->price_min >= 0 && item->price < c->price_min - 1e-9) return 0;
        if (c->price_max >= 0 && item->price > c->price_max + 1e-9) return 0;
    }
    if (c->n_categories) {
        if (!item->category) return 0;
        char low[PVG_ASSIST_WORD_MAX], st[PVG_ASSIST_WORD_MAX];
        size_t n = 0;
        for (const char *p = item->category; *p && n + 1 < sizeof low; p++)
            low[n++] = (char)tolower((unsigned char)*p);
        low[n] = '\0';
        pvg_assist_stem(low, st, sizeof st);
        int ok = 0;
        for (int i = 0; i < c->n_categories; i++)
            if (strcmp(st, c->categories[i]) == 0) ok = 1;
        if (!ok) return 0;
    }
    for (int i = 0; i < c->n_exclusions; i++)
        if (pvg_assist_words_contain(item->title, c->exclusions[i], 1) ||
            pvg_assist_words_contain(item->category, c->exclusions[i], 1))
            return 0;
    return 1;
}

/* ---- JSON ---- */

static json_t *words_json(const pvg_assist_word *w, int n)
{
    json_t *a = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(a, json_string(w[i]));
    return a;
}

json_t *pvg_assist_constraints_to_json(const pvg_assist_constraints *c)
{
    json_t *o = json_object();
    if (!o) return NULL;
    json_t *price = json_object();
    json_object_set_new(price, "min", c->price_min >= 0 ? json_real(c->price_min) : json_null());
    json_object_set_new(price, "max", c->price_max >= 0 ? json_real(c->price_max) : json_null());
    if (c->currency[0]) json_object_set_new(price, "currency", json_string(c->currency));
    if (c->cheap) json_object_set_new(price, "relative", json_string("cheap"));
    if (c->expensive) json_object_set_new(price, "relative", json_string("expensive"));
    json_object_set_new(o, "price", price);
    json_object_set_new(o, "categories", words_json(c->categories, c->n_categories));
    json_object_set_new(o, "terms", words_json(c->terms, c->n_terms));
    json_object_set_new(o, "attributes", words_json(c->attributes, c->n_attributes));
    json_object_set_new(o, "exclusions", words_json(c->exclusions, c->n_exclusions));
    json_object_set_new(o, "recipient", c->recipient[0] ? json_string(c->recipient) : json_null());
    json_object_set_new(o, "occasion", c->occasion[0] ? json_string(c->occasion) : json_null());
    json_object_set_new(o, "quantity", c->quantity ? json_integer(c->quantity) : json_null());
    if (c->similar_to[0]) {
        json_t *s = json_object();
        json_object_set_new(s, c->similar_is_id ? "item" : "title", json_string(c->similar_to));
        json_object_set_new(o, "similar_to", s);
    } else
        json_object_set_new(o, "similar_to", json_null());
    static const char *const REFS[] = {"none", "similar", "cheaper", "refine"};
    json_t *ref = json_object();
    json_object_set_new(ref, "kind", json_string(REFS[c->ref]));
    json_object_set_new(ref, "index",
                        c->ref_index == -2  ? json_string("last")
                        : c->ref_index >= 0 ? json_integer(c->ref_index)
                                            : json_null());
    json_object_set_new(o, "reference", ref);
    if (c->replace) json_object_set_new(o, "new_request", json_true());
    if (c->notes[0]) json_object_set_new(o, "notes", json_string(c->notes));
    return o;
}

char *pvg_assist_constraints_json(const pvg_assist_constraints *c)
{
    json_t *o = pvg_assist_constraints_to_json(c);
    if (!o) return NULL;
    char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10));
    json_decref(o);
    return s;
}

static void words_from_json(json_t *a, pvg_assist_word *w, int *n)
{
    size_t i;
    json_t *v;
    *n = 0;
    json_array_foreach(a, i, v)
    {
        if (!json_is_string(v) || *n == PVG_ASSIST_LIST_MAX) continue;
        snprintf(w[(*n)++], PVG_ASSIST_WORD_MAX, "%s", json_string_value(v));
    }
}

static void str_from_json(json_t *v, char *out, size_t cap)
{
    snprintf(out, cap, "%s", json_is_string(v) ? json_string_value(v) : "");
}

void pvg_assist_constraints_from_json(json_t *o, pvg_assist_constraints *c)
{
    memset(c, 0, sizeof *c);
    c->price_min = c->price_max = -1;
    c->ref_index = -1;
    json_t *price = json_object_get(o, "price");
    json_t *mn = json_object_get(price, "min"), *mx = json_object_get(price, "max");
    if (json_is_number(mn)) c->price_min = json_number_value(mn);
    if (json_is_number(mx)) c->price_max = json_number_value(mx);
    str_from_json(json_object_get(price, "currency"), c->currency, sizeof c->currency);
    const char *rel = json_string_value(json_object_get(price, "relative"));
    if (rel && strcmp(rel, "cheap") == 0) c->cheap = 1;
    if (rel && strcmp(rel, "expensive") == 0) c->expensive = 1;
    words_from_json(json_object_get(o, "categories"), c->categories, &c->n_categories);
    words_from_json(json_object_get(o, "terms"), c->terms, &c->n_terms);
    words_from_json(json_object_get(o, "attributes"), c->attributes, &c->n_attributes);
    words_from_json(json_object_get(o, "exclusions"), c->exclusions, &c->n_exclusions);
    str_from_json(json_object_get(o, "recipient"), c->recipient, sizeof c->recipient);
    str_from_json(json_object_get(o, "occasion"), c->occasion, sizeof c->occasion);
    json_t *q = json_object_get(o, "quantity");
    if (json_is_integer(q)) c->quantity = (long)json_integer_value(q);
    json_t *sim = json_object_get(o, "similar_to");
    if (json_is_object(sim)) {
        json_t *id = json_object_get(sim, "item");
        c->similar_is_id = json_is_string(id);
        str_from_json(id ? id : json_object_get(sim, "title"), c->similar_to, sizeof c->similar_to);
    }
}
