-- A LuaRocks configuration that builds for LuaJIT (OpenResty) with Debian's
-- luarocks, which otherwise takes --lua-version 5.1 to mean lua5.1:
--   LUAROCKS_CONFIG=scripts/luarocks-luajit.lua luarocks --lua-version 5.1 --local make
-- Debian packages: luajit2 libluajit2-5.1-dev. Elsewhere, point the paths
-- at your LuaJIT (`pkg-config --variable=includedir luajit`). The
-- command line's dependencies are Debian's lua-argparse and lua-cjson
-- (see scripts/luarocks-debian.lua).
lua_interpreter = "luajit"
variables = {
  LUA_DIR = "/usr",
  LUA_BINDIR = "/usr/bin",
  LUA_INCDIR = "/usr/include/luajit-2.1",
}
rocks_provided = { argparse = "0.7.1-1", ["lua-cjson"] = "2.1.0-1" }
