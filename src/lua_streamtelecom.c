/* Lua bindings: translate Lua values to core calls and core results to Lua
 * tables. No gateway logic lives here. */

/***
Send SMS through the Stream Telecom HTTP gateway, on libcurl.
Every runtime failure answers `nil, message, code`; the message is English,
keeps the gateway's own words and never holds the password. A wrong argument
type raises an error.

Fields: `_VERSION` ("streamtelecom 0.x.y"), `DEFAULT_URL`
("https://gateway.api.sc/get/"), `errors` (every error code mapped to itself:
auth, blocked, direction\_closed, no\_sender, no\_text, unknown\_sender,
no\_phone, flood, not\_found, gateway, invalid, timeout, connect, tls, http,
too\_large, network, closed).
@module streamtelecom
*/

/***
Functions
@section Functions
*/
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compat.h"
#include "st_core.h"

#define CLIENT_MT "streamtelecom.client"

typedef struct lst_client {
    st_client *core;     /* NULL once closed */
    int on_request;      /* registry ref of the callback, or LUA_NOREF */
    int busy;            /* a core call is running */
    int close_pending;   /* closed from its own callback: freed after the call */
    char shown[256];     /* what tostring() says; never holds the password */
} lst_client;

/* ---- small helpers ------------------------------------------------------ */

static int push_failure(lua_State *L, const st_error *err) {
    lua_pushnil(L);
    lua_pushstring(L, err->message);
    lua_pushstring(L, st_code_name(err->code));
    return 3;
}

static int push_invalid(lua_State *L, const char *message) {
    st_error err;
    st_fail(&err, ST_E_INVALID, "%s", message);
    return push_failure(L, &err);
}

static int type_error(lua_State *L, int arg, const char *want) {
    const char *msg = lua_pushfstring(L, "%s expected, got %s", want,
                                      luaL_typename(L, arg));
    return luaL_argerror(L, arg, msg);
}

/* A Lua string argument, with no coercion from numbers (API.md). */
static const char *check_string(lua_State *L, int arg, size_t *len) {
    if (lua_type(L, arg) != LUA_TSTRING)
        type_error(L, arg, "string");
    return lua_tolstring(L, arg, len);
}

static void set_string(lua_State *L, const char *key, const char *value) {
    lua_pushstring(L, value);
    lua_setfield(L, -2, key);
}

static void set_number(lua_State *L, const char *key, double value) {
    lua_pushnumber(L, (lua_Number)value);
    lua_setfield(L, -2, key);
}

static void set_integer(lua_State *L, const char *key, double value) {
    lua_pushinteger(L, (lua_Integer)value);
    lua_setfield(L, -2, key);
}

static lst_client *check_client(lua_State *L) {
    return (lst_client *)luaL_checkudata(L, 1, CLIENT_MT);
}

static int push_closed(lua_State *L) {
    st_error err;
    st_fail(&err, ST_E_CLOSED, "client is closed");
    return push_failure(L, &err);
}

/* ---- the on_request callback -------------------------------------------- */

/* Lives on the C stack for one method call: the callback runs on the
 * lua_State of the call that triggered it (coroutines), never a kept one. */
typedef struct hook_ctx {
    lua_State *L;
    int ref;
} hook_ctx;

static void call_on_request(void *ud, const st_exchange *info) {
    hook_ctx *ctx = ud;
    lua_State *L = ctx->L;
    if (!lua_checkstack(L, 4))
        return;
    lua_rawgeti(L, LUA_REGISTRYINDEX, ctx->ref);
    lua_createtable(L, 0, 5);
    set_string(L, "call", st_call_name(info->call));
    set_string(L, "url", info->url);
    set_integer(L, "http_status", (double)info->http_status);
    set_number(L, "seconds", info->seconds);
    if (info->code != ST_OK)
        set_string(L, "code", st_code_name(info->code));
    /* A failing callback must not turn a sent SMS into an error. */
    if (lua_pcall(L, 1, 0, 0) != 0)
        lua_pop(L, 1);
}

/* Marks the client in use for one core call and arms its callback; ctx
 * must outlive the call. */
static void begin_call(lua_State *L, lst_client *u, hook_ctx *ctx) {
    ctx->L = L;
    ctx->ref = u->on_request;
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
    u->close_pending = 0;
}

static void end_call(lua_State *L, lst_client *u) {
    u->busy = 0;
    if (u->close_pending)
        free_client(L, u);
}

static int client_open_quiet(const lst_client *u) {
    return u->core != NULL && !u->close_pending;
}

