/* What the binding files share: the client userdata, the call box that owns
 * a call's C memory, argument readers and result pushers. Private to the
 * bindings (lua_*.c); the core never sees a Lua header.
 *
 * The rule every method follows: read, then copy, then act. Arguments are
 * read first, each value copied into C memory the call's box owns or
 * anchored on the call's own Lua stack, so a metamethod, a callback or a
 * finaliser that changes or drops the caller's tables cannot pull memory
 * from under the C code. Only then is the client checked (reading may run
 * user code that closes it) and the core called. */
#ifndef LUA_BIND_H
#define LUA_BIND_H

#include "compat.h"
#include "st_client.h"
#include "st_send.h"
#include "st_status.h"
#include "st_wait.h"
#include "st_segments.h"
#include "st_validate.h"
#include "st_parse.h"
#include "st_request.h"
#include "st_error.h"
#include "st_http.h"

#define CLIENT_MT "streamtelecom.client"
#define BOX_MT "streamtelecom.call"

typedef struct lst_client {
    st_client *core;   /* NULL once closed */
    int on_request;    /* registry ref of the callback, or LUA_NOREF */
    int rate_slot;     /* driven: registry ref of the shared rate's hook */
    int box_ref;       /* registry ref of its reusable call box (client_box) */
    int busy;          /* a core call is running: only its own callbacks run */
    int driven;        /* made by st._driven: no transport, runs only */
    void *spare_run;   /* the last closed run's record, for the next run */
    char shown[256];   /* what tostring() says; never holds the password */
    st_http_framer framer; /* driven runs' request bytes (next_request) */
} lst_client;

/* The C memory of one call. A userdata with __gc on the call's stack owns
 * it, so a Lua error anywhere (a raising metamethod, out of memory while
 * the results are pushed) leaks nothing: the collector frees what the call
 * could not. The call frees it itself on the way out, so memory comes back
 * at once. send() reuses one box a client keeps (busy while a call holds
 * it); the other calls push their own. */
typedef struct call_box {
    st_recipients recipients;  /* send, url, parse */
    st_send_result result;     /* send */
    st_send_item *items;       /* send_many: nitems of each */
    st_recipients *item_recipients;
    size_t nitems;
    const char **ids;          /* status_many, wait: distinct, anchored */
    st_status *statuses;
    st_error *errors;
    size_t nids;
    char (*answer_ids)[ST_ID_MAX + 1]; /* parse("send") */
    st_buf url;                /* url(); a driver's request bytes */
    st_buf aux;                /* a driver's request target */
    int ref;                   /* registry ref of the call's state table */
    int busy;                  /* a client's reusable box: a call holds it */
    int anchored;              /* values in the call's anchor table */
} call_box;

/* Pushes a new, empty box. */
call_box *box_push(lua_State *L);
/* Frees what the box holds; the box stays usable (and empty). */
void box_release(lua_State *L, call_box *box);
int box_gc(lua_State *L);

/* ---- errors and results ---- */
/* Out of memory, from the core or the bindings: Lua's memory error. */
int lst_nomem(lua_State *L);
const char *lst_code_name(lua_State *L, st_code code);
int push_failure(lua_State *L, const st_error *err);
int push_closed(lua_State *L);
/* Raises "bad argument #N to 'method' (why)" for the value at stack index
 * idx, N counted as the caller sees it: a method's client is not counted;
 * module functions are named "st.parse" and have no client. */
int arg_error(lua_State *L, const char *method, int idx, const char *why);
/* Raises unless the argument at arg is a table. */
void check_table_arg(lua_State *L, const char *method, int arg);
/* A Lua string argument, with no coercion from numbers (API.md). */
const char *check_string_arg(lua_State *L, const char *method, int arg,
                             size_t *len);

void set_string(lua_State *L, const char *key, const char *value);
void set_integer(lua_State *L, const char *key, double value);
void set_number(lua_State *L, const char *key, double value);

void push_send_result(lua_State *L, const st_send_result *res);
void push_status(lua_State *L, const char *id, const st_status *s);
void push_balance(lua_State *L, const st_balance *b);
void push_error_record(lua_State *L, const st_error *err);
void push_send_error_record(lua_State *L, const st_error *err, int sent);
/* nil, message, code, sent: a failed send's four values. */
int push_send_failure(lua_State *L, const st_error *err, int sent);

/* ---- argument readers ----
 * Each raises for a value of the wrong Lua type and answers -1 with err
 * (ST_E_INVALID) for a right-typed bad value. */

/* The recipients at arg (a string, a whole number, or a list of those,
 * read raw) copied into r. */
int read_recipients(lua_State *L, const char *method, int arg,
                    st_recipients *r, st_error *err);

/* send(to, text, opts) at arg, arg+1, arg+2: recipients into box, the text
 * and opts' strings left anchored on the stack. p->sender stays NULL when
 * opts gives none (the caller puts the client's default in). */
int read_send_args(lua_State *L, const char *method, int arg, call_box *box,
                   st_send_params *p, st_error *err);

/* Every item of the send_many list at arg into box; strings anchored in
 * the table at anchor. An item with a problem of any kind is invalid, and
 * err names it. */
int read_send_items(lua_State *L, int arg, int anchor, call_box *box,
                    st_error *err);

/* The distinct ids of the list at arg into box (statuses and errors sized
 * to match), anchored as keys of the table at anchor. */
int read_ids(lua_State *L, const char *method, int arg, int anchor,
             call_box *box, st_error *err);

/* A number field of the table at arg (nil or a table), def when absent. */
double number_field(lua_State *L, const char *method, int arg,
                    const char *key, double def);

/* The client class (lua_client.c). */
int lst_new(lua_State *L);
int lst_driven(lua_State *L);
void lst_register_client(lua_State *L);
/* st._http_request and st._http_response, into the module table at -1. */
void lst_register_http(lua_State *L);
/* st._now, _sleep, _lock, _append, _signals, _signal (lua_sys.c), into
 * the module table at -1. */
void lst_register_sys(lua_State *L);
/* Registers the metatable mtname: the metamethods meta, and methods (its
 * __index; NULL for none); each function gets the metatable as upvalue 1,
 * for lst_check_self. */
void lst_new_class(lua_State *L, const char *mtname, const luaL_Reg *meta,
                   const luaL_Reg *methods);
/* The userdata at idx, checked fast when its metatable is the calling C
 * function's first upvalue (methods are registered so), else as
 * luaL_checkudata checks it (raising its usual error). */
void *lst_check_self(lua_State *L, int idx, const char *mtname);
/* The response parser (st._http_response) at arg, or raises. */
struct st_http_response *lst_check_parser(lua_State *L, int arg);

/* ---- shared by lua_client.c, lua_run.c and lua_stream.c ---- */

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
/* client:_scan_rows (lua_rows.c): a campaign file's plain rows checked. */
int lst_scan_rows(lua_State *L);
/* st._csv_items (lua_rows.c): a campaign chunk's items from its file. */
int lst_csv_items(lua_State *L);
void free_client(lua_State *L, lst_client *u);
/* A call or driven run of u ended (st_client_release): when a close came
 * meanwhile, the core is freed and u's references with it. */
void release_client(lua_State *L, lst_client *u);
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
