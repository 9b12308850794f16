/* The plain lines of a CSV file: a campaign checks every row before it
 * sends any, and nearly every row is a line with no quote in it. */
#ifndef ST_CSV_H
#define ST_CSV_H

#include <stddef.h>

/* The columns a line's split keeps (field numbers, 1-based; 0: none). */
#define ST_CSV_WANT 5

typedef struct st_span {
    size_t at;  /* 0-based offset in the text */
    size_t len;
} st_span;

typedef enum st_csv_line {
    ST_CSV_PLAIN, /* fields split, as many as the header has */
    ST_CSV_BLANK, /* an empty line ("\n" or "\r\n"): no record */
    ST_CSV_OTHER  /* a quote or NUL byte, or another field count: the
                     caller's full reader judges it */
} st_csv_line;

typedef struct st_csv_split {
    char delim;
    size_t width;                 /* the header's field count */
    size_t want[ST_CSV_WANT];     /* field numbers to keep, 0: none */
} st_csv_split;

/* The line of s[0..len) at pos (0-based, below len): its kind, the wanted
 * fields' spans in out (empty for a wanted number 0) and in *next where
 * the following line starts. A final "\r" is not part of the last field. */
st_csv_line st_csv_plain_line(const char *s, size_t len, size_t pos,
                              const st_csv_split *split, st_span *out,
                              size_t *next);

#endif
