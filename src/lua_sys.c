/* Private module functions for the command line's campaigns (st_sys.h):
 *   st._now()             seconds on a monotonic clock
 *   st._sleep(s)          sleeps s seconds
 *   st._append(path)      file | nil, err   (0600, O_NOFOLLOW, never truncated)
 *   st._signals(message)  SIGINT/SIGTERM into a flag; a second SIGINT prints
 *                         message and exits 130
 *   st._signal()          "SIGINT", "SIGTERM" or nil
 *   st._isatty(fd)        whether fd (0, 1 or 2) is a terminal
 *   st._utf8_prefix(s)    how many leading bytes of s are UTF-8 (#s: all)
 *   st._journal_line(n, to [, id])
 *                         row n's journal line, "started" (to) or "done" (to
 *                         and id), or nil when to or id is not a string that
 *                         stands in JSON as it is (the journal then encodes)
 * file:write(s), file:sync(), file:read() (the whole file), file:close();
 * file:lock()           true | nil, "busy", holder pid (0: unknown) | nil, err
 *                       (flock on the file itself: released with it, or when
 *                       the process dies, a kill -9 included).
 * Closed ones answer nil, "closed". Not part of the API. */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "lua_bind.h"
#include "st_clock.h"
#include "st_sys.h"
#include "st_text.h"

#define FILE_MT "streamtelecom.sysfile"

typedef struct sys_fd {
    int fd; /* -1 once closed */
} sys_fd;

/* A path: a string with no NUL byte (it would cut the name short). */
static const char *check_path(lua_State *L, const char *fn) {
    size_t len;
    const char *path = check_string_arg(L, fn, 1, &len);
    if (strlen(path) != len)
        arg_error(L, fn, 1, "path holds a NUL byte");
    return path;
}

static int push_errno(lua_State *L, int err) {
    lua_pushnil(L);
    lua_pushstring(L, strerror(err));
    return 2;
}

static int push_closed_fd(lua_State *L) {
    lua_pushnil(L);
    lua_pushliteral(L, "closed");
    return 2;
}

/* A new userdata of class mt holding fd, made before fd exists so that
 * running out of memory cannot leak it. */
static sys_fd *push_fd(lua_State *L, const char *mt) {
    sys_fd *p = (sys_fd *)lua_newuserdata(L, sizeof *p);
    p->fd = -1;
    luaL_getmetatable(L, mt);
    lua_setmetatable(L, -2);
    return p;
}

static int l_now(lua_State *L) {
    lua_pushnumber(L, st_now());
    return 1;
}

static int l_sleep(lua_State *L) {
    if (lua_type(L, 1) != LUA_TNUMBER)
        arg_error(L, "st._sleep", 1,
                  lua_pushfstring(L, "number expected, got %s",
                                  luaL_typename(L, 1)));
    st_sleep(lua_tonumber(L, 1));
    return 0;
}

static int l_append(lua_State *L) {
    const char *path = check_path(L, "st._append");
    sys_fd *p = push_fd(L, FILE_MT);
    p->fd = st_append_open(path);
    if (p->fd < 0)
        return push_errno(L, errno);
    return 1;
}

static int l_signals(lua_State *L) {
    size_t len;
    const char *message = check_string_arg(L, "st._signals", 1, &len);
    st_signals_catch(message);
    return 0;
}

static int l_signal(lua_State *L) {
    int sig = st_signal_caught();
    if (sig == SIGINT)
        lua_pushliteral(L, "SIGINT");
    else if (sig == SIGTERM)
        lua_pushliteral(L, "SIGTERM");
    else
        lua_pushnil(L);
    return 1;
}

/* The progress line's one question: no shell run for `test -t 2`. */
static int l_isatty(lua_State *L) {
    lua_Number fd;
    if (lua_type(L, 1) != LUA_TNUMBER)
        arg_error(L, "st._isatty", 1,
                  lua_pushfstring(L, "number expected, got %s",
                                  luaL_typename(L, 1)));
    fd = lua_tonumber(L, 1);
    if (!(fd == 0 || fd == 1 || fd == 2))
        arg_error(L, "st._isatty", 1, "want 0, 1 or 2");
    lua_pushboolean(L, isatty((int)fd));
    return 1;
}

/* A campaign file is checked whole in one pass: a Lua pattern walk of
 * every byte took longer than the rest of the scan. */
static int l_utf8_prefix(lua_State *L) {
    size_t len;
    const char *s = check_string_arg(L, "st._utf8_prefix", 1, &len);
    lua_pushinteger(L, (lua_Integer)st_utf8_valid_prefix(s, len));
    return 1;
}

/* Two journal records a row, written a few thousand times a second: Lua's
 * checks and concatenations took ~12,000 instructions a row. */
static const char *plain_arg(lua_State *L, int idx, size_t *len) {
    const char *s;
    if (lua_type(L, idx) != LUA_TSTRING)
        return NULL;
    s = lua_tolstring(L, idx, len);
    return st_json_plain(s, *len) ? s : NULL;
}

/* Appends "name":"value" (value known to be plain) at p. */
static char *put_field(char *p, const char *name, const char *v, size_t n) {
    size_t k = strlen(name);
    *p++ = '"';
    memcpy(p, name, k);
    p += k;
    memcpy(p, "\":\"", 3);
    p += 3;
    memcpy(p, v, n);
    p += n;
    *p++ = '"';
    return p;
}

