-- OpenResty integration: Debian's nginx + lua-nginx-module loads the module
-- built against LuaJIT and serves examples/openresty/nginx.conf (one worker)
-- in front of the fake gateway: a blocking send, a send in a worker thread, a
-- send with resty.streamtelecom over cosockets, one client per worker.
--
-- Nothing here waits on a clock: "the event loop was free" is shown by order
-- (a fast answer arrives while the fake still counts the send in flight).

local fake = require("spec.fake")
local socket = require("socket")
local cjson = require("cjson")
local st = require("streamtelecom")

local PHONE = "79031234567"

local repo_root = require("spec.helper").repo_root

local helper = require("spec.helper")
local shell_quote, sh, capture = helper.shell_quote, helper.unsanitized, helper.capture
local rand, urlencode = helper.rand, helper.urlencode

local function abs_root()
  local p = assert(io.popen("cd " .. shell_quote(repo_root()) .. " && pwd -P"))
  local dir = p:read("*l")
  p:close()
  return dir
end


-- The nginx under test.
local ng = { port = nil, dir = nil, run = nil }

-- A request on its own connection; the answer is read later with read().
local function open(path)
  local s = assert(socket.tcp())
  s:settimeout(10)
  assert(s:connect("127.0.0.1", ng.port))
  -- HTTP/1.0: nginx answers without chunking and closes.
  assert(s:send("GET " .. path .. " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"))
  return s
end

local function read(s)
  local data, err, partial = s:receive("*a")
  s:close()
  data = data or partial
  assert(data and data ~= "", "no answer from nginx: " .. tostring(err))
  local status = tonumber(data:match("^HTTP/1%.%d (%d%d%d)"))
  local body = data:match("\r\n\r\n(.*)$")
  return status, body
end

local function get(path) return read(open(path)) end

-- GET /sms/<mode>; answers the HTTP status and the decoded JSON.
local function sms_path(mode, to, text)
  return "/sms/" .. mode .. "?to=" .. urlencode(to) .. "&text=" .. urlencode(text)
end

local function decode(status, body)
  local ok, value = pcall(cjson.decode, body or "")
  assert(ok, "not JSON (HTTP " .. tostring(status) .. "): " .. tostring(body))
  return status, value
end

local function sms(mode, to, text) return decode(get(sms_path(mode, to, text))) end

