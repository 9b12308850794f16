/* What the client's file (lua_client.c) shares with the run's (lua_run.c):
 * the callbacks' glue and the call boxes. Private to the bindings. */
#ifndef LUA_CLIENT_H
#define LUA_CLIENT_H

#include "lua_bind.h"

/* Room for what a method pushes before it calls user code, taken before
 * the call holds anything. */
#define METHOD_STACK 12

/* Lives on the C stack for one method call: the callback runs on the
 * lua_State of the call that triggered it (coroutines), never a kept one. */
typedef struct hook_ctx {
    lua_State *L;
    int ref;
    const st_exchange *info;
    int rate_ref;      /* rate_slot's registry ref */
    double interval;   /* rate_slot's argument, its answer */
} hook_ctx;

void call_on_request(void *ud, const st_exchange *info);
double call_rate_slot(void *ud, double interval);
lst_client *check_client(lua_State *L);
int client_is_open(const lst_client *u);
void free_client(lua_State *L, lst_client *u);
void default_senders(call_box *box, const char *sender);

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

void push_anchors(lua_State *L, int list, int as_keys);
void push_status_map(lua_State *L, const call_box *box);
void make_stream_state(lua_State *L, call_box *box, int items, int opts,
                       stream_ctx *sc);
int stream_on_start(void *ud, size_t item);
int stream_before_send(void *ud);
void stream_send_result(void *ud, size_t item, st_send_result *res);
void stream_status_result(void *ud, size_t i, const st_status *s,
                          const st_error *e);
int finish_stream(lua_State *L, call_box *box, stream_ctx *sc);
void read_stream_opts(lua_State *L, const char *method, int arg,
                      int with_start);

int lst_begin(lua_State *L);
void lst_register_run(lua_State *L);

#endif
