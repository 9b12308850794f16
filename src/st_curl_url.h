/* How a transfer slot gives libcurl the URL of each request, at the least
 * cost per request. A slot keeps its URL parsed (CURLOPT_CURLU): the part
 * before the query (scheme, host, port, path) is the client's and the same
 * from request to request, so it is parsed once. A direct request (no
 * proxy) also names its path and query itself (CURLOPT_REQUEST_TARGET), as
 * url() built them. A URL the parsed handle cannot take goes to libcurl as
 * text, which then reports what is wrong with it as it always did. Used by
 * st_transport alone; plain C, no Lua. */
#ifndef ST_CURL_URL_H
#define ST_CURL_URL_H

#include <curl/curl.h>
#include <stddef.h>

typedef struct st_curl_url {
    struct Curl_URL *uh; /* the base, parsed (libcurl's CURLU) */
    char *base;          /* its text: the URL before the query */
    size_t base_len;
    long path_at; /* where base's path starts, when libcurl sends that text
                   * as it is; -1 when it does not */
    int in_handle;       /* libcurl reads the URL from uh, not as text */
    int query_in_handle; /* uh holds a query beside the base */
    int target_set;      /* CURLOPT_REQUEST_TARGET may be set */
} st_curl_url;

/* Gives easy the URL of its next request. direct: no proxy sees the
 * request, so its request line may name the target itself (through a
 * proxy it must name the whole URL). 0, or -1 when out of memory. A
 * zeroed st_curl_url is a slot that has had no URL yet. */
int st_curl_url_set(st_curl_url *u, CURL *easy, const char *url, int direct);

/* Frees what u holds, after the easy handle that points to it. */
void st_curl_url_free(st_curl_url *u);

#endif
