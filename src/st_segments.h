/* SMS parts: GSM 03.38 or UCS-2, and how many parts a text costs. */
#ifndef ST_SEGMENTS_H
#define ST_SEGMENTS_H

#include <stddef.h>

#include "st_error.h"

typedef struct st_segments_info {
    int ucs2;         /* 0: GSM-7 */
    size_t parts;     /* 0 for an empty text */
    size_t chars;     /* characters (code points) */
    size_t per_part;  /* septets (GSM-7) or UTF-16 units (UCS-2) per part */
    size_t remaining; /* what still fits in the last part */
} st_segments_info;

/* -1 with ST_E_INVALID for text that is not UTF-8. */
int st_segments(const char *s, size_t n, st_segments_info *out, st_error *err);

#endif
