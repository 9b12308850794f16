/* st_plan_send, st_check_send_fits and st_build_send_url: splitting a
 * recipient list into requests that each stay under a URL bound.
 *
 * The input chooses max_url (200..4000), the credentials (encoded on each
 * build, or once with st_build_prefix as a client does), sender, text,
 * callback_url and name_deliver (each present or not, of any length), the
 * base URL, and a recipient list of 10..15-digit numbers: up to 250
 * generated ones plus any built from the input's last bytes.
 *
 * Properties:
 *  - on success the chunks cover every recipient exactly once, in order,
 *    with no empty chunk (none at all for an empty list);
 *  - every chunk's URL is at most max_url bytes, and the split is greedy:
 *    a chunk followed by another would not fit with one more recipient;
 *  - each URL (first, middle, last) is the base followed by user, pwd, [sadr], dadr, text,
 *    [callback_url], [name_deliver] whose values percent-decode to exactly
 *    what was given (dadr: the chunk's numbers joined by commas), and the
 *    query holds only unreserved bytes, %XX, '&' and '=';
 *  - on failure (ST_E_INVALID, chunks NULL, count 0) some single recipient
 *    alone does not fit in max_url.
 */
#include "fuzz_common.h"

typedef struct fuzz_send {
    st_credentials c;
    st_send_params p;
    const st_recipients *r;
} fuzz_send;

static size_t url_len(const fuzz_send *fs, size_t first, size_t count,
                      st_buf *keep) {
    st_buf url = ST_BUF_INIT;
    size_t len;
    CHECK(st_build_send_url(&url, &fs->c, &fs->p, fs->r, first, count) == 0);
    len = url.len;
    CHECK(strlen(st_buf_str(&url)) == len);
    if (keep)
        *keep = url;
    else
        st_buf_free(&url);
    return len;
}

