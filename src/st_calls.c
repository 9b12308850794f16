/* The gateway calls, each a list of jobs for the engine: validation first
 * (nothing is sent for a bad argument), then requests, then answers. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "st_engine.h"

/* ---- answers that could not be read ------------------------------------- */

/* An unreadable answer is quoted in the error message, cut at 200 bytes.
 * Redacting the message afterwards would miss a password cut in two at
 * that point, so the quote is made again from a copy of the answer with
 * the password already taken out. The code stays the first reading's. */
typedef int (*answer_reader)(const char *body, size_t n, void *ctx,
                             st_error *err);

static void requote_without_password(const st_client *c, const st_buf *body,
                                     answer_reader read, void *ctx,
                                     st_error *err) {
    st_credentials cred = st_client_credentials(c);
    st_buf clean = ST_BUF_INIT;
    st_error again;
    if (err->code == ST_OK ||
        st_redact_bytes(st_buf_str(body), body->len, cred.password,
                        &clean) != 0) {
        st_buf_free(&clean);
        return;
    }
    if (read(st_buf_str(&clean), clean.len, ctx, &again) != 0)
        memcpy(err->message, again.message, sizeof err->message);
    st_buf_free(&clean);
}

typedef struct send_answer_ctx {
    size_t count;
    char (*ids)[ST_ID_MAX + 1];
} send_answer_ctx;

static int read_send_ids(const char *body, size_t n, void *ctx,
                         st_error *err) {
    send_answer_ctx *a = ctx;
    return st_parse_send_answer(body, n, a->count, a->ids, err);
}

static int read_status(const char *body, size_t n, void *out, st_error *err) {
    return st_parse_status_answer(body, n, out, err);
}

static int read_balance(const char *body, size_t n, void *out,
                        st_error *err) {
    return st_parse_balance_answer(body, n, out, err);
}

/* Reads a job's answer; on failure the message quotes no password. */
static int read_answer(const st_client *c, const st_job *job,
                       answer_reader read, void *ctx, st_error *err) {
    const st_buf *body = &job->reply.body;
    int rc = read(st_buf_str(body), body->len, ctx, err);
    if (rc != 0)
        requote_without_password(c, body, read, ctx, err);
    return rc;
}

/* ---- send ----------------------------------------------------------------- */

/* records and errors are one block (see open_item_new): freed as one. */
void st_send_result_free(st_send_result *res) {
    free(res->records);
    res->records = NULL;
    res->errors = NULL;
    res->count = res->nerrors = res->accepted = 0;
}

void st_send_result_take(st_send_result *to, st_send_result *from) {
    to->records = from->records, to->count = from->count;
    to->errors = from->errors, to->nerrors = from->nerrors;
    to->accepted = from->accepted;
    to->sent = from->sent;
    if (from->accepted == 0) /* only then has it a failure to tell */
        st_error_copy(&to->failure, &from->failure);
    from->records = NULL, from->errors = NULL;
    from->count = from->nerrors = from->accepted = 0;
}

/* The client's own sender was checked when it was made: items that use it
 * (most of a bulk call) are not checked again. */
static int check_send(const st_client *c, const st_recipients *r,
                      const st_send_params *p, st_error *err) {
    if (r->count == 0)
        return st_fail(err, ST_E_INVALID, "invalid recipients: none given");
    if (st_text_check(p->text, p->text_len, err) != 0)
        return -1;
    if (p->sender && p->sender != st_client_sender(c) &&
        st_sender_check(p->sender, strlen(p->sender), err) != 0)
        return -1;
    return 0;
}

/* Prefixes a validation error with the 1-based index of its item. */
static int fail_item(st_error *err, const char *what, size_t index) {
    char message[ST_ERR_MAX];
    snprintf(message, sizeof message, "%s", err->message);
    return st_fail(err, err->code, "%s %zu: %s", what, index + 1, message);
}

/* ---- send: the job source ------------------------------------------------ */

/* An item whose requests have started: its parts (runs of recipients that
 * fit one URL) and the outcome being filled in as they end. Only the items
 * in flight have one, so a bulk send holds no more than that. */
typedef struct open_item {
    size_t index;
    st_chunk *chunks; /* &whole, or a plan of several */
    size_t nchunks;
    st_chunk whole;   /* most items: one part, with no plan allocated */
    size_t started; /* parts handed to the engine so far */
    size_t left;    /* parts not done yet */
    st_send_result res;
} open_item;

