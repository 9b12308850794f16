/* Sends: one (st_client_send), many at once (st_client_send_many), as a
 * task for a driver (st_task_send_many), and the one URL a send would
 * request (st_client_send_url). */
#ifndef ST_SEND_H
#define ST_SEND_H

#include "st_client.h"
#include "st_request.h"
#include "st_validate.h"

/* One record per recipient, in the order given. */
typedef struct st_send_record {
    char to[ST_PHONE_MAX + 1];
    char id[ST_ID_MAX + 1]; /* "" when refused */
    size_t chunk;           /* index into st_send_result.errors */
} st_send_record;

typedef struct st_send_result {
    st_send_record *records;
    size_t count;
    st_error *errors; /* one per request; code ST_OK where it was accepted */
    size_t nerrors;
    size_t accepted;  /* recipients with an id */
    st_error failure; /* when none was accepted: the first recipient's error */
    int sent; /* a request of it may have reached the gateway (0: provably
               * none left the machine; a failed send may then be retried) */
    int started; /* its on_start ran: 0 for an item the call never started
                  * (failure `closed`: the client was closed, or the call
                  * stopped first) */
} st_send_result;

void st_send_result_free(st_send_result *res);
/* Moves from's outcome into to (from is left empty, to's old one is not
 * freed): how an on_result hook keeps the one result of a single send. */
void st_send_result_take(st_send_result *to, st_send_result *from);

/* The send as one call: -1 for an error before anything was sent, or when
 * no recipient was accepted (err is then the first recipient's error, and
 * res->sent says whether a request may have left); otherwise 0 with
 * per-recipient outcomes in res. */
int st_client_send(st_client *c, const st_recipients *r,
                   const st_send_params *p, st_send_result *res,
                   st_error *err);

typedef struct st_send_item {
    const st_recipients *recipients;
    st_send_params params;
} st_send_item;

/* What a bulk call tells its caller while it runs. */
typedef struct st_send_hooks {
    /* Before item i's first request can leave the machine; nonzero: start
     * no more items (those in flight finish). NULL: none. */
    int (*on_start)(void *ctx, size_t item);
    /* Item i is done: *res is its outcome (res->accepted == 0: it failed,
     * res->failure says why). Called once per item: a started one as soon
     * as its last answer is read, one never started (res->started == 0)
     * when the call ends; the hook may move *res out (zeroing it). */
    void (*on_result)(void *ctx, size_t item, st_send_result *res);
    /* The requests of the items whose on_start ran since the last call are
     * about to leave the machine (one call for a group of them: a caller
     * that makes its on_start records durable does it once here). Nonzero:
     * none of them leaves (each ends `closed`, never sent) and no more
     * items start. NULL: none. */
    int (*before_send)(void *ctx);
    void *ctx;
} st_send_hooks;

/* Many sends at once, at most `concurrency` requests in flight, each
 * item's outcome streamed to hooks->on_result. Every item is checked
 * first: -1 only for a bad item (err names its 1-based index; nothing was
 * sent). Each item's URLs are built when it starts, so memory follows the
 * requests in flight, not the length of the list. */
int st_client_send_many(st_client *c, const st_send_item *items, size_t n,
                        const st_send_hooks *hooks, st_error *err);
/* The same call as a task, checked (NULL and err for a bad item, nothing
 * sent), its requests not started yet. The items and hooks must outlive
 * it. */
st_task *st_task_send_many(st_client *c, const st_send_item *items, size_t n,
                           const st_send_hooks *hooks, st_error *err);

/* The one URL a send would request, with the send's validation; -1 and
 * ST_E_INVALID where the send would need more than one request. */
int st_client_send_url(const st_client *c, const st_recipients *r,
                       const st_send_params *p, st_buf *url, st_error *err);
/* st_client_send_url's verdict on one recipient, building nothing and
 * allocating nothing: a campaign checks each row of its file with it. */
int st_client_check_send(const st_client *c, const st_recipients *r,
                         const st_send_params *p, st_error *err);

#endif
