/* Validation and text helpers: st_sender_check, st_text_check, st_id_check,
 * st_utf8_valid, st_sentence_equal, st_segments, st_redact.
 *
 * The input is split on 0xFF bytes into: a text, a second sentence, a
 * message, a secret (redaction), and a byte choosing the message buffer size.
 *
 * Properties:
 *  - st_utf8_valid agrees with a reference validator written from RFC 3629.
 *  - st_sender_check: accepts exactly 1..15 digits or 1..11 of [A-Za-z0-9
 *    .-_ space]; st_text_check: exactly non-empty, NUL-free, valid UTF-8;
 *    st_id_check: exactly 1..ST_ID_MAX digits. Messages: NUL-terminated,
 *    no control bytes, valid UTF-8, code ST_E_INVALID.
 *  - st_sentence_equal is symmetric (any bytes) and, for valid UTF-8,
 *    reflexive, blind to ASCII case and to an added trailing full stop.
 *  - st_segments: fails exactly on invalid UTF-8; chars is the code point
 *    count; per_part is 160/153 (GSM-7) or 70/67 (UCS-2), the single-part
 *    size iff parts <= 1; for GSM-7 parts == 0 iff the text is empty;
 *    UCS-2 is never chosen for an empty text; remaining <= per_part; the
 *    parts hold every unit; ASCII letters/digits/space text is GSM-7 with
 *    the exact part count, text with Cyrillic is UCS-2 with the exact count.
 *  - st_redact: the message stays NUL-terminated inside cap and the bytes
 *    past cap are untouched; a secret (without '*', see README) no longer
 *    occurs raw or percent-encoded; a message without the secret is left as
 *    it was.
 */
#include <ctype.h>

#include "fuzz_common.h"

static int all_digits(const char *s, size_t n) {
    size_t i;
    for (i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return 0;
    return n > 0;
}

static void check_invalid(const st_error *err) {
    check_error(err);
    CHECK(err->code == ST_E_INVALID);
    CHECK(st_utf8_valid(err->message, strlen(err->message)));
}

static void check_checks(const char *s, size_t n) {
    st_error err;
    size_t i;
    int want, rc;

    /* sender */
    want = all_digits(s, n) && n <= 15;
    if (!want && n >= 1 && n <= 11) {
        want = 1;
        for (i = 0; i < n; i++) {
            char ch = s[i];
            if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
                  (ch >= '0' && ch <= '9') || ch == ' ' || ch == '-' ||
                  ch == '.' || ch == '_'))
                want = 0;
        }
    }
    memset(&err, 'Y', sizeof err);
    rc = st_sender_check(s, n, &err);
    CHECK((rc == 0) == want);
    if (rc != 0)
        check_invalid(&err);

    /* text */
    want = n > 0 && !memchr(s, '\0', n) &&
           ref_utf8_valid((const unsigned char *)s, n);
    memset(&err, 'Y', sizeof err);
    rc = st_text_check(s, n, &err);
    CHECK((rc == 0) == want);
    if (rc != 0)
        check_invalid(&err);

    /* id */
    want = all_digits(s, n) && n <= ST_ID_MAX;
    memset(&err, 'Y', sizeof err);
    rc = st_id_check(s, n, &err);
    CHECK((rc == 0) == want);
    if (rc != 0)
        check_invalid(&err);
}

static void check_sentences(const char *a, size_t an, const char *b,
                            size_t bn) {
    int ab = st_sentence_equal(a, an, b, bn);
    CHECK(ab == 0 || ab == 1);
    CHECK(ab == st_sentence_equal(b, bn, a, an));
    if (ref_utf8_valid((const unsigned char *)a, an)) {
        char *up = fuzz_dup((const uint8_t *)a, an);
        size_t i;
        CHECK(st_sentence_equal(a, an, a, an));
        for (i = 0; i < an; i++)
            if (up[i] >= 'a' && up[i] <= 'z')
                up[i] = (char)(up[i] - 32);
        CHECK(st_sentence_equal(a, an, up, an));
        CHECK(st_sentence_equal(up, an, a, an));
        /* "ignoring a trailing full stop" (st_text.h) */
        {
            char *dot = malloc(an + 1);
            if (!dot)
                abort();
            memcpy(dot, a, an);
            dot[an] = '.';
            CHECK(st_sentence_equal(a, an, dot, an + 1));
            free(dot);
        }
        free(up);
    }
}

/* Code points of valid UTF-8; UTF-16 units; whether any is Cyrillic and
 * whether all are ASCII letters, digits or space. */
static void scan_text(const unsigned char *s, size_t n, size_t *chars,
                      size_t *units, int *cyrillic, int *plain) {
    size_t i = 0;
    *chars = *units = 0;
    *cyrillic = 0;
    *plain = 1;
    while (i < n) {
        unsigned long cp;
        size_t len = s[i] < 0x80 ? 1 : s[i] < 0xE0 ? 2 : s[i] < 0xF0 ? 3 : 4;
        cp = len == 1 ? s[i] : len == 2 ? s[i] & 0x1F : len == 3 ? s[i] & 0x0F
                                                                 : s[i] & 0x07;
        for (size_t k = 1; k < len; k++)
            cp = (cp << 6) | (s[i + k] & 0x3F);
        i += len;
        (*chars)++;
        *units += cp > 0xFFFF ? 2 : 1;
        if (cp >= 0x0400 && cp <= 0x04FF)
            *cyrillic = 1;
        if (!((cp >= 'A' && cp <= 'Z') || (cp >= 'a' && cp <= 'z') ||
              (cp >= '0' && cp <= '9') || cp == ' '))
            *plain = 0;
    }
}

