/* The glue of streamed results: a bulk call's on_start, on_result and
 * before_send run protected, their results kept in the call's state table
 * (blocking bulk calls in lua_client.c, driven runs in lua_run.c). */
#include <stddef.h>
#include <string.h>

#include "lua_bind.h"


/* A call's anchor table, made at its size: a list's strings are anchored
 * as values (send_many's items) or, deduplicated, as keys (ids). For
 * 50,000 items, growing it step by step and asking its length for each
 * cost 4 of the 115 million instructions before the first request. The
 * length is capped: it is not a promise. */
void push_anchors(lua_State *L, int list, int as_keys) {
    size_t n = lua_istable(L, list) ? lua_rawlen(L, list) : 0;
    int size = n < 1000000 ? (int)n : 1000000;
    lua_createtable(L, as_keys ? 0 : size, as_keys ? size : 0);
}

/* The map id -> record of the ids the box holds, at the stack top. */
void push_status_map(lua_State *L, const call_box *box) {
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



/* Builds the state table at the stack top and references it; box owns
 * the reference, so a raise later cannot leak it. */
void make_stream_state(lua_State *L, call_box *box, int items,
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

int stream_on_start(void *ud, size_t item) {
    stream_ctx *sc = ud;
    sc->what = GLUE_START;
    sc->item = item;
    return stream_glue(sc);
}

int stream_before_send(void *ud) {
    stream_ctx *sc = ud;
    sc->what = GLUE_BEFORE_SEND;
    return stream_glue(sc);
}

void stream_send_result(void *ud, size_t item, st_send_result *res) {
    stream_ctx *sc = ud;
    sc->what = GLUE_RESULT;
    sc->item = item;
    sc->res = res;
    stream_glue(sc);
}

void stream_status_result(void *ud, size_t i, const st_status *s,
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
int finish_stream(lua_State *L, call_box *box, stream_ctx *sc) {
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
void read_stream_opts(lua_State *L, const char *method, int arg,
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

