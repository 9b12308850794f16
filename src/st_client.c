/* The client: options, statistics, and the job engine every call runs on
 * (concurrency, rate limit, retry rules). The calls are in st_calls.c. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "st_engine.h"

struct st_client {
    st_options opts; /* string fields point at owned copies */
    st_transport *transport;
    st_stats stats;
    st_buf prefix; /* every URL's encoded start, built once */
    st_exchange_hook hook;
    void *hook_ctx;
    double next_slot; /* earliest start of the next request under `rate` */
    int stopped;      /* st_client_stop: no new polling rounds */
};

/* Backoff before retry n (0-based): 50 ms, 100 ms, 200 ms ... at most 1 s. */
static double retry_backoff(int attempt) {
    double s = 0.05;
    while (attempt-- > 0 && s < 1.0)
        s *= 2;
    return s < 1.0 ? s : 1.0;
}

void st_options_defaults(st_options *o) {
    memset(o, 0, sizeof *o);
    o->url = ST_DEFAULT_URL;
    o->timeout = 15;
    o->connect_timeout = 5;
    o->verify = 1;
    o->retries = 2;
    o->concurrency = 8;
    o->max_response = 65536;
}

static int has_http_scheme(const char *url) {
    return strncmp(url, "http://", 7) == 0 || strncmp(url, "https://", 8) == 0;
}

/* A control byte in a value that reaches a request line or header would
 * let it add headers of its own (CR LF) or cut the request short. */
static int has_control_byte(const char *s) {
    for (; s && *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7F)
            return 1;
    return 0;
}

static int check_header_safe(const st_options *o, st_error *err) {
    static const struct {
        const char *name;
        size_t offset;
    } fields[] = {
        {"url", offsetof(st_options, url)},
        {"proxy", offsetof(st_options, proxy)},
        {"user_agent", offsetof(st_options, user_agent)},
    };
    size_t i;
    for (i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        const char *value;
        memcpy(&value, (const char *)o + fields[i].offset, sizeof value);
        if (has_control_byte(value))
            return st_fail(err, ST_E_INVALID,
                           "invalid option '%s': it holds a control character",
                           fields[i].name);
    }
    return 0;
}

int st_options_check(const st_options *o, st_error *err) {
    if (!o->user || !*o->user)
        return st_fail(err, ST_E_INVALID, "invalid option 'user': it is empty");
    if (!o->password || !*o->password)
        return st_fail(err, ST_E_INVALID,
                       "invalid option 'password': it is empty");
    if (o->sender && st_sender_check(o->sender, strlen(o->sender), err) != 0)
        return st_fail(err, ST_E_INVALID,
                       "invalid option 'sender': want up to 11 Latin letters, "
                       "digits, space, '-', '.' or '_', or up to 15 digits");
    if (check_header_safe(o, err) != 0)
        return -1;
    if (!o->url || !has_http_scheme(o->url) || !o->url[o->url[4] == 's' ? 8 : 7])
        return st_fail(err, ST_E_INVALID,
                       "invalid option 'url': want an http:// or https:// URL");
    if (!(o->timeout >= 0) || !(o->connect_timeout >= 0))
        return st_fail(err, ST_E_INVALID,
                       "invalid option: timeouts must be 0 or more seconds");
    if (o->timeout > 1e6 || o->connect_timeout > 1e6)
        return st_fail(err, ST_E_INVALID,
                       "invalid option: a timeout is at most 1000000 seconds");
    if (o->retries < 0 || o->retries > 100)
        return st_fail(err, ST_E_INVALID,
                       "invalid option 'retries': want 0 to 100");
    if (o->concurrency < 1 || o->concurrency > 1000)
        return st_fail(err, ST_E_INVALID,
                       "invalid option 'concurrency': want 1 to 1000");
    if (o->max_response < 0)
        return st_fail(err, ST_E_INVALID,
                       "invalid option 'max_response': want 0 or more bytes");
    if (!(o->rate >= 0) || o->rate > 1e6)
        return st_fail(err, ST_E_INVALID,
                       "invalid option 'rate': want more than 0 requests a "
                       "second");
    return 0;
}

