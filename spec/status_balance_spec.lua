local st = require("streamtelecom")
local fake = require("spec.fake")
local helper = require("spec.helper")

local function client()
  return assert(st.new{ user = "test", password = "secret", sender = "MyShop", url = fake.url })
end

local function sent_id(c)
  return assert(c:send("79031234567", "Hi " .. math.random(1e9)))[1].id
end

describe("client:status", function()
  lazy_setup(function() fake.start() end)
  before_each(function() fake.reset() end)

  local states = {
    { "deliver", "delivered", true },
    { "not_deliver", "undelivered", true },
    { "expired", "expired", true },
    { "read", "read", true },
    { "partly_deliver", "partly_delivered", false },
    { "send", "sent", false },
    { "queued_somewhere", "unknown", false },
  }
  for _, case in ipairs(states) do
    it("reads '" .. case[1] .. "' as " .. case[2] .. (case[3] and ", final" or ", not final"), function()
      local c = client()
      local id = sent_id(c)
      fake.deliver(id, case[1])
      assert.same({ id = id, state = case[2], raw = case[1], final = case[3] }, assert(c:status(id)))
    end)
  end

  it("gives the time of the last update where the gateway puts one", function()
    fake.set{ status_time = true }
    local c = client()
    local id = sent_id(c)
    fake.deliver(id, "deliver", "2026-11-25 10:11:12")
    local s = assert(c:status(id))
    assert.equals("delivered", s.state)
    assert.equals("2026-11-25 10:11:12", s.updated)
  end)

  it("answers not_found for an id the gateway never accepted", function()
    local ok, err, code = client():status("123456789")
    assert.is_nil(ok)
    assert.equals("not_found", code)
    assert.matches("Сообщение с таким ID не принималось", err)
  end)

  it("answers gateway for an answer that is not a single lower-case word", function()
    local c = client()
    local id = sent_id(c)
    fake.set{ body = "Deliver!" }
    local ok, err, code = c:status(id)
    assert.is_nil(ok)
    assert.equals("gateway", code)
    assert.matches("Deliver!", err, 1, true)
  end)

  it("answers invalid for an id that is not decimal, and asks nothing", function()
    local ok, err, code = client():status("12ab")
    assert.is_nil(ok)
    assert.equals("invalid", code)
    assert.matches("id", err)
    assert.equals(0, fake.stats().requests)
  end)

  it("raises for an id that is not a string", function()
    local c = client()
    assert.has_error(function() c:status({}) end)
    assert.has_error(function() c:status(nil) end)
    assert.has_error(function() c:status(1000000001) end)
  end)
end)

describe("client:balance", function()
  lazy_setup(function() fake.start() end)
  before_each(function() fake.reset() end)

  it("answers the balance as a number and the raw answer", function()
    assert.same({ balance = 100, raw = "100.00" }, assert(client():balance()))
  end)

  it("goes down by the price of each part sent", function()
    local c = client()
    assert(c:send("79031234567,79161234567", "Hi"))
    assert.same({ balance = 97, raw = "97.00" }, assert(c:balance()))
  end)

  it("reads a comma as decimal separator and a currency word", function()
    fake.balance("test", 100.01)
    fake.set{ balance_format = "comma_currency" }
    assert.same({ balance = 100.01, currency = "RUR", raw = "100,01 RUR" }, assert(client():balance()))
  end)

  it("answers auth for a wrong password and never shows the password", function()
    local c = assert(st.new{ user = "test", password = "wrong-secret", url = fake.url })
    local ok, err, code = c:balance()
    assert.is_nil(ok)
    assert.equals("auth", code)
    assert.equals("gateway refused: Неправильный логин или пароль", err)
    helper.assert_no_secret(err, "wrong-secret")
  end)

  it("answers blocked for a blocked account", function()
    local c = assert(st.new{ user = "blocked", password = "secret", url = fake.url })
    local _, _, code = c:balance()
    assert.equals("blocked", code)
  end)

  it("answers gateway for an unreadable answer, quoting it", function()
    fake.set{ body = "balance: lots" }
    local ok, err, code = client():balance()
    assert.is_nil(ok)
    assert.equals("gateway", code)
    assert.matches("balance: lots", err, 1, true)
  end)
end)