/* Appends n in decimal at p. */
static char *put_integer(char *p, lua_Integer n) {
    char digits[24];
    int k = 0;
    unsigned long long u =
        n < 0 ? 0ULL - (unsigned long long)n : (unsigned long long)n;
    if (n < 0)
        *p++ = '-';
    do {
        digits[k++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    while (k)
        *p++ = digits[--k];
    return p;
}

/* The longest to and id written here; longer ones are cjson's. */
#define JOURNAL_VALUE_MAX 64

static int l_journal_line(lua_State *L) {
    char line[128 + 2 * JOURNAL_VALUE_MAX], *p = line;
    size_t to_len, id_len = 0;
    int is_int, done = !lua_isnoneornil(L, 3);
    lua_Integer n = st_lua_tointeger(L, 1, &is_int);
    const char *to = plain_arg(L, 2, &to_len);
    const char *id = done ? plain_arg(L, 3, &id_len) : "";
    const char *head;
    if (lua_type(L, 1) != LUA_TNUMBER || !is_int || !to || !id ||
        to_len > JOURNAL_VALUE_MAX || id_len > JOURNAL_VALUE_MAX)
        return 0;
    head = done ? "{\"t\":\"done\",\"row\":" : "{\"t\":\"started\",\"row\":";
    memcpy(p, head, strlen(head));
    p += strlen(head);
    p = put_integer(p, n);
    if (done) {
        memcpy(p, ",\"msgs\":[{", 10);
        p = put_field(p + 10, "to", to, to_len);
        *p++ = ',';
        p = put_field(p, "id", id, id_len);
        memcpy(p, "}]}", 3);
        p += 3;
    } else {
        *p++ = ',';
        p = put_field(p, "to", to, to_len);
        *p++ = '}';
    }
    lua_pushlstring(L, line, (size_t)(p - line));
    return 1;
}

/* ---- file and lock objects ---------------------------------------------- */

static int fd_close(lua_State *L, const char *mt) {
    sys_fd *p = (sys_fd *)lst_check_self(L, 1, mt);
    if (p->fd >= 0) {
        int rc = close(p->fd);
        int err = errno;
        p->fd = -1;
        /* Linux frees the descriptor even when close fails: never retry. */
        if (rc != 0 && err != EINTR)
            return push_errno(L, err);
    }
    lua_pushboolean(L, 1);
    return 1;
}

static int file_close(lua_State *L) { return fd_close(L, FILE_MT); }

static int file_write(lua_State *L) {
    sys_fd *p = (sys_fd *)lst_check_self(L, 1, FILE_MT);
    size_t len;
    const char *s = check_string_arg(L, "write", 2, &len);
    if (p->fd < 0)
        return push_closed_fd(L);
    if (st_write_all(p->fd, s, len) != 0)
        return push_errno(L, errno);
    lua_pushboolean(L, 1);
    return 1;
}

static int file_sync(lua_State *L) {
    sys_fd *p = (sys_fd *)lst_check_self(L, 1, FILE_MT);
    if (p->fd < 0)
        return push_closed_fd(L);
    if (st_sync(p->fd) != 0)
        return push_errno(L, errno);
    lua_pushboolean(L, 1);
    return 1;
}

static int file_lock(lua_State *L) {
    sys_fd *p = (sys_fd *)lst_check_self(L, 1, FILE_MT);
    long holder;
    int rc;
    if (p->fd < 0)
        return push_closed_fd(L);
    rc = st_lock_fd(p->fd, &holder);
    if (rc < 0)
        return push_errno(L, errno);
    if (rc > 0) {
        lua_pushnil(L);
        lua_pushliteral(L, "busy");
        lua_pushinteger(L, (lua_Integer)holder);
        return 3;
    }
    lua_pushboolean(L, 1);
    return 1;
}

static int file_read(lua_State *L) {
    sys_fd *p = (sys_fd *)lst_check_self(L, 1, FILE_MT);
    luaL_Buffer b;
    off_t off = 0;
    if (p->fd < 0)
        return push_closed_fd(L);
    luaL_buffinit(L, &b);
    for (;;) {
        char *space = luaL_prepbuffer(&b);
        ssize_t n = st_read_at(p->fd, space, LUAL_BUFFERSIZE, off);
        if (n < 0) {
            int err = errno;
            luaL_pushresult(&b);
            lua_pop(L, 1);
            return push_errno(L, err);
        }
        if (n == 0)
            break;
        luaL_addsize(&b, (size_t)n);
        off += n;
    }
    luaL_pushresult(&b);
    return 1;
}

static int file_tostring(lua_State *L) {
    sys_fd *p = (sys_fd *)lst_check_self(L, 1, FILE_MT);
    lua_pushstring(L, p->fd < 0 ? "streamtelecom file (closed)"
                                : "streamtelecom file");
    return 1;
}

static const luaL_Reg module_sys[] = {
    {"_now", l_now},         {"_sleep", l_sleep},
    {"_append", l_append},   {"_signals", l_signals},
    {"_signal", l_signal},   {"_isatty", l_isatty},
    {"_utf8_prefix", l_utf8_prefix}, {"_journal_line", l_journal_line},
    {"_csv_items", lst_csv_items},
    {NULL, NULL},
};

void lst_register_sys(lua_State *L) {
    static const luaL_Reg file_meta[] = {
        {"__gc", file_close}, {"__tostring", file_tostring}, {NULL, NULL}};
    static const luaL_Reg file_methods[] = {
        {"write", file_write}, {"sync", file_sync}, {"read", file_read},
        {"lock", file_lock},   {"close", file_close}, {NULL, NULL}};
    lst_new_class(L, FILE_MT, file_meta, file_methods);
    luaL_setfuncs(L, module_sys, 0);
}
