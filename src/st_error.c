/* Error codes, messages and password redaction. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "st_error.h"
#include "st_text.h"

static const char *const code_names[ST_CODE_COUNT] = {
    "",          "auth",    "blocked",   "direction_closed", "no_sender",
    "no_text",   "unknown_sender", "no_phone", "flood",      "not_found",
    "gateway",   "invalid", "timeout",   "connect",          "tls",
    "http",      "too_large", "network", "closed",    "",
};

int st_nomem(st_error *err) {
    return st_fail(err, ST_E_NOMEM, "not enough memory");
}

const char *st_code_name(st_code code) {
    if ((int)code < 0 || code >= ST_CODE_COUNT)
        return "network";
    return code_names[code];
}

int st_fail(st_error *err, st_code code, const char *fmt, ...) {
    va_list ap;
    if (!err)
        return -1;
    err->code = code;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    return -1;
}

static int hex_value(char ch) {
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* The byte a "%XX" at s[0..n) stands for (hex digits of either case), or
 * -1 when s does not start with one. */
static int escaped_byte(const char *s, size_t n) {
    int hi, lo;
    if (n < 3 || s[0] != '%')
        return -1;
    hi = hex_value(s[1]);
    lo = hex_value(s[2]);
    return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

/* Length of the text at s[0..n) that spells secret[0..k) (k > 0) with
 * each byte raw, percent-encoded with hex digits of either case, or, for a
 * space, as '+': every spelling the library produces or a server could
 * echo. 0 when it does not start there. */
static size_t spelled_at(const char *s, size_t n, const char *secret,
                         size_t k) {
    size_t i = 0, j;
    for (j = 0; j < k; j++) {
        int want = (unsigned char)secret[j];
        int esc = escaped_byte(s + i, n - i);
        if (esc == want && want == '%') {
            /* "%25" spells '%' encoded, but could also be a raw '%' that
             * the next secret bytes "25" follow: try both. */
            size_t rest = j + 1 == k ? 0
                                     : spelled_at(s + i + 3, n - i - 3,
                                                  secret + j + 1, k - j - 1);
            if (rest || j + 1 == k)
                return i + 3 + rest;
            i++;
        } else if (esc == want) {
            i += 3;
        } else if (i < n && ((unsigned char)s[i] == want ||
                             (want == ' ' && s[i] == '+'))) {
            i++;
        } else {
            return 0;
        }
    }
    return i;
}

/* Appends s[0..n) to out with every spelling of secret replaced by "***";
 * returns how many were replaced. */
static size_t redact_into(const char *s, size_t n, const char *secret,
                          st_buf *out) {
    size_t k = strlen(secret), i = 0, from = 0, hits = 0;
    while (k > 0 && i < n) {
        size_t m = spelled_at(s + i, n - i, secret, k);
        if (m == 0) {
            i++;
            continue;
        }
        st_buf_append(out, s + from, i - from);
        st_buf_append_str(out, "***");
        i += m;
        from = i;
        hits++;
    }
    st_buf_append(out, s + from, n - from);
    return hits;
}

/* Puts out's text back into msg (cap bytes); a longer text is cut, which
 * can only drop text, and a failed one withholds the whole message. */
static void copy_back(char *msg, size_t cap, const st_buf *out) {
    if (out->failed) { /* no memory: better no message than a leaked one */
        snprintf(msg, cap, "%s", "(message withheld: it held the password)");
    } else {
        size_t n = out->len < cap - 1 ? out->len : cap - 1;
        memcpy(msg, st_buf_str(out), n);
        msg[n] = '\0';
    }
}

void st_redact(char *msg, size_t cap, const char *secret) {
    st_buf out = ST_BUF_INIT;
    if (!msg || cap < 8 || !secret || !*secret)
        return;
    if (redact_into(msg, strlen(msg), secret, &out) > 0)
        copy_back(msg, cap, &out);
    st_buf_free(&out);
}

int st_redact_bytes(const char *s, size_t n, const char *secret, st_buf *out) {
    redact_into(s, n, secret, out);
    return out->failed ? -1 : 0;
}

/* Where the value of a pwd= query parameter starts in s, or NULL. */
static const char *find_pwd_value(const char *s) {
    const char *hit;
    for (hit = strstr(s, "pwd="); hit; hit = strstr(hit + 1, "pwd="))
        if (hit > s && (hit[-1] == '?' || hit[-1] == '&'))
            return hit + 4;
    return NULL;
}

void st_redact_query(const char *s, st_buf *out) {
    const char *value;
    while ((value = find_pwd_value(s)) != NULL) {
        st_buf_append(out, s, (size_t)(value - s));
        st_buf_append_str(out, "***");
        s = value + strcspn(value, "&# \t\r\n'\"");
    }
    st_buf_append_str(out, s);
}

void st_redact_message(char *msg, size_t cap) {
    st_buf out = ST_BUF_INIT;
    if (!msg || cap < 8 || !find_pwd_value(msg))
        return;
    st_redact_query(msg, &out);
    copy_back(msg, cap, &out);
    st_buf_free(&out);
}

void st_redact_userinfo(char *msg, size_t cap) {
    char *scheme = msg ? strstr(msg, "://") : NULL;
    char *host, *colon, *at;
    st_buf out = ST_BUF_INIT;
    if (!scheme || cap < 8)
        return;
    host = scheme + 3;
    at = host + strcspn(host, "@/?# ");
    colon = memchr(host, ':', (size_t)(at - host));
    if (*at != '@' || !colon)
        return;
    st_buf_append(&out, msg, (size_t)(colon + 1 - msg));
    st_buf_append_str(&out, "***");
    st_buf_append_str(&out, at);
    copy_back(msg, cap, &out);
    st_buf_free(&out);
}

void st_error_copy(st_error *dst, const st_error *src) {
    size_t used = strnlen(src->message, sizeof src->message - 1);
    dst->code = src->code;
    memcpy(dst->message, src->message, used);
    dst->message[used] = '\0';
}

int st_fail_item(st_error *err, const char *what, size_t index) {
    char message[ST_ERR_MAX];
    snprintf(message, sizeof message, "%s", err->message);
    return st_fail(err, err->code, "%s %zu: %s", what, index + 1, message);
}
