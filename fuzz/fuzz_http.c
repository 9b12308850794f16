/* The HTTP/1.1 framing of the socket drivers (src/st_http_request.c, src/st_http_response.c).
 *
 * Input: max_body selector (1 byte), split seed (1 byte), flags (1 byte),
 * then the payload. Flags bit 1 clear: the payload is a server's response
 * (bit 0: the server then closes, st_http_finish). Bit 1 set: the payload
 * is a URL, 0xFF, a User-Agent.
 *
 * Properties of the response parser:
 *  - fed whole, a byte at a time, and in two runs of pseudo-random pieces
 *    (from the seed), the outcome is the same: progress, error, status,
 *    keep, bytes used, and the body's bytes;
 *  - the body never holds more than max_body bytes, the line buffer never
 *    more than ST_HTTP_HEADER_MAX;
 *  - while MORE every byte was used; a failure or DONE uses at most all;
 *  - DONE with a Content-Length body: the body is exactly that long and
 *    is the bytes right after the header block (used = header bytes +
 *    Content-Length); a close-delimited body is every byte after the
 *    headers and is never kept; keep is 0 after any failure;
 *  - the bytes a DONE response used, fed alone, give the same response
 *    (nothing after a response changes it), and a done parser uses no
 *    more bytes.
 * Properties of the URL split and the request bytes:
 *  - a URL with a space, control or non-ASCII byte is refused for that;
 *  - an accepted URL gives back its parts: the scheme, the host (in
 *    brackets for IPv6) right after "://", the port written after it (or
 *    the default), the path and query up to '#' as the target ("/" for
 *    none, "/?q" for "?q");
 *  - its request is lines that end in CRLF with no other CR or LF, the
 *    request line is "GET <target> HTTP/1.1", the Host line re-splits to
 *    the same host, port and target, and only the final line is empty;
 *  - a User-Agent with a control byte other than tab is refused and the
 *    buffer is left as it was; any other appears verbatim.
 */
#include <strings.h>

#include "fuzz_common.h"
#include "st_http.h"

typedef struct outcome {
    st_http_progress progress;
    st_http_error error;
    int status, keep;
    size_t used;
    st_buf body;
    /* for the framing checks */
    int has_length, chunked;
    size_t content_length, header_bytes;
} outcome;

static size_t max_body_of(unsigned b) {
    if (b < 200)
        return b;
    if (b < 255)
        return (b - 199) * 512;
    return 1 << 20;
}

/* A small linear congruential generator: split points from the seed. */
static unsigned next_rand(unsigned *state) {
    *state = *state * 1103515245u + 12345u;
    return (*state >> 16) & 0x7FFF;
}

/* Feeds data[0..n) (a heap block of exactly n bytes) in pieces: `fixed`
 * bytes each, or (fixed == 0) random lengths of 1..max_piece from seed.
 * A piece is copied to the end of a block of the largest piece's size, so
 * ASan sees any read past the piece without a malloc per piece. */
static void parse(const char *data, size_t n, size_t max_body, int at_eof,
                  size_t fixed, unsigned seed, outcome *o) {
    st_http_response r;
    st_http_progress p = ST_HTTP_MORE;
    size_t pos = 0, used;
    unsigned state = seed, max_piece = 1 + seed % 64;
    size_t block_size = fixed ? fixed : max_piece;
    char *block = NULL; /* the whole input is fed as it is */
    if (fixed < n && !(block = malloc(block_size)))
        abort();
    st_http_response_init(&r, max_body);
    while (pos < n && p == ST_HTTP_MORE) {
        size_t piece = fixed ? fixed : 1 + next_rand(&state) % max_piece;
        const char *at = data + pos;
        if (piece > n - pos)
            piece = n - pos;
        if (block) {
            memcpy(block + block_size - piece, data + pos, piece);
            at = block + block_size - piece;
        }
        used = (size_t)-1;
        p = st_http_feed(&r, at, piece, &used);
        CHECK(used <= piece);
        if (p == ST_HTTP_MORE)
            CHECK(used == piece);
        pos += used;
        CHECK(r.body.len <= max_body);
        CHECK(r.line.len <= ST_HTTP_HEADER_MAX);
    }
    free(block);
    if (p == ST_HTTP_MORE && at_eof)
        p = st_http_finish(&r);
    if (p == ST_HTTP_DONE) { /* a done parser takes nothing more */
        used = 1;
        CHECK(st_http_feed(&r, data, n, &used) == ST_HTTP_DONE && used == 0);
    }
    o->progress = p;
    o->error = r.error;
    o->status = r.status;
    o->keep = r.keep;
    o->used = pos;
    o->body = r.body; /* the outcome owns the body now */
    r.body.data = NULL;
    r.body.len = r.body.cap = 0;
    o->has_length = r.has_length;
    o->chunked = r.chunked;
    o->content_length = r.content_length;
    o->header_bytes = r.header_bytes;
    st_http_response_free(&r);
}

