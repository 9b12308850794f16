/* Byte-level text work: percent-encoding, UTF-8, trimming and the
 * case-insensitive comparison the gateway's sentences need. */
#include <stdint.h>
#include <string.h>

#include "st_text.h"


/* 1 for the bytes RFC 3986 leaves unreserved (A-Z a-z 0-9 - . _ ~), 3 for
 * the rest: the length each byte takes in a query value. A constant table,
 * since every request pays this for every byte. */
static const unsigned char encoded_width[256] = {
    3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3,
    3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 1, 1, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 3, 3, 3, 3, 3, 3,
    3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 3, 3, 3, 3, 1,
    3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 3, 3, 3, 1, 3,
    3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3,
    3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3,
    3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3,
    3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3,
};

static const unsigned char *widths(void) { return encoded_width; }

size_t st_percent_encoded_len(const char *s, size_t n) {
    const unsigned char *w = widths();
    size_t i, len = 0;
    for (i = 0; i < n; i++)
        len += w[(unsigned char)s[i]];
    return len;
}

/* Writes in place into room for the worst case (every byte escaped):
 * one reservation per value, not one append per byte. */
int st_percent_encode(st_buf *out, const char *s, size_t n) {
    static const char hex[] = "0123456789ABCDEF";
    char *p = n > ((size_t)-1) / 3 ? NULL : st_buf_reserve_tail(out, 3 * n);
    const unsigned char *w = widths();
    size_t i, o = 0;
    if (!p)
        return n == 0 && !out->failed ? 0 : (out->failed = 1, -1);
    for (i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (w[ch] == 1) {
            p[o++] = (char)ch;
        } else {
            p[o++] = '%';
            p[o++] = hex[ch >> 4];
            p[o++] = hex[ch & 15];
        }
    }
    st_buf_commit(out, o);
    return 0;
}

/* Decodes one code point at s[0..n); returns its length, 0 if malformed. */
static size_t utf8_decode(const unsigned char *s, size_t n, unsigned long *cp) {
    size_t len, i;
    unsigned long c, min;
    if (n == 0)
        return 0;
    if (s[0] < 0x80) {
        *cp = s[0];
        return 1;
    } else if ((s[0] & 0xE0) == 0xC0) {
        len = 2, c = s[0] & 0x1F, min = 0x80;
    } else if ((s[0] & 0xF0) == 0xE0) {
        len = 3, c = s[0] & 0x0F, min = 0x800;
    } else if ((s[0] & 0xF8) == 0xF0) {
        len = 4, c = s[0] & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        c = (c << 6) | (s[i] & 0x3F);
    }
    if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
        return 0;
    *cp = c;
    return len;
}

size_t st_utf8_char_len(const char *s, size_t n) {
    unsigned long cp;
    return utf8_decode((const unsigned char *)s, n, &cp);
}

#define ONES UINT64_C(0x0101010101010101)
#define HIGHS UINT64_C(0x8080808080808080)

/* How many bytes at the start of s are ASCII (and not NUL, with no_nul),
 * read a word at a time: answers and most texts are all ASCII, and a bulk
 * call checks every text. */
static size_t ascii_run(const unsigned char *s, size_t n, int no_nul) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t word;
        memcpy(&word, s + i, sizeof word);
        if ((word & HIGHS) || (no_nul && ((word - ONES) & ~word & HIGHS)))
            break;
    }
    while (i < n && s[i] < 0x80 && (s[i] != 0 || !no_nul))
        i++;
    return i;
}

/* ST_TEXT_OK, or the first flaw: a NUL byte (with no_nul) or a sequence
 * that is not UTF-8, in one pass; *at: where the flaw starts (n if none). */
static st_text_flaw scan_text(const char *s, size_t n, int no_nul,
                              size_t *at) {
    const unsigned char *p = (const unsigned char *)s;
    size_t left = n;
    st_text_flaw flaw = ST_TEXT_OK;
    while (left > 0) {
        unsigned long cp;
        size_t len = ascii_run(p, left, no_nul);
        if (len == 0 && no_nul && *p == 0) {
            flaw = ST_TEXT_NUL;
            break;
        }
        if (len == 0 && (len = utf8_decode(p, left, &cp)) == 0) {
            flaw = ST_TEXT_NOT_UTF8;
            break;
        }
        p += len;
        left -= len;
    }
    *at = n - left;
    return flaw;
}

size_t st_utf8_valid_prefix(const char *s, size_t n) {
    size_t at;
    scan_text(s, n, 0, &at);
    return at;
}

int st_utf8_valid(const char *s, size_t n) {
    return st_utf8_valid_prefix(s, n) == n;
}

st_text_flaw st_text_flaws(const char *s, size_t n) {
    size_t at;
    st_text_flaw flaw = scan_text(s, n, 1, &at);
    /* a NUL anywhere is named first, as a check of it alone would */
    if (flaw == ST_TEXT_NOT_UTF8 && memchr(s, '\0', n))
        return ST_TEXT_NUL;
    return flaw;
}

static int is_space(unsigned char ch) {
    return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n' || ch == '\v' ||
           ch == '\f';
}

void st_trim(const char **s, size_t *n) {
    const char *p = *s;
    size_t len = *n;
    if (len >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0)
        p += 3, len -= 3;
    while (len > 0 && is_space((unsigned char)p[0]))
        p++, len--;
    while (len > 0 && is_space((unsigned char)p[len - 1]))
        len--;
    *s = p;
    *n = len;
}

/* Lower case for ASCII and Cyrillic, the only scripts gateway sentences use. */
static unsigned long fold_case(unsigned long cp) {
    if (cp >= 'A' && cp <= 'Z')
        return cp + 32;
    if (cp >= 0x0410 && cp <= 0x042F) /* А..Я */
        return cp + 0x20;
    if (cp >= 0x0400 && cp <= 0x040F) /* Ѐ..Џ, Ё among them */
        return cp + 0x50;
    return cp;
}

#define END_OF_TEXT (-2L) /* not 0: a NUL byte is a code point like others */

/* The next folded code point of a sentence, white space runs collapsed to
 * one ' '; END_OF_TEXT at the end, -1 on malformed UTF-8. */
static long next_folded(const unsigned char **p, const unsigned char *end) {
    unsigned long cp;
    size_t len;
    if (*p >= end)
        return END_OF_TEXT;
    if (is_space(**p)) {
        while (*p < end && is_space(**p))
            (*p)++;
        return ' ';
    }
    len = utf8_decode(*p, (size_t)(end - *p), &cp);
    if (len == 0)
        return -1;
    *p += len;
    return (long)fold_case(cp);
}

/* Trims like st_trim, then trailing full stops and the white space around
 * them; only the start may carry a BOM. */
static void trim_sentence(const char **s, size_t *n) {
    st_trim(s, n);
    while (*n > 0 && ((*s)[*n - 1] == '.' || is_space((unsigned char)(*s)[*n - 1])))
        (*n)--;
}

int st_sentence_equal(const char *a, size_t an, const char *b, size_t bn) {
    const unsigned char *pa, *pb, *ea, *eb;
    trim_sentence(&a, &an);
    trim_sentence(&b, &bn);
    pa = (const unsigned char *)a, ea = pa + an;
    pb = (const unsigned char *)b, eb = pb + bn;
    for (;;) {
        long ca = next_folded(&pa, ea), cb = next_folded(&pb, eb);
        if (ca == -1 || cb == -1 || ca != cb)
            return 0;
        if (ca == END_OF_TEXT)
            return 1;
    }
}

int st_json_plain(const char *s, size_t n) {
    size_t i;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\')
            return 0;
    }
    return 1;
}
