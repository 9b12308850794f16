/* The client userdata: its making and lifetime, the guard around every
 * core call, the on_request callback, and the methods. Every method reads
 * its arguments first (lua_args.c), then checks the client, then calls the
 * core, then pushes the results from C memory its call box owns. */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lua_bind.h"
#include "st_http.h"

/***
@submodule streamtelecom
*/

/* Every method and metamethod has the client metatable as upvalue 1. */
lst_client *check_client(lua_State *L) {
    return (lst_client *)lst_check_self(L, 1, CLIENT_MT);
}

int client_is_open(const lst_client *u) {
    return u->core != NULL && !st_client_closing(u->core);
}


/* A method called from the client's own on_request would run the engine
 * inside itself: a programming error, raised before anything is read (the
 * callback's protected call then catches it). */
static lst_client *enter_method(lua_State *L) {
    lst_client *u = check_client(L);
    luaL_checkstack(L, METHOD_STACK, "streamtelecom");
    if (u->busy)
        luaL_error(L, "streamtelecom: the client is busy: no calls from "
                      "its own on_request callback");
    if (u->driven)
        luaL_error(L, "streamtelecom: a driven client (st._driven) makes no "
                      "requests itself: use _begin and a driver");
    return u;
}

/* ---- the on_request callback -------------------------------------------- */

/* Lives on the C stack for one method call: the callback runs on the
 * lua_State of the call that triggered it (coroutines), never a kept one. */


/* Runs protected: building the info table may run out of memory and the
 * callback may raise or yield; none of it may unwind the core's call. */
static int run_on_request(lua_State *L) {
    hook_ctx *ctx = (hook_ctx *)lua_touserdata(L, 1);
    const st_exchange *info = ctx->info;
    lua_rawgeti(L, LUA_REGISTRYINDEX, ctx->ref);
    lua_createtable(L, 0, 5);
    set_string(L, "call", st_call_name(info->call));
    set_string(L, "url", info->url);
    set_integer(L, "http_status", (double)info->http_status);
    set_number(L, "seconds", info->seconds);
    if (info->code != ST_OK && info->code != ST_E_NOMEM)
        set_string(L, "code", st_code_name(info->code));
    lua_call(L, 1, 0);
    return 0;
}

void call_on_request(void *ud, const st_exchange *info) {
    hook_ctx *ctx = (hook_ctx *)ud;
    ctx->info = info;
    /* A failing callback must not turn a sent SMS into an error. */
    if (st_lua_protected(ctx->L, run_on_request, ctx) != 0)
        lua_pop(ctx->L, 1);
}

/* rate_slot(interval) -> seconds until the slot it reserved. Runs
 * protected: it may raise or yield (a yield raises across the C call). */
static int run_rate_slot(lua_State *L) {
    hook_ctx *ctx = (hook_ctx *)lua_touserdata(L, 1);
    lua_rawgeti(L, LUA_REGISTRYINDEX, ctx->rate_ref);
    lua_pushnumber(L, (lua_Number)ctx->interval);
    lua_call(L, 1, 1);
    ctx->interval = (double)lua_tonumber(L, -1); /* not a number: 0 */
    return 0;
}

/* A shared rate that fails lets the request go at the engine's own pace:
 * a broken counter must not stop the sending (the engine still spaces
 * this client's requests by rate). */
double call_rate_slot(void *ud, double interval) {
    hook_ctx *ctx = (hook_ctx *)ud;
    ctx->interval = interval;
    if (st_lua_protected(ctx->L, run_rate_slot, ctx) != 0) {
        lua_pop(ctx->L, 1);
        return 0;
    }
    return ctx->interval;
}

/* Marks the client in use for one core call and arms its callback; ctx
 * must outlive the call. Nothing between begin_call and end_call raises. */
static void begin_call(lua_State *L, lst_client *u, hook_ctx *ctx) {
    ctx->L = L;
    ctx->ref = u->on_request;
    ctx->info = NULL;
    u->busy = 1;
    st_client_hold(u->core);
    st_client_set_hook(u->core, u->on_request == LUA_NOREF ? NULL
                                                           : call_on_request,
                       ctx);
}

