/* The engine: one owner for every exchange, whoever moves the bytes.
 *
 * For each request the engine asks a job source (a call: send, status,
 * balance) for the next job (the source builds its URL when it starts, so
 * a bulk call holds only the jobs in flight), hands it to a driver, has
 * the source read a 2xx answer, reports the exchange once (stats,
 * on_request), decides a retry by API.md's rules, redacts the error once,
 * and gives the job back to the source as done.
 *
 * Two faces: the run (st_run_*), which the libcurl driver (st_driver_curl.c)
 * steps itself; and the task (st_task_*), a call with its run, which
 * drivers outside C step through the bindings (docs/DRIVERS.md). The engine
 * knows no client: a client owns one st_engine (its stats, hooks, rate and
 * kept memory) and makes its calls' tasks on it. */
#ifndef ST_ENGINE_H
#define ST_ENGINE_H

#include <stddef.h>

#include "st_buf.h"
#include "st_error.h"
#include "st_reply.h"

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
 * waits for that slot instead of spacing requests itself. */
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

struct st_job;
struct st_task;

/* One client's engine: its rules (from the options), what it counts and
 * calls back, and the memory it keeps from call to call. */
typedef struct st_engine {
    int retries;
    int concurrency;
    long max_response;
    double rate; /* requests a second; 0: no limit */
    st_stats stats;
    st_exchange_hook hook;
    void *hook_ctx;
    st_rate_hook rate_hook; /* a rate shared beyond this client, or NULL */
    void *rate_ctx;
    double next_slot;  /* earliest start of the next request under `rate` */
    int slot_reserved; /* next_slot came from rate_hook, not yet taken */
    int stopped;       /* st_engine_stop: no new jobs start */
    struct st_job *slots; /* kept between calls (see st_engine.c) */
    int slots_in_use;     /* a run holds them */
    struct st_task *spare_task; /* the last call's, for the next */
    size_t spare_task_size;
    void *spare_item; /* a source's block (a send item), kept likewise */
} st_engine;

void st_engine_init(st_engine *e, int retries, int concurrency,
                    long max_response, double rate);
/* Frees what the engine keeps; no task of it may be alive. */
void st_engine_free(st_engine *e);
/* Asks the call in progress to end early: no new job starts. */
void st_engine_stop(st_engine *e);

typedef enum st_job_state {
    ST_JOB_FREE,    /* the slot holds no job */
    ST_JOB_WAITING, /* a retry waiting for its backoff */
    ST_JOB_RUNNING
} st_job_state;

typedef struct st_job {
    st_call call;
    st_buf url;     /* kept between jobs of a slot: no allocation per job */
    st_reply reply; /* the last attempt's answer */
    st_error err;   /* ST_OK once done well */
    int attempts;
    st_job_state state;
    double not_before; /* a retry waits for its backoff */
    int held;          /* handed out, waiting for the source's leaving() */
    void *tag;         /* the source's: which item this job serves */
    size_t part;       /* the source's: which part of it */
} st_job;

typedef struct st_job_source {
    /* Fills job (call, url, tag, part) with the next request: 1, or 0 when
     * there is none left. */
    int (*next)(void *ctx, st_job *job);
    /* Reads a 2xx answer: ST_OK, or the failure's code with job->err set
     * (its message quoting no password). */
    st_code (*read)(void *ctx, st_job *job);
    /* The job's last word: read well (job->err.code is ST_OK) or failed
     * for good (job->err, redacted). */
    void (*done)(void *ctx, st_job *job);
    /* Optional (NULL: none): the jobs handed out since its last call are
     * about to leave; nonzero: none of them may (they end unsent). */
    int (*leaving)(void *ctx);
    /* Optional: the run is over, no job will start any more (its jobs
     * all ended, or it was stopped): the source accounts for what it never
     * started. Called once. */
    void (*finish)(void *ctx);
    void *ctx;
    int stop; /* set by the source (or its caller): start no more jobs */
} st_job_source;

/* Whether a job's request may have reached the gateway: it went out on a
 * connection, or an answer came. 0 only when it provably never left. */
static inline int st_job_may_have_left(const st_job *job) {
    return job->reply.request_sent || job->reply.http_status != 0;
}

