/* The engine: concurrency, rate limit, retries, reporting and redaction of
 * every exchange, for any job source, and the task drivers step (see
 * st_engine.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "st_clock.h"
#include "st_engine.h"

void st_engine_init(st_engine *e, int retries, int concurrency,
                    long max_response, double rate) {
    memset(e, 0, sizeof *e);
    e->retries = retries;
    e->concurrency = concurrency;
    e->max_response = max_response;
    e->rate = rate;
}

void st_engine_stop(st_engine *e) { e->stopped = 1; }

const char *st_call_name(st_call call) {
    static const char *const names[] = {"send", "status", "balance"};
    return names[call];
}

/* Backoff before retry n (0-based): 50 ms, 100 ms, 200 ms ... at most 1 s. */
static double retry_backoff(int attempt) {
    double s = 0.05;
    while (attempt-- > 0 && s < 1.0)
        s *= 2;
    return s < 1.0 ? s : 1.0;
}

/* Stats and on_request, once per exchange, failed and retried ones too. */
static void report_exchange(st_engine *c, const st_job *job, st_code code) {
    const st_reply *reply = &job->reply;
    st_exchange info;
    st_buf shown = ST_BUF_INIT;
    c->stats.requests++;
    if (code != ST_OK)
        c->stats.failures[code]++;
    if (reply->new_connection)
        c->stats.connections_opened++;
    else if (reply->request_sent)
        c->stats.connections_reused++;
    c->stats.seconds_total += reply->seconds;
    if (reply->seconds > c->stats.seconds_max)
        c->stats.seconds_max = reply->seconds;
    if (!c->hook)
        return;
    st_redact_query(st_buf_str(&job->url), &shown);
    info.call = job->call;
    info.url = st_buf_str(&shown);
    info.http_status = reply->http_status;
    info.seconds = reply->seconds;
    info.code = code;
    c->hook(c->hook_ctx, &info);
    st_buf_free(&shown);
}

static int http_failed(const st_reply *reply, st_error *err) {
    long s = reply->http_status;
    if (s >= 300 && s < 400)
        return st_fail(err, ST_E_HTTP,
                       "gateway answered HTTP %ld (a redirect: not followed, "
                       "the password would travel with it)",
                       s);
    return st_fail(err, ST_E_HTTP, "gateway answered HTTP %ld", s);
}

/* API.md's retry rules. A send may be repeated only when it provably never
 * reached the gateway; the read-only calls also on server-side trouble. */
static int may_retry(st_call call, const st_reply *reply, st_code code) {
    if (call == ST_CALL_SEND)
        return !reply->request_sent &&
               (code == ST_E_CONNECT || code == ST_E_TIMEOUT);
    return code == ST_E_TIMEOUT || code == ST_E_CONNECT ||
           code == ST_E_NETWORK ||
           (code == ST_E_HTTP && reply->http_status >= 500);
}

/* A send that may have reached the gateway says so: the caller must not
 * assume it failed (and must not simply send again). */
static void note_unknown_outcome(st_job *job) {
    st_error *err = &job->err;
    size_t len = strlen(err->message);
    if (job->call == ST_CALL_SEND && job->reply.request_sent &&
        (err->code == ST_E_TIMEOUT || err->code == ST_E_NETWORK))
        snprintf(err->message + len, sizeof err->message - len, "%s",
                 " (the request was sent: the outcome is unknown)");
}

/* The longest a shared rate may make a request wait: an answer beyond it
 * is a broken counter, not a plan. */
#define ST_MAX_RATE_WAIT 3600.0

/* Whether `rate` lets a request start now; if not, lowers *wake (0: not
 * set yet) to when. A shared rate (rate_hook) reserves its slot once, at
 * the first ask, and keeps it until a request takes it. */
static int rate_ready(st_engine *c, double now, double *wake) {
    if (c->rate <= 0)
        return 1;
    if (c->rate_hook && !c->slot_reserved) {
        double delay = c->rate_hook(c->rate_ctx, 1.0 / c->rate);
        if (!(delay > 0)) /* NaN too */
            delay = 0;
        else if (delay > ST_MAX_RATE_WAIT)
            delay = ST_MAX_RATE_WAIT;
        c->next_slot = now + delay;
        c->slot_reserved = 1;
    }
    if (c->next_slot <= now)
        return 1;
    if (*wake == 0 || c->next_slot < *wake)
        *wake = c->next_slot;
    return 0;
}

static void rate_take(st_engine *c, double now) {
    if (c->rate <= 0)
        return;
    if (c->rate_hook)
        c->slot_reserved = 0; /* the next request reserves its own */
    else
        c->next_slot = now + 1.0 / c->rate;
}

