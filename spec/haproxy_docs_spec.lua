-- docs/haproxy.md's configuration, as it stands in the page: the fenced
-- blocks whose first line is "# /etc/haproxy/haproxy.cfg" and
-- "-- /etc/haproxy/sms.lua" are written out unchanged and run in Debian's
-- haproxy (Lua 5.3 build) against the fake gateway over verified TLS. Only
-- the environment differs from a real install: the variables the
-- configuration reads (its presetenv lines) point at this checkout, free
-- loopback ports and the fake.

local fake = require("spec.fake")
local socket = require("socket")
local helper = require("spec.helper")

local shell_quote, sh, capture = helper.shell_quote, helper.unsanitized, helper.capture
local urlencode = helper.urlencode

local HAPROXY = "/usr/sbin/haproxy"
local PASSWORD = helper.RICH_PASSWORD
local PHONE = "79031234567"

local function abs_root()
  local p = assert(io.popen("cd " .. shell_quote(helper.repo_root()) .. " && pwd -P"))
  local dir = p:read("*l")
  p:close()
  return dir
end

local function read_file(path) return assert(helper.slurp(path), "cannot read " .. path) end
local write_file = helper.write_file

-- The fenced blocks of a Markdown text whose first line is `marker`.
local function blocks_marked(md, marker)
  local found = {}
  for body in md:gmatch("\n```[%w]*\n(.-)\n```") do
    if body:sub(1, #marker + 1) == marker .. "\n" then found[#found + 1] = body .. "\n" end
  end
  return found
end

local function one_block(md, marker)
  local found = blocks_marked(md, marker)
  assert(#found == 1, ("want one block starting %q in docs/haproxy.md, found %d")
                      :format(marker, #found))
  return found[1]
end

local function have_haproxy()
  local f = io.open(HAPROXY, "rb")
  if f then f:close() end
  return f ~= nil
end

local function answers(port)
  local s = socket.tcp()
  s:settimeout(1)
  local ok = s:connect("127.0.0.1", port)
  s:close()
  return ok ~= nil
end

local function alive(pid)
  local r = os.execute("kill -0 " .. pid .. " 2>/dev/null")
  return r == true or r == 0
end

-- GET path from port: status, body.
local function get(port, path)
  local s = assert(socket.tcp())
  s:settimeout(20)
  assert(s:connect("127.0.0.1", port))
  assert(s:send("GET " .. path .. " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"))
  local data, err, partial = s:receive("*a")
  s:close()
  data = data or partial
  assert(data and data ~= "", "no answer from haproxy: " .. tostring(err))
  return tonumber(data:match("^HTTP/1%.%d (%d%d%d)")), data:match("\r\n\r\n(.*)$")
end

if not have_haproxy() then
  describe("docs/haproxy.md's configuration", function()
    pending("haproxy is not installed (" .. HAPROXY .. "): apt-get install haproxy")
  end)
  return
end
if not helper.host_specs_here() then
  describe("docs/haproxy.md's configuration", function()
    pending("HAProxy runs its own Lua 5.3: tested once, under lua5.4")
  end)
  return
end

-- The haproxy under test.
local hp = {}

local function log()
  local f = io.open(hp.dir .. "/haproxy.log", "rb")
  if not f then return "" end
  local s = f:read("*a")
  f:close()
  return s
end

local function stop()
  if hp.pid then os.execute("kill " .. hp.pid .. " 2>/dev/null") end
  if hp.dir then os.execute(sh("rm -rf " .. shell_quote(hp.dir))) end
  hp = {}
end

-- Starts haproxy on the page's configuration (after transform, if given).
local function start(transform)
  local root = abs_root()
  local build_log = capture("make -s -C " .. shell_quote(root) .. " LUA_VERSION=5.3 all")
  assert(io.open(root .. "/build/lua5.3/streamtelecom.so", "rb"),
         "no Lua 5.3 build of the module: " .. build_log):close()
  local md = read_file(root .. "/docs/haproxy.md")
  local cfg = one_block(md, "# /etc/haproxy/haproxy.cfg")
  if transform then cfg = transform(cfg) end
  local lua = one_block(md, "-- /etc/haproxy/sms.lua")
  local tries = {}
  for try = 1, 5 do
    local port = helper.listen_port(2)
    -- Ports someone else already answers on would pass for this HAProxy's
    -- (it exits, unable to bind, after they answered): never taken.
    while answers(port) or answers(port + 1) do port = helper.listen_port(2) end
    local dir = (os.getenv("TMPDIR") or "/tmp") .. "/streamtelecom-haproxy-docs-"
                .. port .. "-" .. helper.rand(100000, 999999)
    assert(os.execute(sh("mkdir -p " .. shell_quote(dir))))
    write_file(dir .. "/haproxy.cfg", cfg)
    write_file(dir .. "/sms.lua", lua)
    local env = {
      "STREAMTELECOM_LUA_DIR=" .. shell_quote(root .. "/lua"),
      "STREAMTELECOM_LIB_DIR=" .. shell_quote(root .. "/build/lua5.3"),
      "SMS_LUA=" .. shell_quote(dir .. "/sms.lua"),
      "SMS_BIND=127.0.0.1:" .. port,
      "SMS_RELAY=127.0.0.1:" .. (port + 1),
      "GATEWAY_ADDR=127.0.0.1:" .. fake.tls_port,
      "GATEWAY_HOST=localhost",
      "GATEWAY_CA_FILE=" .. shell_quote(fake.ca_file),
      "STREAM_TELECOM_USER=rich",
      "STREAM_TELECOM_PASSWORD=" .. shell_quote(PASSWORD),
    }
    local p = assert(io.popen(sh("env -u LUA_PATH -u LUA_CPATH -u LUA_INIT "
      .. table.concat(env, " ") .. " " .. HAPROXY .. " -db -f "
      .. shell_quote(dir .. "/haproxy.cfg") .. " >" .. shell_quote(dir .. "/haproxy.log")
      .. " 2>&1 </dev/null & echo $!")))
    hp = { pid = tonumber(p:read("*l")), dir = dir, port = port }
    p:close()
    local deadline = socket.gettime() + 10
    while socket.gettime() < deadline and alive(hp.pid) do
      if answers(port) and answers(port + 1) then return end
      socket.sleep(0.05)
    end
    tries[#tries + 1] = ("try %d, ports %d-%d:\n%s"):format(try, port, port + 1, log())
    stop()
  end
  error("could not start haproxy with docs/haproxy.md's configuration:\n"
        .. table.concat(tries, "\n"))
end

-- Starts it for a describe block, stops it after.
local function haproxy_for(transform)
  lazy_setup(function()
    fake.start()
    local ok, err = pcall(start, transform)
    if not ok then
      stop()
      error(err, 0)
    end
  end)
  lazy_teardown(stop)
  before_each(function() fake.reset() end)
  after_each(function() helper.settle() end)
end

describe("docs/haproxy.md's configuration, run as it stands", function()
  haproxy_for(nil)

  it("answers its health check", function()
    assert.same({ 200, "ok" }, { get(hp.port, "/health") })
  end)

  it("sends with the service and shows the gateway's refusal as the page says", function()
    local status, body = get(hp.port, "/sms?to=" .. PHONE .. "&text=" .. urlencode("Hello there"))
    assert.equals(200, status, body)
    local id = body:match("^sent (%d+)\n$")
    assert.is_truthy(id, body)
    assert.equals(id, fake.sends()[1].answer)
    assert.equals("Hello there", fake.sends()[1].text)
    status, body = get(hp.port, "/sms?to=99031234567&text=Closed")
    assert.equals(502, status)
    assert.matches("^direction_closed: gateway refused: ", body)
    status, body = get(hp.port, "/sms?to=12&text=Bad")
    assert.equals(400, status)
    assert.matches("^invalid: ", body)
    helper.assert_no_secret(body, PASSWORD)
    -- The page's table of errors shows this very message.
    local md = read_file(helper.repo_root() .. "/docs/haproxy.md")
    assert.is_truthy(md:find("`" .. body:match("^invalid: (.-)\n$") .. "`", 1, true), body)
  end)

  it("sends to every number of the action at once, HAProxy answering meanwhile", function()
    -- 2 s at the gateway: room for a slow busted (valgrind) to see them there.
    fake.set{ latency = 2 }
    local numbers = {}
    for i = 1, 10 do numbers[i] = "790312345" .. ("%02d"):format(i) end
    local s = assert(socket.tcp())
    s:settimeout(20)
    assert(s:connect("127.0.0.1", hp.port))
    assert(s:send("GET /notify?to=" .. table.concat(numbers, ",") .. "&text=Notice"
                  .. " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"))
    assert.is_truthy(fake.wait_for(function(st) return st.in_flight >= 2 end, 10))
    assert.same({ 200, "ok" }, { get(hp.port, "/health") })
    local data = s:receive("*a")
    s:close()
    assert.equals("sent 10 of 10\n", data:match("\r\n\r\n(.*)$"))
    assert.equals(10, fake.stats().send_requests)
    assert.is_true(fake.stats().max_in_flight >= 2)
  end)

  it("keeps the balance its task fetched", function()
    -- The task asks once HAProxy starts: wait for its first answer.
    local status, body = get(hp.port, "/balance")
    local deadline = socket.gettime() + 10
    while body == "not known yet\n" and socket.gettime() < deadline do
      socket.sleep(0.05)
      status, body = get(hp.port, "/balance")
    end
    assert.equals(200, status)
    assert.matches("^%-?[%d.]+\n$", body)
  end)

  it("loads Lua that luacheck finds clean", function()
    if not os.execute("command -v luacheck >/dev/null 2>&1") then
      pending("luacheck is not installed")
      return
    end
    local out = capture("luacheck --no-color --no-config --read-globals core -- "
                        .. shell_quote(hp.dir .. "/sms.lua"))
    assert.matches("Total: 0 warnings / 0 errors", out, 1, true)
  end)

  it("logs no password", function()
    local text = log()
    assert.matches("streamtelecom_relay/gateway", text, 1, true)
    assert.is_nil(text:find("pwd", 1, true))
    helper.assert_no_secret(text, PASSWORD)
    assert.is_true(alive(hp.pid))
  end)
end)

-- The same configuration with 4 threads, its Lua loaded once (lua-load) or
-- once per thread (lua-load-per-thread): bulk calls on several threads at
-- once, each exchange in a task on its caller's thread and Lua state.
for _, load in ipairs({ "lua-load", "lua-load-per-thread" }) do
  describe("docs/haproxy.md's configuration with nbthread 4 and " .. load, function()
    haproxy_for(function(cfg)
      local changed, n = cfg:gsub("\n  lua%-load ", "\n  nbthread 4\n  " .. load .. " ")
      assert(n == 1, "no lua-load line in the page's configuration")
      return changed
    end)

    it("runs 8 bulk calls of 10 sends at once, each send once", function()
      fake.set{ latency = 0.3 }
      local conns = {}
      for c = 1, 8 do
        local numbers = {}
        for i = 1, 10 do numbers[i] = ("79%d12345%03d"):format(c, i) end
        local s = assert(socket.tcp())
        s:settimeout(20)
        assert(s:connect("127.0.0.1", hp.port))
        assert(s:send("GET /notify?to=" .. table.concat(numbers, ",") .. "&text=Threads"
                      .. " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"))
        conns[c] = s
      end
      for c = 1, 8 do
        local data = conns[c]:receive("*a")
        conns[c]:close()
        assert.equals("sent 10 of 10\n", data and data:match("\r\n\r\n(.*)$"))
      end
      local sends = fake.sends()
      assert.equals(80, #sends)
      local seen = {}
      for _, rec in ipairs(sends) do
        assert.is_nil(seen[rec.dadr], rec.dadr)
        seen[rec.dadr] = true
      end
      assert.is_true(alive(hp.pid))
    end)
  end)
end