/* ---- one call's run, for any driver ----
 * A driver moves bytes; the run decides everything else. It asks
 * st_run_next what to do: START sending *job (its url is ready); WAIT for an
 * answer, or until *wake when that is not 0 (a rate or a backoff); or DONE.
 * It tells every started job's end: st_run_answered once job->reply holds an
 * HTTP answer (http_status, body, seconds, new_connection, request_sent),
 * st_run_failed with job->err and job->reply.request_sent for a transport
 * failure ("the request may have left" or not), st_run_not_sent when it
 * could not even start it. */
typedef enum st_run_step { ST_RUN_START, ST_RUN_WAIT, ST_RUN_DONE } st_run_step;

typedef struct st_run {
    st_engine *e;
    st_job_source *src;
    st_job *slots;
    size_t nslots;
    size_t running;
    size_t limit;    /* most jobs running at once: concurrency, or fewer */
    size_t waiting;  /* retries waiting for their backoff */
    int exhausted;   /* the source has no more jobs */
    size_t held;     /* jobs handed out, not yet let go (src->leaving) */
    int finished;    /* src->finish was called */
} st_run;

st_run_step st_run_next(st_run *run, st_job **job, double *wake);
/* 1 when the next step can only be a WAIT with no wake time: nothing more
 * can start until a job in flight ends (every slot busy, or no more jobs),
 * and no retry is waiting. */
int st_run_full(const st_run *run);
void st_run_answered(st_run *run, st_job *job);
void st_run_failed(st_run *run, st_job *job);
void st_run_not_sent(st_run *run, st_job *job);
/* Asks the source's leaving() (if any) before job leaves: 0 when it may
 * go; else the job has ended unsent (`closed`) and no more jobs start. */
int st_run_let_go(st_run *run, st_job *job);
/* Asks the source's leaving() once for every held job: each then starts
 * (start(job, ctx)) or ends unsent. */
void st_run_release_held(st_run *run, void (*start)(st_job *, void *),
                         void *ctx);

/* Holds job for the group's release when the source has leaving():
 * 1 (held), or 0 when it may start at once. */
int st_run_hold(st_run *run, st_job *job);

/* ---- tasks: calls driven from outside (docs/DRIVERS.md) ---- */

typedef struct st_task st_task;
typedef enum st_step { ST_STEP_START, ST_STEP_WAIT, ST_STEP_DONE } st_step;

/* What a kind of call adds to the task it is made on. */
typedef struct st_task_kind {
    /* Frees the call's own state (what its jobs in flight hold too, when
     * the task is dropped before its end). NULL: nothing to free. */
    void (*drop)(st_task *task);
    /* A call made of rounds of runs (wait): its next step and the round in
     * progress (NULL between rounds). NULL for a call of one run. */
    st_step (*next)(st_task *task, size_t *job, const char **url,
                    double *wait);
    st_task *(*round)(const st_task *task);
} st_task_kind;

struct st_task {
    st_engine *e;
    const st_task_kind *kind;
    st_job_source src;
    st_run run;
    int running; /* st_task_start made its run */
    size_t size; /* of its block, kept by the engine for the next task */
};

/* A zeroed task of size bytes (a call's struct that starts with its
 * st_task), the engine's spare when it fits; NULL without memory. */
st_task *st_task_alloc(st_engine *e, size_t size, const st_task_kind *kind);
/* Makes the task's run, slots for at most max_jobs (0: unknown): the task,
 * or NULL (the task freed, err says so when given) without memory. */
st_task *st_task_start(st_task *task, size_t max_jobs, st_error *err);

/* What the driver does next: START sending *url as job *job (1, 2, ...);
 * WAIT for a job's end, or at most *wait seconds when that is not negative
 * (never below a millisecond); or DONE. */
st_step st_task_next(st_task *task, size_t *job, const char **url,
                     double *wait);
/* 1 when, after a START, the next step could only be a WAIT with no time
 * limit: the driver may run the job at once, without asking. */
int st_task_full(const st_task *task);
/* How job ended: an HTTP answer (its body at most max_response bytes), or
 * a transport failure (code, message, and whether the request may have
 * left). -1 for a job that is not running. */
int st_task_answer(st_task *task, size_t job, long http_status,
                   const char *body, size_t n, double seconds,
                   int new_connection);
int st_task_fail(st_task *task, size_t job, st_code code,
                 const char *message, int sent, double seconds,
                 int new_connection);
/* Starts no more requests; those in flight still end. */
void st_task_stop(st_task *task);
void st_task_free(st_task *task);

#endif
