/* Request URLs for the three calls, and the split of a long recipient list
 * into requests that each stay under the URL bound. */
#include <stdlib.h>
#include <string.h>

#include "st_request.h"
#include "st_text.h"

/* "&name=" and the value encoded; head is the literal "&name=". */
#define ADD_PARAM(url, head, value, len)                                     \
    (st_buf_append((url), head, sizeof head - 1),                            \
     st_percent_encode((url), (value), (len)))

/* The length ADD_PARAM adds, without building anything. */
#define PARAM_LEN(head, value, len)                                          \
    (sizeof head - 1 + st_percent_encoded_len((value), (len)))

int st_build_prefix(st_buf *url, const st_credentials *c) {
    const char *base = c->base_url;
    size_t blen = strlen(base);
    st_buf_append(url, base, blen);
    if (!strchr(base, '?'))
        st_buf_append_char(url, '?');
    else if (blen > 0 && base[blen - 1] != '?' && base[blen - 1] != '&')
        st_buf_append_char(url, '&');
    st_buf_append_str(url, "user=");
    st_percent_encode(url, c->user, strlen(c->user));
    ADD_PARAM(url, "&pwd=", c->password, strlen(c->password));
    return url->failed ? -1 : 0;
}

/* base?user=..&pwd=.. — the part every call starts with. */
static void add_credentials(st_buf *url, const st_credentials *c) {
    if (c->prefix)
        st_buf_append(url, c->prefix, c->prefix_len);
    else
        st_build_prefix(url, c);
}

int st_build_balance_url(st_buf *url, const st_credentials *c) {
    add_credentials(url, c);
    st_buf_append_str(url, "&balance=1");
    return url->failed ? -1 : 0;
}

int st_build_status_url(st_buf *url, const st_credentials *c, const char *id) {
    static const char head[] = "&smsid=";
    add_credentials(url, c);
    st_buf_append(url, head, sizeof head - 1);
    st_buf_append_str(url, id); /* digits (st_id_check): nothing to encode */
    return url->failed ? -1 : 0;
}

/* Everything of a send URL but the dadr value. */
static void add_send_head(st_buf *url, const st_credentials *c,
                          const st_send_params *p) {
    add_credentials(url, c);
    if (p->sender)
        ADD_PARAM(url, "&sadr=", p->sender, strlen(p->sender));
    st_buf_append_str(url, "&dadr=");
}

static void add_send_tail(st_buf *url, const st_send_params *p) {
    ADD_PARAM(url, "&text=", p->text, p->text_len);
    if (p->callback_url)
        ADD_PARAM(url, "&callback_url=", p->callback_url,
                  strlen(p->callback_url));
    if (p->name)
        ADD_PARAM(url, "&name_deliver=", p->name, strlen(p->name));
}

/* Recipients are joined by an encoded comma, as in any query value. */
#define ST_ENCODED_COMMA "%2C"

int st_build_send_url(st_buf *url, const st_credentials *c,
                      const st_send_params *p, const st_recipients *r,
                      size_t first, size_t count) {
    size_t i;
    add_send_head(url, c, p);
    for (i = first; i < first + count; i++) {
        if (i > first)
            st_buf_append_str(url, ST_ENCODED_COMMA);
        st_buf_append_str(url, st_recipient(r, i)->digits);
    }
    add_send_tail(url, p);
    return url->failed ? -1 : 0;
}

/* Length of a send URL without any recipient, counted, not built. */
static int send_overhead(const st_credentials *c, const st_send_params *p,
                         size_t *len) {
    size_t n;
    if (c->prefix) {
        n = c->prefix_len;
    } else {
        st_buf prefix = ST_BUF_INIT;
        int failed = st_build_prefix(&prefix, c);
        n = prefix.len;
        st_buf_free(&prefix);
        if (failed)
            return -1;
    }
    if (p->sender)
        n += PARAM_LEN("&sadr=", p->sender, strlen(p->sender));
    n += sizeof "&dadr=" - 1 + PARAM_LEN("&text=", p->text, p->text_len);
    if (p->callback_url)
        n += PARAM_LEN("&callback_url=", p->callback_url,
                       strlen(p->callback_url));
    if (p->name)
        n += PARAM_LEN("&name_deliver=", p->name, strlen(p->name));
    *len = n;
    return 0;
}

