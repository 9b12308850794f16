/* The HTTP transport: one libcurl easy handle per client, so every call
 * reuses the same keep-alive connection and TLS session. */
#ifndef ST_TRANSPORT_H
#define ST_TRANSPORT_H

#include "st_core.h"

typedef struct st_transport st_transport;

typedef struct st_reply {
    st_buf body;
    long http_status;  /* 0 when no HTTP answer came */
    int request_sent;  /* the request went out on a connection at least once */
    int new_connection; /* this exchange opened a connection */
    double seconds;
} st_reply;

st_transport *st_transport_new(const st_options *o, st_error *err);
void st_transport_free(st_transport *t);

/* One GET. With `once`, libcurl may not send the request a second time on
 * a fresh connection when a reused one dies (what it does by default):
 * for a send, that would text the recipient twice.
 * Returns 0 when an HTTP answer came (any status), else -1 with err set. */
int st_transport_get(st_transport *t, const char *url, int once,
                     st_reply *reply, st_error *err);

void st_reply_free(st_reply *reply);


#endif
