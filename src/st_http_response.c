/* HTTP/1.1 framing for the socket drivers, the response side: an
 * incremental parser. Everything the server sends is untrusted: lines and
 * bodies are bounded before they are stored, and the parser decides at the
 * same byte whatever way the input was split (the fuzzer holds it to
 * that). (Request bytes: st_http_request.c.) */
#include "st_http.h"
#include "st_http_chars.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* ---- the response parser ---------------------------------------------- */

enum parse_state {
    S_STATUS_LINE,
    S_HEADER_LINE,
    S_BODY_LENGTH,   /* Content-Length bytes */
    S_BODY_TO_CLOSE, /* everything until the server closes */
    S_CHUNK_SIZE,
    S_CHUNK_DATA,
    S_CHUNK_END,     /* the CRLF after a chunk's data */
    S_TRAILER,
    S_DONE,
    S_FAILED
};

void st_http_response_init(st_http_response *r, size_t max_body) {
    memset(r, 0, sizeof *r);
    /* SIZE_MAX stands for a Content-Length or chunk size too big to hold,
     * so it must always be "too large". */
    r->max_body = max_body < SIZE_MAX ? max_body : SIZE_MAX - 1;
    r->state = S_STATUS_LINE;
}

int st_http_response_done(const st_http_response *r) {
    return r->state == S_DONE;
}

void st_http_response_reset(st_http_response *r) {
    st_buf body = r->body, line = r->line;
    size_t max_body = r->max_body;
    st_buf_truncate(&body, 0);
    st_buf_truncate(&line, 0);
    body.failed = line.failed = 0; /* a failed allocation may succeed now */
    st_http_response_init(r, max_body);
    r->body = body;
    r->line = line;
}

void st_http_response_free(st_http_response *r) {
    st_buf_free(&r->body);
    st_buf_free(&r->line);
}

static void set_failed(st_http_response *r, st_http_error e) {
    r->error = e;
    r->state = S_FAILED;
    r->keep = 0;
}

/* set_failed for a step that used `used` bytes (the last showed it). */
static size_t fail(st_http_response *r, st_http_error e, size_t used) {
    set_failed(r, e);
    return used;
}

static int failed(const st_http_response *r) {
    return r->state == S_FAILED;
}

/* Takes bytes up to and including the next LF, refusing with `too_long`
 * the byte that would make the line (LF included) longer than `room` more
 * bytes. *complete says a whole line is in r->lp[0..r->ln), without its LF
 * and a CR before it: straight from data when it all came at once, else
 * from r->line, where a line's first bytes wait for the rest. Returns the
 * bytes used. */
static size_t take_line(st_http_response *r, const char *data, size_t n,
                        size_t room, st_http_error too_long, int *complete) {
    size_t look = n < room ? n : room;
    const char *lf = look ? memchr(data, '\n', look) : NULL;
    size_t take;
    *complete = 0;
    if (!lf) {
        if (n > room)
            return fail(r, too_long, room + 1);
        if (st_buf_append(&r->line, data, n) != 0)
            return fail(r, ST_HTTP_E_NOMEM, n);
        return n;
    }
    take = (size_t)(lf - data) + 1;
    if (r->line.len == 0) { /* the usual case: no copy */
        r->lp = data;
        r->ln = take - 1;
    } else {
        if (st_buf_append(&r->line, data, take - 1) != 0)
            return fail(r, ST_HTTP_E_NOMEM, take);
        r->lp = r->line.data;
        r->ln = r->line.len;
    }
    if (r->ln > 0 && r->lp[r->ln - 1] == '\r')
        r->ln--;
    *complete = 1;
    return take;
}

/* A status, header or trailer line: all of them share one budget. */
static size_t take_header_line(st_http_response *r, const char *data,
                               size_t n, int *complete) {
    size_t taken = take_line(r, data, n, ST_HTTP_HEADER_MAX - r->header_bytes,
                             ST_HTTP_E_HEADERS_TOO_LONG, complete);
    r->header_bytes += taken;
    return taken;
}

static int append_body(st_http_response *r, const char *data, size_t n) {
    if (n > 0 && st_buf_append(&r->body, data, n) != 0) {
        set_failed(r, ST_HTTP_E_NOMEM);
        return -1;
    }
    return 0;
}

/* The response is complete. `delimited`: its end was known from the bytes
 * themselves, not from the server closing, so the connection is still in
 * step and may carry another request if both sides agree to it. */