void free_client(lua_State *L, lst_client *u) {
    if (u->core) {
        st_client_free(u->core);
        u->core = NULL;
    }
    if (u->on_request != LUA_NOREF) {
        luaL_unref(L, LUA_REGISTRYINDEX, u->on_request);
        u->on_request = LUA_NOREF;
    }
    if (u->box_ref != LUA_NOREF) { /* a call holding it keeps it alive */
        luaL_unref(L, LUA_REGISTRYINDEX, u->box_ref);
        u->box_ref = LUA_NOREF;
    }
    if (u->rate_slot != LUA_NOREF) {
        luaL_unref(L, LUA_REGISTRYINDEX, u->rate_slot);
        u->rate_slot = LUA_NOREF;
    }
    st_http_framer_free(&u->framer);
    free(u->spare_run);
    u->spare_run = NULL;
}

void release_client(lua_State *L, lst_client *u) {
    if (st_client_release(u->core)) { /* closed meanwhile: now freed */
        u->core = NULL;
        free_client(L, u);
    }
}

static void end_call(lua_State *L, lst_client *u) {
    u->busy = 0;
    st_client_set_hook(u->core, NULL, NULL);
    release_client(L, u);
}

/* ---- st.new ------------------------------------------------------------- */

typedef enum { OPT_STRING, OPT_NUMBER, OPT_INT, OPT_BOOLEAN, OPT_FUNCTION } opt_type;

/* The offset of a function option that only st._driven takes. */
#define DRIVEN_ONLY 1

static const struct option_spec {
    const char *name;
    opt_type type;
    size_t offset;
} option_specs[] = {
    {"user", OPT_STRING, offsetof(st_options, user)},
    {"password", OPT_STRING, offsetof(st_options, password)},
    {"sender", OPT_STRING, offsetof(st_options, sender)},
    {"url", OPT_STRING, offsetof(st_options, url)},
    {"ca_file", OPT_STRING, offsetof(st_options, ca_file)},
    {"ca_path", OPT_STRING, offsetof(st_options, ca_path)},
    {"proxy", OPT_STRING, offsetof(st_options, proxy)},
    {"user_agent", OPT_STRING, offsetof(st_options, user_agent)},
    {"timeout", OPT_NUMBER, offsetof(st_options, timeout)},
    {"connect_timeout", OPT_NUMBER, offsetof(st_options, connect_timeout)},
    {"rate", OPT_NUMBER, offsetof(st_options, rate)},
    {"retries", OPT_INT, offsetof(st_options, retries)},
    {"concurrency", OPT_INT, offsetof(st_options, concurrency)},
    {"max_response", OPT_INT, offsetof(st_options, max_response)},
    {"verify", OPT_BOOLEAN, offsetof(st_options, verify)},
    {"on_request", OPT_FUNCTION, 0},
    {"rate_slot", OPT_FUNCTION, DRIVEN_ONLY}, /* docs/DRIVERS.md */
};

static const char *const type_wanted[] = {"a string", "a number",
                                          "a whole number", "a boolean",
                                          "a function"};

static const struct option_spec *find_option(const char *name) {
    size_t i;
    for (i = 0; i < sizeof option_specs / sizeof option_specs[0]; i++)
        if (strcmp(option_specs[i].name, name) == 0)
            return &option_specs[i];
    return NULL;
}

static int lua_type_matches(lua_State *L, int idx, opt_type type) {
    static const int lua_types[] = {LUA_TSTRING, LUA_TNUMBER, LUA_TNUMBER,
                                    LUA_TBOOLEAN, LUA_TFUNCTION};
    return lua_type(L, idx) == lua_types[type];
}

/* Stores the value at the stack top into o; returns an error message or
 * NULL. Strings stay owned by the options table until st_client_new copies
 * them. */
static const char *store_option(lua_State *L, const struct option_spec *spec,
                                st_options *o) {
    char *field = (char *)o + spec->offset;
    if (!lua_type_matches(L, -1, spec->type))
        return type_wanted[spec->type];
    if (spec->type == OPT_STRING) {
        size_t len;
        const char *s = lua_tolstring(L, -1, &len);
        if (strlen(s) != len)
            return "a string without NUL bytes";
        memcpy(field, &s, sizeof s);
    } else if (spec->type == OPT_NUMBER) {
        double v = (double)lua_tonumber(L, -1);
        if (spec->offset == offsetof(st_options, rate))
            o->rate_given = 1;
        memcpy(field, &v, sizeof v);
    } else if (spec->type == OPT_INT) {
        double v = (double)lua_tonumber(L, -1);
        if (v != floor(v) || fabs(v) > 2147483647.0)
            return type_wanted[OPT_INT];
        if (spec->offset == offsetof(st_options, max_response)) {
            long l = (long)v;
            memcpy(field, &l, sizeof l);
        } else {
            int i = (int)v;
            memcpy(field, &i, sizeof i);
        }
    } else if (spec->type == OPT_BOOLEAN) {
        int b = lua_toboolean(L, -1);
        memcpy(field, &b, sizeof b);
    }
    return NULL;
}