/* 1 when the client can take a call, 0 when closed. A method called from
 * the client's own on_request would run the engine inside itself: that is
 * a programming error and raises (the callback's pcall then swallows it). */
static int client_open(lua_State *L, lst_client *u) {
    if (u->busy && !u->close_pending)
        luaL_error(L, "streamtelecom: the client is busy: no calls from "
                      "its own on_request callback");
    return u->core != NULL && !u->close_pending;
}

/* ---- st.new ------------------------------------------------------------- */

typedef enum { OPT_STRING, OPT_NUMBER, OPT_INT, OPT_BOOLEAN, OPT_FUNCTION } opt_type;

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
        if (len == 0)
            return "a non-empty string";
        memcpy(field, &s, sizeof s);
    } else if (spec->type == OPT_NUMBER) {
        double v = (double)lua_tonumber(L, -1);
        /* The core reads rate 0 as "no limit"; a user asking for 0 erred. */
        if (spec->offset == offsetof(st_options, rate) && !(v > 0))
            return "a number above 0";
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

/* Reads the options table at index 1; on a bad option pushes nothing and
 * writes the reason into why. */
static int read_options(lua_State *L, st_options *o, int *has_callback,
                        char *why, size_t cap) {
    st_options_defaults(o);
    *has_callback = 0;
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
        if (!spec) {
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
        if (spec->type == OPT_FUNCTION)
            *has_callback = 1;
        lua_pop(L, 1);
    }
    return 0;
}

static void describe_client(lst_client *u) {
    st_client *c = u->core;
    snprintf(u->shown, sizeof u->shown, "%s @ %s", st_client_user(c),
             st_client_url(c));
    st_client_redact(c, u->shown, sizeof u->shown);
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
static int l_new(lua_State *L) {
    st_options o;
    st_error err;
    lst_client *u;
    int has_callback;
    char why[160];
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    if (read_options(L, &o, &has_callback, why, sizeof why) != 0)
        return push_invalid(L, why);
    if (!o.user || !o.password)
        return push_invalid(L, o.user ? "invalid option 'password': required"
                                      : "invalid option 'user': required");
    if (st_options_check(&o, &err) != 0)
        return push_failure(L, &err);
    u = (lst_client *)lua_newuserdata(L, sizeof *u);
    u->core = NULL;
    u->on_request = LUA_NOREF;
    u->busy = u->close_pending = 0;
    u->shown[0] = '\0';
    luaL_getmetatable(L, CLIENT_MT);
    lua_setmetatable(L, -2);
    u->core = st_client_new(&o, &err);
    if (!u->core)
        return push_failure(L, &err);
    describe_client(u);
    if (has_callback) {
        lua_getfield(L, 1, "on_request");
        u->on_request = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    return 1;
}

/* ---- close, gc, tostring ------------------------------------------------ */

/* close, __gc and __close are this one idempotent function. */
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
    if (u->busy)
        u->close_pending = 1; /* from its own callback: the call ends first */
    else
        free_client(L, u);
    lua_pushboolean(L, 1);
    return 1;
}

static int l_tostring(lua_State *L) {
    lst_client *u = check_client(L);
    lua_pushfstring(L, "streamtelecom.client: %s%s", u->shown,
                    client_open_quiet(u) ? "" : " (closed)");
    return 1;
}

/* ---- send --------------------------------------------------------------- */

/* Adds the recipients of argument 2 (a string or a list of strings). */
static int read_recipients(lua_State *L, int arg, st_recipients *r,
                           st_error *err) {
    size_t i, n, len;
    const char *s;
    if (lua_type(L, arg) == LUA_TSTRING) {
        s = lua_tolstring(L, arg, &len);
        return st_recipients_add(r, s, len, err);
    }
    n = lua_rawlen(L, arg);
    for (i = 1; i <= n; i++) {
        lua_rawgeti(L, arg, (int)i);
        s = lua_tolstring(L, -1, &len);
        lua_pop(L, 1);
        if (st_recipients_add(r, s, len, err) != 0)
            return -1;
    }
    if (n == 0)
        return st_fail(err, ST_E_INVALID, "invalid recipients: none given");
    return 0;
}

/* Why the value at idx is not a recipient list (a string or a list of
 * strings): a message left on the stack, or NULL with nothing pushed. */
static const char *recipients_type_problem(lua_State *L, int idx) {
    size_t i, n;
    if (lua_type(L, idx) == LUA_TSTRING)
        return NULL;
    if (lua_type(L, idx) != LUA_TTABLE)
        return lua_pushfstring(L, "string or table expected, got %s",
                               luaL_typename(L, idx));
    n = lua_rawlen(L, idx);
    for (i = 1; i <= n; i++) {
        lua_rawgeti(L, idx, (int)i);
        if (lua_type(L, -1) != LUA_TSTRING) {
            const char *why = lua_pushfstring(L, "recipient %d is a %s, want "
                                                 "a string",
                                              (int)i, luaL_typename(L, -1));
            lua_remove(L, -2);
            return why;
        }
        lua_pop(L, 1);
    }
    return NULL;
}

/* Raises for a recipient list of the wrong Lua types, before any C memory
 * is taken, so the raise cannot leak. */
static void check_recipient_types(lua_State *L, int arg) {
    const char *why = recipients_type_problem(L, arg);
    if (why)
        luaL_argerror(L, arg, why);
}

typedef enum field_state { FIELD_OK, FIELD_WRONG_TYPE, FIELD_BAD_VALUE } field_state;

/* An optional string field of the table at tbl (NULL when absent or when
 * tbl is nil). *state says whether it is not a string, or a string with a
 * NUL byte or (unless may_be_empty) no byte at all; it is left alone when
 * the field is fine, so one state can gather several fields. */
static const char *string_field(lua_State *L, int tbl, const char *key,
                                int may_be_empty, size_t *len,
                                field_state *state) {
    const char *s;
    size_t n;
    if (lua_isnoneornil(L, tbl))
        return NULL;
    lua_getfield(L, tbl, key);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return NULL;
    }
    if (lua_type(L, -1) != LUA_TSTRING) {
        lua_pop(L, 1);
        *state = FIELD_WRONG_TYPE;
        return NULL;
    }
    s = lua_tolstring(L, -1, &n);
    lua_pop(L, 1); /* still referenced by the table */
    if ((n == 0 && !may_be_empty) || strlen(s) != n) {
        if (*state == FIELD_OK)
            *state = FIELD_BAD_VALUE;
        return NULL;
    }
    if (len)
        *len = n;
    return s;
}

/* A field of send's opts: raises for a wrong type, gathers bad values. */
static const char *opt_field(lua_State *L, int arg, const char *key,
                             field_state *bad_value) {
    field_state state = FIELD_OK;
    const char *s = string_field(L, arg, key, 0, NULL, &state);
    if (state == FIELD_WRONG_TYPE) {
        lua_getfield(L, arg, key);
        luaL_argerror(L, arg,
                      lua_pushfstring(L, "'%s' must be a string, got %s", key,
                                      luaL_typename(L, -1)));
    }
    if (state == FIELD_BAD_VALUE)
        *bad_value = FIELD_BAD_VALUE;
    return s;
}

/* Fills p from (to, text, opts) at arg, arg+1, arg+2; raises on wrong
 * types, returns -1 with err on bad values. */
static int read_send_args(lua_State *L, int arg, st_client *c,
                          st_send_params *p, st_error *err) {
    const char *sender;
    field_state bad_value = FIELD_OK;
    check_recipient_types(L, arg);
    p->text = check_string(L, arg + 1, &p->text_len);
    if (!lua_isnoneornil(L, arg + 2) && lua_type(L, arg + 2) != LUA_TTABLE)
        type_error(L, arg + 2, "table or nil");
    sender = opt_field(L, arg + 2, "sender", &bad_value);
    p->sender = sender ? sender : st_client_sender(c);
    p->callback_url = opt_field(L, arg + 2, "callback_url", &bad_value);
    p->name = opt_field(L, arg + 2, "name", &bad_value);
    if (bad_value != FIELD_OK)
        return st_fail(err, ST_E_INVALID,
                       "invalid send option: sender, callback_url and name "
                       "must be non-empty strings without NUL bytes");
    return 0;
}

static void push_send_result(lua_State *L, const st_send_result *res) {
    size_t i;
    lua_createtable(L, (int)res->count, 0);
    for (i = 0; i < res->count; i++) {
        const st_send_record *rec = &res->records[i];
        lua_createtable(L, 0, 3);
        set_string(L, "to", rec->to);
        if (rec->id[0]) {
            set_string(L, "id", rec->id);
        } else {
            const st_error *e = &res->errors[rec->chunk];
            set_string(L, "err", e->message);
            set_string(L, "code", st_code_name(e->code));
        }
        lua_rawseti(L, -2, (int)i + 1);
    }
}

/***
Sends one text to one or more recipients. Numbers lose spaces, `+`, `-`,
`(` and `)` and must then have 10 to 15 digits. A long list is split over
several requests and merged back in order. A send is never repeated once it
may have reached the gateway.
@function client:send
@tparam string|table to "79031234567", "79031234567,79161234567" or a list of numbers
@tparam string text UTF-8, not empty
@tparam[opt] table opts `sender`, `callback_url`, `name` (other keys are ignored)
@treturn table one record per recipient, in order: `{ to =, id = }` or
`{ to =, err =, code = }`
@treturn[2] nil when no recipient was accepted, or for a bad argument value
@treturn[2] string message (the gateway's own Russian words kept)
@treturn[2] string code, one of `errors`
@usage local msgs, err, code = client:send("+7 903 123-45-67", "Your code is 1234")
*/
static int l_send(lua_State *L) {
    lst_client *u = check_client(L);
    st_recipients r = {NULL, 0, 0};
    st_send_params p;
    st_send_result res;
    st_error err;
    hook_ctx ctx;
    int rc;
    if (!client_open(L, u)) {
        check_recipient_types(L, 2);
        check_string(L, 3, NULL);
        return push_closed(L);
    }
    if (read_send_args(L, 2, u->core, &p, &err) != 0)
        return push_failure(L, &err);
    if (read_recipients(L, 2, &r, &err) != 0) {
        st_recipients_free(&r);
        return push_failure(L, &err);
    }
    begin_call(L, u, &ctx);
    rc = st_client_send(u->core, &r, &p, &res, &err);
    end_call(L, u);
    st_recipients_free(&r);
    if (rc != 0)
        return push_failure(L, &err);
    push_send_result(L, &res);
    st_send_result_free(&res);
    return 1;
}

/* ---- status and balance ------------------------------------------------- */

static void push_status(lua_State *L, const char *id, const st_status *s) {
    lua_createtable(L, 0, 5);
    if (id)
        set_string(L, "id", id);
    set_string(L, "state", st_state_name(s->state));
    set_string(L, "raw", s->raw);
    lua_pushboolean(L, s->final);
    lua_setfield(L, -2, "final");
    if (s->updated[0])
        set_string(L, "updated", s->updated);
}

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
    lst_client *u = check_client(L);
    size_t len;
    const char *id = check_string(L, 2, &len);
    st_status s;
    st_error err;
    hook_ctx ctx;
    int rc;
    if (!client_open(L, u))
        return push_closed(L);
    if (st_id_check(id, len, &err) != 0)
        return push_failure(L, &err);
    begin_call(L, u, &ctx);
    rc = st_client_status(u->core, id, &s, &err);
    end_call(L, u);
    if (rc != 0)
        return push_failure(L, &err);
    push_status(L, id, &s);
    return 1;
}

