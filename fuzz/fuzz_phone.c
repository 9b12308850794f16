/* st_phone_normalize and st_recipients_add.
 *
 * Properties: a normalised phone is 10..15 decimal digits, NUL-terminated,
 * and equals the input with the decorations (space, tab, '+', '-', '(',
 * ')') removed; it succeeds exactly when that stripped input is 10..15
 * digits. st_recipients_add succeeds exactly when every comma-separated
 * field normalises, then appends one phone per field in order (earlier
 * recipients untouched); on failure count is unchanged and earlier items
 * are intact. Error messages: NUL-terminated, no control bytes, valid
 * UTF-8 (the value is quoted as printable ASCII).
 */
#include "fuzz_common.h"

static int decoration(char ch) {
    return ch == ' ' || ch == '+' || ch == '-' || ch == '(' || ch == ')' ||
           ch == '\t';
}

/* The reference: strip decorations; NULL-free digits only, 10..15 of them.
 * Writes the digits to out (16 bytes); returns 1 when valid. */
static int ref_phone(const char *s, size_t n, char *out) {
    size_t i, d = 0;
    for (i = 0; i < n; i++) {
        if (decoration(s[i]))
            continue;
        if (s[i] < '0' || s[i] > '9' || d == ST_PHONE_MAX)
            return 0;
        out[d++] = s[i];
    }
    out[d] = '\0';
    return d >= ST_PHONE_MIN && d <= ST_PHONE_MAX;
}

static void check_err(const st_error *err) {
    check_error(err);
    CHECK(err->code == ST_E_INVALID);
    CHECK(st_utf8_valid(err->message, strlen(err->message)));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_reader rd = {data, size};
    const uint8_t *f;
    size_t fn, i, before, fields, start;
    st_recipients r = {NULL, 0, 0};
    st_error err;
    st_phone ph;
    char ref[ST_PHONE_MAX + 1];
    char *s;
    int rc, want, lists = 0;

    /* 1. the whole input as one number */
    s = fuzz_dup(data, size);
    memset(&ph, 'X', sizeof ph);
    memset(&err, 'Y', sizeof err);
    rc = st_phone_normalize(s, size, &ph, &err);
    want = ref_phone(s, size, ref);
    CHECK((rc == 0) == want);
    if (rc == 0) {
        size_t len = strnlen(ph.digits, sizeof ph.digits);
        CHECK(len >= ST_PHONE_MIN && len <= ST_PHONE_MAX);
        CHECK(strcmp(ph.digits, ref) == 0);
    } else {
        CHECK(rc == -1);
        check_err(&err);
    }
    free(s);

    /* 2. up to 16 lists (fields separated by 0xFF) added to one
     *    recipients set, checking each add against the reference (more
     *    lists only make each run slower: the check copies the set) */
    do {
        char *list;
        st_phone *saved;
        fuzz_field(&rd, &f, &fn);
        list = fuzz_dup(f, fn);
        before = r.count;
        saved = malloc((before ? before : 1) * sizeof *saved);
        if (!saved)
            abort();
        for (i = 0; i < before; i++)
            saved[i] = *st_recipient(&r, i);
        /* every comma-separated field must normalise */
        want = 1, fields = 0, start = 0;
        for (i = 0; i <= fn; i++) {
            if (i == fn || list[i] == ',') {
                want &= ref_phone(list + start, i - start, ref);
                fields++;
                start = i + 1;
            }
        }
        memset(&err, 'Y', sizeof err);
        rc = st_recipients_add(&r, list, fn, &err);
        CHECK((rc == 0) == want);
        if (rc == 0) {
            CHECK(r.count == before + fields);
            CHECK(r.count <= r.more_cap + 1);
            start = 0;
            for (i = 0; i <= fn; i++) {
                if (i == fn || list[i] == ',') {
                    size_t k = before++;
                    CHECK(ref_phone(list + start, i - start, ref));
                    CHECK(strcmp(st_recipient(&r, k)->digits, ref) == 0);
                    start = i + 1;
                }
            }
            before -= fields;
        } else {
            CHECK(rc == -1);
            check_err(&err);
            CHECK(r.count == before);
        }
        for (i = 0; i < before; i++)
            CHECK(memcmp(&saved[i], st_recipient(&r, i), sizeof *saved) == 0);
        free(saved);
        free(list);
    } while (rd.n > 0 && ++lists < 16);
    st_recipients_free(&r);
    CHECK(r.more == NULL && r.count == 0);
    return 0;
}
