/*
 * text.h - small text utilities shared by the readers, the store and the
 * server: UTF-8 validation, Latin-1 transcoding, date-time parsing,
 * money rounding. Internal (not installed).
 */
#ifndef PVG_STORE_TEXT_H
#define PVG_STORE_TEXT_H

#include <stddef.h>
#include <stdint.h>

/* Byte offset of the first invalid UTF-8 sequence in s[0..n), or -1 when
 * the text is valid (overlongs, surrogates and > U+10FFFF are invalid). */
long long pvg_utf8_invalid_at(const char *s, size_t n);

/* Transcodes Latin-1 s[0..n) into out (room for 2n+1 bytes); returns the
 * output length and NUL-terminates. */
size_t pvg_latin1_to_utf8(const char *s, size_t n, char *out);

/* Parses "YYYY-MM-DD[ T]HH:MM[:SS][Z|+HH:MM|-HH:MM]", "YYYY-MM-DD" or
 * "M/D/YYYY H:MM[:SS]" as UTC (or with the given offset) into Unix
 * seconds. Returns 0 on success, -1 when malformed or out of range. */
int pvg_parse_datetime(const char *s, int64_t *out);

/* Formats Unix seconds as "YYYY-MM-DDTHH:MM:SSZ" into buf (>= 21 bytes). */
void pvg_format_datetime(int64_t t, char *buf, size_t cap);

/* Days since 1970-01-01 of a civil date (proleptic Gregorian). */
int64_t pvg_days_from_civil(int64_t y, unsigned m, unsigned d);

/* Rounds money to whole cents (half away from zero). */
double pvg_round_cents(double x);

#endif
