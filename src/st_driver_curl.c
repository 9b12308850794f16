/* The libcurl driver (see st_driver_curl.h). */
#include "st_clock.h"
#include "st_driver_curl.h"

typedef struct curl_drive {
    st_run *run;
    st_transport *t;
} curl_drive;

/* How long the transport may wait for an answer: until wake when a rate
 * or a backoff set one, else a second (answers end the wait sooner). */
static double poll_time(double wake) {
    return wake > 0 ? wake - st_now() : 1.0;
}

static void start_transfer(st_job *job, void *ctx) {
    curl_drive *d = ctx;
    if (st_transport_start(d->t, job->url.data, job->call == ST_CALL_SEND,
                           &job->reply, job, &job->err) != 0)
        st_run_not_sent(d->run, job);
}

/* A job whose source wants to know when requests leave waits for the
 * group's release; any other starts at once. */
static void start_or_hold(curl_drive *d, st_job *job) {
    if (!st_run_hold(d->run, job))
        start_transfer(job, d);
}

static void release_held(curl_drive *d) {
    st_run_release_held(d->run, start_transfer, d);
}

static void collect_finished(curl_drive *d) {
    void *cookie;
    int rc;
    st_error err;
    while (st_transport_next_done(d->t, &cookie, &rc, &err)) {
        st_job *job = cookie;
        if (rc == 0) {
            st_run_answered(d->run, job);
        } else {
            job->err = err;
            st_run_failed(d->run, job);
        }
    }
}

/* Transfers kept between calls: a sequential caller uses one, and a bulk
 * call's others are freed when it ends (its memory back, not held by an
 * idle client). */
#define ST_IDLE_KEPT 4

void st_driver_curl_run(st_run *run, st_transport *t) {
    curl_drive d;
    st_job *job;
    double wake, max_wait;
    size_t started = 0;
    d.run = run;
    d.t = t;
    for (;;) {
        st_run_step step = st_run_next(run, &job, &wake);
        if (step == ST_RUN_START) {
            /* Before a second job: the first request on its way (on
             * loopback or a fast network, a poll or two), not behind the
             * connects of every other slot (200 took 5 ms). A lone
             * request pays nothing for it. */
            if (started++ == 1) {
                release_held(&d);
                st_transport_poll(t, 0);
                collect_finished(&d);
            }
            start_or_hold(&d, job);
            continue;
        }
        if (step == ST_RUN_DONE)
            break;
        /* Nothing more can start: the held group leaves now, never
         * waiting for the answers in flight (that would drain the
         * pipeline each group: a caller that syncs a group batches its
         * syncs itself, as the campaign does). */
        if (run->held > 0) {
            release_held(&d);
            continue;
        }
        max_wait = poll_time(wake);
        st_transport_poll(t, max_wait);
        collect_finished(&d);
    }
    st_transport_keep_idle(t, ST_IDLE_KEPT);
}
