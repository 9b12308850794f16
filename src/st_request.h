/* Request URLs for the three calls, and the split of a long recipient
 * list into requests under the URL bound. */
#ifndef ST_REQUEST_H
#define ST_REQUEST_H

#include <stddef.h>

#include "st_buf.h"
#include "st_error.h"
#include "st_validate.h"

/* Longest request URL we ever build; long recipient lists are split to fit. */
#define ST_MAX_URL 2000

typedef struct st_credentials {
    const char *base_url;
    const char *user;
    const char *password;
    /* "base?user=..&pwd=.." already encoded, or NULL to encode it now */
    const char *prefix;
    size_t prefix_len;
} st_credentials;

/* Appends "base?user=..&pwd=..", the start of every request URL. */
int st_build_prefix(st_buf *url, const st_credentials *c);

typedef struct st_send_params {
    const char *sender; /* NULL: no sadr (the gateway then says no_sender) */
    const char *text;
    size_t text_len;
    const char *callback_url; /* NULL when absent */
    const char *name;         /* name_deliver; NULL when absent */
} st_send_params;

/* A run of recipients [first, first + count) that fits in one request. */
typedef struct st_chunk {
    size_t first;
    size_t count;
} st_chunk;

int st_build_balance_url(st_buf *url, const st_credentials *c);
/* id must have passed st_id_check (decimal digits only): it goes in as is. */
int st_build_status_url(st_buf *url, const st_credentials *c, const char *id);
/* The send URL for recipients [first, first+count). */
int st_build_send_url(st_buf *url, const st_credentials *c,
                      const st_send_params *p, const st_recipients *r,
                      size_t first, size_t count);
/* Splits r so that no send URL exceeds max_url bytes. *chunks is malloc'd.
 * -1 with ST_E_INVALID when even one recipient does not fit. */
int st_plan_send(const st_credentials *c, const st_send_params *p,
                 const st_recipients *r, size_t max_url, st_chunk **chunks,
                 size_t *nchunks, st_error *err);
/* 1 when all count recipients fit one request whatever the values encode
 * to (checked against a bound): one part, with no plan to make. */
int st_send_fits_whole(const st_credentials *c, const st_send_params *p,
                       size_t count, size_t max_url);
/* st_plan_send's check alone, allocating nothing: -1 and ST_E_INVALID
 * when even one recipient does not fit. */
int st_check_send_fits(const st_credentials *c, const st_send_params *p,
                       const st_recipients *r, size_t max_url,
                       st_error *err);

#endif
