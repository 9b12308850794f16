#include "st_transport.h"
#include "st_castore.h"
#include "st_curl_url.h"

#include "st_clock.h"

#include <curl/curl.h>
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* One transfer slot: an easy handle and the state its callbacks write to.
 * Slots are kept for reuse; the connections live in the multi handle. */
typedef struct st_xfer {
    CURL *easy;
    struct st_transport *t;
    st_reply *reply;
    void *cookie;
    int once;
    int resend_refused;
    int too_large;
    int no_memory; /* the answer could not be kept */
    int ca_unreadable; /* the shared store's bundle could not be read */
    char errbuf[CURL_ERROR_SIZE];
    double started;   /* st_now() when the transfer was started */
    size_t live_slot; /* its index in the transport's live list */
    st_curl_url url; /* how the easy handle holds its URL */
} st_xfer;

struct st_transport {
    CURLM *multi;
    /* TLS sessions and resolved names, shared by every slot. The names'
     * cache is pruned on every request, and the share's table is a third
     * the size of the multi handle's own: ~700 instructions a request. */
    CURLSH *share;
    st_transport_options opts;
    st_xfer **idle;
    size_t nidle, cap_idle;
    st_xfer **live; /* the running transfers, for their time limits */
    size_t running, cap_live;
    /* The sockets libcurl wants watched (CURLMOPT_SOCKETFUNCTION), as
     * poll() takes them, and room to copy the ones it found ready. Room
     * is made before a transfer starts, never in libcurl's callback. */
    struct pollfd *watch, *ready;
    size_t nwatch, cap_watch;
    int unwatched; /* a socket found no room: libcurl checks them all */
    double first_limit; /* no live transfer's limit passes before this */
    unsigned long generation; /* the process whose connections these are:
                               * fork_generation when it was made */
    struct curl_slist *headers; /* "User-Agent: ..." when one was asked for */
    int direct; /* no proxy: see goes_direct */
    st_castore *castore; /* the process's store of our CA bundle, or NULL */
};

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc = CURLE_FAILED_INIT;

/* Which process this is, as a count of the forks that led to it: a child
 * of fork() sees it one higher than its parent did. Checked before every
 * request without a system call (getpid() was one per request); glibc
 * drops the handler when the module is unloaded. */
static volatile unsigned long fork_generation;

static void on_fork_child(void) { fork_generation++; }

/* curl_global_init is not thread-safe on older libcurl: run it once. */
static void global_init(void) {
    global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
    if (global_rc == CURLE_OK && pthread_atfork(NULL, NULL, on_fork_child))
        global_rc = CURLE_OUT_OF_MEMORY; /* cannot tell a child: refuse */
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *ud) {
    st_xfer *x = ud;
    size_t n = size * nmemb;
    if (x->reply->body.len + n > (size_t)x->t->opts.max_response) {
        x->too_large = 1;
        return 0; /* makes libcurl stop with CURLE_WRITE_ERROR */
    }
    if (st_buf_append(&x->reply->body, data, n) != 0) {
        x->no_memory = 1;
        return 0;
    }
    return n;
}

#if LIBCURL_VERSION_NUM >= 0x075000 /* 7.80.0: CURLOPT_PREREQFUNCTION */
#define ST_HAVE_PREREQ 1
/* The time limits are kept here, not by libcurl: its timers cost ~1,200
 * instructions a request (a tenth of what the client adds to a request).
 * The connect limit needs to know when the request goes out: PREREQ. */
#define ST_OWN_TIME_LIMITS 1
/* Runs right before the request goes out on a connection. */
static int on_request_ready(void *ud, char *ip, char *local_ip, int port,
                            int local_port) {
    st_xfer *x = ud;
    (void)ip, (void)local_ip, (void)port, (void)local_port;
    if (x->reply->request_sent && x->once) {
        x->resend_refused = 1;
        return CURL_PREREQFUNC_ABORT;
    }
    x->reply->request_sent = 1;
    return CURL_PREREQFUNC_OK;
}
#endif

/* Runs for each socket libcurl opens: the exchange made a new connection
 * (one getinfo less on every request than CURLINFO_NUM_CONNECTS). */
