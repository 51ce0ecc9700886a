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

#endif