/* Reads the options table at index 1 raw (no metamethod runs, and nothing
 * is allocated, so the strings stay the table's until st_client_new copies
 * them); on a bad option writes the reason into why. */
static int read_options(lua_State *L, st_options *o, int driven,
                        char *why, size_t cap) {
    st_options_defaults(o);
    lua_pushnil(L);
    while (lua_next(L, 1) != 0) {
        const struct option_spec *spec;
        const char *want;
        if (lua_type(L, -2) != LUA_TSTRING) {
            snprintf(why, cap, "invalid option: keys must be strings");
            lua_pop(L, 2);
            return -1;
        }
        spec = find_option(lua_tostring(L, -2));
        if (!spec || (spec->offset == DRIVEN_ONLY && !driven)) {
            snprintf(why, cap, "invalid option: unknown option '%.64s'",
                     lua_tostring(L, -2));
            lua_pop(L, 2);
            return -1;
        }
        want = store_option(L, spec, o);
        if (want) {
            snprintf(why, cap, "invalid option '%s': want %s, got %s",
                     spec->name, want, luaL_typename(L, -1));
            lua_pop(L, 2);
            return -1;
        }
        lua_pop(L, 1);
    }
    return 0;
}

static int push_invalid(lua_State *L, const char *message) {
    st_error err;
    st_fail(&err, ST_E_INVALID, "%s", message);
    return push_failure(L, &err);
}

static void describe_client(lst_client *u) {
    st_client *c = u->core;
    snprintf(u->shown, sizeof u->shown, "%s @ %s", st_client_user(c),
             st_client_url(c));
    st_client_redact(c, u->shown, sizeof u->shown);
}

/* The userdata comes first, before any option is read: making it may run a
 * collection, and a finaliser must not change the options we hold. */
static lst_client *push_client(lua_State *L) {
    lst_client *u = (lst_client *)lua_newuserdata(L, sizeof *u);
    memset(u, 0, sizeof *u);
    u->on_request = LUA_NOREF;
    u->rate_slot = LUA_NOREF;
    u->box_ref = LUA_NOREF;
    luaL_getmetatable(L, CLIENT_MT);
    lua_setmetatable(L, -2);
    return u;
}

/* A registry ref of the options' function `name`, or LUA_NOREF. */
static int keep_function(lua_State *L, const char *name) {
    lua_pushstring(L, name);
    lua_rawget(L, 1);
    if (lua_type(L, -1) != LUA_TFUNCTION) {
        lua_pop(L, 1);
        return LUA_NOREF;
    }
    return luaL_ref(L, LUA_REGISTRYINDEX);
}

/***
Makes a client for one account. Every option is checked up front; the
client keeps its connections (keep-alive, TLS sessions) for all its calls.
@function new
@tparam table options `user` and `password` (required), `sender`, `url`
(default `DEFAULT_URL`; `http://` allowed), `timeout` (15 s), `connect_timeout`
(5 s), `verify` (true), `ca_file`, `ca_path`, `proxy`, `user_agent`, `retries`
(2), `concurrency` (8), `max_response` (65536 bytes), `rate` (requests a
second), `on_request` (a function called after every HTTP exchange with
`{ call, url, http_status, seconds, code }`; the url shows `pwd=***`)
@treturn client the client
@treturn[2] nil
@treturn[2] string the reason, e.g. "invalid option 'timeout': want a number, got string"
@treturn[2] string "invalid"
@usage local st = require "streamtelecom"
local client = assert(st.new{ user = "login", password = os.getenv("SMS_PASSWORD"),
                              sender = "MyShop" })
*/
static int make_client(lua_State *L, int driven) {
    st_options o;
    st_error err;
    lst_client *u;
    char why[160];
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    u = push_client(L); /* 2 */
    if (read_options(L, &o, driven, why, sizeof why) != 0)
        return push_invalid(L, why);
    u->driven = driven;
    u->core = driven ? st_client_new_driven(&o, &err) : st_client_new(&o, &err);
    if (!u->core)
        return push_failure(L, &err);
    describe_client(u);
    u->on_request = keep_function(L, "on_request");
    u->rate_slot = keep_function(L, "rate_slot");
    lua_settop(L, 2);
    return 1;
}

