-- Faults injected through the fake gateway, beyond what transport_spec.lua and
-- tls_spec.lua already cover: what each failure answers, how often the fake
-- saw the request (a send is never repeated once it may have reached the
-- gateway), answers no client should trust, and a client's resources (memory,
-- file descriptors, its connection) when it is closed or collected.
-- Memory and descriptor checks are bounds with generous slack, never timings.

local fake = require("spec.fake")
local helper = require("spec.helper")
local socket = require("socket")

local PASSWORD = helper.RICH_PASSWORD
local PHONE = "79031234567"
local MIB = 1024 * 1024

local client, settle, recorder = helper.rich_client, helper.settle, helper.recorder

local function assert_fails(...) return helper.assert_fails(PASSWORD, ...) end

local shell_quote = helper.shell_quote

-- Helper processes run without the sanitizer preloads of `make asan`.
local function clean_env(cmd)
  return "exec env -u LD_PRELOAD -u ASAN_OPTIONS -u LSAN_OPTIONS -u UBSAN_OPTIONS " .. cmd
end

-- This process, as the kernel sees it -------------------------------------

local function my_pid()
  local f = assert(io.open("/proc/self/stat"))
  local pid = f:read("*l"):match("^(%d+)")
  f:close()
  return pid
end
local PID = my_pid()

local function rss_bytes()
  local f = assert(io.open("/proc/self/status"))
  local kib
  for line in f:lines() do
    kib = kib or line:match("^VmRSS:%s*(%d+)%s*kB")
  end
  f:close()
  return assert(tonumber(kib), "no VmRSS in /proc/self/status") * 1024
end

local function full_gc()
  collectgarbage()
  collectgarbage()
end