typedef struct send_source {
    st_client *c;
    const st_send_item *items;
    size_t n;
    size_t next_item;
    open_item *starting; /* the item whose parts are being started */
    const st_send_hooks *hooks;
    st_chunk *plan;      /* a single send's parts, planned when checked */
    size_t plan_n;
    st_job_source *src;  /* stopped through it when on_start says so */
} send_source;

/* The client keeps the memory of its last task and of its last send item
 * for the next (a send, or each item of a bulk call, allocates neither):
 * spare zeroed for reuse, or a new zeroed block when there is none. */
static void *reuse_or_calloc(void *spare, size_t size) {
    if (!spare)
        return calloc(1, size);
    memset(spare, 0, size);
    return spare;
}

static open_item *open_item_alloc(st_client *c) {
    open_item *item = reuse_or_calloc(c->spare_item, sizeof *item);
    c->spare_item = NULL;
    return item;
}

static void open_item_free(st_client *c, open_item *item) {
    st_send_result_free(&item->res);
    if (item->chunks != &item->whole)
        free(item->chunks);
    if (!c->spare_item)
        c->spare_item = item;
    else
        free(item);
}

/* The item's outcome goes to the hook as soon as its last part is done. */
static void close_item(send_source *s, open_item *item) {
    st_send_result *res = &item->res;
    if (res->accepted == 0 && res->count > 0)
        st_error_copy(&res->failure, &res->errors[res->records[0].chunk]);
    s->hooks->on_result(s->hooks->ctx, item->index, res);
    open_item_free(s->c, item);
}

/* An item that could not start (no memory) fails whole, never sent. */
static void fail_item_start(send_source *s, size_t index) {
    open_item item;
    memset(&item, 0, sizeof item);
    item.index = index;
    st_nomem(&item.res.failure);
    s->hooks->on_result(s->hooks->ctx, index, &item.res);
}

/* An item's records and its requests' errors in one block, records
 * first: one allocation a send, not two. An error is written whole when
 * its request ends, so only the records start zeroed. */
static int alloc_outcome(st_send_result *res, size_t count, size_t nchunks) {
    size_t records = count * sizeof *res->records;
    char *block;
    if (count > ((size_t)-1 - nchunks * sizeof *res->errors) /
                    sizeof *res->records)
        return -1;
    block = malloc(records + nchunks * sizeof *res->errors);
    if (!block)
        return -1;
    memset(block, 0, records);
    res->records = (st_send_record *)(void *)block;
    res->errors = (st_error *)(void *)(block + records);
    return 0;
}

static open_item *open_item_new(send_source *s, size_t index) {
    const st_send_item *it = &s->items[index];
    st_credentials cred = st_client_credentials(s->c);
    const st_recipients *r = it->recipients;
    open_item *item = open_item_alloc(s->c);
    st_error err;
    size_t j;
    if (item && s->plan) { /* planned when it was checked */
        item->chunks = s->plan, item->nchunks = s->plan_n;
        s->plan = NULL;
    } else if (item && (s->n == 1 /* unplanned: it fit whole when checked */
                        || st_send_fits_whole(&cred, &it->params, r->count,
                                              ST_MAX_URL))) {
        item->whole.first = 0, item->whole.count = r->count;
        item->chunks = &item->whole, item->nchunks = 1;
    } else if (!item || st_plan_send(&cred, &it->params, r, ST_MAX_URL,
                                     &item->chunks, &item->nchunks,
                                     &err) != 0) {
        if (item)
            open_item_free(s->c, item);
        return NULL;
    }
    item->index = index;
    item->left = item->nchunks;
    if (alloc_outcome(&item->res, r->count, item->nchunks) != 0) {
        open_item_free(s->c, item);
        return NULL;
    }
    item->res.count = r->count;
    item->res.nerrors = item->nchunks;
    for (j = 0; j < r->count; j++)
        memcpy(item->res.records[j].to, st_recipient(r, j)->digits,
               sizeof item->res.records[j].to);
    return item;
}

/* The next item to start, after its on_start; NULL when there is none or
 * the hook asked to stop. */
static open_item *start_next_item(send_source *s) {
    while (s->next_item < s->n) {
        size_t index = s->next_item;
        open_item *item;
        if (s->hooks->on_start &&
            s->hooks->on_start(s->hooks->ctx, index) != 0) {
            s->src->stop = 1;
            return NULL;
        }
        s->next_item++;
        item = open_item_new(s, index);
        if (item)
            return item;
        fail_item_start(s, index);
    }
    return NULL;
}

