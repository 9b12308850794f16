-- How free does a single nginx worker stay while SMS sends are in flight?
--
--   lua5.4 bench/openresty_modes.lua [--latency 0.3] [--inflight 8] [--seconds 5]
--                                    [--fast 4] [--modes idle,blocking,thread,resty]
--
-- Starts the fake gateway (fakegw/fakegw) with the given answer latency and
-- examples/openresty/nginx.conf (one worker, --inflight worker threads), then,
-- for each mode, keeps --inflight sends to /sms/<mode> in flight for --seconds
-- (a finished send is replaced at once) while --fast connections fetch /ping
-- one after another, and prints the fast answers per second next to the sends
-- completed. "idle" is /ping with no sends at all. Numbers are for comparing
-- the modes within one run on one machine, nothing more.
-- Needs LuaSocket and lua-cjson; builds the LuaJIT module (make LUA_VERSION=jit).

package.path = "./?.lua;" .. package.path
local socket = require("socket")
local http = require("socket.http")
local cjson = require("cjson")
local helper = require("spec.helper")

local opts = { latency = 0.3, inflight = 8, seconds = 5, fast = 4,
               modes = "idle,blocking,thread,resty" }
do
  local i = 1
  while arg[i] do
    local k = arg[i]:match("^%-%-(.+)$")
    if not k or opts[k] == nil or not arg[i + 1] then
      io.stderr:write("usage: lua5.4 bench/openresty_modes.lua [--latency S] [--inflight K]",
                      " [--seconds T] [--fast F] [--modes idle,blocking,thread,resty]\n")
      os.exit(2)
    end
    opts[k] = type(opts[k]) == "number" and assert(tonumber(arg[i + 1]), k) or arg[i + 1]
    i = i + 2
  end
end

local shell_quote, sh, capture = helper.shell_quote, helper.unsanitized, helper.capture

local ROOT
do
  local src = debug.getinfo(1, "S").source:sub(2)
  local dir = src:match("^(.*)/bench/[^/]*$") or "."
  local p = assert(io.popen("cd " .. shell_quote(dir) .. " && pwd -P"))
  ROOT = p:read("*l")
  p:close()
end

local seed = (os.time() + math.floor(socket.gettime() * 1000)) % 100000
local function free_port(base)
  for p = base, base + 2000, 7 do
    local s = socket.tcp()
    local ok = s:connect("127.0.0.1", p)
    s:close()
    if not ok then
      local s2 = socket.tcp()
      local ok2 = s2:connect("127.0.0.1", p + 1)
      s2:close()
      if not ok2 then return p end
    end
  end
  error("no free port")
end

local TMP = os.getenv("TMPDIR") or "/tmp"
local gw = { dir = TMP .. "/streamtelecom-bench-fakegw-" .. seed }
local ng = { dir = TMP .. "/streamtelecom-bench-openresty-" .. seed }

local function cleanup()
  if ng.started then
    os.execute(sh(shell_quote(ROOT .. "/examples/openresty/run") .. " stop --dir "
                  .. shell_quote(ng.dir) .. " >/dev/null 2>&1"))
  end
  if gw.started then
    os.execute(sh(shell_quote(ROOT .. "/fakegw/fakegw") .. " stop --dir "
                  .. shell_quote(gw.dir) .. " >/dev/null 2>&1"))
  end
  os.execute(sh("rm -rf " .. shell_quote(ng.dir) .. " " .. shell_quote(gw.dir)))
end

local function control(path)
  local body, code = http.request(gw.base .. "/_fake/" .. path)
  assert(code == 200, "fake control " .. path .. ": " .. tostring(code))
  return cjson.decode(body)
end

-- Starts a daemon on a free port, a few ports tried: answers its output.
local function start_on(try)
  local last
  for n = 1, 8 do
    local port = free_port(30000 + (seed * 37 + n * 1013) % 30000)
    local out = try(port)
    if out:match("pid=%d+") then return port, out end
    last = out
  end
  error("could not start: " .. tostring(last))
end

