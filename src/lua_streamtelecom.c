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
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <string.h>

#include "lua_bind.h"

/* st.parse("send", body [, to]): the records a send of those recipients
 * would give for that answer. The recipients and ids are the box's. */
static int parse_send(lua_State *L, const char *body, size_t n) {
    call_box *box;
    st_error err;
    size_t i, expected;
    lua_settop(L, 3);
    box = box_push(L); /* 4 */
    if (!lua_isnil(L, 3) &&
        read_recipients(L, "st.parse", 3, &box->recipients, &err) != 0)
        return push_failure(L, &err);
    expected = lua_isnil(L, 3) ? st_send_answer_ids(body, n)
                               : box->recipients.count;
    box->answer_ids = calloc(expected ? expected : 1, sizeof *box->answer_ids);
    if (!box->answer_ids)
        return lst_nomem(L);
    if (st_parse_send_answer(body, n, expected ? expected : 1,
                             box->answer_ids, &err) != 0)
        return push_failure(L, &err);
    lua_createtable(L, (int)expected, 0);
    for (i = 0; i < expected; i++) {
        lua_createtable(L, 0, 2);
        if (i < box->recipients.count)
            set_string(L, "to", st_recipient(&box->recipients, i)->digits);
        set_string(L, "id", box->answer_ids[i]);
        lua_rawseti(L, -2, (int)i + 1);
    }
    box_release(L, box);
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
    const char *body;
    st_error err;
    luaL_checkstack(L, 8, "streamtelecom");
    body = check_string_arg(L, "st.parse", 2, &n);
    if (call == ST_CALL_SEND)
        return parse_send(L, body, n);
    if (call == ST_CALL_STATUS) {
        st_status s;
        const char *id = lua_isnoneornil(L, 3) ? NULL
                                                : check_string_arg(L, "st.parse", 3, NULL);
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
    const char *text = check_string_arg(L, "st.segments", 1, &n);
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

/* ---- durable files (for the command line's campaign journal) ------------ */

#ifndef LUA_FILEHANDLE
#define LUA_FILEHANDLE "FILE*"
#endif

/* st._fdatasync(file): flushes a file opened with io.open and makes what
 * was written to it durable. Not part of the API: the campaign journal's
 * "started" record must be on disk before a request leaves, and Lua has no
 * fsync of its own. Every Lua's file handle starts with its FILE *. */
static int l_fdatasync(lua_State *L) {
    FILE *f;
    int same = 0;
    if (lua_touserdata(L, 1) && lua_getmetatable(L, 1)) {
        luaL_getmetatable(L, LUA_FILEHANDLE);
        same = lua_rawequal(L, -1, -2);
        lua_pop(L, 2);
    }
    if (!same)
        return luaL_argerror(L, 1, "file expected");
    f = st_lua_open_file(L, 1);
    if (!f)
        return luaL_argerror(L, 1, "file is closed");
    if (fflush(f) != 0 || fdatasync(fileno(f)) != 0) {
        lua_pushnil(L);
        lua_pushstring(L, strerror(errno));
        return 2;
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* ---- module ------------------------------------------------------------- */

static const luaL_Reg module_functions[] = {
    {"new", lst_new},
    {"parse", l_parse},
    {"segments", l_segments},
    {"_fdatasync", l_fdatasync},
    {"_driven", lst_driven},
    {NULL, NULL},
};

static void push_errors_set(lua_State *L) {
    int code;
    lua_createtable(L, 0, ST_E_NOMEM - 1);
    for (code = 1; code < ST_E_NOMEM; code++) /* the API's codes only */
        set_string(L, st_code_name((st_code)code), st_code_name((st_code)code));
}

/* st._DEFAULTS: the option defaults st.new applies, for drivers written in
 * Lua (streamtelecom.driver), so that no figure is copied there. */
static void push_defaults(lua_State *L) {
    st_options o;
    st_options_defaults(&o);
    lua_createtable(L, 0, 6);
    set_number(L, "timeout", o.timeout);
    set_number(L, "connect_timeout", o.connect_timeout);
    set_integer(L, "retries", (double)o.retries);
    set_integer(L, "concurrency", (double)o.concurrency);
    set_integer(L, "max_response", (double)o.max_response);
    set_string(L, "url", o.url);
}

#if defined(_WIN32)
#define ST_EXPORT __declspec(dllexport)
#else
#define ST_EXPORT __attribute__((visibility("default")))
#endif
ST_EXPORT int luaopen_streamtelecom(lua_State *L);

ST_EXPORT int luaopen_streamtelecom(lua_State *L) {
    lst_register_client(L);
    luaL_newlib(L, module_functions);
    lst_register_http(L);
    lst_register_sys(L);
    set_string(L, "_VERSION", "streamtelecom " ST_VERSION);
    set_string(L, "DEFAULT_URL", ST_DEFAULT_URL);
    push_errors_set(L);
    lua_setfield(L, -2, "errors");
    push_defaults(L);
    lua_setfield(L, -2, "_DEFAULTS");
    return 1;
}