static int on_new_socket(void *ud, curl_socket_t fd, curlsocktype purpose) {
    st_xfer *x = ud;
    (void)fd, (void)purpose;
    x->reply->new_connection = 1;
    return CURL_SOCKOPT_OK;
}

#define SET(opt, val)                                                         \
    do {                                                                      \
        if (curl_easy_setopt(x->easy, opt, val) != CURLE_OK)                  \
            goto failed;                                                      \
    } while (0)

#ifndef ST_OWN_TIME_LIMITS
/* libcurl reads 0 ms as "no limit": a positive time below 1 ms must not
 * round down to it, so milliseconds are rounded up. */
static long to_ms(double seconds) {
    return seconds > 0 ? (long)ceil(seconds * 1000) : 0;
}
#endif

/* A User-Agent only when asked for, as a prepared header line: libcurl
 * rebuilds CURLOPT_USERAGENT's line through its printf on every request,
 * which alone cost a tenth of a request's instructions. */
static int prepare_headers(st_transport *t) {
    char *line;
    size_t len;
    if (!t->opts.user_agent)
        return 0;
    len = strlen(t->opts.user_agent) + sizeof "User-Agent: ";
    line = malloc(len);
    if (!line)
        return -1;
    snprintf(line, len, "User-Agent: %s", t->opts.user_agent);
    t->headers = curl_slist_append(NULL, line);
    free(line);
    return t->headers ? 0 : -1;
}

/* Every TLS connection gets the CA bundle's shared store (st_castore.h)
 * instead of parsing the bundle again. */
static CURLcode on_ssl_ctx(CURL *easy, void *ssl_ctx, void *data) {
    st_xfer *x = data;
    (void)easy;
    if (st_castore_install(x->t->castore, ssl_ctx) == 0)
        return CURLE_OK;
    x->ca_unreadable = 1;
    return CURLE_SSL_CACERT_BADFILE;
}

/* The CA bundle: the shared store when there is one (libcurl then loads
 * nothing itself), else the options' files, else libcurl's defaults. */
static int configure_ca(st_xfer *x, const st_transport_options *o) {
    if (x->t->castore) {
        SET(CURLOPT_CAINFO, NULL);
        SET(CURLOPT_CAPATH, NULL);
        SET(CURLOPT_SSL_CTX_FUNCTION, on_ssl_ctx);
        SET(CURLOPT_SSL_CTX_DATA, x);
        return 0;
    }
    if (o->ca_file)
        SET(CURLOPT_CAINFO, o->ca_file);
    if (o->ca_path)
        SET(CURLOPT_CAPATH, o->ca_path);
    return 0;
failed:
    return -1;
}