-- Open descriptors of this process.  The pipe to `ls` is there in every
-- count; both of its ends may be for a moment, so a pipe counts once however
-- many descriptors hold it.  Collects first: a LuaSocket socket of the fake's
-- control requests may otherwise still wait for its finaliser.
local function fd_count()
  full_gc()
  local p = assert(io.popen(clean_env("ls -l /proc/" .. PID .. "/fd")))
  local n, seen, pipes = 0, {}, {}
  for line in p:lines() do
    local fd, target = line:match("(%d+) %-> (.*)$")
    if fd and not (target:find("^pipe:") and pipes[target]) then
      if target:find("^pipe:") then pipes[target] = true end
      n = n + 1
      seen[#seen + 1] = fd .. "=" .. target
    end
  end
  p:close()
  if os.getenv("FAULTS_VERBOSE") == "fds" then io.stderr:write("  [", table.concat(seen, " "), "]\n") end
  return n
end

-- Under ASan (freed memory is held in quarantine) and valgrind (its own
-- allocator and shadow memory) the RSS of the process says nothing about the
-- module; their leak checks take over there.  Descriptors are checked always.
local preload = os.getenv("LD_PRELOAD") or ""
local RSS_MEANINGFUL = not (preload:find("asan", 1, true) or preload:find("vgpreload", 1, true))

local function mib(n) return string.format("%.1f MiB", n / MIB) end

-- The measured numbers, shown with FAULTS_VERBOSE=1 (on stderr).
local function note(text)
  if os.getenv("FAULTS_VERBOSE") then io.stderr:write(text, "\n") end
end

-- A port on 127.0.0.1 where nothing listens (it was free a moment ago).
local function free_port()
  local s = assert(socket.bind("127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  return tonumber(port)
end

-- A one-connection TCP forwarder to the fake, in its own process
-- (LuaSocket).  It says "ready" once it listens, so nothing waits on a clock.
-- As an HTTP proxy ("connect" mode) it first answers the client's CONNECT,
-- whatever host that names, and writes that request line to its stdout.
-- As a proxy that does not tunnel ("proxy" mode) it writes the first
-- request line to its stdout and forwards it, and the rest, to the fake.
local FORWARDER = [[
local socket = require("socket")
local listen_port, up_port, mode = tonumber(arg[1]), tonumber(arg[2]), arg[3]
local server = assert(socket.bind("127.0.0.1", listen_port))
io.write("ready\n") io.flush()
server:settimeout(20)
local down = server:accept()
server:close()
if not down then os.exit(1) end
down:settimeout(20)
if mode == "connect" then
  local first = down:receive("*l")
  io.write(tostring(first), "\n") io.flush()
  repeat local line = down:receive("*l") until not line or line == ""
  down:send("HTTP/1.1 200 Connection established\r\n\r\n")
end
local first
if mode == "proxy" then
  first = down:receive("*l")
  io.write(tostring(first), "\n") io.flush()
end
local up = assert(socket.connect("127.0.0.1", up_port))
if first then up:send(first .. "\r\n") end
down:settimeout(0) up:settimeout(0)
local peer = { [down] = up, [up] = down }
local deadline = socket.gettime() + 20
while socket.gettime() < deadline do
  local readable = socket.select({ down, up }, nil, 1)
  for _, s in ipairs(readable) do
    local data, err, partial = s:receive(65536)
    data = data or partial
    if data and #data > 0 then peer[s]:settimeout(5) peer[s]:send(data) peer[s]:settimeout(0) end
    if err == "closed" then down:close() up:close() os.exit(0) end
  end
end
]]

local function start_forwarder(listen_port, up_port, mode)
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write(FORWARDER)
  f:close()
  local p = assert(io.popen(clean_env(helper.LUA .. " " .. shell_quote(path) .. " " .. listen_port
                                      .. " " .. (up_port or fake.port) .. " " .. (mode or "plain"))))
  local line = p:read("*l")
  os.remove(path)
  assert(line == "ready", "the forwarder did not start")
  return p
end

-- A tiny UTF-8 validator (Lua 5.1 has no utf8 library).
local function valid_utf8(s)
  local i, n = 1, #s
  while i <= n do
    local c = s:byte(i)
    local len, min
    if c < 0x80 then len, min = 1, 0
    elseif c >= 0xC2 and c <= 0xDF then len, min = 2, 0x80
    elseif c >= 0xE0 and c <= 0xEF then len, min = 3, 0x800
    elseif c >= 0xF0 and c <= 0xF4 then len, min = 4, 0x10000
    else return false, i end
    if i + len - 1 > n then return false, i end
    local cp = len == 1 and c or c % (2 ^ (7 - len))
    for k = i + 1, i + len - 1 do
      local b = s:byte(k)
      if b < 0x80 or b > 0xBF then return false, k end
      cp = cp * 64 + (b - 0x80)
    end
    if cp < min or cp > 0x10FFFF or (cp >= 0xD800 and cp <= 0xDFFF) then return false, i end
    i = i + len
  end
  return true
end

describe("faults", function()
  lazy_setup(function() fake.start() end)
  before_each(function() fake.reset() end)
  after_each(function() settle() end)

  describe("a connection dropped after the request was sent", function()
    it("answers network for a send to three recipients, recorded once, every recipient's outcome unknown", function()
      local calls, on_request = recorder()
      local c = client{ retries = 3, on_request = on_request }
      fake.set{ drop = true }
      local to = { PHONE, "79161234567", "79261234567" }
      assert_fails("network", "outcome is unknown", c:send(to, "Your order shipped"))
      assert(settle())
      local sends = fake.sends()
      assert.equals(1, #sends)
      assert.equals(table.concat(to, ","), sends[1].dadr)
      assert.equals(1, fake.stats().send_requests)
      assert.equals(0, c:stats().retries)
      assert.equals(1, #calls)
      assert.equals("network", calls[1].code)
      assert.equals(0, calls[1].http_status)
      c:close()
    end)
  end)

  describe("a refused connection", function()
    for _, retries in ipairs{ 0, 1, 3 } do
      it("answers connect for a send with retries = " .. retries .. " after " .. retries
         .. " retries, and nothing reached the gateway", function()
        local calls, on_request = recorder()
        local c = client{ url = "http://127.0.0.1:" .. free_port() .. "/get/",
                          retries = retries, on_request = on_request }
        assert_fails("connect", "connect", c:send(PHONE, "Hello"))
        assert.equals(retries, c:stats().retries)
        assert.equals(retries + 1, c:stats().requests)
        assert.equals(retries + 1, #calls)
        for _, info in ipairs(calls) do
          assert.equals("connect", info.code)
          assert.equals(0, info.http_status)
        end
        assert.equals(0, fake.stats().requests)
        assert.equals(0, #fake.sends())
        c:close()
      end)
    end

    it("retries a send refused once, and the gateway records it exactly once", function()
      -- Nothing listens on the port at first; after the refused attempt a
      -- forwarder to the fake starts listening there, before the retry.
      local port = free_port()
      local forwarder
      local calls = {}
      local c = client{ url = "http://127.0.0.1:" .. port .. "/get/", retries = 2,
        on_request = function(info)
          calls[#calls + 1] = info
          if info.code == "connect" and not forwarder then
            forwarder = start_forwarder(port)
          end
        end }
      local msgs, err, code = c:send(PHONE, "Sent after a refused connect")
      c:close() -- the forwarder exits when the connection closes
      if forwarder then forwarder:close() end
      assert.is_nil(err, code)
      assert.matches("^%d+$", msgs[1].id)
      assert.equals(2, #calls)
      assert.equals("connect", calls[1].code)
      assert.equals(200, calls[2].http_status)
      local sends = fake.sends()
      assert.equals(1, #sends)
      assert.equals("Sent after a refused connect", sends[1].text)
      assert.equals(1, fake.stats().send_requests)
    end)
  end)

  describe("an answer that stalls half-way", function()
    it("answers timeout for a balance when the timeout is shorter than the stall", function()
      local c = client{ timeout = 0.1, retries = 0 }
      fake.set{ stall = 0.3 }
      assert_fails("timeout", "[Tt]ime", c:balance())
      assert.equals(1, fake.stats().balance_requests)
      c:close()
    end)

    it("retries a balance that stalled once, which then succeeds", function()
      local c = client{ timeout = 0.3, retries = 2 }
      fake.set{ stall = 0.6, stall_count = 1 }
      local b, err, code = c:balance()
      assert.is_nil(err, code)
      assert.equals(1000000, b.balance)
      assert.equals(2, fake.stats().balance_requests)
      assert.equals(1, c:stats().retries)
      c:close()
    end)

    it("answers timeout for a send, never sends it again, and says the outcome is unknown", function()
      local c = client{ timeout = 0.1, retries = 3 }
      fake.set{ stall = 0.3 }
      assert_fails("timeout", "outcome is unknown", c:send(PHONE, "Hello"))
      assert(settle())
      assert.equals(1, #fake.sends())
      assert.equals(1, fake.stats().send_requests)
      assert.equals(0, c:stats().retries)
      c:close()
    end)
  end)

  describe("a storm of HTTP 503 answers", function()
    for _, retries in ipairs{ 0, 1, 3 } do
      it("gives up a balance and a status after exactly " .. (retries + 1)
         .. " requests with retries = " .. retries .. ", and sends once", function()
        local c = client{ retries = retries }
        local id = assert(c:send(PHONE, "Hello"))[1].id
        fake.set{ http_status = 503 }
        assert_fails("http", "503", c:balance())
        assert_fails("http", "503", c:status(id))
        assert_fails("http", "503", c:send(PHONE, "Hello again"))
        local gw = fake.stats()
        assert.equals(retries + 1, gw.balance_requests)
        assert.equals(retries + 1, gw.status_requests)
        assert.equals(2, gw.send_requests)
        assert.equals(2, #fake.sends())
        assert.equals(2 * retries, c:stats().retries)
        c:close()
      end)
    end
  end)

  describe("a kept-alive connection that dies after the send, then a refused reconnect", function()
    -- The forwarder carries one connection and listens no more: the balance
    -- keeps it alive, the fake reads the send and drops it, and libcurl's
    -- silent reconnect is refused. The gateway has the send: never `connect`.
    local function dying_client(opts)
      local port = free_port()
      local forwarder = start_forwarder(port)
      local o = { url = "http://127.0.0.1:" .. port .. "/get/", retries = 3 }
      for k, v in pairs(opts or {}) do o[k] = v end
      local c = client(o)
      assert(c:balance())
      fake.set{ drop = true }
      return c, forwarder
    end

    it("answers network with sent = true for a send, and sends it once", function()
      local c, forwarder = dying_client()
      local ok, err, code, sent = c:send(PHONE, "Sent once")
      local retries = c:stats().retries
      c:close()
      forwarder:close()
      assert.is_nil(ok)
      assert.equals("network", code)
      assert.matches("outcome is unknown", err)
      assert.is_true(sent)
      assert.equals(1, fake.stats().send_requests)
      assert.equals(0, retries)
    end)

    it("says sent = true on the send_many item record, and never sends it again", function()
      local c, forwarder = dying_client()
      local res = c:send_many({ { to = PHONE, text = "Bulk once" } })
      c:close()
      forwarder:close()
      assert.equals("network", res[1].code)
      assert.is_true(res[1].sent)
      assert.equals(1, fake.stats().send_requests)
    end)

    it("answers sent = false when the request provably never left", function()
      local c = client{ url = "http://127.0.0.1:" .. free_port() .. "/get/", retries = 0 }
      local ok, _, code, sent = c:send(PHONE, "Never left")
      assert.is_nil(ok)
      assert.same({ "connect", false }, { code, sent })
      local res = c:send_many({ { to = PHONE, text = "Never left" } })
      assert.same({ "connect", false }, { res[1].code, res[1].sent })
      assert.same({ "invalid", false }, { select(3, c:send("x", "Hi")) })
      c:close()
      assert.same({ "closed", false }, { select(3, c:send(PHONE, "Hi")) })
      assert.equals(0, fake.stats().requests)
    end)
  end)

  describe("an unresolvable host name", function()
    it("answers connect for a send after its retries, since nothing was sent", function()
      local calls, on_request = recorder()
      local c = client{ url = "http://no-such-host.invalid/get/", retries = 2,
                        on_request = on_request }
      assert_fails("connect", "resolve", c:send(PHONE, "Hello"))
      assert.equals(2, c:stats().retries)
      assert.equals(3, #calls)
      assert.equals(0, fake.stats().requests)
      c:close()
    end)
  end)

  describe("a TLS certificate for another host name", function()
    -- The fake's certificate names localhost and 127.0.0.1 only.  The client
    -- asks for another name through an HTTP proxy that tunnels every CONNECT
    -- to the fake's TLS port, so no name needs to resolve anywhere.
    it("answers tls with a message about the host name, and sends nothing", function()
      local port = free_port()
      local proxy = start_forwarder(port, fake.tls_port, "connect")
      local c = client{ url = "https://sms.example.com:" .. fake.tls_port .. "/get/",
                        proxy = "http://127.0.0.1:" .. port, ca_file = fake.ca_file, retries = 2 }
      local ok, err, code = c:send(PHONE, "Hello")
      c:close()
      local asked = proxy:read("*l")
      proxy:close()
      assert.equals("CONNECT sms.example.com:" .. fake.tls_port .. " HTTP/1.1", asked)
      assert_fails("tls", "host ?name", ok, err, code)
      assert.truthy(err:find("sms.example.com", 1, true), err)
      assert.equals(0, fake.stats().requests)
      assert.equals(0, #fake.sends())
    end)

    it("works through the same tunnel under the name the certificate holds", function()
      local port = free_port()
      local proxy = start_forwarder(port, fake.tls_port, "connect")
      local c = client{ url = "https://localhost:" .. fake.tls_port .. "/get/",
                        proxy = "http://127.0.0.1:" .. port, ca_file = fake.ca_file }
      local b, err, code = c:balance()
      c:close()
      proxy:close()
      assert.is_nil(err, code)
      assert.equals(1000000, b.balance)
      assert.equals(1, fake.stats().tls_requests)
    end)
  end)

  describe("an HTTP proxy that does not tunnel", function()
    -- Such a proxy must be asked for the whole URL, whether the client's
    -- proxy option or the environment (as libcurl reads it) names it.
    local function asked_for(proxy)
      local line = proxy:read("*l")
      proxy:close()
      return line
    end

    it("is asked for the whole URL when the proxy option names it", function()
      local port = free_port()
      local proxy = start_forwarder(port, fake.port, "proxy")
      local c = client{ proxy = "http://127.0.0.1:" .. port }
      local url = assert(c:url("send", PHONE, "Через прокси"))
      local msgs, err, code = c:send(PHONE, "Через прокси")
      c:close()
      assert.is_nil(err, code)
      assert.matches("^%d+$", msgs[1].id)
      assert.equals("GET " .. url .. " HTTP/1.1", asked_for(proxy))
      assert.equals("Через прокси", fake.sends()[1].text)
    end)

    it("is asked for the whole URL when http_proxy names it", function()
      local port = free_port()
      local proxy = start_forwarder(port, fake.port, "proxy")
      local out = helper.output("http_proxy=http://127.0.0.1:" .. port
        .. " GW_PASSWORD=" .. shell_quote(PASSWORD) .. " GW_URL=" .. shell_quote(fake.url) .. " "
        .. helper.LUA .. " -e " .. shell_quote([[
local c = assert(require("streamtelecom").new{ user = "rich", sender = "MyShop",
  password = os.getenv("GW_PASSWORD"), url = os.getenv("GW_URL") })
local msgs = assert(c:send("79031234567", "Env proxy"))
print(c:url("balance"), msgs[1].id)
]]) .. " 2>&1")
      local url, id = out:match("^(%S+)%s+(%d+)\n$")
      assert.truthy(id, out)
      assert.equals("GET " .. url:gsub("balance=1$", "sadr=MyShop&dadr=79031234567&text=Env%%20proxy")
                    .. " HTTP/1.1", asked_for(proxy))
      assert.equals(1, #fake.sends())
    end)
  end)

  describe("an answer holding a NUL byte", function()
    it("answers gateway, with the NUL not in the message", function()
      local c = client()
      fake.set{ body = "100.00\0<html>" }
      for _, call in ipairs{
        function() return c:balance() end,
        function() return c:status("1000000001") end,
        function() return c:send(PHONE, "Hello") end,
      } do
        local ok, err, code = call()
        assert_fails("gateway", "100%.00", ok, err, code)
        assert.is_nil(err:find("\0", 1, true), err)
        assert.truthy(err:find("<html>", 1, true), err)
      end
      c:close()
    end)

    it("is not read as a refusal when a refusal sentence comes before the NUL", function()
      local c = client()
      fake.set{ body = "Flood SMS\0<html>" }
      assert_fails("gateway", "Flood SMS", c:send(PHONE, "Hello"))
      c:close()
    end)
  end)

  describe("an answer that is not valid UTF-8", function()
    it("answers gateway with a message that is valid UTF-8 on one line", function()
      local c = client()
      fake.set{ body = "\255\254oops \192 \237\160\128 end\n\r\1" }
      local b, err, code = c:balance()
      assert_fails("gateway", "oops", b, err, code)
      assert.truthy(err:find(" end", 1, true), err)
      assert.is_nil(err:find("[%z\1-\31\127]"), err)
      local ok, at = valid_utf8(err)
      assert.is_true(ok, "invalid UTF-8 at byte " .. tostring(at) .. " of " .. string.format("%q", err))
      c:close()
    end)
  end)

  describe("a 10 MiB answer", function()
    it("answers too_large with the default max_response, without holding 10 MiB", function()
      local c = client()
      assert(c:balance()) -- the connection and TLS/curl state exist before measuring
      full_gc()
      local before, fds = rss_bytes(), fd_count()
      fake.set{ oversize = 10 * MIB }
      assert_fails("too_large", "max_response", c:balance())
      full_gc()
      local after, fds_after = rss_bytes(), fd_count()
      note(string.format("\n  10 MiB answer: VmRSS %s -> %s, fds %d -> %d",
                          mib(before), mib(after), fds, fds_after))
      assert.is_true(fds_after <= fds, "descriptors " .. fds .. " -> " .. fds_after)
      if RSS_MEANINGFUL then
        assert.is_true(after - before < 4 * MIB,
                       "VmRSS grew from " .. mib(before) .. " to " .. mib(after))
      end
      fake.set{ oversize = false }
      assert(c:balance())
      c:close()
    end)
  end)

  describe("a client used after close", function()
    it("has given its connection back, answers closed and calls on_request no more", function()
      full_gc()
      local fds = fd_count()
      local calls, on_request = recorder()
      local c = client{ on_request = on_request }
      assert(c:balance())
      local open = fd_count()
      assert.is_true(open > fds, "no descriptor for the open connection")
      c:close()
      local closed = fd_count()
      note(string.format("\n  close: fds %d -> %d -> %d", fds, open, closed))
      assert.equals(fds, closed)
      local ok, err, code = c:send(PHONE, "Hello")
      assert.is_nil(ok)
      assert.equals("closed", code)
      assert.equals("client is closed", err)
      assert.equals(1, #calls)
      assert.equals(1, fake.stats().requests)
      assert.equals(0, #fake.sends())
    end)

    it("survives being closed from its own on_request, in the middle of a send", function()
      -- In a child process: a crash here must not take the whole run down.
      local script = [[
        local st = require("streamtelecom")
        local url = arg[1]
        local c
        c = assert(st.new{ user = "rich", password = "p&ss=w%rd+?", sender = "MyShop", url = url,
                           on_request = function() c:close() end })
        local msgs, err, code = c:send("79031234567", "Closed in the callback")
        if msgs then print("sent", msgs[1].id) else print("failed", code) end
        local ok2, err2, code2 = c:balance()
        print("then", tostring(ok2), code2)
        print("shown", tostring(c))
      ]]
      local path = os.tmpname()
      local f = assert(io.open(path, "w"))
      f:write(script)
      f:close()
      local out_path = os.tmpname()
      local ok, how, status = os.execute(helper.LUA .. " " .. shell_quote(path) .. " "
                                         .. shell_quote(fake.url) .. " >" .. shell_quote(out_path)
                                         .. " 2>&1")
      local out = assert(io.open(out_path)):read("*a")
      os.remove(path)
      os.remove(out_path)
      local exited_cleanly = ok == 0 or (ok == true and how == "exit" and status == 0)
      assert.is_true(exited_cleanly, "the child died (" .. tostring(how) .. " " .. tostring(status)
                                     .. "):\n" .. out)
      local first = out:match("^(%a+)")
      assert.truthy(first == "sent" or out:match("^failed%s+closed"), out)
      assert.truthy(out:find("\nthen%s+nil%s+closed\n"), out)
      assert.truthy(out:find("%(closed%)"), out)
      assert.equals(1, #fake.sends())
    end)
  end)

  describe("a client garbage-collected while another exists", function()
    it("closes its own connection; the other keeps working on its one connection", function()
      full_gc()
      local fd0 = fd_count()
      local a = client()
      assert(a:balance())
      local fd1 = fd_count()
      local b = client()
      assert(b:balance())
      local fd2 = fd_count()
      assert.equals(2, fake.stats().connections)
      a = nil -- luacheck: ignore
      full_gc()
      local fd3 = fd_count()
      note(string.format("\n  gc of one of two clients: fds %d -> %d -> %d -> %d", fd0, fd1, fd2, fd3))
      assert.is_true(fd1 > fd0)
      assert.equals(fd2 - (fd1 - fd0), fd3)
      for _ = 1, 3 do assert(b:balance()) end
      local id = assert(b:send(PHONE, "Still here"))[1].id
      assert(b:status(id))
      local s = b:stats()
      assert.equals(1, s.connections_opened)
      assert.equals(5, s.connections_reused)
      assert.equals(2, fake.stats().connections)
      assert.equals(fd3, fd_count())
      b:close()
    end)
  end)

  describe("many clients made and dropped", function()
    it("leaves no descriptor open and the memory flat after 500 of them", function()
      -- Warm up libcurl, OpenSSL and the Lua heap first.
      for _ = 1, 50 do assert(client():balance()) end
      full_gc()
      local rss0, fd0 = rss_bytes(), fd_count()
      fake.reset_stats()
      for i = 1, 500 do
        local c = client()
        assert(c:balance())
        if i % 50 == 0 then full_gc() end
      end
      full_gc()
      local rss1, fd1 = rss_bytes(), fd_count()
      note(string.format("\n  500 clients: VmRSS %s -> %s, fds %d -> %d",
                          mib(rss0), mib(rss1), fd0, fd1))
      assert.equals(500, fake.stats().connections)
      assert.equals(fd0, fd1)
      if RSS_MEANINGFUL then
        assert.is_true(rss1 - rss0 < 4 * MIB,
                       "VmRSS grew from " .. mib(rss0) .. " to " .. mib(rss1))
      end
    end)
  end)
end)
