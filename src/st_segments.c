/* How many SMS parts a text costs (GSM 03.38 / 03.40), without the network.
 * GSM-7 when every character is in the default alphabet or its extension
 * table (extension characters take an escape septet too), UCS-2 otherwise. */
#include <string.h>

#include "st_segments.h"
#include "st_text.h"

#define GSM_SINGLE 160
#define GSM_MULTI 153
#define UCS2_SINGLE 70
#define UCS2_MULTI 67

/* The default alphabet, apart from A-Z, a-z and 0-9 (checked directly).
 * 0x1B (escape) is not a character of its own. */
static const unsigned short gsm_basic[] = {
    '@',    0x00A3, '$',    0x00A5, 0x00E8, 0x00E9, 0x00F9, 0x00EC, 0x00F2,
    0x00C7, '\n',   0x00D8, 0x00F8, '\r',   0x00C5, 0x00E5, 0x0394, '_',
    0x03A6, 0x0393, 0x039B, 0x03A9, 0x03A0, 0x03A8, 0x03A3, 0x0398, 0x039E,
    0x00C6, 0x00E6, 0x00DF, 0x00C9, ' ',    '!',    '"',    '#',    0x00A4,
    '%',    '&',    '\'',   '(',    ')',    '*',    '+',    ',',    '-',
    '.',    '/',    ':',    ';',    '<',    '=',    '>',    '?',    0x00A1,
    0x00C4, 0x00D6, 0x00D1, 0x00DC, 0x00A7, 0x00BF, 0x00E4, 0x00F6, 0x00F1,
    0x00FC, 0x00E0,
};

static const unsigned short gsm_extension[] = {
    '\f', '^', '{', '}', '\\', '[', '~', ']', '|', 0x20AC,
};

static int in_table(unsigned long cp, const unsigned short *t, size_t n) {
    size_t i;
    for (i = 0; i < n; i++)
        if (t[i] == cp)
            return 1;
    return 0;
}

/* Septets a character takes in GSM-7; 0 if it has no GSM-7 form. */
static int gsm_septets(unsigned long cp) {
    if ((cp >= 'A' && cp <= 'Z') || (cp >= 'a' && cp <= 'z') ||
        (cp >= '0' && cp <= '9'))
        return 1;
    if (in_table(cp, gsm_basic, sizeof gsm_basic / sizeof gsm_basic[0]))
        return 1;
    if (in_table(cp, gsm_extension,
                 sizeof gsm_extension / sizeof gsm_extension[0]))
        return 2;
    return 0;
}

static size_t next_code_point(const char *s, size_t n, unsigned long *cp) {
    const unsigned char *p = (const unsigned char *)s;
    size_t len = p[0] < 0x80 ? 1 : p[0] < 0xE0 ? 2 : p[0] < 0xF0 ? 3 : 4;
    unsigned long c = len == 1 ? p[0] : p[0] & (0x3F >> (len - 1));
    size_t i;
    for (i = 1; i < len && i < n; i++)
        c = (c << 6) | (p[i] & 0x3F);
    *cp = c;
    return len;
}

/* Packs units (1 or 2 each; a pair never split) into parts of `per` units,
 * counting parts and what is left in the last one. */
typedef struct packer {
    size_t per, parts, used;
} packer;

static void pack(packer *pk, size_t units) {
    if (pk->parts == 0 || pk->used + units > pk->per) {
        pk->parts++;
        pk->used = 0;
    }
    pk->used += units;
}

static void count(const char *s, size_t n, int gsm, size_t per, packer *pk,
                  size_t *chars) {
    size_t i = 0;
    pk->per = per;
    pk->parts = pk->used = 0;
    *chars = 0;
    while (i < n) {
        unsigned long cp;
        i += next_code_point(s + i, n - i, &cp);
        pack(pk, gsm ? (size_t)gsm_septets(cp) : (cp > 0xFFFF ? 2 : 1));
        (*chars)++;
    }
}

static int all_gsm(const char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned long cp;
        i += next_code_point(s + i, n - i, &cp);
        if (gsm_septets(cp) == 0)
            return 0;
    }
    return 1;
}

int st_segments(const char *s, size_t n, st_segments_info *out,
                st_error *err) {
    size_t chars;
    int gsm;
    packer pk;
    if (!st_utf8_valid(s, n))
        return st_fail(err, ST_E_INVALID, "invalid text: it is not valid UTF-8");
    gsm = all_gsm(s, n);
    /* One part holds more than each part of a longer message (the rest
     * carries the concatenation header), so count again if it overflows. */
    count(s, n, gsm, gsm ? GSM_SINGLE : UCS2_SINGLE, &pk, &chars);
    if (pk.parts > 1)
        count(s, n, gsm, gsm ? GSM_MULTI : UCS2_MULTI, &pk, &chars);
    out->ucs2 = !gsm;
    out->parts = pk.parts;
    out->chars = chars;
    out->per_part = pk.per;
    out->remaining = pk.parts ? pk.per - pk.used : pk.per;
    return 0;
}
