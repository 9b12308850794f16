/* Checks every value before anything is sent, so a bad one costs nothing. */
#include <stdlib.h>
#include <string.h>

#include "st_validate.h"
#include "st_text.h"

/* Characters people write inside phone numbers that carry no digit. */
static int is_phone_decoration(char ch) {
    return ch == ' ' || ch == '+' || ch == '-' || ch == '(' || ch == ')' ||
           ch == '\t';
}

/* Quotes at most 40 bytes of a bad value, printable ASCII only, so a
 * message never carries control bytes or a broken UTF-8 sequence. */
static void quote_value(char *out, size_t cap, const char *s, size_t n) {
    size_t i, o = 0;
    for (i = 0; i < n && o + 4 < cap && i < 40; i++) {
        unsigned char ch = (unsigned char)s[i];
        out[o++] = (ch >= 0x20 && ch < 0x7F) ? (char)ch : '?';
    }
    if (i < n && o + 4 < cap)
        out[o++] = '.', out[o++] = '.', out[o++] = '.';
    out[o] = '\0';
}

int st_phone_normalize(const char *s, size_t n, st_phone *out, st_error *err) {
    size_t i, digits = 0;
    char shown[64];
    /* Most numbers are bare digits: checked, then copied whole. */
    for (i = 0; i < n && (unsigned char)(s[i] - '0') <= 9; i++)
        ;
    if (i == n && n >= ST_PHONE_MIN && n <= ST_PHONE_MAX) {
        memcpy(out->digits, s, n);
        out->digits[n] = '\0';
        return 0;
    }
    for (i = 0; i < n; i++) {
        char ch = s[i];
        if (ch >= '0' && ch <= '9' && digits < ST_PHONE_MAX) {
            out->digits[digits++] = ch;
        } else if (!is_phone_decoration(ch)) {
            digits = ST_PHONE_MAX + 1; /* a bad byte, or too many digits */
            break;
        }
    }
    if (digits < ST_PHONE_MIN || digits > ST_PHONE_MAX) {
        quote_value(shown, sizeof shown, s, n);
        return st_fail(err, ST_E_INVALID,
                       "invalid phone number '%s': want 10 to 15 digits "
                       "(spaces, +, -, ( and ) are ignored)",
                       shown);
    }
    out->digits[digits] = '\0';
    return 0;
}

static int recipients_push(st_recipients *r, const st_phone *p) {
    if (r->count == 0) {
        r->first = *p;
        r->count = 1;
        return 0;
    }
    if (r->count - 1 == r->more_cap) {
        size_t cap = r->more_cap ? r->more_cap * 2 : 1;
        st_phone *more = realloc(r->more, cap * sizeof *more);
        if (!more)
            return -1;
        r->more = more;
        r->more_cap = cap;
    }
    r->more[r->count++ - 1] = *p;
    return 0;
}

static int all_digits(const char *s, size_t n);

int st_recipients_add(st_recipients *r, const char *s, size_t n,
                      st_error *err) {
    size_t start = 0, before = r->count;
    if (n >= ST_PHONE_MIN && n <= ST_PHONE_MAX && all_digits(s, n)) {
        st_phone phone; /* one bare number, as most are: no comma to find */
        memcpy(phone.digits, s, n);
        phone.digits[n] = '\0';
        return recipients_push(r, &phone) == 0
                   ? 0
                   : st_nomem(err);
    }
    for (;;) {
        const char *comma = memchr(s + start, ',', n - start);
        size_t end = comma ? (size_t)(comma - s) : n;
        st_phone phone;
        if (st_phone_normalize(s + start, end - start, &phone, err) != 0 ||
            (recipients_push(r, &phone) != 0 &&
             st_nomem(err) != 0)) {
            r->count = before;
            return -1;
        }
        if (!comma)
            return 0;
        start = end + 1;
    }
}

void st_recipients_free(st_recipients *r) {
    free(r->more);
    r->more = NULL;
    r->count = r->more_cap = 0;
}

static int all_digits(const char *s, size_t n) {
    size_t i;
    for (i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return 0;
    return n > 0;
}

/* Alphanumeric sender names: Latin letters and digits with the few
 * separators operators accept. */
static int is_sender_char(char ch) {
    return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
           (ch >= '0' && ch <= '9') || ch == ' ' || ch == '-' || ch == '.' ||
           ch == '_';
}

int st_sender_check(const char *s, size_t n, st_error *err) {
    size_t i;
    char shown[64];
    if (all_digits(s, n) && n <= 15)
        return 0;
    for (i = 0; i < n && is_sender_char(s[i]); i++)
        ;
    if (n >= 1 && n <= 11 && i == n)
        return 0;
    quote_value(shown, sizeof shown, s, n);
    return st_fail(err, ST_E_INVALID,
                   "invalid sender '%s': want up to 11 Latin letters, digits, "
                   "space, '-', '.' or '_', or up to 15 digits",
                   shown);
}

int st_text_check(const char *s, size_t n, st_error *err) {
    if (n == 0)
        return st_fail(err, ST_E_INVALID, "invalid text: it is empty");
    switch (st_text_flaws(s, n)) {
    case ST_TEXT_NUL:
        return st_fail(err, ST_E_INVALID, "invalid text: it holds a NUL byte");
    case ST_TEXT_NOT_UTF8:
        return st_fail(err, ST_E_INVALID, "invalid text: it is not valid UTF-8");
    default:
        return 0;
    }
}

int st_id_check(const char *s, size_t n, st_error *err) {
    char shown[64];
    if (all_digits(s, n) && n <= ST_ID_MAX)
        return 0;
    quote_value(shown, sizeof shown, s, n);
    return st_fail(err, ST_E_INVALID,
                   "invalid message id '%s': want 1 to %d decimal digits",
                   shown, ST_ID_MAX);
}