static void push_balance(lua_State *L, const st_balance *b) {
    lua_createtable(L, 0, 3);
    set_number(L, "balance", b->balance);
    set_string(L, "raw", b->raw);
    if (b->currency[0])
        set_string(L, "currency", b->currency);
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
    lst_client *u = check_client(L);
    st_balance b;
    st_error err;
    hook_ctx ctx;
    int rc;
    if (!client_open(L, u))
        return push_closed(L);
    begin_call(L, u, &ctx);
    rc = st_client_balance(u->core, &b, &err);
    end_call(L, u);
    if (rc != 0)
        return push_failure(L, &err);
    push_balance(L, &b);
    return 1;
}

/* ---- wait --------------------------------------------------------------- */

/* Reads a non-negative number field of the options table at arg. */
static double wait_option(lua_State *L, int arg, const char *key, double def) {
    double v = def;
    if (lua_isnoneornil(L, arg))
        return def;
    lua_getfield(L, arg, key);
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) != LUA_TNUMBER)
            luaL_argerror(L, arg, lua_pushfstring(L, "'%s' must be a number",
                                                  key));
        v = (double)lua_tonumber(L, -1);
        if (!(v >= 0))
            luaL_argerror(L, arg, lua_pushfstring(L, "'%s' must be >= 0", key));
    }
    lua_pop(L, 1);
    return v;
}