/* The job is over: the source gets it, and the slot is free again. */
static void finish_job(st_run *run, st_job *job) {
    if (job->err.code != ST_OK)
        st_redact_message(job->err.message, sizeof job->err.message);
    run->src->done(run->src->ctx, job);
    job->state = ST_JOB_FREE;
}

/* Asks the source for a new job in a free slot; 0 when it has none. */
static int take_new_job(st_run *run, st_job *job) {
    st_buf_truncate(&job->url, 0);
    st_buf_truncate(&job->reply.body, 0);
    job->err.code = ST_OK;
    job->err.message[0] = '\0';
    job->attempts = 0;
    job->not_before = 0;
    job->reply.http_status = 0; /* a job that never leaves says so */
    job->reply.request_sent = 0;
    job->tag = NULL;
    job->part = 0;
    if (run->src->next(run->src->ctx, job))
        return 1;
    run->exhausted = 1;
    return 0;
}

static void retry_or_finish(st_run *run, st_job *job);

static st_run_step hand_out(st_run *run, st_job *job, st_job **out) {
    job->state = ST_JOB_RUNNING;
    run->running++;
    st_buf_truncate(&job->reply.body, 0);
    *out = job;
    return ST_RUN_START;
}

/* A retry whose backoff has passed, if the rate allows one now. */
static st_job *ready_retry(st_run *run, double now, double *wake) {
    size_t i;
    for (i = 0; run->waiting > 0 && i < run->nslots; i++) {
        st_job *job = &run->slots[i];
        if (job->state != ST_JOB_WAITING)
            continue;
        if (job->not_before > now) {
            if (*wake == 0 || job->not_before < *wake)
                *wake = job->not_before;
        } else if (rate_ready(run->e, now, wake)) {
            run->waiting--;
            return job;
        }
    }
    return NULL;
}

static st_job *free_slot(const st_run *run) {
    size_t i;
    for (i = 0; i < run->nslots; i++)
        if (run->slots[i].state == ST_JOB_FREE)
            return &run->slots[i];
    return NULL;
}

/* No new job starts once the call or the whole client was asked to stop
 * (a callback raised, or closed the client). */
static int stopping(const st_run *run) {
    return run->src->stop || run->e->stopped;
}

/* The slot a new job could start in now, the rate aside: fewer than limit
 * running, the source not exhausted, no stop asked; NULL when none. */
static st_job *slot_for_new_job(const st_run *run) {
    if (run->running >= run->limit || run->exhausted || stopping(run))
        return NULL;
    return free_slot(run);
}

st_run_step st_run_next(st_run *run, st_job **job, double *wake) {
    st_engine *c = run->e;
    int timed = run->waiting > 0 || c->rate > 0;
    double now = timed ? st_now() : 0; /* the clock only where it matters */
    st_job *next;
    *wake = 0;
    next = ready_retry(run, now, wake);
    if (next) {
        rate_take(c, now);
        return hand_out(run, next, job);
    }
    while ((next = slot_for_new_job(run)) != NULL &&
           rate_ready(c, now, wake) && take_new_job(run, next)) {
        rate_take(c, now);
        if (!next->url.failed)
            return hand_out(run, next, job);
        /* No memory to build its URL: it ends here, for every driver. */
        st_nomem(&next->err);
        finish_job(run, next);
    }
    if (run->running == 0 && run->waiting == 0 &&
        (run->exhausted || stopping(run))) {
        if (!run->finished && run->src->finish) {
            run->finished = 1;
            run->src->finish(run->src->ctx);
        }
        return ST_RUN_DONE;
    }
    return ST_RUN_WAIT;
}

int st_run_full(const st_run *run) {
    return run->waiting == 0 && slot_for_new_job(run) == NULL;
}

void st_run_answered(st_run *run, st_job *job) {
    st_engine *c = run->e;
    run->running--;
    job->attempts++;
    if (job->reply.http_status < 200 || job->reply.http_status > 299) {
        http_failed(&job->reply, &job->err);
        retry_or_finish(run, job);
        return;
    }
    {
        st_code code = run->src->read(run->src->ctx, job);
        report_exchange(c, job, code);
        if (code == ST_OK)
            job->err.code = ST_OK, job->err.message[0] = '\0';
        finish_job(run, job);
    }
}

void st_run_failed(st_run *run, st_job *job) {
    run->running--;
    job->attempts++;
    retry_or_finish(run, job);
}

/* A failed attempt (job->err set), already counted: report it, then retry
 * by the rules or give the job its last word. */
