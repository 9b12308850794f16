/* A slot's URL for libcurl (see st_curl_url.h). */
#include "st_curl_url.h"

#include <stdlib.h>
#include <string.h>

#if LIBCURL_VERSION_NUM >= 0x073f00 /* 7.63.0: CURLOPT_CURLU */

/* libcurl parses a URL given as text (CURLOPT_URL) and prints it back on
 * every request: ~15,000 instructions, a fifth of a request. (It prints a
 * parsed handle back only while it has no URL text, so
 * CURLINFO_EFFECTIVE_URL keeps a slot's first URL: nothing here reads it.) */
#define ST_URL_FLAGS (CURLU_GUESS_SCHEME | CURLU_NON_SUPPORT_SCHEME)

/* libcurl lowers the hex digits of the escapes in a query set on its own
 * ("%2B" goes out as "%2b"): the same to any server, but not the bytes
 * url() shows. Such a query goes in with its whole URL instead. */
static int has_upper_escape(const char *s) {
    while ((s = strchr(s, '%')) != NULL) {
        if (s[1] == '\0')
            return 0;
        if ((s[1] >= 'A' && s[1] <= 'F') || (s[2] >= 'A' && s[2] <= 'F'))
            return 1;
        s++;
    }
    return 0;
}

/* Printable ASCII without a space or '#': bytes a request line carries
 * as they are (url() escapes everything else; a client's URL may not). */
static int plain_query(const char *s) {
    for (; *s; s++)
        if (*s <= ' ' || *s >= 0x7f || *s == '#')
            return 0;
    return 1;
}

static void forget_base(st_curl_url *u) {
    free(u->base);
    u->base = NULL;
}

/* Where libcurl's request line takes base's path from: the text after
 * the scheme and the host, when libcurl sends it unchanged (it would
 * remove "/../", or add "/" to a bare host: those take the slower way). */
static long path_in_base(const st_curl_url *u) {
    const char *host = strstr(u->base, "://");
    const char *path;
    char *sent = NULL;
    long at = -1;
    if (!host)
        return -1;
    path = host + 3 + strcspn(host + 3, "/");
    if (curl_url_get(u->uh, CURLUPART_PATH, &sent, 0) == CURLUE_OK &&
        strcmp(sent, path) == 0)
        at = (long)(path - u->base);
    curl_free(sent);
    return at;
}

/* uh holds url's base alone, parsed only when the base changes. */
static int hold_base(st_curl_url *u, const char *url, size_t base_len) {
    char *base;
    if (u->base && u->base_len == base_len &&
        memcmp(u->base, url, base_len) == 0) {
        if (u->query_in_handle &&
            curl_url_set(u->uh, CURLUPART_QUERY, NULL, 0) != CURLUE_OK)
            return -1;
        u->query_in_handle = 0;
        return 0;
    }
    if (memchr(url, '#', base_len))
        return -1; /* a fragment before the query: libcurl's own reading */
    if ((!u->uh && !(u->uh = curl_url())) || !(base = malloc(base_len + 1)))
        return -1;
    memcpy(base, url, base_len);
    base[base_len] = '\0';
    forget_base(u);
    if (curl_url_set(u->uh, CURLUPART_URL, base, ST_URL_FLAGS) != CURLUE_OK) {
        free(base);
        return -1;
    }
    u->base = base;
    u->base_len = base_len;
    u->query_in_handle = 0;
    u->path_at = path_in_base(u);
    return 0;
}

/* Hands uh to libcurl, once: it reads the handle afresh at each request.
 * Any URL text goes, or libcurl would still print that one. */
static int give_handle(st_curl_url *u, CURL *easy) {
    if (u->in_handle)
        return 0;
    if (curl_easy_setopt(easy, CURLOPT_URL, NULL) != CURLE_OK ||
        curl_easy_setopt(easy, CURLOPT_CURLU, u->uh) != CURLE_OK)
        return -1;
    u->in_handle = 1;
    return 0;
}

/* The request line names url's path and query as they are. Otherwise
 * libcurl prints the whole URL back from the handle and formats the query
 * into the request line through its own printf: ~30,000 instructions a
 * request, a third of a send_many item's. */
static int name_target(st_curl_url *u, CURL *easy, const char *url) {
    u->target_set = 1;
    return curl_easy_setopt(easy, CURLOPT_REQUEST_TARGET, url + u->path_at) ==
                   CURLE_OK
               ? 0
               : -1;
}

/* The request line takes its target from the URL again. */
static int drop_target(st_curl_url *u, CURL *easy) {
    if (!u->target_set)
        return 0;
    if (curl_easy_setopt(easy, CURLOPT_REQUEST_TARGET, NULL) != CURLE_OK)
        return -1;
    u->target_set = 0;
    return 0;
}

/* The handle (holding the base) gets the query, or the whole URL. */
static int set_query(st_curl_url *u, const char *url, const char *query) {
    CURLUcode rc;
    u->query_in_handle = query != NULL;
    if (query && has_upper_escape(query + 1))
        rc = curl_url_set(u->uh, CURLUPART_URL, url, ST_URL_FLAGS);
    else
        rc = curl_url_set(u->uh, CURLUPART_QUERY, query ? query + 1 : NULL, 0);
    return rc == CURLUE_OK ? 0 : -1;
}

/* The URL as text, for libcurl to parse (and refuse) on its own. */
static int set_text(st_curl_url *u, CURL *easy, const char *url) {
    forget_base(u); /* the handle no longer holds it */
    if (drop_target(u, easy) != 0)
        return -1;
    if (u->in_handle) {
        if (curl_easy_setopt(easy, CURLOPT_CURLU, NULL) != CURLE_OK)
            return -1;
        u->in_handle = 0;
    }
    return curl_easy_setopt(easy, CURLOPT_URL, url) == CURLE_OK ? 0 : -1;
}

int st_curl_url_set(st_curl_url *u, CURL *easy, const char *url, int direct) {
    const char *query = strchr(url, '?');
    size_t base_len = query ? (size_t)(query - url) : strlen(url);
    if (hold_base(u, url, base_len) != 0 || give_handle(u, easy) != 0)
        return set_text(u, easy, url);
    if (direct && query && u->path_at >= 0 && plain_query(query + 1) &&
        name_target(u, easy, url) == 0)
        return 0;
    if (drop_target(u, easy) != 0 || set_query(u, url, query) != 0)
        return set_text(u, easy, url);
    return 0;
}

void st_curl_url_free(st_curl_url *u) {
    curl_url_cleanup(u->uh);
    free(u->base);
}

#else /* older libcurl: the URL as text, parsed at every request */

int st_curl_url_set(st_curl_url *u, CURL *easy, const char *url, int direct) {
    (void)u, (void)direct;
    return curl_easy_setopt(easy, CURLOPT_URL, url) == CURLE_OK ? 0 : -1;
}

void st_curl_url_free(st_curl_url *u) { (void)u; }

#endif
