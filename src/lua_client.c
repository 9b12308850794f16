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
static lst_client *check_client(lua_State *L) {
    return (lst_client *)lst_check_self(L, 1, CLIENT_MT);
}

static int client_is_open(const lst_client *u) {
    return u->core != NULL && !u->close_pending;
}

/* Room for what a method pushes before it calls user code, taken before
 * the call holds anything. */
#define METHOD_STACK 12

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
typedef struct hook_ctx {
    lua_State *L;
    int ref;
    const st_exchange *info;
    int rate_ref;      /* rate_slot's registry ref */
    double interval;   /* rate_slot's argument, its answer */
} hook_ctx;

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

static void call_on_request(void *ud, const st_exchange *info) {
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
static double call_rate_slot(void *ud, double interval) {
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
    st_client_set_hook(u->core, u->on_request == LUA_NOREF ? NULL
                                                           : call_on_request,
                       ctx);
}

static void free_client(lua_State *L, lst_client *u) {
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
    u->close_pending = 0;
}

static void end_call(lua_State *L, lst_client *u) {
    u->busy = 0;
    if (u->close_pending)
        free_client(L, u);
    else
        st_client_set_hook(u->core, NULL, NULL);
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
    if (u->busy && u->core) { /* from its own callback: the call ends first */
        u->close_pending = 1;
        st_client_stop(u->core);
    } else if (u->runs > 0 && u->core) { /* driven runs end first, and */
        u->close_pending = 1;            /* start nothing more */
        st_client_stop(u->core);
    } else {
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

/* A call's anchor table, made at its size: a list's strings are anchored
 * as values (send_many's items) or, deduplicated, as keys (ids). For
 * 50,000 items, growing it step by step and asking its length for each
 * cost 4 of the 115 million instructions before the first request. The
 * length is capped: it is not a promise. */
static void push_anchors(lua_State *L, int list, int as_keys) {
    size_t n = lua_istable(L, list) ? lua_rawlen(L, list) : 0;
    int size = n < 1000000 ? (int)n : 1000000;
    lua_createtable(L, as_keys ? 0 : size, as_keys ? size : 0);
}

/* The map id -> record of the ids the box holds, at the stack top. */
static void push_status_map(lua_State *L, const call_box *box) {
    size_t i;
    lua_createtable(L, 0, (int)box->nids);
    for (i = 0; i < box->nids; i++) {
        lua_pushstring(L, box->ids[i]);
        if (box->errors[i].code == ST_OK)
            push_status(L, box->ids[i], &box->statuses[i]);
        else
            push_error_record(L, &box->errors[i]);
        lua_rawset(L, -3);
    }
}

/* ---- streamed results: on_start and on_result ---------------------------- */

/* Slots of the call's state table, which the registry holds so that the
 * protected glue (a fresh C frame) can reach it. Every slot exists from the
 * start: storing into it later allocates nothing. */
enum {
    ST_RESULTS = 1, ST_ON_START, ST_ON_RESULT, ST_BEFORE_SEND, ST_ITEMS,
    ST_ERROR,
    ST_ARGS, /* a driven run's arguments and anchors, kept for its life */
    ST_SLOTS = ST_ARGS
};

typedef struct stream_ctx {
    lua_State *L;
    st_client *core;
    st_task *task; /* a driven run's: stopped alone, not its whole client */
    int ref;      /* the state table */
    int failed;   /* a callback raised (or pushing ran out of memory) */
    /* what the glue is asked to do */
    enum { GLUE_RESULT, GLUE_START, GLUE_BEFORE_SEND } what;
    size_t item;
    const st_send_result *res;
    const char *id;
    const st_status *status;
    const st_error *error;
    const char **ids;
} stream_ctx;

/* Builds the state table at the stack top and references it; box owns
 * the reference, so a raise later cannot leak it. */
static void make_stream_state(lua_State *L, call_box *box, int items,
                              int opts, stream_ctx *sc) {
    int i;
    lua_createtable(L, ST_SLOTS, 0);
    lua_newtable(L);
    lua_rawseti(L, -2, ST_RESULTS);
    lua_pushboolean(L, 0); /* so that storing the arguments later allocates */
    lua_rawseti(L, -2, ST_ARGS); /* no slot of this table */
    for (i = ST_ON_START; i <= ST_BEFORE_SEND; i++) {
        lua_pushvalue(L, opts + (i - ST_ON_START));
        lua_rawseti(L, -2, i);
    }
    lua_pushvalue(L, items);
    lua_rawseti(L, -2, ST_ITEMS);
    lua_pushboolean(L, 0);
    lua_rawseti(L, -2, ST_ERROR);
    lua_pushvalue(L, -1);
    box->ref = luaL_ref(L, LUA_REGISTRYINDEX);
    sc->L = L;
    sc->ref = box->ref;
    sc->failed = 0;
    sc->task = NULL;
}

/* Runs protected: store the result, then call the user's callback. */
static int run_stream_glue(lua_State *L) {
    stream_ctx *sc = (stream_ctx *)lua_touserdata(L, 1);
    lua_rawgeti(L, LUA_REGISTRYINDEX, sc->ref); /* 2 */
    if (sc->what == GLUE_BEFORE_SEND) {
        lua_rawgeti(L, 2, ST_BEFORE_SEND);
        lua_call(L, 0, 0);
        return 0;
    }
    if (sc->what == GLUE_START) {
        lua_rawgeti(L, 2, ST_ON_START);
        lua_pushinteger(L, (lua_Integer)sc->item + 1);
        lua_rawgeti(L, 2, ST_ITEMS);
        lua_rawgeti(L, -1, (int)sc->item + 1);
        lua_remove(L, -2);
        lua_call(L, 2, 0);
        return 0;
    }
    lua_rawgeti(L, 2, ST_RESULTS); /* 3 */
    if (sc->res) {
        lua_pushinteger(L, (lua_Integer)sc->item + 1); /* 4: the key */
        if (sc->res->accepted)
            push_send_result(L, sc->res);
        else
            push_send_error_record(L, &sc->res->failure, sc->res->sent);
    } else {
        lua_pushstring(L, sc->id);
        if (sc->error->code == ST_OK)
            push_status(L, sc->id, sc->status);
        else
            push_error_record(L, sc->error);
    }
    lua_pushvalue(L, 4);
    lua_pushvalue(L, 5);
    lua_rawset(L, 3);
    if (sc->res && !sc->res->started)
        return 0; /* on_result follows answers; this item never left */
    lua_rawgeti(L, 2, ST_ON_RESULT);
    if (lua_isnil(L, -1))
        return 0;
    lua_insert(L, 4);
    lua_call(L, 2, 0);
    return 0;
}

/* Calls the glue; a raise is kept (the first one) to be raised again once
 * the requests in flight are done, and stops new items from starting. */
static int stream_glue(stream_ctx *sc) {
    lua_State *L = sc->L;
    if (st_lua_protected(L, run_stream_glue, sc) == 0)
        return 0;
    if (!sc->failed) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, sc->ref);
        lua_pushvalue(L, -2);
        lua_rawseti(L, -2, ST_ERROR); /* an existing slot: no allocation */
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    sc->failed = 1;
    if (sc->task)
        st_task_stop(sc->task);
    else
        st_client_stop(sc->core);
    return 1;
}

static int stream_on_start(void *ud, size_t item) {
    stream_ctx *sc = ud;
    sc->what = GLUE_START;
    sc->item = item;
    return stream_glue(sc);
}

static int stream_before_send(void *ud) {
    stream_ctx *sc = ud;
    sc->what = GLUE_BEFORE_SEND;
    return stream_glue(sc);
}

static void stream_send_result(void *ud, size_t item, st_send_result *res) {
    stream_ctx *sc = ud;
    sc->what = GLUE_RESULT;
    sc->item = item;
    sc->res = res;
    stream_glue(sc);
}

static void stream_status_result(void *ud, size_t i, const st_status *s,
                                 const st_error *e) {
    stream_ctx *sc = ud;
    sc->what = GLUE_RESULT;
    sc->res = NULL;
    sc->item = i;
    sc->id = sc->ids[i];
    sc->status = s;
    sc->error = e;
    stream_glue(sc);
}

/* After the call: raises the callback's error again, or leaves the
 * results table at the stack top. */
static int finish_stream(lua_State *L, call_box *box, stream_ctx *sc) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, sc->ref);
    if (sc->failed) {
        lua_rawgeti(L, -1, ST_ERROR);
        box_release(L, box);
        return lua_error(L);
    }
    lua_rawgeti(L, -1, ST_RESULTS);
    lua_remove(L, -2);
    return 1;
}

