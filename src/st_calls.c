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

void st_send_result_free(st_send_result *res) {
    free(res->records);
    free(res->errors);
    res->records = NULL;
    res->errors = NULL;
    res->count = res->nerrors = res->accepted = 0;
}

static int check_send(const st_recipients *r, const st_send_params *p,
                      st_error *err) {
    if (r->count == 0)
        return st_fail(err, ST_E_INVALID, "invalid recipients: none given");
    if (st_text_check(p->text, p->text_len, err) != 0)
        return -1;
    if (p->sender && st_sender_check(p->sender, strlen(p->sender), err) != 0)
        return -1;
    return 0;
}

/* Prefixes a validation error with the 1-based index of its item. */
static int fail_item(st_error *err, const char *what, size_t index) {
    char message[ST_ERR_MAX];
    snprintf(message, sizeof message, "%s", err->message);
    return st_fail(err, err->code, "%s %zu: %s", what, index + 1, message);
}

/* One request of one send: which item, and which run of its recipients. */
typedef struct send_job {
    size_t item;
    st_chunk chunk;
    size_t chunk_index; /* within the item */
} send_job;

typedef struct send_plan {
    send_job *parts;
    size_t nparts;
    size_t *chunks_per_item;
} send_plan;

static void send_plan_free(send_plan *plan) {
    free(plan->parts);
    free(plan->chunks_per_item);
}

static int plan_item(const st_client *c, const st_send_item *item,
                     size_t index, send_plan *plan, size_t *cap,
                     st_error *err) {
    st_credentials cred = st_client_credentials(c);
    st_chunk *chunks;
    size_t n, i;
    if (check_send(item->recipients, &item->params, err) != 0 ||
        st_plan_send(&cred, &item->params, item->recipients, ST_MAX_URL,
                     &chunks, &n, err) != 0)
        return -1;
    if (plan->nparts + n > *cap) {
        size_t ncap = (plan->nparts + n) * 2;
        send_job *p = realloc(plan->parts, ncap * sizeof *p);
        if (!p) {
            free(chunks);
            return st_fail(err, ST_E_INVALID, "out of memory");
        }
        plan->parts = p;
        *cap = ncap;
    }
    for (i = 0; i < n; i++) {
        send_job *part = &plan->parts[plan->nparts++];
        part->item = index;
        part->chunk = chunks[i];
        part->chunk_index = i;
    }
    plan->chunks_per_item[index] = n;
    free(chunks);
    return 0;
}

/* Validates every item and splits each into requests; -1 names the item. */
static int plan_sends(const st_client *c, const st_send_item *items, size_t n,
                      int name_items, send_plan *plan, st_error *err) {
    size_t i, cap = 0;
    memset(plan, 0, sizeof *plan);
    plan->chunks_per_item = calloc(n ? n : 1, sizeof *plan->chunks_per_item);
    if (!plan->chunks_per_item)
        return st_fail(err, ST_E_INVALID, "out of memory");
    for (i = 0; i < n; i++)
        if (plan_item(c, &items[i], i, plan, &cap, err) != 0) {
            send_plan_free(plan);
            return name_items ? fail_item(err, "invalid item", i) : -1;
        }
    return 0;
}

static int alloc_results(const st_send_item *items, size_t n,
                         const send_plan *plan, st_send_result *results) {
    size_t i, j;
    for (i = 0; i < n; i++) {
        st_send_result *res = &results[i];
        const st_recipients *r = items[i].recipients;
        memset(res, 0, sizeof *res);
        res->records = calloc(r->count, sizeof *res->records);
        res->errors = calloc(plan->chunks_per_item[i], sizeof *res->errors);
        if (!res->records || !res->errors)
            return -1;
        res->count = r->count;
        res->nerrors = plan->chunks_per_item[i];
        for (j = 0; j < r->count; j++)
            memcpy(res->records[j].to, r->items[j].digits,
                   sizeof res->records[j].to);
    }
    return 0;
}

