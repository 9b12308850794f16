-- The driver interface (docs/DRIVERS.md), through the example driver
-- examples/driver/luasocket.lua against the fake gateway: the engine decides
-- everything, the driver only moves bytes; the same answers as the blocking
-- client, its retry rules, its redaction.
local st = require("streamtelecom")
local fake = require("spec.fake")
local helper = require("spec.helper")
local driver = require("examples.driver.luasocket")

local PASSWORD = "p&ss=w%rd+?"
local feed_answer

local function client(opts)
  local o = { user = "rich", password = PASSWORD, sender = "MyShop", url = fake.url,
              timeout = 2 }
  for k, v in pairs(opts or {}) do o[k] = v end
  return assert(driver.new(o))
end

describe("a driven client (examples/driver/luasocket.lua)", function()
  lazy_setup(function() fake.start() end)
  before_each(function() fake.reset() end)

  it("answers send, status, balance, send_many and status_many as the blocking client does", function()
    local c = client()
    local msgs = assert(c:send({ "79031234567", "+7 916 123-45-67" }, "Hello"))
    assert.same({ "79031234567", "79161234567" }, { msgs[1].to, msgs[2].to })
    local s = assert(c:status(msgs[1].id))
    assert.same({ msgs[1].id, "sent", "send", false }, { s.id, s.state, s.raw, s.final })
    assert.equals("number", type(assert(c:balance()).balance))
    local many = assert(c:send_many({ { to = "79031234567", text = "a" },
                                      { to = "8613912345678", text = "b" } }))
    assert.matches("^%d+$", many[1][1].id)
    assert.equals("direction_closed", many[2].code)
    local map = assert(c:status_many({ msgs[1].id, "999" }))
    assert.equals("sent", map[msgs[1].id].state)
    assert.equals("not_found", map["999"].code)
    c:close()
  end)

  it("waits as the blocking client does: rounds until every id is final", function()
    fake.set{ auto_deliver = 0.15 }
    local c = client()
    local msgs = assert(c:send({ "79031234567", "79161234567" }, "Hi"))
    local map = assert(c:wait({ msgs[1].id, msgs[2].id, "999" }, { timeout = 10, interval = 0.05 }))
    assert.same({ "delivered", "delivered", "not_found" },
                { map[msgs[1].id].state, map[msgs[2].id].state, map["999"].code })
    -- A first round of 3, then rounds of the ids not delivered yet.
    assert.is_true(fake.stats().status_requests >= 5)
    helper.assert_fails(PASSWORD, "invalid", "interval", c:wait({ "1" }, { interval = -1 }))
    assert.has_error(function() c:wait({ "1" }, { timeout = "5" }) end,
                     "bad argument #2 to 'wait' ('timeout' must be a number)")
    c:close()
  end)

  it("keeps one connection for many calls", function()
    local c = client()
    for _ = 1, 5 do assert(c:balance()) end
    assert.equals(1, fake.stats().connections)
    assert.same({ 1, 4 }, { c:stats().connections_opened, c:stats().connections_reused })
    c:close()
  end)

  it("answers a gateway refusal with its code, and invalid values before anything is sent", function()
    local c = client()
    fake.set{ body = "Flood SMS" }
    helper.assert_fails(PASSWORD, "flood", "Flood", c:send("79031234567", "Hi"))
    fake.set{ body = false }
    helper.assert_fails(PASSWORD, "invalid", "sendr", c:send("79031234567", "Hi", { sendr = "x" }))
    helper.assert_fails(PASSWORD, "invalid", "item 2",
                        c:send_many({ { to = "79031234567", text = "a" }, { to = "x", text = "b" } }))
    assert.equals(1, fake.stats().requests)
    c:close()
  end)

  it("retries a status after a timeout, but never a send once it may have left", function()
    local c = client({ timeout = 0.3, retries = 1 })
    fake.set{ latency = 1 }
    helper.assert_fails(PASSWORD, "timeout", "timeout", c:balance())
    assert.equals(2, fake.stats().requests)
    fake.reset()
    fake.set{ latency = 1 }
    local ok, err, code = c:send("79031234567", "Hi")
    helper.assert_fails(PASSWORD, "timeout", "outcome is unknown", ok, err, code)
    assert.equals(1, fake.stats().requests)
    c:close()
    -- The fake still holds the send for its latency: let it end here, not
    -- in a later spec's fake (it would take that spec's first id).
    fake.wait_for(function(s) return s.in_flight == 0 end, 3)
  end)

  it("retries a send whose connection was refused: it never left", function()
    local c = client({ url = "http://127.0.0.1:1/get/", retries = 2 })
    helper.assert_fails(PASSWORD, "connect", "connect", c:send("79031234567", "Hi"))
    assert.equals(2, c:stats().retries)
    c:close()
  end)

  it("calls on_request with the redacted url, and streams on_result", function()
    local seen, results = {}, {}
    local c = client({ on_request = function(info) seen[#seen + 1] = info end })
    assert(c:send_many({ { to = "79031234567", text = "a" }, { to = "79161234567", text = "b" } },
                       { on_result = function(i, r) results[i] = r end }))
    assert.equals(2, #seen)
    assert.matches("pwd=%*%*%*", seen[1].url)
    helper.assert_no_secret(seen[1].url, PASSWORD)
    assert.matches("^%d+$", results[2][1].id)
    c:close()
  end)
end)

describe("the driver interface itself", function()
  lazy_setup(function() fake.start() end)
  before_each(function() fake.reset() end)

  local function core()
    return assert(st._driven{ user = "rich", password = PASSWORD, url = fake.url, retries = 0 })
  end

  -- A parser holding a whole 200 answer with this body.
  function feed_answer(body)
    local p = st._http_response(1000)
    local state = p:feed("HTTP/1.1 200 OK\r\nContent-Length: " .. #body .. "\r\n\r\n" .. body)
    return state == "done" and p or nil
  end

  it("refuses the blocking methods on a driven client, and _begin on a blocking one", function()
    local c = core()
    assert.has_error(function() c:balance() end)
    local b = assert(st.new{ user = "rich", password = PASSWORD, url = fake.url })
    assert.has_error(function() b:_begin("balance") end)
    b:close()
    c:close()
  end)

  it("hands out a job, and raises for a job that is not running", function()
    local c = core()
    local run = assert(c:_begin("balance"))
    local what, job, url = run:next()
    assert.equals("start", what)
    assert.matches("balance=1", url)
    assert.has_error(function() run:answer(job + 1, 200, "1") end)
    assert.has_error(function() run:result() end)
    run:answer(job, 200, "12.5")
    assert.equals("done", run:next())
    assert.equals(12.5, run:result().balance)
    assert.has_error(function() run:answer(job, 200, "1") end)
    c:close()
  end)

  it("waits for a closed client until its runs end", function()
    local c = core()
    local run = assert(c:_begin("balance"))
    local _, job = run:next()
    c:close()
    run:fail(job, "network", "gone", true)
    assert.equals("done", run:next())
    helper.assert_fails(PASSWORD, "network", "gone", run:result())
    assert.equals("closed", select(3, c:_begin("balance")))
  end)

  it("frees a run dropped midway, and the client's next run works", function()
    local c = core()
    local run = assert(c:_begin("send_many", { { to = "79031234567", text = "a" },
                                              { to = { "79161234567", "79261234567" }, text = "b" } }))
    assert.equals("start", (run:next()))
    assert.equals("start", (run:next()))
    run:close()
    assert.has_error(function() run:next() end)
    collectgarbage()
    local again = assert(c:_begin("balance"))
    local what, job = again:next()
    assert.equals("start", what)
    again:answer(job, 200, "7")
    assert.equals("done", again:next())
    assert.equals(7, again:result().balance)
    c:close()
  end)

  it("pauses a wait between rounds as a timed wait, and ends it at the timeout", function()
    local c = core()
    local run = assert(c:_begin("wait", { "1000000001" }, { timeout = 1.5, interval = 0 }))
    local what, job = run:next_request()
    assert.equals("start", what)
    assert.is_not_nil(run:answer_http(job, assert(feed_answer("send")), 0))
    local step, seconds = run:next_request()
    assert.equals("wait", step)
    assert.is_true(seconds > 0.9 and seconds <= 1, "the minimum interval is 1 s: " .. seconds)
    assert.equals("wait", (run:next_request())) -- asking early changes nothing
    require("socket").sleep(seconds)
    assert.equals("start", (run:next_request())) -- the second round
    run:close()
    c:close()
  end)

  it("stops starting jobs once its client is closed; those in flight end", function()
    local c = core()
    local items = {}
    for i = 1, 3 do items[i] = { to = "79031234567", text = "m" .. i } end
    local run = assert(c:_begin("send_many", items))
    local _, job = run:next_request()
    c:close()
    run:answer_http(job, assert(feed_answer("1000000001")), 0)
    assert.equals("done", run:next_request())
    local res = run:result()
    assert.equals("1000000001", res[1][1].id)
    assert.same({ "closed", "closed" }, { res[2].code, res[3].code })
  end)

  it("reports every item once when stopped: a part never started is closed, an item never started too", function()
    local c = assert(st._driven{ user = "rich", password = PASSWORD, url = fake.url, retries = 0,
                                 concurrency = 1 })
    local many = {}
    for i = 1, 300 do many[i] = string.format("7903%07d", i) end -- more than one URL holds
    local called = {}
    local run = assert(c:_begin("send_many", { { to = many, text = "a" }, { to = "79161234567", text = "b" } },
                                { on_result = function(i) called[#called + 1] = i end }))
    local what, job, url = run:next()
    assert.equals("start", what)
    local _, sent_here = url:gsub("%%2C", "")
    assert.is_true(sent_here + 1 < #many, "the item takes more than one request")
    c:close()
    local ids = {}
    for i = 1, sent_here + 1 do ids[i] = tostring(1000000000 + i) end
    run:answer(job, 200, table.concat(ids, "\n"))
    assert.equals("done", run:next())
    local res = run:result()
    assert.equals(#many, #res[1])
    assert.equals("1000000001", res[1][1].id)
    assert.equals("closed", res[1][#many].code)
    assert.same({ err = "client is closed", code = "closed", sent = false }, res[2])
    assert.same({ 1 }, called) -- on_result follows answers: the item never started has none
  end)

  it("says when a started job is all the run can do, and ends with the result", function()
    local c = assert(st._driven{ user = "rich", password = PASSWORD, url = fake.url, retries = 0,
                                 concurrency = 2 })
    local run = assert(c:_begin("balance"))
    local what, job, request, host, port, tls, full = run:next_request("spec/1")
    assert.same({ "start", "127.0.0.1", false, true }, { what, host, tls, full })
    assert.matches("^GET /get/%?user=rich&pwd=.-&balance=1 HTTP/1%.1\r\n", request)
    assert.matches("\r\nUser%-Agent: spec/1\r\n", request)
    assert.equals(fake.port, port)
    assert.is_true(run:answer_http(job, feed_answer("12.5")))
    local done, r = run:next_request()
    assert.equals("done", done)
    assert.equals(12.5, r.balance)
    assert.equals("done", (run:next_request())) -- later calls: "done" alone
    assert.equals(12.5, run:result().balance)
    -- Two items at concurrency 2: the first start leaves room for the second.
    local many = assert(c:_begin("send_many", { { to = "79031234567", text = "a" },
                                                { to = "79161234567", text = "b" } }))
    assert.is_false(select(7, many:next_request()))
    assert.is_true(select(7, many:next_request()))
    many:close()
    c:close()
  end)

  it("raises a callback's error once, then says the run ended with it", function()
    local c = core()
    local run = assert(c:_begin("status_many", { "1000000001" },
                                { on_result = function() error("boom") end }))
    local _, job = run:next_request()
    run:answer_http(job, feed_answer("deliver"))
    assert.has_error(function() run:next_request() end, "boom")
    assert.has_error(function() run:result() end,
                     "streamtelecom: the run ended with an error, raised already")
    c:close()
  end)

  it("fails a job whose URL cannot be framed, before anything is sent", function()
    local c = assert(st._driven{ user = "rich", password = PASSWORD, retries = 0,
                                 url = fake.url:gsub("^http://", "http://someone@") })
    local run = assert(c:_begin("balance"))
    assert.equals("done", run:next_request())
    local ok, err, code = run:result()
    assert.is_nil(ok)
    assert.equals("network", code)
    assert.matches("user", err)
    assert.equals(0, fake.stats().requests)
    c:close()
  end)

  describe("a shared rate (rate_slot)", function()
    local function rated(slot)
      return assert(st._driven{ user = "rich", password = PASSWORD, url = fake.url, retries = 0,
                                rate = 10, concurrency = 4, rate_slot = slot })
    end
    local function items(n)
      local list = {}
      for i = 1, n do list[i] = { to = "79031234567", text = "m" .. i } end
      return list
    end

    it("asks the hook once per request, with the interval, and waits for the slot it answers", function()
      local asked = {}
      local delays = { 0, 0.5 }
      local c = rated(function(interval)
        asked[#asked + 1] = interval
        return delays[#asked] or 0
      end)
      local run = assert(c:_begin("send_many", items(2)))
      local what = run:next_request()
      assert.equals("start", what) -- the first slot is now
      local step, seconds = run:next_request()
      assert.equals("wait", step)  -- the second is the hook's, not the engine's 0.1 s
      assert.is_true(seconds > 0.4 and seconds <= 0.5, "waits for the shared slot: " .. tostring(seconds))
      assert.equals("wait", (run:next_request())) -- a reserved slot is not asked for again
      assert.same({ 0.1, 0.1 }, asked)
      run:close()
      c:close()
    end)

    it("lets the request go when the hook raises, yields or answers no number", function()
      for _, slot in ipairs{ function() error("shared dict gone") end,
                             function() coroutine.yield() end,
                             function() return "soon" end,
                             function() return 0 / 0 end } do
        local c = rated(slot)
        local run = assert(c:_begin("balance"))
        assert.equals("start", (run:next_request()))
        run:close()
        c:close()
      end
    end)

    it("is refused by st.new and must be a function", function()
      local ok, err, code = st.new{ user = "rich", password = PASSWORD, url = fake.url,
                                    rate_slot = function() return 0 end }
      assert.is_nil(ok)
      assert.equals("invalid", code)
      assert.matches("unknown option 'rate_slot'", err)
      ok, err, code = st._driven{ user = "rich", password = PASSWORD, url = fake.url, rate_slot = 5 }
      assert.is_nil(ok)
      assert.equals("invalid", code)
      assert.matches("want a function", err)
    end)

    it("cannot reach the run from inside the hook", function()
      local run, tried
      local c = rated(function()
        local ok1, err1 = pcall(run.next_request, run)
        local ok2, err2 = pcall(run.close, run)
        tried = { ok1, err1, ok2, err2 }
        return 0
      end)
      run = assert(c:_begin("balance"))
      assert.equals("start", (run:next_request()))
      assert.is_false(tried[1])
      assert.matches("cannot be called from its own callbacks", tried[2])
      assert.is_false(tried[3])
      assert.matches("cannot be called from the run.s own callbacks", tried[4])
      run:close()
      c:close()
    end)
  end)

  describe("a run's own callbacks", function()
    local GUARD = "cannot be called from"

    -- A run whose on_request (of its client) and on_result try `attack`.
    local function attacked(attack)
      local raised = {}
      local run
      local c = assert(st._driven{ user = "rich", password = PASSWORD, url = fake.url,
                                   retries = 0, on_request = function()
                                     local ok, err = pcall(attack, run)
                                     raised[#raised + 1] = ok and "no error" or err
                                   end })
      run = assert(c:_begin("balance"))
      return c, run, raised
    end

    for _, attack in ipairs{
      { "close", function(run) run:close() end },
      { "answer", function(run) run:answer(1, 200, "1") end },
      { "fail", function(run) run:fail(1, "network", "x", true) end },
      { "next", function(run) run:next() end },
      { "next_request", function(run) run:next_request() end },
      { "result", function(run) run:result() end },
    } do
      it("refuses run:" .. attack[1] .. "() from on_request; the run goes on unharmed", function()
        local c, run, raised = attacked(attack[2])
        local _, job = run:next()
        run:answer(job, 200, "12.5")
        assert.equals(1, #raised)
        assert.matches(GUARD, raised[1])
        assert.equals("done", run:next())
        assert.equals(12.5, run:result().balance)
        run:close()
        c:close()
      end)
    end

    it("refuses next() and close() from on_start and on_result: one request per item", function()
      local c = core()
      local run
      local raised = {}
      local function try(f)
        local ok, err = pcall(f)
        raised[#raised + 1] = ok and "no error" or err
      end
      run = assert(c:_begin("send_many", { { to = "79031234567", text = "a" },
                                          { to = "79161234567", text = "b" } },
        { on_start = function() try(function() run:next() end) end,
          on_result = function() try(function() run:close() end) end }))
      local jobs = 0
      while true do
        local what, job = run:next()
        if what == "start" then
          jobs = jobs + 1
          run:answer(job, 200, tostring(1000000000 + jobs))
        elseif what == "done" then break end
      end
      assert.equals(2, jobs)
      assert.equals(4, #raised)
      for _, err in ipairs(raised) do assert.matches(GUARD, err) end
      local res = run:result()
      assert.same({ "1000000001", "1000000002" }, { res[1][1].id, res[2][1].id })
      run:close()
      c:close()
    end)

    it("keeps its client's on_request when another run is driven from a callback", function()
      local seen = 0
      local c = assert(st._driven{ user = "rich", password = PASSWORD, url = fake.url,
                                   retries = 0, on_request = function() seen = seen + 1 end })
      local other = assert(c:_begin("balance"))
      local run = assert(c:_begin("send_many", { { to = "79031234567", text = "a" },
                                                { to = "79161234567", text = "b" } },
        { on_result = function() assert.equals("start", (other:next())) end }))
      for _ = 1, 2 do
        local _, job = run:next()
        run:answer(job, 200, "1000000001")
      end
      assert.equals("done", run:next())
      assert.equals(2, seen) -- both of the run's exchanges, though `other` armed and disarmed
      other:close()
      run:close()
      c:close()
    end)
  end)

  describe("an id with a NUL byte", function()
    local bad = "1234" .. string.char(0) .. "567"
    it("is invalid for a driven status, status_many and wait; nothing is started", function()
      local c = core()
      helper.assert_fails(PASSWORD, "invalid", "message id", c:_begin("status", bad))
      helper.assert_fails(PASSWORD, "invalid", "invalid id 2", c:_begin("status_many", { "1", bad }))
      helper.assert_fails(PASSWORD, "invalid", "invalid id 1", c:_begin("wait", { bad }))
      c:close()
    end)

    it("is invalid for the blocking status, status_many, wait and url; nothing is sent", function()
      local b = assert(st.new{ user = "rich", password = PASSWORD, url = fake.url })
      helper.assert_fails(PASSWORD, "invalid", "message id", b:status(bad))
      helper.assert_fails(PASSWORD, "invalid", "invalid id 1", b:status_many({ bad }))
      helper.assert_fails(PASSWORD, "invalid", "invalid id 1", b:wait({ bad }, { timeout = 1 }))
      helper.assert_fails(PASSWORD, "invalid", "message id", b:url("status", bad))
      assert.equals(0, fake.stats().requests)
      b:close()
    end)
  end)

  it("frames requests and parses answers in C", function()
    local target, request = st._http_request("http://127.0.0.1:8089/get/?a=1", "x/1", true)
    assert.same({ "127.0.0.1", 8089, false, "/get/?a=1" },
                { target.host, target.port, target.tls, target.target })
    assert.matches("^GET /get/%?a=1 HTTP/1.1\r\nHost: 127.0.0.1:8089\r\n", request)
    assert.is_nil((st._http_request("http://h/\r\nX: y")))
    local p = st._http_response(10)
    assert.equals("more", p:feed("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n1"))
    assert.equals("done", p:feed("23"))
    assert.same({ 200, "123", true }, { p:status(), p:body(), p:keep() })
    local big = st._http_response(2)
    local state, _, kind = big:feed("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n123")
    assert.same({ nil, "too_large" }, { state, kind })
  end)
end)
