-- luacheck (Debian: lua-check) over every Lua file: `make lint`, run by CI.
-- The code runs on Lua 5.1-5.4 and LuaJIT, so "max" knows all their globals.
std = "max"
include_files = { "**/*.lua", "bin/streamtelecom", "*.rockspec", "config.ld", ".luacheckrc" }
exclude_files = { "build/**", "dist/**", ".git/**" }

-- Specs run under busted, which provides describe, it, assert and friends.
files["spec/**/*.lua"] = { std = "+busted" }
-- The capped-allocator host (spec/oom/oomhost.c) gives its script `oom`.
files["spec/oom/sweep.lua"] = { read_globals = { "oom" } }

-- nginx runs these with its Lua module, which provides the ngx table.
files["fakegw/**/*.lua"] = { globals = { "ngx" } }
files["examples/openresty/**/*.lua"] = { globals = { "ngx" } }
files["bench/**/*.lua"] = { read_globals = { "ngx" } }

-- Configuration files are Lua chunks that set globals.
files["*.rockspec"] = { allow_defined_top = true, ignore = { "131" }, max_line_length = false }
files["config.ld"] = { allow_defined_top = true, ignore = { "131" } }
files["scripts/luarocks-luajit.lua"] = { allow_defined_top = true, ignore = { "131" } }
files[".luacheckrc"] = { allow_defined_top = true, ignore = { "131" } }
-- resty.streamtelecom runs inside nginx's Lua module.
files["lua/resty/**/*.lua"] = { read_globals = { "ngx" } }
files["spec/resty/**/*.lua"] = { globals = { "ngx" } }

-- HAProxy runs these with its Lua, which provides the core table.
files["lua/streamtelecom/haproxy.lua"] = { read_globals = { "core" } }
files["examples/haproxy/**/*.lua"] = { read_globals = { "core" } }
files["spec/haproxy/**/*.lua"] = { read_globals = { "core" } }
