/*
 * assist_internal.h - shared by the files of src/assistant/ (parse.c,
 * vocab.c, assist.c). Not installed.
 */
#ifndef PVG_ASSIST_INTERNAL_H
#define PVG_ASSIST_INTERNAL_H

#include <privguide/assistant.h>

#include <jansson.h>

/* Plural stripping ("candles" -> "candle", "boxes" -> "box", "berries" ->
 * "berry"): the one normalisation of words the parser, the vocabulary and
 * the filters share. out gets at most cap - 1 bytes. */
void pvg_assist_stem(const char *in, char *out, size_t cap);

/* 1 when one of the words of text (split at non-alphanumerics, lower-cased,
 * stemmed) is stem, or, with prefix and a stem of 3 letters or more, starts
 * with it. */
int pvg_assist_words_contain(const char *text, const char *stem, int prefix);

/* Vocabulary look-ups (vocab.c): items whose title holds the (stemmed)
 * word; 1 when a stem names a category of at least 3 items; 1 when an item
 * id is in the catalog (case-insensitive). */
long pvg_assist_vocab_word_count(const pvg_assist_vocab *v, const char *stem);
int pvg_assist_vocab_is_category(const pvg_assist_vocab *v, const char *stem);
int pvg_assist_vocab_has_id(const pvg_assist_vocab *v, const char *id);
/* The catalog's spelling of an id matched without case into out (may be
 * id itself); 1 when found. */
int pvg_assist_vocab_canonical_id(const pvg_assist_vocab *v, const char *id, char *out, size_t cap);

/* The constraints as a JSON object (new reference). */
json_t *pvg_assist_constraints_to_json(const pvg_assist_constraints *c);
/* The inverse (the fields a conversation's state keeps; a missing field
 * reads as "none"). */
void pvg_assist_constraints_from_json(json_t *o, pvg_assist_constraints *c);

/* The optional language model (llm.c; docs/assistant.md "Language
 * model"). new reads the key file into sodium_malloc memory; a NULL or
 * empty url gives *out = NULL (none configured) and PVG_OK. */
typedef struct pvg_assist_llm pvg_assist_llm;
pvg_status pvg_assist_llm_new(const pvg_assist_llm_options *o, pvg_assist_llm **out,
                              pvg_error *err) PVG_WARN_UNUSED;
void pvg_assist_llm_free(pvg_assist_llm *l); /* NULL ok; wipes the key */
/* The request body (new string, free()): the model, the fixed instruction,
 * the message and, per item of items (the answer's array), its title,
 * price and category only. NULL when out of memory. */
char *pvg_assist_llm_body(const pvg_assist_llm *l, const char *message, json_t *items);
/* Asks the endpoint to phrase the answer. 1: *text is the phrased text
 * (new, free()); 0: it failed, reason (cap bytes) says why in words
 * (never the key). Thread-safe: one libcurl handle per call. */
int pvg_assist_llm_phrase(const pvg_assist_llm *l, const char *message, json_t *items, char **text,
                          char *reason, size_t cap);

#endif