static void check_id_list(lua_State *L, int arg) {
    size_t i, n;
    luaL_checktype(L, arg, LUA_TTABLE);
    n = lua_rawlen(L, arg);
    for (i = 1; i <= n; i++) {
        lua_rawgeti(L, arg, (int)i);
        if (lua_type(L, -1) != LUA_TSTRING)
            luaL_argerror(L, arg, lua_pushfstring(L, "id %d is a %s, want a "
                                                     "string",
                                                  (int)i, luaL_typename(L, -1)));
        lua_pop(L, 1);
    }
}

static void push_error_record(lua_State *L, const st_error *err) {
    lua_createtable(L, 0, 2);
    set_string(L, "err", err->message);
    set_string(L, "code", st_code_name(err->code));
}

/* The distinct ids of the list at arg (strings already checked) that the
 * map at map_idx does not hold as settled, i.e. final or permanently failed;
 * map_idx 0 means none is settled. ids must hold lua_rawlen(arg) slots. */
static size_t pending_ids(lua_State *L, int arg, int map_idx,
                          const char **ids) {
    size_t i, n = lua_rawlen(L, arg), count = 0;
    lua_newtable(L); /* seen */
    for (i = 1; i <= n; i++) {
        int settled = 0;
        lua_rawgeti(L, arg, (int)i);
        lua_pushvalue(L, -1);
        lua_rawget(L, -3);
        if (!lua_isnil(L, -1)) { /* a duplicate */
            lua_pop(L, 2);
            continue;
        }
        lua_pop(L, 1);
        if (map_idx) {
            lua_pushvalue(L, -1);
            lua_rawget(L, map_idx);
            if (lua_istable(L, -1)) {
                lua_getfield(L, -1, "final");
                lua_getfield(L, -2, "code");
                settled = lua_toboolean(L, -2) ||
                          (lua_isstring(L, -1) &&
                           (strcmp(lua_tostring(L, -1), "not_found") == 0 ||
                            strcmp(lua_tostring(L, -1), "invalid") == 0));
                lua_pop(L, 2);
            }
            lua_pop(L, 1);
        }
        if (!settled)
            ids[count++] = lua_tostring(L, -1); /* anchored by the list */
        lua_pushboolean(L, 1);
        lua_rawset(L, -3);
    }
    lua_pop(L, 1);
    return count;
}

