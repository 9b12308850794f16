-- resty.streamtelecom in a real nginx (Debian's nginx + lua module, LuaJIT build
-- of the C module) against the real fake gateway. spec/resty/app.lua holds the
-- test locations: each call makes a client from JSON options, calls one method
-- and answers JSON. Results are compared with what the blocking client gives
-- for the same gateway answer, so the two cannot drift.
--
-- Nothing here waits on a clock: "the worker was free" is shown by order (a
-- /ping answer arrives while the fake still holds a send in flight).
local fake = require("spec.fake")
local helper = require("spec.helper")
local socket = require("socket")
local cjson = require("cjson")
local st = require("streamtelecom")

local shell_quote, capture, sh = helper.shell_quote, helper.capture, helper.unsanitized

local PHONE = "79031234567"
local SECRET = helper.RICH_PASSWORD

local function abs_root()
  local src = debug.getinfo(1, "S").source:sub(2)
  local dir = src:match("^(.*)/spec/[^/]*$") or "."
  local p = assert(io.popen("cd " .. shell_quote(dir) .. " && pwd -P"))
  local out = p:read("*l")
  p:close()
  return out
end

local ROOT = abs_root()
local MODULES = os.getenv("NGINX_MODULES") or "/usr/lib/nginx/modules"
local NGINX = os.getenv("NGINX") or "/usr/sbin/nginx"

local CONF = [[
load_module "@MODULES@/ndk_http_module.so";
load_module "@MODULES@/ngx_http_lua_module.so";
@USER_LINE@
daemon on;
master_process on;
worker_processes @WORKERS@;
pid "@DIR@/nginx.pid";
error_log "@DIR@/error.log" info;
events { worker_connections 256; }
http {
    access_log off;
    lua_socket_log_errors off;
    client_body_temp_path "@DIR@/tmp/body";
    proxy_temp_path "@DIR@/tmp/proxy";
    fastcgi_temp_path "@DIR@/tmp/fastcgi";
    uwsgi_temp_path "@DIR@/tmp/uwsgi";
    scgi_temp_path "@DIR@/tmp/scgi";
    lua_package_path "@EXTRA_PATH@@ROOT@/lua/?.lua;@ROOT@/spec/resty/?.lua;/usr/share/lua/5.1/?.lua;;";
    lua_package_cpath "@ROOT@/build/luajit/?.so;;";
    lua_shared_dict results 1m;
    lua_shared_dict streamtelecom 1m;
    @CA_LINE@
    init_worker_by_lua_block { require("app").init_worker("@GATEWAY@", @ARM@) }
    server {
        listen 127.0.0.1:@PORT@;
        location = /call { content_by_lua_block { require("app").call() } }
        location = /timer { content_by_lua_block { require("app").timer() } }
        location = /timer_result { content_by_lua_block { require("app").timer_result() } }
        location = /stored { content_by_lua_block { require("app").stored() } }
        location = /go { content_by_lua_block { require("app").go() } }
        location = /header_filter {
            content_by_lua_block { ngx.say("body") }
            header_filter_by_lua_block { require("app").header_filter() }
        }
        location = /ping { content_by_lua_block { ngx.say("pong") } }
    }
}
]]

-- nginx instances by name: "main" trusts the fake's CA, "system" trusts the
-- system bundle only, "bare" has no lua_ssl_trusted_certificate at all.
local instances = {}