static void check_same(const outcome *a, const outcome *b) {
    CHECK(a->progress == b->progress);
    CHECK(a->error == b->error);
    CHECK(a->status == b->status);
    CHECK(a->keep == b->keep);
    CHECK(a->used == b->used);
    CHECK(a->body.len == b->body.len);
    CHECK(a->body.len == 0 || memcmp(a->body.data, b->body.data, a->body.len) == 0);
}

static void check_outcome(const outcome *o, const char *data, size_t n,
                          size_t max_body) {
    CHECK(o->used <= n);
    CHECK(o->body.len <= max_body);
    CHECK(o->body.data == NULL || o->body.data[o->body.len] == '\0');
    CHECK(st_http_error_text(o->error)[0] != '\0');
    switch (o->progress) {
    case ST_HTTP_MORE:
        CHECK(o->error == ST_HTTP_OK && o->used == n && !o->keep);
        break;
    case ST_HTTP_DONE:
        CHECK(o->error == ST_HTTP_OK);
        CHECK(o->status >= 200 && o->status <= 999);
        if (o->status == 204 || o->status == 304) {
            CHECK(o->body.len == 0 && o->used == o->header_bytes);
        } else if (!o->chunked && o->has_length) {
            CHECK(o->body.len == o->content_length);
            CHECK(o->used == o->header_bytes + o->content_length);
            CHECK(memcmp(o->body.data ? o->body.data : "",
                         data + o->header_bytes, o->body.len) == 0);
        } else if (!o->chunked) { /* up to the close */
            CHECK(o->used == n && !o->keep);
            CHECK(o->body.len == n - o->header_bytes);
        }
        break;
    case ST_HTTP_TOO_LARGE:
        CHECK(o->error == ST_HTTP_E_TOO_LARGE && !o->keep);
        break;
    case ST_HTTP_FAILED:
        CHECK(o->error != ST_HTTP_OK && o->error != ST_HTTP_E_TOO_LARGE &&
              o->error < ST_HTTP_ERROR_COUNT && !o->keep);
        break;
    }
}

static void fuzz_response(const char *data, size_t n, size_t max_body,
                          int at_eof, unsigned seed) {
    outcome whole, bytes, split1, split2, prefix;
    parse(data, n, max_body, at_eof, n ? n : 1, 0, &whole);
    check_outcome(&whole, data, n, max_body);
    parse(data, n, max_body, at_eof, 1, 0, &bytes);
    check_same(&whole, &bytes);
    parse(data, n, max_body, at_eof, 0, seed, &split1);
    check_same(&whole, &split1);
    parse(data, n, max_body, at_eof, 0, seed * 7919u + n, &split2);
    check_same(&whole, &split2);
    if (whole.progress == ST_HTTP_DONE && whole.used < n) {
        /* a delimited response ends where it ends: what follows it (a
         * pipelined response, or the close) plays no part */
        parse(data, whole.used, max_body, 0, whole.used ? whole.used : 1, 0,
              &prefix);
        check_same(&whole, &prefix);
        st_buf_free(&prefix.body);
    }
    st_buf_free(&whole.body);
    st_buf_free(&bytes.body);
    st_buf_free(&split1.body);
    st_buf_free(&split2.body);
}

/* ---- URLs and requests ---- */

static int has_bad_url_byte(const char *s, size_t n) {
    size_t i;
    for (i = 0; i < n; i++)
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7F)
            return 1;
    return 0;
}