/* Asks for ids[0..n) at once and stores each result in the map at map_idx;
 * returns how many are still not final. -1 with err for a bad id. */
static long status_into_map(lua_State *L, lst_client *u, const char **ids,
                            size_t n, int map_idx, st_error *err) {
    st_status *out = calloc(n ? n : 1, sizeof *out);
    st_error *errs = calloc(n ? n : 1, sizeof *errs);
    size_t i;
    long pending = 0;
    hook_ctx ctx;
    int rc;
    if (!out || !errs) {
        free(out), free(errs);
        return st_fail(err, ST_E_INVALID, "out of memory");
    }
    begin_call(L, u, &ctx);
    rc = st_client_status_many(u->core, ids, n, out, errs, err);
    end_call(L, u);
    if (rc != 0) {
        free(out), free(errs);
        return -1;
    }
    for (i = 0; i < n; i++) {
        if (errs[i].code == ST_OK)
            push_status(L, ids[i], &out[i]);
        else
            push_error_record(L, &errs[i]);
        pending += errs[i].code == ST_OK ? !out[i].final
                                         : errs[i].code != ST_E_NOT_FOUND;
        lua_setfield(L, map_idx, ids[i]);
    }
    free(out), free(errs);
    return pending;
}

/***
The statuses of many messages, up to `concurrency` requests at once.
@function client:status_many
@tparam {string,...} ids message ids
@treturn table map from id to a status record or `{ err =, code = }`
@treturn[2] nil for a bad id (the message names its index); nothing is sent
@treturn[2] string message
@treturn[2] string "invalid"
*/
static int l_status_many(lua_State *L) {
    lst_client *u = check_client(L);
    const char **ids;
    st_error err;
    size_t n;
    long rc;
    check_id_list(L, 2);
    if (!client_open(L, u))
        return push_closed(L);
    lua_settop(L, 2);
    ids = lua_newuserdata(L, (lua_rawlen(L, 2) + 1) * sizeof *ids);
    n = pending_ids(L, 2, 0, ids);
    lua_newtable(L); /* the map, at 4 */
    rc = status_into_map(L, u, ids, n, 4, &err);
    return rc < 0 ? push_failure(L, &err) : 1;
}

/***
Polls `client:status_many` until every message is final or time is up.
@function client:wait
@tparam {string,...} ids message ids
@tparam[opt] table opts `timeout` (60 s), `interval` (5 s)
@treturn table map as `client:status_many` gives, with the last known states
*/
static int l_wait(lua_State *L) {
    lst_client *u = check_client(L);
    double timeout, interval, deadline;
    const char **ids;
    st_error err;
    check_id_list(L, 2);
    timeout = wait_option(L, 3, "timeout", 60);
    interval = wait_option(L, 3, "interval", 5);
    if (!client_open(L, u))
        return push_closed(L);
    deadline = st_now() + timeout;
    lua_settop(L, 3);
    ids = lua_newuserdata(L, (lua_rawlen(L, 2) + 1) * sizeof *ids); /* 4 */
    lua_newtable(L); /* the map, at 5 */
    while (client_open_quiet(u)) { /* its callback may close it */
        size_t n = pending_ids(L, 2, 5, ids);
        long pending = n ? status_into_map(L, u, ids, n, 5, &err) : 0;
        if (pending < 0)
            return push_failure(L, &err);
        if (pending == 0 || st_now() + interval > deadline)
            break;
        st_sleep(interval);
    }
    lua_settop(L, 5);
    return 1;
}

