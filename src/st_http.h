/* HTTP/1.1 framing for the socket drivers (nginx cosockets, HAProxy): the
 * bytes of a GET request for a URL, and an incremental parser for its
 * response. The drivers only connect, send and receive; every decision
 * about the bytes (where a response ends, whether the connection may be
 * reused, how much to accept) is made here, once, in plain C.
 *
 * No Lua, no libcurl, no I/O: only st_buf and the C library. */
#ifndef ST_HTTP_H
#define ST_HTTP_H

#include <stddef.h>

#include "st_buf.h"

/* The status line, headers and trailers of one response (1xx interim
 * responses included) may take at most this many bytes together. */
#define ST_HTTP_HEADER_MAX 16384
/* One chunk-size line (size and extensions) may take at most this many. */
#define ST_HTTP_CHUNK_LINE_MAX 4096
/* The longest host name a URL may carry (a DNS name has at most 253). */
#define ST_HTTP_HOST_MAX 255

/* Why something was refused. ST_HTTP_OK (0) is success. */
typedef enum st_http_error {
    ST_HTTP_OK = 0,
    /* URLs and requests */
    ST_HTTP_E_URL_SCHEME,   /* not http:// or https:// */
    ST_HTTP_E_URL_BYTES,    /* a space, control or non-ASCII byte */
    ST_HTTP_E_URL_USERINFO, /* user:password@ in the URL */
    ST_HTTP_E_URL_HOST,     /* missing, too long or malformed host */
    ST_HTTP_E_URL_PORT,     /* empty, non-numeric or out of 1..65535 */
    ST_HTTP_E_HEADER_VALUE, /* a request header value with CR, LF, ... */
    /* responses */
    ST_HTTP_E_STATUS_LINE,       /* not "HTTP/1.x NNN reason" */
    ST_HTTP_E_UPGRADE,           /* 101 Switching Protocols: never asked */
    ST_HTTP_E_HEADER,            /* a malformed header or trailer line */
    ST_HTTP_E_HEADERS_TOO_LONG,  /* more than ST_HTTP_HEADER_MAX bytes */
    ST_HTTP_E_CONTENT_LENGTH,    /* not digits, or two that differ */
    ST_HTTP_E_TRANSFER_ENCODING, /* anything but one "chunked" */
    ST_HTTP_E_CHUNK,             /* a malformed chunk size or chunk end */
    ST_HTTP_E_TOO_LARGE,         /* the body is longer than max_body */
    ST_HTTP_E_TRUNCATED,         /* the connection closed mid-response */
    ST_HTTP_E_NO_RESPONSE,       /* ... before the first byte of one */
    ST_HTTP_E_NOMEM,             /* out of memory */
    ST_HTTP_ERROR_COUNT
} st_http_error;

/* A one-line English sentence for an error ("malformed status line"). */
const char *st_http_error_text(st_http_error e);

/* ---- URLs and request bytes ------------------------------------------- */

typedef struct st_http_target {
    int tls;  /* https */
    int ipv6; /* the host was an IPv6 literal in brackets */
    char host[ST_HTTP_HOST_MAX + 1]; /* NUL-terminated, brackets removed */
    unsigned port;                   /* 80 or 443 unless the URL said */
    st_buf target; /* path and query, never empty ("/" at least) */
} st_http_target;

#define ST_HTTP_TARGET_INIT {0, 0, {0}, 0, ST_BUF_INIT}

/* Splits an http:// or https:// URL (url[0..n), any bytes) into t, which
 * must be initialised (ST_HTTP_TARGET_INIT) or freed. A #fragment is
 * dropped (it is never sent). On failure t is left empty; free it either
 * way. */
st_http_error st_http_target_parse(st_http_target *t, const char *url,
                                   size_t n);
void st_http_target_free(st_http_target *t);

/* Appends the bytes of a GET request for t to out:
 *   GET <target> HTTP/1.1, Host (":port" only when not the default),
 *   User-Agent (when user_agent is not NULL), Accept: * / *,
 *   Connection: keep-alive or close, then the empty line.
 * A header value holding CR, LF or another control byte (a tab aside)
 * is refused and out is left as it was. */
