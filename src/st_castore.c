/* Shared certificate stores (st_castore.h).
 *
 * How libcurl 7.87+ on OpenSSL builds a connection's trust: its SSL_CTX
 * gets an empty X509_STORE; the CA file and path are loaded into it (or a
 * store cached in the multi handle is used) only after the ClientHello.
 * Here each client tells libcurl no file and no path, and its
 * CURLOPT_SSL_CTX_FUNCTION puts the shared store, already loaded, into
 * the SSL_CTX first; libcurl then finds nothing to load, sets on it the
 * flags it always sets (TRUSTED_FIRST, PARTIAL_CHAIN: set here too, at
 * creation, so that its setting them again changes nothing) and may cache
 * it in the client's multi handle, a reference of its own.
 *
 * The OpenSSL functions come from the libssl and libcrypto that libcurl
 * already brought into the process (dlopen with RTLD_NOLOAD): nothing to
 * link, no headers; a libcurl on another TLS library leaves this off. */
#include "st_castore.h"

#include <curl/curl.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* OpenSSL 3's ABI, as x509_vfy.h defines it. */
#define X509_V_FLAG_TRUSTED_FIRST 0x8000UL
#define X509_V_FLAG_PARTIAL_CHAIN 0x80000UL

typedef struct openssl_api {
    void *(*store_new)(void);
    void (*store_free)(void *store);
    int (*store_up_ref)(void *store);
    int (*store_load_file)(void *store, const char *file);
    int (*store_load_path)(void *store, const char *dir);
    int (*store_set_flags)(void *store, unsigned long flags);
    void (*ctx_set_cert_store)(void *ctx, void *store);
} openssl_api;

struct st_castore {
    char *file, *path; /* NULL: none */
    void *store;       /* loaded at the first connection; NULL before */
    int users;
    st_castore *next;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t api_once = PTHREAD_ONCE_INIT;
static openssl_api api;
static int api_ok;
static st_castore *stores;

/* dlsym into a function pointer (POSIX makes the cast well defined). */
#define FIND(lib, field, name)                                               \
    (*(void **)&api.field = dlsym((lib), (name))) != NULL

/* libcurl on OpenSSL 3, and its libraries in the process. */
static void find_api(void) {
    const curl_version_info_data *v = curl_version_info(CURLVERSION_NOW);
    void *ssl, *crypto;
    if (!v || !v->ssl_version || strncmp(v->ssl_version, "OpenSSL/3.", 10))
        return;
    ssl = dlopen("libssl.so.3", RTLD_NOW | RTLD_NOLOAD);
    crypto = dlopen("libcrypto.so.3", RTLD_NOW | RTLD_NOLOAD);
    if (!ssl || !crypto)
        return;
    api_ok = FIND(crypto, store_new, "X509_STORE_new") &&
             FIND(crypto, store_free, "X509_STORE_free") &&
             FIND(crypto, store_up_ref, "X509_STORE_up_ref") &&
             FIND(crypto, store_load_file, "X509_STORE_load_file") &&
             FIND(crypto, store_load_path, "X509_STORE_load_path") &&
             FIND(crypto, store_set_flags, "X509_STORE_set_flags") &&
             FIND(ssl, ctx_set_cert_store, "SSL_CTX_set_cert_store");
}

static int same(const char *a, const char *b) {
    return a == b || (a && b && strcmp(a, b) == 0);
}

/* libcurl's own defaults when the options name no bundle. */
static void default_locations(const char **file, const char **path) {
    const curl_version_info_data *v = curl_version_info(CURLVERSION_NOW);
    *file = *path = NULL;
#if LIBCURL_VERSION_NUM >= 0x074600 /* 7.70: cainfo and capath */
    if (v && v->age >= CURLVERSION_NINTH) {
        *file = v->cainfo;
        *path = v->capath;
    }
#else
    (void)v;
#endif
}

static st_castore *find_store(const char *file, const char *path) {
    st_castore *s;
    for (s = stores; s; s = s->next)
        if (same(s->file, file) && same(s->path, path))
            return s;
    return NULL;
}

static st_castore *new_store(const char *file, const char *path) {
    st_castore *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->file = file ? strdup(file) : NULL;
    s->path = path ? strdup(path) : NULL;
    if ((file && !s->file) || (path && !s->path)) {
        free(s->file), free(s->path), free(s);
        return NULL;
    }
    s->next = stores;
    stores = s;
    return s;
}

st_castore *st_castore_get(const char *ca_file, const char *ca_path) {
    st_castore *s;
    const char *default_file, *default_path;
    default_locations(&default_file, &default_path);
    /* What libcurl would load: an option replaces its own default only. */
    if (!ca_file)
        ca_file = default_file;
    if (!ca_path)
        ca_path = default_path;
    if (!ca_file && !ca_path)
        return NULL; /* nothing to share: libcurl decides */
    pthread_once(&api_once, find_api);
    if (!api_ok)
        return NULL;
    pthread_mutex_lock(&lock);
    s = find_store(ca_file, ca_path);
    if (!s)
        s = new_store(ca_file, ca_path);
    if (s)
        s->users++;
    pthread_mutex_unlock(&lock);
    return s;
}

static void unlink_store(st_castore *s) {
    st_castore **p = &stores;
    while (*p != s)
        p = &(*p)->next;
    *p = s->next;
}

void st_castore_put(st_castore *s) {
    if (!s)
        return;
    pthread_mutex_lock(&lock);
    if (--s->users == 0) {
        unlink_store(s);
        if (s->store)
            api.store_free(s->store);
        free(s->file);
        free(s->path);
        free(s);
    }
    pthread_mutex_unlock(&lock);
}

/* The store of s's files, as libcurl would fill it: the file, then the
 * path, each required when named; NULL when one cannot be read. */
static void *load(const st_castore *s) {
    void *store = api.store_new();
    if (!store)
        return NULL;
    if ((s->file && !api.store_load_file(store, s->file)) ||
        (s->path && !api.store_load_path(store, s->path))) {
        api.store_free(store);
        return NULL;
    }
    api.store_set_flags(store, X509_V_FLAG_TRUSTED_FIRST |
                                   X509_V_FLAG_PARTIAL_CHAIN);
    return store;
}

int st_castore_install(st_castore *s, void *ssl_ctx) {
    int rc = -1;
    pthread_mutex_lock(&lock);
    if (!s->store)
        s->store = load(s); /* a bundle that cannot be read is tried again */
    if (s->store && api.store_up_ref(s->store)) {
        api.ctx_set_cert_store(ssl_ctx, s->store); /* takes that reference */
        rc = 0;
    }
    pthread_mutex_unlock(&lock);
    return rc;
}
