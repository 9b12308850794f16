/* Error codes, messages and password redaction. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "st_core.h"

static const char *const code_names[ST_CODE_COUNT] = {
    "",          "auth",    "blocked",   "direction_closed", "no_sender",
    "no_text",   "unknown_sender", "no_phone", "flood",      "not_found",
    "gateway",   "invalid", "timeout",   "connect",          "tls",
    "http",      "too_large", "network", "closed",
};

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

/* Writes msg with each occurrence of needle replaced by "***" back into
 * msg; a result longer than cap is cut, which can only drop text. */
static void replace_all(char *msg, size_t cap, const char *needle) {
    st_buf out = ST_BUF_INIT;
    size_t nlen = strlen(needle);
    const char *p = msg, *hit;
    if (nlen == 0 || !strstr(msg, needle))
        return;
    while ((hit = strstr(p, needle)) != NULL) {
        st_buf_append(&out, p, (size_t)(hit - p));
        st_buf_append_str(&out, "***");
        p = hit + nlen;
    }
    st_buf_append_str(&out, p);
    if (out.failed) { /* no memory: better no message than a leaked one */
        snprintf(msg, cap, "%s", "(message withheld: it held the password)");
    } else {
        size_t n = out.len < cap - 1 ? out.len : cap - 1;
        memcpy(msg, out.data, n);
        msg[n] = '\0';
    }
    st_buf_free(&out);
}

void st_redact(char *msg, size_t cap, const char *secret) {
    st_buf enc = ST_BUF_INIT;
    if (!msg || cap < 8 || !secret || !*secret)
        return;
    replace_all(msg, cap, secret);
    if (st_percent_encode(&enc, secret, strlen(secret)) == 0 &&
        strcmp(st_buf_str(&enc), secret) != 0)
        replace_all(msg, cap, st_buf_str(&enc));
    st_buf_free(&enc);
}

/* Appends s[0..n) to out with every occurrence of needle replaced. */
static void replace_bytes(const char *s, size_t n, const char *needle,
                          st_buf *out) {
    size_t k = strlen(needle), i = 0, from = 0;
    while (k > 0 && i + k <= n) {
        if (memcmp(s + i, needle, k) == 0) {
            st_buf_append(out, s + from, i - from);
            st_buf_append_str(out, "***");
            i += k;
            from = i;
        } else {
            i++;
        }
    }
    st_buf_append(out, s + from, n - from);
}

int st_redact_bytes(const char *s, size_t n, const char *secret, st_buf *out) {
    st_buf raw = ST_BUF_INIT, enc = ST_BUF_INIT;
    int rc;
    replace_bytes(s, n, secret, &raw);
    st_percent_encode(&enc, secret, strlen(secret));
    replace_bytes(st_buf_str(&raw), raw.len, st_buf_str(&enc), out);
    rc = raw.failed || enc.failed || out->failed ? -1 : 0;
    st_buf_free(&raw);
    st_buf_free(&enc);
    return rc;
}
