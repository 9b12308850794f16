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

typedef struct st_recipients {
    st_phone *items;
    size_t count;
    size_t cap;
} st_recipients;

/* Adds every comma-separated number of s, normalised; -1 and ST_E_INVALID on
 * a bad one (nothing is added then). */
int st_recipients_add(st_recipients *r, const char *s, size_t n, st_error *err);
void st_recipients_free(st_recipients *r);
int st_phone_normalize(const char *s, size_t n, st_phone *out, st_error *err);
int st_sender_check(const char *s, size_t n, st_error *err);
int st_text_check(const char *s, size_t n, st_error *err);
int st_id_check(const char *s, size_t n, st_error *err);

#endif