static int configure(st_xfer *x, const st_transport_options *o,
                     CURLSH *share) {
    SET(CURLOPT_PRIVATE, x);
    SET(CURLOPT_SHARE, share);
    SET(CURLOPT_NOSIGNAL, 1L); /* timeouts without SIGALRM: thread-safe */
    SET(CURLOPT_FOLLOWLOCATION, 0L); /* the password is in the query string */
#if LIBCURL_VERSION_NUM >= 0x075500
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
#else
    SET(CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    SET(CURLOPT_HTTPGET, 1L);
    SET(CURLOPT_TCP_KEEPALIVE, 1L);
#ifndef ST_OWN_TIME_LIMITS
    SET(CURLOPT_TIMEOUT_MS, to_ms(o->timeout));
    SET(CURLOPT_CONNECTTIMEOUT_MS, to_ms(o->connect_timeout));
#endif
    SET(CURLOPT_SSL_VERIFYPEER, o->verify ? 1L : 0L);
    SET(CURLOPT_SSL_VERIFYHOST, o->verify ? 2L : 0L);
    if (configure_ca(x, o) != 0)
        goto failed;
    if (o->proxy)
        SET(CURLOPT_PROXY, o->proxy);
    else if (x->t->direct) {
        /* Neither is the environment read again: for the proxy, nor for
         * no_proxy and NO_PROXY (libcurl reads both at every request
         * when no list is set, ~700 instructions). */
        SET(CURLOPT_PROXY, "");
        SET(CURLOPT_NOPROXY, "");
    }
    if (x->t->headers)
        SET(CURLOPT_HTTPHEADER, x->t->headers);
    SET(CURLOPT_WRITEFUNCTION, on_body);
    SET(CURLOPT_WRITEDATA, x);
    SET(CURLOPT_ERRORBUFFER, x->errbuf);
    SET(CURLOPT_SOCKOPTFUNCTION, on_new_socket);
    SET(CURLOPT_SOCKOPTDATA, x);
#ifdef ST_HAVE_PREREQ
    SET(CURLOPT_PREREQFUNCTION, on_request_ready);
    SET(CURLOPT_PREREQDATA, x);
#endif
    return 0;
failed:
    return -1;
}

static void xfer_free(st_xfer *x) {
    if (!x)
        return;
    curl_easy_cleanup(x->easy);
    st_curl_url_free(&x->url); /* after the easy handle: it points to it */
    free(x);
}

static st_xfer *xfer_new(st_transport *t, st_error *err) {
    st_xfer *x = calloc(1, sizeof *x);
    if (!x || !(x->easy = curl_easy_init())) {
        free(x);
        st_nomem(err);
        return NULL;
    }
    x->t = t;
    if (configure(x, &t->opts, t->share) != 0) {
        xfer_free(x);
        st_fail(err, ST_E_INVALID,
                "libcurl rejected an option (is this libcurl too old?)");
        return NULL;
    }
    return x;
}

/* An idle slot, or a new one. */
static st_xfer *xfer_take(st_transport *t, st_error *err) {
    if (t->nidle > 0)
        return t->idle[--t->nidle];
    return xfer_new(t, err);
}

static void xfer_give_back(st_transport *t, st_xfer *x) {
    if (t->nidle == t->cap_idle) {
        size_t cap = t->cap_idle ? t->cap_idle * 2 : 4;
        st_xfer **p = realloc(t->idle, cap * sizeof *p);
        if (!p) {
            xfer_free(x);
            return;
        }
        t->idle = p;
        t->cap_idle = cap;
    }
    t->idle[t->nidle++] = x;
}

void st_transport_keep_idle(st_transport *t, size_t keep) {
    while (t->nidle > keep)
        xfer_free(t->idle[--t->nidle]);
}

/* ---- sockets and timers --------------------------------------------------
 * libcurl says which sockets to watch; poll() watches them, and libcurl
 * acts on the ready sockets alone. Asking it to check every transfer
 * instead (curl_multi_perform) cost one poll() system call per transfer at
 * each wake-up: at concurrency 200, 26,000 calls for 4,000 requests, and
 * twice the CPU. When its timers are due is asked of libcurl each time
 * (curl_multi_timeout): libcurl 7.88's timer callback can leave a timer
 * it has dropped standing, which woke a 0.2 s wait 180 times. */

static int on_socket(CURL *easy, curl_socket_t fd, int what, void *userp,
                     void *socketp) {
    st_transport *t = userp;
    size_t slot = (size_t)(uintptr_t)socketp; /* its index + 1; 0: none */
    (void)easy;
    if (what == CURL_POLL_REMOVE) {
        if (slot == 0)
            return 0;
        /* The last one moves into its place, and is told its new index. */
        t->watch[slot - 1] = t->watch[--t->nwatch];
        if (slot - 1 < t->nwatch)
            curl_multi_assign(t->multi, t->watch[slot - 1].fd,
                              (void *)(uintptr_t)slot);
        return 0;
    }
    if (slot == 0) {
        if (t->nwatch == t->cap_watch) {
            t->unwatched = 1;
            return 0;
        }
        slot = ++t->nwatch;
        t->watch[slot - 1].fd = fd;
        curl_multi_assign(t->multi, fd, (void *)(uintptr_t)slot);
    }
    t->watch[slot - 1].events =
        (short)(((what & CURL_POLL_IN) ? POLLIN : 0) |
                ((what & CURL_POLL_OUT) ? POLLOUT : 0));
    return 0;
}

/* Room to watch the sockets of every running transfer: two each at most
 * (two addresses tried at once while connecting). */
static int reserve_watch(st_transport *t) {
    size_t need = 2 * t->running + 2, cap;
    struct pollfd *p;
    if (t->cap_watch >= need)
        return 0;
    cap = 2 * need;
    if (!(p = realloc(t->watch, cap * sizeof *p)))
        return -1;
    t->watch = p;
    if (!(p = realloc(t->ready, cap * sizeof *p)))
        return -1;
    t->ready = p;
    t->cap_watch = cap;
    return 0;
}

static int setup_multi(st_transport *t) {
    t->multi = curl_multi_init();
    t->share = curl_share_init();
    t->nwatch = 0;
    t->unwatched = 0;
    if (!t->multi || !t->share)
        return -1;
    /* Keep as many idle connections as requests may run at once. */
    if (curl_multi_setopt(t->multi, CURLMOPT_MAXCONNECTS,
                          (long)t->opts.concurrency) != CURLM_OK ||
        curl_multi_setopt(t->multi, CURLMOPT_SOCKETFUNCTION, on_socket) !=
            CURLM_OK ||
        curl_multi_setopt(t->multi, CURLMOPT_SOCKETDATA, t) != CURLM_OK ||
        curl_share_setopt(t->share, CURLSHOPT_SHARE,
                          CURL_LOCK_DATA_SSL_SESSION) != CURLSHE_OK ||
        curl_share_setopt(t->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS) !=
            CURLSHE_OK)
        return -1;
    return 0;
}

/* After fork() the child holds copies of the parent's connections. A
 * request on one would cross with the parent's replies, and closing one
 * cleanly (a TLS close_notify, a last read) would break the parent's. So a
 * child never touches them: their handles are set aside, reachable but
 * never used or cleaned up, and the child opens connections of its own. */
typedef struct inherited {
    CURLM *multi;
    CURLSH *share;
    st_xfer **idle;
    struct inherited *next;
} inherited;

/* Pushed without a lock: a mutex another thread held at fork() time
 * would stay locked in the child for ever. */
static inherited *volatile inherited_list;

static int set_aside(st_transport *t) {
    inherited *h = malloc(sizeof *h);
    if (!h)
        return -1;
    h->multi = t->multi;
    h->share = t->share;
    h->idle = t->idle;
    do
        h->next = inherited_list;
    while (!__sync_bool_compare_and_swap(&inherited_list, h->next, h));
    t->multi = NULL;
    t->share = NULL;
    t->idle = NULL;
    t->nidle = t->cap_idle = 0;
    return 0;
}

/* Called before every request: in a forked child, starts afresh. */
static int own_process(st_transport *t, st_error *err) {
    if (t->generation == fork_generation)
        return 0;
    if (t->running == 0 && set_aside(t) == 0 && setup_multi(t) == 0) {
        t->generation = fork_generation;
        return 0;
    }
    return st_nomem(err);
}

/* Whether requests go straight to the gateway: no proxy option, and none
 * in the environment libcurl reads (it then decides afresh at every
 * request, ~1,500 instructions). Decided once, when the client is made,
 * like its other options; with any proxy libcurl decides as it always
 * did. */
static int goes_direct(const st_transport_options *o) {
    static const char *const proxy_vars[] = {
        "http_proxy", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY",
        NULL};
    size_t i;
    if (o->proxy)
        return 0;
    for (i = 0; proxy_vars[i]; i++) {
        const char *v = getenv(proxy_vars[i]);
        if (v && *v)
            return 0;
    }
    return 1;
}

st_transport *st_transport_new(const st_transport_options *o,
                               st_error *err) {
    st_transport *t;
    st_xfer *first;
    pthread_once(&global_once, global_init);
    if (global_rc != CURLE_OK) {
        st_fail(err, ST_E_NETWORK, "libcurl failed to initialise: %s",
                curl_easy_strerror(global_rc));
        return NULL;
    }
    t = calloc(1, sizeof *t);
    if (!t) {
        st_nomem(err);
        return NULL;
    }
    t->opts = *o;
    t->direct = goes_direct(o);
    t->generation = fork_generation;
    t->first_limit = HUGE_VAL;
    if (o->verify) /* NULL where it cannot be shared: libcurl loads it */
        t->castore = st_castore_get(o->ca_file, o->ca_path);
    if (setup_multi(t) != 0 || prepare_headers(t) != 0) {
        st_nomem(err);
        st_transport_free(t);
        return NULL;
    }
    /* One slot now, so a bad option shows in st.new, not in the first call. */
    first = xfer_new(t, err);
    if (!first) {
        st_transport_free(t);
        return NULL;
    }
    xfer_give_back(t, first);
    return t;
}

void st_transport_free(st_transport *t) {
    size_t i;
    if (!t)
        return;
    if (t->generation != fork_generation && set_aside(t) != 0)
        return; /* a forked child frees nothing it shares with its parent */
    /* Transfers still running belong to no one any more: the client is
     * only freed between calls, so there are none; idle slots go here. */
    for (i = 0; i < t->nidle; i++)
        xfer_free(t->idle[i]);
    free(t->idle);
    free(t->live);
    if (t->multi) /* closing its connections tells no one any more */
        curl_multi_setopt(t->multi, CURLMOPT_SOCKETFUNCTION, NULL);
    curl_multi_cleanup(t->multi);
    free(t->watch);
    free(t->ready);
    curl_share_cleanup(t->share);
    curl_slist_free_all(t->headers);
    st_castore_put(t->castore); /* after the handles that used it */
    free(t);
}

static st_code classify(CURLcode rc) {
    switch (rc) {
    case CURLE_OPERATION_TIMEDOUT:
        return ST_E_TIMEOUT;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT:
        return ST_E_CONNECT;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_USE_SSL_FAILED:
        return ST_E_TLS;
    default:
        return ST_E_NETWORK;
    }
}

static int transfer_failed(st_xfer *x, CURLcode rc, st_error *err) {
    const char *detail = x->errbuf[0] ? x->errbuf : curl_easy_strerror(rc);
    if (x->no_memory || rc == CURLE_OUT_OF_MEMORY)
        return st_nomem(err);
    if (x->too_large)
        return st_fail(err, ST_E_TOO_LARGE,
                       "gateway answer is larger than max_response (%ld bytes)",
                       x->t->opts.max_response);
    if (x->resend_refused)
        return st_fail(err, ST_E_NETWORK,
                       "connection lost after the request was sent; not "
                       "sent again");
    if (x->ca_unreadable)
        return st_fail(err, ST_E_TLS,
                       "TLS failure: cannot read the CA certificates (%s)",
                       x->t->opts.ca_file   ? x->t->opts.ca_file
                       : x->t->opts.ca_path ? x->t->opts.ca_path
                                            : "the system's bundle");
    switch (classify(rc)) {
    case ST_E_CONNECT:
        if (x->reply->request_sent) /* API.md: `connect` never lies */
            return st_fail(err, ST_E_NETWORK,
                           "connection lost after the request was sent, "
                           "and the reconnect failed: %s",
                           detail);
        return st_fail(err, ST_E_CONNECT, "could not connect: %s", detail);
    case ST_E_TIMEOUT:
        return st_fail(err, ST_E_TIMEOUT, "timeout: %s", detail);
    case ST_E_TLS:
        return st_fail(err, ST_E_TLS, "TLS failure: %s", detail);
    default:
        return st_fail(err, ST_E_NETWORK, "network failure: %s", detail);
    }
}

/* The status, and the time since the transfer started by our clock (one
 * getinfo a request fewer than asking libcurl for its total time). */
static void read_transfer_info(st_xfer *x, st_reply *reply) {
    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &reply->http_status);
    reply->seconds = st_now() - x->started;
}

