/* The C heap as glibc's malloc sees it, for bench/bulk.lua: how much is in
 * use (not what RSS says, which also counts freed pages malloc keeps), and
 * malloc_trim, which hands those pages back. Built by make bench only. */
#include <lauxlib.h>
#include <lua.h>
#include <malloc.h>

/* Bytes in use: in the heap and in blocks malloc mapped on its own. */
static int in_use(lua_State *L) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 33)
    struct mallinfo2 m = mallinfo2();
    lua_pushnumber(L, (lua_Number)(m.uordblks + m.hblkhd));
#else
    lua_pushnil(L);
#endif
    return 1;
}

static int trim(lua_State *L) {
#ifdef __GLIBC__
    malloc_trim(0);
#endif
    (void)L;
    return 0;
}

int luaopen_heap(lua_State *L);
int luaopen_heap(lua_State *L) {
    lua_newtable(L);
    lua_pushcfunction(L, in_use);
    lua_setfield(L, -2, "in_use");
    lua_pushcfunction(L, trim);
    lua_setfield(L, -2, "trim");
    return 1;
}
