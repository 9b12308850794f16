/* Sends: each item a list of jobs for the engine (its parts: runs of
 * recipients that fit one URL). Validation first: nothing is sent for a
 * bad item. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "st_parse.h"
#include "st_send.h"

typedef struct send_answer_ctx {
    size_t count;
    char (*ids)[ST_ID_MAX + 1];
} send_answer_ctx;

static int read_send_ids(const char *body, size_t n, void *ctx,
                         st_error *err) {
    send_answer_ctx *a = ctx;
    return st_parse_send_answer(body, n, a->count, a->ids, err);
}

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
    to->started = from->started;
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
    st_engine *e;
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

static open_item *open_item_alloc(st_engine *e) {
    open_item *item = reuse_or_calloc(e->spare_item, sizeof *item);
    e->spare_item = NULL;
    return item;
}

static void open_item_free(st_engine *e, open_item *item) {
    st_send_result_free(&item->res);
    if (item->chunks != &item->whole)
        free(item->chunks);
    if (!e->spare_item)
        e->spare_item = item;
    else
        free(item);
}

/* The item's outcome goes to the hook as soon as its last part is done. */
static void close_item(send_source *s, open_item *item) {
    st_send_result *res = &item->res;
    if (res->accepted == 0 && res->count > 0)
        st_error_copy(&res->failure, &res->errors[res->records[0].chunk]);
    s->hooks->on_result(s->hooks->ctx, item->index, res);
    open_item_free(s->e, item);
}

/* An item that could not start (no memory) fails whole, never sent. */
static void fail_item_start(send_source *s, size_t index) {
    open_item item;
    memset(&item, 0, sizeof item);
    item.index = index;
    item.res.started = 1;
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
    open_item *item = open_item_alloc(s->e);
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
            open_item_free(s->e, item);
        return NULL;
    }
    item->index = index;
    item->left = item->nchunks;
    item->res.started = 1;
    if (alloc_outcome(&item->res, r->count, item->nchunks) != 0) {
        open_item_free(s->e, item);
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
    if (!ids) {
        st_nomem(&job->err);
        return ST_E_NOMEM;
    }
    if (ids == few)
        memset(few, 0, sizeof few);
    a.count = part.count;
    a.ids = ids;
    if (st_client_read_answer(s->c, &job->reply.body, read_send_ids, &a,
                              &job->err) == 0) {
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

/* Why a request or an item never left: the client was closed, or the call
 * stopped first (a callback raised or refused). */
static void never_left(const send_source *s, st_error *err) {
    st_fail(err, ST_E_CLOSED, "%s",
            s->e->stopped ? "client is closed"
                          : "not sent: the call stopped before it started");
}

/* The call is over: the parts of an item it never started end `closed`
 * (the item's outcome then goes out with those that did leave), and each
 * item it never started goes out `closed`, never sent: one outcome for
 * every item. */
static void send_finish(void *ctx) {
    send_source *s = ctx;
    open_item *item = s->starting;
    st_send_result res;
    s->starting = NULL;
    while (item && item->started < item->nchunks) {
        size_t part = item->started++, i;
        st_chunk chunk = item->chunks[part];
        never_left(s, &item->res.errors[part]);
        for (i = 0; i < chunk.count; i++)
            item->res.records[chunk.first + i].chunk = part;
        if (--item->left == 0) {
            close_item(s, item);
            item = NULL;
        }
    }
    for (; s->next_item < s->n; s->next_item++) {
        memset(&res, 0, sizeof res); /* the hook may have moved it out */
        never_left(s, &res.failure);
        s->hooks->on_result(s->hooks->ctx, s->next_item, &res);
    }
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
            return name_items ? st_fail_item(err, "invalid item", i) : -1;
        if (s->n == 1)
            s->plan = chunks, s->plan_n = nchunks;
    }
    return 0;
}

/* ---- the call: a task with its send source -------------------------------- */

typedef struct send_call {
    st_task task; /* first: the engine sees the call as its task */
    send_source send;
} send_call;

/* A driven task dropped before its end (its driver raised, or gave up)
 * still holds the items in flight: each once, however many of its parts
 * were running. The slots that repeat an item (or the one being started)
 * are cleared first, with nothing freed yet; then each item left is freed
 * once. No memory is taken for it: nothing can leak. */
static void free_open_items(send_call *call) {
    st_run *run = &call->task.run;
    st_job *slots = run->slots;
    open_item *starting = call->send.starting;
    size_t i, j;
    if (run->running == 0 && run->waiting == 0 && !starting)
        return; /* it ran to its end: every item was closed */
    for (i = 0; i < run->nslots; i++) {
        if (slots[i].state == ST_JOB_FREE || !slots[i].tag)
            continue;
        if (slots[i].tag == starting)
            slots[i].tag = NULL;
        for (j = 0; j < i && slots[i].tag; j++)
            if (slots[j].state != ST_JOB_FREE && slots[j].tag == slots[i].tag)
                slots[i].tag = NULL;
    }
    for (i = 0; i < run->nslots; i++)
        if (slots[i].state != ST_JOB_FREE && slots[i].tag)
            open_item_free(call->send.e, slots[i].tag);
    if (starting)
        open_item_free(call->send.e, starting);
}

static void drop_send(st_task *task) {
    send_call *call = (send_call *)task;
    if (task->running)
        free_open_items(call);
    free(call->send.plan); /* set only when its item never started */
}

static const st_task_kind send_kind = {drop_send, NULL, NULL};

static st_task *begin_send(st_client *c, const st_send_item *items, size_t n,
                           int name_items, const st_send_hooks *hooks,
                           st_error *err) {
    st_engine *e = st_client_engine(c);
    send_call *call =
        (send_call *)st_task_alloc(e, sizeof *call, &send_kind);
    send_source *s;
    if (!call) {
        st_nomem(err);
        return NULL;
    }
    s = &call->send;
    s->c = c;
    s->e = e;
    s->items = items;
    s->n = n;
    s->hooks = hooks;
    s->src = &call->task.src;
    if (check_items(s, name_items, err) != 0) {
        st_task_free(&call->task);
        return NULL;
    }
    call->task.src.next = send_next;
    call->task.src.read = send_read;
    call->task.src.done = send_done;
    call->task.src.leaving = hooks->before_send ? send_leaving : NULL;
    call->task.src.finish = send_finish;
    call->task.src.ctx = s;
    return st_task_start(&call->task, n == 1 ? s->plan_n : 0, err);
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
    st_client_run(c, call);
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

int st_client_check_send(const st_client *c, const st_recipients *r,
                         const st_send_params *p, st_error *err) {
    st_credentials cred = st_client_credentials(c);
    if (r->count != 1)
        return st_fail(err, ST_E_INVALID, "one recipient expected");
    if (check_send(c, r, p, err) != 0)
        return -1;
    return st_check_send_fits(&cred, p, r, ST_MAX_URL, err);
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