/* Reads one request's answer into its recipients' records. */
static void read_send_answer(st_client *c, st_job *job, const send_job *part,
                             st_send_result *res) {
    st_error *err = &res->errors[part->chunk_index];
    size_t i, count = part->chunk.count, first = part->chunk.first;
    char(*ids)[ST_ID_MAX + 1] = calloc(count, sizeof *ids);
    *err = job->err;
    if (job->rc == 0) {
        send_answer_ctx ctx;
        int rc;
        ctx.count = count;
        ctx.ids = ids;
        rc = ids ? read_answer(c, job, read_send_ids, &ctx, err)
                 : st_fail(err, ST_E_NETWORK, "out of memory");
        st_client_report_answer(c, job, rc == 0 ? ST_OK : err->code);
        if (rc == 0)
            err->code = ST_OK, err->message[0] = '\0';
        for (i = 0; rc == 0 && i < count; i++)
            memcpy(res->records[first + i].id, ids[i], sizeof *ids);
        res->accepted += rc == 0 ? count : 0;
    }
    st_client_redact_error(c, err);
    for (i = 0; i < count; i++)
        res->records[first + i].chunk = part->chunk_index;
    free(ids);
}

static void build_send_jobs(const st_client *c, const st_send_item *items,
                            const send_plan *plan, st_job *jobs) {
    st_credentials cred = st_client_credentials(c);
    size_t i;
    for (i = 0; i < plan->nparts; i++) {
        const send_job *part = &plan->parts[i];
        const st_send_item *item = &items[part->item];
        st_job_init(&jobs[i], ST_CALL_SEND);
        st_build_send_url(&jobs[i].url, &cred, &item->params, item->recipients,
                          part->chunk.first, part->chunk.count);
    }
}

static void settle_failures(st_send_result *results, size_t n) {
    size_t i;
    for (i = 0; i < n; i++)
        if (results[i].accepted == 0 && results[i].count > 0)
            results[i].failure = results[i].errors[results[i].records[0].chunk];
}

static int send_items(st_client *c, const st_send_item *items, size_t n,
                      int name_items, st_send_result *results, st_error *err) {
    send_plan plan;
    st_job *jobs;
    size_t i;
    if (plan_sends(c, items, n, name_items, &plan, err) != 0)
        return -1;
    memset(results, 0, n * sizeof *results);
    jobs = calloc(plan.nparts ? plan.nparts : 1, sizeof *jobs);
    if (!jobs || alloc_results(items, n, &plan, results) != 0) {
        for (i = 0; i < n; i++)
            st_send_result_free(&results[i]);
        free(jobs);
        send_plan_free(&plan);
        return st_fail(err, ST_E_INVALID, "out of memory");
    }
    build_send_jobs(c, items, &plan, jobs);
    st_client_run_jobs(c, jobs, plan.nparts);
    for (i = 0; i < plan.nparts; i++) {
        read_send_answer(c, &jobs[i], &plan.parts[i],
                         &results[plan.parts[i].item]);
        st_job_free(&jobs[i]);
    }
    settle_failures(results, n);
    free(jobs);
    send_plan_free(&plan);
    return 0;
}

int st_client_send_many(st_client *c, const st_send_item *items, size_t n,
                        st_send_result *results, st_error *err) {
    return send_items(c, items, n, 1, results, err);
}

