/* st_percent_encode / st_percent_encoded_len.
 *
 * Properties: the output holds only RFC 3986 unreserved bytes and %XX with
 * upper-case hex; unreserved input bytes are kept as they are and every
 * other byte is escaped; decoding the output (decoder below) gives back the
 * input exactly; st_percent_encoded_len equals the output length; appending
 * keeps what the buffer already held.
 */
#include "fuzz_common.h"

static int unreserved(unsigned char ch) {
    return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
           (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' || ch == '_' ||
           ch == '~';
}

static int hexval(unsigned char ch) {
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1; /* lower case is not what the encoder writes */
}

/* Decodes s[0..n) into out; returns the length, or (size_t)-1 when the text
 * is not strict percent-encoding of the kind the encoder writes. */
static size_t decode(const char *s, size_t n, unsigned char *out) {
    size_t i = 0, o = 0;
    while (i < n) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '%') {
            int hi, lo;
            if (n - i < 3)
                return (size_t)-1;
            hi = hexval((unsigned char)s[i + 1]);
            lo = hexval((unsigned char)s[i + 2]);
            if (hi < 0 || lo < 0)
                return (size_t)-1;
            ch = (unsigned char)(hi * 16 + lo);
            /* an escaped unreserved byte would be a needless escape */
            if (unreserved(ch))
                return (size_t)-1;
            out[o++] = ch;
            i += 3;
        } else if (unreserved(ch)) {
            out[o++] = ch;
            i++;
        } else {
            return (size_t)-1;
        }
    }
    return o;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *in = fuzz_dup(data, size);
    st_buf out = ST_BUF_INIT;
    unsigned char *back;
    size_t prefix = size ? data[0] % 8 : 0, len, dec;

    /* Something already in the buffer must survive the append. */
    st_buf_append(&out, "pre=xyz", prefix);
    CHECK(st_percent_encode(&out, in, size) == 0);
    CHECK(!out.failed);
    CHECK(out.len >= prefix);
    CHECK(memcmp(st_buf_str(&out), "pre=xyz", prefix) == 0);
    len = out.len - prefix;
    CHECK(st_percent_encoded_len(in, size) == len);
    CHECK(len >= size && len <= 3 * size);
    if (size == 0)
        CHECK(len == 0);
    else
        CHECK(out.data[out.len] == '\0' && strlen(out.data) == out.len);

    back = malloc(len + 1);
    if (!back)
        abort();
    dec = decode(st_buf_str(&out) + prefix, len, back);
    CHECK(dec != (size_t)-1);
    CHECK(dec == size);
    CHECK(size == 0 || memcmp(back, data, size) == 0);

    free(back);
    st_buf_free(&out);
    free(in);
    return 0;
}