static int hexval(char ch) {
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* Percent-decodes s[0..n) into out; -1 if malformed. */
static int decode(const char *s, size_t n, st_buf *out) {
    size_t i;
    for (i = 0; i < n; i++) {
        char ch = s[i];
        if (ch == '%') {
            int hi, lo;
            if (n - i < 3)
                return -1;
            hi = hexval(s[i + 1]);
            lo = hexval(s[i + 2]);
            if (hi < 0 || lo < 0)
                return -1;
            st_buf_append_char(out, (char)(hi * 16 + lo));
            i += 2;
        } else {
            st_buf_append_char(out, ch);
        }
    }
    return 0;
}

/* Checks the next name=value of the query at *q against a value. */
static void expect_param(const char **q, const char *end, const char *name,
                         const char *value, size_t vlen) {
    const char *amp, *eq;
    size_t nlen = strlen(name);
    st_buf dec = ST_BUF_INIT;
    CHECK(*q < end);
    amp = memchr(*q, '&', (size_t)(end - *q));
    if (!amp)
        amp = end;
    eq = memchr(*q, '=', (size_t)(amp - *q));
    CHECK(eq != NULL);
    CHECK((size_t)(eq - *q) == nlen && memcmp(*q, name, nlen) == 0);
    CHECK(decode(eq + 1, (size_t)(amp - eq - 1), &dec) == 0);
    CHECK(dec.len == vlen);
    CHECK(vlen == 0 || memcmp(dec.data, value, vlen) == 0);
    st_buf_free(&dec);
    *q = amp < end ? amp + 1 : end;
}

static void check_url(const fuzz_send *fs, const st_buf *url, size_t first,
                      size_t count) {
    const char *u = st_buf_str(url), *q, *end = u + url->len;
    const char *base = fs->c.base_url;
    size_t blen = strlen(base), i;
    st_buf dadr = ST_BUF_INIT;

    CHECK(url->len >= blen && memcmp(u, base, blen) == 0);
    q = u + blen;
    if (!strchr(base, '?'))
        CHECK(*q++ == '?');
    else if (blen > 0 && base[blen - 1] != '?' && base[blen - 1] != '&')
        CHECK(*q++ == '&');
    for (i = 0; q + i < end; i++) {
        unsigned char ch = (unsigned char)q[i];
        CHECK((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
              (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' ||
              ch == '_' || ch == '~' || ch == '%' || ch == '&' || ch == '=');
    }
    for (i = first; i < first + count; i++) {
        if (i > first)
            st_buf_append_char(&dadr, ',');
        st_buf_append_str(&dadr, st_recipient(fs->r, i)->digits);
    }
    expect_param(&q, end, "user", fs->c.user, strlen(fs->c.user));
    expect_param(&q, end, "pwd", fs->c.password, strlen(fs->c.password));
    if (fs->p.sender)
        expect_param(&q, end, "sadr", fs->p.sender, strlen(fs->p.sender));
    expect_param(&q, end, "dadr", st_buf_str(&dadr), dadr.len);
    expect_param(&q, end, "text", fs->p.text, fs->p.text_len);
    if (fs->p.callback_url)
        expect_param(&q, end, "callback_url", fs->p.callback_url,
                     strlen(fs->p.callback_url));
    if (fs->p.name)
        expect_param(&q, end, "name_deliver", fs->p.name,
                     strlen(fs->p.name));
    CHECK(q == end);
    st_buf_free(&dadr);
}

/* A field as a C string (up to its first NUL). */
static char *field_str(fuzz_reader *rd) {
    const uint8_t *f;
    size_t n;
    fuzz_field(rd, &f, &n);
    return fuzz_strdup(f, n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_reader rd = {data, size};
    unsigned flags, nrec, i;
    unsigned long seed;
    size_t max_url, nchunks = 0, next = 0;
    char *user, *pwd, *sender, *text, *cb, *name, *base_tail, *base;
    const uint8_t *tf;
    size_t tn;
    st_recipients r = {NULL, 0, 0};
    st_buf prefix = ST_BUF_INIT;
    st_chunk *chunks = (st_chunk *)&r; /* must be replaced */
    st_error err;
    fuzz_send fs;
    int rc;
    static const char *const bases[] = {
        "https://gateway.api.sc/get/", "http://127.0.0.1:8080/get/?",
        "http://h/x?a=1", "http://h/x?a=1&", "",
    };

    max_url = 200 + fuzz_u16(&rd) % 3801;
    flags = fuzz_byte(&rd);
    nrec = fuzz_u16(&rd) % 251;
    seed = fuzz_u16(&rd) * 2654435761ul + 1;
    user = field_str(&rd);
    pwd = field_str(&rd);
    sender = field_str(&rd);
    fuzz_field(&rd, &tf, &tn);
    text = fuzz_dup(tf, tn); /* may hold NULs: passed with its length */
    cb = field_str(&rd);
    name = field_str(&rd);
    base_tail = field_str(&rd);
    base = malloc(strlen(bases[flags % 5]) + strlen(base_tail) + 1);
    if (!base)
        abort();
    strcpy(base, bases[flags % 5]);
    strcat(base, base_tail);

    /* Recipients: lengths and digits from a small PRNG seeded by the input,
     * then any remaining bytes as digits of extra numbers. */
    for (i = 0; i < nrec; i++) {
        st_phone ph;
        size_t len, k;
        seed = seed * 6364136223846793005ul + 1442695040888963407ul;
        len = ST_PHONE_MIN + (seed >> 33) % (ST_PHONE_MAX - ST_PHONE_MIN + 1);
        for (k = 0; k < len; k++) {
            seed = seed * 6364136223846793005ul + 1442695040888963407ul;
            ph.digits[k] = (char)('0' + (seed >> 40) % 10);
        }
        ph.digits[len] = '\0';
        CHECK(st_recipients_add(&r, ph.digits, len, &err) == 0);
    }
    while (rd.n > 0) {
        char digits[ST_PHONE_MAX + 1];
        size_t len = ST_PHONE_MIN + fuzz_byte(&rd) % 6, k;
        for (k = 0; k < len; k++)
            digits[k] = (char)('0' + fuzz_byte(&rd) % 10);
        digits[len] = '\0';
        CHECK(st_recipients_add(&r, digits, len, &err) == 0);
    }

    fs.c.base_url = base;
    fs.c.user = user;
    fs.c.password = pwd;
    /* flag 64: the credentials part encoded once (st_build_prefix), as a
     * client does; otherwise encoded on every build */
    fs.c.prefix = NULL;
    fs.c.prefix_len = 0;
    if (flags & 64) {
        CHECK(st_build_prefix(&prefix, &fs.c) == 0);
        CHECK(strlen(st_buf_str(&prefix)) == prefix.len);
        fs.c.prefix = st_buf_str(&prefix);
        fs.c.prefix_len = prefix.len;
    }
    fs.p.sender = (flags & 8) ? sender : NULL;
    fs.p.text = text;
    fs.p.text_len = tn;
    fs.p.callback_url = (flags & 16) ? cb : NULL;
    fs.p.name = (flags & 32) ? name : NULL;
    fs.r = &r;

    memset(&err, 'Y', sizeof err);
    rc = st_plan_send(&fs.c, &fs.p, &r, max_url, &chunks, &nchunks, &err);
    /* The check that only counts (and skips counting a short text) agrees
     * with the plan that splits. */
    {
        st_error check_err;
        CHECK((st_check_send_fits(&fs.c, &fs.p, &r, max_url, &check_err) ==
               0) == (rc == 0));
        /* what the bound lets through whole, the plan sends whole */
        if (st_send_fits_whole(&fs.c, &fs.p, r.count, max_url))
            CHECK(rc == 0 && nchunks == 1 && chunks[0].count == r.count);
    }
    if (rc == 0) {
        CHECK((nchunks == 0) == (r.count == 0));
        CHECK(nchunks == 0 || chunks != NULL);
        for (i = 0; i < nchunks; i++) {
            st_buf url;
            size_t len;
            /* the full decode and the one-more URL for the first, a middle
             * and the last chunk; for the others the one-more length is
             * this URL plus "%2C" and the next number (building every one
             * would make a long split slow to check) */
            int full = i == 0 || i == nchunks / 2 || i + 1 == nchunks;
            CHECK(chunks[i].first == next);
            CHECK(chunks[i].count > 0);
            CHECK(chunks[i].count <= r.count - next);
            len = url_len(&fs, chunks[i].first, chunks[i].count, &url);
            CHECK(len <= max_url);
            if (full)
                check_url(&fs, &url, chunks[i].first, chunks[i].count);
            st_buf_free(&url);
            next += chunks[i].count;
            if (i + 1 < nchunks) {
                size_t more = len + 3 + strlen(st_recipient(&r, next)->digits);
                if (full)
                    CHECK(url_len(&fs, chunks[i].first, chunks[i].count + 1,
                                  NULL) == more);
                CHECK(more > max_url);
            }
        }
        CHECK(next == r.count);
    } else {
        size_t longest = 0;
        CHECK(rc == -1);
        check_error(&err);
        CHECK(err.code == ST_E_INVALID);
        CHECK(chunks == NULL && nchunks == 0);
        /* some recipient alone does not fit: then the longest does not */
        CHECK(r.count > 0);
        for (i = 1; i < r.count; i++)
            if (strlen(st_recipient(&r, i)->digits) >
                strlen(st_recipient(&r, longest)->digits))
                longest = i;
        CHECK(url_len(&fs, longest, 1, NULL) > max_url);
    }
    free(chunks);
    st_buf_free(&prefix);
    st_recipients_free(&r);
    free(base);
    free(base_tail);
    free(name);
    free(cb);
    free(text);
    free(sender);
    free(pwd);
    free(user);
    return 0;
}