/* The transfer of a finished easy handle: a sequential caller's only live
 * one without asking libcurl, else through CURLINFO_PRIVATE. */
static st_xfer *xfer_of(const st_transport *t, CURL *easy) {
    st_xfer *x = NULL;
    if (t->running == 1 && t->live[0]->easy == easy)
        return t->live[0];
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&x);
    return x;
}

/* ---- time limits -------------------------------------------------------- */

/* When x's time runs out: the whole request's limit, and the connect
 * limit until the request has gone out; HUGE_VAL without limits. */
static double time_limit(const st_transport *t, const st_xfer *x) {
    double at = HUGE_VAL;
#ifdef ST_OWN_TIME_LIMITS
    if (t->opts.timeout > 0)
        at = x->started + t->opts.timeout;
    if (t->opts.connect_timeout > 0 && !x->reply->request_sent &&
        x->started + t->opts.connect_timeout < at)
        at = x->started + t->opts.connect_timeout;
#else
    (void)t, (void)x;
#endif
    return at;
}

static int add_live(st_transport *t, st_xfer *x) {
    if (t->running == t->cap_live) {
        size_t cap = t->cap_live ? t->cap_live * 2 : 4;
        st_xfer **p = realloc(t->live, cap * sizeof *p);
        if (!p)
            return -1;
        t->live = p;
        t->cap_live = cap;
    }
    x->live_slot = t->running;
    t->live[t->running++] = x;
    return 0;
}

