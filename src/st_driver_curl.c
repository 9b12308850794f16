/* The libcurl driver (see st_driver_curl.h). */
#include "st_clock.h"
#include "st_driver_curl.h"

typedef struct curl_drive {
    st_run *run;
    st_transport *t;
    double held_since; /* when the first job of the next group was held */
} curl_drive;

/* How long a held group waits for the requests in flight before it
 * leaves without them. One sync (fdatasync: 0.2 to 1 ms on a disk) covers
 * a group: waiting for answers that come within a millisecond makes the
 * groups whole and their syncs fewer (at most concurrency rows may be
 * started at once, so a sync per half of them halves the rate), while on
 * a slow gateway it delays a request by at most this. */
#define ST_GROUP_WAIT 0.001

/* How long the transport may wait for an answer: until wake when a rate
 * or a backoff set one, else a second (answers end the wait sooner). */
static double poll_time(double wake) {
    return wake > 0 ? wake - st_now() : 1.0;
}

/* The held group leaves when nothing else is in flight, or once it has
 * waited ST_GROUP_WAIT; until then the poll waits at most for that. */
static int group_may_leave(const curl_drive *d, double *max_wait) {
    double left;
    if (d->run->held == d->run->running)
        return 1;
    left = d->held_since + ST_GROUP_WAIT - st_now();
    if (left <= 0)
        return 1;
    if (left < *max_wait)
        *max_wait = left;
    return 0;
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
    else if (d->run->held == 1)
        d->held_since = st_now();
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
        max_wait = poll_time(wake);
        if (run->held > 0 && group_may_leave(&d, &max_wait)) {
            release_held(&d); /* nothing more can start: the group leaves */
            continue;
        }
        st_transport_poll(t, max_wait);
        collect_finished(&d);
    }
    st_transport_keep_idle(t, ST_IDLE_KEPT);
}
