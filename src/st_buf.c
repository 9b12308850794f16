#include "st_buf.h"

#include <stdlib.h>
#include <string.h>

static int st_buf_reserve(st_buf *b, size_t extra) {
    size_t need, cap;
    char *p;
    if (b->failed)
        return -1;
    if (extra > (size_t)-1 - b->len - 1) {
        b->failed = 1;
        return -1;
    }
    need = b->len + extra + 1;
    if (need <= b->cap)
        return 0;
    cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap = cap > (size_t)-1 / 2 ? need : cap * 2;
    p = realloc(b->data, cap);
    if (!p) {
        b->failed = 1;
        return -1;
    }
    b->data = p;
    b->cap = cap;
    return 0;
}

int st_buf_append_grow(st_buf *b, const char *s, size_t n) {
    if (st_buf_reserve(b, n) != 0)
        return -1;
    if (n)
        memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

char *st_buf_reserve_tail_grow(st_buf *b, size_t extra) {
    return st_buf_reserve(b, extra) == 0 ? b->data + b->len : NULL;
}

int st_buf_append_char(st_buf *b, char c) {
    return st_buf_append(b, &c, 1);
}

void st_buf_truncate(st_buf *b, size_t len) {
    if (len == 0) /* a buffer used again starts afresh: room may be had now */
        b->failed = 0;
    if (b->data && len < b->len) {
        b->len = len;
        b->data[len] = '\0';
    }
}

void st_buf_free(st_buf *b) {
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
    b->failed = 0;
}

const char *st_buf_str(const st_buf *b) {
    return b->data ? b->data : "";
}