/* on_start, on_result and before_send of a bulk call's opts (nil or a
 * table) at arg, pushed (nil where absent): three values. */
static void read_stream_opts(lua_State *L, const char *method, int arg,
                             int with_start) {
    static const char *const keys[] = {"on_start", "on_result",
                                       "before_send"};
    int i;
    if (!lua_isnoneornil(L, arg) && lua_type(L, arg) != LUA_TTABLE)
        arg_error(L, method, arg, "table or nil expected");
    for (i = 0; i < 3; i++) {
        if (lua_isnoneornil(L, arg) || (i != 1 && !with_start)) {
            lua_pushnil(L);
            continue;
        }
        lua_getfield(L, arg, keys[i]);
        if (!lua_isnil(L, -1) && lua_type(L, -1) != LUA_TFUNCTION)
            arg_error(L, method, arg,
                      lua_pushfstring(L, "'%s' must be a function", keys[i]));
    }
}

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
static void default_senders(call_box *box, const char *sender) {
    size_t i;
    for (i = 0; i < box->nitems; i++)
        if (!box->items[i].params.sender)
            box->items[i].params.sender = sender;
}

/* Items that never started (the client was closed from a callback) get
 * the closed error, so every index of the results has a record. */

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

static int url_for_send(lua_State *L, lst_client *u, call_box *box) {
    st_send_params p;
    st_error err;
    int rc = read_send_args(L, "url", 3, box, &p, &err);
    if (!client_is_open(u))
        return push_closed(L);
    if (rc != 0)
        return push_failure(L, &err);
    if (!p.sender)
        p.sender = st_client_sender(u->core);
    if (st_client_send_url(u->core, &box->recipients, &p, &box->url,
                           &err) != 0)
        return push_failure(L, &err);
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
    box = box_push(L); /* 6 */
    if (call == ST_CALL_SEND)
        return url_for_send(L, u, box);
    if (call == ST_CALL_STATUS)
        check_string_arg(L, "url", 3, NULL);
    if (!client_is_open(u)) /* url() and stats() run no request: */
        return push_closed(L); /* fine from the client's own callback */
    if (call == ST_CALL_STATUS &&
        st_id_check(lua_tostring(L, 3), lua_rawlen(L, 3), &err) != 0)
        return push_failure(L, &err); /* a NUL byte is no digit */
    if (st_client_build_url(u->core, (st_call)call, lua_tostring(L, 3),
                            &box->url, &err) != 0)
        return push_failure(L, &err);
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

/* ---- driven runs (docs/DRIVERS.md) -------------------------------------- */

#define RUN_MT "streamtelecom.run"

enum run_kind {
    RUN_SEND, RUN_STATUS, RUN_BALANCE, RUN_SEND_MANY, RUN_STATUS_MANY,
    RUN_WAIT
};

/* The calls a run can be, by kind; the name errors give. */
static const char *const run_calls[] = {"send",      "status",      "balance",
                                        "send_many", "status_many", "wait",
                                        NULL};

/* What single calls answer. */
typedef struct run_out {
    st_send_item one;        /* RUN_SEND's item */
    st_send_result result;   /* RUN_SEND */
    char idbuf[ST_ID_MAX + 1];
    st_status status;        /* RUN_STATUS */
    st_balance balance;      /* RUN_BALANCE */
    st_error err;            /* RUN_STATUS, RUN_BALANCE */
} run_out;

/* One call driven from Lua: its task in the core, the C memory of its
 * arguments (the box), and what single calls answer. Its state table (the
 * box's ref) keeps the client, the arguments and every anchored string
 * alive for the run. It lives in C memory: the run's userdata holds only
 * a pointer to it, so a call costs LuaJIT's collector a few bytes. */
typedef struct lst_run {
    call_box box;
    st_task *task;
    lst_client *owner;
    int kind;
    int done;
    int busy; /* a method of it is inside the engine (its callbacks run) */
    st_exchange_hook outer_hook; /* what arm() replaced, put back by disarm */
    void *outer_ctx;
    st_rate_hook outer_rate_hook; /* likewise, with rate_slot */
    void *outer_rate_ctx;
    int has_on_start;
    int has_before_send;
    stream_ctx sc;
    st_send_hooks send_hooks;
    st_status_hooks status_hooks;
    const char *id;          /* RUN_STATUS: out.idbuf once copied */
    double timeout, interval; /* RUN_WAIT */
    run_out out;
} lst_run;

/* The task ends (every job done, or abandoned); the client may now close. */
static void end_task(lua_State *L, lst_run *run) {
    if (!run->task)
        return;
    st_task_free(run->task);
    run->task = NULL;
    if (--run->owner->runs == 0 && run->owner->close_pending)
        free_client(L, run->owner);
}

static int run_close(lua_State *L) {
    lst_run **slot = (lst_run **)lst_check_self(L, 1, RUN_MT);
    lst_run *run = *slot;
    if (!run)
        return 0;
    if (run->busy) /* the engine holds its task: never under its feet */
        return luaL_error(L, "streamtelecom: run:close() cannot be called "
                             "from the run's own callbacks");
    end_task(L, run);
    st_send_result_free(&run->out.result);
    box_release(L, &run->box);
    *slot = NULL; /* closed: no steps, no result */
    if (client_is_open(run->owner) && !run->owner->spare_run)
        run->owner->spare_run = run; /* the next run's, unzeroed */
    else
        free(run);
    return 0;
}


/* A single send keeps its outcome in the run. */
static void keep_send_result(void *ud, size_t item, st_send_result *res) {
    lst_run *run = ud;
    (void)item;
    st_send_result_take(&run->out.result, res);
}

/* RUN_STATUS keeps its one record. */
static void keep_status(void *ud, size_t i, const st_status *s,
                        const st_error *e) {
    lst_run *run = ud;
    (void)i;
    run->out.status = *s;
    run->out.err = *e;
}

/* Reads the call's arguments (at 2..) into the run; -1 with err for a bad
 * value; raises for a wrong type. Anchors stay on the stack. */
static int read_run_args(lua_State *L, lst_run *run, int anchor,
                         st_error *err) {
    const char *method = run_calls[run->kind];
    switch (run->kind) {
    case RUN_SEND:
        run->out.one.recipients = &run->box.recipients;
        return read_send_args(L, method, 2, &run->box, &run->out.one.params,
                              err);
    case RUN_SEND_MANY:
        check_table_arg(L, method, 2);
        read_stream_opts(L, method, 3, 1);
        return read_send_items(L, 2, anchor, &run->box, err);
    case RUN_STATUS: {
        size_t len;
        run->id = check_string_arg(L, method, 2, &len);
        if (st_id_check(run->id, len, err) != 0)
            return -1; /* by its Lua length: a NUL byte is no digit */
        memcpy(run->out.idbuf, run->id, len + 1); /* copied: no anchor */
        run->id = run->out.idbuf;
        run->box.ids = calloc(1, sizeof *run->box.ids);
        if (!run->box.ids)
            return lst_nomem(L);
        run->box.ids[0] = run->id;
        run->box.nids = 1;
        return 0;
    }
    case RUN_STATUS_MANY: {
        read_stream_opts(L, method, 3, 0);
        return read_ids(L, method, 2, anchor, &run->box, err);
    }
    case RUN_WAIT: {
        int rc = read_ids(L, method, 2, anchor, &run->box, err);
        run->timeout = number_field(L, method, 3, "timeout", 60);
        run->interval = number_field(L, method, 3, "interval", 5);
        /* no on_start, on_result, before_send */
        lua_pushnil(L), lua_pushnil(L), lua_pushnil(L);
        return rc;
    }
    default:
        return 0;
    }
}

/* Every value of the stack from 2 up (arguments, the anchor table, the
 * fields read) into the state table's arguments slot: they live as long
 * as the run. */
static void keep_args(lua_State *L, int from, int to, int state) {
    int i;
    lua_createtable(L, to - from + 1, 0);
    for (i = from; i <= to; i++) {
        lua_pushvalue(L, i);
        lua_rawseti(L, -2, i - from + 1);
    }
    lua_rawseti(L, state, ST_ARGS);
}

static st_task *start_task(lst_run *run, st_client *core, st_error *err) {
    switch (run->kind) {
    case RUN_SEND:
        if (!run->out.one.params.sender)
            run->out.one.params.sender = st_client_sender(core);
        run->send_hooks.on_start = NULL;
        run->send_hooks.before_send = NULL;
        run->send_hooks.on_result = keep_send_result;
        run->send_hooks.ctx = run;
        return st_task_send_many(core, &run->out.one, 1, &run->send_hooks,
                                 err);
    case RUN_SEND_MANY:
        default_senders(&run->box, st_client_sender(core));
        run->send_hooks.on_start = run->has_on_start ? stream_on_start : NULL;
        run->send_hooks.before_send =
            run->has_before_send ? stream_before_send : NULL;
        run->send_hooks.on_result = stream_send_result;
        run->send_hooks.ctx = &run->sc;
        return st_task_send_many(core, run->box.items, run->box.nitems,
                                 &run->send_hooks, err);
    case RUN_STATUS:
        run->status_hooks.on_result = keep_status;
        run->status_hooks.ctx = run;
        return st_task_status_many(core, run->box.ids, 1, &run->out.status,
                                   &run->out.err, &run->status_hooks, err);
    case RUN_STATUS_MANY: /* read_ids sized statuses and errors */
        run->sc.ids = run->box.ids;
        run->status_hooks.on_result = stream_status_result;
        run->status_hooks.ctx = &run->sc;
        return st_task_status_many(core, run->box.ids, run->box.nids,
                                   run->box.statuses, run->box.errors,
                                   &run->status_hooks, err);
    case RUN_WAIT:
        return st_task_wait(core, run->box.ids, run->box.nids, run->timeout,
                            run->interval, run->box.statuses,
                            run->box.errors, err);
    default: {
        st_task *t = st_task_balance(core, &run->out.balance, &run->out.err);
        if (!t)
            *err = run->out.err;
        return t;
    }
    }
}

/* A kept record made like new: everything before its answers zeroed,
 * and of those only what may be read before a task writes it (a send's
 * item and outcome, the error code); the ~1 KiB of status, balance and
 * error text is written before it is read. Spares a resty call zeroing
 * the whole record. */
static lst_run *reuse_run(lst_run *run) {
    memset(run, 0, offsetof(lst_run, out));
    memset(&run->out.one, 0, sizeof run->out.one);
    memset(&run->out.result, 0, sizeof run->out.result);
    run->out.err.code = ST_OK;
    run->out.err.message[0] = '\0';
    return run;
}

static lst_run *push_run(lua_State *L, lst_client *u, int kind) {
    lst_run **slot = (lst_run **)lua_newuserdata(L, sizeof *slot);
    lst_run *run;
    *slot = NULL;
    luaL_getmetatable(L, RUN_MT);
    lua_setmetatable(L, -2);
    if (u->spare_run) {
        run = *slot = reuse_run(u->spare_run);
        u->spare_run = NULL;
    } else {
        run = *slot = calloc(1, sizeof *run);
    }
    if (!run)
        lst_nomem(L);
    run->box.ref = LUA_NOREF;
    run->owner = u;
    run->kind = kind;
    return run;
}

/* core:_begin(call, ...): a run of one call, for a driver to drive. */
static int l_begin(lua_State *L) {
    lst_client *u = check_client(L);
    int kind = luaL_checkoption(L, 2, NULL, run_calls), top, rc;
    lst_run *run;
    st_error err;
    luaL_checkstack(L, METHOD_STACK, "streamtelecom");
    if (!u->driven)
        luaL_error(L, "streamtelecom: _begin is for driven clients (st._driven)");
    lua_remove(L, 2);
    lua_settop(L, 4); /* 2..4: the call's own arguments */
    run = push_run(L, u, kind); /* 5 */
    if (kind == RUN_SEND_MANY || kind == RUN_STATUS_MANY || kind == RUN_WAIT) {
        push_anchors(L, 2, kind != RUN_SEND_MANY); /* 6: anchors */
    } else {
        lua_pushnil(L); /* 6: nothing to anchor */
        /* 7, 8, 9: no on_start, on_result, before_send */
        lua_pushnil(L), lua_pushnil(L), lua_pushnil(L);
    }
    rc = read_run_args(L, run, 6, &err); /* the bulk ones push 7, 8, 9 */
    run->has_on_start = !lua_isnil(L, 7);
    run->has_before_send = !lua_isnil(L, 9);
    top = lua_gettop(L);
    if (!client_is_open(u))
        return push_closed(L);
    if (rc != 0)
        return push_failure(L, &err);
    if (kind == RUN_BALANCE || kind == RUN_STATUS) {
        lua_pushvalue(L, 1); /* nothing to anchor but the client itself */
        run->box.ref = luaL_ref(L, LUA_REGISTRYINDEX);
    } else {
        make_stream_state(L, &run->box, 2, 7, &run->sc); /* top + 1 */
        keep_args(L, 1, top, top + 1);
    }
    run->sc.core = u->core;
    run->task = start_task(run, u->core, &err);
    if (!run->task)
        return push_failure(L, &err);
    run->sc.task = run->task;
    u->runs++;
    lua_pushvalue(L, 5);
    return 1;
}

/* Callbacks of the run's client run on the state of this driver call,
 * and the run is busy meanwhile: its own methods are refused from them
 * (to_run, run_close), as a blocking client refuses its own. Another
 * run's method may arm the client too: disarm puts back the hook it
 * found. Nothing between arm and disarm raises. */
static void arm(lua_State *L, lst_run *run, hook_ctx *ctx) {
    lst_client *u = run->owner;
    run->busy = 1;
    st_client_get_hook(u->core, &run->outer_hook, &run->outer_ctx);
    run->sc.L = L;
    ctx->L = L;
    ctx->ref = u->on_request;
    ctx->info = NULL;
    st_client_set_hook(u->core, u->on_request == LUA_NOREF ? NULL
                                                           : call_on_request,
                       ctx);
    if (u->rate_slot != LUA_NOREF) {
        st_client_get_rate_hook(u->core, &run->outer_rate_hook,
                                &run->outer_rate_ctx);
        ctx->rate_ref = u->rate_slot;
        st_client_set_rate_hook(u->core, call_rate_slot, ctx);
    }
}

static void disarm(lst_run *run) {
    st_client *core = run->owner->core;
    st_client_set_hook(core, run->outer_hook, run->outer_ctx);
    if (run->owner->rate_slot != LUA_NOREF)
        st_client_set_rate_hook(core, run->outer_rate_hook,
                                run->outer_rate_ctx);
    run->busy = 0;
}

/* The run of a method's self; raises once it was closed, or when called
 * from one of the run's own callbacks (on_request, on_start, on_result,
 * before_send): the engine is inside this run. */
static lst_run *to_run(lua_State *L) {
    lst_run *run = *(lst_run **)lst_check_self(L, 1, RUN_MT);
    if (!run)
        luaL_error(L, "streamtelecom: this run is closed");
    if (run->busy)
        luaL_error(L, "streamtelecom: the run's methods cannot be called "
                      "from its own callbacks");
    return run;
}

/* run, which must still be running, with room for a method's work. */
static lst_run *require_running(lua_State *L, lst_run *run) {
    if (!run->task)
        luaL_error(L, "streamtelecom: this run is %s",
                   run->done ? "done" : "closed");
    luaL_checkstack(L, METHOD_STACK, "streamtelecom");
    return run;
}

static lst_run *check_running(lua_State *L) {
    return require_running(L, to_run(L));
}

static int run_result(lua_State *L);

/* One step of the run; ST_STEP_DONE once ended (then always). */
static st_step next_step(lua_State *L, lst_run *run, size_t *job,
                         const char **url, double *wait) {
    hook_ctx ctx;
    st_step step;
    if (run->done)
        return ST_STEP_DONE;
    require_running(L, run);
    arm(L, run, &ctx);
    step = st_task_next(run->task, job, url, wait);
    disarm(run);
    if (step == ST_STEP_DONE) {
        run->done = 1;
        end_task(L, run);
    }
    return step;
}

static int push_wait_or_done(lua_State *L, st_step step, double wait) {
    if (step == ST_STEP_WAIT) {
        lua_pushliteral(L, "wait");
        if (wait >= 0)
            lua_pushnumber(L, (lua_Number)wait);
        else
            lua_pushboolean(L, 0);
        return 2;
    }
    lua_pushliteral(L, "done");
    return 1;
}

/* run:next() -> "start", job, url | "wait", seconds or false | "done" */
static int run_next(lua_State *L) {
    lst_run *run = to_run(L);
    size_t job;
    const char *url;
    double wait;
    st_step step = next_step(L, run, &job, &url, &wait);
    if (step != ST_STEP_START)
        return push_wait_or_done(L, step, wait);
    lua_pushliteral(L, "start");
    lua_pushinteger(L, (lua_Integer)job);
    lua_pushstring(L, url);
    return 3;
}

/* The request bytes of url into the run's buffer, framed by the client's
 * framer (which then holds its host, port and scheme); on failure the job
 * has been failed (it never left). */
static int frame_request(lua_State *L, lst_run *run, size_t job,
                         const char *url, const char *agent) {
    st_http_error e;
    hook_ctx ctx;
    st_buf_truncate(&run->box.url, 0); /* the run's buffer, reused */
    run->box.url.failed = 0;
    e = st_http_frame(&run->owner->framer, &run->box.url, url, strlen(url),
                      agent, 1);
    if (e == ST_HTTP_OK)
        return 0;
    arm(L, run, &ctx);
    st_task_fail(run->task, job, e == ST_HTTP_E_NOMEM ? ST_E_NOMEM : ST_E_NETWORK,
                 st_http_error_text(e), 0, 0, 0);
    disarm(run);
    return -1;
}

/* run:next_request([user_agent]) -> "start", job, request bytes, host,
 * port, tls, full | "wait", seconds or false | "done" [, result...]:
 * next() for drivers that let the core frame HTTP/1.1 (keep-alive).
 * full: nothing else can
 * start before this job ends (the next step would be a plain "wait"), so
 * the driver may run it at once. A URL that cannot be framed fails its
 * job here; the driver never sees it. The call that ends the run follows
 * "done" with what run:result() returns (raising what it raises). */
static int run_next_request(lua_State *L) {
    lst_run *run = to_run(L);
    const char *agent = lua_isnoneornil(L, 2)
                            ? NULL
                            : check_string_arg(L, "next_request", 2, NULL);
    const st_http_target *t = st_http_framer_target(&run->owner->framer);
    size_t job;
    const char *url;
    double wait;
    st_step step;
    int was_done = run->done;
    while ((step = next_step(L, run, &job, &url, &wait)) == ST_STEP_START) {
        if (frame_request(L, run, job, url, agent) != 0)
            continue;
        lua_pushliteral(L, "start");
        lua_pushinteger(L, (lua_Integer)job);
        lua_pushlstring(L, st_buf_str(&run->box.url), run->box.url.len);
        lua_pushstring(L, t->host);
        lua_pushinteger(L, (lua_Integer)t->port);
        lua_pushboolean(L, t->tls);
        lua_pushboolean(L, st_task_full(run->task));
        return 7;
    }
    if (step == ST_STEP_DONE && !was_done) { /* the call that ended it */
        lua_pushliteral(L, "done");
        return 1 + run_result(L);
    }
    return push_wait_or_done(L, step, wait);
}

/* run:answer(job, http_status, body [, seconds [, new_connection]]) */
static int run_answer(lua_State *L) {
    lst_run *run = check_running(L);
    lua_Integer job = luaL_checkinteger(L, 2);
    lua_Integer status = luaL_checkinteger(L, 3);
    size_t n;
    const char *body = luaL_checklstring(L, 4, &n);
    double seconds = (double)luaL_optnumber(L, 5, 0);
    hook_ctx ctx;
    int rc;
    arm(L, run, &ctx);
    rc = job > 0 ? st_task_answer(run->task, (size_t)job, (long)status, body,
                                  n, seconds, lua_toboolean(L, 6))
                 : -1;
    disarm(run);
    if (rc != 0)
        return luaL_error(L, "streamtelecom: job %d is not running", (int)job);
    return 0;
}

/* run:answer_http(job, parser [, seconds [, new_connection]]) -> keep:
 * answer() with the status and body of a parser that said "done";
 * keep says whether the connection may carry the next request. The
 * parser is then reset, ready for the next answer. */
static int run_answer_http(lua_State *L) {
    lst_run *run = check_running(L);
    lua_Integer job = luaL_checkinteger(L, 2);
    st_http_response *r = lst_check_parser(L, 3);
    double seconds = (double)luaL_optnumber(L, 4, 0);
    hook_ctx ctx;
    int rc;
    luaL_argcheck(L, st_http_response_done(r), 3,
                  "the parser has no whole response yet");
    arm(L, run, &ctx);
    rc = job > 0 ? st_task_answer(run->task, (size_t)job, (long)r->status,
                                  st_buf_str(&r->body), r->body.len, seconds,
                                  lua_toboolean(L, 5))
                 : -1;
    disarm(run);
    if (rc != 0)
        return luaL_error(L, "streamtelecom: job %d is not running", (int)job);
    lua_pushboolean(L, r->keep);
    st_http_response_reset(r);
    return 1;
}

/* The transport codes a driver may report. */
static st_code transport_code(lua_State *L, int arg) {
    static const char *const names[] = {"timeout", "connect", "tls",
                                        "network", "too_large", NULL};
    static const st_code codes[] = {ST_E_TIMEOUT, ST_E_CONNECT, ST_E_TLS,
                                    ST_E_NETWORK, ST_E_TOO_LARGE};
    return codes[luaL_checkoption(L, arg, NULL, names)];
}

/* run:fail(job, code, message, sent [, seconds [, new_connection]]) */
static int run_fail(lua_State *L) {
    lst_run *run = check_running(L);
    lua_Integer job = luaL_checkinteger(L, 2);
    st_code code = transport_code(L, 3);
    const char *message = luaL_checkstring(L, 4);
    double seconds = (double)luaL_optnumber(L, 6, 0);
    hook_ctx ctx;
    int rc;
    arm(L, run, &ctx);
    rc = job > 0 ? st_task_fail(run->task, (size_t)job, code, message,
                                lua_toboolean(L, 5), seconds,
                                lua_toboolean(L, 7))
                 : -1;
    disarm(run);
    if (rc != 0)
        return luaL_error(L, "streamtelecom: job %d is not running", (int)job);
    return 0;
}

static int push_send_outcome(lua_State *L, const st_send_result *res) {
    st_error closed;
    if (res->accepted) {
        push_send_result(L, res);
        return 1;
    }
    if (res->count == 0) { /* never started: the client was closed */
        st_fail(&closed, ST_E_CLOSED, "client is closed");
        return push_send_failure(L, &closed, 0);
    }
    return push_send_failure(L, &res->failure, res->sent);
}

/* run:result(): what the blocking method returns, once next() said done. */
static int run_result(lua_State *L) {
    lst_run *run = to_run(L);
    if (!run->done)
        return luaL_error(L, "streamtelecom: the run is not done: call "
                             "next() until it says \"done\"");
    luaL_checkstack(L, METHOD_STACK, "streamtelecom");
    switch (run->kind) {
    case RUN_SEND:
        return push_send_outcome(L, &run->out.result);
    case RUN_STATUS:
        if (run->out.err.code != ST_OK)
            return push_failure(L, &run->out.err);
        push_status(L, run->id, &run->out.status);
        return 1;
    case RUN_BALANCE:
        if (run->out.err.code != ST_OK)
            return push_failure(L, &run->out.err);
        push_balance(L, &run->out.balance);
        return 1;
    case RUN_WAIT:
        push_status_map(L, &run->box);
        return 1;
    default:
        if (run->box.ref == LUA_NOREF) /* its callback's error was raised */
            return luaL_error(L, "streamtelecom: the run ended with an "
                                 "error, raised already");
        return finish_stream(L, &run->box, &run->sc);
    }
}

static const luaL_Reg run_meta[] = {{"__gc", run_close}, {NULL, NULL}};

static const luaL_Reg run_methods[] = {
    {"next", run_next}, {"answer", run_answer}, {"fail", run_fail},
    {"next_request", run_next_request}, {"answer_http", run_answer_http},
    {"result", run_result}, {"close", run_close}, {NULL, NULL},
};

/* ---- the class ---------------------------------------------------------- */

static const luaL_Reg client_methods[] = {
    {"send", l_send},       {"status", l_status}, {"balance", l_balance},
    {"stats", l_stats},     {"close", l_close},   {"wait", l_wait},
    {"url", l_url},         {"send_many", l_send_many},
    {"status_many", l_status_many}, {"_begin", l_begin}, {NULL, NULL},
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
    lst_new_class(L, RUN_MT, run_meta, run_methods);
    lst_new_class(L, BOX_MT, box_meta, NULL);
}
