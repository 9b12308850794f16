/* The job engine every call runs on: a list of requests driven through the
 * client's multi handle with the client's concurrency, rate limit, retry
 * rules and statistics. Private to the core (st_client.c, st_calls.c). */
#ifndef ST_ENGINE_H
#define ST_ENGINE_H

#include "st_core.h"
#include "st_transport.h"

typedef enum st_job_state { ST_JOB_WAITING, ST_JOB_RUNNING, ST_JOB_DONE } st_job_state;

typedef struct st_job {
    st_call call;
    st_buf url;
    st_reply reply; /* the last attempt's answer */
    st_error err;
    int rc;         /* once done: 0 when a 2xx answer is in reply.body */
    int attempts;
    st_job_state state;
    double not_before; /* a retry waits for its backoff */
} st_job;

void st_job_init(st_job *job, st_call call);
void st_job_free(st_job *job);

/* Runs every job to its end. Jobs that fail before any answer (or with a
 * non-2xx one) are reported here; answered ones by the caller, after
 * parsing, through st_client_report_answer. */
void st_client_run_jobs(st_client *c, st_job *jobs, size_t n);
void st_client_report_answer(st_client *c, const st_job *job, st_code code);
void st_client_redact_error(const st_client *c, st_error *err);

#endif
