/* HTTP/1.1 framing for the socket drivers: request bytes for a URL and an
 * incremental response parser. Everything the server sends is untrusted:
 * lines and bodies are bounded before they are stored, and the parser
 * decides at the same byte whatever way the input was split (the fuzzer
 * holds it to that). */
#include "st_http.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

const char *st_http_error_text(st_http_error e) {
    switch (e) {
    case ST_HTTP_OK: return "no error";
    case ST_HTTP_E_URL_SCHEME: return "the URL does not start with http:// or https://";
    case ST_HTTP_E_URL_BYTES: return "the URL holds a space, control or non-ASCII byte";
    case ST_HTTP_E_URL_USERINFO: return "the URL holds a user name or password (user@host)";
    case ST_HTTP_E_URL_HOST: return "the URL has no host, or a malformed one";
    case ST_HTTP_E_URL_PORT: return "the URL's port is not a number from 1 to 65535";
    case ST_HTTP_E_HEADER_VALUE: return "a request header value holds a control byte";
    case ST_HTTP_E_STATUS_LINE: return "malformed HTTP status line";
    case ST_HTTP_E_UPGRADE: return "the server switched protocols (101), which was not asked for";
    case ST_HTTP_E_HEADER: return "malformed HTTP header line";
    case ST_HTTP_E_HEADERS_TOO_LONG: return "HTTP headers longer than 16 KiB";
    case ST_HTTP_E_CONTENT_LENGTH: return "malformed or conflicting Content-Length";
    case ST_HTTP_E_TRANSFER_ENCODING: return "unsupported Transfer-Encoding (only chunked is)";
    case ST_HTTP_E_CHUNK: return "malformed chunk in a chunked body";
    case ST_HTTP_E_TOO_LARGE: return "response body larger than max_response";
    case ST_HTTP_E_TRUNCATED: return "the connection closed before the response ended";
    case ST_HTTP_E_NO_RESPONSE: return "the connection closed without a response";
    case ST_HTTP_E_NOMEM: return "not enough memory";
    case ST_HTTP_ERROR_COUNT: break;
    }
    return "unknown HTTP error";
}

/* ---- small byte classes ----------------------------------------------- */

static int is_digit(unsigned char c) {
    return c >= '0' && c <= '9';
}