static int send_next(void *ctx, st_job *job) {
    send_source *s = ctx;
    st_credentials cred = st_client_credentials(s->c);
    open_item *item = s->starting ? s->starting : start_next_item(s);
    const st_send_item *it;
    st_chunk part;
    if (!item)
        return 0;
    it = &s->items[item->index];
    part = item->chunks[item->started];
    job->call = ST_CALL_SEND;
    job->tag = item;
    job->part = item->started++;
    st_build_send_url(&job->url, &cred, &it->params, it->recipients,
                      part.first, part.count);
    s->starting = item->started < item->nchunks ? item : NULL;
    return 1;
}

/* The caller's before_send: once for the group of requests about to
 * leave. */
static int send_leaving(void *ctx) {
    send_source *s = ctx;
    return s->hooks->before_send(s->hooks->ctx);
}

static st_code send_read(void *ctx, st_job *job) {
    send_source *s = ctx;
    open_item *item = job->tag;
    st_chunk part = item->chunks[job->part];
    char few[4][ST_ID_MAX + 1]; /* most sends: no allocation */
    char(*ids)[ST_ID_MAX + 1] =
        part.count <= 4 ? few : calloc(part.count, sizeof *ids);
    send_answer_ctx a;
    size_t i;
    if (!ids)
        return st_nomem(&job->err),
               ST_E_NETWORK;
    if (ids == few)
        memset(few, 0, sizeof few);
    a.count = part.count;
    a.ids = ids;
    if (read_answer(s->c, job, read_send_ids, &a, &job->err) == 0) {
        for (i = 0; i < part.count; i++)
            memcpy(item->res.records[part.first + i].id, ids[i], sizeof *ids);
        item->res.accepted += part.count;
        job->err.code = ST_OK;
    }
    if (ids != few)
        free(ids);
    return job->err.code;
}

static void send_done(void *ctx, st_job *job) {
    send_source *s = ctx;
    open_item *item = job->tag;
    st_chunk part = item->chunks[job->part];
    size_t i;
    st_error_copy(&item->res.errors[job->part], &job->err);
    if (st_job_may_have_left(job))
        item->res.sent = 1;
    for (i = 0; i < part.count; i++)
        item->res.records[part.first + i].chunk = job->part;
    if (--item->left == 0)
        close_item(s, item);
}

/* Every item checked before the first byte is sent: -1 names the bad one.
 * A bulk call plans each item's parts again when it starts, keeping none
 * meanwhile; a single send keeps its plan in s. */
static int check_items(send_source *s, int name_items, st_error *err) {
    st_credentials cred = st_client_credentials(s->c);
    size_t i, nchunks;
    for (i = 0; i < s->n; i++) {
        const st_send_item *it = &s->items[i];
        st_chunk *chunks = NULL;
        int rc = check_send(s->c, it->recipients, &it->params, err);
        nchunks = 1;
        if (rc == 0 && s->n == 1 &&
            !st_send_fits_whole(&cred, &it->params, it->recipients->count,
                                ST_MAX_URL))
            rc = st_plan_send(&cred, &it->params, it->recipients, ST_MAX_URL,
                              &chunks, &nchunks, err);
        else if (rc == 0 && s->n > 1)
            rc = st_check_send_fits(&cred, &it->params, it->recipients,
                                    ST_MAX_URL, err);
        if (rc != 0)
            return name_items ? fail_item(err, "invalid item", i) : -1;
        if (s->n == 1)
            s->plan = chunks, s->plan_n = nchunks;
    }
    return 0;
}

/* ---- calls: a source and its run, for any driver -------------------------- */

/* balance: a source of one job (below) */
typedef struct balance_source {
    st_client *c;
    st_balance *out;
    st_error *err;
    int given;
} balance_source;

typedef struct status_source {
    st_client *c;
    const char *const *ids;
    const size_t *which; /* the indexes asked this round; NULL: all */
    size_t m, next;
    st_status *out;
    st_error *errs;
    const st_status_hooks *hooks;
} status_source;

struct st_task {
    st_client *c;
    st_job_source src;
    st_run run;
    send_source send;
    status_source status;    /* a status call's source, no allocation */
    balance_source balance; /* a balance's own source, no allocation */
    struct wait_state *wait; /* a wait: rounds of status, one at a time */
    st_task *round;          /* the wait's round in progress */
};

