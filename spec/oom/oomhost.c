/* oomhost: a Lua interpreter whose allocator can be told to fail one
 * allocation, for the out-of-memory sweeps of spec/oom/sweep.lua.
 *
 *   oomhost script.lua [args...]
 *
 * Embeds PUC Lua 5.1, 5.2, 5.3 or 5.4 (whichever headers and library it is
 * built with) through lua_newstate(alloc, ud), opens the standard libraries,
 * adds a global table `oom` and runs the script with its arguments in `arg`
 * (arg[0] is the script). Modules load as usual through package.cpath, so
 * the program must export Lua's symbols (link with -Wl,-E when liblua is
 * static). The exit status is the script's first return value when it is
 * a number, 0 when it returns anything else, 1 when it raises.
 *
 *   oom.arm(n)     fail the n-th allocation from now (n >= 1; math.huge
 *                  only counts)
 *   oom.disarm()   stop counting and failing
 *   oom.failed()   true when the armed failure fired since the last arm
 *   oom.count()    allocations since the last arm (frozen by disarm)
 *
 * Only allocations that take memory count and can fail: a new block or a
 * block that grows. A free or a shrink always succeeds (the Lua manual
 * requires it). Lua 5.2 and later answer a failed allocation with an
 * emergency collection and then ask again for exactly the same block; that
 * repeated request fails too, so the n-th allocation point really fails
 * (Lua 5.1 raises at once). The repeat is not counted.
 *
 * With OOMHOST_BACKTRACE set in the environment, each failed allocation
 * prints the C stack that asked for it (glibc's backtrace).
 *
 * Built with -DOOMHOST_C_HEAP (glibc only; never under ASan or valgrind,
 * which replace malloc themselves), the same oom functions count and fail
 * the C heap's allocations instead: malloc, calloc and realloc called
 * from the streamtelecom module's own code (libcurl's, libc's and Lua's are
 * left alone), so that each allocation point of the core is failed once.
 * oom.heap is then "c". */
#define _GNU_SOURCE /* dl_iterate_phdr, for the C-heap build */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if defined(__GLIBC__) || defined(__linux__)
#include <execinfo.h>
#define HAVE_BACKTRACE 1
#endif

#include "lauxlib.h"
#include "lua.h"
#include "lualib.h"

#ifndef LUA_VERSION_NUM
#define LUA_VERSION_NUM 501
#endif

typedef struct oom_state {
    int armed;
    unsigned long target; /* the allocation (1-based) that fails */
    unsigned long count;  /* allocations since arm */
    int fired;
    /* the request that failed, to fail Lua's one retry of it as well */
    int retry_pending;
    void *retry_ptr;
    size_t retry_osize, retry_nsize;
} oom_state;

static oom_state oom;
static int show_backtrace; /* OOMHOST_BACKTRACE set: where each failure is */

static void where_it_failed(void) {
#ifdef HAVE_BACKTRACE
    void *frames[32];
    int n = backtrace(frames, 32);
    fprintf(stderr, "oomhost: allocation %lu fails here:\n", oom.count);
    backtrace_symbols_fd(frames, n, 2);
#endif
}

/* C modules are never unloaded: lua_close would dlclose them before
 * LeakSanitizer or valgrind print their leak reports at exit, and a report
 * whose frames point into an unloaded library names no function. The
 * program's own dlclose takes the place of libc's (the program exports its
 * symbols), for Lua and for every library it loaded. */
int dlclose(void *handle);
int dlclose(void *handle) {
    (void)handle;
    return 0;
}

#ifdef OOMHOST_C_HEAP
#include <link.h>
#include <stdint.h>

void *__libc_malloc(size_t n);
void *__libc_calloc(size_t n, size_t size);
void *__libc_realloc(void *p, size_t n);

/* The streamtelecom module's code, once loaded: [lo, hi). */
static uintptr_t module_lo, module_hi;

static int find_module(struct dl_phdr_info *info, size_t size, void *ud) {
    int i;
    (void)size, (void)ud;
    if (!info->dlpi_name || !strstr(info->dlpi_name, "streamtelecom"))
        return 0;
    for (i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X)) {
            module_lo = info->dlpi_addr + ph->p_vaddr;
            module_hi = module_lo + ph->p_memsz;
            return 1;
        }
    }
    return 0;
}

/* Whether the allocation asked from caller is the one to fail. */
static int c_heap_fails(void *caller) {
    uintptr_t pc = (uintptr_t)caller;
    if (!oom.armed || pc < module_lo || pc >= module_hi)
        return 0;
    if (++oom.count != oom.target)
        return 0;
    oom.fired = 1;
    if (show_backtrace)
        where_it_failed();
    return 1;
}

void *malloc(size_t n) {
    if (c_heap_fails(__builtin_return_address(0)))
        return NULL;
    return __libc_malloc(n);
}

void *calloc(size_t n, size_t size) {
    if (c_heap_fails(__builtin_return_address(0)))
        return NULL;
    return __libc_calloc(n, size);
}

void *realloc(void *p, size_t n) {
    if (n > 0 && c_heap_fails(__builtin_return_address(0)))
        return NULL;
    return __libc_realloc(p, n);
}
#endif

static void *oom_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
    (void)ud;
#ifdef OOMHOST_C_HEAP
    if (nsize == 0) {
        free(ptr);
        return NULL;
    }
    return __libc_realloc(ptr, nsize); /* Lua's own: never failed here */