/* The URL gives back the target's parts, read from it independently. */
static void check_url_parts(const st_http_target *t, const char *url,
                            size_t n) {
    size_t pos = t->tls ? 8 : 7, hostlen = strlen(t->host), end;
    unsigned long port = 0;
    const char *target = st_buf_str(&t->target);
    CHECK(n >= pos && strncasecmp(url, t->tls ? "https://" : "http://", pos) == 0);
    CHECK(hostlen > 0 && hostlen <= ST_HTTP_HOST_MAX);
    if (t->ipv6)
        CHECK(url[pos++] == '[');
    CHECK(n - pos >= hostlen && memcmp(url + pos, t->host, hostlen) == 0);
    pos += hostlen;
    if (t->ipv6)
        CHECK(url[pos++] == ']');
    if (pos < n && url[pos] == ':') {
        for (pos++; pos < n && url[pos] >= '0' && url[pos] <= '9'; pos++)
            port = port * 10 + (unsigned long)(url[pos] - '0');
        CHECK(port == t->port);
    } else {
        CHECK(t->port == (t->tls ? 443u : 80u));
    }
    CHECK(!memchr(url, '@', pos));
    for (end = pos; end < n && url[end] != '#'; end++)
        ;
    if (end == pos)
        CHECK(strcmp(target, "/") == 0);
    else if (url[pos] == '?')
        CHECK(target[0] == '/' && strlen(target) == end - pos + 1 &&
              memcmp(target + 1, url + pos, end - pos) == 0);
    else
        CHECK(url[pos] == '/' && strlen(target) == end - pos &&
              memcmp(target, url + pos, end - pos) == 0);
}

/* The next CRLF-ended line of req from *pos; -1 for a line with a CR or
 * LF inside, or none. */
static int next_line(const st_buf *req, size_t *pos, const char **line,
                     size_t *len) {
    const char *s = req->data + *pos;
    const char *crlf;
    size_t i, left = req->len - *pos;
    for (i = 0; i + 1 < left; i++)
        if (s[i] == '\r' || s[i] == '\n')
            break;
    crlf = i + 1 < left ? s + i : NULL;
    if (!crlf || crlf[0] != '\r' || crlf[1] != '\n')
        return -1;
    *line = s;
    *len = i;
    *pos += i + 2;
    return 0;
}

static void check_request(const st_http_target *t, const char *ua) {
    st_buf req = ST_BUF_INIT, url = ST_BUF_INIT;
    st_http_target back = ST_HTTP_TARGET_INIT;
    const char *line, *host = NULL;
    size_t pos, len, hostlen = 0, lines = 0, i;
    int ua_ok = 1, saw_ua = 0;
    st_http_error e;
    for (i = 0; ua && ua[i]; i++)
        if (((unsigned char)ua[i] < 0x20 && ua[i] != '\t') || ua[i] == 0x7F)
            ua_ok = 0;
    st_buf_append_str(&req, "x");
    e = st_http_request(&req, t, ua, (int)(strlen(st_buf_str(&t->target)) & 1));
    if (!ua_ok) {
        CHECK(e == ST_HTTP_E_HEADER_VALUE);
        CHECK(req.len == 1 && strcmp(req.data, "x") == 0);
        st_buf_free(&req);
        return;
    }
    CHECK(e == ST_HTTP_OK);
    pos = 1;
    CHECK(next_line(&req, &pos, &line, &len) == 0);
    CHECK(len == 4 + t->target.len + 9 && memcmp(line, "GET ", 4) == 0 &&
          memcmp(line + 4, t->target.data, t->target.len) == 0 &&
          memcmp(line + 4 + t->target.len, " HTTP/1.1", 9) == 0);
    for (;;) {
        CHECK(next_line(&req, &pos, &line, &len) == 0);
        if (len == 0)
            break;
        lines++;
        CHECK(memchr(line, ':', len) != NULL);
        if (len >= 6 && memcmp(line, "Host: ", 6) == 0)
            host = line + 6, hostlen = len - 6;
        if (ua && len >= 12 && memcmp(line, "User-Agent: ", 12) == 0) {
            CHECK(len - 12 == strlen(ua) && memcmp(line + 12, ua, len - 12) == 0);
            saw_ua = 1;
        }
    }
    CHECK(pos == req.len); /* the empty line ends the request */
    CHECK(lines == (ua ? 4u : 3u) && (!ua || saw_ua) && host);
    /* the Host header and the target make the same URL again */
    st_buf_append_str(&url, t->tls ? "https://" : "http://");
    st_buf_append(&url, host, hostlen);
    st_buf_append(&url, t->target.data, t->target.len);
    CHECK(st_http_target_parse(&back, url.data, url.len) == ST_HTTP_OK);
    CHECK(back.tls == t->tls && back.ipv6 == t->ipv6 && back.port == t->port);
    CHECK(strcmp(back.host, t->host) == 0);
    CHECK(strcmp(st_buf_str(&back.target), st_buf_str(&t->target)) == 0);
    st_http_target_free(&back);
    st_buf_free(&url);
    st_buf_free(&req);
}

