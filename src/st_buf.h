/* A growable byte buffer: the one owner of every variable-length string the
 * core builds (URLs, answer bodies). Plain C, no Lua. */
#ifndef ST_BUF_H
#define ST_BUF_H

#include <stddef.h>

typedef struct st_buf {
    char *data;  /* always NUL-terminated once anything was appended */
    size_t len;
    size_t cap;
    int failed;  /* set once an allocation failed; later appends are no-ops */
} st_buf;

#define ST_BUF_INIT {NULL, 0, 0, 0}

int st_buf_append(st_buf *b, const char *s, size_t n);
int st_buf_append_str(st_buf *b, const char *s);
int st_buf_append_char(st_buf *b, char c);
void st_buf_truncate(st_buf *b, size_t len);
/* Room for extra more bytes at the end, to be written in place and then
 * counted with st_buf_commit; NULL once an allocation failed. */
char *st_buf_reserve_tail(st_buf *b, size_t extra);
void st_buf_commit(st_buf *b, size_t n);
void st_buf_free(st_buf *b);
/* The contents, or "" for an empty buffer (never NULL). */
const char *st_buf_str(const st_buf *b);

#endif
