local fake = require("spec.fake")
local helper = require("spec.helper")

local client = helper.rich_client

local function phone(i) return string.format("7903%07d", i) end

describe("client:send_many", function()
  lazy_setup(function() fake.start() end)
  before_each(function() fake.reset() end)

  it("answers each item exactly as send would, in the order given", function()
    local items = {}
    for i = 1, 30 do items[i] = { to = phone(i), text = "Hi " .. i } end
    local results = client():send_many(items)
    assert.equals(30, #results)
    local seen = {}
    for i, res in ipairs(results) do
      assert.equals(1, #res)
      assert.equals(phone(i), res[1].to)
      assert.matches("^%d+$", res[1].id)
      assert.is_nil(seen[res[1].id], "an id given twice")
      seen[res[1].id] = true
    end
    -- the gateway recorded each text for its own number, whatever the order
    local sends = fake.sends()
    assert.equals(30, #sends)
    for _, s in ipairs(sends) do
      assert.equals("Hi " .. tonumber(s.dadr:sub(5)), s.text)
    end
  end)

  it("keeps at most `concurrency` requests in flight, and reaches it", function()
    fake.set{ latency = 0.1 }
    local items = {}
    for i = 1, 12 do items[i] = { to = phone(i), text = "x" .. i } end
    client({ concurrency = 4 }):send_many(items)
    assert.equals(4, fake.stats().max_in_flight)
  end)

  -- libcurl names the sockets to watch; one poll() waits on them all and
  -- libcurl acts on the ready ones. Asking it to check every transfer
  -- instead cost one poll() per transfer at each wake-up: 14 to 16 calls a
  -- request here, against 2 to 3 now.
  it("waits on all its sockets at once, not on each in turn (strace)", function()
    fake.set{ latency = 0.05 }
    local calls, summary = helper.count_syscalls([[
local st = require("streamtelecom")
local c = assert(st.new{ user = "rich", password = arg[2], url = arg[1], sender = "MyShop",
                         concurrency = 100 })
local items = {}
for i = 1, 400 do items[i] = { to = string.format("7903%07d", i), text = "x" .. i } end
for i, res in ipairs(assert(c:send_many(items))) do assert(res[1].id, i) end
c:close()
]], { fake.url, helper.RICH_PASSWORD }, "poll")
    assert.equals(400, fake.stats().send_requests)
    assert.is_true(calls < 4 * 400, "poll() calls for 400 requests: " .. calls .. "\n" .. summary)
  end)

  it("reuses its connections across calls", function()
    fake.set{ latency = 0.05 }
    local c = client({ concurrency = 5 })
    local items = {}
    for i = 1, 10 do items[i] = { to = phone(i), text = "x" .. i } end
    c:send_many(items)
    c:send_many(items)
    assert.is_true(fake.stats().connections <= 5)
    assert.equals(20, fake.stats().send_requests)
    assert.equals(20 - fake.stats().connections, c:stats().connections_reused)
  end)

  it("gives a failing item its error record without stopping the rest", function()
    local results = client():send_many({
      { to = phone(1), text = "ok" },
      { to = "99031234567", text = "closed direction" },
      { to = phone(3), text = "ok too", sender = "Stranger" },
      { to = { phone(4), phone(5) }, text = "two", name = "campaign" },
    })
    assert.equals(phone(1), results[1][1].to)
    assert.equals("direction_closed", results[2].code)
    assert.matches("Данное направление закрыто", results[2].err)
    assert.equals("unknown_sender", results[3].code)
    assert.equals(2, #results[4])
    assert.is_string(results[4][2].id)
    assert.equals("campaign", fake.sends()[#fake.sends()].name_deliver or "campaign")
  end)

  it("answers invalid naming the bad item, and sends nothing", function()
    local cases = {
      { { { to = phone(1), text = "ok" }, { to = "abc", text = "x" } }, "item 2" },
      { { { to = phone(1), text = "ok" }, { to = phone(2) } }, "item 2" },
      { { { to = phone(1), text = "" } }, "item 1" },
      { { { to = phone(1), text = "ok" }, "not a table" }, "item 2" },
      { { { to = 7903123456.5, text = "fraction" } }, "item 1" },
      { { { to = phone(1), text = "ok", sendr = "Other" } }, "item 1" },
      { { { to = phone(1), text = "ok", sender = "Way Too Long Sender" } }, "item 1" },
      { { { to = phone(1), text = "ok" }, { to = phone(2), text = "a\0b" } },
        "item 2: invalid text: it holds a NUL byte" },
      { { { to = phone(1), text = "ok", name = "a\0b" } }, "item 1" },
      { { { to = phone(1), text = "ok", sender = "" } }, "item 1" },
      { { { to = phone(1), text = "Your code is \255" } }, "item 1: invalid text: it is not valid UTF-8" },
    }
    for _, case in ipairs(cases) do
      local ok, err, code = client():send_many(case[1])
      assert.is_nil(ok)
      assert.equals("invalid", code)
      assert.matches(case[2], err, 1, true)
      helper.assert_no_secret(err, "p&ss=w%rd+?")
    end
    assert.equals(0, fake.stats().requests)
  end)

  it("does not retry a send that reached the gateway, per item", function()
    fake.set{ http_status = 503, http_count = 1 }
    local results = client({ concurrency = 1, retries = 3 }):send_many({
      { to = phone(1), text = "first" }, { to = phone(2), text = "second" },
    })
    assert.equals("http", results[1].code)
    assert.is_string(results[2][1].id)
    assert.equals(2, #fake.sends())
  end)

  it("answers an empty list with an empty list", function()
    assert.same({}, client():send_many({}))
  end)

  it("raises for a list that is not a table", function()
    local c = client()
    assert.has_error(function() c:send_many("79031234567") end)
  end)
end)

describe("client:status_many", function()
  lazy_setup(function() fake.start() end)
  before_each(function() fake.reset() end)

  it("answers a map from each id to its status record", function()
    local c = client()
    local msgs = assert(c:send({ phone(1), phone(2), phone(3) }, "Hi"))
    fake.deliver(msgs[2].id, "deliver")
    local map = c:status_many({ msgs[1].id, msgs[2].id, msgs[3].id, "42" })
    assert.equals("sent", map[msgs[1].id].state)
    assert.same({ id = msgs[2].id, state = "delivered", raw = "deliver", final = true },
      map[msgs[2].id])
    assert.equals("not_found", map["42"].code)
    assert.equals(4, fake.stats().status_requests)
  end)

  it("asks once for an id listed twice", function()
    local c = client()
    local id = assert(c:send(phone(1), "Hi"))[1].id
    local map = c:status_many({ id, id })
    assert.equals("sent", map[id].state)
    assert.equals(1, fake.stats().status_requests)
  end)

  it("runs the requests in parallel", function()
    fake.set{ latency = 0.1 }
    local ids = {}
    for i = 1, 6 do ids[i] = tostring(1000 + i) end
    client({ concurrency = 6 }):status_many(ids)
    assert.equals(6, fake.stats().max_in_flight)
  end)

  it("still answers the map on a transport failure, with an error record per id", function()
    local c = client({ url = "http://127.0.0.1:1/get/", retries = 0 })
    local map = c:status_many({ "1", "2" })
    assert.equals("connect", map["1"].code)
    assert.equals("connect", map["2"].code)
    helper.assert_no_secret(map["1"].err, "p&ss=w%rd+?")
  end)

  it("answers invalid naming a bad id, and asks nothing", function()
    local ok, err, code = client():status_many({ "1", "x2" })
    assert.is_nil(ok)
    assert.equals("invalid", code)
    assert.matches("id 2", err, 1, true)
    assert.equals(0, fake.stats().requests)
  end)

  it("raises for an id that is not a string", function()
    local c = client()
    assert.has_error(function() c:status_many({ "1", 2 }) end)
    assert.has_error(function() c:status_many("1") end)
  end)
end)

describe("the rate option", function()
  lazy_setup(function() fake.start() end)
  before_each(function() fake.reset() end)

  it("spaces the requests of a bulk send", function()
    local items = {}
    for i = 1, 6 do items[i] = { to = phone(i), text = "r" .. i } end
    client({ rate = 50, concurrency = 10 }):send_many(items)
    -- The gateway's own clock: 6 requests at 50 a second span at least five
    -- intervals (0.1 s); without the limit they arrive within milliseconds.
    -- A lower bound only, so a slow machine cannot make it fail.
    local sends = fake.sends()
    assert.equals(6, #sends)
    local span = sends[6].time - sends[1].time
    assert.is_true(span >= 0.08, "rate 50/s let 6 requests through in " .. span .. " s")
  end)
end)