static void finish_response(st_http_response *r, int delimited) {
    int persistent = r->minor >= 1 ? !r->conn_close
                                   : r->conn_keep_alive && !r->conn_close;
    /* Both chunked and a Content-Length is how response splitting looks:
     * read the chunked body, but trust no byte after it. */
    r->keep = delimited && persistent && !(r->chunked && r->has_length);
    r->state = S_DONE;
    st_buf_truncate(&r->line, 0); /* kept for the next response (reset) */
}

/* ---- status line and headers ---- */

/* "HTTP/1.x NNN" then nothing or a space and a reason phrase. */
static void parse_status_line(st_http_response *r) {
    const char *s = r->lp;
    size_t n = r->ln;
    if (n < 12 || memcmp(s, "HTTP/1.", 7) != 0 ||
        !is_digit((unsigned char)s[7]) || s[8] != ' ' || s[9] < '1' ||
        s[9] > '9' || !is_digit((unsigned char)s[10]) ||
        !is_digit((unsigned char)s[11]) || (n > 12 && s[12] != ' ') ||
        !all_field_chars(s + 12, n - 12)) {
        set_failed(r, ST_HTTP_E_STATUS_LINE);
        return;
    }
    r->minor = s[7] != '0'; /* 1.2 and later read as 1.1 */
    r->status = (s[9] - '0') * 100 + (s[10] - '0') * 10 + (s[11] - '0');
    if (r->status == 101)
        set_failed(r, ST_HTTP_E_UPGRADE);
    else
        r->state = S_HEADER_LINE;
}

static size_t on_status_line(st_http_response *r, const char *data,
                             size_t n) {
    int complete;
    size_t taken;
    if (r->line.len == 0 && n >= 5 && memcmp(data, "HTTP/", 5) == 0) {
        taken = take_header_line(r, data, n, &complete); /* the usual start */
    } else if (r->line.len < 5) {
        /* "HTTP/" a byte at a time: a server speaking something else (TLS
         * on a plain port) is refused at its first byte, not after 16 KiB */
        taken = take_header_line(r, data, 1, &complete);
        if (!failed(r) &&
            (complete || r->line.data[r->line.len - 1] != "HTTP/"[r->line.len - 1]))
            return fail(r, ST_HTTP_E_STATUS_LINE, taken);
        return taken;
    } else {
        taken = take_header_line(r, data, n, &complete);
    }
    if (complete && !failed(r)) {
        parse_status_line(r);
        st_buf_truncate(&r->line, 0);
    }
    return taken;
}

/* Splits the line into a header's name and its value without the white
 * space around it; -1 for a malformed line (a folded line starting with
 * white space is one: nothing this client talks to folds). */
static int split_header(const st_http_response *r, const char **value,
                        size_t *vlen, size_t *namelen) {
    const char *s = r->lp;
    const char *colon = memchr(s, ':', r->ln);
    size_t i;
    if (!colon || colon == s)
        return -1;
    *namelen = (size_t)(colon - s);
    for (i = 0; i < *namelen; i++)
        if (!is_token_char((unsigned char)s[i]))
            return -1;
    *value = colon + 1;
    *vlen = r->ln - *namelen - 1;
    if (!all_field_chars(*value, *vlen))
        return -1;
    trim_ows(value, vlen);
    return 0;
}

/* Digits only; a value too big for size_t becomes SIZE_MAX (too large
 * for any max_body). A repeated header must say the same. */
static void on_content_length(st_http_response *r, const char *v,
                              size_t n) {
    size_t value = 0, i;
    if (n == 0) {
        set_failed(r, ST_HTTP_E_CONTENT_LENGTH);
        return;
    }
    for (i = 0; i < n; i++) {
        size_t d = (size_t)(v[i] - '0');
        if (!is_digit((unsigned char)v[i])) {
            set_failed(r, ST_HTTP_E_CONTENT_LENGTH);
            return;
        }
        value = value > (SIZE_MAX - d) / 10 ? SIZE_MAX : value * 10 + d;
    }
    if (r->has_length && r->content_length != value) {
        set_failed(r, ST_HTTP_E_CONTENT_LENGTH);
        return;
    }
    r->has_length = 1;
    r->content_length = value;
}

/* Only "chunked", once: any other coding would need decoding we do not
 * do, and the body's end could not be found. */