static void retry_or_finish(st_run *run, st_job *job) {
    st_engine *c = run->e;
    report_exchange(c, job, job->err.code);
    if (job->attempts <= c->retries &&
        may_retry(job->call, &job->reply, job->err.code)) {
        c->stats.retries++;
        job->state = ST_JOB_WAITING;
        job->not_before = st_now() + retry_backoff(job->attempts - 1);
        run->waiting++;
        return;
    }
    note_unknown_outcome(job);
    finish_job(run, job);
}

void st_run_not_sent(st_run *run, st_job *job) {
    run->running--;
    finish_job(run, job); /* never left: nothing to report */
}

/* The source refused to let jobs go: they end here, provably unsent. */
static void cancel_unsent(st_run *run, st_job *job) {
    run->src->stop = 1;
    job->reply.request_sent = 0;
    job->reply.http_status = 0;
    st_fail(&job->err, ST_E_CLOSED,
            "not sent: the call was stopped before this request left");
    st_run_not_sent(run, job);
}

int st_run_let_go(st_run *run, st_job *job) {
    if (!run->src->leaving || run->src->leaving(run->src->ctx) == 0)
        return 0;
    cancel_unsent(run, job);
    return -1;
}

/* A client keeps its slots (and their URL and answer buffers) from call
 * to call when it runs few requests at once, so a single call allocates
 * nothing; a wide bulk call takes its slots for the call only. */
#define ST_KEPT_SLOTS 16

static void free_slots(st_job *slots, size_t n) {
    size_t i;
    for (i = 0; i < n && slots; i++) {
        st_buf_free(&slots[i].url);
        st_reply_free(&slots[i].reply);
    }
    free(slots);
}

static void free_task_block(st_task *task);

void st_engine_free(st_engine *e) {
    free_slots(e->slots, e->slots ? (size_t)e->concurrency : 0);
    e->slots = NULL;
    free(e->spare_task); /* a spare owns nothing */
    e->spare_task = NULL;
    free(e->spare_item);
    e->spare_item = NULL;
}

/* -1 when there is no memory for its slots. max_jobs: as many as the run
 * can have (0: unknown), so a single call takes one slot. */
static int run_init(st_run *run, st_engine *e, st_job_source *src,
                    size_t max_jobs) {
    size_t want = (size_t)e->concurrency;
    memset(run, 0, sizeof *run);
    run->e = e;
    run->src = src;
    run->limit = max_jobs > 0 && max_jobs < want ? max_jobs : want;
    if (e->concurrency <= ST_KEPT_SLOTS && !e->slots_in_use) {
        if (!e->slots) /* sized for the client's widest run */
            e->slots = calloc(want, sizeof(st_job));
        run->slots = e->slots;
        run->nslots = want;
        e->slots_in_use = run->slots != NULL;
    } else { /* a run of its own: no more slots than it has jobs */
        run->nslots = run->limit;
        run->slots = calloc(run->nslots, sizeof(st_job));
    }
    return run->slots ? 0 : -1;
}

static void run_finish(st_run *run) {
    size_t i;
    for (i = 0; run->slots && i < run->nslots; i++) { /* dropped midway */
        run->slots[i].state = ST_JOB_FREE;
        run->slots[i].tag = NULL;
    }
    if (run->slots && run->slots == run->e->slots)
        run->e->slots_in_use = 0;
    else
        free_slots(run->slots, run->nslots);
}

/* ---- held jobs: a group that leaves together ---------------------------- */

int st_run_hold(st_run *run, st_job *job) {
    if (!run->src->leaving)
        return 0;
    job->held = 1;
    run->held++;
    return 1;
}

void st_run_release_held(st_run *run, void (*start)(st_job *, void *),
                         void *ctx) {
    size_t i;
    int refused;
    if (run->held == 0)
        return;
    refused = run->src->leaving(run->src->ctx) != 0;
    for (i = 0; i < run->nslots && run->held > 0; i++) {
        st_job *job = &run->slots[i];
        if (!job->held)
            continue;
        job->held = 0;
        run->held--;
        if (refused)
            cancel_unsent(run, job);
        else
            start(job, ctx);
    }
}

/* ---- tasks ----------------------------------------------------------------- */

/* The engine keeps the block of its last task for the next: a call, or
 * each round of a wait, allocates none. */
st_task *st_task_alloc(st_engine *e, size_t size, const st_task_kind *kind) {
    st_task *task = e->spare_task;
    size_t have = e->spare_task_size;
    if (task && have >= size) {
        e->spare_task = NULL;
        memset(task, 0, have);
    } else {
        task = calloc(1, size);
        have = size;
    }
    if (!task)
        return NULL;
    task->e = e;
    task->kind = kind;
    task->size = have;
    return task;
}

