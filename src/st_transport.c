#include "st_transport.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct st_transport {
    CURL *easy;
    long max_response;
    /* Per-exchange state the callbacks write to. */
    st_reply *reply;
    int once;
    int resend_refused;
    int too_large;
    char errbuf[CURL_ERROR_SIZE];
};

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc = CURLE_FAILED_INIT;

/* curl_global_init is not thread-safe on older libcurl: run it once. */
static void global_init(void) {
    global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

double st_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void st_sleep(double seconds) {
    struct timespec ts;
    if (seconds <= 0)
        return;
    ts.tv_sec = (time_t)seconds;
    ts.tv_nsec = (long)((seconds - (double)ts.tv_sec) * 1e9);
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *ud) {
    st_transport *t = ud;
    size_t n = size * nmemb;
    if (t->reply->body.len + n > (size_t)t->max_response) {
        t->too_large = 1;
        return 0; /* makes libcurl stop with CURLE_WRITE_ERROR */
    }
    if (st_buf_append(&t->reply->body, data, n) != 0)
        return 0;
    return n;
}

#if LIBCURL_VERSION_NUM >= 0x075000 /* 7.80.0: CURLOPT_PREREQFUNCTION */
#define ST_HAVE_PREREQ 1
/* Runs right before the request goes out on a connection. */
static int on_request_ready(void *ud, char *ip, char *local_ip, int port,
                            int local_port) {
    st_transport *t = ud;
    (void)ip, (void)local_ip, (void)port, (void)local_port;
    if (t->reply->request_sent && t->once) {
        t->resend_refused = 1;
        return CURL_PREREQFUNC_ABORT;
    }
    t->reply->request_sent = 1;
    return CURL_PREREQFUNC_OK;
}
#endif

#define SET(opt, val)                                                         \
    do {                                                                      \
        if (curl_easy_setopt(t->easy, opt, val) != CURLE_OK)                  \
            goto failed;                                                      \
    } while (0)

static long to_ms(double seconds) {
    return seconds > 0 ? (long)(seconds * 1000 + 0.5) : 0;
}

static int configure(st_transport *t, const st_options *o) {
    char agent[128];
    if (!o->user_agent) {
        snprintf(agent, sizeof agent, "streamtelecom/%s libcurl/%s",
                 ST_VERSION, curl_version_info(CURLVERSION_NOW)->version);
        agent[sizeof agent - 1] = '\0';
    }
    SET(CURLOPT_NOSIGNAL, 1L); /* timeouts without SIGALRM: thread-safe */
    SET(CURLOPT_FOLLOWLOCATION, 0L); /* the password is in the query string */
#if LIBCURL_VERSION_NUM >= 0x075500
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
#else
    SET(CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    SET(CURLOPT_HTTPGET, 1L);
    SET(CURLOPT_TCP_KEEPALIVE, 1L);
    SET(CURLOPT_TIMEOUT_MS, to_ms(o->timeout));
    SET(CURLOPT_CONNECTTIMEOUT_MS, to_ms(o->connect_timeout));
    SET(CURLOPT_SSL_VERIFYPEER, o->verify ? 1L : 0L);
    SET(CURLOPT_SSL_VERIFYHOST, o->verify ? 2L : 0L);
    if (o->ca_file)
        SET(CURLOPT_CAINFO, o->ca_file);
    if (o->ca_path)
        SET(CURLOPT_CAPATH, o->ca_path);
    if (o->proxy)
        SET(CURLOPT_PROXY, o->proxy);
    SET(CURLOPT_USERAGENT, o->user_agent ? o->user_agent : agent);
    SET(CURLOPT_WRITEFUNCTION, on_body);
    SET(CURLOPT_WRITEDATA, t);
    SET(CURLOPT_ERRORBUFFER, t->errbuf);
#ifdef ST_HAVE_PREREQ
    SET(CURLOPT_PREREQFUNCTION, on_request_ready);
    SET(CURLOPT_PREREQDATA, t);
#endif
    return 0;
failed:
    return -1;
}

st_transport *st_transport_new(const st_options *o, st_error *err) {
    st_transport *t;
    pthread_once(&global_once, global_init);
    if (global_rc != CURLE_OK) {
        st_fail(err, ST_E_NETWORK, "libcurl failed to initialise: %s",
                curl_easy_strerror(global_rc));
        return NULL;
    }
    t = calloc(1, sizeof *t);
    if (!t || !(t->easy = curl_easy_init())) {
        free(t);
        st_fail(err, ST_E_NETWORK, "out of memory");
        return NULL;
    }
    t->max_response = o->max_response;
    if (configure(t, o) != 0) {
        st_fail(err, ST_E_INVALID,
                "libcurl rejected an option (is this libcurl too old?)");
        st_transport_free(t);
        return NULL;
    }
    return t;
}

void st_transport_free(st_transport *t) {
    if (!t)
        return;
    curl_easy_cleanup(t->easy);
    free(t);
}

void st_reply_free(st_reply *reply) {
    st_buf_free(&reply->body);
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

static int transfer_failed(st_transport *t, CURLcode rc, st_error *err) {
    const char *detail = t->errbuf[0] ? t->errbuf : curl_easy_strerror(rc);
    if (t->too_large)
        return st_fail(err, ST_E_TOO_LARGE,
                       "gateway answer is larger than max_response (%ld bytes)",
                       t->max_response);
    if (t->resend_refused)
        return st_fail(err, ST_E_NETWORK,
                       "connection lost after the request was sent; not sent "
                       "again, so the outcome is unknown");
    switch (classify(rc)) {
    case ST_E_TIMEOUT:
        return st_fail(err, ST_E_TIMEOUT, "timeout: %s", detail);
    case ST_E_CONNECT:
        return st_fail(err, ST_E_CONNECT, "could not connect: %s", detail);
    case ST_E_TLS:
        return st_fail(err, ST_E_TLS, "TLS failure: %s", detail);
    default:
        return st_fail(err, ST_E_NETWORK, "network failure: %s", detail);
    }
}

static void read_transfer_info(st_transport *t, st_reply *reply) {
    long connects = 0;
    curl_off_t micros = 0;
    curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &reply->http_status);
    curl_easy_getinfo(t->easy, CURLINFO_NUM_CONNECTS, &connects);
    curl_easy_getinfo(t->easy, CURLINFO_TOTAL_TIME_T, &micros);
    reply->new_connection = connects > 0;
    reply->seconds = (double)micros / 1e6;
}

int st_transport_get(st_transport *t, const char *url, int once,
                     st_reply *reply, st_error *err) {
    CURLcode rc;
    t->reply = reply;
    t->once = once;
    t->resend_refused = 0;
    t->too_large = 0;
    t->errbuf[0] = '\0';
    reply->http_status = 0;
    reply->request_sent = 0;
    reply->new_connection = 0;
    reply->seconds = 0;
    rc = curl_easy_setopt(t->easy, CURLOPT_URL, url);
    if (rc == CURLE_OK)
        rc = curl_easy_perform(t->easy);
    read_transfer_info(t, reply);
#ifndef ST_HAVE_PREREQ
    reply->request_sent = 1; /* cannot tell: assume the worst for a send */
#endif
    t->reply = NULL;
    if (rc != CURLE_OK) {
        reply->http_status = 0;
        return transfer_failed(t, rc, err);
    }
    return 0;
}
