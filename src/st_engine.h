/* The engine every call runs on, and the client it belongs to. Private to
 * the core (st_client.c, st_engine.c, st_calls.c).
 *
 * One exchange, one owner: for each request the engine asks a job source
 * for the next job (the source builds its URL when it starts, so a bulk
 * call holds only the jobs in flight), hands it to the transport, has the
 * source read a 2xx answer, reports the exchange once (stats, on_request),
 * decides a retry by API.md's rules, redacts the error once, and gives the
 * job back to the source as done. */
#ifndef ST_ENGINE_H
#define ST_ENGINE_H

#include "st_client.h"
#include "st_clock.h"
#include "st_transport.h"

struct st_client {
    st_options opts; /* string fields point at owned copies */
    st_transport *transport;
    st_stats stats;
    st_buf prefix; /* every URL's encoded start, built once */
    st_exchange_hook hook;
    void *hook_ctx;
    double next_slot; /* earliest start of the next request under `rate` */
    st_rate_hook rate_hook; /* a rate shared beyond this client, or NULL */
    void *rate_ctx;
    int slot_reserved; /* next_slot came from rate_hook, not yet taken */
    int stopped;      /* st_client_stop: no new jobs start */
    struct st_job *slots; /* kept between calls (see st_engine.c) */
    int slots_in_use;     /* a run holds them */
    struct st_task *spare_task; /* the last call's, for the next (st_calls.c) */
    struct open_item *spare_item; /* the last send item's, likewise */
};

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
    st_client *c;
    st_job_source *src;
    st_job *slots;
    size_t nslots;
    size_t running;
    size_t limit;    /* most jobs running at once: concurrency, or fewer */
    size_t waiting;  /* retries waiting for their backoff */
    int exhausted;   /* the source has no more jobs */
    size_t held;     /* jobs handed out, not yet let go (src->leaving) */
} st_run;

/* -1 when there is no memory for its slots. max_jobs: as many as the run
 * can have (0: unknown), so a single call takes one slot. */
int st_run_init(st_run *run, st_client *c, st_job_source *src,
                size_t max_jobs);
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
void st_run_finish(st_run *run);

/* The libcurl driver: runs a run's jobs on the client's transport, at
 * most `concurrency` at once, until every job is done. */
void st_engine_drive(st_run *run);
/* Frees the slots a client keeps between calls. */
void st_engine_free_slots(st_client *c);

#endif
