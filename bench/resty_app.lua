-- The nginx side of bench/resty.lua: each location times a loop inside the
-- worker and answers the seconds it took.
--   /resty?url=&n=   n sequential client:balance() on one resty.streamtelecom client
--   /bare?url=&n=    n keep-alive GETs on a bare cosocket, no library at all
--   /blocking?url=&n= n sequential balance() on the blocking client (libcurl)
--   /many?url=&n=&c= one send_many of n items at concurrency c
--   /bulk?url=&n=&c=&call= send_many or status_many of n items at concurrency c
--   /pool?url=&n=&c= the same n GETs on a bare pool of c ngx.threads
--   /resty_http?url=&n= n sequential request_uri of lua-resty-http (when found)
-- Each answers "wall cpu": seconds of wall-clock time and of the worker's CPU
-- time (user + system, clock_gettime(CLOCK_PROCESS_CPUTIME_ID) through
-- LuaJIT's FFI: the worker is one thread) spent in the loop.
local st = require "resty.streamtelecom"
local ffi = require "ffi"

pcall(ffi.cdef, "typedef struct { long tv_sec; long tv_nsec; } bench_timespec;")
pcall(ffi.cdef, "int clock_gettime(int clock, void *tp);")
local CLOCK_PROCESS_CPUTIME_ID = 2
local clock_gettime = ffi.cast("int (*)(int, bench_timespec *)", ffi.C.clock_gettime)
local ts = ffi.new("bench_timespec")

local M = {}

local function clock()
  ngx.update_time()
  return ngx.now()
end

local function cpu()
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, ts)
  return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) / 1e9
end

-- Runs fn() and says "wall cpu".
local function timed(fn)
  local t0, c0 = clock(), cpu()
  fn()
  local c1 = cpu()
  ngx.say(clock() - t0, " ", c1 - c0)
end

local function arg(name) return ngx.var["arg_" .. name] end

function M.resty()
  local n = tonumber(arg("n"))
  local client = assert(st.new{ user = "bench", password = "bench-secret", url = ngx.unescape_uri(arg("url")) })
  assert(client:balance()) -- the connection is made before the clock starts
  timed(function() for _ = 1, n do assert(client:balance()) end end)
end

-- The blocking client (libcurl) in the same worker: it holds the worker
-- for each request, but how long does one take?
function M.blocking()
  local n = tonumber(arg("n"))
  local client = assert(require("streamtelecom").new{ user = "bench", password = "bench-secret",
                                                      url = ngx.unescape_uri(arg("url")) })
  assert(client:balance())
  timed(function() for _ = 1, n do assert(client:balance()) end end)
  client:close()
end

-- What any cosocket client must do at least: the same request line and
-- headers, the status line, the headers, a Content-Length body, keep-alive.
local function bare_get(host, port, request, pool_size)
  local sock = ngx.socket.tcp()
  sock:settimeouts(5000, 15000, 15000)
  assert(sock:connect(host, port))
  assert(sock:send(request))
  local line = assert(sock:receive("*l"))
  assert(line:find(" 200 ", 1, true))
  local length
  repeat
    line = assert(sock:receive("*l"))
    local v = line:match("^[Cc]ontent%-[Ll]ength:%s*(%d+)")
    if v then length = tonumber(v) end
  until line == ""
  assert(sock:receive(length))
  sock:setkeepalive(60000, pool_size)
end

local function target()
  local host, port, path = ngx.unescape_uri(arg("url")):match("^http://([^/:]+):(%d+)(/.*)$")
  return host, tonumber(port), path
end

local function bare_request(host, port, path, query)
  return "GET " .. path .. "?" .. query .. " HTTP/1.1\r\nHost: " .. host .. ":" .. port
         .. "\r\nUser-Agent: bare\r\nConnection: keep-alive\r\n\r\n"
end

function M.bare()
  local n = tonumber(arg("n"))
  local host, port, path = target()
  local request = bare_request(host, port, path, "user=bench&pwd=bench-secret&balance=1")
  bare_get(host, port, request, 30)
  timed(function() for _ = 1, n do bare_get(host, port, request, 30) end end)
end

-- The floor of a bulk call: c ngx.threads, each taking the next item until
-- none is left, one keep-alive GET per item (a status request, as
-- status_many's), its request built as it is sent, as any client must.
function M.pool()
  local n, c = tonumber(arg("n")), tonumber(arg("c"))
  local host, port, path = target()
  local ids = {}
  for i = 1, n do ids[i] = tostring(1000000 + i) end
  timed(function()
    local next_item = 0
    local function worker()
      while next_item < n do
        next_item = next_item + 1
        bare_get(host, port, bare_request(host, port, path, "user=bench&pwd=bench-secret&smsid="
                                          .. ids[next_item]), c)
      end
    end
    local threads = {}
    for i = 1, c do threads[i] = ngx.thread.spawn(worker) end
    for i = 1, c do ngx.thread.wait(threads[i]) end
  end)
end

function M.bulk()
  local n, c, call = tonumber(arg("n")), tonumber(arg("c")), arg("call")
  local client = assert(st.new{ user = "bench", password = "bench-secret", sender = "MyShop",
                                url = ngx.unescape_uri(arg("url")), concurrency = c,
                                pool_size = c })
  local items = {}
  for i = 1, n do
    items[i] = call == "send_many" and { to = ("7903%07d"):format(i), text = "Bench " .. i }
               or tostring(1000000 + i)
  end
  timed(function()
    local res = assert(client[call](client, items))
    if call == "send_many" then
      for i = 1, n do assert(res[i][1] and res[i][1].id, "item " .. i .. " failed") end
    end
  end)
  client:close()
end

-- lua-resty-http's request_uri (a new request object per call, its own
-- keep-alive), when bench/resty.lua found it.
function M.resty_http()
  local n = tonumber(arg("n"))
  local http = require "resty.http"
  local url = ngx.unescape_uri(arg("url")) .. "?user=bench&pwd=bench-secret&balance=1"
  local function once()
    local res = assert(http.new():request_uri(url, { keepalive_timeout = 60000, keepalive_pool = 30 }))
    assert(res.status == 200)
  end
  once()
  timed(function() for _ = 1, n do once() end end)
end

function M.many()
  local n, c = tonumber(arg("n")), tonumber(arg("c"))
  -- The fake's "rich" account: 200 sends would empty the "test" balance.
  local client = assert(st.new{ user = "rich", password = "p&ss=w%rd+?", sender = "MyShop",
                                url = ngx.unescape_uri(arg("url")), concurrency = c })
  local items = {}
  for i = 1, n do items[i] = { to = ("7903%07d"):format(i), text = "Bench " .. i } end
  local t0 = clock()
  local res = client:send_many(items)
  local elapsed = clock() - t0
  for i = 1, n do
    assert(res[i][1] and res[i][1].id, "item " .. i .. " failed: " .. tostring(res[i].err))
  end
  ngx.say(elapsed)
end

return M
