/* What one HTTP exchange brought back: written by a driver (the libcurl
 * transport, or a run's answer/fail from outside), read by the engine. */
#ifndef ST_REPLY_H
#define ST_REPLY_H

#include "st_buf.h"

typedef struct st_reply {
    st_buf body;
    long http_status;   /* 0 when no HTTP answer came */
    int request_sent;   /* the request went out on a connection at least once */
    int new_connection; /* this exchange opened a connection */
    double seconds;
} st_reply;

static inline void st_reply_free(st_reply *reply) { st_buf_free(&reply->body); }

#endif
