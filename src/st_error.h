/* Error codes, the error record every call fills, and redaction of the
 * password. Plain C, no Lua. */
#ifndef ST_ERROR_H
#define ST_ERROR_H

#include <stddef.h>

#include "st_buf.h"

#define ST_ERR_MAX 512
/* How much of an unreadable answer an error message quotes. */
#define ST_QUOTE_MAX 200

typedef enum st_code {
    ST_OK = 0,
    ST_E_AUTH,
    ST_E_BLOCKED,
    ST_E_DIRECTION_CLOSED,
    ST_E_NO_SENDER,
    ST_E_NO_TEXT,
    ST_E_UNKNOWN_SENDER,
    ST_E_NO_PHONE,
    ST_E_FLOOD,
    ST_E_NOT_FOUND,
    ST_E_GATEWAY,
    ST_E_INVALID,
    ST_E_TIMEOUT,
    ST_E_CONNECT,
    ST_E_TLS,
    ST_E_HTTP,
    ST_E_TOO_LARGE,
    ST_E_NETWORK,
    ST_E_CLOSED,
    /* Out of memory: internal, never a code the API answers. The core
     * fails with it (st_nomem) wherever an allocation fails; the bindings
     * turn it into Lua's own memory error at one place (lst_code_name). */
    ST_E_NOMEM,
    ST_CODE_COUNT
} st_code;

typedef struct st_error {
    st_code code;
    char message[ST_ERR_MAX];
} st_error;

/* *dst = *src, copying only the message's used bytes: an error is 516
 * bytes, and every finished request hands one on (mostly an empty one). */
void st_error_copy(st_error *dst, const st_error *src);
/* Prefixes err's message with "what N: " (N the 1-based index): which item
 * of a list was bad. Returns -1. */
int st_fail_item(st_error *err, const char *what, size_t index);
/* The API name of a code ("auth", "timeout", ...); "" for ST_OK. */
const char *st_code_name(st_code code);
/* Sets err to ST_E_NOMEM and returns -1: the one way the core says an
 * allocation failed. */
int st_nomem(st_error *err);
/* Sets err and returns -1, so callers can `return st_fail(...)`. */
int st_fail(st_error *err, st_code code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
/* Replaces every spelling of `secret` in msg (raw, percent-encoded with
 * hex digits of either case, '+' for a space) with "***", in place, never
 * growing past cap bytes. For text a server sent, which may echo it. */
void st_redact(char *msg, size_t cap, const char *secret);
/* Appends s[0..n) (any bytes) to out with every spelling of the secret
 * replaced by "***". */
int st_redact_bytes(const char *s, size_t n, const char *secret, st_buf *out);
/* Appends s with the value of every pwd= query parameter replaced by
 * "***": where the password stands in a URL we built. */
void st_redact_query(const char *s, st_buf *out);
/* st_redact_query in place on a message of cap bytes. Unlike st_redact it
 * never rewrites other words, so a short or word-like password ("connect")
 * cannot mangle a message or be guessed from the stars. */
void st_redact_message(char *msg, size_t cap);
/* "scheme://user:secret@host" becomes "scheme://user:***@host". */
void st_redact_userinfo(char *msg, size_t cap);

#endif
