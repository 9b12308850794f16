/* The raw loop again, but through the multi interface the client drives
 * (add, perform and poll until done, remove), one reused easy handle.
 * Usage: multi_loop URL COUNT. make bench counts its instructions beside
 * bench/curl_loop.c's: in libcurl 7.88, removing a handle from a multi
 * walks the connection cache's 97-slot table, where curl_easy_perform's
 * private multi has 3 slots; its row shows that share of what the client
 * costs besides libcurl. */
#include "loop_url.h"

#include <curl/curl.h>
#include <stdlib.h>

static size_t discard(char *data, size_t size, size_t nmemb, void *ud) {
    (void)data, (void)ud;
    return size * nmemb;
}

static int one_request(CURLM *multi, CURL *easy) {
    int running = 1, left;
    CURLMsg *msg;
    int failed = 0;
    curl_multi_add_handle(multi, easy);
    while (running) {
        curl_multi_perform(multi, &running);
        if (running)
            curl_multi_poll(multi, NULL, 0, 1000, NULL);
    }
    while ((msg = curl_multi_info_read(multi, &left)) != NULL)
        failed |= msg->data.result != CURLE_OK;
    curl_multi_remove_handle(multi, easy);
    return failed ? -1 : 0;
}

int main(int argc, char **argv) {
    CURLM *multi;
    CURL *easy;
    long i, count;
    if (argc < 3)
        return 2;
    count = atol(argv[2]);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    multi = curl_multi_init();
    easy = curl_easy_init();
    set_url(easy, argv[1]);
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, discard);
    for (i = 0; i < 200 + count; i++)
        if (one_request(multi, easy) != 0)
            return 1;
    curl_easy_cleanup(easy);
    curl_multi_cleanup(multi);
    curl_global_cleanup();
    return 0;
}
