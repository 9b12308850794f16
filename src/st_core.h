/* The streamtelecom core: everything that talks to the gateway, in plain C on
 * libcurl. No Lua header is included here or in any file that includes this
 * one except the bindings, so the core can be unit-tested and fuzzed alone. */
#ifndef ST_CORE_H
#define ST_CORE_H

#include <stddef.h>

#include "st_buf.h"

#define ST_VERSION "0.1.0"
#define ST_DEFAULT_URL "https://gateway.api.sc/get/"
/* Longest request URL we ever build; long recipient lists are split to fit. */
#define ST_MAX_URL 2000
#define ST_PHONE_MAX 15
#define ST_PHONE_MIN 10
#define ST_ID_MAX 32
#define ST_ERR_MAX 512
/* How much of an unreadable answer an error message quotes. */
#define ST_QUOTE_MAX 200

/* ---- errors ----------------------------------------------------------- */

typedef enum st_code {
    ST_OK = 0,
    ST_E_AUTH,
    ST_E_BLOCKED,
    ST_E_DIRECTION_CLOSED,
    ST_E_NO_SENDER,
    ST_E_NO_TEXT,
    ST_E_UNKNOWN_SENDER,
    ST_E_NO_PHONE,
    ST_E_FLOOD,
    ST_E_NOT_FOUND,
    ST_E_GATEWAY,
    ST_E_INVALID,
    ST_E_TIMEOUT,
    ST_E_CONNECT,
    ST_E_TLS,
    ST_E_HTTP,
    ST_E_TOO_LARGE,
    ST_E_NETWORK,
    ST_E_CLOSED,
    ST_CODE_COUNT
} st_code;

typedef struct st_error {
    st_code code;
    char message[ST_ERR_MAX];
} st_error;

/* The API name of a code ("auth", "timeout", ...); "" for ST_OK. */
const char *st_code_name(st_code code);
/* Sets err and returns -1, so callers can `return st_fail(...)`. */
int st_fail(st_error *err, st_code code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
/* Replaces every spelling of `secret` in msg (raw, percent-encoded with
 * hex digits of either case, '+' for a space) with "***", in place, never
 * growing past cap bytes. For text a server sent, which may echo it. */
void st_redact(char *msg, size_t cap, const char *secret);
/* Appends s[0..n) (any bytes) to out with every spelling of the secret
 * replaced by "***". */
int st_redact_bytes(const char *s, size_t n, const char *secret, st_buf *out);
/* Appends s with the value of every pwd= query parameter replaced by
 * "***": where the password stands in a URL we built. */
void st_redact_query(const char *s, st_buf *out);
/* st_redact_query in place on a message of cap bytes. Unlike st_redact it
 * never rewrites other words, so a short or word-like password ("connect")
 * cannot mangle a message or be guessed from the stars. */
void st_redact_message(char *msg, size_t cap);
/* "scheme://user:secret@host" becomes "scheme://user:***@host". */
void st_redact_userinfo(char *msg, size_t cap);

/* ---- text helpers (st_text.c) ----------------------------------------- */

/* Appends s percent-encoded: everything but RFC 3986 unreserved bytes. */
int st_percent_encode(st_buf *out, const char *s, size_t n);
size_t st_percent_encoded_len(const char *s, size_t n);
/* Length of the well-formed UTF-8 character at s, 0 if malformed. */
size_t st_utf8_char_len(const char *s, size_t n);
/* 1 if s[0..n) is well-formed UTF-8 (no overlongs, surrogates or > U+10FFFF). */
int st_utf8_valid(const char *s, size_t n);
/* Strips a leading UTF-8 BOM and surrounding white space. */
void st_trim(const char **s, size_t *n);
/* Compares two UTF-8 sentences ignoring case (ASCII and Cyrillic), runs of
 * white space, and a trailing full stop. */
int st_sentence_equal(const char *a, size_t an, const char *b, size_t bn);

/* ---- validation (st_validate.c) --------------------------------------- */

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

/* ---- requests (st_request.c) ------------------------------------------ */

typedef struct st_credentials {
    const char *base_url;
    const char *user;
    const char *password;
    /* "base?user=..&pwd=.." already encoded, or NULL to encode it now */
    const char *prefix;
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
/* st_plan_send's check alone, allocating nothing: -1 and ST_E_INVALID
 * when even one recipient does not fit. */
int st_check_send_fits(const st_credentials *c, const st_send_params *p,
                       const st_recipients *r, size_t max_url,
                       st_error *err);

/* ---- answers (st_parse.c) --------------------------------------------- */

typedef enum st_state {
    ST_STATE_DELIVERED,
    ST_STATE_UNDELIVERED,
    ST_STATE_EXPIRED,
    ST_STATE_READ,
    ST_STATE_PARTLY_DELIVERED,
    ST_STATE_SENT,
    ST_STATE_UNKNOWN
} st_state;

typedef struct st_status {
    st_state state;
    int final;
    char raw[64];      /* the state word as the gateway wrote it */
    char updated[128]; /* "" when the gateway gave no time */
} st_status;

typedef struct st_balance {
    double balance;
    char currency[32]; /* "" when none */
    char raw[128];
} st_balance;

const char *st_state_name(st_state s);
/* A gateway refusal sentence in body, or ST_OK if the body is not one. */
st_code st_match_refusal(const char *body, size_t n);
/* Each parser first recognises refusals (err->code is then the refusal). */
int st_parse_send_answer(const char *body, size_t n, size_t expected,
                         char (*ids)[ST_ID_MAX + 1], st_error *err);
/* How many ids a well-formed send answer holds; 0 for anything else. */
size_t st_send_answer_ids(const char *body, size_t n);
int st_parse_status_answer(const char *body, size_t n, st_status *out,
                           st_error *err);
int st_parse_balance_answer(const char *body, size_t n, st_balance *out,
                            st_error *err);

/* Seconds on a monotonic clock, and a sleep that finishes its time (at
 * most ST_SLEEP_MAX seconds; NaN or less than 0 sleeps not at all). */
#define ST_SLEEP_MAX 1e6
double st_now(void);
void st_sleep(double seconds);

/* ---- SMS parts (st_segments.c) ---------------------------------------- */

typedef struct st_segments_info {
    int ucs2;         /* 0: GSM-7 */
    size_t parts;     /* 0 for an empty text */
    size_t chars;     /* characters (code points) */
    size_t per_part;  /* septets (GSM-7) or UTF-16 units (UCS-2) per part */
    size_t remaining; /* what still fits in the last part */
} st_segments_info;

/* -1 with ST_E_INVALID for text that is not UTF-8. */
int st_segments(const char *s, size_t n, st_segments_info *out, st_error *err);

/* ---- client (st_client.c, st_transport.c) ----------------------------- */

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
} st_send_result;

void st_send_result_free(st_send_result *res);

/* The send as one call: -1 for an error before anything was sent, or when
 * no recipient was accepted (err is then the first recipient's error);
 * otherwise 0 with per-recipient outcomes in res. */
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
/* Starts no more requests; those in flight still end. */
void st_task_stop(st_task *call);
void st_task_free(st_task *call);

typedef enum st_step { ST_STEP_START, ST_STEP_WAIT, ST_STEP_DONE } st_step;

/* What the driver does next: START sending *url as job *job (1, 2, ...);
 * WAIT for a job's end, or at most *wait seconds when that is not negative;
 * or DONE. */
st_step st_task_next(st_task *call, size_t *job, const char **url,
                     double *wait);
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
