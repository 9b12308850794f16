/* The client: its copies of the options, its transport and engine, and
 * what it shows of itself. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "st_client.h"
#include "st_driver_curl.h"
#include "st_transport.h"

struct st_client {
    st_options opts; /* string fields point at owned copies */
    st_transport *transport; /* NULL for a driven client */
    st_buf prefix; /* every URL's encoded start, built once */
    st_engine engine;
    int uses;    /* calls and driven runs in progress (st_client_hold) */
    int closing; /* st_client_close came while some were: freed at the end */
};


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

static int make_transport(st_client *c, st_error *err) {
    st_transport_options t;
    t.timeout = c->opts.timeout;
    t.connect_timeout = c->opts.connect_timeout;
    t.verify = c->opts.verify;
    t.ca_file = c->opts.ca_file;
    t.ca_path = c->opts.ca_path;
    t.proxy = c->opts.proxy;
    t.user_agent = c->opts.user_agent;
    t.concurrency = c->opts.concurrency;
    t.max_response = c->opts.max_response;
    c->transport = st_transport_new(&t, err);
    return c->transport ? 0 : -1;
}

/* The client, with a libcurl transport or (driven) without one. */
static st_client *client_new(const st_options *o, int driven, st_error *err) {
    st_client *c;
    st_credentials cred;
    if (st_options_check(o, err) != 0)
        return NULL;
    c = calloc(1, sizeof *c);
    if (!c)
        goto no_memory;
    c->opts = *o;
    if (copy_strings(&c->opts, o) != 0)
        goto no_memory;
    cred = st_client_credentials(c); /* no prefix yet: it encodes one */
    if (st_build_prefix(&c->prefix, &cred) != 0)
        goto no_memory;
    st_engine_init(&c->engine, o->retries, o->concurrency, o->max_response,
                   o->rate);
    if (!driven && make_transport(c, err) != 0) {
        st_client_free(c);
        return NULL;
    }
    return c;
no_memory:
    st_nomem(err);
    st_client_free(c);
    return NULL;
}

st_client *st_client_new(const st_options *o, st_error *err) {
    return client_new(o, 0, err);
}

st_client *st_client_new_driven(const st_options *o, st_error *err) {
    return client_new(o, 1, err);
}

long st_client_max_response(const st_client *c) { return c->opts.max_response; }

void st_client_free(st_client *c) {
    if (!c)
        return;
    st_engine_free(&c->engine); /* no task outlives its client */
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
    c->engine.hook = hook;
    c->engine.hook_ctx = ctx;
}

void st_client_stop(st_client *c) { st_engine_stop(&c->engine); }

void st_client_hold(st_client *c) { c->uses++; }

int st_client_release(st_client *c) {
    if (--c->uses > 0 || !c->closing)
        return 0;
    st_client_free(c);
    return 1;
}

int st_client_close(st_client *c) {
    if (c->uses == 0) {
        st_client_free(c);
        return 1;
    }
    c->closing = 1; /* from a callback, or with driven runs going */
    st_client_stop(c);
    return 0;
}

int st_client_closing(const st_client *c) { return c->closing; }
int st_client_stopped(const st_client *c) { return c->engine.stopped; }

const st_stats *st_client_stats(const st_client *c) { return &c->engine.stats; }
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
    cred.prefix_len = c->prefix.len;
    return cred;
}


void st_client_get_hook(const st_client *c, st_exchange_hook *hook,
                        void **ctx) {
    *hook = c->engine.hook;
    *ctx = c->engine.hook_ctx;
}

void st_client_set_rate_hook(st_client *c, st_rate_hook hook, void *ctx) {
    c->engine.rate_hook = hook;
    c->engine.rate_ctx = ctx;
}

void st_client_get_rate_hook(const st_client *c, st_rate_hook *hook,
                             void **ctx) {
    *hook = c->engine.rate_hook;
    *ctx = c->engine.rate_ctx;
}

st_engine *st_client_engine(st_client *c) { return &c->engine; }

void st_client_run(st_client *c, st_task *task) {
    c->engine.stopped = 0; /* a stop asked during an earlier call is over */
    st_driver_curl_run(&task->run, c->transport);
    st_task_free(task);
}

/* An unreadable answer is quoted in the error message, cut at 200 bytes.
 * Redacting the message afterwards would miss a password cut in two at
 * that point, so the quote is made again from a copy of the answer with
 * the password already taken out. The code stays the first reading's. */
static void requote_without_password(const st_client *c, const st_buf *body,
                                     st_answer_reader read, void *ctx,
                                     st_error *err) {
    st_buf clean = ST_BUF_INIT;
    st_error again;
    if (err->code == ST_OK ||
        st_redact_bytes(st_buf_str(body), body->len, c->opts.password,
                        &clean) != 0) {
        st_buf_free(&clean);
        return;
    }
    if (read(st_buf_str(&clean), clean.len, ctx, &again) != 0)
        memcpy(err->message, again.message, sizeof err->message);
    st_buf_free(&clean);
}

int st_client_read_answer(const st_client *c, const st_buf *body,
                          st_answer_reader read, void *ctx, st_error *err) {
    int rc = read(st_buf_str(body), body->len, ctx, err);
    if (rc != 0)
        requote_without_password(c, body, read, ctx, err);
    return rc;
}
