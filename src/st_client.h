/* The client: an account's options, its transport and its engine. The
 * calls made on it are in st_send.h, st_status.h and st_wait.h; drivers
 * outside C step their tasks through st_engine.h's task API. */
#ifndef ST_CLIENT_H
#define ST_CLIENT_H

#include <stddef.h>

#include "st_buf.h"
#include "st_engine.h"
#include "st_error.h"
#include "st_options.h"
#include "st_request.h"

#define ST_VERSION "0.1.0"

typedef struct st_client st_client;

st_client *st_client_new(const st_options *o, st_error *err);
/* A client without a transport of its own: only driven calls run on it. */
st_client *st_client_new_driven(const st_options *o, st_error *err);
void st_client_free(st_client *c);

void st_client_set_hook(st_client *c, st_exchange_hook hook, void *ctx);
void st_client_get_hook(const st_client *c, st_exchange_hook *hook,
                        void **ctx);
void st_client_set_rate_hook(st_client *c, st_rate_hook hook, void *ctx);
void st_client_get_rate_hook(const st_client *c, st_rate_hook *hook,
                             void **ctx);
const st_stats *st_client_stats(const st_client *c);
const char *st_client_user(const st_client *c);
const char *st_client_url(const st_client *c);
const char *st_client_sender(const st_client *c);
/* The client's max_response, for drivers that read answers themselves. */
long st_client_max_response(const st_client *c);
/* Replaces the password in msg (cap bytes) with ***. */
void st_client_redact(const st_client *c, char *msg, size_t cap);
/* The credentials a client builds URLs with (for client:url()). */
st_credentials st_client_credentials(const st_client *c);

/* Asks the call in progress to end early (its callback closed the client):
 * no new request starts, wait polls no more. Nothing already started is
 * abandoned. */
void st_client_stop(st_client *c);
int st_client_stopped(const st_client *c);

/* Closing waits for what uses the client: a call in progress (closed from
 * its own callback) or a driven run. Each holds the client from its start
 * to its end; st_client_release answers 1 when that end freed it (a close
 * came meanwhile: the caller drops its pointer). */
void st_client_hold(st_client *c);
int st_client_release(st_client *c);
/* Frees c now (1), or, while something holds it, stops it (no new request
 * starts) and frees it at the last release (0). Either way it is closed:
 * st_client_closing answers 1 until then. */
int st_client_close(st_client *c);
int st_client_closing(const st_client *c);

/* ---- for the calls (st_send.c, st_status.c, st_wait.c) ---- */

/* The engine the client's calls make their tasks on. */
st_engine *st_client_engine(st_client *c);
/* Runs a call's task on the client's libcurl transport to its end, then
 * frees it. */
void st_client_run(st_client *c, st_task *task);

/* Reads an answer with read(body, n, ctx, err); on failure err's message
 * quotes the answer without the client's password. */
typedef int (*st_answer_reader)(const char *body, size_t n, void *ctx,
                                st_error *err);
int st_client_read_answer(const st_client *c, const st_buf *body,
                          st_answer_reader read, void *ctx, st_error *err);

#endif
