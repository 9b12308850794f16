/* One certificate store per CA bundle, shared by every client of the
 * process. Building an OpenSSL store from the system bundle parses some
 * 140 certificates (about 0.9 MiB and 50 ms of CPU); without this, each
 * new client parses it again for its first HTTPS connection. With it, the
 * bundle is parsed once while any client that uses it exists, and each
 * TLS connection is handed that store (libcurl's SSL_CTX callback).
 * Verification is exactly as strict: the same files, the same flags.
 *
 * Only when libcurl runs on OpenSSL 3 (found in the process at run time,
 * so no OpenSSL headers are needed to build); otherwise st_castore_get
 * answers NULL and libcurl loads the bundle itself, as before. Plain C,
 * no Lua, thread-safe. */
#ifndef ST_CASTORE_H
#define ST_CASTORE_H

typedef struct st_castore st_castore;

/* The shared store of this bundle (ca_file and ca_path as the options
 * give them; NULL for libcurl's default of each), counted as one more
 * user; NULL when the store cannot be shared here (the caller then lets
 * libcurl load the bundle). Parses nothing yet: that waits for the first
 * connection. */
st_castore *st_castore_get(const char *ca_file, const char *ca_path);
/* One user fewer; the last one frees the store (connections still open
 * keep their own reference). */
void st_castore_put(st_castore *s);
/* Gives an OpenSSL SSL_CTX (as libcurl's CURLOPT_SSL_CTX_FUNCTION passes
 * it) the store, parsing the bundle if this is its first use. 0, or -1
 * when the bundle cannot be read (then the connection must fail). */
int st_castore_install(st_castore *s, void *ssl_ctx);

#endif