/* A framer gives st_http_request_url's bytes for url, whatever it framed
 * before. */
static void check_framed(st_http_framer *f, const char *url, size_t n,
                         const char *ua, int keep) {
    st_http_target t = ST_HTTP_TARGET_INIT;
    st_buf want = ST_BUF_INIT, got = ST_BUF_INIT;
    st_http_error ew = st_http_request_url(&want, &t, url, n, ua, keep);
    st_http_error eg = st_http_frame(f, &got, url, n, ua, keep);
    CHECK(ew == eg);
    CHECK(want.len == got.len && memcmp(st_buf_str(&want), st_buf_str(&got),
                                        want.len) == 0);
    if (ew == ST_HTTP_OK) {
        const st_http_target *ft = st_http_framer_target(f);
        CHECK(strcmp(t.host, ft->host) == 0 && t.port == ft->port &&
              t.tls == ft->tls);
    }
    st_buf_free(&want);
    st_buf_free(&got);
    st_http_target_free(&t);
}

/* The framer over two fuzzed URLs in turn, each twice (the second time
 * from its cache when the first fitted). */
static void fuzz_framer(const char *url, size_t un, const char *ua,
                        fuzz_reader *rd) {
    st_http_framer f = ST_HTTP_FRAMER_INIT;
    const uint8_t *u2;
    size_t n2;
    char *url2;
    int keep = fuzz_byte(rd) & 1;
    fuzz_field(rd, &u2, &n2);
    url2 = fuzz_dup(u2, n2);
    check_framed(&f, url, un, ua, keep);
    check_framed(&f, url, un, ua, keep);
    check_framed(&f, url2, n2, ua, keep);
    check_framed(&f, url2, n2, ua, !keep);
    check_framed(&f, url, un, ua, keep);
    st_http_framer_free(&f);
    free(url2);
}

static void fuzz_url(const uint8_t *data, size_t size) {
    fuzz_reader rd = {data, size};
    const uint8_t *u, *a;
    size_t un, an;
    char *url, *ua;
    st_http_target t = ST_HTTP_TARGET_INIT;
    st_http_error e;
    fuzz_field(&rd, &u, &un);
    fuzz_field(&rd, &a, &an);
    url = fuzz_dup(u, un);
    ua = fuzz_strdup(a, an);
    e = st_http_target_parse(&t, url, un);
    CHECK(e < ST_HTTP_ERROR_COUNT);
    if (has_bad_url_byte(url, un))
        CHECK(e == ST_HTTP_E_URL_BYTES);
    if (e == ST_HTTP_OK) {
        check_url_parts(&t, url, un);
        check_request(&t, an ? ua : NULL);
    } else {
        CHECK(t.target.len == 0 && t.host[0] == '\0');
    }
    fuzz_framer(url, un, an ? ua : NULL, &rd);
    st_http_target_free(&t);
    free(url);
    free(ua);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_reader rd = {data, size};
    size_t max_body = max_body_of(fuzz_byte(&rd));
    unsigned seed = fuzz_byte(&rd);
    unsigned flags = fuzz_byte(&rd);
    if (flags & 2) {
        fuzz_url(rd.p, rd.n);
    } else {
        char *body = fuzz_dup(rd.p, rd.n);
        fuzz_response(body, rd.n, max_body, flags & 1, seed);
        free(body);
    }
    return 0;
}
