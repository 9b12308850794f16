/* The practical limit for sequential requests: one reused libcurl easy
 * handle in a plain C loop. Usage: curl_loop URL COUNT [CA_FILE]
 * Prints the seconds the COUNT requests took, after 200 unmeasured ones
 * that open the connection and the TLS session, as the Lua side does. */
#include "loop_url.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static size_t discard(char *data, size_t size, size_t nmemb, void *ud) {
    (void)data, (void)ud;
    return size * nmemb;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    CURL *easy;
    long i, count;
    double start;
    if (argc < 3) {
        fprintf(stderr, "usage: %s URL COUNT [CA_FILE]\n", argv[0]);
        return 2;
    }
    count = atol(argv[2]);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    easy = curl_easy_init();
    set_url(easy, argv[1]);
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, discard);
    if (argc > 3)
        curl_easy_setopt(easy, CURLOPT_CAINFO, argv[3]);
    for (i = 0; i < 200; i++)
        if (curl_easy_perform(easy) != CURLE_OK)
            return 1;
    start = now();
    for (i = 0; i < count; i++) {
        CURLcode rc = curl_easy_perform(easy);
        if (rc != CURLE_OK) {
            fprintf(stderr, "request %ld: %s\n", i, curl_easy_strerror(rc));
            return 1;
        }
    }
    printf("%.6f\n", now() - start);
    curl_easy_cleanup(easy);
    curl_global_cleanup();
    return 0;
}
