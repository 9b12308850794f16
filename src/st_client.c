/* The client: options, the retry rules, statistics, and the three calls put
 * together from request building, transport and parsing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "st_core.h"
#include "st_transport.h"

struct st_client {
    st_options opts; /* string fields point at owned copies */
    st_transport *transport;
    st_stats stats;
    st_exchange_hook hook;
    void *hook_ctx;
    double next_slot; /* earliest start of the next request under `rate` */
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
    c->transport = st_transport_new(&c->opts, err);
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
    free_strings(&c->opts);
    free(c);
}

void st_client_set_hook(st_client *c, st_exchange_hook hook, void *ctx) {
    c->hook = hook;
    c->hook_ctx = ctx;
}

const st_stats *st_client_stats(const st_client *c) { return &c->stats; }
const char *st_client_user(const st_client *c) { return c->opts.user; }
const char *st_client_url(const st_client *c) { return c->opts.url; }
const char *st_client_sender(const st_client *c) { return c->opts.sender; }

void st_client_redact(const st_client *c, char *msg, size_t cap) {
    st_redact(msg, cap, c->opts.password);
}

st_credentials st_client_credentials(const st_client *c) {
    st_credentials cred;
    cred.base_url = c->opts.url;
    cred.user = c->opts.user;
    cred.password = c->opts.password;
    return cred;
}

const char *st_call_name(st_call call) {
    static const char *const names[] = {"send", "status", "balance"};
    return names[call];
}

/* The URL with the value of every pwd= parameter replaced by ***. */
static void redact_url(const char *url, st_buf *out) {
    const char *p = url;
    for (;;) {
        const char *hit = strstr(p, "pwd=");
        if (!hit) {
            st_buf_append_str(out, p);
            return;
        }
        hit += 4;
        st_buf_append(out, p, (size_t)(hit - p));
        if (hit - url > 4 && (hit[-5] == '&' || hit[-5] == '?')) {
            st_buf_append_str(out, "***");
            hit += strcspn(hit, "&#");
        }
        p = hit;
    }
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
    redact_url(url, &shown);
    info.call = call;
    info.url = st_buf_str(&shown);
    info.http_status = reply->http_status;
    info.seconds = reply->seconds;
    info.code = code;
    c->hook(c->hook_ctx, &info);
    st_buf_free(&shown);
}