/* Takes x out of the multi handle and the live list, back to the idle. */
static void release(st_transport *t, st_xfer *x) {
    st_xfer *last = t->live[--t->running];
    last->live_slot = x->live_slot;
    t->live[x->live_slot] = last;
    curl_multi_remove_handle(t->multi, x->easy);
    x->reply = NULL;
    xfer_give_back(t, x);
}

/* A live transfer whose time ran out by now, or NULL. Scans only when the
 * earliest limit may have passed, and notes the next one meanwhile. */
static st_xfer *out_of_time(st_transport *t, double now) {
    size_t i;
    double first = HUGE_VAL;
    if (now < t->first_limit)
        return NULL;
    for (i = 0; i < t->running; i++) {
        double at = time_limit(t, t->live[i]);
        if (at <= now)
            return t->live[i];
        if (at < first)
            first = at;
    }
    t->first_limit = first;
    return NULL;
}

static int timed_out(st_transport *t, st_xfer *x, double now, st_error *err) {
    int connecting = !x->reply->request_sent;
    x->reply->http_status = 0;
    x->reply->seconds = now - x->started;
    if (connecting && t->opts.connect_timeout > 0 &&
        now >= x->started + t->opts.connect_timeout)
        return st_fail(err, ST_E_TIMEOUT,
                       "timeout: could not connect within %g s",
                       t->opts.connect_timeout);
    return st_fail(err, ST_E_TIMEOUT, "timeout: no answer within %g s",
                   t->opts.timeout);
}