int lst_new(lua_State *L) { return make_client(L, 0); }

/* st._driven{...}: a client for drivers (docs/DRIVERS.md); same options. */
int lst_driven(lua_State *L) { return make_client(L, 1); }

/* ---- close, gc, tostring ------------------------------------------------ */

/***
A client for one account, made by `new`.
@type client
*/

/***
Frees the client's connections. Later calls answer `nil, "client is closed",
"closed"`; a second close is harmless. Also runs on garbage collection and at
the end of a Lua 5.4 `<close>` scope.
@function client:close
@treturn boolean true
*/
static int l_close(lua_State *L) {
    lst_client *u = check_client(L);
    /* From its own callback, or with driven runs going: the core frees it
     * when they end (release_client), and starts nothing more. */
    if (u->core && !st_client_closing(u->core) && st_client_close(u->core)) {
        u->core = NULL;
        free_client(L, u);
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* No call can be running on a client the collector frees. */
static int l_gc(lua_State *L) {
    free_client(L, check_client(L));
    return 0;
}

static int l_tostring(lua_State *L) {
    lst_client *u = check_client(L);
    lua_pushfstring(L, "streamtelecom.client: %s%s", u->shown,
                    client_is_open(u) ? "" : " (closed)");
    return 1;
}

/* ---- send --------------------------------------------------------------- */

/* Pushes the client's reusable call box, marked busy: a new box on every
 * call (a userdata with __gc) cost ~2,500 instructions of a send's. A call
 * that raised never released its box, and a call nested in a metamethod
 * finds it busy: either way a fresh box replaces it, and the old one lives
 * as long as the call that holds it. */
static call_box *client_box(lua_State *L, lst_client *u) {
    call_box *box;
    if (u->box_ref != LUA_NOREF) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, u->box_ref);
        box = (call_box *)lua_touserdata(L, -1);
        if (!box->busy) {
            box->busy = 1;
            return box;
        }
        lua_pop(L, 1);
        luaL_unref(L, LUA_REGISTRYINDEX, u->box_ref);
        u->box_ref = LUA_NOREF;
    }
    box = box_push(L);
    lua_pushvalue(L, -1);
    u->box_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    box->busy = 1;
    return box;
}

/***
Sends one text to one or more recipients. Numbers lose spaces, `+`, `-`,
`(` and `)` and must then have 10 to 15 digits. A long list is split over
several requests and merged back in order. A send is never repeated once it
may have reached the gateway.
@function client:send
@tparam string|number|table to "79031234567", "79031234567,79161234567", a whole
number of 10 to 15 digits, or a list of those
@tparam string text UTF-8, not empty
@tparam[opt] table opts `sender`, `callback_url`, `name` (a campaign name, sent as
`name_deliver`); `to` and `text` are allowed and ignored (a `send_many` item
can be passed as it is); any other key answers `invalid`
@treturn table one record per recipient, in order: `{ to =, id = }` or
`{ to =, err =, code = }`
@treturn[2] nil when no recipient was accepted, or for a bad argument value
@treturn[2] string message (the gateway's own Russian words kept)
@treturn[2] string code, one of `errors`
@treturn[2] boolean sent: false only when the request provably never left
(a `connect` failure, a bad value, a closed client); true when the gateway
may have it
@usage local msgs, err, code = client:send("+7 903 123-45-67", "Your code is 1234")
*/
static int l_send(lua_State *L) {
    lst_client *u = enter_method(L);
    st_send_params p;
    st_error err;
    hook_ctx ctx;
    call_box *box;
    int rc;
    lua_settop(L, 4);
    box = client_box(L, u); /* 5 */
    rc = read_send_args(L, "send", 2, box, &p, &err);
    if (!client_is_open(u) || rc != 0) { /* reading may have closed it */
        box_release(L, box);
        if (!client_is_open(u))
            st_fail(&err, ST_E_CLOSED, "client is closed");
        return push_send_failure(L, &err, 0);
    }
    if (!p.sender)
        p.sender = st_client_sender(u->core);
    begin_call(L, u, &ctx);
    box->result.sent = 0;
    rc = st_client_send(u->core, &box->recipients, &p, &box->result, &err);
    end_call(L, u);
    if (rc != 0) {
        int sent = box->result.sent;
        box_release(L, box);
        return push_send_failure(L, &err, sent);
    }
    push_send_result(L, &box->result);
    box_release(L, box);
    return 1;
}

