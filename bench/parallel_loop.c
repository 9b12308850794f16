/* The rig's floor for a bulk run: COUNT sends of the bench's rows (row i
 * to 7903 and i in 7 digits, text "bench campaign row i"), CONCURRENCY at
 * once, each slot's next request started as soon as its answer is in,
 * through one multi handle driven as the client drives it (its sockets
 * polled, curl_multi_socket_action on the ready ones). No Lua, no journal,
 * no checks: what a run against the fake gateway cannot beat, so
 * make bench shows each bulk ratio beside this one.
 * Usage: parallel_loop BASE_URL COUNT CONCURRENCY, where BASE_URL already
 * holds user, pwd and sadr; exits 1 when a request fails. */
#include <curl/curl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define MAX_SOCKETS 4096

static struct pollfd watched[MAX_SOCKETS];
static int nwatched;
static long timer_ms = -1;
static double timer_at;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static size_t discard(char *data, size_t size, size_t nmemb, void *ud) {
    (void)data, (void)ud;
    return size * nmemb;
}

static int on_socket(CURL *easy, curl_socket_t fd, int what, void *u,
                     void *sp) {
    int i;
    (void)easy, (void)u, (void)sp;
    for (i = 0; i < nwatched && watched[i].fd != fd; i++)
        ;
    if (what == CURL_POLL_REMOVE) {
        if (i < nwatched)
            watched[i] = watched[--nwatched];
        return 0;
    }
    if (i == nwatched) {
        if (nwatched == MAX_SOCKETS)
            return -1;
        watched[nwatched++].fd = fd;
    }
    watched[i].events = (short)(((what & CURL_POLL_IN) ? POLLIN : 0) |
                                ((what & CURL_POLL_OUT) ? POLLOUT : 0));
    return 0;
}

static int on_timer(CURLM *multi, long ms, void *u) {
    (void)multi, (void)u;
    timer_ms = ms;
    timer_at = now() + ms / 1000.0;
    return 0;
}

static void start(CURLM *multi, CURL *easy, const char *base, long row) {
    char url[1024];
    snprintf(url, sizeof url,
             "%s&dadr=7903%07ld&text=bench%%20campaign%%20row%%20%ld", base,
             row, row);
    curl_easy_setopt(easy, CURLOPT_URL, url);
    curl_multi_add_handle(multi, easy);
}

static void act(CURLM *multi, curl_socket_t fd, int events) {
    int running;
    curl_multi_socket_action(multi, fd, events, &running);
}

static void wait_and_act(CURLM *multi) {
    struct pollfd ready[MAX_SOCKETS];
    int i, n = 0;
    int wait = timer_ms < 0 ? 1000 : (int)((timer_at - now()) * 1000 + 0.999);
    if (poll(watched, (nfds_t)nwatched, wait < 0 ? 0 : wait) > 0)
        for (i = 0; i < nwatched; i++)
            if (watched[i].revents)
                ready[n++] = watched[i];
    for (i = 0; i < n; i++)
        act(multi, ready[i].fd,
            ((ready[i].revents & (POLLIN | POLLHUP)) ? CURL_CSELECT_IN : 0) |
                ((ready[i].revents & POLLOUT) ? CURL_CSELECT_OUT : 0) |
                ((ready[i].revents & POLLERR) ? CURL_CSELECT_ERR : 0));
    if (timer_ms >= 0 && now() >= timer_at) {
        timer_ms = -1;
        act(multi, CURL_SOCKET_TIMEOUT, 0);
    }
}

int main(int argc, char **argv) {
    CURLM *multi;
    CURLMsg *msg;
    long count, concurrency, started = 0, done = 0, i;
    int left, failed = 0;
    if (argc < 4)
        return 2;
    count = atol(argv[2]);
    concurrency = atol(argv[3]);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    multi = curl_multi_init();
    curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, on_timer);
    for (i = 0; i < concurrency && started < count; i++) {
        CURL *easy = curl_easy_init();
        curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, discard);
        start(multi, easy, argv[1], ++started);
    }
    while (done < count && !failed) {
        wait_and_act(multi);
        while ((msg = curl_multi_info_read(multi, &left)) != NULL) {
            CURL *easy = msg->easy_handle;
            failed |= msg->data.result != CURLE_OK;
            done++;
            curl_multi_remove_handle(multi, easy);
            if (started < count)
                start(multi, easy, argv[1], ++started);
            else
                curl_easy_cleanup(easy);
        }
    }
    curl_multi_cleanup(multi);
    curl_global_cleanup();
    return failed ? 1 : 0;
}
