/* The few Lua 5.2+ API calls the bindings use, supplied for Lua 5.1.
 * LuaJIT 2.1 already has luaL_setfuncs (it defines luaL_newlib with it). */
#ifndef ST_COMPAT_H
#define ST_COMPAT_H

#include <lauxlib.h>
#include <lua.h>

#if LUA_VERSION_NUM < 502
#define lua_rawlen(L, i) lua_objlen(L, (i))
#ifndef luaL_newlib
static void luaL_setfuncs(lua_State *L, const luaL_Reg *l, int nup) {
    luaL_checkstack(L, nup + 1, "too many upvalues");
    for (; l->name; l++) {
        int i;
        for (i = 0; i < nup; i++)
            lua_pushvalue(L, -nup);
        lua_pushcclosure(L, l->func, nup);
        lua_setfield(L, -(nup + 2), l->name);
    }
    lua_pop(L, nup);
}
#define luaL_newlib(L, l) (lua_newtable(L), luaL_setfuncs(L, (l), 0))
#endif
#endif

#endif