/* ---- status and balance ------------------------------------------------- */

/***
The delivery status of one message.
@function client:status
@tparam string id an id `client:send` gave
@treturn table `{ id =, state =, raw =, final = [, updated =] }`; state is
"delivered", "undelivered", "expired", "read" (final), "partly_delivered",
"sent" or "unknown" (not final)
@treturn[2] nil
@treturn[2] string message
@treturn[2] string code ("not_found" for an id the gateway never accepted)
*/
static int l_status(lua_State *L) {
    lst_client *u = enter_method(L);
    size_t len;
    const char *id = check_string_arg(L, "status", 2, &len);
    st_status s;
    st_error err;
    hook_ctx ctx;
    int rc;
    if (!client_is_open(u))
        return push_closed(L);
    if (st_id_check(id, len, &err) != 0) /* a NUL byte is no digit */
        return push_failure(L, &err);
    begin_call(L, u, &ctx);
    rc = st_client_status(u->core, id, &s, &err);
    end_call(L, u);
    if (rc != 0)
        return push_failure(L, &err);
    push_status(L, NULL, &s);
    lua_pushvalue(L, 2); /* the caller's id string: nothing to allocate */
    lua_setfield(L, -2, "id");
    return 1;
}

/***
The account balance.
@function client:balance
@treturn table `{ balance = 123.45, raw = "123.45" [, currency = "RUR"] }`
@treturn[2] nil
@treturn[2] string message
@treturn[2] string code
*/
static int l_balance(lua_State *L) {
    lst_client *u = enter_method(L);
    st_balance b;
    st_error err;
    hook_ctx ctx;
    int rc;
    if (!client_is_open(u))
        return push_closed(L);
    begin_call(L, u, &ctx);
    rc = st_client_balance(u->core, &b, &err);
    end_call(L, u);
    if (rc != 0)
        return push_failure(L, &err);
    push_balance(L, &b);
    return 1;
}

/* ---- status_many and wait ----------------------------------------------- */

/***
The statuses of many messages, up to `concurrency` requests at once.
@function client:status_many
@tparam {string,...} ids message ids
@tparam[opt] table opts `on_result = function(id, record)`: called as soon as
each id's answer is read (a raise is raised again once every status is in)
@treturn table map from id to a status record or `{ err =, code = }`
@treturn[2] nil for a bad id (the message names its index); nothing is sent
@treturn[2] string message
@treturn[2] string "invalid"
*/
static int l_status_many(lua_State *L) {
    lst_client *u = enter_method(L);
    st_status_hooks hooks;
    stream_ctx sc;
    st_error err;
    hook_ctx ctx;
    call_box *box;
    int rc;
    lua_settop(L, 3);
    box = box_push(L); /* 4 */
    push_anchors(L, 2, 1); /* 5: anchors the ids */
    rc = read_ids(L, "status_many", 2, 5, box, &err);
    read_stream_opts(L, "status_many", 3, 0); /* 6, 7, 8 */
    if (!client_is_open(u))
        return push_closed(L);
    if (rc != 0)
        return push_failure(L, &err);
    make_stream_state(L, box, 2, 6, &sc); /* 9 */
    sc.core = u->core;
    sc.ids = box->ids;
    hooks.on_result = stream_status_result;
    hooks.ctx = &sc;
    begin_call(L, u, &ctx);
    rc = st_client_status_many(u->core, box->ids, box->nids, box->statuses,
                               box->errors, &hooks, &err);
    end_call(L, u);
    if (rc != 0)
        return push_failure(L, &err);
    rc = finish_stream(L, box, &sc);
    box_release(L, box);
    return rc;
}

