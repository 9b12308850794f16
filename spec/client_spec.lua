local st = require("streamtelecom")
local fake = require("spec.fake")
local helper = require("spec.helper")

local function valid(extra)
  local o = { user = "test", password = "secret", url = "http://127.0.0.1:9/get/" }
  for k, v in pairs(extra or {}) do o[k] = v end
  return o
end

describe("st.new", function()
  it("makes a client from the two required options", function()
    local c = st.new{ user = "test", password = "secret" }
    assert.equals("userdata", type(c))
    c:close()
  end)

  it("accepts every option of the API", function()
    local c = assert(st.new(valid{
      sender = "MyShop", timeout = 1.5, connect_timeout = 0.5, verify = false,
      ca_file = "/etc/ssl/certs/ca-certificates.crt", ca_path = "/etc/ssl/certs",
      proxy = "http://127.0.0.1:3128", user_agent = "shop/1.0", retries = 0,
      concurrency = 4, max_response = 1024, rate = 10, on_request = function() end,
    }))
    c:close()
  end)

  local bad = {
    { "an unknown key", { colour = "red" } },
    { "a key that is not a string", { [1] = "x" } },
    { "a timeout given as a string", { timeout = "5" } },
    { "a user given as a number", { user = 42 } },
    { "an empty user", { user = "" } },
    { "an empty password", { password = "" } },
    { "a missing password", { password = false } },
    { "a negative timeout", { timeout = -1 } },
    { "a negative connect_timeout", { connect_timeout = -0.5 } },
    { "a NaN timeout", { timeout = 0 / 0 } },
    { "negative retries", { retries = -1 } },
    { "fractional retries", { retries = 1.5 } },
    { "a negative max_response", { max_response = -1 } },
    { "a concurrency of 0", { concurrency = 0 } },
    { "a rate of 0", { rate = 0 } },
    { "a negative rate", { rate = -2 } },
    { "verify given as a string", { verify = "no" } },
    { "on_request that is not a function", { on_request = true } },
    { "a url that is not http or https", { url = "ftp://example.org/" } },
    { "a url with nothing after the scheme", { url = "https://" } },
    { "a string option holding a NUL byte", { user_agent = "a\0b" } },
    { "a sender that is too long", { sender = "ABCDEFGHIJKL" } },
  }
  for _, case in ipairs(bad) do
    it("answers invalid for " .. case[1], function()
      local opts = valid(case[2])
      if case[2].password == false then opts.password = nil end
      local c, err, code = st.new(opts)
      assert.is_nil(c)
      assert.equals("invalid", code)
      assert.matches("option", err)
      helper.assert_no_secret(err, "secret")
    end)
  end

  it("refuses a time over an hour as milliseconds taken for seconds, naming the unit", function()
    for _, key in ipairs{ "timeout", "connect_timeout" } do
      local c, err, code = st.new(valid{ [key] = 60000 })
      assert.is_nil(c)
      assert.equals("invalid", code)
      assert.matches("'" .. key .. "': 60000 seconds is over an hour", err, 1, true)
      assert.matches("not milliseconds", err, 1, true)
      assert(st.new(valid{ [key] = 3600 })):close()
    end
  end)

  it("raises when the options are not a table", function()
    assert.has_error(function() st.new("test") end)
    assert.has_error(function() st.new() end)
  end)
end)

describe("st.errors", function()
  it("holds exactly the 18 codes, each mapped to itself", function()
    local codes = { "auth", "blocked", "direction_closed", "no_sender", "no_text",
      "unknown_sender", "no_phone", "flood", "not_found", "gateway", "invalid", "timeout",
      "connect", "tls", "http", "too_large", "network", "closed" }
    local expected = {}
    for _, code in ipairs(codes) do expected[code] = code end
    assert.same(expected, st.errors)
  end)
end)

