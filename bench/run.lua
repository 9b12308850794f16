-- make bench: the figures behind the README's performance table, each a
-- ratio of two things measured in this same run on this same machine.
--   sequential balance() vs a C loop on one reused libcurl handle (HTTP, HTTPS)
--   the same vs a new connection per request with LuaSocket / LuaSec
--   send_many of 200 messages at 50 ms gateway latency vs the ideal and vs send
--   RSS over 100,000 requests on one client
-- Writes bench/results.md. BENCH_N sets the request count of the loops.
package.path = "./?.lua;" .. package.path
local st = require("streamtelecom")
local socket = require("socket")
local http = require("socket.http")
local https = require("ssl.https")
local ltn12 = require("ltn12")
local fake = require("spec.fake")

local N = tonumber(os.getenv("BENCH_N")) or 3000
local ROUNDS = 5
local BUILD = "build/bench"

local function run(cmd)
  local p = assert(io.popen(cmd))
  local out = p:read("*a")
  p:close()
  return out
end

local function median(xs)
  table.sort(xs)
  return xs[math.ceil(#xs / 2)]
end

local function timed(fn)
  local t0 = socket.gettime()
  fn()
  return socket.gettime() - t0
end

local function vm(field)
  for line in io.lines("/proc/self/status") do
    local kb = line:match("^" .. field .. ":%s+(%d+) kB")
    if kb then return tonumber(kb) * 1024 end
  end
end

local function mib(bytes) return string.format("%.1f MiB", bytes / 1048576) end

-- ---- servers -------------------------------------------------------------

-- A free pair of ports: try a few at random until nginx answers.
local static_dir = os.getenv("PWD") .. "/" .. BUILD .. "/static-nginx"
run("mkdir -p " .. static_dir)
math.randomseed(os.time())
local port
for _ = 1, 10 do
  port = math.random(20000, 60000)
  run(("bench/static-nginx start %d %d %s 2>&1"):format(port, port + 1, static_dir))
  local probe = socket.connect("127.0.0.1", port)
  if probe then probe:close() break end
  port = nil
end
assert(port, "could not start the static nginx: see " .. static_dir .. "/error.log")
local ca_file = static_dir .. "/cert.pem"
local static = {
  http = ("http://127.0.0.1:%d/get/"):format(port),
  https = ("https://localhost:%d/get/"):format(port + 1),
}
fake.start()

run("cc -O2 -o " .. BUILD .. "/curl_loop bench/curl_loop.c $(pkg-config --cflags --libs libcurl)")

local rows = {}
local function row(what, value, note)
  rows[#rows + 1] = { what, value, note or "" }
  print(("%-62s %12s  %s"):format(what, value, note or ""))
end

-- ---- sequential calls vs the raw libcurl loop ------------------------------

local function c_loop(url, n)
  local out = run(("%s/curl_loop '%s' %d %s"):format(BUILD, url .. "?user=u&pwd=p&balance=1", n,
                                                      ca_file))
  return assert(tonumber(out), "curl_loop failed: " .. out)
end

local function lua_loop(client, n)
  return timed(function()
    for _ = 1, n do assert(client:balance()) end
  end)
end

local per_request = {}
for _, proto in ipairs({ "http", "https" }) do
  local client = assert(st.new{ user = "bench", password = "bench-secret", url = static[proto], ca_file = ca_file })
  lua_loop(client, 200) -- warm: connection, TLS session
  local c_times, lua_times = {}, {}
  for _ = 1, ROUNDS do
    c_times[#c_times + 1] = c_loop(static[proto], N)
    lua_times[#lua_times + 1] = lua_loop(client, N)
  end
  local c_t, lua_t = median(c_times), median(lua_times)
  per_request[proto] = lua_t / N
  row(("sequential balance(), %s: client vs raw libcurl loop"):format(proto:upper()),
      ("%.2fx"):format(lua_t / c_t),
      ("%.3f ms vs %.3f ms a request"):format(lua_t / N * 1e3, c_t / N * 1e3))
  client:close()
end

-- ---- vs a new connection per request (the usual pure-Lua way) ---------------

local function luasocket_loop(n)
  return timed(function()
    for _ = 1, n do
      local body = {}
      local ok, code = http.request{ url = static.http .. "?user=u&pwd=p&balance=1",
                                     sink = ltn12.sink.table(body) }
      assert(ok and code == 200, "LuaSocket request failed")
    end
  end)
end

local function luasec_loop(n)
  return timed(function()
    for _ = 1, n do
      local body = {}
      local ok, code = https.request{ url = static.https .. "?user=u&pwd=p&balance=1",
                                      sink = ltn12.sink.table(body), cafile = ca_file,
                                      verify = "peer", protocol = "any" }
      assert(ok and code == 200, "LuaSec request failed: " .. tostring(code))
    end
  end)
end

local n_socket = math.min(N, 2000)
local t_socket = luasocket_loop(n_socket) / n_socket
row("sequential balance(), HTTP: LuaSocket new connection vs client",
    ("%.1fx"):format(t_socket / per_request.http),
    ("%.3f ms a request"):format(t_socket * 1e3))
local n_sec = math.min(N, 500)
local t_sec = luasec_loop(n_sec) / n_sec
row("sequential balance(), HTTPS: LuaSec new connection vs client",
    ("%.1fx"):format(t_sec / per_request.https),
    ("%.3f ms a request"):format(t_sec * 1e3))

-- ---- bulk sending at gateway latency ----------------------------------------

fake.reset()
fake.set{ latency = 0.05 }
local bulk = assert(st.new{ user = "rich", password = "p&ss=w%rd+?", sender = "MyShop",
                            url = fake.url, concurrency = 20 })
local items = {}
for i = 1, 200 do items[i] = { to = ("7903%07d"):format(i), text = "bench " .. i } end
local t_many = timed(function()
  local results = bulk:send_many(items)
  for i = 1, #items do assert(results[i][1].id, "send_many item failed") end
end)
local ideal = 200 / 20 * 0.05
row("send_many 200 x 50 ms latency at concurrency 20 vs ideal 0.5 s",
    ("%.2fx"):format(t_many / ideal), ("%.3f s (max in flight %d)"):format(t_many,
                                                                          fake.stats().max_in_flight))
fake.reset()
fake.set{ latency = 0.05 }
local t_seq = timed(function()
  for i = 1, #items do assert(bulk:send(items[i].to, items[i].text .. "s")) end
end)
row("sequential send() of the same 200 vs send_many",
    ("%.1fx"):format(t_seq / t_many), ("%.2f s"):format(t_seq))
bulk:close()
fake.reset()

-- ---- memory over 100,000 requests on one client -----------------------------

local mem_client = assert(st.new{ user = "bench", password = "bench-secret", url = static.http })
for _ = 1, 1000 do assert(mem_client:balance()) end
collectgarbage()
local rss0 = vm("VmRSS")
for i = 1, 100000 do
  assert(mem_client:balance())
  if i % 10000 == 0 then collectgarbage() end
end
collectgarbage()
local rss1, hwm = vm("VmRSS"), vm("VmHWM")
row("RSS growth over 100,000 requests on one client", mib(rss1 - rss0),
    ("%s -> %s, peak %s"):format(mib(rss0), mib(rss1), mib(hwm)))
mem_client:close()

-- ---- the report ------------------------------------------------------------

fake.stop()
run("bench/static-nginx stop " .. static_dir)

local out = assert(io.open("bench/results.md", "w"))
out:write("# Benchmark results\n\n")
out:write(("Measured by `make bench` on %s: %s cores, %s, %s, %d requests a loop, median of %d rounds.\n\n")
  :format(os.date("!%Y-%m-%d"), run("nproc"):gsub("%s+$", ""), _VERSION,
          (run("curl-config --version 2>/dev/null"):gsub("%s+$", "")), N, ROUNDS))
out:write("| what | ratio or figure | detail |\n|---|---|---|\n")
for _, r in ipairs(rows) do out:write(("| %s | %s | %s |\n"):format(r[1], r[2], r[3])) end
out:close()
print("wrote bench/results.md")
