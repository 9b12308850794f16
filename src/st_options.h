/* A client's options: their defaults and every rule about their values.
 * The bindings read types only; each value rule is here, once. */
#ifndef ST_OPTIONS_H
#define ST_OPTIONS_H

#include "st_error.h"

#define ST_DEFAULT_URL "https://gateway.api.sc/get/"

typedef struct st_options {
    const char *user;
    const char *password;
    const char *sender;
    const char *url;
    double timeout;         /* seconds, whole request; 0 means none */
    double connect_timeout; /* seconds */
    int verify;
    const char *ca_file, *ca_path, *proxy, *user_agent;
    int retries;
    int concurrency;
    long max_response;
    double rate; /* requests per second; 0 (the default) means no limit */
    int rate_given; /* rate was set by the caller: 0 is then a mistake */
} st_options;

void st_options_defaults(st_options *o);
/* Checks values (not types: the caller's language does that). */
int st_options_check(const st_options *o, st_error *err);

#endif
