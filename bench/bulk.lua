-- One send_many in a process of its own, so that its memory figures are its
-- alone: make bench runs it once a measurement against the fake gateway.
--   lua bench/bulk.lua URL N CONCURRENCY [first]
-- With `first` the call is stopped at its first result (on_result raises)
-- and only call and first_start are printed: a short run for timing.
-- Prints key=value lines: call (the wall clock, socket.gettime(), just
-- before send_many), first_start (seconds from the call to on_start(1)),
-- seconds (the whole call), failed (items without an id), rss_before,
-- hwm_after and rss_after (bytes: VmRSS before the call, VmHWM after it,
-- VmRSS after the results are dropped and collected), rss_closed (VmRSS
-- after client:close() as well). With make bench's build/bench/heap.so
-- also heap_before, heap_after and heap_closed (C heap bytes in use, which
-- RSS is not: malloc keeps pages it was given back) and rss_trimmed (VmRSS
-- after the close and malloc_trim(0), which returns those pages).
local st = require("streamtelecom")
local socket = require("socket")
package.cpath = "build/bench/?.so;" .. package.cpath
local has_heap, heap = pcall(require, "heap")
if not has_heap then heap = { in_use = function() end, trim = function() end } end

local url, n, concurrency, first_only = arg[1], tonumber(arg[2]), tonumber(arg[3]),
                                         arg[4] == "first"

local function vm(field)
  for line in io.lines("/proc/self/status") do
    local kb = line:match("^" .. field .. ":%s+(%d+) kB")
    if kb then return tonumber(kb) * 1024 end
  end
end

local function make_items(count)
  local items = {}
  for i = 1, count do items[i] = { to = ("7903%07d"):format(i), text = "bench " .. i } end
  return items
end

local function count_failed(results)
  local failed = 0
  for i = 1, #results do
    if not (results[i][1] and results[i][1].id) then failed = failed + 1 end
  end
  return failed
end

-- The call itself; its results are dropped on return, for rss_after.
local function measure(client, items, out)
  local first_start
  local function on_start(i)
    if i == 1 then first_start = socket.gettime() end
  end
  out.call = socket.gettime()
  local results = assert(client:send_many(items, { on_start = on_start }))
  out.seconds = socket.gettime() - out.call
  out.first_start = first_start - out.call
  out.hwm_after = vm("VmHWM")
  out.failed = count_failed(results)
end

-- The call until its first result, then stopped: when it began, and when
-- on_start(1) ran.
local function measure_first(client, items)
  local out, stopped = {}, false
  local function on_start(i)
    if i == 1 then out.first_start = socket.gettime() - out.call end
  end
  local function on_result()
    if not stopped then stopped = true; error("first result") end
  end
  out.call = socket.gettime()
  assert(not pcall(client.send_many, client, items,
                   { on_start = on_start, on_result = on_result }))
  return out
end

local client = assert(st.new{ user = "rich", password = "p&ss=w%rd+?", sender = "MyShop",
                              url = url, concurrency = concurrency })
local items = make_items(n)
collectgarbage()
if first_only then
  for k, v in pairs(measure_first(client, items)) do print(("%s=%.17g"):format(k, v)) end
  return
end
local out = { rss_before = vm("VmRSS"), heap_before = heap.in_use() }
measure(client, items, out)
collectgarbage()
collectgarbage()
out.rss_after = vm("VmRSS")
out.heap_after = heap.in_use()
client:close()
collectgarbage()
out.rss_closed = vm("VmRSS")
out.heap_closed = heap.in_use()
heap.trim()
out.rss_trimmed = has_heap and vm("VmRSS") or nil

for k, v in pairs(out) do print(("%s=%.17g"):format(k, v)) end
