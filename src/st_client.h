/* The client and its calls: options, statistics, the on_request hook,
 * send, status, balance, wait, and calls driven from outside (tasks).
 * The engine behind them is private (st_engine.h). */
#ifndef ST_CLIENT_H
#define ST_CLIENT_H

#include <stddef.h>

#include "st_buf.h"
#include "st_error.h"
#include "st_parse.h"
#include "st_request.h"
#include "st_validate.h"

#define ST_VERSION "0.1.0"
#define ST_DEFAULT_URL "https://gateway.api.sc/get/"

typedef struct st_options {
    const char *user;
    const char *password;
    const char *sender;
    const char *url;
    double timeout;         /* seconds, whole request; 0 means none */
    double connect_timeout; /* seconds */
    int verify;
    const char *ca_file, *ca_path, *proxy, *user_agent;
    int retries;
    int concurrency;
    long max_response;
    double rate; /* requests per second; 0 means no limit */
} st_options;

void st_options_defaults(st_options *o);
/* Checks values (not types: the caller's language does that). */
int st_options_check(const st_options *o, st_error *err);

typedef enum st_call { ST_CALL_SEND, ST_CALL_STATUS, ST_CALL_BALANCE } st_call;
const char *st_call_name(st_call call);

/* What the on_exchange hook learns after every HTTP exchange. */
typedef struct st_exchange {
    st_call call;
    const char *url; /* password already replaced by *** */
    long http_status; /* 0 where no HTTP answer came */
    double seconds;
    st_code code; /* ST_OK on success */
} st_exchange;

typedef void (*st_exchange_hook)(void *ctx, const st_exchange *info);

/* A rate shared with other clients (other processes): called when `rate`
 * is set and the engine needs a slot for a request; reserves the next
 * shared slot (interval seconds after the last one taken by anyone) and
 * answers the seconds from now until it (0 or less: now). The engine then
 * waits for that slot instead of its own. */
typedef double (*st_rate_hook)(void *ctx, double interval);

typedef struct st_stats {
    unsigned long requests;
    unsigned long retries;
    unsigned long failures[ST_CODE_COUNT];
    unsigned long connections_opened;
    unsigned long connections_reused;
    double seconds_total;
    double seconds_max;
} st_stats;

typedef struct st_client st_client;

st_client *st_client_new(const st_options *o, st_error *err);
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
/* Replaces the password in msg (cap bytes) with ***. */
void st_client_redact(const st_client *c, char *msg, size_t cap);

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
     * res->failure says why). Called once per started item, as soon as its
     * last answer is read; the hook may move *res out (zeroing it). */
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
int st_client_status(st_client *c, const char *id, st_status *out,
                     st_error *err);
typedef struct st_status_hooks {
    /* ids[i] is done: s where e->code is ST_OK. */
    void (*on_result)(void *ctx, size_t i, const st_status *s,
                      const st_error *e);
    void *ctx;
} st_status_hooks;

/* Statuses of n ids at once: out[i] where errs[i].code is ST_OK. -1 only
 * for a bad id (err names its index; nothing was sent). hooks may be NULL. */
int st_client_status_many(st_client *c, const char *const *ids, size_t n,
                          st_status *out, st_error *errs,
                          const st_status_hooks *hooks, st_error *err);
int st_client_balance(st_client *c, st_balance *out, st_error *err);

/* ---- calls driven from outside (event loops: see docs/DRIVERS.md) ---- */

typedef struct st_task st_task;

/* A call ready to run: checked (NULL and err for a bad argument, nothing
 * sent), its requests not started yet. The arguments, out arrays and hooks
 * must outlive it. */
st_task *st_task_send_many(st_client *c, const st_send_item *items, size_t n,
                           const st_send_hooks *hooks, st_error *err);
st_task *st_task_status_many(st_client *c, const char *const *ids, size_t n,
                             st_status *out, st_error *errs,
                             const st_status_hooks *hooks, st_error *err);
st_task *st_task_balance(st_client *c, st_balance *out, st_error *err);
/* st_client_wait as a task: its rounds' requests, and the pauses between
 * rounds as WAITs with a time. */
st_task *st_task_wait(st_client *c, const char *const *ids, size_t n,
                      double timeout, double interval, st_status *out,
                      st_error *errs, st_error *err);
/* Starts no more requests; those in flight still end. */
void st_task_stop(st_task *call);
void st_task_free(st_task *call);

typedef enum st_step { ST_STEP_START, ST_STEP_WAIT, ST_STEP_DONE } st_step;

/* What the driver does next: START sending *url as job *job (1, 2, ...);
 * WAIT for a job's end, or at most *wait seconds when that is not negative;
 * or DONE. */
st_step st_task_next(st_task *call, size_t *job, const char **url,
                     double *wait);
/* 1 when, after a START, the next step could only be a WAIT with no time
 * limit: the driver may run the job at once, without asking. */
int st_task_full(const st_task *call);
/* How job ended: an HTTP answer (its body at most max_response bytes), or
 * a transport failure (code, message, and whether the request may have
 * left). -1 for a job that is not running. */
int st_task_answer(st_task *call, size_t job, long http_status,
                   const char *body, size_t n, double seconds,
                   int new_connection);
int st_task_fail(st_task *call, size_t job, st_code code,
                 const char *message, int sent, double seconds,
                 int new_connection);
/* The client's max_response, for drivers that read answers themselves. */
long st_client_max_response(const st_client *c);
/* A client without a transport of its own: only driven calls run on it. */
st_client *st_client_new_driven(const st_options *o, st_error *err);

/* wait never polls more often than this, whatever interval it is given:
 * a tight loop of status requests would flood the gateway. */
#define ST_WAIT_MIN_INTERVAL 1.0
/* -1 and ST_E_INVALID for a negative, NaN or infinite timeout or interval. */
int st_wait_check(double timeout, double interval, st_error *err);
/* Polls the statuses of n distinct ids until each is settled (final, or
 * never accepted by the gateway), the timeout passes or the client is
 * stopped; out/errs as st_client_status_many gives, the last answer for
 * each. -1 only for a bad id or option (nothing was sent). */
int st_client_wait(st_client *c, const char *const *ids, size_t n,
                   double timeout, double interval, st_status *out,
                   st_error *errs, st_error *err);
/* Asks the call in progress to end early (its callback closed the client):
 * wait polls no more. Nothing already started is abandoned. */
void st_client_stop(st_client *c);
int st_client_stopped(const st_client *c);
/* The credentials a client builds URLs with (for client:url()). */
st_credentials st_client_credentials(const st_client *c);
/* The URL a status (of id) or balance call requests; -1 and ST_E_INVALID
 * for a bad id. */
int st_client_build_url(const st_client *c, st_call call, const char *id,
                        st_buf *url, st_error *err);
/* The one URL a send would request, with the send's validation; -1 and
 * ST_E_INVALID where the send would need more than one request. */
int st_client_send_url(const st_client *c, const st_recipients *r,
                       const st_send_params *p, st_buf *url, st_error *err);

#endif
