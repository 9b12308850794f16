/* For bench/curl_loop.c and bench/multi_loop.c. */
#ifndef BENCH_LOOP_URL_H
#define BENCH_LOOP_URL_H

#include <curl/curl.h>
#include <stdlib.h>

/* The URL as libcurl's text, or parsed once (CURLOPT_CURLU) with
 * BENCH_PARSED_URL set in the environment: the client gives libcurl its
 * URLs parsed, which spares libcurl parsing and printing the text back on
 * every request; this loop then shows what the client costs besides. */
static void set_url(CURL *easy, const char *url) {
    CURLU *parsed;
    if (!getenv("BENCH_PARSED_URL") || !(parsed = curl_url())) {
        curl_easy_setopt(easy, CURLOPT_URL, url);
        return;
    }
    curl_url_set(parsed, CURLUPART_URL, url, 0);
    curl_easy_setopt(easy, CURLOPT_CURLU, parsed); /* kept to the end */
}

#endif