/* ---- transfers ---------------------------------------------------------- */

int st_transport_start(st_transport *t, const char *url, int once,
                       st_reply *reply, void *cookie, st_error *err) {
    st_xfer *x;
    double limit;
    if (own_process(t, err) != 0)
        return -1;
    x = xfer_take(t, err);
    if (!x)
        return -1;
    x->reply = reply;
    x->cookie = cookie;
    x->once = once;
    x->resend_refused = 0;
    x->too_large = 0;
    x->no_memory = 0;
    x->ca_unreadable = 0;
    x->errbuf[0] = '\0';
    reply->http_status = 0;
    reply->request_sent = 0;
    reply->new_connection = 0;
    reply->seconds = 0;
    x->started = st_now();
    if (st_curl_url_set(&x->url, x->easy, url, t->direct) != 0 ||
        add_live(t, x) != 0) {
        xfer_give_back(t, x);
        return st_nomem(err);
    }
    if (t->running == 1)
        t->unwatched = 0; /* no socket is watched without a transfer */
    if (reserve_watch(t) != 0) {
        t->running--;
        xfer_give_back(t, x);
        return st_nomem(err);
    }
    if (curl_multi_add_handle(t->multi, x->easy) != CURLM_OK) {
        t->running--;
        xfer_give_back(t, x);
        return st_nomem(err);
    }
    limit = time_limit(t, x);
    if (limit < t->first_limit)
        t->first_limit = limit;
    return 0;
}

/* Milliseconds for poll(): rounded up, so that a time limit
 * is not polled for in a busy loop, and at most a minute. */
