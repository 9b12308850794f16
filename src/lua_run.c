/* A driven run (docs/DRIVERS.md): the object a driver steps, made by
 * core:_begin. It translates the engine's task API (st_engine.h): every
 * decision is the engine's; the run guards itself against its own
 * callbacks (busy) as a client does. */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lua_bind.h"
#include "st_http.h"

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
    release_client(L, run->owner);
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
int lst_begin(lua_State *L) {
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
    st_client_hold(u->core);
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

/* The core gave the send one outcome, a never-started one included. */
static int push_send_outcome(lua_State *L, const st_send_result *res) {
    if (res->accepted) {
        push_send_result(L, res);
        return 1;
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

void lst_register_run(lua_State *L) {
    lst_new_class(L, RUN_MT, run_meta, run_methods);
}