static char *copy_string(const char *s, int *failed) {
    char *p;
    if (!s)
        return NULL;
    size_t len = strlen(s) + 1;
    p = malloc(len);
    if (!p) {
        *failed = 1;
        return NULL;
    }
    return memcpy(p, s, len);
}

static void free_strings(st_options *o) {
    free((char *)o->user);
    free((char *)o->password);
    free((char *)o->sender);
    free((char *)o->url);
    free((char *)o->ca_file);
    free((char *)o->ca_path);
    free((char *)o->proxy);
    free((char *)o->user_agent);
}

static int copy_strings(st_options *dst, const st_options *src) {
    int failed = 0;
    dst->user = copy_string(src->user, &failed);
    dst->password = copy_string(src->password, &failed);
    dst->sender = copy_string(src->sender, &failed);
    dst->url = copy_string(src->url, &failed);
    dst->ca_file = copy_string(src->ca_file, &failed);
    dst->ca_path = copy_string(src->ca_path, &failed);
    dst->proxy = copy_string(src->proxy, &failed);
    dst->user_agent = copy_string(src->user_agent, &failed);
    return failed ? -1 : 0;
}

st_client *st_client_new(const st_options *o, st_error *err) {
    st_client *c;
    st_credentials cred;
    if (st_options_check(o, err) != 0)
        return NULL;
    c = calloc(1, sizeof *c);
    if (!c) {
        st_fail(err, ST_E_NETWORK, "out of memory");
        return NULL;
    }
    c->opts = *o;
    if (copy_strings(&c->opts, o) != 0) {
        st_fail(err, ST_E_NETWORK, "out of memory");
        st_client_free(c);
        return NULL;
    }
    cred = st_client_credentials(c); /* no prefix yet: it encodes one */
    c->transport = st_transport_new(&c->opts, err);
    if (c->transport && st_build_prefix(&c->prefix, &cred) != 0) {
        st_fail(err, ST_E_NETWORK, "out of memory");
        st_transport_free(c->transport);
        c->transport = NULL;
    }
    if (!c->transport) {
        st_client_free(c);
        return NULL;
    }
    return c;
}

void st_client_free(st_client *c) {
    if (!c)
        return;
    st_transport_free(c->transport);
    if (c->opts.password) /* do not leave the secret in freed memory */
        memset((char *)c->opts.password, 0, strlen(c->opts.password));
    if (c->prefix.data)
        memset(c->prefix.data, 0, c->prefix.len);
    st_buf_free(&c->prefix);
    free_strings(&c->opts);
    free(c);
}

void st_client_set_hook(st_client *c, st_exchange_hook hook, void *ctx) {
    c->hook = hook;
    c->hook_ctx = ctx;
}

void st_client_stop(st_client *c) { c->stopped = 1; }
int st_client_stopped(const st_client *c) { return c->stopped; }

const st_stats *st_client_stats(const st_client *c) { return &c->stats; }
const char *st_client_user(const st_client *c) { return c->opts.user; }
const char *st_client_url(const st_client *c) { return c->opts.url; }
const char *st_client_sender(const st_client *c) { return c->opts.sender; }

/* A URL may carry credentials in its user part ("https://u:secret@host")
 * or in a pwd= parameter: both are shown as ***. */
void st_client_redact(const st_client *c, char *msg, size_t cap) {
    (void)c;
    st_redact_message(msg, cap);
    st_redact_userinfo(msg, cap);
}

st_credentials st_client_credentials(const st_client *c) {
    st_credentials cred;
    cred.base_url = c->opts.url;
    cred.user = c->opts.user;
    cred.password = c->opts.password;
    cred.prefix = c->prefix.data;
    return cred;
}

void st_client_redact_error(const st_client *c, st_error *err) {
    (void)c;
    if (err->code != ST_OK)
        st_redact_message(err->message, sizeof err->message);
}

const char *st_call_name(st_call call) {
    static const char *const names[] = {"send", "status", "balance"};
    return names[call];
}