int st_client_send(st_client *c, const st_recipients *r,
                   const st_send_params *p, st_send_result *res,
                   st_error *err) {
    st_send_item item;
    item.recipients = r;
    item.params = *p;
    if (send_items(c, &item, 1, 0, res, err) != 0)
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
    if (check_send(r, p, err) != 0 ||
        st_plan_send(&cred, p, r, ST_MAX_URL, &chunks, &nchunks, err) != 0)
        return -1;
    if (nchunks != 1)
        rc = st_fail(err, ST_E_INVALID,
                     "invalid recipients: %zu of them need %zu requests; "
                     "url() builds one",
                     r->count, nchunks);
    else if (st_build_send_url(url, &cred, p, r, 0, r->count) != 0)
        rc = st_fail(err, ST_E_INVALID, "out of memory");
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

/* Asks for the statuses of ids[which[k]], k < m (all n when which is
 * NULL): out[i] where errs[i].code is ST_OK, for each i asked. */
static int status_round(st_client *c, const char *const *ids,
                        const size_t *which, size_t m, st_status *out,
                        st_error *errs, st_error *err) {
    st_credentials cred = st_client_credentials(c);
    st_job *jobs = calloc(m ? m : 1, sizeof *jobs);
    size_t k;
    if (!jobs)
        return st_fail(err, ST_E_NETWORK, "out of memory");
    for (k = 0; k < m; k++) {
        st_job_init(&jobs[k], ST_CALL_STATUS);
        st_build_status_url(&jobs[k].url, &cred, ids[which ? which[k] : k]);
    }
    st_client_run_jobs(c, jobs, m);
    for (k = 0; k < m; k++) {
        size_t i = which ? which[k] : k;
        errs[i] = jobs[k].err;
        if (jobs[k].rc == 0) {
            int rc = read_answer(c, &jobs[k], read_status, &out[i], &errs[i]);
            st_client_report_answer(c, &jobs[k], rc == 0 ? ST_OK : errs[i].code);
            if (rc == 0)
                errs[i].code = ST_OK, errs[i].message[0] = '\0';
        }
        st_client_redact_error(c, &errs[i]);
        st_job_free(&jobs[k]);
    }
    free(jobs);
    return 0;
}

int st_client_status_many(st_client *c, const char *const *ids, size_t n,
                          st_status *out, st_error *errs, st_error *err) {
    if (check_ids(ids, n, 1, err) != 0)
        return -1;
    return status_round(c, ids, NULL, n, out, errs, err);
}

int st_client_status(st_client *c, const char *id, st_status *out,
                     st_error *err) {
    if (check_ids(&id, 1, 0, err) != 0 ||
        status_round(c, &id, NULL, 1, out, err, err) != 0)
        return -1;
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

int st_client_wait(st_client *c, const char *const *ids, size_t n,
                   double timeout, double interval, st_status *out,
                   st_error *errs, st_error *err) {
    double deadline = st_now() + timeout;
    size_t *which, m;
    int round;
    if (st_wait_check(timeout, interval, err) != 0 ||
        check_ids(ids, n, 1, err) != 0)
        return -1;
    if (interval < ST_WAIT_MIN_INTERVAL)
        interval = ST_WAIT_MIN_INTERVAL;
    which = malloc((n ? n : 1) * sizeof *which);
    if (!which)
        return st_fail(err, ST_E_NETWORK, "out of memory");
    for (round = 0;; round++) {
        m = unsettled(out, errs, n, round == 0, which);
        if (m == 0 || (round > 0 && st_client_stopped(c)))
            break;
        if (round > 0) {
            if (st_now() + interval > deadline)
                break;
            st_sleep(interval);
        }
        if (status_round(c, ids, which, m, out, errs, err) != 0)
            break;
        if (st_client_stopped(c))
            break;
    }
    free(which);
    return 0;
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
    return url->failed ? st_fail(err, ST_E_NETWORK, "out of memory") : 0;
}

int st_client_balance(st_client *c, st_balance *out, st_error *err) {
    st_credentials cred = st_client_credentials(c);
    st_job job;
    int rc = -1;
    st_job_init(&job, ST_CALL_BALANCE);
    st_build_balance_url(&job.url, &cred);
    st_client_run_jobs(c, &job, 1);
    *err = job.err;
    if (job.rc == 0) {
        rc = read_answer(c, &job, read_balance, out, err);
        st_client_report_answer(c, &job, rc == 0 ? ST_OK : err->code);
    }
    st_client_redact_error(c, err);
    st_job_free(&job);
    return rc;
}