static st_task *call_new(st_client *c) {
    st_task *call = reuse_or_calloc(c->spare_task, sizeof *call);
    c->spare_task = NULL;
    if (call)
        call->c = c;
    return call;
}

static void call_free(st_task *call) {
    if (!call->c->spare_task)
        call->c->spare_task = call;
    else
        free(call);
}

/* A call whose run never began (a bad argument, no memory). */
static void task_free_unstarted(st_task *call) {
    free(call->send.plan);
    call_free(call);
}

/* The task's run, with slots for at most max_jobs (0: unknown); NULL
 * (err says so when given) without memory for them. */
static st_task *call_start(st_task *call, size_t max_jobs, st_error *err) {
    if (st_run_init(&call->run, call->c, &call->src, max_jobs) == 0)
        return call;
    task_free_unstarted(call);
    if (err)
        st_nomem(err);
    return NULL;
}


void st_task_stop(st_task *call) {
    call->src.stop = 1;
    if (call->round)
        st_task_stop(call->round);
}

/* A driven task dropped before its end (its driver raised, or gave up)
 * still holds the items in flight: each once, however many of its parts
 * were running. The slots that repeat an item (or the one being started)
 * are cleared first, with nothing freed yet; then each item left is freed
 * once. No memory is taken for it: nothing can leak. */
static void free_open_items(st_task *call) {
    st_job *slots = call->run.slots;
    size_t i, j;
    if (call->run.running == 0 && call->run.waiting == 0 &&
        !call->send.starting)
        return; /* it ran to its end: every item was closed */
    for (i = 0; i < call->run.nslots; i++) {
        if (slots[i].state == ST_JOB_FREE || !slots[i].tag)
            continue;
        if (slots[i].tag == call->send.starting)
            slots[i].tag = NULL;
        for (j = 0; j < i && slots[i].tag; j++)
            if (slots[j].state != ST_JOB_FREE && slots[j].tag == slots[i].tag)
                slots[i].tag = NULL;
    }
    for (i = 0; i < call->run.nslots; i++)
        if (slots[i].state != ST_JOB_FREE && slots[i].tag)
            open_item_free(call->c, slots[i].tag);
    if (call->send.starting)
        open_item_free(call->c, call->send.starting);
}

static void wait_free(struct wait_state *w);

void st_task_free(st_task *call) {
    if (!call)
        return;
    if (call->wait) {
        st_task_free(call->round);
        wait_free(call->wait);
        call_free(call);
        return;
    }
    if (call->src.next == send_next)
        free_open_items(call);
    st_run_finish(&call->run);
    free(call->send.plan); /* set only when its item never started */
    call_free(call);
}

/* ---- the driver's side (docs/DRIVERS.md) ---- */

static st_step wait_task_next(st_task *call, size_t *job, const char **url,
                              double *wait);