local function start(name, ca_line, workers)
  local last
  for _ = 1, 5 do
    local port = helper.listen_port(1)
    -- A folder of this run's own (mktemp): named after the port, it could
    -- be one another user's run left behind (Permission denied).
    local dir = helper.capture("mktemp -d " .. shell_quote((os.getenv("TMPDIR") or "/tmp")
                                                        .. "/streamtelecom-resty-spec-XXXXXX"))
                      :match("%S+")
    os.execute(sh("chmod 755 " .. shell_quote(dir)))
    os.execute(sh("mkdir -p " .. shell_quote(dir .. "/tmp")))
    local conf = CONF:gsub("@(%u[%u_]*)@", {
      MODULES = MODULES, DIR = dir, ROOT = ROOT, PORT = tostring(port), CA_LINE = ca_line,
      USER_LINE = helper.nginx_user_line(),
      GATEWAY = fake.url, EXTRA_PATH = os.getenv("RESTY_SPEC_LUA_PATH") or "",
      WORKERS = tostring(workers or 1), ARM = workers and "true" or "false" })
    local f = assert(io.open(dir .. "/nginx.conf", "w"))
    f:write(conf)
    f:close()
    local out = capture("env -u LUA_PATH -u LUA_CPATH -u LUA_INIT " .. shell_quote(NGINX)
                        .. " -p " .. shell_quote(dir .. "/") .. " -c " .. shell_quote(dir .. "/nginx.conf")
                        .. " -e " .. shell_quote(dir .. "/error.log"))
    for _ = 1, 50 do
      local s = socket.tcp()
      s:settimeout(0.2)
      local ok = s:connect("127.0.0.1", port)
      s:close()
      if ok then
        instances[name] = { port = port, dir = dir }
        return instances[name]
      end
      socket.sleep(0.05)
    end
    last = out
    local pf = io.open(dir .. "/nginx.pid")
    if pf then
      local pid = pf:read("*n")
      pf:close()
      if pid then os.execute("kill " .. pid) end
    end
    socket.sleep(0.2) -- sh() execs: one command each
    os.execute(sh("rm -rf " .. shell_quote(dir)))
  end
  error("could not start nginx: " .. tostring(last))
end

local function stop_all()
  for name, inst in pairs(instances) do
    local pf = io.open(inst.dir .. "/nginx.pid")
    if pf then
      local pid = pf:read("*n")
      pf:close()
      if pid then os.execute("kill " .. pid .. " 2>/dev/null") end
    end
    instances[name] = nil
    if not os.getenv("RESTY_SPEC_KEEP") then
      -- nginx needs a moment to leave; the directory is removed behind it.
      socket.sleep(0.2) -- sh() execs: one command each
      os.execute(sh("rm -rf " .. shell_quote(inst.dir)))
    end
  end
end