st_http_error st_http_request(st_buf *out, const st_http_target *t,
                              const char *user_agent, int keep_alive);

/* Both at once, without copying the target: t gets url's scheme, host and
 * port (its target stays empty), out the request bytes for url. */
st_http_error st_http_request_url(st_buf *out, st_http_target *t,
                                  const char *url, size_t n,
                                  const char *user_agent, int keep_alive);

/* The request bytes of URLs that share a scheme and authority (one
 * gateway's), made fast: the first is framed as st_http_request_url does;
 * the next ones reuse its fixed part. The same bytes either way. */
typedef struct st_http_framer {
    st_http_target target; /* the last URL's host, port and scheme */
    st_buf base;  /* its "scheme://authority" */
    st_buf tail;  /* its request's bytes after the target */
    st_buf agent; /* the user agent they were made for */
    int has_agent, keep_alive, valid;
} st_http_framer;

#define ST_HTTP_FRAMER_INIT                                                  \
    {ST_HTTP_TARGET_INIT, ST_BUF_INIT, ST_BUF_INIT, ST_BUF_INIT, 0, 0, 0}

/* Appends url's request to out; then st_http_framer_target(f) is url's
 * host, port and scheme. Errors as st_http_request_url's. */
st_http_error st_http_frame(st_http_framer *f, st_buf *out, const char *url,
                            size_t n, const char *agent, int keep_alive);
#define st_http_framer_target(f) ((const st_http_target *)&(f)->target)
void st_http_framer_free(st_http_framer *f);

/* ---- the response parser ---------------------------------------------- */

typedef enum st_http_progress {
    ST_HTTP_MORE,      /* every byte was used; feed more (or finish at EOF) */
    ST_HTTP_DONE,      /* a whole response; bytes after it are not used */
    ST_HTTP_TOO_LARGE, /* the body would pass max_body (error TOO_LARGE) */
    ST_HTTP_FAILED     /* error says why */
} st_http_progress;

typedef struct st_http_response {
    /* The answer, once st_http_feed or st_http_finish said DONE. */
    int status; /* the final status code (1xx interim ones are skipped) */
    int keep;   /* 1: the connection may carry the next request */
    st_buf body; /* at most max_body bytes, chunk framing removed */
    st_http_error error; /* ST_HTTP_OK unless it failed */

    /* The parser's own state; read none of it. */
    size_t max_body;
    int state;
    st_buf line;          /* a line's first bytes, waiting for the rest */
    const char *lp;       /* the whole line just read (no CR LF) */
    size_t ln;
    size_t header_bytes;  /* status lines, headers and trailers so far */
    size_t received;      /* every byte used so far */
    size_t remaining;     /* bytes still due of a Content-Length or chunk */
    size_t content_length;
    int minor;            /* HTTP/1.0: 0, HTTP/1.1: 1 */
    int has_length, chunked, conn_close, conn_keep_alive;
} st_http_response;

/* A parser for one response whose body may have at most max_body bytes.
 * Allocates nothing. */
void st_http_response_init(st_http_response *r, size_t max_body);
/* Parses data[0..n) as the next bytes from the server. *used is how many
 * of them belong to this response: all of them while MORE; on DONE the
 * rest (a pipelined response) is the caller's; on a failure, the bytes up
 * to and including the one that showed it. Once DONE or failed, later
 * calls use nothing and answer the same. */
st_http_progress st_http_feed(st_http_response *r, const char *data,
                              size_t n, size_t *used);
/* The server closed the connection: DONE for a body that runs to the
 * close, else TRUNCATED (NO_RESPONSE if not one byte came). */
st_http_progress st_http_finish(st_http_response *r);
/* 1 once a whole response was read (feed or finish said DONE). */
int st_http_response_done(const st_http_response *r);
/* Ready for the next response on the same terms, keeping the memory. */
void st_http_response_reset(st_http_response *r);
void st_http_response_free(st_http_response *r);

#endif