#endif
    if (nsize == 0) {
        free(ptr);
        return NULL;
    }
    /* ptr == NULL: osize is a type tag (5.2+) or 0, not a size. */
    if (oom.armed && (ptr == NULL || nsize > osize)) {
        if (oom.retry_pending) {
            oom.retry_pending = 0;
            if (ptr == oom.retry_ptr && osize == oom.retry_osize &&
                nsize == oom.retry_nsize)
                return NULL; /* the same block asked for again: fail it */
        }
        oom.count++;
        if (oom.count == oom.target) {
            oom.fired = 1;
            if (show_backtrace)
                where_it_failed();
#if LUA_VERSION_NUM >= 502
            oom.retry_pending = 1;
            oom.retry_ptr = ptr;
            oom.retry_osize = osize;
            oom.retry_nsize = nsize;
#endif
            return NULL;
        }
    }
    return realloc(ptr, nsize);
}

static int l_arm(lua_State *L) {
    lua_Number n = luaL_checknumber(L, 1);
    luaL_argcheck(L, n >= 1, 1, "want a count >= 1");
    /* math.huge: count without ever failing */
    oom.target = n < (lua_Number)ULONG_MAX ? (unsigned long)n : ULONG_MAX;
    oom.count = 0;
    oom.fired = 0;
    oom.retry_pending = 0;
#ifdef OOMHOST_C_HEAP
    if (!module_hi)
        dl_iterate_phdr(find_module, NULL);
#endif
    oom.armed = 1;
    return 0;
}

static int l_disarm(lua_State *L) {
    (void)L;
    oom.armed = 0;
    oom.retry_pending = 0;
    return 0;
}

static int l_failed(lua_State *L) {
    lua_pushboolean(L, oom.fired);
    return 1;
}

static int l_count(lua_State *L) {
    lua_pushinteger(L, (lua_Integer)oom.count);
    return 1;
}

static void add_function(lua_State *L, const char *name, lua_CFunction f) {
    lua_pushcfunction(L, f);
    lua_setfield(L, -2, name);
}

static int traceback(lua_State *L) {
    const char *msg = lua_tostring(L, 1);
    lua_getglobal(L, "debug");
    if (!lua_istable(L, -1))
        return 1;
    lua_getfield(L, -1, "traceback");
    if (!lua_isfunction(L, -1))
        return 1;
    lua_pushstring(L, msg ? msg : "(error object is not a string)");
    lua_pushinteger(L, 2);
    lua_call(L, 2, 1);
    return 1;
}

static int panic(lua_State *L) {
    const char *msg = lua_tostring(L, -1);
    fprintf(stderr, "oomhost: PANIC: unprotected error: %s\n",
            msg ? msg : "(not a string)");
    fflush(stderr);
    abort();
    return 0;
}

/* Runs in protected mode: opens the libraries, sets up oom and arg, runs
 * the script; leaves the exit status as an integer. */
static int run(lua_State *L) {
    int argc = (int)lua_tointeger(L, 1);
    char **argv = (char **)lua_touserdata(L, 2);
    int i, base, status;
    luaL_openlibs(L);
    lua_newtable(L);
    add_function(L, "arm", l_arm);
    add_function(L, "disarm", l_disarm);
    add_function(L, "failed", l_failed);
    add_function(L, "count", l_count);
#ifdef OOMHOST_C_HEAP
    lua_pushliteral(L, "c");
#else
    lua_pushliteral(L, "lua");
#endif
    lua_setfield(L, -2, "heap");
    lua_setglobal(L, "oom");
    lua_newtable(L);
    for (i = 0; i + 1 < argc; i++) {
        lua_pushstring(L, argv[i + 1]);
        lua_rawseti(L, -2, i);
    }
    lua_setglobal(L, "arg");

    lua_pushcfunction(L, traceback);
    base = lua_gettop(L);
    if (luaL_loadfile(L, argv[1]) != 0) {
        fprintf(stderr, "oomhost: %s\n", lua_tostring(L, -1));
        lua_pushinteger(L, 1);
        return 1;
    }
    for (i = 2; i < argc; i++)
        lua_pushstring(L, argv[i]);
    status = lua_pcall(L, argc - 2, 1, base);
    if (status != 0) {
        fprintf(stderr, "oomhost: %s\n", lua_tostring(L, -1));
        lua_pushinteger(L, 1);
        return 1;
    }
    if (lua_type(L, -1) == LUA_TNUMBER)
        lua_pushinteger(L, lua_tointeger(L, -1));
    else
        lua_pushinteger(L, 0);
    return 1;
}

int main(int argc, char **argv) {
    lua_State *L;
    int status, code = 1;
    if (argc < 2) {
        fprintf(stderr, "usage: %s script.lua [args...]\n", argv[0]);
        return 2;
    }
    show_backtrace = getenv("OOMHOST_BACKTRACE") != NULL;
    L = lua_newstate(oom_alloc, NULL);
    if (!L) {
        fprintf(stderr, "oomhost: cannot create a Lua state\n");
        return 1;
    }
    lua_atpanic(L, panic);
    lua_pushcfunction(L, run);
    lua_pushinteger(L, argc);
    lua_pushlightuserdata(L, argv);
    status = lua_pcall(L, 2, 1, 0);
    oom.armed = 0;
    if (status != 0)
        fprintf(stderr, "oomhost: %s\n", lua_tostring(L, -1));
    else
        code = (int)lua_tointeger(L, -1);
    lua_close(L);
    fflush(stdout);
    return code;
}
