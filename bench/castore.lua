-- make bench's CA-store row, run in a process of its own: n clients of one
-- CA bundle (the system's, with the test server's certificate added), each
-- making its first HTTPS request and keeping its connection; what each
-- client after the first two adds, in memory (RSS) and CPU time.
--   lua bench/castore.lua URL BUNDLE N [USER]   prints kib=... ms=...
-- (the password comes from STREAM_TELECOM_PASSWORD, never the command line)
local st = require("streamtelecom")

local url, bundle, n, user = arg[1], arg[2], tonumber(arg[3]) or 20, arg[4] or "bench"
local password = os.getenv("STREAM_TELECOM_PASSWORD") or "bench-secret"

local function rss_kib()
  local f = assert(io.open("/proc/self/statm"))
  local _, resident = f:read("*n", "*n")
  f:close()
  return resident * 4
end

local clients = {}
local function new_client()
  local c = assert(st.new{ user = user, password = password, url = url, ca_file = bundle })
  assert(c:balance())
  clients[#clients + 1] = c
end

new_client()
new_client() -- libcurl's and OpenSSL's one-time set-up is behind us
collectgarbage()
collectgarbage()
local before, t0 = rss_kib(), os.clock()
for _ = 3, n do new_client() end
local cpu = os.clock() - t0
collectgarbage()
collectgarbage()
print(("kib=%.0f ms=%.2f"):format((rss_kib() - before) / (n - 2), cpu * 1000 / (n - 2)))
for _, c in ipairs(clients) do c:close() end