st_step st_task_next(st_task *call, size_t *job, const char **url,
                     double *wait) {
    st_job *j;
    double wake;
    st_run_step step;
    if (call->wait)
        return wait_task_next(call, job, url, wait);
    do
        step = st_run_next(&call->run, &j, &wake);
    while (step == ST_RUN_START && st_run_let_go(&call->run, j) != 0);
    *wait = -1;
    if (step == ST_RUN_START) {
        *job = (size_t)(j - call->run.slots) + 1;
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

int st_task_full(const st_task *call) {
    if (call->wait)
        return call->round && st_task_full(call->round);
    return st_run_full(&call->run);
}

/* The running job a driver's handle names, or NULL. */
static st_job *running_job(st_task *call, size_t job) {
    st_job *j;
    if (job < 1 || job > call->run.nslots)
        return NULL;
    j = &call->run.slots[job - 1];
    return j->state == ST_JOB_RUNNING ? j : NULL;
}

int st_task_answer(st_task *call, size_t job, long http_status,
                   const char *body, size_t n, double seconds,
                   int new_connection) {
    st_job *j;
    if (call->wait)
        return call->round ? st_task_answer(call->round, job, http_status,
                                            body, n, seconds, new_connection)
                           : -1;
    j = running_job(call, job);
    if (!j)
        return -1;
    j->reply.http_status = http_status;
    j->reply.request_sent = 1;
    j->reply.new_connection = new_connection;
    j->reply.seconds = seconds;
    st_buf_truncate(&j->reply.body, 0);
    if (n > (size_t)call->c->opts.max_response)
        return st_task_fail(call, job, ST_E_TOO_LARGE,
                            "gateway answer is larger than max_response", 1,
                            seconds, new_connection);
    if (st_buf_append(&j->reply.body, body, n) != 0)
        return st_task_fail(call, job, ST_E_NOMEM, "not enough memory", 1,
                            seconds, new_connection);
    st_run_answered(&call->run, j);
    return 0;
}

int st_task_fail(st_task *call, size_t job, st_code code,
                 const char *message, int sent, double seconds,
                 int new_connection) {
    st_job *j;
    if (call->wait)
        return call->round ? st_task_fail(call->round, job, code, message,
                                          sent, seconds, new_connection)
                           : -1;
    j = running_job(call, job);
    if (!j)
        return -1;
    j->reply.http_status = 0;
    j->reply.request_sent = sent;
    j->reply.new_connection = new_connection;
    j->reply.seconds = seconds;
    st_fail(&j->err, code, "%s", message);
    st_run_failed(&call->run, j);
    return 0;
}

/* The libcurl driver runs a call to its end. */
static void run_blocking(st_task *call) {
    call->c->stopped = 0; /* a stop asked during an earlier call is over */
    st_engine_drive(&call->run);
    st_task_free(call);
}

static st_task *begin_send(st_client *c, const st_send_item *items, size_t n,
                           int name_items, const st_send_hooks *hooks,
                           st_error *err) {
    st_task *call = call_new(c);
    send_source *s;
    if (!call) {
        st_nomem(err);
        return NULL;
    }
    s = &call->send;
    s->c = c;
    s->items = items;
    s->n = n;
    s->hooks = hooks;
    s->src = &call->src;
    if (check_items(s, name_items, err) != 0) {
        task_free_unstarted(call);
        return NULL;
    }
    call->src.next = send_next;
    call->src.read = send_read;
    call->src.done = send_done;
    call->src.leaving = hooks->before_send ? send_leaving : NULL;
    call->src.ctx = s;
    return call_start(call, n == 1 ? s->plan_n : 0, err);
}

st_task *st_task_send_many(st_client *c, const st_send_item *items, size_t n,
                           const st_send_hooks *hooks, st_error *err) {
    return begin_send(c, items, n, 1, hooks, err);
}

static int send_items(st_client *c, const st_send_item *items, size_t n,
                      int name_items, const st_send_hooks *hooks,
                      st_error *err) {
    st_task *call = begin_send(c, items, n, name_items, hooks, err);
    if (!call)
        return -1;
    run_blocking(call);
    return 0;
}

int st_client_send_many(st_client *c, const st_send_item *items, size_t n,
                        const st_send_hooks *hooks, st_error *err) {
    return send_items(c, items, n, 1, hooks, err);
}

/* A single send keeps its one outcome. */
static void keep_result(void *ctx, size_t item, st_send_result *res) {
    (void)item;
    st_send_result_take(ctx, res);
}

int st_client_send(st_client *c, const st_recipients *r,
                   const st_send_params *p, st_send_result *res,
                   st_error *err) {
    st_send_item item;
    st_send_hooks hooks;
    item.recipients = r;
    item.params = *p;
    hooks.on_start = NULL;
    hooks.before_send = NULL;
    hooks.on_result = keep_result;
    hooks.ctx = res;
    res->records = NULL, res->errors = NULL;
    res->count = res->nerrors = res->accepted = 0;
    res->sent = 0;
    res->failure.code = ST_OK, res->failure.message[0] = '\0';
    if (send_items(c, &item, 1, 0, &hooks, err) != 0)
        return -1;
    if (res->accepted == 0) {
        *err = res->failure;
        st_send_result_free(res);
        return -1;
    }
    return 0;
}

int st_client_send_url(const st_client *c, const st_recipients *r,
                       const st_send_params *p, st_buf *url, st_error *err) {
    st_credentials cred = st_client_credentials(c);
    st_chunk *chunks = NULL;
    size_t nchunks = 0;
    int rc = 0;
    if (check_send(c, r, p, err) != 0 ||
        st_plan_send(&cred, p, r, ST_MAX_URL, &chunks, &nchunks, err) != 0)
        return -1;
    if (nchunks != 1)
        rc = st_fail(err, ST_E_INVALID,
                     "invalid recipients: %zu of them need %zu requests; "
                     "url() builds one",
                     r->count, nchunks);
    else if (st_build_send_url(url, &cred, p, r, 0, r->count) != 0)
        rc = st_nomem(err);
    free(chunks);
    return rc;
}

/* ---- status and balance ----------------------------------------------------- */

static int check_ids(const char *const *ids, size_t n, int name_items,
                     st_error *err) {
    size_t i;
    for (i = 0; i < n; i++)
        if (st_id_check(ids[i], strlen(ids[i]), err) != 0)
            return name_items ? fail_item(err, "invalid id", i) : -1;
    return 0;
}

/* ---- status: the job source ---------------------------------------------- */

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
    if (read_answer(s->c, job, read_status, &s->out[job->part], &job->err) != 0)
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
    st_task *call = call_new(c);
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
    call->src.next = status_next;
    call->src.read = status_read;
    call->src.done = status_done;
    call->src.ctx = s;
    return call_start(call, m, NULL);
}

/* Asks for the statuses of ids[which[k]], k < m (all n when which is
 * NULL): out[i] where errs[i].code is ST_OK, for each i asked. */
static void status_round(st_client *c, const char *const *ids,
                         const size_t *which, size_t m, st_status *out,
                         st_error *errs, const st_status_hooks *hooks) {
    st_task *call = begin_status(c, ids, which, m, out, errs, hooks);
    size_t k;
    if (call) {
        run_blocking(call);
        return;
    }
    for (k = 0; k < m; k++)
        st_nomem(&errs[which ? which[k] : k]);
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
    status_round(c, ids, NULL, n, out, errs, hooks);
    return 0;
}

int st_client_status(st_client *c, const char *id, st_status *out,
                     st_error *err) {
    if (check_ids(&id, 1, 0, err) != 0)
        return -1;
    status_round(c, &id, NULL, 1, out, err, NULL);
    return err->code == ST_OK ? 0 : -1;
}

/* ---- wait --------------------------------------------------------------- */

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
        check_ids(ids, n, 1, err) != 0)
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
    c->stopped = 0;
    while ((step = wait_next(w, &left)) != WAIT_OVER) {
        if (step == WAIT_SLEEP)
            st_sleep(left);
        else
            status_round(c, ids, w->which, w->m, out, errs, NULL);
    }
    wait_free(w);
    return 0;
}

