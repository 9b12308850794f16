/* The answer parsers of every call, on arbitrary gateway bodies.
 *
 * Properties:
 *  - send: on success every id is NUL-terminated, 1..ST_ID_MAX decimal
 *    digits, and the ids are the digits of the answer in order; the count
 *    st_send_answer_ids(body) == N > 0 implies st_parse_send_answer(body, N)
 *    succeeds and any other expected count fails (and 0 never succeeds).
 *  - status: on success raw is [a-z_]+ (shorter than its buffer, a prefix of
 *    the trimmed answer), updated is NUL-terminated, state/final agree with
 *    the word; and the whole answer, without a leading UTF-8 BOM and
 *    surrounding white space, is a single word (+ time): [a-z_]+, then
 *    optionally spaces/tabs and a time of only 0-9 - : . / space + T Z,
 *    with no NUL, CR or LF anywhere (a state is never read off the first
 *    line of a longer answer, nor off the bytes before a NUL).
 *  - balance: on success the value is finite, currency and raw are
 *    NUL-terminated, currency holds no white space; and the whole trimmed
 *    answer is one line of valid UTF-8 with no control bytes.
 *  - a refusal sentence (st_match_refusal of the trimmed body) makes every
 *    parser fail with exactly that code.
 *  - on failure the message is NUL-terminated, shorter than ST_ERR_MAX, has
 *    no control bytes, and is valid UTF-8 when the body was.
 */
#include <math.h>

#include "fuzz_common.h"

static int input_utf8;

static void check_failure(const st_error *err) {
    check_error(err);
    if (input_utf8)
        CHECK(st_utf8_valid(err->message, strlen(err->message)));
}

static int is_digit(char ch) {
    return ch >= '0' && ch <= '9';
}

static void check_send(const char *body, size_t n, size_t expected,
                       st_code refusal) {
    char(*ids)[ST_ID_MAX + 1];
    st_error err;
    size_t i, j, want = st_send_answer_ids(body, n);
    int rc;
    /* Poison the ids so an unterminated copy shows. */
    ids = malloc((expected ? expected : 1) * sizeof *ids);
    if (!ids)
        abort();
    memset(ids, 'X', (expected ? expected : 1) * sizeof *ids);
    memset(&err, 'Y', sizeof err);
    rc = st_parse_send_answer(body, n, expected, expected ? ids : NULL, &err);
    if (rc == 0) {
        const char *s = body;
        size_t len = n, k = 0;
        CHECK(refusal == ST_OK);
        CHECK(expected > 0);
        CHECK(want == expected);
        st_trim(&s, &len);
        for (i = 0; i < expected; i++) {
            size_t idlen = strnlen(ids[i], sizeof ids[i]);
            CHECK(idlen >= 1 && idlen <= ST_ID_MAX);
            for (j = 0; j < idlen; j++) {
                CHECK(is_digit(ids[i][j]));
                /* the next digit of the answer */
                while (k < len && !is_digit(s[k]))
                    k++;
                CHECK(k < len && s[k] == ids[i][j]);
                k++;
            }
            /* an id ends where the answer's run of digits ends */
            CHECK(k == len || !is_digit(s[k]));
        }
        while (k < len)
            CHECK(!is_digit(s[k++]));
    } else {
        CHECK(rc == -1);
        check_failure(&err);
        CHECK(!(want > 0 && want == expected));
        if (refusal != ST_OK)
            CHECK(err.code == refusal);
        else
            CHECK(err.code == ST_E_GATEWAY);
    }
    free(ids);
}

/* The answer without a leading UTF-8 BOM and surrounding white space,
 * written here from the property's words rather than taken from st_trim. */
static void ref_trim(const char **s, size_t *n) {
    const char *p = *s;
    size_t len = *n;
    if (len >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0)
        p += 3, len -= 3;
    while (len > 0 && strchr(" \t\r\n\v\f", p[0]) && p[0] != '\0')
        p++, len--;
    while (len > 0 && strchr(" \t\r\n\v\f", p[len - 1]) && p[len - 1] != '\0')
        len--;
    *s = p;
    *n = len;
}

/* 1 when the trimmed answer is one status word, optionally followed by
 * spaces/tabs and a time, and holds no NUL, CR or LF. */
static int single_status_answer(const char *body, size_t n) {
    const char *s = body;
    size_t len = n, i = 0, sep;
    ref_trim(&s, &len);
    if (memchr(s, '\0', len) || memchr(s, '\r', len) || memchr(s, '\n', len))
        return 0;
    while (i < len && ((s[i] >= 'a' && s[i] <= 'z') || s[i] == '_'))
        i++;
    if (i == 0)
        return 0;
    sep = i;
    while (i < len && (s[i] == ' ' || s[i] == '\t'))
        i++;
    if (i < len && i == sep)
        return 0; /* the word runs into something else */
    for (; i < len; i++)
        if (!is_digit(s[i]) && !strchr("-:./ +TZ", s[i]))
            return 0;
    return 1;
}