static void free_task_block(st_task *task) {
    st_engine *e = task->e;
    if (!e->spare_task) {
        e->spare_task = task;
        e->spare_task_size = task->size;
    } else {
        free(task);
    }
}

st_task *st_task_start(st_task *task, size_t max_jobs, st_error *err) {
    if (run_init(&task->run, task->e, &task->src, max_jobs) == 0) {
        task->running = 1;
        return task;
    }
    st_task_free(task);
    if (err)
        st_nomem(err);
    return NULL;
}

void st_task_free(st_task *task) {
    if (!task)
        return;
    if (task->kind && task->kind->drop)
        task->kind->drop(task);
    if (task->running)
        run_finish(&task->run);
    free_task_block(task);
}

/* The round in progress of a call made of rounds (wait), else NULL. */
static st_task *round_of(const st_task *task) {
    return task->kind && task->kind->round ? task->kind->round(task) : NULL;
}

static int has_rounds(const st_task *task) {
    return task->kind && task->kind->next;
}

void st_task_stop(st_task *task) {
    st_task *round = round_of(task);
    task->src.stop = 1;
    if (round)
        st_task_stop(round);
}

st_step st_task_next(st_task *task, size_t *job, const char **url,
                     double *wait) {
    st_job *j;
    double wake;
    st_run_step step;
    if (has_rounds(task))
        return task->kind->next(task, job, url, wait);
    do
        step = st_run_next(&task->run, &j, &wake);
    while (step == ST_RUN_START && st_run_let_go(&task->run, j) != 0);
    *wait = -1;
    if (step == ST_RUN_START) {
        *job = (size_t)(j - task->run.slots) + 1;
        *url = st_buf_str(&j->url);
        return ST_STEP_START;
    }
    if (step == ST_RUN_DONE)
        return ST_STEP_DONE;
    if (wake > 0) {
        /* Never below a millisecond: a host's timer rounds a shorter one
         * to a busy loop (nginx logs each ngx.sleep(0)). */
        double left = wake - st_now();
        *wait = left > 0.001 ? left : 0.001;
    }
    return ST_STEP_WAIT;
}

int st_task_full(const st_task *task) {
    if (has_rounds(task)) {
        const st_task *round = round_of(task);
        return round && st_task_full(round);
    }
    return st_run_full(&task->run);
}

/* The running job a driver's handle names, or NULL. */
static st_job *running_job(st_task *task, size_t job) {
    st_job *j;
    if (!task->running || job < 1 || job > task->run.nslots)
        return NULL;
    j = &task->run.slots[job - 1];
    return j->state == ST_JOB_RUNNING ? j : NULL;
}

int st_task_answer(st_task *task, size_t job, long http_status,
                   const char *body, size_t n, double seconds,
                   int new_connection) {
    st_job *j;
    if (has_rounds(task)) {
        st_task *round = round_of(task);
        return round ? st_task_answer(round, job, http_status, body, n,
                                      seconds, new_connection)
                     : -1;
    }
    j = running_job(task, job);
    if (!j)
        return -1;
    j->reply.http_status = http_status;
    j->reply.request_sent = 1;
    j->reply.new_connection = new_connection;
    j->reply.seconds = seconds;
    st_buf_truncate(&j->reply.body, 0);
    if (n > (size_t)task->e->max_response)
        return st_task_fail(task, job, ST_E_TOO_LARGE,
                            "gateway answer is larger than max_response", 1,
                            seconds, new_connection);
    if (st_buf_append(&j->reply.body, body, n) != 0)
        return st_task_fail(task, job, ST_E_NOMEM, "not enough memory", 1,
                            seconds, new_connection);
    st_run_answered(&task->run, j);
    return 0;
}

int st_task_fail(st_task *task, size_t job, st_code code,
                 const char *message, int sent, double seconds,
                 int new_connection) {
    st_job *j;
    if (has_rounds(task)) {
        st_task *round = round_of(task);
        return round ? st_task_fail(round, job, code, message, sent, seconds,
                                    new_connection)
                     : -1;
    }
    j = running_job(task, job);
    if (!j)
        return -1;
    j->reply.http_status = 0;
    j->reply.request_sent = sent;
    j->reply.new_connection = new_connection;
    j->reply.seconds = seconds;
    st_fail(&j->err, code, "%s", message);
    st_run_failed(&task->run, j);
    return 0;
}
