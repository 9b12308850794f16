-- The client over real HTTP against the local fake gateway: keep-alive,
-- timeouts, HTTP errors, retries (and the sends that must never be retried),
-- oversized and garbage answers, redirects, dropped connections, on_request.
-- The `rich` account is used wherever it can be: its password holds & = % + ?
-- so a leak into a message shows up raw or percent-encoded.

local fake = require("spec.fake")
local helper = require("spec.helper")

local PASSWORD = helper.RICH_PASSWORD
local PHONE = "79031234567"

local client, settle, recorder = helper.rich_client, helper.settle, helper.recorder

-- A failed call: nil, a helpful English sentence (with `word` in it) that
-- keeps the password to itself, and the expected code.
local function assert_fails(...) return helper.assert_fails(PASSWORD, ...) end

describe("the transport", function()
  lazy_setup(function() fake.start() end)
  before_each(function() fake.reset() end)
  after_each(function() settle() end)

  describe("keep-alive", function()
    it("makes 20 mixed calls over exactly one connection", function()
      local c = client()
      local id
      for i = 1, 20 do
        if i % 3 == 1 then
          local msgs = assert(c:send(PHONE, "Order " .. i .. " is on its way"))
          id = msgs[1].id
        elseif i % 3 == 2 then
          assert(c:balance())
        else
          assert(c:status(id))
        end
      end
      local gw = fake.stats()
      assert.equals(20, gw.requests)
      assert.equals(1, gw.connections)
      local s = c:stats()
      assert.equals(20, s.requests)
      assert.equals(1, s.connections_opened)
      assert.equals(19, s.connections_reused)
      c:close()
    end)
  end)

  describe("the request line", function()
    -- libcurl gets each URL parsed, and only its query anew while the rest
    -- stays the same: the gateway must still get the bytes url() shows,
    -- the case of every escape included, request after request.
    local function sends_what_url_shows(c, call, ...)
      local url = assert(c:url(call, ...))
      local result = assert(c[call](c, ...))
      assert.equals(url:match("^https?://[^/]+(/.*)$"), fake.stats().last_uri)
      return result
    end

    it("is the one url() shows, call after call, escapes and all", function()
      local plain = helper.client({ user = "test", password = "secret", sender = "MyShop",
                                    url = fake.url })
      for _, c in ipairs({ client(), plain }) do
        sends_what_url_shows(c, "balance")
        local msgs = sends_what_url_shows(c, "send", PHONE, "Order 7 is on its way")
        sends_what_url_shows(c, "send", PHONE, "Привет, мир: 100% + 1")
        sends_what_url_shows(c, "status", msgs[1].id)
        sends_what_url_shows(c, "balance")
        c:close()
      end
    end)

    it("leaves a URL libcurl's parser refuses to libcurl, which says so; nothing is sent", function()
      local c = client({ url = fake.url:gsub(":(%d+)/", ":99999/") })
      assert_fails("network", "URL", c:balance())
      assert_fails("network", "URL", c:balance()) -- the slot's second request too
      assert.equals(0, fake.stats().requests)
      c:close()
    end)

    -- A direct request names its path and query itself (libcurl's
    -- CURLOPT_REQUEST_TARGET), where libcurl would print them back from
    -- the parsed URL: the bytes must be the same either way.
    it("keeps a query the client's URL has of its own", function()
      local c = client({ url = fake.url .. "?tag=shop" })
      sends_what_url_shows(c, "balance")
      sends_what_url_shows(c, "send", PHONE, "With a tag")
      c:close()
    end)

    it("sends the path libcurl makes of a URL with /../ in it", function()
      local c = client({ url = fake.url:gsub("/get/$", "/x/../get/") })
      local url = assert(c:url("balance"))
      assert(c:balance())
      assert.equals("/get/?" .. url:match("%?(.*)$"), fake.stats().last_uri)
      c:close()
    end)

    it("leaves a URL with a space in its query to libcurl, which refuses it; nothing is sent",
       function()
      local c = client({ url = fake.url .. "?a=b c" })
      assert_fails("network", "URL", c:balance())
      assert.equals(0, fake.stats().requests)
      c:close()
    end)

    it("leaves a fragment before the query to libcurl's own reading", function()
      local c = client({ url = fake.url .. "#here" })
      c:balance() -- the query is then part of the fragment: no credentials go out
      assert.equals("/get/", fake.stats().last_uri)
      c:close()
    end)
  end)

  -- A wait sleeps in one poll() until a socket or a timer of libcurl's
  -- wants something. (libcurl 7.88's timer callback once left a dropped
  -- timer standing: each 0.2 s answer was waited for in 180 wake-ups.)
  describe("a wait", function()
    local function polls(source)
      return helper.count_syscalls(source, { fake.url, PASSWORD }, "poll")
    end

    it("for a slow answer wakes a few times, not every millisecond (strace)", function()
      fake.set{ latency = 0.2 }
      local calls, summary = polls([[
local c = assert(require("streamtelecom").new{ user = "rich", password = arg[2], url = arg[1] })
for _ = 1, 3 do assert(c:balance()) end
c:close()
]])
      assert.equals(3, fake.stats().balance_requests)
      assert.is_true(calls < 3 * 10, "poll() calls for 3 answers of 0.2 s: " .. calls .. "\n"
                     .. summary)
    end)

    it("for a rate's next slot sleeps through it (strace)", function()
      local calls, summary = polls([[
local c = assert(require("streamtelecom").new{ user = "rich", password = arg[2], url = arg[1],
                                               sender = "MyShop", rate = 4, concurrency = 4 })
local items = {}
for i = 1, 5 do items[i] = { to = string.format("7903%07d", i), text = "Rate " .. i } end
for i, res in ipairs(assert(c:send_many(items))) do assert(res[1].id, i) end
c:close()
]])
      assert.equals(5, fake.stats().send_requests)
      assert.is_true(calls < 5 * 10, "poll() calls for 5 sends at 4/s: " .. calls .. "\n"
                     .. summary)
    end)
  end)

  describe("a timeout", function()
    it("answers timeout for a balance, after retrying it", function()
      local c = client{ timeout = 0.1, retries = 1 }
      fake.set{ latency = 0.3 }
      assert_fails("timeout", "[Tt]ime", c:balance())
      assert.equals(2, fake.stats().balance_requests)
      assert.equals(1, c:stats().retries)
      c:close()
    end)

    it("answers timeout for a status, after retrying it", function()
      local c = client{ timeout = 0.1, retries = 1 }
      local id = assert(c:send(PHONE, "Hello"))[1].id
      fake.set{ latency = 0.3 }
      assert_fails("timeout", "[Tt]ime", c:status(id))
      assert.equals(2, fake.stats().status_requests)
      assert.equals(1, c:stats().retries)
      c:close()
    end)

    it("answers timeout for a send without sending it again, and says the outcome is unknown", function()
      local c = client{ timeout = 0.1, retries = 1 }
      fake.set{ latency = 0.3 }
      assert_fails("timeout", "unknown", c:send(PHONE, "Hello"))
      assert.equals(1, fake.stats().send_requests)
      assert.equals(0, c:stats().retries)
      assert(settle(), "the fake never finished the request")
      assert.equals(1, #fake.sends())
      c:close()
    end)
  end)

  -- A listener that never accepts: the kernel completes the TCP handshake,
  -- but a TLS handshake gets no answer, so the connection never becomes
  -- ready and only connect_timeout can end it.
  describe("a connect timeout", function()
    local socket = require("socket")
    local silent, silent_url
    before_each(function()
      silent = assert(socket.bind("127.0.0.1", 0))
      local _, port = silent:getsockname()
      silent_url = ("https://127.0.0.1:%d/get/"):format(port)
    end)
    after_each(function() silent:close() end)

    it("ends a connection that never gets ready, named as such, long before timeout", function()
      local c = client{ url = silent_url, timeout = 30, connect_timeout = 0.2, retries = 0 }
      local ok, err, code = c:balance()
      assert.is_nil(ok)
      assert.equals("timeout", code)
      assert.matches("could not connect within 0.2 s", err, 1, true)
      assert.is_true(c:stats().seconds_max < 30)
      c:close()
    end)

    it("retries a send whose connection never got ready: it cannot have been sent", function()
      local c = client{ url = silent_url, timeout = 30, connect_timeout = 0.1, retries = 2 }
      local ok, err, code = c:send(PHONE, "Hello")
      assert.is_nil(ok)
      assert.equals("timeout", code)
      assert.matches("could not connect", err, 1, true)
      assert.not_matches("unknown", err)
      assert.equals(2, c:stats().retries)
      assert.equals(0, #fake.sends())
      c:close()
    end)

    it("lets the whole-request timeout end an answer that never comes", function()
      local c = client{ timeout = 0.1, connect_timeout = 5, retries = 0 }
      fake.set{ latency = 0.3 }
      assert_fails("timeout", "no answer within 0.1 s", c:balance())
      c:close()
    end)
  end)

  describe("an HTTP 5xx answer", function()
    it("answers http for a balance, after retrying it", function()
      local c = client{ retries = 2 }
      fake.set{ http_status = 503 }
      assert_fails("http", "503", c:balance())
      assert.equals(3, fake.stats().balance_requests)
      assert.equals(2, c:stats().retries)
      c:close()
    end)

    it("answers http for a status, after retrying it", function()
      local c = client{ retries = 2 }
      local id = assert(c:send(PHONE, "Hello"))[1].id
      fake.set{ http_status = 503 }
      assert_fails("http", "503", c:status(id))
      assert.equals(3, fake.stats().status_requests)
      assert.equals(2, c:stats().retries)
      c:close()
    end)

    it("answers http for a send without sending it again", function()
      local c = client{ retries = 2 }
      fake.set{ http_status = 503 }
      assert_fails("http", "503", c:send(PHONE, "Hello"))
      assert.equals(1, fake.stats().send_requests)
      assert.equals(1, #fake.sends())
      assert.equals(0, c:stats().retries)
      c:close()
    end)

    it("lets a balance succeed when the retry gets a good answer", function()
      local c = client{ retries = 2 }
      fake.set{ http_status = 503, http_count = 1 }
      local b, err, code = c:balance()
      assert.is_nil(err, code)
      assert.equals(1000000, b.balance)
      assert.equals(2, fake.stats().balance_requests)
      assert.equals(1, c:stats().retries)
      c:close()
    end)
  end)

  describe("an HTTP 404 answer", function()
    it("answers http for a balance without retrying it", function()
      local c = client{ retries = 2 }
      fake.set{ http_status = 404 }
      assert_fails("http", "404", c:balance())
      assert.equals(1, fake.stats().requests)
      assert.equals(0, c:stats().retries)
      c:close()
    end)

    it("answers http for a status without retrying it", function()
      local c = client{ retries = 2 }
      local id = assert(c:send(PHONE, "Hello"))[1].id
      fake.set{ http_status = 404 }
      assert_fails("http", "404", c:status(id))
      assert.equals(1, fake.stats().status_requests)
      assert.equals(0, c:stats().retries)
      c:close()
    end)
  end)

  describe("a refused connection", function()
    local CLOSED = "http://127.0.0.1:1/get/"

    it("answers connect for a balance, after retrying it, and reports every attempt", function()
      local calls, on_request = recorder()
      local c = client{ url = CLOSED, retries = 2, on_request = on_request }
      assert_fails("connect", "connect", c:balance())
      assert.equals(2, c:stats().retries)
      assert.equals(3, #calls)
      for _, info in ipairs(calls) do
        assert.equals("balance", info.call)
        assert.equals(0, info.http_status)
        assert.equals("connect", info.code)
      end
      c:close()
    end)

    it("answers connect for a send, after retrying it, since it never reached the gateway", function()
      local calls, on_request = recorder()
      local c = client{ url = CLOSED, retries = 2, on_request = on_request }
      assert_fails("connect", "connect", c:send(PHONE, "Hello"))
      assert.equals(2, c:stats().retries)
      assert.equals(3, #calls)
      for _, info in ipairs(calls) do
        assert.equals("send", info.call)
        assert.equals(0, info.http_status)
        assert.equals("connect", info.code)
      end
      c:close()
    end)
  end)

  describe("an unresolvable host name", function()
    it("answers connect", function()
      local c = client{ url = "http://no-such-host.invalid/get/", retries = 0 }
      assert_fails("connect", "resolve", c:balance())
      c:close()
    end)
  end)

  describe("an oversized answer", function()
    it("answers too_large when the answer passes max_response", function()
      local c = client{ max_response = 1000 }
      fake.set{ oversize = 5000 }
      assert_fails("too_large", "max_response", c:balance())
      c:close()
    end)

    it("reads an answer within max_response (here garbage: gateway, not too_large)", function()
      local c = client{ max_response = 1000 }
      fake.set{ oversize = 500 }
      assert_fails("gateway", "balance", c:balance())
      c:close()
    end)
  end)

  describe("a garbage answer", function()
    it("answers gateway and quotes what came", function()
      local c = client()
      fake.set{ body = "<html>oops</html>" }
      local b, err, code = c:balance()
      assert_fails("gateway", "answer", b, err, code)
      assert.truthy(err:find("<html>oops</html>", 1, true), err)
      c:close()
    end)

    it("quotes at most 200 bytes of a long answer", function()
      local c = client()
      fake.set{ body = string.rep("#", 300) }
      local b, err, code = c:balance()
      assert_fails("gateway", "answer", b, err, code)
      local longest = 0
      for run in err:gmatch("#+") do longest = math.max(longest, #run) end
      assert.is_true(longest > 0, err)
      assert.is_true(longest <= 200, "quoted " .. longest .. " bytes")
      assert.is_true(#err < 300, "message of " .. #err .. " bytes")
      c:close()
    end)
  end)

  describe("a redirect", function()
    it("answers http for a balance and is not followed", function()
      local c = client{ retries = 2 }
      fake.set{ redirect = true }
      assert_fails("http", "redirect", c:balance())
      local gw = fake.stats()
      assert.equals(1, gw.requests)
      assert.equals(1, gw.redirects)
      c:close()
    end)

    it("answers http for a send and is not followed", function()
      local c = client{ retries = 2 }
      fake.set{ redirect = "http://127.0.0.1:" .. fake.port .. "/get/?elsewhere=1" }
      assert_fails("http", "redirect", c:send(PHONE, "Hello"))
      assert.equals(1, fake.stats().requests)
      assert.equals(0, #fake.sends())
      c:close()
    end)
  end)

  describe("a dropped connection", function()
    it("answers network for a send on a new connection, never sent twice, outcome unknown", function()
      local c = client{ retries = 2 }
      fake.set{ drop = true }
      assert_fails("network", "unknown", c:send(PHONE, "Hello"))
      assert.equals(1, fake.stats().send_requests)
      assert.equals(1, #fake.sends())
      assert.equals(0, c:stats().retries)
      c:close()
    end)

    it("answers network for a send on a reused connection, never sent twice, outcome unknown", function()
      local c = client{ retries = 2 }
      assert(c:balance())
      fake.set{ drop = true }
      assert_fails("network", "unknown", c:send(PHONE, "Hello"))
      assert.equals(1, fake.stats().send_requests)
      assert.equals(1, #fake.sends())
      assert.equals(0, c:stats().retries)
      c:close()
    end)

    it("retries a balance, which then succeeds", function()
      local c = client{ retries = 2 }
      fake.set{ drop = true, drop_count = 1 }
      local b, err, code = c:balance()
      assert.is_nil(err, code)
      assert.equals(1000000, b.balance)
      assert.equals(2, fake.stats().balance_requests)
      assert.equals(1, c:stats().retries)
      c:close()
    end)

    it("answers network for a balance when every attempt is dropped", function()
      local c = client{ retries = 1 }
      fake.set{ drop = true }
      assert_fails("network", "[Nn]etwork", c:balance())
      assert.equals(2, fake.stats().balance_requests)
      c:close()
    end)
  end)

  describe("on_request", function()
    local function assert_redacted(info)
      assert.is_string(info.url)
      assert.truthy(info.url:find("pwd=***", 1, true), info.url)
      helper.assert_no_secret(info.url, PASSWORD)
      assert.is_number(info.seconds)
      assert.is_true(info.seconds >= 0)
    end

    it("is called once per successful call, with the call, the redacted url, 200 and no code", function()
      local calls, on_request = recorder()
      local c = client{ on_request = on_request }
      local id = assert(c:send(PHONE, "Hello"))[1].id
      assert(c:status(id))
      assert(c:balance())
      assert.equals(3, #calls)
      for i, call in ipairs{ "send", "status", "balance" } do
        local info = calls[i]
        assert.equals(call, info.call)
        assert.equals(200, info.http_status)
        assert.is_nil(info.code)
        assert_redacted(info)
        assert.truthy(info.url:find(fake.url, 1, true), info.url)
      end
      c:close()
    end)

    it("is called for every failed exchange, retries included, with the code", function()
      local calls, on_request = recorder()
      local c = client{ retries = 1, on_request = on_request }
      fake.set{ http_status = 503 }
      assert_fails("http", "503", c:balance())
      assert.equals(2, #calls)
      for _, info in ipairs(calls) do
        assert.equals("balance", info.call)
        assert.equals(503, info.http_status)
        assert.equals("http", info.code)
        assert_redacted(info)
      end
      c:close()
    end)

    it("reports the code of an answer the client could not use", function()
      local calls, on_request = recorder()
      local c = client{ on_request = on_request }
      fake.set{ body = "<html>oops</html>" }
      assert_fails("gateway", "answer", c:balance())
      assert.equals(1, #calls)
      assert.equals(200, calls[1].http_status)
      assert.equals("gateway", calls[1].code)
      assert_redacted(calls[1])
      c:close()
    end)

    it("says http_status 0 when no HTTP answer came", function()
      local calls, on_request = recorder()
      local c = client{ timeout = 0.1, retries = 0, on_request = on_request }
      fake.set{ latency = 0.3 }
      assert_fails("timeout", "[Tt]ime", c:balance())
      assert.equals(1, #calls)
      assert.equals(0, calls[1].http_status)
      assert.equals("timeout", calls[1].code)
      assert_redacted(calls[1])
      c:close()
    end)
  end)
end)