static int poll_ms(double seconds) {
    if (!(seconds > 0))
        return 0;
    if (seconds > 60)
        return 60000;
    return (int)ceil(seconds * 1000);
}

/* Lets libcurl act on fd (CURL_SOCKET_TIMEOUT: run its timers); answers
 * how many of its transfers are not finished. */
static int act(st_transport *t, curl_socket_t fd, int events) {
    int alive = (int)t->running;
    curl_multi_socket_action(t->multi, fd, events, &alive);
    return alive;
}

/* Milliseconds until libcurl's next timer is due (0: it is), -1: none. */
static long timer_ms(st_transport *t) {
    long ms = -1;
    curl_multi_timeout(t->multi, &ms);
    return ms;
}

/* Runs libcurl's timers when one is due (a new transfer's first is);
 * answers how many of its transfers are not finished. */
static int run_due_timers(st_transport *t) {
    if (timer_ms(t) != 0)
        return (int)t->running;
    return act(t, CURL_SOCKET_TIMEOUT, 0);
}

static int curl_events(short revents) {
    return ((revents & (POLLIN | POLLHUP)) ? CURL_CSELECT_IN : 0) |
           ((revents & POLLOUT) ? CURL_CSELECT_OUT : 0) |
           ((revents & (POLLERR | POLLNVAL)) ? CURL_CSELECT_ERR : 0);
}

/* Waits up to max_wait for a watched socket, and lets libcurl act on the
 * ready ones: copied first, since acting changes the watched list. */
static void wait_for_sockets(st_transport *t, double max_wait) {
    size_t i, n = 0;
    int alive;
    if (t->unwatched && max_wait > 0.01)
        max_wait = 0.01;
    if (poll(t->watch, t->nwatch, poll_ms(max_wait)) > 0) {
        for (i = 0; i < t->nwatch; i++)
            if (t->watch[i].revents)
                t->ready[n++] = t->watch[i];
        for (i = 0; i < n; i++)
            act(t, t->ready[i].fd, curl_events(t->ready[i].revents));
    }
    if (t->unwatched) /* out of memory once: libcurl checks every socket */
        curl_multi_perform(t->multi, &alive);
}

void st_transport_poll(st_transport *t, double max_wait) {
    long ms;
    if (run_due_timers(t) < (int)t->running)
        return; /* something finished: no need to wait */
    if (t->first_limit < HUGE_VAL) { /* no clock read without limits */
        double left = t->first_limit - st_now();
        if (left < max_wait)
            max_wait = left;
    }
    ms = timer_ms(t);
    if (ms >= 0 && ms / 1000.0 < max_wait)
        max_wait = ms / 1000.0;
    wait_for_sockets(t, max_wait);
    run_due_timers(t);
}

/* The next transfer libcurl finished, or 0. */
static int next_finished(st_transport *t, void **cookie, int *rc,
                         st_error *err) {
    int left;
    CURLMsg *msg;
    while ((msg = curl_multi_info_read(t->multi, &left)) != NULL) {
        st_xfer *x;
        if (msg->msg != CURLMSG_DONE)
            continue;
        x = xfer_of(t, msg->easy_handle);
        read_transfer_info(x, x->reply);
#ifndef ST_HAVE_PREREQ
        x->reply->request_sent = 1; /* cannot tell: assume the worst */
#endif
        *rc = 0;
        if (msg->data.result != CURLE_OK) {
            x->reply->http_status = 0;
            *rc = transfer_failed(x, msg->data.result, err);
        }
        *cookie = x->cookie;
        release(t, x);
        return 1;
    }
    return 0;
}

int st_transport_next_done(st_transport *t, void **cookie, int *rc,
                           st_error *err) {
    st_xfer *x;
    double now;
    if (next_finished(t, cookie, rc, err))
        return 1;
    /* Only what libcurl has not finished may run out of time. */
    if (t->first_limit == HUGE_VAL || !(x = out_of_time(t, now = st_now())))
        return 0;
    *rc = timed_out(t, x, now, err);
    *cookie = x->cookie;
    release(t, x);
    return 1;
}