static int is_alpha(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int hex_value(unsigned char c) {
    if (is_digit(c))
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static unsigned char lower(unsigned char c) {
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + ('a' - 'A')) : c;
}

static int equal_nocase(const char *s, size_t n, const char *word) {
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

static int is_token_char(unsigned char c) { return byte_class[c] & TOKEN; }

static int is_field_char(unsigned char c) { return byte_class[c] & FIELD; }

static int all_field_chars(const char *s, size_t n) {
    size_t i;
    for (i = 0; i < n; i++)
        if (!is_field_char((unsigned char)s[i]))
            return 0;
    return 1;
}

static int is_ows(char c) {
    return c == ' ' || c == '\t';
}

/* Drops optional white space around s[0..n). */
static void trim_ows(const char **s, size_t *n) {
    while (*n > 0 && is_ows((*s)[0]))
        (*s)++, (*n)--;
    while (*n > 0 && is_ows((*s)[*n - 1]))
        (*n)--;
}

/* ---- URLs ------------------------------------------------------------- */

/* Length of the "http://" or "https://" prefix (any case), 0 if neither. */
static size_t scheme_length(const char *url, size_t n, int *tls) {
    if (n >= 7 && equal_nocase(url, 7, "http://")) {
        *tls = 0;
        return 7;
    }
    if (n >= 8 && equal_nocase(url, 8, "https://")) {
        *tls = 1;
        return 8;
    }
    return 0;
}

/* A DNS name or IPv4 address: letters, digits, - . _ ~ (RFC 3986
 * unreserved). Percent-encoded and other sub-delim hosts are refused. */
static int is_host_char(unsigned char c) {
    return is_alpha(c) || is_digit(c) || c == '-' || c == '.' || c == '_' ||
           c == '~';
}

static int is_ipv6_char(unsigned char c) {
    return hex_value(c) >= 0 || c == ':' || c == '.';
}

static st_http_error copy_host(st_http_target *t, const char *s, size_t n,
                               int ipv6) {
    size_t i, colons = 0;
    if (n == 0 || n > ST_HTTP_HOST_MAX)
        return ST_HTTP_E_URL_HOST;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (ipv6 ? !is_ipv6_char(c) : !is_host_char(c))
            return ST_HTTP_E_URL_HOST;
        colons += c == ':';
    }
    if (ipv6 && colons < 2) /* the shortest literal is "::" */
        return ST_HTTP_E_URL_HOST;
    memcpy(t->host, s, n);
    t->host[n] = '\0';
    t->ipv6 = ipv6;
    return ST_HTTP_OK;
}

/* ":digits" after the host; s[0..n) is what follows the host. */
static st_http_error read_port(st_http_target *t, const char *s, size_t n) {
    unsigned long port = 0;
    size_t i;
    if (n == 0) {
        t->port = t->tls ? 443 : 80;
        return ST_HTTP_OK;
    }
    if (s[0] != ':' || n < 2 || n > 6)
        return n >= 1 && s[0] != ':' ? ST_HTTP_E_URL_HOST : ST_HTTP_E_URL_PORT;
    for (i = 1; i < n; i++) {
        if (!is_digit((unsigned char)s[i]))
            return ST_HTTP_E_URL_PORT;
        port = port * 10 + (unsigned long)(s[i] - '0');
    }
    if (port < 1 || port > 65535)
        return ST_HTTP_E_URL_PORT;
    t->port = (unsigned)port;
    return ST_HTTP_OK;
}

/* The authority a[0..n): host, or [ipv6], then an optional :port. */
static st_http_error split_authority(st_http_target *t, const char *a,
                                     size_t n) {
    const char *end;
    size_t hostlen;
    st_http_error e;
    if (memchr(a, '@', n))
        return ST_HTTP_E_URL_USERINFO;
    if (n > 0 && a[0] == '[') {
        end = memchr(a, ']', n);
        if (!end)
            return ST_HTTP_E_URL_HOST;
        hostlen = (size_t)(end - a) - 1;
        e = copy_host(t, a + 1, hostlen, 1);
        if (e == ST_HTTP_OK)
            e = read_port(t, end + 1, n - hostlen - 2);
        return e;
    }
    end = memchr(a, ':', n);
    hostlen = end ? (size_t)(end - a) : n;
    e = copy_host(t, a, hostlen, 0);
    if (e == ST_HTTP_OK)
        e = read_port(t, a + hostlen, n - hostlen);
    return e;
}

/* The path and query p[0..n) (the fragment already cut off) as the
 * request target: "" becomes "/", "?q" becomes "/?q". */
/* The path and query p[0..n) (the fragment already cut off) as the
 * request target: "" becomes "/", "?q" becomes "/?q". */
static st_http_error copy_target(st_http_target *t, const char *p, size_t n) {
    if (n == 0 || p[0] == '?')
        st_buf_append_char(&t->target, '/');
    st_buf_append(&t->target, p, n);
    return t->target.failed ? ST_HTTP_E_NOMEM : ST_HTTP_OK;
}

/* Splits url into t's scheme, host and port, and *path[0..*plen): the
 * path and query as the URL has them (no fragment; maybe empty or
 * starting with '?'). Every byte is printable ASCII, no space. */
static st_http_error split_url(st_http_target *t, const char *url, size_t n,
                               const char **path, size_t *plen) {
    size_t i, start, auth_end, frag;
    st_http_error e;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)url[i];
        if (c <= 0x20 || c >= 0x7F)
            return ST_HTTP_E_URL_BYTES;
    }
    start = scheme_length(url, n, &t->tls);
    if (start == 0)
        return ST_HTTP_E_URL_SCHEME;
    for (auth_end = start; auth_end < n; auth_end++) {
        char c = url[auth_end];
        if (c == '/' || c == '?' || c == '#')
            break;
    }
    e = split_authority(t, url + start, auth_end - start);
    if (e != ST_HTTP_OK)
        return e;
    for (frag = auth_end; frag < n && url[frag] != '#'; frag++)
        ;
    *path = url + auth_end;
    *plen = frag - auth_end;
    return ST_HTTP_OK;
}