/* ---- send_many -------------------------------------------------------------- */

/* The recipients of item.to (a string or a list of strings). */
static int item_recipients(lua_State *L, int item, st_recipients *r,
                           st_error *err) {
    const char *why;
    int rc;
    lua_getfield(L, item, "to");
    why = recipients_type_problem(L, lua_gettop(L));
    if (why) {
        st_fail(err, ST_E_INVALID, "'to': %s", why);
        lua_pop(L, 2);
        return -1;
    }
    rc = read_recipients(L, lua_gettop(L), r, err);
    lua_pop(L, 1);
    return rc;
}

/* A send_many item: every problem, type or value, is a bad item. */
static int read_item(lua_State *L, int item, st_client *c, st_send_item *out,
                     st_recipients *r, st_error *err) {
    field_state state = FIELD_OK;
    const char *sender;
    if (!lua_istable(L, item))
        return st_fail(err, ST_E_INVALID, "want a table with to and text");
    if (item_recipients(L, item, r, err) != 0)
        return -1;
    out->recipients = r;
    out->params.text_len = 0;
    out->params.text = string_field(L, item, "text", 1, &out->params.text_len,
                                    &state);
    sender = string_field(L, item, "sender", 0, NULL, &state);
    out->params.sender = sender ? sender : st_client_sender(c);
    out->params.callback_url =
        string_field(L, item, "callback_url", 0, NULL, &state);
    out->params.name = string_field(L, item, "name", 0, NULL, &state);
    if (state != FIELD_OK || !out->params.text)
        return st_fail(err, ST_E_INVALID,
                       "'text' must be a string and 'sender', 'callback_url' "
                       "and 'name' non-empty strings, none with NUL bytes");
    return 0;
}

typedef struct many_items {
    st_send_item *items;
    st_recipients *recipients;
    st_send_result *results;
    size_t n;
} many_items;

static void many_items_free(many_items *m) {
    size_t i;
    for (i = 0; i < m->n; i++) {
        st_recipients_free(&m->recipients[i]);
        if (m->results)
            st_send_result_free(&m->results[i]);
    }
    free(m->items), free(m->recipients), free(m->results);
}

/* Reads every item of the list at arg; -1 with err naming the bad one. */
static int read_items(lua_State *L, int arg, st_client *c, many_items *m,
                      st_error *err) {
    size_t i, n = lua_rawlen(L, arg);
    m->n = n;
    m->items = calloc(n ? n : 1, sizeof *m->items);
    m->recipients = calloc(n ? n : 1, sizeof *m->recipients);
    m->results = calloc(n ? n : 1, sizeof *m->results);
    if (!m->items || !m->recipients || !m->results)
        return st_fail(err, ST_E_INVALID, "out of memory");
    for (i = 0; i < n; i++) {
        int rc;
        lua_rawgeti(L, arg, (int)i + 1);
        rc = read_item(L, lua_gettop(L), c, &m->items[i], &m->recipients[i],
                       err);
        lua_pop(L, 1);
        if (rc != 0) {
            char message[ST_ERR_MAX];
            snprintf(message, sizeof message, "%s", err->message);
            return st_fail(err, ST_E_INVALID, "invalid item %zu: %s", i + 1,
                           message);
        }
    }
    return 0;
}