static int push_chunk(st_chunk **chunks, size_t *n, size_t *cap,
                      size_t first, size_t count) {
    if (*n == *cap) {
        size_t ncap = *cap ? *cap * 2 : 4;
        st_chunk *p = realloc(*chunks, ncap * sizeof *p);
        if (!p)
            return -1;
        *chunks = p;
        *cap = ncap;
    }
    (*chunks)[*n].first = first;
    (*chunks)[(*n)++].count = count;
    return 0;
}

/* More than send_overhead can be, counted without encoding anything: a
 * byte never takes more than three ("%XX"). */
static size_t overhead_bound(const st_credentials *c,
                             const st_send_params *p) {
    size_t values = p->text_len;
    size_t names = sizeof "&sadr=&dadr=&text=&callback_url=&name_deliver=";
    if (p->sender)
        values += strlen(p->sender);
    if (p->callback_url)
        values += strlen(p->callback_url);
    if (p->name)
        values += strlen(p->name);
    if (values > (size_t)-1 / 4)
        return (size_t)-1;
    return (c->prefix ? c->prefix_len
                      : 3 * (strlen(c->base_url) + strlen(c->user) +
                             strlen(c->password)) + sizeof "?user=&pwd=") +
           names + 3 * values;
}

/* 1 when count recipients fit one request whatever the values encode to:
 * checked against the bound, so nothing is encoded to count it. */
static int fits_at_bound(const st_credentials *c, const st_send_params *p,
                         size_t count, size_t max_url) {
    size_t bound = overhead_bound(c, p);
    size_t per_recipient = ST_PHONE_MAX + sizeof ST_ENCODED_COMMA - 1;
    return bound <= max_url && count <= (max_url - bound) / per_recipient;
}

/* The split of r into requests of at most max_url bytes: the chunks into
 * *chunks when chunks is not NULL, else only counted (a check that needs
 * no memory). */
static int plan(const st_credentials *c, const st_send_params *p,
                const st_recipients *r, size_t max_url, st_chunk **chunks,
                size_t *nchunks, st_error *err) {
    size_t overhead, i, cap = 0, used = 0, first = 0;
    if (r->count > 0 && fits_at_bound(c, p, r->count, max_url)) { /* most */
        if (!chunks)
            return ++*nchunks, 0;
        return push_chunk(chunks, nchunks, &cap, 0, r->count) == 0
                   ? 0
                   : st_nomem(err);
    }
    if (send_overhead(c, p, &overhead) != 0)
        return st_nomem(err);
    for (i = 0; i < r->count; i++) {
        size_t len = strlen(st_recipient(r, i)->digits);
        size_t sep = i > first ? strlen(ST_ENCODED_COMMA) : 0;
        if (overhead + len > max_url)
            return st_fail(err, ST_E_INVALID,
                           "invalid text: the request would be longer than "
                           "%zu bytes (shorten the text or the options)",
                           max_url);
        if (overhead + used + sep + len > max_url) {
            if (chunks && push_chunk(chunks, nchunks, &cap, first,
                                     i - first) != 0)
                return st_nomem(err);
            if (!chunks)
                ++*nchunks;
            first = i, used = 0, sep = 0;
        }
        used += sep + len;
    }
    if (r->count > first) {
        if (chunks && push_chunk(chunks, nchunks, &cap, first,
                                 r->count - first) != 0)
            return st_nomem(err);
        if (!chunks)
            ++*nchunks;
    }
    return 0;
}

int st_plan_send(const st_credentials *c, const st_send_params *p,
                 const st_recipients *r, size_t max_url, st_chunk **chunks,
                 size_t *nchunks, st_error *err) {
    *chunks = NULL;
    *nchunks = 0;
    if (plan(c, p, r, max_url, chunks, nchunks, err) == 0)
        return 0;
    free(*chunks);
    *chunks = NULL;
    *nchunks = 0;
    return -1;
}

int st_send_fits_whole(const st_credentials *c, const st_send_params *p,
                       size_t count, size_t max_url) {
    return count > 0 && fits_at_bound(c, p, count, max_url);
}

int st_check_send_fits(const st_credentials *c, const st_send_params *p,
                       const st_recipients *r, size_t max_url,
                       st_error *err) {
    size_t n = 0;
    /* A short text fits whatever it holds: no need to count its bytes
     * (a bulk call checks every item before it starts). */
    if (fits_at_bound(c, p, 1, max_url))
        return 0;
    return plan(c, p, r, max_url, NULL, &n, err);
}
