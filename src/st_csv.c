/* The plain lines of a CSV file (st_csv.h). RFC 4180's quoted fields are
 * the caller's: a line holding a quote is ST_CSV_OTHER, never split. */
#include <string.h>

#include "st_csv.h"

/* Keeps the span of field number `field` when it is a wanted one. */
static void keep_field(const st_csv_split *split, size_t field, size_t at,
                       size_t len, st_span *out) {
    size_t j;
    for (j = 0; j < ST_CSV_WANT; j++)
        if (split->want[j] == field)
            out[j].at = at, out[j].len = len;
}

st_csv_line st_csv_plain_line(const char *s, size_t len, size_t pos,
                              const st_csv_split *split, st_span *out,
                              size_t *next) {
    const char *nl = memchr(s + pos, '\n', len - pos);
    size_t end = nl ? (size_t)(nl - s) : len;
    size_t field = 1, from = pos, j;
    *next = nl ? end + 1 : len;
    if (end > pos && s[end - 1] == '\r')
        end--;
    if (memchr(s + pos, '"', end - pos) || memchr(s + pos, '\0', end - pos))
        return ST_CSV_OTHER;
    if (end == pos && *next - pos <= 2)
        return ST_CSV_BLANK;
    for (j = 0; j < ST_CSV_WANT; j++)
        out[j].at = pos, out[j].len = 0;
    for (;;) {
        const char *d = memchr(s + from, split->delim, end - from);
        size_t stop = d ? (size_t)(d - s) : end;
        keep_field(split, field, from, stop - from, out);
        if (!d)
            break;
        from = stop + 1;
        if (++field > split->width)
            return ST_CSV_OTHER;
    }
    return field == split->width ? ST_CSV_PLAIN : ST_CSV_OTHER;
}