st_http_error st_http_target_parse(st_http_target *t, const char *url,
                                   size_t n) {
    st_http_error e;
    const char *path;
    size_t plen;
    st_http_target_free(t);
    e = split_url(t, url, n, &path, &plen);
    if (e == ST_HTTP_OK)
        e = copy_target(t, path, plen);
    if (e != ST_HTTP_OK)
        st_http_target_free(t);
    return e;
}

void st_http_target_free(st_http_target *t) {
    st_buf_free(&t->target);
    t->tls = t->ipv6 = 0;
    t->host[0] = '\0';
    t->port = 0;
}

/* ---- request bytes ---------------------------------------------------- */

/* The target goes on the request line: no white space or control byte
 * may split it. */
static int request_target_ok(const st_buf *target) {
    size_t i;
    if (target->len == 0)
        return 0;
    for (i = 0; i < target->len; i++) {
        unsigned char c = (unsigned char)target->data[i];
        if (c <= 0x20 || c == 0x7F)
            return 0;
    }
    return 1;
}

#define APPEND_LITERAL(out, lit) st_buf_append((out), (lit), sizeof lit - 1)

static void append_host_header(st_buf *out, const st_http_target *t) {
    char port[16];
    size_t n = sizeof port;
    APPEND_LITERAL(out, "Host: ");
    if (t->ipv6)
        st_buf_append_char(out, '[');
    st_buf_append(out, t->host, strlen(t->host));
    if (t->ipv6)
        st_buf_append_char(out, ']');
    if (t->port != (t->tls ? 443u : 80u)) { /* ":port", without printf */
        unsigned p = t->port;
        do {
            port[--n] = (char)('0' + p % 10);
            p /= 10;
        } while (p > 0 && n > 1);
        port[--n] = ':';
        st_buf_append(out, port + n, sizeof port - n);
    }
    APPEND_LITERAL(out, "\r\n");
}

/* The host and user agent go into header lines: no control byte. */
static int header_values_ok(const st_http_target *t, const char *user_agent) {
    size_t hostlen = strnlen(t->host, sizeof t->host);
    return hostlen > 0 && hostlen < sizeof t->host &&
           all_field_chars(t->host, hostlen) &&
           (!user_agent || all_field_chars(user_agent, strlen(user_agent)));
}

/* The request for the target path[0..n) ("" and "?q" get their '/'). */
static st_http_error write_request(st_buf *out, const st_http_target *t,
                                   const char *path, size_t n,
                                   const char *user_agent, int keep_alive) {
    /* One allocation for all of it, mostly: the fixed lines and the parts. */
    st_buf_reserve_tail(out, n + strlen(t->host) + 96 +
                                 (user_agent ? strlen(user_agent) + 14 : 0));
    APPEND_LITERAL(out, "GET ");
    if (n == 0 || path[0] == '?')
        st_buf_append_char(out, '/');
    st_buf_append(out, path, n);
    APPEND_LITERAL(out, " HTTP/1.1\r\n");
    append_host_header(out, t);
    if (user_agent) {
        APPEND_LITERAL(out, "User-Agent: ");
        st_buf_append(out, user_agent, strlen(user_agent));
        APPEND_LITERAL(out, "\r\n");
    }
    APPEND_LITERAL(out, "Accept: */*\r\n");
    if (keep_alive)
        APPEND_LITERAL(out, "Connection: keep-alive\r\n\r\n");
    else
        APPEND_LITERAL(out, "Connection: close\r\n\r\n");
    return out->failed ? ST_HTTP_E_NOMEM : ST_HTTP_OK;
}

st_http_error st_http_request(st_buf *out, const st_http_target *t,
                              const char *user_agent, int keep_alive) {
    if (!request_target_ok(&t->target) || !header_values_ok(t, user_agent))
        return ST_HTTP_E_HEADER_VALUE;
    return write_request(out, t, t->target.data, t->target.len, user_agent,
                         keep_alive);
}

st_http_error st_http_request_url(st_buf *out, st_http_target *t,
                                  const char *url, size_t n,
                                  const char *user_agent, int keep_alive) {
    const char *path;
    size_t plen;
    st_http_error e;
    st_http_target_free(t);
    e = split_url(t, url, n, &path, &plen);
    if (e != ST_HTTP_OK) {
        st_http_target_free(t);
        return e;
    }
    /* split_url let no space or control byte into the path. */
    if (!header_values_ok(t, user_agent))
        return ST_HTTP_E_HEADER_VALUE;
    return write_request(out, t, path, plen, user_agent, keep_alive);
}

