/* Checks of every value before anything is sent: phone numbers,
 * senders, texts, message ids. */
#ifndef ST_VALIDATE_H
#define ST_VALIDATE_H

#include <stddef.h>

#include "st_error.h"

#define ST_PHONE_MAX 15
#define ST_PHONE_MIN 10
#define ST_ID_MAX 32

typedef struct st_phone {
    char digits[ST_PHONE_MAX + 1];
} st_phone;

/* Most sends have one recipient: it lives inside, with no allocation (a
 * bulk call of 50,000 makes no 50,000 small blocks); the rest in more. */
typedef struct st_recipients {
    st_phone first;
    st_phone *more; /* recipients 2 and on */
    size_t count;
    size_t more_cap;
} st_recipients;

/* Recipient i (0-based, below count). */
static inline const st_phone *st_recipient(const st_recipients *r, size_t i) {
    return i == 0 ? &r->first : &r->more[i - 1];
}

/* Adds every comma-separated number of s, normalised; -1 and ST_E_INVALID on
 * a bad one (nothing is added then). */
int st_recipients_add(st_recipients *r, const char *s, size_t n, st_error *err);
void st_recipients_free(st_recipients *r);
int st_phone_normalize(const char *s, size_t n, st_phone *out, st_error *err);
int st_sender_check(const char *s, size_t n, st_error *err);
int st_text_check(const char *s, size_t n, st_error *err);
int st_id_check(const char *s, size_t n, st_error *err);

#endif
