/* HTTP/1.1 framing for socket drivers (docs/DRIVERS.md): the request bytes
 * for a URL (st_http_request.c) and an incremental response parser
 * (st_http_response.c). Lua only connects, sends and receives. */
#include <string.h>

#include "lua_bind.h"
#include "st_http.h"

#define PARSER_MT "streamtelecom.http_response"

/* st._http_request(url [, user_agent [, keep_alive]]) ->
 * { host =, port =, tls =, target = }, request bytes | nil, err */
static int l_http_request(lua_State *L) {
    size_t n;
    const char *url = check_string_arg(L, "st._http_request", 1, &n);
    const char *agent = lua_isnoneornil(L, 2)
                            ? NULL
                            : check_string_arg(L, "st._http_request", 2, NULL);
    int keep = lua_isnoneornil(L, 3) ? 1 : lua_toboolean(L, 3);
    st_http_target t = ST_HTTP_TARGET_INIT;
    call_box *box = box_push(L); /* owns both buffers while they are pushed */
    st_http_error e = st_http_target_parse(&t, url, n);
    if (e == ST_HTTP_OK)
        e = st_http_request(&box->url, &t, agent, keep);
    box->aux = t.target; /* the box frees it from here on */
    t.target = (st_buf)ST_BUF_INIT;
    if (e == ST_HTTP_OK && box->url.failed)
        e = ST_HTTP_E_NOMEM;
    if (e == ST_HTTP_E_NOMEM)
        return lst_nomem(L); /* the box is freed by its __gc */
    if (e != ST_HTTP_OK) {
        box_release(L, box);
        lua_pushnil(L);
        lua_pushstring(L, st_http_error_text(e));
        return 2;
    }
    lua_createtable(L, 0, 4);
    lua_pushstring(L, t.host);
    lua_setfield(L, -2, "host");
    lua_pushinteger(L, (lua_Integer)t.port);
    lua_setfield(L, -2, "port");
    lua_pushboolean(L, t.tls);
    lua_setfield(L, -2, "tls");
    lua_pushlstring(L, st_buf_str(&box->aux), box->aux.len);
    lua_setfield(L, -2, "target");
    lua_pushlstring(L, st_buf_str(&box->url), box->url.len);
    box_release(L, box);
    return 2;
}

st_http_response *lst_check_parser(lua_State *L, int arg) {
    return (st_http_response *)luaL_checkudata(L, arg, PARSER_MT);
}

static st_http_response *check_parser(lua_State *L) { /* a method's self */
    return (st_http_response *)lst_check_self(L, 1, PARSER_MT);
}

/* st._http_response(max_body) -> a parser */
static int l_http_response(lua_State *L) {
    lua_Integer max = luaL_checkinteger(L, 1);
    st_http_response *r;
    luaL_argcheck(L, max >= 0, 1, "want 0 or more bytes");
    r = (st_http_response *)lua_newuserdata(L, sizeof *r);
    st_http_response_init(r, (size_t)max);
    luaL_getmetatable(L, PARSER_MT);
    lua_setmetatable(L, -2);
    return 1;
}

static int push_progress(lua_State *L, st_http_response *r,
                         st_http_progress p) {
    if (p == ST_HTTP_MORE || p == ST_HTTP_DONE) {
        lua_pushstring(L, p == ST_HTTP_DONE ? "done" : "more");
        return 1;
    }
    if (r->error == ST_HTTP_E_NOMEM)
        return lst_nomem(L); /* no answer is malformed for want of memory */
    lua_pushnil(L);
    lua_pushstring(L, st_http_error_text(r->error));
    lua_pushstring(L, p == ST_HTTP_TOO_LARGE ? "too_large" : "malformed");
    return 3;
}

/* parser:feed(bytes) -> "more" | "done" | nil, err, kind; and the bytes
 * of this response it used (a pipelined rest is the caller's). */
static int parser_feed(lua_State *L) {
    st_http_response *r = check_parser(L);
    size_t n, used = 0;
    const char *data = luaL_checklstring(L, 2, &n);
    int pushed = push_progress(L, r, st_http_feed(r, data, n, &used));
    lua_pushinteger(L, (lua_Integer)used);
    return pushed + 1;
}

/* parser:finish() at the end of the stream -> "done" | nil, err, kind */
static int parser_finish(lua_State *L) {
    st_http_response *r = check_parser(L);
    return push_progress(L, r, st_http_finish(r));
}

static int parser_status(lua_State *L) {
    lua_pushinteger(L, check_parser(L)->status);
    return 1;
}

static int parser_body(lua_State *L) {
    st_http_response *r = check_parser(L);
    lua_pushlstring(L, st_buf_str(&r->body), r->body.len);
    return 1;
}

static int parser_keep(lua_State *L) {
    lua_pushboolean(L, check_parser(L)->keep);
    return 1;
}

/* parser:reset(): ready for the next response, its memory kept. */
static int parser_reset(lua_State *L) {
    st_http_response_reset(check_parser(L));
    return 0;
}

static int parser_gc(lua_State *L) {
    st_http_response_free(check_parser(L));
    return 0;
}

static const luaL_Reg parser_methods[] = {
    {"feed", parser_feed},     {"finish", parser_finish},
    {"status", parser_status}, {"body", parser_body},
    {"keep", parser_keep},     {"reset", parser_reset},
    {NULL, NULL},
};

void lst_register_http(lua_State *L) {
    static const luaL_Reg parser_meta[] = {{"__gc", parser_gc}, {NULL, NULL}};
    lst_new_class(L, PARSER_MT, parser_meta, parser_methods);
    lua_pushcfunction(L, l_http_request);
    lua_setfield(L, -2, "_http_request");
    lua_pushcfunction(L, l_http_response);
    lua_setfield(L, -2, "_http_response");
}
