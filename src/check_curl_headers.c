/* A build without libcurl's headers stops here, with a sentence that says
 * what to install, instead of a bare "curl/curl.h: No such file or
 * directory" further on. This file sorts first in src/ and comes first in the
 * rockspec, so both `make` and `luarocks make` compile it before any file
 * that includes curl/curl.h. LuaRocks' own external_dependencies check cannot
 * do this on Debian: it does not search the multiarch include directory
 * (/usr/include/x86_64-linux-gnu) where Debian puts curl/curl.h. */
#if defined(__has_include)
#  if !__has_include(<curl/curl.h>)
#    error "curl/curl.h not found: install libcurl's headers (Debian: libcurl4-openssl-dev; Fedora: libcurl-devel; Alpine: curl-dev), or set CURL_INCDIR to their directory"
#  endif
#endif

/* ISO C wants at least one declaration in a translation unit. */
typedef int st_check_curl_headers_unused;
