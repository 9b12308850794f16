/* wait: the rule of its rounds, for the blocking call and for drivers. */
#include <math.h>
#include <stdlib.h>

#include "st_clock.h"
#include "st_wait.h"

int st_wait_check(double timeout, double interval, st_error *err) {
    if (!isfinite(timeout) || timeout < 0)
        return st_fail(err, ST_E_INVALID,
                       "invalid wait option 'timeout': want a finite number "
                       "of seconds, 0 or more");
    if (!isfinite(interval) || interval < 0)
        return st_fail(err, ST_E_INVALID,
                       "invalid wait option 'interval': want a finite number "
                       "of seconds, 0 or more");
    return 0;
}

/* Nothing will change any more: a final state, or an id the gateway never
 * accepted. Other failures (timeouts, refusals) are asked again. */
static int status_settled(const st_status *s, const st_error *e) {
    return e->code == ST_OK ? s->final : e->code == ST_E_NOT_FOUND;
}

/* The indexes of the ids not settled yet (all before the first round). */
static size_t unsettled(const st_status *out, const st_error *errs,
                        size_t n, int first_round, size_t *which) {
    size_t i, m = 0;
    for (i = 0; i < n; i++)
        if (first_round || !status_settled(&out[i], &errs[i]))
            which[m++] = i;
    return m;
}

/* One wait, whoever drives it: its ids, its answers so far, and when the
 * next round of status requests may start. */
typedef struct wait_state {
    st_client *c;
    const char *const *ids;
    size_t n;
    st_status *out;
    st_error *errs;
    size_t *which; /* the ids of the next round */
    size_t m;      /* how many */
    double deadline, interval, not_before;
    int round;     /* rounds started */
    int planned;   /* which/m/not_before hold the next round */
    int over;
} wait_state;

typedef enum wait_step { WAIT_ROUND, WAIT_SLEEP, WAIT_OVER } wait_step;

static void wait_free(wait_state *w) {
    if (w)
        free(w->which);
    free(w);
}

static wait_state *wait_new(st_client *c, const char *const *ids, size_t n,
                            double timeout, double interval, st_status *out,
                            st_error *errs, st_error *err) {
    wait_state *w;
    if (st_wait_check(timeout, interval, err) != 0 ||
        st_check_ids(ids, n, err) != 0)
        return NULL;
    w = calloc(1, sizeof *w);
    if (w)
        w->which = malloc((n ? n : 1) * sizeof *w->which);
    if (!w || !w->which) {
        wait_free(w);
        st_nomem(err);
        return NULL;
    }
    w->c = c;
    w->ids = ids;
    w->n = n;
    w->out = out;
    w->errs = errs;
    w->deadline = st_now() + timeout;
    w->interval =
        interval < ST_WAIT_MIN_INTERVAL ? ST_WAIT_MIN_INTERVAL : interval;
    return w;
}

/* The rule of wait, for every driver: a first round asks every id; each
 * later one, an interval after the one before, asks those not settled
 * (final, or never accepted). It ends when all are settled, when the next
 * round would start after the timeout, or when the client is stopped.
 * ROUND: the round of w->which[0..m) may start now; SLEEP: not before
 * *left seconds; OVER. */
static wait_step wait_next(wait_state *w, double *left) {
    double now;
    if (w->over)
        return WAIT_OVER;
    if (!w->planned) {
        w->m = unsettled(w->out, w->errs, w->n, w->round == 0, w->which);
        if (w->m == 0 || (w->round > 0 && st_client_stopped(w->c))) {
            w->over = 1;
            return WAIT_OVER;
        }
        if (w->round > 0) {
            now = st_now();
            if (now + w->interval > w->deadline) {
                w->over = 1;
                return WAIT_OVER;
            }
            w->not_before = now + w->interval;
        }
        w->planned = 1;
    }
    if (w->round > 0 && (now = st_now()) < w->not_before) {
        *left = w->not_before - now;
        return WAIT_SLEEP;
    }
    w->planned = 0;
    w->round++;
    return WAIT_ROUND;
}

int st_client_wait(st_client *c, const char *const *ids, size_t n,
                   double timeout, double interval, st_status *out,
                   st_error *errs, st_error *err) {
    wait_state *w = wait_new(c, ids, n, timeout, interval, out, errs, err);
    wait_step step;
    double left;
    if (!w)
        return -1;
    st_client_engine(c)->stopped = 0; /* an earlier call's stop is over */
    while ((step = wait_next(w, &left)) != WAIT_OVER) {
        if (step == WAIT_SLEEP)
            st_sleep(left);
        else
            st_status_round(c, ids, w->which, w->m, out, errs, NULL);
    }
    wait_free(w);
    return 0;
}

/* ---- wait as a task: rounds of status tasks -------------------------------- */

typedef struct wait_call {
    st_task task; /* first: the engine sees the call as its task */
    wait_state *wait;
    st_task *round; /* the round in progress */
} wait_call;

static void drop_wait(st_task *task) {
    wait_call *call = (wait_call *)task;
    st_task_free(call->round);
    wait_free(call->wait);
}

static st_task *wait_round(const st_task *task) {
    return ((const wait_call *)task)->round;
}

static st_step wait_task_next(st_task *task, size_t *job, const char **url,
                              double *wait);

static const st_task_kind wait_kind = {drop_wait, wait_task_next, wait_round};

st_task *st_task_wait(st_client *c, const char *const *ids, size_t n,
                      double timeout, double interval, st_status *out,
                      st_error *errs, st_error *err) {
    wait_call *call;
    wait_state *w = wait_new(c, ids, n, timeout, interval, out, errs, err);
    if (!w)
        return NULL;
    call = (wait_call *)st_task_alloc(st_client_engine(c), sizeof *call,
                                      &wait_kind);
    if (!call) {
        wait_free(w);
        st_nomem(err);
        return NULL;
    }
    call->wait = w;
    return &call->task;
}

/* A wait driven from outside: its rounds' steps, with the sleeps between
 * them as WAITs that have a time. */
static st_step wait_task_next(st_task *task, size_t *job, const char **url,
                              double *wait) {
    wait_call *call = (wait_call *)task;
    wait_state *w = call->wait;
    double left;
    size_t k;
    for (;;) {
        if (call->round) {
            st_step step = st_task_next(call->round, job, url, wait);
            if (step != ST_STEP_DONE)
                return step;
            st_task_free(call->round);
            call->round = NULL;
        }
        if (task->src.stop) /* stopped: no further round */
            w->over = 1;
        switch (wait_next(w, &left)) {
        case WAIT_OVER:
            return ST_STEP_DONE;
        case WAIT_SLEEP:
            *wait = left;
            return ST_STEP_WAIT;
        default:
            call->round = st_status_round_task(w->c, w->ids, w->which, w->m,
                                               w->out, w->errs);
            if (!call->round) /* as st_status_round does without memory */
                for (k = 0; k < w->m; k++)
                    st_nomem(&w->errs[w->which[k]]);
            if (task->src.stop && call->round)
                st_task_stop(call->round);
        }
    }
}
