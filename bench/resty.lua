-- make bench-openresty, second part: resty.streamtelecom against its floor.
--   sequential balance() vs a bare cosocket keep-alive GET loop, both inside
--   one nginx worker, to the same static server (bench/static-nginx): goal <= 1.15x;
--   and vs the blocking client's balance() in the same worker: goal < 1x
--   send_many of 200 sends at 50 ms gateway latency (the fake gateway) at
--   concurrency 20 vs the ideal 200 / 20 * 0.05 = 0.5 s: goal <= 1.1x
-- Prints one table (Markdown rows). BENCH_N sets the balance loop's length.
package.path = "./?.lua;" .. package.path
local socket = require("socket")
local fake = require("spec.fake")
local helper = require("spec.helper")

local N = tonumber(os.getenv("BENCH_N")) or 10000
local ROUNDS = tonumber(os.getenv("BENCH_ROUNDS")) or 11
local shell_quote, sh, capture = helper.shell_quote, helper.unsanitized, helper.capture

local ROOT
do
  local p = assert(io.popen("pwd -P"))
  ROOT = p:read("*l")
  p:close()
end

local CONF = [[
load_module "/usr/lib/nginx/modules/ndk_http_module.so";
load_module "/usr/lib/nginx/modules/ngx_http_lua_module.so";
@USER_LINE@
daemon on;
worker_processes 1;
pid "@DIR@/nginx.pid";
error_log "@DIR@/error.log" warn;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path "@DIR@/tmp";
    proxy_temp_path "@DIR@/tmp";
    fastcgi_temp_path "@DIR@/tmp";
    uwsgi_temp_path "@DIR@/tmp";
    scgi_temp_path "@DIR@/tmp";
    lua_package_path "@ROOT@/lua/?.lua;@ROOT@/bench/?.lua;;";
    lua_package_cpath "@ROOT@/build/luajit/?.so;;";
    lua_socket_log_errors off;
    server {
        listen 127.0.0.1:@PORT@;
        location = /resty { content_by_lua_block { require("resty_app").resty() } }
        location = /bare { content_by_lua_block { require("resty_app").bare() } }
        location = /blocking { content_by_lua_block { require("resty_app").blocking() } }
        location = /many { content_by_lua_block { require("resty_app").many() } }
    }
}
]]

local function port_free(p)
  local s = socket.tcp()
  local ok = s:connect("127.0.0.1", p)
  s:close()
  return not ok
end

local function answering(p)
  for _ = 1, 50 do
    if not port_free(p) then return true end
    socket.sleep(0.05)
  end
end

local function median(xs)
  table.sort(xs)
  return xs[math.ceil(#xs / 2)]
end

local function urlencode(s) return helper.urlencode(s) end

assert(os.execute(sh("make -s LUA_VERSION=jit all >/dev/null")), "make LUA_VERSION=jit failed")
fake.start()

local dir = ROOT .. "/build/bench-resty"
os.execute(sh("mkdir -p " .. shell_quote(dir .. "/static") .. " " .. shell_quote(dir .. "/tmp")))
local static_port, port
for _ = 1, 10 do
  local p = helper.listen_port(2)
  if port_free(p) and port_free(p + 1) then
    capture("bench/static-nginx start " .. p .. " " .. (p + 1) .. " " .. shell_quote(dir .. "/static"))
    if answering(p) then static_port = p break end
  end
end
assert(static_port, "could not start bench/static-nginx")
for _ = 1, 10 do
  local p = helper.listen_port(2)
  if port_free(p) then
    local f = assert(io.open(dir .. "/nginx.conf", "w"))
    f:write((CONF:gsub("@([%u_]+)@", { DIR = dir, ROOT = ROOT, PORT = tostring(p),
                                       USER_LINE = helper.nginx_user_line() })))
    f:close()
    capture("env -u LUA_PATH -u LUA_CPATH /usr/sbin/nginx -p " .. shell_quote(dir .. "/") .. " -c "
            .. shell_quote(dir .. "/nginx.conf") .. " -e " .. shell_quote(dir .. "/error.log"))
    if answering(p) then port = p break end
  end
end
assert(port, "could not start the bench nginx: see " .. dir .. "/error.log")

local function get(path)
  local s = assert(socket.connect("127.0.0.1", port))
  s:settimeout(300)
  s:send("GET " .. path .. " HTTP/1.0\r\nHost: x\r\n\r\n")
  local data = s:receive("*a")
  s:close()
  local status, body = data:match("^HTTP/1%.%d (%d+).-\r\n\r\n(.*)$")
  assert(status == "200", "bench nginx: " .. tostring(data))
  return tonumber(body)
end

local ok, err = pcall(function()
  local static = urlencode(("http://127.0.0.1:%d/get/"):format(static_port))
  -- Each round times the three loops back to back, in a rotating order;
  -- the ratios are taken within a round (so a slow spell of the machine
  -- slows both sides of a ratio) and their median is reported.
  local resty_t, bare_t, blocking_t, vs_bare, vs_blocking = {}, {}, {}, {}, {}
  local loops = { "/bare", "/resty", "/blocking" }
  for round = 1, ROUNDS do
    local t = {}
    for i = 0, 2 do
      local path = loops[(round + i) % 3 + 1]
      t[path] = get(path .. "?n=" .. N .. "&url=" .. static)
    end
    bare_t[round], resty_t[round], blocking_t[round] = t["/bare"], t["/resty"], t["/blocking"]
    vs_bare[round] = t["/resty"] / t["/bare"]
    vs_blocking[round] = t["/resty"] / t["/blocking"]
  end
  local r, b, k = median(resty_t), median(bare_t), median(blocking_t)
  local rb, rk = median(vs_bare), median(vs_blocking)
  fake.reset()
  fake.set{ latency = 0.05 }
  local many_t = {}
  for _ = 1, 3 do
    many_t[#many_t + 1] = get("/many?n=200&c=20&url=" .. urlencode(fake.url))
  end
  local m = median(many_t)
  print("| measure | resty.streamtelecom | reference | ratio | goal |")
  print("|---|---|---|---|---|")
  print(("| %d sequential balance() over HTTP vs a bare cosocket keep-alive GET loop "
         .. "(median of %d paired rounds) | %.3f s | %.3f s | %.2f× | ≤ 1.15× |")
        :format(N, ROUNDS, r, b, rb))
  print(("| %d sequential balance() over HTTP vs the blocking client in the same worker "
         .. "(median of %d paired rounds) | %.3f s | %.3f s | %.2f× | < 1× (faster) |")
        :format(N, ROUNDS, r, k, rk))
  print(("| send_many 200 × 50 ms at concurrency 20 vs the ideal (median of 3) | %.3f s | 0.500 s "
         .. "| %.2f× | ≤ 1.1× |"):format(m, m / 0.5))
end)
capture("bench/static-nginx stop " .. shell_quote(dir .. "/static"))
local pf = io.open(dir .. "/nginx.pid")
if pf then
  local pid = pf:read("*n")
  pf:close()
  if pid then os.execute("kill " .. pid) end
end
fake.stop()
if not ok then error(err, 0) end