st_task *st_task_wait(st_client *c, const char *const *ids, size_t n,
                      double timeout, double interval, st_status *out,
                      st_error *errs, st_error *err) {
    st_task *call;
    wait_state *w = wait_new(c, ids, n, timeout, interval, out, errs, err);
    if (!w)
        return NULL;
    call = call_new(c);
    if (!call) {
        wait_free(w);
        st_nomem(err);
        return NULL;
    }
    call->wait = w;
    return call;
}

/* A wait driven from outside: its rounds' steps, with the sleeps between
 * them as WAITs that have a time. */
static st_step wait_task_next(st_task *call, size_t *job, const char **url,
                              double *wait) {
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
        if (call->src.stop) /* stopped: no further round */
            w->over = 1;
        switch (wait_next(w, &left)) {
        case WAIT_OVER:
            return ST_STEP_DONE;
        case WAIT_SLEEP:
            *wait = left;
            return ST_STEP_WAIT;
        default:
            call->round = begin_status(call->c, w->ids, w->which, w->m, w->out,
                                       w->errs, NULL);
            if (!call->round) /* as status_round does without memory */
                for (k = 0; k < w->m; k++)
                    st_nomem(&w->errs[w->which[k]]);
            if (call->src.stop && call->round)
                st_task_stop(call->round);
        }
    }
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
    if (read_answer(s->c, job, read_balance, s->out, &job->err) != 0)
        return job->err.code;
    return ST_OK;
}

static void balance_done(void *ctx, st_job *job) {
    balance_source *s = ctx;
    st_error_copy(s->err, &job->err);
}

st_task *st_task_balance(st_client *c, st_balance *out, st_error *err) {
    st_task *call = call_new(c);
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
    call->src.next = balance_next;
    call->src.read = balance_read;
    call->src.done = balance_done;
    call->src.ctx = s;
    return call_start(call, 1, err);
}

int st_client_balance(st_client *c, st_balance *out, st_error *err) {
    st_task *call = st_task_balance(c, out, err);
    if (!call)
        return -1;
    run_blocking(call);
    return err->code == ST_OK ? 0 : -1;
}
