rockspec_format = "3.0"
package = "streamtelecom"
version = "0.1.0-1"
-- The release archive `make dist` writes. dist/streamtelecom-0.1.0-1.src.rock
-- carries it beside this file, so `luarocks install` of that rock needs no
-- network; `luarocks make` in a checkout builds the checkout and ignores it.
-- Once the archive has a public address, put that address here (RELEASING.md).
source = {
  url = "streamtelecom-0.1.0.tar.gz",
  dir = "streamtelecom-0.1.0",
}
description = {
  summary = "Send SMS through the Stream Telecom gateway, on libcurl",
  detailed = [[
A C module for Lua 5.1-5.4 and LuaJIT (OpenResty): a client object that sends
SMS, reads delivery status and the balance through the Stream Telecom HTTP GET
gateway, over one reused libcurl connection, with HTTPS verification on,
redirects never followed and the password kept out of every message.
]],
  license = "MIT",
  labels = { "sms", "libcurl", "openresty" },
}
-- argparse and lua-cjson: the command line's campaign commands (Debian:
-- lua-argparse, lua-cjson; OpenResty bundles cjson). Debian's packages are
-- not in luarocks' trees: offline builds against them pass --deps-mode=none.
dependencies = {
  "lua >= 5.1, < 5.5",
  "argparse",
  "lua-cjson",
}
external_dependencies = {
  CURL = { library = "curl" },
}
build = {
  type = "builtin",
  -- Every module the rock installs. The C sources are every src/*.c, with
  -- src/check_curl_headers.c first: it stops a build without libcurl's
  -- headers with a sentence saying what to install (spec/packaging_spec.lua
  -- checks that this list matches src/). Pure-Lua modules are one line each;
  -- the non-blocking clients are Lua modules, one line each below.
  modules = {
    streamtelecom = {
      sources = {
        "src/check_curl_headers.c",
        "src/lua_args.c",
        "src/lua_client.c",
        "src/lua_http.c",
        "src/lua_rows.c",
        "src/lua_run.c",
        "src/lua_stream.c",
        "src/lua_streamtelecom.c",
        "src/lua_sys.c",
        "src/st_buf.c",
        "src/st_castore.c",
        "src/st_client.c",
        "src/st_clock.c",
        "src/st_csv.c",
        "src/st_curl_url.c",
        "src/st_driver_curl.c",
        "src/st_engine.c",
        "src/st_error.c",
        "src/st_http_request.c",
        "src/st_http_response.c",
        "src/st_options.c",
        "src/st_parse.c",
        "src/st_request.c",
        "src/st_segments.c",
        "src/st_send.c",
        "src/st_status.c",
        "src/st_sys.c",
        "src/st_text.c",
        "src/st_transport.c",
        "src/st_validate.c",
        "src/st_wait.c",
      },
      defines = { "_POSIX_C_SOURCE=200809L" },
      incdirs = { "$(CURL_INCDIR)" },
      libdirs = { "$(CURL_LIBDIR)" },
      libraries = { "curl", "pthread", "dl" },
    },
    ["streamtelecom.campaign"] = "lua/streamtelecom/campaign.lua",
    ["streamtelecom.campaign.input"] = "lua/streamtelecom/campaign/input.lua",
    ["streamtelecom.campaign.journal"] = "lua/streamtelecom/campaign/journal.lua",
    ["streamtelecom.campaign.runner"] = "lua/streamtelecom/campaign/runner.lua",
    ["streamtelecom.campaign.report"] = "lua/streamtelecom/campaign/report.lua",
    ["resty.streamtelecom"] = "lua/resty/streamtelecom.lua",
    ["streamtelecom.haproxy"] = "lua/streamtelecom/haproxy.lua",
    ["streamtelecom.driver"] = "lua/streamtelecom/driver.lua",
  },
  install = {
    bin = {
      streamtelecom = "bin/streamtelecom",
    },
  },
  -- The guides and the reference's sources, in the rock's doc directory
  -- (`luarocks doc streamtelecom` lists them).
  copy_directories = { "docs" },
}
-- `luarocks test` in a checkout: the specs run against the fake gateway
-- (fakegw/: Debian's nginx and its lua module) with busted.
test_dependencies = {
  "busted",
}
test = {
  type = "busted",
}
