/* The HTTP transport: one libcurl multi handle per client. All transfers,
 * single calls and parallel ones alike, run through it, so they share one
 * connection cache (keep-alive) and one TLS session cache. */
#ifndef ST_TRANSPORT_H
#define ST_TRANSPORT_H

#include "st_error.h"
#include "st_reply.h"

typedef struct st_transport st_transport;

/* What the transport needs of a client's options. The strings are
 * borrowed: the client that owns them outlives its transport. */
typedef struct st_transport_options {
    double timeout;         /* seconds, whole request; 0 means none */
    double connect_timeout; /* seconds */
    int verify;
    const char *ca_file, *ca_path, *proxy, *user_agent;
    int concurrency;        /* transfers at once (the multi handle's limit) */
    long max_response;      /* bytes */
} st_transport_options;

st_transport *st_transport_new(const st_transport_options *o, st_error *err);
void st_transport_free(st_transport *t);

/* Starts one GET of url; the answer goes to reply, which must stay valid
 * until the transfer comes back from st_transport_next_done with cookie.
 * With `once`, libcurl may not send the request a second time on a fresh
 * connection when a reused one dies (what it does by default): for a send,
 * that would text the recipient twice. */
int st_transport_start(st_transport *t, const char *url, int once,
                       st_reply *reply, void *cookie, st_error *err);

/* Drives the transfers, waiting at most max_wait seconds for progress. */
void st_transport_poll(st_transport *t, double max_wait);

/* Hands back one finished transfer: 1 with *cookie and *rc (0 when an HTTP
 * answer came, any status; -1 with err set), or 0 when none is finished. */
int st_transport_next_done(st_transport *t, void **cookie, int *rc,
                           st_error *err);

/* Frees the idle transfers beyond keep, when a call is over: a bulk call
 * at concurrency 200 left 200 handles of ~16 KiB each. Their connections
 * stay in the multi handle's cache, so the next call still reuses them. */
void st_transport_keep_idle(st_transport *t, size_t keep);

#endif