local function setup()
  local log = capture("make -s -C " .. shell_quote(ROOT) .. " LUA_VERSION=jit all")
  assert(io.open(ROOT .. "/build/luajit/streamtelecom.so"), "LuaJIT build failed: " .. log)

  local out
  gw.started = true
  gw.port, out = start_on(function(port)
    return capture(shell_quote(ROOT .. "/fakegw/fakegw") .. " start --port " .. port
                   .. " --dir " .. shell_quote(gw.dir))
  end)
  gw.url = out:match("url=(%S+)")
  gw.base = "http://127.0.0.1:" .. gw.port
  control("set?latency=" .. opts.latency)
  control("balance?user=test&value=100000000")

  ng.started = true
  ng.port = start_on(function(port)
    return capture(("env STREAM_TELECOM_URL=%s STREAM_TELECOM_USER=test"
                    .. " STREAM_TELECOM_PASSWORD=secret STREAM_TELECOM_SENDER=MyShop"
                    .. " %s start --port %d --dir %s --threads %d --vm-pool %d")
                   :format(shell_quote(gw.url), shell_quote(ROOT .. "/examples/openresty/run"),
                           port, shell_quote(ng.dir), opts.inflight, opts.inflight + 4))
  end)
end

-- One HTTP/1.0 request on its own connection, read without blocking.
local function open(path)
  local s = socket.tcp()
  s:settimeout(5)
  assert(s:connect("127.0.0.1", ng.port))
  assert(s:send("GET " .. path .. " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"))
  s:settimeout(0)
  return s
end

local counter = 0
local function send_path(mode)
  counter = counter + 1
  return "/sms/" .. mode .. "?to=79031234567&text=Bench%20" .. counter
end

local function run_mode(mode)
  local conns = {}   -- socket -> { kind, buf }
  local list = {}
  local function add(kind)
    local s = open(kind == "fast" and "/ping" or send_path(mode))
    conns[s] = { kind = kind, buf = {} }
    list[#list + 1] = s
  end
  if mode ~= "idle" then for _ = 1, opts.inflight do add("send") end end
  for _ = 1, opts.fast do add("fast") end

  local pings, sends, failed = 0, 0, 0
  local started = socket.gettime()
  local deadline = started + opts.seconds
  while socket.gettime() < deadline do
    local readable = socket.select(list, nil, 0.05)
    for _, s in ipairs(readable) do
      local c = conns[s]
      local data, err, partial = s:receive("*a")
      local chunk = data or partial
      if chunk and chunk ~= "" then c.buf[#c.buf + 1] = chunk end
      if data or err == "closed" then
        s:close()
        conns[s] = nil
        for i, x in ipairs(list) do if x == s then table.remove(list, i) break end end
        local answer = table.concat(c.buf)
        if socket.gettime() <= deadline then
          if c.kind == "fast" then
            if answer:match("\r\n\r\npong") then pings = pings + 1 else failed = failed + 1 end
          else
            if answer:match('"ok":true') then sends = sends + 1 else failed = failed + 1 end
          end
        end
        add(c.kind)
      end
    end
  end
  local elapsed = socket.gettime() - started
  for s in pairs(conns) do s:close() end
  -- Let the gateway finish what was cut off before the next mode starts.
  local t = socket.gettime()
  while control("stats").in_flight > 0 and socket.gettime() - t < 10 do socket.sleep(0.05) end
  return { mode = mode, pings = pings / elapsed, sends = sends / elapsed, failed = failed,
           max_in_flight = control("stats").max_in_flight }
end

local ok, err = pcall(function()
  setup()
  print(("gateway latency %.3f s, %d sends kept in flight, %d fast connections, %g s per mode")
        :format(opts.latency, opts.inflight, opts.fast, opts.seconds))
  print(("%-9s %12s %10s %14s %8s"):format("mode", "/ping per s", "sends/s", "gw in flight", "failed"))
  local results = {}
  for mode in opts.modes:gmatch("[^,]+") do
    control("reset?what=stats")
    local r = run_mode(mode)
    results[#results + 1] = r
    print(("%-9s %12.0f %10.1f %14d %8d"):format(r.mode, r.pings, r.sends, r.max_in_flight, r.failed))
    io.stdout:flush()
  end
  local idle
  for _, r in ipairs(results) do if r.mode == "idle" then idle = r.pings end end
  if idle and idle > 0 then
    io.write("/ping rate relative to idle:")
    for _, r in ipairs(results) do io.write((" %s %.3f"):format(r.mode, r.pings / idle)) end
    io.write("\n")
  end
end)
cleanup()
if not ok then
  io.stderr:write("bench failed: ", tostring(err), "\n")
  os.exit(1)
end