static void wait_for_rate_slot(st_client *c) {
    double now;
    if (c->opts.rate <= 0)
        return;
    now = st_now();
    if (c->next_slot > now) {
        st_sleep(c->next_slot - now);
        now = c->next_slot;
    }
    c->next_slot = now + 1.0 / c->opts.rate;
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

/* One logical request with its retries. On success reply->body holds the
 * answer and the caller reports the exchange with the code its answer gave;
 * the caller frees reply in every case. */
static int exchange(st_client *c, st_call call, const char *url,
                    st_reply *reply, st_error *err) {
    int attempt;
    for (attempt = 0;; attempt++) {
        int rc;
        st_buf_truncate(&reply->body, 0);
        wait_for_rate_slot(c);
        rc = st_transport_get(c->transport, url, call == ST_CALL_SEND, reply,
                              err);
        if (rc == 0 && (reply->http_status < 200 || reply->http_status > 299))
            rc = http_failed(reply, err);
        if (rc == 0)
            return 0; /* reported by the caller, once the answer is read */
        report_exchange(c, call, url, reply, err->code);
        if (attempt >= c->opts.retries || !may_retry(call, reply, err->code))
            break;
        c->stats.retries++;
        st_sleep(retry_backoff(attempt));
    }
    if (call == ST_CALL_SEND && reply->request_sent &&
        (err->code == ST_E_TIMEOUT || err->code == ST_E_NETWORK) &&
        !strstr(err->message, "outcome is unknown")) {
        size_t len = strlen(err->message);
        snprintf(err->message + len, sizeof err->message - len, "%s",
                 " (the request was sent: the outcome is unknown)");
    }
    st_redact(err->message, sizeof err->message, c->opts.password);
    return -1;
}

/* Reads one answer with its parser; every call but send goes through it. */
typedef int (*answer_parser)(const char *body, size_t n, void *out,
                             st_error *err);

static int parse_status(const char *body, size_t n, void *out, st_error *err) {
    return st_parse_status_answer(body, n, out, err);
}

static int parse_balance(const char *body, size_t n, void *out,
                         st_error *err) {
    return st_parse_balance_answer(body, n, out, err);
}

/* Requests url (already built in *url, which this frees) and parses the
 * answer into out. */
static int read_call(st_client *c, st_call call, st_buf *url,
                     answer_parser parse, void *out, st_error *err) {
    st_reply reply = {ST_BUF_INIT, 0, 0, 0, 0};
    int rc = -1;
    if (url->failed)
        st_fail(err, ST_E_NETWORK, "out of memory");
    else if (exchange(c, call, url->data, &reply, err) == 0) {
        rc = parse(st_buf_str(&reply.body), reply.body.len, out, err);
        report_exchange(c, call, url->data, &reply,
                        rc == 0 ? ST_OK : err->code);
    }
    st_buf_free(url);
    st_reply_free(&reply);
    if (rc != 0)
        st_redact(err->message, sizeof err->message, c->opts.password);
    return rc;
}

int st_client_status(st_client *c, const char *id, st_status *out,
                     st_error *err) {
    st_credentials cred = st_client_credentials(c);
    st_buf url = ST_BUF_INIT;
    if (st_id_check(id, strlen(id), err) != 0)
        return -1;
    st_build_status_url(&url, &cred, id);
    return read_call(c, ST_CALL_STATUS, &url, parse_status, out, err);
}

int st_client_balance(st_client *c, st_balance *out, st_error *err) {
    st_credentials cred = st_client_credentials(c);
    st_buf url = ST_BUF_INIT;
    st_build_balance_url(&url, &cred);
    return read_call(c, ST_CALL_BALANCE, &url, parse_balance, out, err);
}

void st_send_result_free(st_send_result *res) {
    free(res->records);
    free(res->errors);
    res->records = NULL;
    res->errors = NULL;
    res->count = res->nerrors = 0;
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

/* Sends one planned request and fills its recipients' records. */
static void send_chunk(st_client *c, const st_recipients *r,
                       const st_send_params *p, const st_chunk *chunk,
                       st_send_result *res, size_t index) {
    st_credentials cred = st_client_credentials(c);
    st_error *err = &res->errors[index];
    st_buf url = ST_BUF_INIT;
    st_reply reply = {ST_BUF_INIT, 0, 0, 0, 0};
    char(*ids)[ST_ID_MAX + 1] = calloc(chunk->count, sizeof *ids);
    size_t i;
    err->code = ST_OK;
    err->message[0] = '\0';
    if (!ids || st_build_send_url(&url, &cred, p, r, chunk->first,
                                  chunk->count) != 0)
        st_fail(err, ST_E_NETWORK, "out of memory");
    else if (exchange(c, ST_CALL_SEND, url.data, &reply, err) == 0) {
        int rc = st_parse_send_answer(st_buf_str(&reply.body), reply.body.len,
                                      chunk->count, ids, err);
        report_exchange(c, ST_CALL_SEND, url.data, &reply,
                        rc == 0 ? ST_OK : err->code);
        for (i = 0; rc == 0 && i < chunk->count; i++)
            memcpy(res->records[chunk->first + i].id, ids[i], sizeof *ids);
    }
    st_redact(err->message, sizeof err->message, c->opts.password);
    for (i = 0; i < chunk->count; i++)
        res->records[chunk->first + i].chunk = index;
    free(ids);
    st_buf_free(&url);
    st_reply_free(&reply);
}

static int any_accepted(const st_send_result *res) {
    size_t i;
    for (i = 0; i < res->count; i++)
        if (res->records[i].id[0])
            return 1;
    return 0;
}

int st_client_send(st_client *c, const st_recipients *r,
                   const st_send_params *p, st_send_result *res,
                   st_error *err) {
    st_credentials cred = st_client_credentials(c);
    st_chunk *chunks = NULL;
    size_t nchunks = 0, i;
    memset(res, 0, sizeof *res);
    if (check_send(r, p, err) != 0 ||
        st_plan_send(&cred, p, r, ST_MAX_URL, &chunks, &nchunks, err) != 0)
        return -1;
    res->records = calloc(r->count, sizeof *res->records);
    res->errors = calloc(nchunks, sizeof *res->errors);
    if (!res->records || !res->errors) {
        free(chunks);
        st_send_result_free(res);
        return st_fail(err, ST_E_INVALID, "out of memory");
    }
    res->count = r->count;
    res->nerrors = nchunks;
    for (i = 0; i < r->count; i++)
        memcpy(res->records[i].to, r->items[i].digits, sizeof res->records[i].to);
    for (i = 0; i < nchunks; i++)
        send_chunk(c, r, p, &chunks[i], res, i);
    free(chunks);
    if (!any_accepted(res)) {
        *err = res->errors[res->records[0].chunk];
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