/* ---- a framer: the request bytes of one gateway's URLs, fast ---------- */

/* url[0..n) in f's cache: same framing options, starting with its
 * "scheme://authority", and a path and query that need no checks beyond a
 * byte scan. *path_at: where the path starts. */
static int framer_fits(const st_http_framer *f, const char *url, size_t n,
                       const char *agent, int keep_alive, size_t *path_at) {
    size_t i, p = f->base.len;
    if (!f->valid || f->keep_alive != keep_alive ||
        (agent != NULL) != f->has_agent ||
        (agent && strcmp(agent, st_buf_str(&f->agent)) != 0))
        return 0;
    if (n < p || memcmp(url, f->base.data, p) != 0 ||
        (p < n && url[p] != '/' && url[p] != '?'))
        return 0;
    for (i = p; i < n; i++) {
        unsigned char c = (unsigned char)url[i];
        if (c <= 0x20 || c >= 0x7F || c == '#')
            return 0;
    }
    *path_at = p;
    return 1;
}

/* After a full framing of url into out[start..): keep what every URL of
 * this authority shares. On failure the cache is simply left invalid. */
static void framer_learn(st_http_framer *f, const char *url, size_t n,
                         const char *agent, int keep_alive, const st_buf *out,
                         size_t start) {
    size_t base = scheme_length(url, n, &(int){0}), target_len;
    while (base < n && url[base] != '/' && url[base] != '?' &&
           url[base] != '#')
        base++;
    if (memchr(url + base, '#', n - base))
        return; /* framed the slow way each time: rare enough */
    target_len = n - base + (base == n || url[base] == '?');
    st_buf_truncate(&f->base, 0);
    st_buf_truncate(&f->tail, 0);
    st_buf_truncate(&f->agent, 0);
    f->base.failed = f->tail.failed = f->agent.failed = 0;
    st_buf_append(&f->base, url, base);
    st_buf_append(&f->tail, out->data + start + 4 + target_len,
                  out->len - start - 4 - target_len);
    f->has_agent = agent != NULL;
    if (agent)
        st_buf_append(&f->agent, agent, strlen(agent));
    f->keep_alive = keep_alive;
    f->valid = !f->base.failed && !f->tail.failed && !f->agent.failed &&
               f->base.len > 0;
}

st_http_error st_http_frame(st_http_framer *f, st_buf *out, const char *url,
                            size_t n, const char *agent, int keep_alive) {
    size_t path_at, start = out->len;
    st_http_error e;
    if (framer_fits(f, url, n, agent, keep_alive, &path_at)) {
        APPEND_LITERAL(out, "GET ");
        if (path_at == n || url[path_at] == '?')
            st_buf_append_char(out, '/');
        st_buf_append(out, url + path_at, n - path_at);
        st_buf_append(out, f->tail.data, f->tail.len);
        return out->failed ? ST_HTTP_E_NOMEM : ST_HTTP_OK;
    }
    f->valid = 0;
    e = st_http_request_url(out, &f->target, url, n, agent, keep_alive);
    if (e == ST_HTTP_OK)
        framer_learn(f, url, n, agent, keep_alive, out, start);
    return e;
}

void st_http_framer_free(st_http_framer *f) {
    st_buf_free(&f->base);
    st_buf_free(&f->tail);
    st_buf_free(&f->agent);
    st_http_target_free(&f->target);
    f->valid = 0;
}

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

static size_t on_body_length(st_http_response *r, const char *data,
                             size_t n) {
    size_t take = n < r->remaining ? n : r->remaining;
    if (append_body(r, data, take) != 0)
        return take;
    r->remaining -= take;
    if (r->remaining == 0)
        finish_response(r, 1);
    return take;
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
    size_t take = n < r->remaining ? n : r->remaining;
    if (append_body(r, data, take) != 0)
        return take;
    r->remaining -= take;
    if (r->remaining == 0)
        r->state = S_CHUNK_END;
    return take;
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