static void on_transfer_encoding(st_http_response *r, const char *v,
                                 size_t n) {
    if (r->chunked || !equal_nocase(v, n, "chunked"))
        set_failed(r, ST_HTTP_E_TRANSFER_ENCODING);
    else
        r->chunked = 1;
}

/* A comma-separated list of options; only close and keep-alive matter. */
static void on_connection(st_http_response *r, const char *v, size_t n) {
    for (;;) {
        const char *comma = memchr(v, ',', n);
        size_t len = comma ? (size_t)(comma - v) : n;
        const char *word = v;
        size_t wlen = len;
        trim_ows(&word, &wlen);
        if (equal_nocase(word, wlen, "close"))
            r->conn_close = 1;
        else if (equal_nocase(word, wlen, "keep-alive"))
            r->conn_keep_alive = 1;
        if (!comma)
            return;
        v = comma + 1;
        n -= len + 1;
    }
}

static void parse_header(st_http_response *r) {
    const char *name = r->lp, *value;
    size_t namelen, vlen;
    if (split_header(r, &value, &vlen, &namelen) != 0)
        set_failed(r, ST_HTTP_E_HEADER);
    else if (equal_nocase(name, namelen, "content-length"))
        on_content_length(r, value, vlen);
    else if (equal_nocase(name, namelen, "transfer-encoding"))
        on_transfer_encoding(r, value, vlen);
    else if (equal_nocase(name, namelen, "connection"))
        on_connection(r, value, vlen);
}

/* After a 1xx (100 Continue, 103 Early Hints) the real response follows;
 * nothing of the interim one carries over but its share of the header
 * budget. */
static void expect_next_response(st_http_response *r) {
    r->status = 0;
    r->minor = 0;
    r->has_length = r->chunked = r->conn_close = r->conn_keep_alive = 0;
    r->content_length = 0;
    r->state = S_STATUS_LINE;
}

/* The empty line: how the body is framed (RFC 9112 section 6.3). */
static void end_of_headers(st_http_response *r) {
    if (r->status < 200)
        expect_next_response(r);
    else if (r->status == 204 || r->status == 304)
        finish_response(r, 1);
    else if (r->chunked)
        r->state = S_CHUNK_SIZE;
    else if (!r->has_length)
        r->state = S_BODY_TO_CLOSE;
    else if (r->content_length > r->max_body)
        set_failed(r, ST_HTTP_E_TOO_LARGE);
    else if (r->content_length == 0)
        finish_response(r, 1);
    else {
        r->remaining = r->content_length;
        r->state = S_BODY_LENGTH;
    }
}

static size_t on_header_line(st_http_response *r, const char *data,
                             size_t n) {
    int complete;
    size_t taken = take_header_line(r, data, n, &complete);
    if (complete && !failed(r)) {
        if (r->ln == 0)
            end_of_headers(r);
        else
            parse_header(r);
        st_buf_truncate(&r->line, 0);
    }
    return taken;
}

/* ---- bodies ---- */

/* Takes what data holds of the r->remaining bytes a length (of the body
 * or of a chunk) announced; *all: they are all in. */
static size_t take_counted(st_http_response *r, const char *data, size_t n,
                           int *all) {
    size_t take = n < r->remaining ? n : r->remaining;
    *all = 0;
    if (append_body(r, data, take) != 0)
        return take;
    r->remaining -= take;
    *all = r->remaining == 0;
    return take;
}

static size_t on_body_length(st_http_response *r, const char *data,
                             size_t n) {
    int all;
    size_t taken = take_counted(r, data, n, &all);
    if (all)
        finish_response(r, 1);
    return taken;
}

/* Keeps max_body bytes and refuses the one after them. */
static size_t on_body_to_close(st_http_response *r, const char *data,
                               size_t n) {
    size_t room = r->max_body - r->body.len;
    if (n > room) {
        if (append_body(r, data, room) != 0)
            return room;
        return fail(r, ST_HTTP_E_TOO_LARGE, room + 1);
    }
    append_body(r, data, n);
    return n;
}

