/* HTTP/1.1 framing for the socket drivers, the request side: a URL's
 * target, the request bytes for it, and a framer that makes them fast for
 * one gateway's URLs. (The response parser is st_http_response.c.) */
#include "st_http.h"
#include "st_http_chars.h"

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