/***
Many sends at once over the client's kept-alive connections (libcurl
multi), at most `concurrency` requests in flight. The whole list is checked
before anything is sent; one failing item never stops the others.
@function client:send_many
@tparam {table,...} items each `{ to =, text = [, sender =, callback_url =, name =] }`
@treturn table `results[i]` is what `client:send` would return for item i,
or `{ err =, code = }` where that send failed
@treturn[2] nil for a bad item (the message names its index)
@treturn[2] string message
@treturn[2] string "invalid"
*/
static int l_send_many(lua_State *L) {
    lst_client *u = check_client(L);
    many_items m = {NULL, NULL, NULL, 0};
    st_error err;
    hook_ctx ctx;
    size_t i;
    int rc;
    luaL_checktype(L, 2, LUA_TTABLE);
    if (!client_open(L, u))
        return push_closed(L);
    lua_settop(L, 2);
    rc = read_items(L, 2, u->core, &m, &err);
    if (rc == 0) {
        begin_call(L, u, &ctx);
        rc = st_client_send_many(u->core, m.items, m.n, m.results, &err);
        end_call(L, u);
    }
    if (rc != 0) {
        many_items_free(&m);
        return push_failure(L, &err);
    }
    lua_createtable(L, (int)m.n, 0);
    for (i = 0; i < m.n; i++) {
        if (m.results[i].accepted)
            push_send_result(L, &m.results[i]);
        else
            push_error_record(L, &m.results[i].failure);
        lua_rawseti(L, -2, (int)i + 1);
    }
    many_items_free(&m);
    return 1;
}

/* ---- url and parse: bring your own transport ---------------------------- */

static int url_for_send(lua_State *L, lst_client *u) {
    st_recipients r = {NULL, 0, 0};
    st_send_params p;
    st_error err;
    st_buf url = ST_BUF_INIT;
    int rc;
    if (read_send_args(L, 3, u->core, &p, &err) != 0)
        return push_failure(L, &err);
    rc = read_recipients(L, 3, &r, &err);
    if (rc == 0)
        rc = st_client_send_url(u->core, &r, &p, &url, &err);
    st_recipients_free(&r);
    if (rc == 0)
        lua_pushlstring(L, url.data, url.len);
    st_buf_free(&url);
    return rc == 0 ? 1 : push_failure(L, &err);
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
    st_credentials cred;
    st_buf url = ST_BUF_INIT;
    st_error err;
    if (call == ST_CALL_SEND && client_open_quiet(u))
        return url_for_send(L, u);
    if (call == ST_CALL_STATUS) {
        size_t len;
        const char *id = check_string(L, 3, &len);
        if (client_open_quiet(u) && st_id_check(id, len, &err) != 0)
            return push_failure(L, &err);
    }
    if (!client_open_quiet(u)) /* url() and stats() run no request: */
        return push_closed(L); /* fine from the client's own callback */
    cred = st_client_credentials(u->core);
    if (call == ST_CALL_STATUS)
        st_build_status_url(&url, &cred, lua_tostring(L, 3));
    else
        st_build_balance_url(&url, &cred);
    lua_pushlstring(L, st_buf_str(&url), url.len);
    st_buf_free(&url);
    return 1;
}

static int parse_send(lua_State *L, const char *body, size_t n) {
    st_recipients r = {NULL, 0, 0};
    st_error err;
    size_t i, expected;
    char(*ids)[ST_ID_MAX + 1];
    if (!lua_isnoneornil(L, 3)) {
        check_recipient_types(L, 3);
        if (read_recipients(L, 3, &r, &err) != 0) {
            st_recipients_free(&r);
            return push_failure(L, &err);
        }
    }
    expected = lua_isnoneornil(L, 3) ? st_send_answer_ids(body, n) : r.count;
    ids = calloc(expected ? expected : 1, sizeof *ids);
    if (!ids || st_parse_send_answer(body, n, expected ? expected : 1, ids,
                                     &err) != 0) {
        free(ids);
        st_recipients_free(&r);
        return ids ? push_failure(L, &err) : luaL_error(L, "out of memory");
    }
    lua_createtable(L, (int)expected, 0);
    for (i = 0; i < expected; i++) {
        lua_createtable(L, 0, 2);
        if (i < r.count)
            set_string(L, "to", r.items[i].digits);
        set_string(L, "id", ids[i]);
        lua_rawseti(L, -2, (int)i + 1);
    }
    free(ids);
    st_recipients_free(&r);
    return 1;
}

/***
Reads a gateway answer body exactly as the real call would: for users who
fetch `client:url` with their own transport (OpenResty cosockets).
@function parse
@within Functions
@tparam string call "send", "status" or "balance"
@tparam string body the answer body
@param[opt] extra for "send" the recipients (string or list) to pair with the
ids; for "status" the id to put in the record
@treturn table what `client:send`, `client:status` or `client:balance` returns
@treturn[2] nil
@treturn[2] string message
@treturn[2] string code, e.g. "flood" or "gateway"
@usage local msgs, err, code = st.parse("send", body, "79031234567")
*/
static int l_parse(lua_State *L) {
    static const char *const calls[] = {"send", "status", "balance", NULL};
    int call = luaL_checkoption(L, 1, NULL, calls);
    size_t n;
    const char *body = check_string(L, 2, &n);
    st_error err;
    if (call == ST_CALL_SEND)
        return parse_send(L, body, n);
    if (call == ST_CALL_STATUS) {
        st_status s;
        const char *id = lua_isnoneornil(L, 3) ? NULL : check_string(L, 3, NULL);
        if (st_parse_status_answer(body, n, &s, &err) != 0)
            return push_failure(L, &err);
        push_status(L, id, &s);
        return 1;
    } else {
        st_balance b;
        if (st_parse_balance_answer(body, n, &b, &err) != 0)
            return push_failure(L, &err);
        push_balance(L, &b);
        return 1;
    }
}