/* Hex digits, then optional white space and ";extensions" (ignored). */
static void parse_chunk_size(st_http_response *r) {
    const char *s = r->lp;
    size_t n = r->ln, i = 0, size = 0;
    int h;
    while (i < n && (h = hex_value((unsigned char)s[i])) >= 0) {
        size = size > (SIZE_MAX - (size_t)h) / 16 ? SIZE_MAX
                                                 : size * 16 + (size_t)h;
        i++;
    }
    while (i > 0 && i < n && is_ows(s[i]))
        i++;
    if (i == 0 || (i < n && (s[i] != ';' || !all_field_chars(s + i, n - i))))
        set_failed(r, ST_HTTP_E_CHUNK);
    else if (size > r->max_body - r->body.len)
        set_failed(r, ST_HTTP_E_TOO_LARGE);
    else if (size == 0)
        r->state = S_TRAILER;
    else {
        r->remaining = size;
        r->state = S_CHUNK_DATA;
    }
}

static size_t on_chunk_size(st_http_response *r, const char *data,
                            size_t n) {
    int complete;
    size_t taken = take_line(r, data, n, ST_HTTP_CHUNK_LINE_MAX - r->line.len,
                             ST_HTTP_E_CHUNK, &complete);
    if (complete && !failed(r)) {
        parse_chunk_size(r);
        st_buf_truncate(&r->line, 0);
    }
    return taken;
}

static size_t on_chunk_data(st_http_response *r, const char *data,
                            size_t n) {
    int all;
    size_t taken = take_counted(r, data, n, &all);
    if (all)
        r->state = S_CHUNK_END;
    return taken;
}

/* Exactly CRLF (or a bare LF) after the chunk's data. */
static size_t on_chunk_end(st_http_response *r, const char *data, size_t n) {
    int complete;
    size_t taken = take_line(r, data, n, 2 - r->line.len, ST_HTTP_E_CHUNK,
                             &complete);
    if (complete && !failed(r)) {
        if (r->ln != 0)
            set_failed(r, ST_HTTP_E_CHUNK);
        else
            r->state = S_CHUNK_SIZE;
        st_buf_truncate(&r->line, 0);
    }
    return taken;
}

/* Trailer fields are read for their syntax and ignored. */
static size_t on_trailer(st_http_response *r, const char *data, size_t n) {
    int complete;
    const char *value;
    size_t vlen, namelen;
    size_t taken = take_header_line(r, data, n, &complete);
    if (complete && !failed(r)) {
        if (r->ln == 0)
            finish_response(r, 1);
        else if (split_header(r, &value, &vlen, &namelen) != 0)
            set_failed(r, ST_HTTP_E_HEADER);
        st_buf_truncate(&r->line, 0);
    }
    return taken;
}

/* One step of the parser on n > 0 bytes: uses at least one byte, or
 * ends the response. */
static size_t step(st_http_response *r, const char *data, size_t n) {
    switch (r->state) {
    case S_STATUS_LINE: return on_status_line(r, data, n);
    case S_HEADER_LINE: return on_header_line(r, data, n);
    case S_BODY_LENGTH: return on_body_length(r, data, n);
    case S_BODY_TO_CLOSE: return on_body_to_close(r, data, n);
    case S_CHUNK_SIZE: return on_chunk_size(r, data, n);
    case S_CHUNK_DATA: return on_chunk_data(r, data, n);
    case S_CHUNK_END: return on_chunk_end(r, data, n);
    case S_TRAILER: return on_trailer(r, data, n);
    default: return 0;
    }
}

static st_http_progress progress(const st_http_response *r) {
    if (r->state == S_DONE)
        return ST_HTTP_DONE;
    if (r->state == S_FAILED)
        return r->error == ST_HTTP_E_TOO_LARGE ? ST_HTTP_TOO_LARGE
                                               : ST_HTTP_FAILED;
    return ST_HTTP_MORE;
}

st_http_progress st_http_feed(st_http_response *r, const char *data,
                              size_t n, size_t *used) {
    size_t pos = 0;
    while (pos < n && r->state != S_DONE && r->state != S_FAILED)
        pos += step(r, data + pos, n - pos);
    r->received += pos;
    if (used)
        *used = pos;
    return progress(r);
}

st_http_progress st_http_finish(st_http_response *r) {
    if (r->state == S_BODY_TO_CLOSE)
        finish_response(r, 0);
    else if (r->state != S_DONE && r->state != S_FAILED)
        set_failed(r, r->received ? ST_HTTP_E_TRUNCATED
                                  : ST_HTTP_E_NO_RESPONSE);
    return progress(r);
}
