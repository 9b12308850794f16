/* The few Lua 5.2+ API calls the bindings use, supplied for Lua 5.1.
 * LuaJIT 2.1 already has luaL_setfuncs (it defines luaL_newlib with it). */
#ifndef ST_COMPAT_H
#define ST_COMPAT_H

#include <lauxlib.h>
#include <lua.h>

#if LUA_VERSION_NUM < 502
#define lua_rawlen(L, i) lua_objlen(L, (i))
#ifndef luaL_newlib
static inline void luaL_setfuncs(lua_State *L, const luaL_Reg *l, int nup) {
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

/* The integer at idx; *is_int is 0 when it is no number, or a number with
 * a fraction or out of range (Lua 5.1 has no lua_tointegerx). Strings
 * convert as lua_tointegerx converts them on 5.3 and later. */
#if LUA_VERSION_NUM >= 503
#define st_lua_tointeger(L, idx, is_int) lua_tointegerx((L), (idx), (is_int))
#else
static inline lua_Integer st_lua_tointeger(lua_State *L, int idx,
                                           int *is_int) {
    lua_Number x = lua_tonumber(L, idx);
    *is_int = (lua_isnumber(L, idx) && x >= -9007199254740992.0 &&
               x <= 9007199254740992.0 && x == (lua_Number)(long long)x);
    return *is_int ? (lua_Integer)x : 0;
}
#endif

/* The FILE of an io library file handle at idx, or NULL once it is
 * closed: 5.2+ marks a closed luaL_Stream by a NULL closef (f stays set);
 * 5.1 and LuaJIT set the FILE * itself to NULL. */
#if LUA_VERSION_NUM >= 502
#define st_lua_open_file(L, idx)                                             \
    (((luaL_Stream *)lua_touserdata((L), (idx)))->closef                     \
         ? ((luaL_Stream *)lua_touserdata((L), (idx)))->f                    \
         : NULL)
#else
#define st_lua_open_file(L, idx) (*(FILE **)lua_touserdata((L), (idx)))
#endif

/* Calls f(L) with ud as its one argument, in protected mode, leaving
 * nothing on the stack on success and the error object on failure. Lua
 * 5.1 (LuaJIT too) has lua_cpcall, which makes f's closure inside the
 * protection; from 5.2 on a light C function allocates nothing. The caller
 * must have room for two values on the stack. */
#if LUA_VERSION_NUM < 502
#define st_lua_protected(L, f, ud) lua_cpcall((L), (f), (ud))
#else
static inline int st_lua_protected(lua_State *L, lua_CFunction f, void *ud) {
    lua_pushcfunction(L, f);
    lua_pushlightuserdata(L, ud);
    return lua_pcall(L, 1, 0, 0);
}
#endif

#endif
