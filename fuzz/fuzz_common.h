/* Shared helpers for the libFuzzer harnesses in fuzz/. Harness-only code:
 * nothing here is part of the module. */
#ifndef FUZZ_COMMON_H
#define FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "st_error.h"
#include "st_parse.h"
#include "st_request.h"
#include "st_segments.h"
#include "st_text.h"
#include "st_validate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A property that does not hold is a finding: say which, then abort so
 * libFuzzer saves the input as crash-<sha1>. */
#define CHECK(cond)                                                          \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "PROPERTY FAILED %s:%d: %s\n", __FILE__,         \
                    __LINE__, #cond);                                        \
            abort();                                                         \
        }                                                                    \
    } while (0)

/* A heap copy of exactly n bytes (no terminator), so ASan sees any read
 * past the end. malloc(0) may return NULL: use 1 byte then. */
static inline char *fuzz_dup(const uint8_t *data, size_t n) {
    char *p = malloc(n ? n : 1);
    if (!p)
        abort();
    if (n)
        memcpy(p, data, n);
    return p;
}

/* A NUL-terminated heap copy (the data may hold NULs; they end the string). */
static inline char *fuzz_strdup(const uint8_t *data, size_t n) {
    char *p = malloc(n + 1);
    if (!p)
        abort();
    if (n)
        memcpy(p, data, n);
    p[n] = '\0';
    return p;
}

/* Splits the input into fields on a separator byte sequence; a field is
 * taken at a time. */
typedef struct fuzz_reader {
    const uint8_t *p;
    size_t n;
} fuzz_reader;

static inline unsigned fuzz_byte(fuzz_reader *r) {
    unsigned b;
    if (r->n == 0)
        return 0;
    b = r->p[0];
    r->p++, r->n--;
    return b;
}

static inline unsigned fuzz_u16(fuzz_reader *r) {
    unsigned hi = fuzz_byte(r);
    return (hi << 8) | fuzz_byte(r);
}

/* The next field: bytes up to a 0xFF byte (not included) or the end. */
static inline void fuzz_field(fuzz_reader *r, const uint8_t **s, size_t *n) {
    const uint8_t *end = memchr(r->p, 0xFF, r->n);
    size_t len = end ? (size_t)(end - r->p) : r->n;
    *s = r->p;
    *n = len;
    r->p += len + (end ? 1 : 0);
    r->n -= len + (end ? 1 : 0);
}

/* The properties every error message must have: NUL-terminated inside the
 * buffer, one line of no control bytes, a code that is a failure. */
static inline void check_error(const st_error *err) {
    size_t len = strnlen(err->message, sizeof err->message);
    size_t i;
    CHECK(len < ST_ERR_MAX);
    CHECK(len > 0);
    CHECK(err->code != ST_OK && err->code < ST_CODE_COUNT);
    for (i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)err->message[i];
        CHECK(ch >= 0x20 && ch != 0x7F);
    }
}

/* A reference UTF-8 validator written from RFC 3629's table of well-formed
 * byte sequences (section 4), independently of st_utf8_valid. */
static inline int ref_utf8_valid(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned char b = s[i];
        unsigned char lo = 0x80, hi = 0xBF;
        size_t k, len;
        if (b <= 0x7F) {
            i++;
            continue;
        } else if (b >= 0xC2 && b <= 0xDF) {
            len = 2;
        } else if (b == 0xE0) {
            len = 3, lo = 0xA0;
        } else if ((b >= 0xE1 && b <= 0xEC) || b == 0xEE || b == 0xEF) {
            len = 3;
        } else if (b == 0xED) {
            len = 3, hi = 0x9F;
        } else if (b == 0xF0) {
            len = 4, lo = 0x90;
        } else if (b >= 0xF1 && b <= 0xF3) {
            len = 4;
        } else if (b == 0xF4) {
            len = 4, hi = 0x8F;
        } else {
            return 0;
        }
        if (n - i < len)
            return 0;
        if (s[i + 1] < lo || s[i + 1] > hi)
            return 0;
        for (k = 2; k < len; k++)
            if (s[i + k] < 0x80 || s[i + k] > 0xBF)
                return 0;
        i += len;
    }
    return 1;
}

#endif
