/* Unit tests of src/st_http_request.c and src/st_http_response.c (URL split, request bytes, response parser)
 * in plain C. Every response is also fed a byte at a time and must give
 * the same outcome. Prints one line per failed check and the counts;
 * exits non-zero when anything failed.
 *
 *   cc -std=c99 -D_POSIX_C_SOURCE=200809L -I src spec/http/test_http.c \
 *      src/st_http_request.c src/st_http_response.c src/st_buf.c -o test_http && ./test_http */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "st_http.h"

static int checks, failures;

#define EXPECT(cond, ...)                                                    \
    do {                                                                     \
        checks++;                                                            \
        if (!(cond)) {                                                       \
            failures++;                                                      \
            printf("FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);           \
            printf(__VA_ARGS__);                                             \
            printf("\n");                                                    \
        }                                                                    \
    } while (0)

/* What one response parse came to. */
typedef struct outcome {
    st_http_progress progress; /* after st_http_feed (and finish if asked) */
    st_http_error error;
    int status, keep;
    size_t used;
    char body[65536];
    size_t body_len;
} outcome;

static void run(const char *in, size_t n, size_t max_body, int at_eof,
                size_t chunk, outcome *o) {
    st_http_response r;
    size_t pos = 0, used;
    st_http_progress p = ST_HTTP_MORE;
    st_http_response_init(&r, max_body);
    while (pos < n && p == ST_HTTP_MORE) {
        size_t len = n - pos < chunk ? n - pos : chunk;
        p = st_http_feed(&r, in + pos, len, &used);
        pos += used;
    }
    if (p == ST_HTTP_MORE && at_eof)
        p = st_http_finish(&r);
    memset(o, 0, sizeof *o);
    o->progress = p;
    o->error = r.error;
    o->status = r.status;
    o->keep = r.keep;
    o->used = pos;
    o->body_len = r.body.len;
    if (r.body.len < sizeof o->body)
        memcpy(o->body, st_buf_str(&r.body), r.body.len);
    st_http_response_free(&r);
}

/* Parses in whole and a byte at a time; both must agree. */
static void parse(const char *in, size_t n, size_t max_body, int at_eof,
                  outcome *o) {
    static outcome bytewise;
    run(in, n, max_body, at_eof, n ? n : 1, o);
    run(in, n, max_body, at_eof, 1, &bytewise);
    EXPECT(o->progress == bytewise.progress && o->error == bytewise.error &&
               o->status == bytewise.status && o->keep == bytewise.keep &&
               o->used == bytewise.used && o->body_len == bytewise.body_len &&
               memcmp(o->body, bytewise.body, o->body_len) == 0,
           "whole and bytewise feeds differ for %.40s...", in);
}

#define MB 1024
static outcome o;

static void expect_done(const char *name, const char *in, size_t max_body,
                        int at_eof, int status, const char *body, int keep) {
    size_t n = strlen(in);
    parse(in, n, max_body, at_eof, &o);
    EXPECT(o.progress == ST_HTTP_DONE, "%s: progress %d, error %s", name,
           (int)o.progress, st_http_error_text(o.error));
    EXPECT(o.error == ST_HTTP_OK, "%s: error %s", name,
           st_http_error_text(o.error));
    EXPECT(o.status == status, "%s: status %d, want %d", name, o.status,
           status);
    EXPECT(o.body_len == strlen(body) && memcmp(o.body, body, o.body_len) == 0,
           "%s: body [%.*s], want [%s]", name, (int)o.body_len, o.body, body);
    EXPECT(o.keep == keep, "%s: keep %d, want %d", name, o.keep, keep);
    EXPECT(o.used == n, "%s: used %zu of %zu", name, o.used, n);
}

static void expect_error(const char *name, const char *in, size_t n,
                         size_t max_body, int at_eof, st_http_error error,
                         size_t used) {
    if (n == 0)
        n = strlen(in); /* only inputs holding a NUL need their length */
    parse(in, n, max_body, at_eof, &o);
    EXPECT(o.progress == (error == ST_HTTP_E_TOO_LARGE ? ST_HTTP_TOO_LARGE
                                                       : ST_HTTP_FAILED),
           "%s: progress %d", name, (int)o.progress);
    EXPECT(o.error == error, "%s: error \"%s\", want \"%s\"", name,
           st_http_error_text(o.error), st_http_error_text(error));
    EXPECT(o.keep == 0, "%s: keep after an error", name);
    if (used != (size_t)-1)
        EXPECT(o.used == used, "%s: used %zu, want %zu", name, o.used, used);
}

/* ---- responses ---- */

static void test_content_length(void) {
    expect_done("content-length",
                "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhello",
                MB, 0, 200, "hello", 1);
    expect_done("header names ignore case",
                "HTTP/1.1 200 OK\r\ncOnTeNt-LeNgTh:   3 \t\r\n\r\nabc", MB, 0,
                200, "abc", 1);
    expect_done("content-length 0", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
                MB, 0, 200, "", 1);
    expect_done("bare LF line ends",
                "HTTP/1.1 404 Not Found\nContent-Length: 2\n\nno", MB, 0, 404,
                "no", 1);
    expect_done("no reason phrase", "HTTP/1.1 200\r\nContent-Length: 1\r\n\r\nx",
                MB, 0, 200, "x", 1);
    expect_done("empty reason phrase",
                "HTTP/1.1 503 \r\nContent-Length: 1\r\n\r\nx", MB, 0, 503, "x",
                1);
    expect_done("identical duplicate content-length",
                "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 02\r\n\r\nok",
                MB, 0, 200, "ok", 1);
}

static void test_chunked(void) {
    expect_done("chunked with extensions and a trailer",
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                "5;name=value\r\nhello\r\n"
                "6 ; a=\"b c\";d\r\n world\r\n"
                "A\r\n0123456789\r\n"
                "0\r\nX-Checksum: abc\r\nX-Other: 1\r\n\r\n",
                MB, 0, 200, "hello world0123456789", 1);
    expect_done("chunked, encoding name in capitals, leading zeros",
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: CHUNKED\r\n\r\n"
                "0003\r\nabc\r\n000\r\n\r\n", MB, 0, 200, "abc", 1);
    expect_done("chunked and content-length: chunked wins, no reuse",
                "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n"
                "Transfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
                MB, 0, 200, "ok", 0);
    expect_error("chunk size not hex",
                 "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                 0, MB, 0, ST_HTTP_E_CHUNK, 51);
    expect_error("chunk size empty",
                 "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n;x\r\n",
                 0, MB, 0, ST_HTTP_E_CHUNK, 51);
    expect_error("chunk data not followed by CRLF",
                 "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                 "2\r\nokX\r\n0\r\n\r\n", 0, MB, 0, ST_HTTP_E_CHUNK, 55);
    expect_error("gzip transfer-encoding",
                 "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                 53, MB, 0, ST_HTTP_E_TRANSFER_ENCODING, 51);
    expect_error("chunked twice",
                 "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                 "Transfer-Encoding: chunked\r\n\r\n", 75, MB, 0,
                 ST_HTTP_E_TRANSFER_ENCODING, 73);
    expect_error("chunked body cut off",
                 "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
                 53, MB, 1, ST_HTTP_E_TRUNCATED, 53);
}

static void test_close_delimited(void) {
    const char *in = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nall of it";
    parse(in, strlen(in), MB, 0, &o);
    EXPECT(o.progress == ST_HTTP_MORE, "close-delimited: MORE before EOF, got %d",
           (int)o.progress);
    EXPECT(o.used == strlen(in), "close-delimited: every byte used");
    expect_done("close-delimited, finished at EOF", in, MB, 1, 200, "all of it", 0);
    expect_done("HTTP/1.0 close-delimited",
                "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\nx", MB, 1, 200,
                "x", 0);
}

static void test_no_body_statuses(void) {
    expect_done("204 no body", "HTTP/1.1 204 No Content\r\n\r\n", MB, 0, 204, "", 1);
    expect_done("304 ignores its content-length",
                "HTTP/1.1 304 Not Modified\r\nContent-Length: 100\r\n\r\n", MB, 0,
                304, "", 1);
    /* the bytes after a 204 are the next response's */
    parse("HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1", 35, MB, 0, &o);
    EXPECT(o.progress == ST_HTTP_DONE && o.used == 27, "204 then more: used %zu",
           o.used);
}

static void test_interim(void) {
    expect_done("100 Continue then 200",
                "HTTP/1.1 100 Continue\r\n\r\n"
                "HTTP/1.1 102 Processing\r\nX: y\r\n\r\n"
                "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
                MB, 0, 200, "ok", 1);
    expect_done("interim Connection: close does not carry over",
                "HTTP/1.1 100 Continue\r\nConnection: close\r\n\r\n"
                "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
                MB, 0, 200, "ok", 1);
    expect_error("101 Switching Protocols",
                 "HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n", 50,
                 MB, 0, ST_HTTP_E_UPGRADE, 34);
}

static void test_keep(void) {
    expect_done("HTTP/1.0 keep-alive",
                "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 2\r\n\r\nok",
                MB, 0, 200, "ok", 1);
    expect_done("HTTP/1.0 without keep-alive",
                "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", MB, 0, 200, "ok",
                0);
    expect_done("HTTP/1.1 Connection: close",
                "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
                MB, 0, 200, "ok", 0);
    expect_done("close among other options",
                "HTTP/1.1 200 OK\r\nConnection: TE , Close\r\nContent-Length: 2\r\n\r\nok",
                MB, 0, 200, "ok", 0);
    expect_done("HTTP/1.0 keep-alive and close",
                "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nConnection: close\r\n"
                "Content-Length: 2\r\n\r\nok", MB, 0, 200, "ok", 0);
    expect_done("HTTP/1.1 keep-alive by default",
                "HTTP/1.1 200 OK\r\nConnection: closed-not\r\nContent-Length: 2\r\n\r\nok",
                MB, 0, 200, "ok", 1);
}

static void test_bad_content_length(void) {
    const char *conflict =
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok";
    expect_error("conflicting content-length", conflict, strlen(conflict), MB,
                 0, ST_HTTP_E_CONTENT_LENGTH, 55);
    expect_error("negative content-length",
                 "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", 40, MB, 0,
                 ST_HTTP_E_CONTENT_LENGTH, 37);
    expect_error("content-length list",
                 "HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nok", 43, MB, 0,
                 ST_HTTP_E_CONTENT_LENGTH, 39);
    expect_error("empty content-length",
                 "HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n", 37, MB, 0,
                 ST_HTTP_E_CONTENT_LENGTH, 34);
    expect_error("content-length past size_t is too large",
                 "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999999\r\n\r\n",
                 0, MB, 0, ST_HTTP_E_TOO_LARGE, 63);
    expect_error("content-length body cut off",
                 "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", 43, MB, 1,
                 ST_HTTP_E_TRUNCATED, 43);
}

static void test_too_large(void) {
    const char *head = "HTTP/1.1 200 OK\r\n\r\n";
    char in[128];
    size_t h = strlen(head);
    expect_done("content-length of exactly max_body",
                "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789", 10, 0,
                200, "0123456789", 1);
    expect_error("content-length of max_body + 1",
                 "HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n0123456789A", 51, 10,
                 0, ST_HTTP_E_TOO_LARGE, 39);
    /* close-delimited: max_body bytes are fine, the next one is not */
    snprintf(in, sizeof in, "%s0123456789", head);
    expect_done("close-delimited, exactly max_body", in, 10, 1, 200,
                "0123456789", 0);
    snprintf(in, sizeof in, "%s0123456789AB", head);
    expect_error("close-delimited, max_body + 1", in, strlen(in), 10, 1,
                 ST_HTTP_E_TOO_LARGE, h + 11);
    EXPECT(o.body_len == 10, "too large keeps max_body bytes, kept %zu",
           o.body_len);
    expect_done("chunked, exactly max_body",
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                "6\r\n012345\r\n4\r\n6789\r\n0\r\n\r\n", 10, 0, 200, "0123456789",
                1);
    expect_error("chunked, max_body + 1",
                 "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                 "6\r\n012345\r\n5\r\n6789A\r\n0\r\n\r\n", 76, 10, 0,
                 ST_HTTP_E_TOO_LARGE, 61);
    expect_error("max_body 0, one body byte",
                 "HTTP/1.1 200 OK\r\n\r\nx", 20, 0, 0, ST_HTTP_E_TOO_LARGE, 20);
}

/* A header block of exactly `total` bytes: status line, one X-Pad header
 * filled to size, the empty line. */
static char *header_block(size_t total) {
    size_t i;
    char *s = malloc(total + 1);
    if (!s)
        abort();
    strcpy(s, "HTTP/1.1 204 No Content\r\nX-Pad: ");
    for (i = strlen(s); i < total - 4; i++)
        s[i] = 'a';
    memcpy(s + total - 4, "\r\n\r\n", 5);
    return s;
}

static void test_header_cap(void) {
    char *at_cap = header_block(ST_HTTP_HEADER_MAX);
    char *past_cap = header_block(ST_HTTP_HEADER_MAX + 1);
    expect_done("header block of exactly 16 KiB", at_cap, MB, 0, 204, "", 1);
    expect_error("header block one byte longer", past_cap,
                 ST_HTTP_HEADER_MAX + 1, MB, 0, ST_HTTP_E_HEADERS_TOO_LONG,
                 ST_HTTP_HEADER_MAX + 1);
    free(at_cap);
    free(past_cap);
}

/* Interim responses share the header budget: endless 100 Continues end. */
static void test_interim_budget(void) {
    const char *cont = "HTTP/1.1 100 Continue\r\n\r\n"; /* 25 bytes */
    size_t each = strlen(cont), count = ST_HTTP_HEADER_MAX / each + 1, i;
    char *in = malloc(each * count + 1);
    if (!in)
        abort();
    for (i = 0; i < count; i++)
        memcpy(in + i * each, cont, each);
    in[each * count] = '\0';
    expect_error("endless 100 Continue", in, 0, MB, 0,
                 ST_HTTP_E_HEADERS_TOO_LONG, ST_HTTP_HEADER_MAX + 1);
    free(in);
}

/* A chunk-size line (extensions included) has its own cap. */
static void test_chunk_line_cap(void) {
    const char *head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;";
    size_t h = strlen(head), i;
    char *in = malloc(h + ST_HTTP_CHUNK_LINE_MAX + 8);
    if (!in)
        abort();
    memcpy(in, head, h);
    for (i = h; i < h + ST_HTTP_CHUNK_LINE_MAX; i++)
        in[i] = 'e';
    memcpy(in + h + ST_HTTP_CHUNK_LINE_MAX, "\r\nx\r\n", 6);
    in[h + ST_HTTP_CHUNK_LINE_MAX + 6] = '\0';
    /* "1;" + extensions fill the cap; the byte after them is refused */
    expect_error("chunk line too long", in, 0, MB, 0, ST_HTTP_E_CHUNK,
                 h - 2 + ST_HTTP_CHUNK_LINE_MAX + 1);
    free(in);
}

static void test_bad_lines(void) {
    expect_error("SSH banner", "SSH-2.0-OpenSSH_9.2\r\n", 21, MB, 0,
                 ST_HTTP_E_STATUS_LINE, 1);
    expect_error("TLS bytes on a plain port", "\x16\x03\x01\x02", 4, MB, 0,
                 ST_HTTP_E_STATUS_LINE, 1);
    expect_error("HTTP/2", "HTTP/2 200\r\n\r\n", 14, MB, 0,
                 ST_HTTP_E_STATUS_LINE, 12);
    expect_error("two-digit status", "HTTP/1.1 20 OK\r\n\r\n", 18, MB, 0,
                 ST_HTTP_E_STATUS_LINE, 16);
    expect_error("status 099", "HTTP/1.1 099 Low\r\n\r\n", 20, MB, 0,
                 ST_HTTP_E_STATUS_LINE, 18);
    expect_error("status runs into the reason", "HTTP/1.1 200OK\r\n\r\n", 18,
                 MB, 0, ST_HTTP_E_STATUS_LINE, 16);
    expect_error("NUL in the reason", "HTTP/1.1 200 O\0K\r\n\r\n", 20, MB, 0,
                 ST_HTTP_E_STATUS_LINE, 18);
    expect_error("folded header line",
                 "HTTP/1.1 200 OK\r\nX-A: b\r\n c\r\n\r\n", 31, MB, 0,
                 ST_HTTP_E_HEADER, 29);
    expect_error("space before the colon",
                 "HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nok", 42, MB, 0,
                 ST_HTTP_E_HEADER, 37);
    expect_error("no colon", "HTTP/1.1 200 OK\r\nbogus\r\n\r\n", 26, MB, 0,
                 ST_HTTP_E_HEADER, 24);
    expect_error("stray CR in a value", "HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n", 27,
                 MB, 0, ST_HTTP_E_HEADER, 25);
    expect_error("bad trailer",
                 "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nnope\r\n\r\n",
                 58, MB, 0, ST_HTTP_E_HEADER, 56);
    expect_error("closed before a byte", "", 0, MB, 1, ST_HTTP_E_NO_RESPONSE, 0);
    expect_error("closed inside the headers", "HTTP/1.1 200 OK\r\n", 17, MB, 1,
                 ST_HTTP_E_TRUNCATED, 17);
}

static void test_pipelined(void) {
    const char *first = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none";
    const char *second = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                         "3\r\ntwo\r\n0\r\n\r\n";
    char both[256];
    size_t n1 = strlen(first);
    snprintf(both, sizeof both, "%s%s", first, second);
    parse(both, strlen(both), MB, 0, &o);
    EXPECT(o.progress == ST_HTTP_DONE && o.used == n1,
           "pipelined: first response uses %zu bytes, want %zu", o.used, n1);
    EXPECT(o.body_len == 3 && memcmp(o.body, "one", 3) == 0, "pipelined: body 1");
    expect_done("pipelined: the rest is the second response", both + n1, MB, 0,
                200, "two", 1);
    /* once done, a parser takes nothing more */
    {
        st_http_response r;
        size_t used = 99;
        st_http_response_init(&r, MB);
        EXPECT(st_http_feed(&r, both, strlen(both), &used) == ST_HTTP_DONE,
               "done");
        EXPECT(st_http_feed(&r, both, strlen(both), &used) == ST_HTTP_DONE &&
                   used == 0, "a done parser uses nothing, used %zu", used);
        EXPECT(st_http_finish(&r) == ST_HTTP_DONE, "finish after done");
        st_http_response_free(&r);
    }
}

/* ---- URLs and requests ---- */

static void expect_url(const char *url, int tls, const char *host,
                       unsigned port, const char *target) {
    st_http_target t = ST_HTTP_TARGET_INIT;
    st_http_error e = st_http_target_parse(&t, url, strlen(url));
    EXPECT(e == ST_HTTP_OK, "%s: %s", url, st_http_error_text(e));
    EXPECT(t.tls == tls, "%s: tls %d", url, t.tls);
    EXPECT(strcmp(t.host, host) == 0, "%s: host [%s], want [%s]", url, t.host,
           host);
    EXPECT(t.port == port, "%s: port %u, want %u", url, t.port, port);
    EXPECT(strcmp(st_buf_str(&t.target), target) == 0,
           "%s: target [%s], want [%s]", url, st_buf_str(&t.target), target);
    st_http_target_free(&t);
}

static void expect_bad_url(const char *url, size_t n, st_http_error want) {
    st_http_target t = ST_HTTP_TARGET_INIT;
    st_http_error e = st_http_target_parse(&t, url, n);
    EXPECT(e == want, "%s: \"%s\", want \"%s\"", url, st_http_error_text(e),
           st_http_error_text(want));
    EXPECT(t.target.len == 0 && t.host[0] == '\0', "%s: left empty", url);
    st_http_target_free(&t);
}

static void test_urls(void) {
    expect_url("https://gateway.api.sc/get/?user=u&pwd=p", 1, "gateway.api.sc",
               443, "/get/?user=u&pwd=p");
    expect_url("http://127.0.0.1:8080/get/", 0, "127.0.0.1", 8080, "/get/");
    expect_url("HTTP://Example.COM", 0, "Example.COM", 80, "/");
    expect_url("http://example.com?x=1#frag", 0, "example.com", 80, "/?x=1");
    expect_url("https://[::1]:8443/a%20b", 1, "::1", 8443, "/a%20b");
    expect_url("https://[2001:db8::1]/", 1, "2001:db8::1", 443, "/");
    expect_url("http://h:65535/#", 0, "h", 65535, "/");
    expect_bad_url("ftp://example.com/", 18, ST_HTTP_E_URL_SCHEME);
    expect_bad_url("example.com/", 12, ST_HTTP_E_URL_SCHEME);
    expect_bad_url("http://user:pw@example.com/", 27, ST_HTTP_E_URL_USERINFO);
    expect_bad_url("http:///path", 12, ST_HTTP_E_URL_HOST);
    expect_bad_url("http://", 7, ST_HTTP_E_URL_HOST);
    expect_bad_url("http://:80/", 11, ST_HTTP_E_URL_HOST);
    expect_bad_url("http://exa$mple.com/", 20, ST_HTTP_E_URL_HOST);
    expect_bad_url("http://[::1/", 12, ST_HTTP_E_URL_HOST);
    expect_bad_url("http://[1.2.3.4]/", 17, ST_HTTP_E_URL_HOST);
    expect_bad_url("http://[::1]x/", 14, ST_HTTP_E_URL_HOST);
    expect_bad_url("http://h:/", 10, ST_HTTP_E_URL_PORT);
    expect_bad_url("http://h:0/", 11, ST_HTTP_E_URL_PORT);
    expect_bad_url("http://h:65536/", 15, ST_HTTP_E_URL_PORT);
    expect_bad_url("http://h:8o/", 12, ST_HTTP_E_URL_PORT);
    expect_bad_url("http://h:1:2/", 13, ST_HTTP_E_URL_PORT);
    expect_bad_url("http://h/a b", 12, ST_HTTP_E_URL_BYTES);
    expect_bad_url("http://h/\r\nX: y", 15, ST_HTTP_E_URL_BYTES);
    expect_bad_url("http://h/\0x", 11, ST_HTTP_E_URL_BYTES);
    expect_bad_url("http://h/\xd0\x9f", 11, ST_HTTP_E_URL_BYTES);
}

static void expect_request(const char *url, const char *ua, int keep,
                           const char *want) {
    st_http_target t = ST_HTTP_TARGET_INIT;
    st_buf out = ST_BUF_INIT;
    st_http_error e;
    st_buf_append_str(&out, "earlier|");
    EXPECT(st_http_target_parse(&t, url, strlen(url)) == ST_HTTP_OK, "%s", url);
    e = st_http_request(&out, &t, ua, keep);
    EXPECT(e == ST_HTTP_OK, "%s: %s", url, st_http_error_text(e));
    EXPECT(strncmp(st_buf_str(&out), "earlier|", 8) == 0 &&
               strcmp(st_buf_str(&out) + 8, want) == 0,
           "%s: request\n%s\nwant\n%s", url, st_buf_str(&out), want);
    st_buf_free(&out);
    st_http_target_free(&t);
}

static void test_requests(void) {
    st_http_target t = ST_HTTP_TARGET_INIT;
    st_buf out = ST_BUF_INIT;
    expect_request("https://gateway.api.sc/get/?user=u&pwd=p", "streamtelecom/0.1.0", 1,
                   "GET /get/?user=u&pwd=p HTTP/1.1\r\nHost: gateway.api.sc\r\n"
                   "User-Agent: streamtelecom/0.1.0\r\nAccept: */*\r\n"
                   "Connection: keep-alive\r\n\r\n");
    expect_request("http://127.0.0.1:8080", NULL, 0,
                   "GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nAccept: */*\r\n"
                   "Connection: close\r\n\r\n");
    expect_request("https://[::1]:80/x", NULL, 1,
                   "GET /x HTTP/1.1\r\nHost: [::1]:80\r\nAccept: */*\r\n"
                   "Connection: keep-alive\r\n\r\n");
    expect_request("http://h:80/x", "a\tb", 1,
                   "GET /x HTTP/1.1\r\nHost: h\r\nUser-Agent: a\tb\r\nAccept: */*\r\n"
                   "Connection: keep-alive\r\n\r\n");
    EXPECT(st_http_target_parse(&t, "http://h/", 9) == ST_HTTP_OK, "parse");
    st_buf_append_str(&out, "keep");
    EXPECT(st_http_request(&out, &t, "evil\r\nX-Injected: 1", 1) ==
               ST_HTTP_E_HEADER_VALUE, "CR LF in the user agent is refused");
    EXPECT(st_http_request(&out, &t, "evil\n", 1) == ST_HTTP_E_HEADER_VALUE,
           "LF in the user agent is refused");
    EXPECT(st_http_request(&out, &t, "\x7f", 1) == ST_HTTP_E_HEADER_VALUE,
           "DEL in the user agent is refused");
    EXPECT(strcmp(st_buf_str(&out), "keep") == 0,
           "a refused request leaves out as it was: [%s]", st_buf_str(&out));
    /* a hand-made target is checked too */
    strcpy(t.host, "h\r\nX: y");
    EXPECT(st_http_request(&out, &t, NULL, 1) == ST_HTTP_E_HEADER_VALUE,
           "CR LF in a hand-made host is refused");
    strcpy(t.host, "h");
    st_buf_truncate(&t.target, 0);
    st_buf_append_str(&t.target, "/a b");
    EXPECT(st_http_request(&out, &t, NULL, 1) == ST_HTTP_E_HEADER_VALUE,
           "a space in a hand-made target is refused");
    st_buf_free(&out);
    st_http_target_free(&t);
}

/* The framer gives exactly st_http_request_url's bytes and target, URL
 * after URL, whether its cache fits or not. */
static void test_framer(void) {
    static const struct {
        const char *url, *ua;
        int keep;
    } seq[] = {
        {"http://127.0.0.1:8080/get/?user=u&balance=1", "ua/1", 1},
        {"http://127.0.0.1:8080/get/?user=u&smsid=1", "ua/1", 1},  /* fits */
        {"http://127.0.0.1:8080", "ua/1", 1},                      /* empty */
        {"http://127.0.0.1:8080?x=1", "ua/1", 1},                  /* '?' */
        {"http://127.0.0.1:80801/get/", "ua/1", 1},                /* port */
        {"http://127.0.0.1:8080/get/", "ua/2", 1},                 /* agent */
        {"http://127.0.0.1:8080/get/", NULL, 1},
        {"http://127.0.0.1:8080/get/", NULL, 0},                   /* keep */
        {"http://127.0.0.1:8080/get/#frag", NULL, 0},              /* '#' */
        {"http://127.0.0.1:8080/get/?a b", NULL, 0},               /* bad */
        {"https://[::1]:8443/get/?x", "ua/1", 1},                  /* other */
        {"https://[::1]:8443/get/?y", "ua/1", 1},
    };
    st_http_framer f = ST_HTTP_FRAMER_INIT;
    size_t i;
    for (i = 0; i < sizeof seq / sizeof seq[0]; i++) {
        st_http_target t = ST_HTTP_TARGET_INIT;
        st_buf want = ST_BUF_INIT, got = ST_BUF_INIT;
        size_t n = strlen(seq[i].url);
        st_http_error ew, eg;
        st_buf_append_str(&got, "x");
        st_buf_append_str(&want, "x");
        ew = st_http_request_url(&want, &t, seq[i].url, n, seq[i].ua, seq[i].keep);
        eg = st_http_frame(&f, &got, seq[i].url, n, seq[i].ua, seq[i].keep);
        EXPECT(ew == eg, "%s: %d vs %d", seq[i].url, (int)eg, (int)ew);
        EXPECT(strcmp(st_buf_str(&want), st_buf_str(&got)) == 0,
               "%s: framed\n%s\nwant\n%s", seq[i].url, st_buf_str(&got),
               st_buf_str(&want));
        if (ew == ST_HTTP_OK)
            EXPECT(strcmp(t.host, st_http_framer_target(&f)->host) == 0 &&
                       t.port == st_http_framer_target(&f)->port &&
                       t.tls == st_http_framer_target(&f)->tls,
                   "%s: target", seq[i].url);
        st_buf_free(&want);
        st_buf_free(&got);
        st_http_target_free(&t);
    }
    st_http_framer_free(&f);
}

static void test_error_texts(void) {
    int e;
    for (e = 0; e <= ST_HTTP_ERROR_COUNT; e++)
        EXPECT(st_http_error_text((st_http_error)e)[0] != '\0', "text of %d", e);
}

int main(void) {
    test_content_length();
    test_chunked();
    test_close_delimited();
    test_no_body_statuses();
    test_interim();
    test_keep();
    test_bad_content_length();
    test_too_large();
    test_header_cap();
    test_interim_budget();
    test_chunk_line_cap();
    test_bad_lines();
    test_pipelined();
    test_urls();
    test_requests();
    test_framer();
    test_error_texts();
    printf("%d checks, %d failed\n", checks, failures);
    return failures ? 1 : 0;
}
