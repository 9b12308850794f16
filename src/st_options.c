/* A client's options: defaults and the rules of their values. */
#include <stddef.h>
#include <string.h>

#include "st_options.h"
#include "st_validate.h"

void st_options_defaults(st_options *o) {
    memset(o, 0, sizeof *o);
    o->url = ST_DEFAULT_URL;
    o->timeout = 15;
    o->connect_timeout = 5;
    o->verify = 1;
    o->retries = 2;
    o->concurrency = 8;
    o->max_response = 65536;
}

static int has_http_scheme(const char *url) {
    return strncmp(url, "http://", 7) == 0 || strncmp(url, "https://", 8) == 0;
}

/* A control byte in a value that reaches a request line or header would
 * let it add headers of its own (CR LF) or cut the request short. */
static int has_control_byte(const char *s) {
    for (; s && *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7F)
            return 1;
    return 0;
}

/* The string options, and whether each reaches a request line or header
 * (where a control byte would add headers of its own, or cut it short). */
static const struct {
    const char *name;
    size_t offset;
    int in_request;
} string_options[] = {
    {"user", offsetof(st_options, user), 0},
    {"password", offsetof(st_options, password), 0},
    {"sender", offsetof(st_options, sender), 0},
    {"url", offsetof(st_options, url), 1},
    {"ca_file", offsetof(st_options, ca_file), 0},
    {"ca_path", offsetof(st_options, ca_path), 0},
    {"proxy", offsetof(st_options, proxy), 1},
    {"user_agent", offsetof(st_options, user_agent), 1},
};

/* A string option given empty is a mistake (an unset variable, say), never
 * "use the default"; one that reaches the request holds no control byte. */
static int check_strings(const st_options *o, st_error *err) {
    size_t i;
    for (i = 0; i < sizeof string_options / sizeof string_options[0]; i++) {
        const char *value;
        memcpy(&value, (const char *)o + string_options[i].offset,
               sizeof value);
        if (value && !*value)
            return st_fail(err, ST_E_INVALID,
                           "invalid option '%s': want a non-empty string",
                           string_options[i].name);
        if (string_options[i].in_request && has_control_byte(value))
            return st_fail(err, ST_E_INVALID,
                           "invalid option '%s': it holds a control character",
                           string_options[i].name);
    }
    return 0;
}

/* The longest time an option takes, in seconds: an hour. */
#define ST_MAX_SECONDS 3600

static int too_long(st_error *err, const char *name, double seconds) {
    return st_fail(err, ST_E_INVALID,
                   "invalid option '%s': %g seconds is over an hour; times "
                   "are in seconds (0.5 is 500 ms), not milliseconds",
                   name, seconds);
}

int st_options_check(const st_options *o, st_error *err) {
    if (!o->user || !o->password)
        return st_fail(err, ST_E_INVALID, "invalid option '%s': required",
                       o->user ? "password" : "user");
    if (check_strings(o, err) != 0)
        return -1;
    if (o->sender && st_sender_check(o->sender, strlen(o->sender), err) != 0)
        return st_fail(err, ST_E_INVALID,
                       "invalid option 'sender': want up to 11 Latin letters, "
                       "digits, space, '-', '.' or '_', or up to 15 digits");
    if (!o->url || !has_http_scheme(o->url) || !o->url[o->url[4] == 's' ? 8 : 7])
        return st_fail(err, ST_E_INVALID,
                       "invalid option 'url': want an http:// or https:// URL");
    if (!(o->timeout >= 0) || !(o->connect_timeout >= 0))
        return st_fail(err, ST_E_INVALID,
                       "invalid option: timeouts must be 0 or more seconds");
    /* Seconds everywhere; a value no one means in seconds is a value meant
     * in milliseconds (lua-resty-http's unit): said, not waited out. */
    if (o->timeout > ST_MAX_SECONDS)
        return too_long(err, "timeout", o->timeout);
    if (o->connect_timeout > ST_MAX_SECONDS)
        return too_long(err, "connect_timeout", o->connect_timeout);
    if (o->retries < 0 || o->retries > 100)
        return st_fail(err, ST_E_INVALID,
                       "invalid option 'retries': want 0 to 100");
    if (o->concurrency < 1 || o->concurrency > 1000)
        return st_fail(err, ST_E_INVALID,
                       "invalid option 'concurrency': want 1 to 1000");
    if (o->max_response < 0)
        return st_fail(err, ST_E_INVALID,
                       "invalid option 'max_response': want 0 or more bytes");
    /* rate 0 is the default's "no limit"; a caller asking for 0 erred. */
    if (!(o->rate >= 0) || o->rate > 1e6 || (o->rate_given && !(o->rate > 0)))
        return st_fail(err, ST_E_INVALID,
                       "invalid option 'rate': want more than 0 requests a "
                       "second");
    return 0;
}