-- One HTTP request to an instance on its own connection: open() sends it,
-- read() answers status and body.
local function open(inst, method, path, body)
  local s = assert(socket.tcp())
  s:settimeout(20)
  assert(s:connect("127.0.0.1", inst.port))
  body = body or ""
  assert(s:send(method .. " " .. path .. " HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: "
                .. #body .. "\r\n\r\n" .. body))
  return s
end

local function read(s)
  local data, err, partial = s:receive("*a")
  s:close()
  data = data or partial
  assert(data and data ~= "", "no answer from nginx: " .. tostring(err))
  return tonumber(data:match("^HTTP/1%.%d (%d%d%d)")), data:match("\r\n\r\n(.*)$"), data
end

local function decode(status, body)
  local ok, v = pcall(cjson.decode, body or "")
  assert(ok and status == 200, "HTTP " .. tostring(status) .. ": " .. tostring(body))
  return v
end

local function payload(method, args, opts, extra)
  local o = { user = "test", password = "secret", sender = "MyShop", url = fake.url }
  for k, v in pairs(opts or {}) do o[k] = v end
  local p = { method = method, args = args or {}, opts = o, record = true }
  for k, v in pairs(extra or {}) do p[k] = v end
  return cjson.encode(p)
end

-- Calls a method through the "main" nginx; answers the decoded JSON.
local function call(method, args, opts, extra, inst)
  return decode(read(open(inst or instances.main, "POST", "/call", payload(method, args, opts, extra))))
end

-- The same call on the blocking client, in this process.
local function blocking(method, args, opts)
  local o = { user = "test", password = "secret", sender = "MyShop", url = fake.url }
  for k, v in pairs(opts or {}) do o[k] = v end
  local c = assert(st.new(o))
  local res, err, code = c[method](c, (table.unpack or unpack)(args or {}))
  c:close()
  return res, err, code
end

local settle = helper.settle

local function same_keys(a, b)
  local ka, kb = {}, {}
  for k, v in pairs(a) do ka[#ka + 1] = k .. ":" .. type(v) end
  for k, v in pairs(b) do kb[#kb + 1] = k .. ":" .. type(v) end
  table.sort(ka)
  table.sort(kb)
  assert.same(ka, kb)
end

if not require("spec.helper").host_specs_here() then
  describe("resty.streamtelecom in nginx", function()
    pending("nginx runs its own LuaJIT: tested once, under lua5.4")
  end)
  return
end

describe("resty.streamtelecom in nginx", function()
  lazy_setup(function()
    fake.start()
    local f = io.open(ROOT .. "/build/luajit/streamtelecom.so")
    if f then
      f:close()
    else
      local log = capture("make -s -C " .. shell_quote(ROOT) .. " LUA_VERSION=jit all")
      assert(io.open(ROOT .. "/build/luajit/streamtelecom.so"), "make LUA_VERSION=jit failed: " .. log)
    end
    local ok, err = pcall(start, "main", 'lua_ssl_trusted_certificate "' .. fake.ca_file .. '";')
    if not ok then stop_all(); error(err, 0) end
  end)
  lazy_teardown(stop_all)
  before_each(function() fake.reset() end)
  after_each(function() settle() end)

  describe("gives the blocking client's shapes", function()
    it("for send, one record per recipient in order", function()
      local r = call("send", { { "+7 903 123-45-67", "79161234567" }, "Hello" })
      assert.is_nil(r.err)
      assert.equals(2, #r.res)
      assert.equals(PHONE, r.res[1].to)
      assert.equals("79161234567", r.res[2].to)
      local sends = fake.sends()
      assert.equals(1, #sends)
      assert.equals(sends[1].answer, r.res[1].id .. "," .. r.res[2].id)
      -- Not libcurl: nginx's cosockets made the request.
      assert.matches("^resty%.streamtelecom", fake.stats().last_user_agent)
      same_keys(assert(blocking("send", { PHONE, "Hello" }))[1], r.res[1])
    end)

    it("for status and balance", function()
      local sent = call("send", { PHONE, "Hi" })
      local id = sent.res[1].id
      fake.deliver(id, "deliver")
      local r = call("status", { id })
      local b = assert(blocking("status", { id }))
      same_keys(b, r.res)
      assert.equals("delivered", r.res.state)
      assert.is_true(r.res.final)
      r = call("balance")
      same_keys(assert(blocking("balance")), r.res)
      assert.equals("number", type(r.res.balance))
    end)

    it("for send_many and status_many, item by item", function()
      local items = {
        { to = PHONE, text = "A" }, { to = "99031234567", text = "B" }, { to = "79161234567", text = "C" } }
      local r = call("send_many", { items })
      assert.equals(3, #r.res)
      assert.is_string(r.res[1][1].id)
      assert.equals("direction_closed", r.res[2].code)
      assert.is_string(r.res[3][1].id)
      local ids = { r.res[1][1].id, "12345" }
      local m = call("status_many", { ids })
      assert.equals("sent", m.res[ids[1]].state)
      assert.equals("not_found", m.res["12345"].code)
    end)

    it("for stats, on_request and tostring", function()
      local r = call("balance", {}, { user = "rich", password = SECRET })
      assert.equals(1, r.stats.requests)
      assert.equals(1, #r.calls)
      assert.equals("balance", r.calls[1].call)
      assert.equals(200, r.calls[1].http_status)
      helper.assert_no_secret(r.calls[1].url, SECRET)
      assert.matches("rich", r.name, 1, true)
      helper.assert_no_secret(r.name, SECRET)
    end)

    it("answers bad values as invalid, sends nothing", function()
      local r = call("send", { "abc", "Hi" })
      assert.equals("invalid", r.code)
      r = call(nil, nil, { timeout = -1 })
      assert.is_true(r.new_failed)
      assert.equals("invalid", r.code)
      r = call(nil, nil, { ca_file = "/etc/ssl/x.pem" })
      assert.equals("invalid", r.code)
      assert.matches("lua_ssl_trusted_certificate", r.err, 1, true)
      -- lua-resty-http counts in milliseconds; here it is seconds.
      r = call(nil, nil, { keepalive_timeout = 60000 })
      assert.equals("invalid", r.code)
      assert.matches("seconds", r.err, 1, true)
      r = call(nil, nil, { shared_dict = "no_such_dict", rate = 5 })
      assert.equals("invalid", r.code)
      assert.equals(0, fake.stats().requests)
    end)

    it("answers closed after close", function()
      local r = call("balance", {}, nil, { close_first = true })
      assert.equals("closed", r.code)
    end)
  end)

  describe("gateway refusals", function()
    local bodies = {
      "Неправильный логин или пароль", "Ваш аккаунт заблокирован", "Данное направление закрыто для Вас",
      "Нет отправителя", "Нет текста сообщения", "Такого отправителя нет", "Укажите номер телефона",
      "Flood SMS", "<html>garbage</html>", "",
    }
    for _, body in ipairs(bodies) do
      it("keeps the blocking client's error for " .. (body == "" and "an empty body" or body), function()
        fake.set{ body = body }
        local _, err, code = blocking("send", { PHONE, "Hi" })
        fake.set{ body = body }
        local r = call("send", { PHONE, "Hi" })
        assert.is_nil(r.res)
        assert.equals(code, r.code)
        assert.equals(err, r.err)
      end)
    end

    it("keeps not_found for a status the gateway never accepted", function()
      local r = call("status", { "12345" })
      assert.equals("not_found", r.code)
    end)
  end)

  describe("transport faults", function()
    it("times out, and sends a send once", function()
      fake.set{ latency = 2 }
      local r = call("send", { PHONE, "Slow" }, { timeout = 0.3 })
      assert.equals("timeout", r.code)
      assert.equals(1, fake.stats().send_requests)
    end)

    it("answers connect for a refused connection, nothing reaches the gateway", function()
      local s = socket.bind("127.0.0.1", 0)
      local _, port = s:getsockname()
      s:close()
      local r = call("balance", {}, { url = "http://127.0.0.1:" .. port .. "/get/", retries = 0 })
      assert.equals("connect", r.code)
      assert.matches("connect", r.err)
    end)

    it("sends once when the connection drops after the request", function()
      fake.set{ drop = true }
      local r = call("send", { PHONE, "Dropped" }, { user = "rich", password = SECRET })
      assert.equals("network", r.code)
      helper.assert_no_secret(r.err, SECRET)
      assert.equals(1, fake.stats().send_requests)
      -- No field of any on_request call holds the password either.
      assert.equals(1, #r.calls)
      for _, info in ipairs(r.calls) do
        for _, v in pairs(info) do helper.assert_no_secret(tostring(v), SECRET) end
      end
      assert.equals("network", r.calls[1].code)
    end)

    it("retries a read after a 5xx, never a send", function()
      fake.set{ http_status = 503 }
      local r = call("send", { PHONE, "Down" }, { retries = 2 })
      assert.equals("http", r.code)
      assert.equals(1, fake.stats().send_requests)
      fake.reset()
      fake.set{ http_status = 503, http_count = 1 }
      r = call("balance", {}, { retries = 2 })
      assert.is_nil(r.err)
      assert.equals(2, fake.stats().balance_requests)
    end)

    it("does not follow a redirect", function()
      fake.set{ redirect = "http://127.0.0.1:1/elsewhere" }
      local r = call("send", { PHONE, "Moved" })
      assert.equals("http", r.code)
      assert.equals(1, fake.stats().requests)
    end)

    it("refuses an answer longer than max_response", function()
      fake.set{ oversize = 5000 }
      local r = call("balance", {}, { max_response = 1000, retries = 0 })
      assert.equals("too_large", r.code)
      fake.set{ chunked = true }
      r = call("balance", {}, { max_response = 1000, retries = 0 })
      assert.equals("too_large", r.code)
    end)

    it("reads chunked, Content-Length and split answers alike", function()
      for _, knobs in ipairs{ { chunked = true }, { chunked = false }, { stall = 0.05 },
                              { chunked = true, stall = 0.05 } } do
        fake.reset()
        fake.set(knobs)
        local r = call("send", { PHONE, "Framed" })
        assert.is_nil(r.err)
        assert.equals(fake.sends()[1].answer, r.res[1].id)
      end
    end)
  end)

  describe("TLS", function()
    it("verifies the gateway against lua_ssl_trusted_certificate", function()
      local r = call("balance", {}, { url = fake.tls_url })
      assert.is_nil(r.err)
      assert.equals(1, fake.stats().tls_requests)
    end)

    it("refuses a certificate the trusted bundle does not vouch for", function()
      local inst = instances.system or start("system",
        'lua_ssl_trusted_certificate "/etc/ssl/certs/ca-certificates.crt";')
      -- lua-resty-core sometimes raises "assertion failed!" here (HOSTS.md):
      -- a few tries, each in the library's words.
      for _ = 1, 5 do
        local r = call("send", { PHONE, "Hi" }, { url = fake.tls_url }, nil, inst)
        assert.equals("tls", r.code)
        assert.matches("lua_ssl_trusted_certificate", r.err, 1, true)
        assert.matches("lua_ssl_verify_depth", r.err, 1, true)
        assert.is_nil(r.err:find("%.lua:%d"), r.err)
        assert.is_nil(r.err:find("assertion", 1, true), r.err)
        assert.is_nil(r.err:find("/usr/", 1, true), r.err)
      end
      assert.equals(0, fake.stats().tls_requests)
    end)

    it("names lua_ssl_trusted_certificate when it is missing; verify = false goes on", function()
      local inst = instances.bare or start("bare", "")
      local r = call("balance", {}, { url = fake.tls_url }, nil, inst)
      assert.equals("tls", r.code)
      assert.matches("lua_ssl_trusted_certificate", r.err, 1, true)
      assert.equals(0, fake.stats().tls_requests)
      r = call("balance", {}, { url = fake.tls_url, verify = false }, nil, inst)
      assert.is_nil(r.err)
      assert.equals(1, fake.stats().tls_requests)
    end)
  end)

  describe("connections and concurrency", function()
    it("keeps one connection alive for many calls", function()
      for _ = 1, 5 do
        local r = call("balance")
        assert.is_nil(r.err)
      end
      local gw = fake.stats()
      assert.equals(5, gw.balance_requests)
      assert.equals(1, gw.connections)
      local r = call("balance")
      assert.equals(0, r.stats.connections_opened)
      assert.equals(1, r.stats.connections_reused)
    end)

    it("runs send_many at most `concurrency` at once", function()
      fake.set{ latency = 0.1 }
      local items = {}
      for i = 1, 9 do items[i] = { to = "7903000000" .. i, text = "c" .. i } end
      local r = call("send_many", { items }, { concurrency = 3 })
      assert.equals(9, #r.res)
      for i = 1, 9 do assert.is_string(r.res[i][1].id) end
      assert.equals(3, fake.stats().max_in_flight)
    end)

    it("runs on_start and on_result, and raises a callback's error after the items in flight",
       function()
      local items = {}
      for i = 1, 4 do items[i] = { to = "7903000000" .. i, text = "cb" .. i } end
      local r = call("send_many_callbacks", { items }, { concurrency = 2 })
      assert.equals(4, #r.res)
      local starts, results = 0, 0
      for _, e in ipairs(r.events) do
        if e:match("^start") then starts = starts + 1 else results = results + 1 end
      end
      assert.equals(4, starts)
      assert.equals(4, results)
      fake.reset()
      r = call("send_many_callbacks", { items }, { concurrency = 1 }, { raise_at = 1 })
      assert.equals("stop at 1", r.raised)
      -- The raise stopped new items: only the first was sent.
      assert.equals(1, fake.stats().send_requests)
    end)

    it("spaces requests by rate (the gateway's clock)", function()
      local items = {}
      for i = 1, 6 do items[i] = { to = "7903000000" .. i, text = "r" .. i } end
      call("send_many", { items }, { rate = 50, concurrency = 6 })
      local sends = fake.sends()
      assert.equals(6, #sends)
      local span = sends[6].time - sends[1].time
      assert.is_true(span >= 0.08, "rate 50/s let 6 requests through in " .. span .. " s")
    end)

    it("shares the rate of a shared_dict between clients", function()
      local a, b = {}, {}
      for i = 1, 3 do
        a[i] = { to = "7903000000" .. i, text = "a" .. i }
        b[i] = { to = "7916000000" .. i, text = "b" .. i }
      end
      call("shared_rate", { a, b }, { rate = 50, concurrency = 3, shared_dict = "streamtelecom" })
      local sends = fake.sends()
      assert.equals(6, #sends)
      local times = {}
      for i, s in ipairs(sends) do times[i] = s.time end
      table.sort(times)
      -- 6 requests of two clients at 50/s in all: five intervals at least.
      local span = times[6] - times[1]
      assert.is_true(span >= 0.08, "shared rate 50/s let 6 requests through in " .. span .. " s")
    end)

    it("holds a shared_dict rate across two worker processes", function()
      -- Each worker of this instance sends three messages when told to.
      local inst = instances.multi or start("multi", "", 2)
      local status = read(open(inst, "GET", "/go?rate=50"))
      assert.equals(200, status)
      -- By a clock, not a count of polls: on a loaded machine each poll
      -- takes longer (a count of 500 polls once ran out).
      local done
      local deadline = socket.gettime() + 30
      repeat
        local _, body = read(open(inst, "GET", "/stored?key=done"))
        done = tonumber(body)
        if done ~= 2 then socket.sleep(0.01) end
      until done == 2 or socket.gettime() > deadline
      assert.equals(2, done, helper.slurp(inst.dir .. "/error.log"))
      local sends = fake.sends()
      assert.equals(6, #sends)
      local times, workers = {}, {}
      for i, s in ipairs(sends) do
        times[i] = s.time
        workers[s.text:match("^w(%d+)")] = true
      end
      assert.is_truthy(workers["0"] and workers["1"], "both workers sent")
      table.sort(times)
      local span = times[6] - times[1]
      assert.is_true(span >= 0.08, "shared rate 50/s let 6 requests of 2 workers through in "
                     .. span .. " s")
    end)

    it("waits until every message is settled, asking only for the unsettled ones", function()
      fake.set{ auto_deliver = 0.3 }
      local sent = call("send", { { PHONE, "79161234567" }, "Wait" })
      local ids = { sent.res[1].id, sent.res[2].id, "12345" }
      local r = call("wait", { ids, { timeout = 5, interval = 0 } })
      assert.equals("delivered", r.res[ids[1]].state)
      assert.equals("delivered", r.res[ids[2]].state)
      assert.equals("not_found", r.res["12345"].code)
      -- Round one asks for all three, round two only for the two sent ones.
      assert.equals(5, fake.stats().status_requests)
      r = call("wait", { ids, { timeout = -1 } })
      assert.equals("invalid", r.code)
    end)
  end)

  describe("never blocks the worker", function()
    it("answers /ping while a send is at the gateway", function()
      fake.set{ latency = 0.5 }
      local slow = open(instances.main, "POST", "/call", payload("send", { PHONE, "Slow" }))
      assert.is_truthy(fake.wait_for(function(s) return s.in_flight == 1 end))
      local status, body = read(open(instances.main, "GET", "/ping"))
      assert.equals(200, status)
      assert.equals("pong\n", body)
      assert.equals(1, fake.stats().in_flight)
      assert.equals(0, #fake.sends())
      local r = decode(read(slow))
      assert.equals(fake.sends()[1].answer, r.res[1].id)
    end)

    it("sends from ngx.timer.at, and the worker stays free", function()
      fake.set{ latency = 0.5 }
      local t = decode(read(open(instances.main, "POST", "/timer", payload("send", { PHONE, "Timer" }))))
      assert.is_truthy(fake.wait_for(function(s) return s.in_flight == 1 end))
      local status = read(open(instances.main, "GET", "/ping"))
      assert.equals(200, status)
      assert.equals(1, fake.stats().in_flight)
      settle()
      local r
      for _ = 1, 100 do
        local code, body = read(open(instances.main, "GET", "/timer_result?id=" .. t.id))
        if code == 200 then r = cjson.decode(body); break end
        socket.sleep(0.02)
      end
      assert.is_table(r)
      assert.equals("timer", r.phase)
      assert.equals(fake.sends()[1].answer, r.res[1].id)
    end)

    it("answers a clear error where cosockets are not available", function()
      local r = decode(read(open(instances.main, "GET", "/stored?key=init_worker")))
      assert.is_false(r.raised)
      assert.equals("network", r.code)
      assert.matches("init_worker phase", r.err, 1, true)
      assert.matches("ngx.timer.at", r.err, 1, true)
      local _, _, raw = read(open(instances.main, "GET", "/header_filter"))
      local b64 = raw:match("\r\nX%-Result: ([^\r\n]+)")
      assert.is_string(b64)
      local mime = require("mime")
      r = cjson.decode((mime.unb64(b64)))
      assert.equals("network", r.code)
      assert.matches("header_filter phase", r.err, 1, true)
    end)
  end)

  describe("keeps nginx's error log quiet", function()
    -- What the calls of fn add to the main instance's error.log above info.
    local function logged_by(fn)
      local path = instances.main.dir .. "/error.log"
      local f = assert(io.open(path, "rb"))
      local mark = f:seek("end")
      f:close()
      fn()
      settle()
      f = assert(io.open(path, "rb"))
      f:seek("set", mark)
      local lines = {}
      for line in f:lines() do
        local level = line:match("^%S+ %S+ %[(%a+)%]")
        if level ~= "info" and level ~= "debug" then lines[#lines + 1] = line end
      end
      f:close()
      return lines
    end

    local function assert_quiet(lines, at_most)
      assert(#lines <= at_most, #lines .. " lines in error.log:\n" .. table.concat(lines, "\n"))
      for _, line in ipairs(lines) do
        assert.is_nil(line:find("ngx.sleep", 1, true), line)
      end
    end

    it("when the gateway refuses (one call, its retries' backoffs)", function()
      local s = socket.bind("127.0.0.1", 0)
      local _, port = s:getsockname()
      s:close()
      local r
      local lines = logged_by(function()
        r = call("balance", {}, { url = "http://127.0.0.1:" .. port .. "/get/", retries = 2 })
      end)
      assert.equals("connect", r.code)
      assert.equals(3, #r.calls) -- three tries, two backoffs slept
      assert_quiet(lines, 1)
    end)

    it("when nginx has no resolver for the gateway's name", function()
      local r
      local lines = logged_by(function()
        r = call("balance", {}, { url = "http://gateway.invalid/get/", retries = 2 })
      end)
      assert.equals("connect", r.code)
      assert.matches("resolver", r.err, 1, true)
      assert_quiet(lines, 1)
    end)

    it("when 20 calls at once wait for their turn under rate", function()
      local r
      local lines = logged_by(function()
        r = call("concurrent", { 20, "balance" }, { rate = 10 })
      end)
      assert.equals(20, #r.res)
      for _, one in ipairs(r.res) do assert.is_true(one.ok, one.err) end
      assert.equals(20, fake.stats().balance_requests)
      assert_quiet(lines, 0)
    end)
  end)

  it("kept the password out of nginx's error logs", function()
    -- A few failing calls with the rich account first.
    fake.set{ drop = true }
    call("status", { "1" }, { user = "rich", password = SECRET })
    fake.reset()
    fake.set{ latency = 1 }
    call("balance", {}, { user = "rich", password = SECRET, timeout = 0.2, retries = 0 })
    settle()
    for name, inst in pairs(instances) do
      local f = assert(io.open(inst.dir .. "/error.log", "rb"))
      local log = f:read("*a")
      f:close()
      assert.is_nil(log:find("pwd=", 1, true), name)
      assert.is_nil(log:find("secret", 1, true), name)
      helper.assert_no_secret(log, SECRET)
    end
  end)
end)