/* 1 when the trimmed answer is one line of valid UTF-8 without control
 * bytes (none below 0x20, no DEL). */
static int single_balance_answer(const char *body, size_t n) {
    const char *s = body;
    size_t len = n, i;
    ref_trim(&s, &len);
    for (i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if ((ch < 0x20 && ch != '\t') || ch == 0x7F) /* a tab may part */
            return 0;                               /* number and currency */
    }
    return ref_utf8_valid((const unsigned char *)s, len);
}

static void check_status(const char *body, size_t n, st_code refusal) {
    st_status st;
    st_error err;
    int rc;
    memset(&st, 'X', sizeof st);
    memset(&err, 'Y', sizeof err);
    rc = st_parse_status_answer(body, n, &st, &err);
    if (rc == 0) {
        const char *s = body;
        size_t len = n, rawlen = strnlen(st.raw, sizeof st.raw), i;
        CHECK(refusal == ST_OK);
        CHECK(single_status_answer(body, n));
        CHECK(rawlen >= 1 && rawlen < sizeof st.raw);
        for (i = 0; i < rawlen; i++)
            CHECK((st.raw[i] >= 'a' && st.raw[i] <= 'z') || st.raw[i] == '_');
        st_trim(&s, &len);
        CHECK(len >= rawlen && memcmp(s, st.raw, rawlen) == 0);
        CHECK(strnlen(st.updated, sizeof st.updated) < sizeof st.updated);
        CHECK(st.state >= ST_STATE_DELIVERED && st.state <= ST_STATE_UNKNOWN);
        CHECK(st_state_name(st.state) != NULL);
        if (strcmp(st.raw, "deliver") == 0)
            CHECK(st.state == ST_STATE_DELIVERED && st.final);
        else if (strcmp(st.raw, "not_deliver") == 0)
            CHECK(st.state == ST_STATE_UNDELIVERED && st.final);
        else if (strcmp(st.raw, "expired") == 0)
            CHECK(st.state == ST_STATE_EXPIRED && st.final);
        else if (strcmp(st.raw, "read") == 0)
            CHECK(st.state == ST_STATE_READ && st.final);
        else if (strcmp(st.raw, "partly_deliver") == 0)
            CHECK(st.state == ST_STATE_PARTLY_DELIVERED && !st.final);
        else if (strcmp(st.raw, "send") == 0)
            CHECK(st.state == ST_STATE_SENT && !st.final);
        else
            CHECK(st.state == ST_STATE_UNKNOWN && !st.final);
    } else {
        CHECK(rc == -1);
        check_failure(&err);
        CHECK(err.code == (refusal != ST_OK ? refusal : ST_E_GATEWAY));
    }
}

static void check_balance(const char *body, size_t n, st_code refusal) {
    st_balance b;
    st_error err;
    int rc;
    memset(&b, 'X', sizeof b);
    memset(&err, 'Y', sizeof err);
    rc = st_parse_balance_answer(body, n, &b, &err);
    if (rc == 0) {
        size_t clen = strnlen(b.currency, sizeof b.currency), i;
        CHECK(refusal == ST_OK);
        CHECK(single_balance_answer(body, n));
        CHECK(isfinite(b.balance));
        CHECK(clen < sizeof b.currency);
        CHECK(strnlen(b.raw, sizeof b.raw) < sizeof b.raw);
        for (i = 0; i < clen; i++) {
            char ch = b.currency[i];
            CHECK(ch != ' ' && ch != '\t' && ch != '\n' && ch != '\r' &&
                  ch != '\v' && ch != '\f');
        }
    } else {
        CHECK(rc == -1);
        check_failure(&err);
        CHECK(err.code == (refusal != ST_OK ? refusal : ST_E_GATEWAY));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *body = fuzz_dup(data, size);
    const char *s = body;
    size_t len = size, want;
    st_code refusal;

    input_utf8 = st_utf8_valid(body, size);
    st_trim(&s, &len);
    refusal = st_match_refusal(s, len);
    CHECK(refusal >= ST_OK && refusal < ST_CODE_COUNT);

    want = st_send_answer_ids(body, size);
    check_send(body, size, want, refusal);
    if (want > 0)
        check_send(body, size, want + 1, refusal);
    check_send(body, size, size ? data[0] % 4 : 0, refusal);
    check_status(body, size, refusal);
    check_balance(body, size, refusal);
    free(body);
    return 0;
}