static size_t expected_parts(size_t units, size_t single, size_t multi) {
    if (units == 0)
        return 0;
    if (units <= single)
        return 1;
    return (units + multi - 1) / multi;
}

static void check_segments(const char *s, size_t n) {
    st_segments_info info;
    st_error err;
    int valid = ref_utf8_valid((const unsigned char *)s, n), rc;
    CHECK(st_utf8_valid(s, n) == valid);
    memset(&info, 'X', sizeof info);
    memset(&err, 'Y', sizeof err);
    rc = st_segments(s, n, &info, &err);
    CHECK((rc == 0) == valid);
    if (rc == 0) {
        size_t chars, units, single, multi;
        int cyr, plain;
        scan_text((const unsigned char *)s, n, &chars, &units, &cyr, &plain);
        CHECK(info.ucs2 == 0 || info.ucs2 == 1);
        CHECK(info.chars == chars);
        single = info.ucs2 ? 70 : 160;
        multi = info.ucs2 ? 67 : 153;
        CHECK(info.per_part == (info.parts <= 1 ? single : multi));
        CHECK(info.remaining <= info.per_part);
        if (!info.ucs2)
            CHECK((info.parts == 0) == (n == 0));
        else
            CHECK(n > 0 && info.parts > 0);
        if (info.parts > 0) {
            /* the last part holds something; all parts hold every unit
             * (GSM-7 escapes make a char 2 septets, so units >= chars) */
            CHECK(info.remaining < info.per_part);
            CHECK(info.parts * info.per_part - info.remaining >=
                  (info.ucs2 ? units : chars));
        }
        if (plain) {
            CHECK(!info.ucs2);
            CHECK(info.parts == expected_parts(chars, 160, 153));
            if (info.parts)
                CHECK(info.remaining ==
                      info.parts * info.per_part - chars);
        }
        if (cyr) {
            CHECK(info.ucs2);
            /* only BMP text packs with no waste */
            if (units == chars) {
                CHECK(info.parts == expected_parts(units, 70, 67));
                CHECK(info.remaining == info.parts * info.per_part - units);
            }
        }
    } else {
        check_invalid(&err);
    }
}

/* The encoded secret with the hex digits of each %XX in lower case: how
 * a server may echo it (raw letters keep their case: "MyShop" and
 * "myshop" are different passwords). */
static char *lower_hex(const char *enc) {
    char *s = fuzz_strdup((const uint8_t *)enc, strlen(enc));
    size_t i;
    for (i = 0; s[i]; i++)
        if (s[i] == '%' && s[i + 1] && s[i + 2]) {
            s[i + 1] = (char)tolower((unsigned char)s[i + 1]);
            s[i + 2] = (char)tolower((unsigned char)s[i + 2]);
            i += 2;
        }
    return s;
}

static void check_redact(const uint8_t *m, size_t mn, const uint8_t *sec,
                         size_t sn, size_t cap) {
    char *msg, *before, *secret;
    st_buf enc = ST_BUF_INIT;
    size_t len = mn < cap - 1 ? mn : cap - 1;
    int had;

    /* exactly cap bytes, so ASan reports any write past it */
    msg = malloc(cap);
    if (!msg)
        abort();
    memset(msg, 'Z', cap);
    memcpy(msg, m, len);
    msg[len] = '\0';
    len = strlen(msg);
    before = fuzz_strdup((const uint8_t *)msg, len);
    secret = fuzz_strdup(sec, sn);
    sn = strlen(secret);
    st_percent_encode(&enc, secret, sn);

    /* A message with neither the secret nor any '%' or '+' (the only
     * bytes another spelling needs) must come back unchanged. */
    had = sn > 0 && (strstr(msg, secret) || strchr(msg, '%') ||
                     strchr(msg, '+'));
    st_redact(msg, cap, secret);
    CHECK(strnlen(msg, cap) < cap);
    if (cap < 8 || sn == 0 || !had) {
        CHECK(strcmp(msg, before) == 0);
    } else if (!strchr(secret, '*')) {
        CHECK(strstr(msg, secret) == NULL);
        CHECK(strstr(msg, st_buf_str(&enc)) == NULL);
        char *lower = lower_hex(st_buf_str(&enc));
        CHECK(strstr(msg, lower) == NULL);
        free(lower);
    }
    st_buf_free(&enc);
    free(secret);
    free(before);
    free(msg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_reader rd = {data, size};
    const uint8_t *f[4];
    size_t fn[4], cap, i;
    char *a, *b;

    for (i = 0; i < 4; i++)
        fuzz_field(&rd, &f[i], &fn[i]);
    cap = rd.n ? fuzz_u16(&rd) % 600 + 1 : ST_ERR_MAX;

    a = fuzz_dup(f[0], fn[0]);
    b = fuzz_dup(f[1], fn[1]);
    CHECK(st_utf8_valid(a, fn[0]) ==
          ref_utf8_valid((const unsigned char *)a, fn[0]));
    check_checks(a, fn[0]);
    check_sentences(a, fn[0], b, fn[1]);
    check_segments(a, fn[0]);
    check_redact(f[2], fn[2], f[3], fn[3], cap);
    free(b);
    free(a);
    return 0;
}
