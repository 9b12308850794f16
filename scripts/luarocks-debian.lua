-- A LuaRocks configuration for building the rock offline on Debian: the
-- command line's dependencies come from Debian's packages (lua-argparse,
-- lua-cjson), which LuaRocks does not see in its trees; this tells it they
-- are there, so that it neither downloads them nor refuses the rock:
--   LUAROCKS_CONFIG=scripts/luarocks-debian.lua luarocks --lua-version 5.4 --local make
rocks_provided = { argparse = "0.7.1-1", ["lua-cjson"] = "2.1.0-1" }
