/* The byte classes of HTTP/1.1 (RFC 9110), shared by the request side
 * (st_http_request.c) and the response parser (st_http_response.c). */
#ifndef ST_HTTP_CHARS_H
#define ST_HTTP_CHARS_H

#include <stddef.h>
#include <string.h>

/* ---- small byte classes ----------------------------------------------- */

static inline int is_digit(unsigned char c) {
    return c >= '0' && c <= '9';
}

static inline int is_alpha(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static inline int hex_value(unsigned char c) {
    if (is_digit(c))
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static inline unsigned char lower(unsigned char c) {
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + ('a' - 'A')) : c;
}

static inline int equal_nocase(const char *s, size_t n, const char *word) {
    size_t i;
    if (strlen(word) != n)
        return 0;
    for (i = 0; i < n; i++)
        if (lower((unsigned char)s[i]) != (unsigned char)word[i])
            return 0;
    return 1;
}

/* Byte classes, one table lookup each: TOKEN is RFC 9110's tchar (what a
 * header name is made of: letters, digits and !#$%&'*+-.^_`|~); FIELD is
 * what field values and reason phrases may hold (visible ASCII, space,
 * tab and bytes above 0x7F; no other control byte: a stray CR, a NUL). */
enum { TOKEN = 1, FIELD = 2 };
static const unsigned char byte_class[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    2, 3, 2, 3, 3, 3, 3, 3, 2, 2, 3, 3, 2, 3, 3, 2,
    3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 2, 2, 2, 2, 2, 2,
    2, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3,
    3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 2, 2, 2, 3, 3,
    3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3,
    3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 2, 3, 2, 3, 0,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
};

static inline int is_token_char(unsigned char c) { return byte_class[c] & TOKEN; }

static inline int is_field_char(unsigned char c) { return byte_class[c] & FIELD; }

static inline int all_field_chars(const char *s, size_t n) {
    size_t i;
    for (i = 0; i < n; i++)
        if (!is_field_char((unsigned char)s[i]))
            return 0;
    return 1;
}

static inline int is_ows(char c) {
    return c == ' ' || c == '\t';
}

/* Drops optional white space around s[0..n). */
static inline void trim_ows(const char **s, size_t *n) {
    while (*n > 0 && is_ows((*s)[0]))
        (*s)++, (*n)--;
    while (*n > 0 && is_ows((*s)[*n - 1]))
        (*n)--;
}

#endif
