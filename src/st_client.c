/* The client: options, its copies of them, and what it shows of itself.
 * The engine its calls run on is in st_engine.c, the calls in st_calls.c. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "st_engine.h"


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

/* The longest time an option takes, in seconds: an hour. */
#define ST_MAX_SECONDS 3600

static int too_long(st_error *err, const char *name, double seconds) {
    return st_fail(err, ST_E_INVALID,
                   "invalid option '%s': %g seconds is over an hour; times "
                   "are in seconds (0.5 is 500 ms), not milliseconds",
                   name, seconds);
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
    /* Seconds everywhere; a value no one means in seconds is a value meant
     * in milliseconds (lua-resty-http's unit): said, not waited out. */
    if (o->timeout > ST_MAX_SECONDS)
        return too_long(err, "timeout", o->timeout);
    if (o->connect_timeout > ST_MAX_SECONDS)
        return too_long(err, "connect_timeout", o->connect_timeout);
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
    if (!driven && !(c->transport = st_transport_new(&c->opts, err))) {
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
    st_engine_free_slots(c);
    free(c->spare_task); /* no task outlives its client: the spare owns nothing */
    free(c->spare_item); /* nor does a spare item */
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
    cred.prefix_len = c->prefix.len;
    return cred;
}




void st_client_get_hook(const st_client *c, st_exchange_hook *hook,
                        void **ctx) {
    *hook = c->hook;
    *ctx = c->hook_ctx;
}

void st_client_set_rate_hook(st_client *c, st_rate_hook hook, void *ctx) {
    c->rate_hook = hook;
    c->rate_ctx = ctx;
}

void st_client_get_rate_hook(const st_client *c, st_rate_hook *hook,
                             void **ctx) {
    *hook = c->rate_hook;
    *ctx = c->rate_ctx;
}
