/* A growable byte buffer: the one owner of every variable-length string the
 * core builds (URLs, answer bodies). Plain C, no Lua. */
#ifndef ST_BUF_H
#define ST_BUF_H

#include <stddef.h>
#include <string.h>

typedef struct st_buf {
    char *data;  /* always NUL-terminated once anything was appended */
    size_t len;
    size_t cap;
    int failed;  /* set once an allocation failed; later appends are no-ops */
} st_buf;

#define ST_BUF_INIT {NULL, 0, 0, 0}

/* Grows the buffer, then appends: st_buf_append's way when n does not fit. */
int st_buf_append_grow(st_buf *b, const char *s, size_t n);

/* Appends n bytes. Inline: a reused buffer (a client's URL, a reply) mostly
 * has the room, and a request makes a dozen appends. */
static inline int st_buf_append(st_buf *b, const char *s, size_t n) {
    if (!b->failed && n < b->cap - b->len) { /* room for n and the NUL */
        memcpy(b->data + b->len, s, n);
        b->len += n;
        b->data[b->len] = '\0';
        return 0;
    }
    return st_buf_append_grow(b, s, n);
}
static inline int st_buf_append_str(st_buf *b, const char *s) {
    return st_buf_append(b, s, strlen(s));
}
int st_buf_append_char(st_buf *b, char c);
void st_buf_truncate(st_buf *b, size_t len);
char *st_buf_reserve_tail_grow(st_buf *b, size_t extra);

/* Room for extra more bytes at the end, to be written in place and then
 * counted with st_buf_commit; NULL once an allocation failed. Inline when
 * the room is there, as for st_buf_append. */
static inline char *st_buf_reserve_tail(st_buf *b, size_t extra) {
    if (!b->failed && extra < b->cap - b->len)
        return b->data + b->len;
    return st_buf_reserve_tail_grow(b, extra);
}

static inline void st_buf_commit(st_buf *b, size_t n) {
    b->len += n;
    b->data[b->len] = '\0';
}
void st_buf_free(st_buf *b);
/* The contents, or "" for an empty buffer (never NULL). */
const char *st_buf_str(const st_buf *b);

#endif