/* ---- segments ----------------------------------------------------------- */

/***
How many SMS parts a text costs and in which encoding, without the network.
GSM 03.38: the default alphabet (extension characters count two septets),
160 septets for one part, 153 for each of several; otherwise UCS-2: 70 UTF-16
units for one part, 67 for each of several. A part never splits an escape
sequence or a surrogate pair.
@function segments
@within Functions
@tparam string text UTF-8
@treturn table `{ encoding = "gsm7"|"ucs2", parts =, chars =, per_part =, remaining = }`
@treturn[2] nil
@treturn[2] string message
@treturn[2] string "invalid" for text that is not UTF-8
@usage st.segments("Привет") --> { encoding = "ucs2", parts = 1, chars = 6, per_part = 70, remaining = 64 }
*/
static int l_segments(lua_State *L) {
    size_t n;
    const char *text = check_string(L, 1, &n);
    st_segments_info info;
    st_error err;
    if (st_segments(text, n, &info, &err) != 0)
        return push_failure(L, &err);
    lua_createtable(L, 0, 5);
    set_string(L, "encoding", info.ucs2 ? "ucs2" : "gsm7");
    set_integer(L, "parts", (double)info.parts);
    set_integer(L, "chars", (double)info.chars);
    set_integer(L, "per_part", (double)info.per_part);
    set_integer(L, "remaining", (double)info.remaining);
    return 1;
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
    const st_stats *s;
    int code;
    if (!client_open_quiet(u))
        return push_closed(L);
    s = st_client_stats(u->core);
    lua_createtable(L, 0, 7);
    set_integer(L, "requests", (double)s->requests);
    set_integer(L, "retries", (double)s->retries);
    set_integer(L, "connections_opened", (double)s->connections_opened);
    set_integer(L, "connections_reused", (double)s->connections_reused);
    set_number(L, "seconds_total", s->seconds_total);
    set_number(L, "seconds_max", s->seconds_max);
    lua_newtable(L);
    for (code = 1; code < ST_CODE_COUNT; code++)
        if (s->failures[code])
            set_integer(L, st_code_name((st_code)code),
                        (double)s->failures[code]);
    lua_setfield(L, -2, "failures");
    return 1;
}

/* ---- module ------------------------------------------------------------- */

static const luaL_Reg client_methods[] = {
    {"send", l_send},       {"status", l_status}, {"balance", l_balance},
    {"stats", l_stats},     {"close", l_close},   {"wait", l_wait},
    {"url", l_url},         {"send_many", l_send_many},
    {"status_many", l_status_many}, {NULL, NULL},
};

static const luaL_Reg client_meta[] = {
    {"__gc", l_close},
    {"__close", l_close},
    {"__tostring", l_tostring},
    {NULL, NULL},
};

static const luaL_Reg module_functions[] = {
    {"new", l_new},
    {"parse", l_parse},
    {"segments", l_segments},
    {NULL, NULL},
};

static void push_errors_set(lua_State *L) {
    int code;
    lua_createtable(L, 0, ST_CODE_COUNT - 1);
    for (code = 1; code < ST_CODE_COUNT; code++)
        set_string(L, st_code_name((st_code)code), st_code_name((st_code)code));
}

#if defined(_WIN32)
#define ST_EXPORT __declspec(dllexport)
#else
#define ST_EXPORT __attribute__((visibility("default")))
#endif
ST_EXPORT int luaopen_streamtelecom(lua_State *L);

ST_EXPORT int luaopen_streamtelecom(lua_State *L) {
    luaL_newmetatable(L, CLIENT_MT);
    luaL_setfuncs(L, client_meta, 0);
    luaL_newlib(L, client_methods);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);

    luaL_newlib(L, module_functions);
    set_string(L, "_VERSION", "streamtelecom " ST_VERSION);
    set_string(L, "DEFAULT_URL", ST_DEFAULT_URL);
    push_errors_set(L);
    lua_setfield(L, -2, "errors");
    return 1;
}