/***
Polls `client:status_many` until every message is final or time is up.
@function client:wait
@tparam {string,...} ids message ids
@tparam[opt] table opts `timeout` (60 s), `interval` (5 s; at least 1 s: a
smaller value is raised to it); a negative, NaN or infinite value answers
`invalid`
@treturn table map as `client:status_many` gives, with the last known states
*/
static int l_wait(lua_State *L) {
    lst_client *u = enter_method(L);
    double timeout, interval;
    st_error err;
    hook_ctx ctx;
    call_box *box;
    int rc;
    lua_settop(L, 3);
    box = box_push(L); /* 4 */
    push_anchors(L, 2, 1); /* 5: anchors the ids */
    rc = read_ids(L, "wait", 2, 5, box, &err);
    timeout = number_field(L, "wait", 3, "timeout", 60);
    interval = number_field(L, "wait", 3, "interval", 5);
    if (!client_is_open(u))
        return push_closed(L);
    if (rc != 0)
        return push_failure(L, &err);
    begin_call(L, u, &ctx);
    rc = st_client_wait(u->core, box->ids, box->nids, timeout, interval,
                        box->statuses, box->errors, &err);
    end_call(L, u);
    if (rc != 0)
        return push_failure(L, &err);
    push_status_map(L, box);
    box_release(L, box);
    return 1;
}

/* ---- send_many ---------------------------------------------------------- */

/* The items use the client's sender where they give none; read only once
 * the client is known to be open, since reading may close it. */
void default_senders(call_box *box, const char *sender) {
    size_t i;
    for (i = 0; i < box->nitems; i++)
        if (!box->items[i].params.sender)
            box->items[i].params.sender = sender;
}

/***
Many sends at once over the client's kept-alive connections (libcurl
multi), at most `concurrency` requests in flight. The whole list is checked
before anything is sent; one failing item never stops the others.
@function client:send_many
@tparam {table,...} items each `{ to =, text = [, sender =, callback_url =, name =] }`
@tparam[opt] table opts `on_start = function(i, item)` before item i's
request can leave the machine, `on_result = function(i, result)` as soon as
its answer is read (`result` is `results[i]`), `before_send = function()`
once for each group of started items just before their requests leave (a
raise: none of them leaves). A callback that raises stops new items; those
in flight finish, then the error is raised again
@treturn table `results[i]` is what `client:send` would return for item i,
or `{ err =, code =, sent = }` where that send failed (`sent`: false only
when the request provably never left)
@treturn[2] nil for a bad item (the message names its index)
@treturn[2] string message
@treturn[2] string "invalid"
*/
static int l_send_many(lua_State *L) {
    lst_client *u = enter_method(L);
    st_send_hooks hooks;
    stream_ctx sc;
    st_error err;
    hook_ctx ctx;
    call_box *box;
    int rc;
    check_table_arg(L, "send_many", 2);
    lua_settop(L, 3);
    box = box_push(L); /* 4 */
    push_anchors(L, 2, 0); /* 5: anchors the items' strings */
    read_stream_opts(L, "send_many", 3, 1); /* 6, 7, 8 */
    rc = read_send_items(L, 2, 5, box, &err);
    if (!client_is_open(u))
        return push_closed(L);
    if (rc != 0)
        return push_failure(L, &err);
    default_senders(box, st_client_sender(u->core));
    make_stream_state(L, box, 2, 6, &sc); /* 9 */
    sc.core = u->core;
    hooks.on_start = lua_isnil(L, 6) ? NULL : stream_on_start;
    hooks.before_send = lua_isnil(L, 8) ? NULL : stream_before_send;
    hooks.on_result = stream_send_result;
    hooks.ctx = &sc;
    begin_call(L, u, &ctx);
    rc = st_client_send_many(u->core, box->items, box->nitems, &hooks, &err);
    end_call(L, u);
    if (rc != 0)
        return push_failure(L, &err);
    rc = finish_stream(L, box, &sc);
    box_release(L, box);
    return rc;
}

/* ---- url: bring your own transport -------------------------------------- */

/* Pushes the URL the box holds; pushing may raise, and the box frees it. */
static int push_url(lua_State *L, call_box *box) {
    lua_pushlstring(L, st_buf_str(&box->url), box->url.len);
    box_release(L, box);
    return 1;
}

/* The failure of a url() call, its box released. */
static int url_failure(lua_State *L, call_box *box, const st_error *err) {
    box_release(L, box);
    return err ? push_failure(L, err) : push_closed(L);
}

