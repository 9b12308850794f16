/* The read-only calls: status and balance, each a source of jobs for the
 * engine. Validation first: nothing is sent for a bad id. */
#include <stdlib.h>
#include <string.h>

#include "st_status.h"

static int read_status(const char *body, size_t n, void *out, st_error *err) {
    return st_parse_status_answer(body, n, out, err);
}

static int read_balance(const char *body, size_t n, void *out,
                        st_error *err) {
    return st_parse_balance_answer(body, n, out, err);
}

static int check_ids(const char *const *ids, size_t n, int name_items,
                     st_error *err) {
    size_t i;
    for (i = 0; i < n; i++)
        if (st_id_check(ids[i], strlen(ids[i]), err) != 0)
            return name_items ? st_fail_item(err, "invalid id", i) : -1;
    return 0;
}

int st_check_ids(const char *const *ids, size_t n, st_error *err) {
    return check_ids(ids, n, 1, err);
}

/* ---- status: the job source ---------------------------------------------- */

typedef struct status_source {
    st_client *c;
    const char *const *ids;
    const size_t *which; /* the indexes asked this round; NULL: all */
    size_t m, next;
    st_status *out;
    st_error *errs;
    const st_status_hooks *hooks;
} status_source;

typedef struct status_call {
    st_task task; /* first: the engine sees the call as its task */
    status_source status;
} status_call;

static int status_next(void *ctx, st_job *job) {
    status_source *s = ctx;
    st_credentials cred = st_client_credentials(s->c);
    size_t i;
    if (s->next == s->m)
        return 0;
    i = s->which ? s->which[s->next] : s->next;
    s->next++;
    job->call = ST_CALL_STATUS;
    job->part = i;
    st_build_status_url(&job->url, &cred, s->ids[i]);
    return 1;
}

static st_code status_read(void *ctx, st_job *job) {
    status_source *s = ctx;
    if (st_client_read_answer(s->c, &job->reply.body, read_status,
                              &s->out[job->part], &job->err) != 0)
        return job->err.code;
    return ST_OK;
}

static void status_done(void *ctx, st_job *job) {
    status_source *s = ctx;
    st_error_copy(&s->errs[job->part], &job->err);
    if (s->hooks && s->hooks->on_result)
        s->hooks->on_result(s->hooks->ctx, job->part, &s->out[job->part],
                            &s->errs[job->part]);
}

static st_task *begin_status(st_client *c, const char *const *ids,
                             const size_t *which, size_t m, st_status *out,
                             st_error *errs, const st_status_hooks *hooks) {
    status_call *call = (status_call *)st_task_alloc(
        st_client_engine(c), sizeof *call, NULL);
    status_source *s;
    if (!call)
        return NULL;
    s = &call->status;
    s->c = c;
    s->ids = ids;
    s->which = which;
    s->m = m;
    s->out = out;
    s->errs = errs;
    s->hooks = hooks;
    call->task.src.next = status_next;
    call->task.src.read = status_read;
    call->task.src.done = status_done;
    call->task.src.ctx = s;
    return st_task_start(&call->task, m, NULL);
}

st_task *st_status_round_task(st_client *c, const char *const *ids,
                              const size_t *which, size_t m, st_status *out,
                              st_error *errs) {
    return begin_status(c, ids, which, m, out, errs, NULL);
}

/* Asks for the statuses of ids[which[k]], k < m (all n when which is
 * NULL): out[i] where errs[i].code is ST_OK, for each i asked. */
void st_status_round(st_client *c, const char *const *ids,
                     const size_t *which, size_t m, st_status *out,
                     st_error *errs, const st_status_hooks *hooks) {
    st_task *call = begin_status(c, ids, which, m, out, errs, hooks);
    size_t k;
    if (call) {
        st_client_run(c, call);
        return;
    }
    for (k = 0; k < m; k++) { /* each id still gets its one outcome */
        size_t i = which ? which[k] : k;
        st_nomem(&errs[i]);
        if (hooks && hooks->on_result)
            hooks->on_result(hooks->ctx, i, &out[i], &errs[i]);
    }
}

st_task *st_task_status_many(st_client *c, const char *const *ids, size_t n,
                             st_status *out, st_error *errs,
                             const st_status_hooks *hooks, st_error *err) {
    st_task *call;
    if (check_ids(ids, n, 1, err) != 0)
        return NULL;
    call = begin_status(c, ids, NULL, n, out, errs, hooks);
    if (!call)
        st_nomem(err);
    return call;
}

int st_client_status_many(st_client *c, const char *const *ids, size_t n,
                          st_status *out, st_error *errs,
                          const st_status_hooks *hooks, st_error *err) {
    if (check_ids(ids, n, 1, err) != 0)
        return -1;
    st_status_round(c, ids, NULL, n, out, errs, hooks);
    return 0;
}

int st_client_status(st_client *c, const char *id, st_status *out,
                     st_error *err) {
    if (check_ids(&id, 1, 0, err) != 0)
        return -1;
    st_status_round(c, &id, NULL, 1, out, err, NULL);
    return err->code == ST_OK ? 0 : -1;
}

int st_client_build_url(const st_client *c, st_call call, const char *id,
                        st_buf *url, st_error *err) {
    st_credentials cred = st_client_credentials(c);
    if (call == ST_CALL_STATUS) {
        if (st_id_check(id, strlen(id), err) != 0)
            return -1;
        st_build_status_url(url, &cred, id);
    } else {
        st_build_balance_url(url, &cred);
    }
    return url->failed ? st_nomem(err) : 0;
}

/* ---- balance: a source of one job ---------------------------------------- */

typedef struct balance_source {
    st_client *c;
    st_balance *out;
    st_error *err;
    int given;
} balance_source;

typedef struct balance_call {
    st_task task;
    balance_source balance;
} balance_call;

static int balance_next(void *ctx, st_job *job) {
    balance_source *s = ctx;
    st_credentials cred = st_client_credentials(s->c);
    if (s->given)
        return 0;
    s->given = 1;
    job->call = ST_CALL_BALANCE;
    st_build_balance_url(&job->url, &cred);
    return 1;
}

static st_code balance_read(void *ctx, st_job *job) {
    balance_source *s = ctx;
    if (st_client_read_answer(s->c, &job->reply.body, read_balance,
                              s->out, &job->err) != 0)
        return job->err.code;
    return ST_OK;
}

static void balance_done(void *ctx, st_job *job) {
    balance_source *s = ctx;
    st_error_copy(s->err, &job->err);
}

st_task *st_task_balance(st_client *c, st_balance *out, st_error *err) {
    balance_call *call = (balance_call *)st_task_alloc(
        st_client_engine(c), sizeof *call, NULL);
    balance_source *s;
    if (!call) {
        st_nomem(err);
        return NULL;
    }
    s = &call->balance;
    s->c = c;
    s->out = out;
    s->err = err;
    err->code = ST_E_NETWORK; /* balance_done always sets it */
    call->task.src.next = balance_next;
    call->task.src.read = balance_read;
    call->task.src.done = balance_done;
    call->task.src.ctx = s;
    return st_task_start(&call->task, 1, err);
}

int st_client_balance(st_client *c, st_balance *out, st_error *err) {
    st_task *call = st_task_balance(c, out, err);
    if (!call)
        return -1;
    st_client_run(c, call);
    return err->code == ST_OK ? 0 : -1;
}