describe("a client's life", function()
  lazy_setup(function() fake.start() end)
  before_each(function() fake.reset() end)

  it("names user and url in tostring, never the password", function()
    local c = assert(st.new{ user = "test", password = "s3cr3t-pw", url = fake.url })
    local shown = tostring(c)
    assert.matches("^streamtelecom%.client: ", shown)
    assert.matches("test", shown, 1, true)
    assert.matches(fake.url, shown, 1, true)
    helper.assert_no_secret(shown, "s3cr3t-pw")
    c:close()
    assert.matches("%(closed%)$", tostring(c))
    helper.assert_no_secret(tostring(c), "s3cr3t-pw")
  end)

  it("answers closed from every method after close, and sends nothing", function()
    local c = assert(st.new{ user = "test", password = "secret", sender = "MyShop", url = fake.url })
    assert.is_true(c:close())
    for _, call in ipairs({
      function() return c:send("79031234567", "Hi") end,
      function() return c:status("1000000001") end,
      function() return c:balance() end,
      function() return c:wait({ "1000000001" }) end,
      function() return c:url("balance") end,
      function() return c:stats() end,
    }) do
      local ok, err, code = call()
      assert.is_nil(ok)
      assert.equals("closed", code)
      assert.equals("client is closed", err)
    end
    assert.equals(0, fake.stats().requests)
  end)

  it("can be closed twice", function()
    local c = assert(st.new{ user = "test", password = "secret" })
    c:close()
    assert.has_no_error(function() c:close() end)
  end)

  it("still raises for wrong argument types once closed", function()
    local c = assert(st.new{ user = "test", password = "secret" })
    c:close()
    assert.has_error(function() c:send(nil, "Hi") end)
    assert.has_error(function() c:status({}) end)
  end)

  it("refuses a method called on something that is not a client", function()
    local c = assert(st.new{ user = "test", password = "secret" })
    assert.has_error(function() c.balance({}) end)
    c:close()
  end)

  if _VERSION == "Lua 5.4" then
    it("closes at the end of a <close> scope", function()
      local chunk = assert(load([[
        local st, url = ...
        local kept
        do
          local c <close> = assert(st.new{ user = "test", password = "secret", url = url })
          kept = c
        end
        return kept
      ]]))
      local c = chunk(st, fake.url)
      assert.matches("%(closed%)$", tostring(c))
    end)
  end

  it("survives many clients made and dropped without close", function()
    for _ = 1, 200 do
      local c = assert(st.new{ user = "test", password = "secret", url = fake.url })
      assert(c:balance())
    end
    collectgarbage()
    collectgarbage()
    local c = assert(st.new{ user = "test", password = "secret", url = fake.url })
    assert(c:balance())
    c:close()
  end)

  it("counts requests, failures, retries and connections in stats", function()
    local c = assert(st.new{ user = "test", password = "secret", sender = "MyShop", url = fake.url })
    assert(c:balance())
    assert(c:send("79031234567", "Hi"))
    c:status("123")
    local s = c:stats()
    assert.equals(3, s.requests)
    assert.same({ not_found = 1 }, s.failures)
    assert.equals(0, s.retries)
    assert.equals(1, s.connections_opened)
    assert.equals(2, s.connections_reused)
    assert.is_true(s.seconds_total >= s.seconds_max and s.seconds_max > 0)
  end)

  -- A bulk call's idle handles are freed when it ends (memory back), but
  -- its connections stay with the client for the next call.
  it("reuses a bulk call's connections in the next one", function()
    fake.set{ latency = 0.05 }
    local c = assert(st.new{ user = "test", password = "secret", sender = "MyShop",
                             url = fake.url, concurrency = 8 })
    local items = {}
    for i = 1, 16 do items[i] = { to = ("7903%07d"):format(i), text = "m" .. i } end
    assert(c:send_many(items))
    local opened = c:stats().connections_opened
    assert.is_true(opened > 4, "the first call ran in parallel")
    assert(c:send_many(items))
    assert(c:balance())
    assert.equals(opened, c:stats().connections_opened)
    assert.equals(opened, fake.stats().connections)
    c:close()
  end)
end)

describe("client:wait", function()
  lazy_setup(function() fake.start() end)
  before_each(function() fake.reset() end)

  it("polls until every id is final", function()
    fake.set{ auto_deliver = 0.15 }
    local c = assert(st.new{ user = "test", password = "secret", sender = "MyShop", url = fake.url })
    local msgs = assert(c:send("79031234567,79161234567", "Hi"))
    local map = c:wait({ msgs[1].id, msgs[2].id }, { timeout = 10, interval = 0.05 })
    assert.equals("delivered", map[msgs[1].id].state)
    assert.equals("delivered", map[msgs[2].id].state)
    assert.is_true(fake.stats().status_requests >= 4)
  end)

  it("answers the last known states when the time is up", function()
    local c = assert(st.new{ user = "test", password = "secret", sender = "MyShop", url = fake.url })
    local id = assert(c:send("79031234567", "Hi"))[1].id
    local map = c:wait({ id, "42" }, { timeout = 0, interval = 1 })
    assert.equals("sent", map[id].state)
    assert.equals("not_found", map["42"].code)
  end)
end)
