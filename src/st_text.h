/* Byte-level text work: percent-encoding, UTF-8, trimming, and the
 * case-insensitive comparison the gateway's sentences need. */
#ifndef ST_TEXT_H
#define ST_TEXT_H

#include <stddef.h>

#include "st_buf.h"

/* Appends s percent-encoded: everything but RFC 3986 unreserved bytes. */
int st_percent_encode(st_buf *out, const char *s, size_t n);
size_t st_percent_encoded_len(const char *s, size_t n);
/* Length of the well-formed UTF-8 character at s, 0 if malformed. */
size_t st_utf8_char_len(const char *s, size_t n);
/* 1 if s[0..n) is well-formed UTF-8 (no overlongs, surrogates or > U+10FFFF). */
int st_utf8_valid(const char *s, size_t n);
/* How many bytes at the start of s are well-formed UTF-8 (n: all of it). */
size_t st_utf8_valid_prefix(const char *s, size_t n);

typedef enum st_text_flaw { ST_TEXT_OK, ST_TEXT_NUL, ST_TEXT_NOT_UTF8 } st_text_flaw;
/* What makes s no text to send, NUL bytes first, in one pass. */
st_text_flaw st_text_flaws(const char *s, size_t n);
/* 1 if s[0..n) can stand between JSON's quotes as it is: printable ASCII
 * with no quote or backslash (numbers and ids, nearly always). */
int st_json_plain(const char *s, size_t n);
/* Strips a leading UTF-8 BOM and surrounding white space. */
void st_trim(const char **s, size_t *n);
/* Compares two UTF-8 sentences ignoring case (ASCII and Cyrillic), runs of
 * white space, and a trailing full stop. */
int st_sentence_equal(const char *a, size_t an, const char *b, size_t bn);

#endif