static int url_for_send(lua_State *L, lst_client *u, call_box *box) {
    st_send_params p;
    st_error err;
    int rc = read_send_args(L, "url", 3, box, &p, &err);
    if (!client_is_open(u))
        return url_failure(L, box, NULL);
    if (rc != 0)
        return url_failure(L, box, &err);
    if (!p.sender)
        p.sender = st_client_sender(u->core);
    if (st_client_send_url(u->core, &box->recipients, &p, &box->url,
                           &err) != 0)
        return url_failure(L, box, &err);
    return push_url(L, box);
}

/***
The exact request URL a call would use, with the same validation: for
bringing your own transport (read the answer with `parse`).
@function client:url
@tparam string call "send", "status" or "balance"
@param ... the call's arguments
@treturn string the URL (it holds the password: do not log it)
@treturn[2] nil, also where a send would need more than one request
@treturn[2] string message
@treturn[2] string "invalid"
*/
static int l_url(lua_State *L) {
    static const char *const calls[] = {"send", "status", "balance", NULL};
    lst_client *u = check_client(L);
    int call = luaL_checkoption(L, 2, NULL, calls);
    st_error err;
    call_box *box;
    luaL_checkstack(L, METHOD_STACK, "streamtelecom");
    lua_settop(L, 5);
    if (call == ST_CALL_STATUS)
        check_string_arg(L, "url", 3, NULL);
    /* The client's reusable box, as send's: a campaign checks each of its
     * rows with url(), and a new box (a userdata with __gc) a call was a
     * third of its cost. */
    box = client_box(L, u); /* 6 */
    if (call == ST_CALL_SEND)
        return url_for_send(L, u, box);
    if (!client_is_open(u)) /* url() and stats() run no request: */
        return url_failure(L, box, NULL); /* fine from the client's own callback */
    if (call == ST_CALL_STATUS &&
        st_id_check(lua_tostring(L, 3), lua_rawlen(L, 3), &err) != 0)
        return url_failure(L, box, &err); /* a NUL byte is no digit */
    if (st_client_build_url(u->core, (st_call)call, lua_tostring(L, 3),
                            &box->url, &err) != 0)
        return url_failure(L, box, &err);
    return push_url(L, box);
}

/* ---- stats -------------------------------------------------------------- */

/***
What the client has done so far, HTTP exchanges and retries included.
@function client:stats
@treturn table `{ requests =, failures = { [code] = n }, retries =,
connections_opened =, connections_reused =, seconds_total =, seconds_max = }`
*/
static int l_stats(lua_State *L) {
    lst_client *u = check_client(L);
    st_stats s;
    int code;
    if (!client_is_open(u))
        return push_closed(L);
    s = *st_client_stats(u->core); /* a copy: pushing may run a finaliser */
    lua_createtable(L, 0, 7);
    set_integer(L, "requests", (double)s.requests);
    set_integer(L, "retries", (double)s.retries);
    set_integer(L, "connections_opened", (double)s.connections_opened);
    set_integer(L, "connections_reused", (double)s.connections_reused);
    set_number(L, "seconds_total", s.seconds_total);
    set_number(L, "seconds_max", s.seconds_max);
    lua_newtable(L);
    for (code = 1; code < ST_E_NOMEM; code++) /* the API's codes only */
        if (s.failures[code])
            set_integer(L, st_code_name((st_code)code),
                        (double)s.failures[code]);
    lua_setfield(L, -2, "failures");
    return 1;
}


/* ---- the class ---------------------------------------------------------- */

static const luaL_Reg client_methods[] = {
    {"send", l_send},       {"status", l_status}, {"balance", l_balance},
    {"stats", l_stats},     {"close", l_close},   {"wait", l_wait},
    {"url", l_url},         {"send_many", l_send_many},
    {"status_many", l_status_many}, {"_begin", lst_begin},
    {"_scan_rows", lst_scan_rows}, {NULL, NULL},
};

static const luaL_Reg client_meta[] = {
    {"__gc", l_gc},
    {"__close", l_close},
    {"__tostring", l_tostring},
    {NULL, NULL},
};

void lst_register_client(lua_State *L) {
    static const luaL_Reg box_meta[] = {{"__gc", box_gc}, {NULL, NULL}};
    lst_new_class(L, CLIENT_MT, client_meta, client_methods);
    lst_register_run(L);
    lst_new_class(L, BOX_MT, box_meta, NULL);
}