static void report_exchange(st_client *c, st_call call, const char *url,
                            const st_reply *reply, st_code code) {
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
    st_redact_query(url, &shown);
    info.call = call;
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

void st_job_init(st_job *job, st_call call) {
    memset(job, 0, sizeof *job);
    job->call = call;
    job->state = ST_JOB_WAITING;
    job->rc = -1;
}

void st_job_free(st_job *job) {
    st_buf_free(&job->url);
    st_reply_free(&job->reply);
}

void st_client_report_answer(st_client *c, const st_job *job, st_code code) {
    report_exchange(c, job->call, st_buf_str(&job->url), &job->reply, code);
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

/* The run's bookkeeping: the first job never started, and how many run. */
typedef struct run_state {
    size_t next_new;
    size_t running;
    size_t retrying; /* jobs waiting for a backoff to pass */
    size_t done;
} run_state;

/* Whether `rate` lets a request start now; if not, when it will. */
static int rate_allows(st_client *c, double now, double *wake) {
    if (c->opts.rate <= 0)
        return 1;
    if (c->next_slot > now) {
        if (c->next_slot < *wake)
            *wake = c->next_slot;
        return 0;
    }
    c->next_slot = now + 1.0 / c->opts.rate;
    return 1;
}

static void start_job(st_client *c, st_job *job, run_state *rs) {
    st_buf_truncate(&job->reply.body, 0);
    if (job->url.failed) {
        st_fail(&job->err, ST_E_NETWORK, "out of memory");
    } else if (st_transport_start(c->transport, job->url.data,
                                  job->call == ST_CALL_SEND, &job->reply, job,
                                  &job->err) == 0) {
        job->state = ST_JOB_RUNNING;
        rs->running++;
        return;
    }
    job->state = ST_JOB_DONE;
    job->rc = -1;
    rs->done++;
}

/* Can another job start now? Also lowers *wake to when one could. */
static int may_start(st_client *c, const run_state *rs, double now,
                     double *wake) {
    return rs->running < (size_t)c->opts.concurrency &&
           rate_allows(c, now, wake);
}

static void start_ready_jobs(st_client *c, st_job *jobs, size_t n,
                             run_state *rs, double *wake) {
    double now = st_now();
    size_t i;
    for (i = 0; rs->retrying > 0 && i < rs->next_new; i++) {
        st_job *job = &jobs[i];
        if (job->state != ST_JOB_WAITING)
            continue;
        if (job->not_before > now) {
            if (job->not_before < *wake)
                *wake = job->not_before;
        } else if (may_start(c, rs, now, wake)) {
            rs->retrying--;
            start_job(c, job, rs);
        }
    }
    while (rs->next_new < n && may_start(c, rs, now, wake))
        start_job(c, &jobs[rs->next_new++], rs);
}

/* What happens to a job whose attempt just ended. */
static void finish_attempt(st_client *c, st_job *job, int rc, run_state *rs) {
    job->attempts++;
    if (rc == 0 && (job->reply.http_status < 200 ||
                    job->reply.http_status > 299))
        rc = http_failed(&job->reply, &job->err);
    job->rc = rc;
    if (rc == 0) {
        job->state = ST_JOB_DONE; /* reported once its answer is read */
        rs->done++;
        return;
    }
    st_client_report_answer(c, job, job->err.code);
    if (job->attempts <= c->opts.retries &&
        may_retry(job->call, &job->reply, job->err.code)) {
        c->stats.retries++;
        job->state = ST_JOB_WAITING;
        job->not_before = st_now() + retry_backoff(job->attempts - 1);
        rs->retrying++;
        return;
    }
    note_unknown_outcome(job);
    st_client_redact_error(c, &job->err);
    job->state = ST_JOB_DONE;
    rs->done++;
}

static void collect_finished(st_client *c, run_state *rs) {
    void *cookie;
    int rc;
    st_error err;
    while (st_transport_next_done(c->transport, &cookie, &rc, &err)) {
        st_job *job = cookie;
        rs->running--;
        if (rc != 0)
            job->err = err;
        finish_attempt(c, job, rc, rs);
    }
}

void st_client_run_jobs(st_client *c, st_job *jobs, size_t n) {
    run_state rs = {0, 0, 0, 0};
    while (rs.done < n) {
        double wake = st_now() + 1.0;
        start_ready_jobs(c, jobs, n, &rs, &wake);
        if (rs.done == n)
            break;
        st_transport_poll(c->transport, wake - st_now());
        collect_finished(c, &rs);
    }
}