local function last_send() local s = fake.sends(); return s[#s], #s end

local settle = helper.settle

local function start_nginx()
  local root = abs_root()
  -- nginx's LuaJIT needs the LuaJIT build, whatever Lua runs this suite.
  local build_log = capture("make -s -C " .. shell_quote(root) .. " LUA_VERSION=jit all")
  local cpath = root .. "/build/luajit"
  local f = io.open(cpath .. "/streamtelecom.so", "rb")
  assert(f, "no LuaJIT build of the module: " .. build_log)
  f:close()
  ng.run = root .. "/examples/openresty/run"
  local env = ("STREAM_TELECOM_URL=%s STREAM_TELECOM_USER=test STREAM_TELECOM_PASSWORD=secret"
               .. " STREAM_TELECOM_SENDER=MyShop"):format(shell_quote(fake.url))
  local last
  for _ = 1, 5 do
    local port = helper.listen_port(1)
    local dir = (os.getenv("TMPDIR") or "/tmp") .. "/streamtelecom-openresty-spec-"
                .. port .. "-" .. rand(100000, 999999)
    -- One VM in the worker-thread pool: a second concurrent thread send must
    -- find none free.
    local out = capture("env " .. env .. " " .. shell_quote(ng.run) .. " start --port " .. port
                        .. " --dir " .. shell_quote(dir) .. " --cpath " .. shell_quote(cpath)
                        .. " --threads 2 --vm-pool 1")
    if out:match("pid=%d+") then
      ng.port, ng.dir = port, dir
      return
    end
    os.execute(sh(shell_quote(ng.run) .. " stop --dir " .. shell_quote(dir) .. " >/dev/null 2>&1"))
    os.execute(sh("rm -rf " .. shell_quote(dir)))
    last = out
  end
  error("could not start nginx with the example config (5 tries):\n" .. tostring(last)
        .. "\nmake said: " .. build_log)
end

local function stop_nginx()
  if not ng.dir then return end
  os.execute(sh(shell_quote(ng.run) .. " stop --dir " .. shell_quote(ng.dir) .. " >/dev/null 2>&1"))
  if not os.getenv("OPENRESTY_KEEP") then os.execute(sh("rm -rf " .. shell_quote(ng.dir))) end
  ng.dir, ng.port = nil, nil
end

if not require("spec.helper").host_specs_here() then
  describe("OpenResty", function()
    pending("nginx runs its own LuaJIT: tested once, under lua5.4")
  end)
  return
end

describe("OpenResty", function()
  lazy_setup(function()
    fake.start()
    local ok, err = pcall(start_nginx)
    if not ok then
      stop_nginx()
      error(err, 0)
    end
  end)
  lazy_teardown(stop_nginx)
  before_each(function() fake.reset() end)
  after_each(function() settle() end)

  it("loads the LuaJIT build and sends with a plain blocking call", function()
    local status, res = sms("blocking", "+7 903 123-45-67", "Order 1 is on its way")
    assert.equals(200, status)
    assert.is_true(res.ok)
    assert.equals(1, #res.messages)
    assert.equals(PHONE, res.messages[1].to)
    local rec, n = last_send()
    assert.equals(1, n)
    assert.equals(rec.answer, res.messages[1].id)
    assert.equals("Order 1 is on its way", rec.text)
    assert.equals(PHONE, rec.dadr)
  end)

  it("answers a refusal as the library's error", function()
    local status, res = sms("blocking", "99031234567", "Hi")
    assert.equals(502, status)
    assert.is_false(res.ok)
    assert.equals("direction_closed", res.code)
    status, res = sms("blocking", "abc", "Hi")
    assert.equals(400, status)
    assert.equals("invalid", res.code)
  end)

  it("reuses one client per worker: N requests, one gateway connection", function()
    for i = 1, 6 do
      local status, res = sms("blocking", PHONE, "Order " .. i)
      assert.equals(200, status)
      assert.is_true(res.ok)
    end
    local gw = fake.stats()
    assert.equals(6, gw.send_requests)
    assert.equals(1, gw.connections)
    local _, cs = decode(get("/sms/stats"))
    assert.is_true(cs.connections_reused >= 5)
  end)

  it("sends in a worker thread while the event loop keeps answering", function()
    fake.set{ latency = 0.3 }
    local slow = open(sms_path("thread", PHONE, "Sent from a thread"))
    assert.is_truthy(fake.wait_for(function(s) return s.in_flight == 1 end))
    local status, body = get("/ping")
    assert.equals(200, status)
    assert.equals("pong\n", body)
    -- The fast answer came while the send was still at the gateway.
    assert.equals(1, fake.stats().in_flight)
    assert.equals(0, #fake.sends())
    local st2, res = decode(read(slow))
    assert.equals(200, st2)
    assert.is_true(res.ok)
    assert.equals(PHONE, res.messages[1].to)
    local rec = last_send()
    assert.equals("Sent from a thread", rec.text)
    assert.equals(rec.answer, res.messages[1].id)
  end)

  it("blocks the whole worker with a plain blocking send (the contrast)", function()
    fake.set{ latency = 0.3 }
    local slow = open(sms_path("blocking", PHONE, "Sent blocking"))
    assert.is_truthy(fake.wait_for(function(s) return s.in_flight == 1 end))
    local status, body = get("/ping")
    assert.equals(200, status)
    assert.equals("pong\n", body)
    -- The fast answer could only come once the send was over.
    assert.equals(0, fake.stats().in_flight)
    local rec, n = last_send()
    assert.equals(1, n)
    assert.equals("Sent blocking", rec.text)
    local st2, res = decode(read(slow))
    assert.equals(200, st2)
    assert.equals(rec.answer, res.messages[1].id)
  end)

  it("answers an exhausted worker-thread VM pool as an error result", function()
    fake.set{ latency = 0.3 }
    local slow = open(sms_path("thread", PHONE, "First"))
    assert.is_truthy(fake.wait_for(function(s) return s.in_flight == 1 end))
    -- The config keeps one VM, and the first send holds it.
    local status, res = sms("thread", PHONE, "Second")
    assert.equals(503, status)
    assert.is_false(res.ok)
    assert.equals("busy", res.code)
    assert.matches("no available Lua vm", res.err, 1, true)
    local gw = fake.stats()
    assert.equals(1, gw.in_flight)
    assert.equals(1, gw.send_requests)
    local st2, first = decode(read(slow))
    assert.equals(200, st2)
    assert.is_true(first.ok)
    local sends = fake.sends()
    assert.equals(1, #sends)
    assert.equals("First", sends[1].text)
  end)

  describe("resty.streamtelecom (the client API over cosockets)", function()
    local direct
    before_each(function()
      direct = assert(st.new{ user = "test", password = "secret", sender = "MyShop", url = fake.url })
    end)
    after_each(function() direct:close() end)

    -- Same records, field by field, as client:send gives (ids aside).
    local function same_shape(want, got)
      assert.equals(#want, #got)
      for i, w in ipairs(want) do
        local keys_w, keys_g = {}, {}
        for k, v in pairs(w) do keys_w[#keys_w + 1] = k .. ":" .. type(v) end
        for k, v in pairs(got[i]) do keys_g[#keys_g + 1] = k .. ":" .. type(v) end
        table.sort(keys_w)
        table.sort(keys_g)
        assert.same(keys_w, keys_g)
        assert.equals(w.to, got[i].to)
        assert.equals(w.code, got[i].code)
      end
    end

    it("gives what client:send gives, and the gateway records the send", function()
      local to = "79031234567,+7 916 123-45-67"
      local status, res = sms("resty", to, "Over a cosocket")
      assert.equals(200, status)
      assert.is_true(res.ok)
      local gw = fake.stats()
      assert.equals(1, gw.send_requests)
      -- Not libcurl: nginx's cosockets made this request.
      assert.matches("^resty%.streamtelecom", gw.last_user_agent)
      local sends = fake.sends()
      assert.equals(1, #sends)
      assert.equals("Over a cosocket", sends[1].text)
      assert.equals("79031234567,79161234567", sends[1].dadr)
      assert.equals(sends[1].answer, res.messages[1].id .. "," .. res.messages[2].id)
      same_shape(assert(direct:send(to, "Over libcurl")), res.messages)
    end)

    it("splits a long recipient list over several requests, as client:send does", function()
      local to = {}
      for i = 1, 200 do to[i] = "7903" .. string.format("%07d", i) end
      local status, res = sms("resty", table.concat(to, ","), "Many")
      assert.equals(200, status)
      assert.equals(200, #res.messages)
      assert.is_true(fake.stats().send_requests > 1)
    end)

    it("reads a chunked answer", function()
      fake.set{ chunked = true }
      local status, res = sms("resty", PHONE, "Chunked")
      assert.equals(200, status)
      assert.equals(last_send().answer, res.messages[1].id)
    end)

    it("answers failures with the library's codes", function()
      local status, res = sms("resty", "99031234567", "Closed")
      local _, err, code = direct:send("99031234567", "Closed")
      assert.equals(502, status)
      assert.equals(code, res.code)
      assert.equals(err, res.err)
      fake.set{ http_status = 503 }
      status, res = sms("resty", PHONE, "Down")
      assert.equals(502, status)
      assert.equals("http", res.code)
    end)

    it("keeps the event loop free while a send is at the gateway", function()
      fake.set{ latency = 0.3 }
      local slow = open(sms_path("resty", PHONE, "Sent over a cosocket"))
      assert.is_truthy(fake.wait_for(function(s) return s.in_flight == 1 end))
      local status, body = get("/ping")
      assert.equals(200, status)
      assert.equals("pong\n", body)
      assert.equals(1, fake.stats().in_flight)
      assert.equals(0, #fake.sends())
      local st2, res = decode(read(slow))
      assert.equals(200, st2)
      assert.equals(last_send().answer, res.messages[1].id)
    end)

    it("keeps one gateway connection for the worker's sends", function()
      for i = 1, 4 do
        local status = sms("resty", PHONE, "Kept " .. i)
        assert.equals(200, status)
      end
      assert.equals(1, fake.stats().connections)
      local _, cs = decode(get("/sms/resty_stats"))
      assert.is_true(cs.connections_reused >= 3)
    end)
  end)

  it("kept the password out of nginx's error log", function()
    local f = assert(io.open(ng.dir .. "/error.log", "rb"))
    local log = f:read("*a")
    f:close()
    assert.is_nil(log:find("pwd=", 1, true))
    assert.is_nil(log:find("secret", 1, true))
  end)
end)
