/* A test-only Lua module: fork(), waitpid() and _exit(), for the spec
 * that shows what a client does in a forked child (spec/fork_spec.lua).
 * Debian's lua-posix does not cover Lua 5.4, so the spec builds this. */
#include <lauxlib.h>
#include <lua.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

static int l_fork(lua_State *L) {
    lua_pushinteger(L, (lua_Integer)fork());
    return 1;
}

/* The child's exit status, or -1 when it did not exit normally. */
static int l_wait(lua_State *L) {
    int status = 0;
    pid_t pid = (pid_t)luaL_checkinteger(L, 1);
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
        lua_pushinteger(L, -1);
    else
        lua_pushinteger(L, WEXITSTATUS(status));
    return 1;
}

/* Leaves at once: no atexit handlers, no Lua state closed, no buffered
 * output flushed twice. */
static int l_exit(lua_State *L) {
    _exit((int)luaL_optinteger(L, 1, 0));
    return 0;
}

int luaopen_forkmod(lua_State *L);
int luaopen_forkmod(lua_State *L) {
    lua_newtable(L);
    lua_pushcfunction(L, l_fork);
    lua_setfield(L, -2, "fork");
    lua_pushcfunction(L, l_wait);
    lua_setfield(L, -2, "wait");
    lua_pushcfunction(L, l_exit);
    lua_setfield(L, -2, "exit");
    return 1;
}
