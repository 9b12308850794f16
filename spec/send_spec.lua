local st = require("streamtelecom")
local fake = require("spec.fake")
local helper = require("spec.helper")

local function client(opts)
  return helper.client({ user = "test", password = "secret", sender = "MyShop", url = fake.url },
                       opts)
end

-- A failing call: nil, an English sentence, the code; and nothing leaked.
local function assert_failure(...) return helper.assert_fails("secret", ...) end

describe("client:send", function()
  lazy_setup(function() fake.start() end)
  before_each(function() fake.reset() end)

  it("answers one record with the gateway's id for one recipient", function()
    local msgs = assert(client():send("79031234567", "Hello"))
    assert.same({ { to = "79031234567", id = "1000000001" } }, msgs)
    assert.equals(1, #fake.sends())
  end)

  it("keeps recipient order for a comma-separated string", function()
    local msgs = assert(client():send("79031234567,79161234567,375291234567", "Hi"))
    assert.same({ "79031234567", "79161234567", "375291234567" },
      { msgs[1].to, msgs[2].to, msgs[3].to })
    assert.same({ "1000000001", "1000000002", "1000000003" },
      { msgs[1].id, msgs[2].id, msgs[3].id })
    assert.equals("79031234567,79161234567,375291234567", fake.sends()[1].dadr)
  end)

  it("normalises numbers written with spaces, +, -, ( and )", function()
    local msgs = assert(client():send({ "+7 (903) 123-45-67", "7 916 123 45 67" }, "Hi"))
    assert.same({ "79031234567", "79161234567" }, { msgs[1].to, msgs[2].to })
    assert.equals("79031234567,79161234567", fake.sends()[1].dadr)
  end)

  it("delivers a text holding &, =, %, +, a newline, Cyrillic and emoji verbatim", function()
    local text = "a&b=c%20d+e\n&pwd=x Привет, мир! 😀"
    assert(client():send("79031234567", text))
    assert.equals(text, fake.sends()[1].text)
  end)

  it("uses the client's sender, and another one per send", function()
    local c = client()
    assert(c:send("79031234567", "one"))
    assert(c:send("79031234567", "two", { sender = "Other" }))
    local sends = fake.sends()
    assert.same({ "MyShop", "Other" }, { sends[1].sadr, sends[2].sadr })
  end)

  it("passes callback_url and name as callback_url and name_deliver", function()
    assert(client():send("79031234567", "Hi",
      { callback_url = "https://example.org/dlr?a=1&b=2", name = "Black Friday" }))
    local sent = fake.sends()[1]
    assert.equals("https://example.org/dlr?a=1&b=2", sent.callback_url)
    assert.equals("Black Friday", sent.name_deliver)
  end)

  it("splits a long recipient list over several requests and keeps the order", function()
    local to = {}
    for i = 1, 400 do to[i] = string.format("7903%07d", i) end
    local urls = {}
    local c = assert(st.new{ user = "rich", password = "p&ss=w%rd+?", sender = "MyShop",
                             url = fake.url,
                             on_request = function(info) urls[#urls + 1] = info.url end })
    local msgs = assert(c:send(to, "Sale"))
    -- on_request shows pwd=***; the real URL carries the encoded password.
    local extra = #"p%26ss%3Dw%25rd%2B%3F" - #"***"
    for _, url in ipairs(urls) do
      assert.is_true(#url + extra <= 2000, "a request URL is " .. (#url + extra) .. " bytes")
    end
    assert.equals(400, #msgs)
    local sends = fake.sends()
    assert.is_true(#sends > 1)
    local all = {}
    for _, s in ipairs(sends) do
      for n in s.dadr:gmatch("%d+") do all[#all + 1] = n end
    end
    assert.same(to, all)
    for i, m in ipairs(msgs) do
      assert.equals(to[i], m.to)
      assert.equals(tostring(1000000000 + i), m.id)
    end
  end)

  describe("refused by the gateway", function()
    it("answers auth for a wrong password, keeping the Russian text", function()
      assert_failure("auth", "^gateway refused: Неправильный логин или пароль$",
        client({ password = "wrong" }):send("79031234567", "Hi"))
    end)

    it("answers blocked for a blocked account", function()
      assert_failure("blocked", "Ваш аккаунт заблокирован",
        client({ user = "blocked" }):send("79031234567", "Hi"))
    end)

    it("answers direction_closed for a closed direction", function()
      assert_failure("direction_closed", "Данное направление закрыто",
        client():send("99031234567", "Hi"))
    end)

    it("answers direction_closed when the money has run out", function()
      assert_failure("direction_closed", "Данное направление закрыто",
        client({ user = "poor" }):send("79031234567", "Hi"))
    end)

    it("answers no_sender when no sender is set anywhere", function()
      local c = assert(st.new{ user = "test", password = "secret", url = fake.url })
      assert_failure("no_sender", "Нет отправителя", c:send("79031234567", "Hi"))
    end)

    it("answers unknown_sender for a sender the account does not have", function()
      assert_failure("unknown_sender", "Такого отправителя нет",
        client({ sender = "Stranger" }):send("79031234567", "Hi"))
    end)

    it("answers flood for the same text to the same number again and again", function()
      local c = client()
      for _ = 1, 3 do assert(c:send("79031234567", "same")) end
      assert_failure("flood", "Flood SMS", c:send("79031234567", "same"))
    end)

    it("gives every recipient of a refused request the refusal, in order", function()
      fake.set{ flood_limit = 1 }
      local c = client({ user = "rich", password = "p&ss=w%rd+?" })
      assert(c:send("79031234567", "again"))
      local to = {}
      for i = 1, 300 do to[i] = string.format("7916%07d", i) end
      to[301] = "79031234567" -- lands in the last request, which is refused
      local msgs = assert(c:send(to, "again"))
      assert.equals(301, #msgs)
      assert.equals(to[1], msgs[1].to)
      assert.is_string(msgs[1].id)
      assert.equals("flood", msgs[301].code)
      assert.matches("Flood SMS", msgs[301].err)
      assert.is_nil(msgs[301].id)
    end)

    it("answers no_text and no_phone when the gateway says so", function()
      fake.set{ body = "Нет текста сообщения" }
      assert_failure("no_text", "Нет текста сообщения", client():send("79031234567", "Hi"))
      fake.set{ body = "Укажите номер телефона" }
      assert_failure("no_phone", "Укажите номер телефона", client():send("79031234567", "Hi"))
    end)
  end)

  describe("with a phone number given as a Lua number", function()
    it("sends to its decimal digits, alone or in a list", function()
      local msgs = assert(client():send(79031234567, "Hi"))
      assert.equals("79031234567", msgs[1].to)
      msgs = assert(client():send({ 79161234567, "+7 903 123-45-67" }, "Hi"))
      assert.same({ "79161234567", "79031234567" }, { msgs[1].to, msgs[2].to })
      assert.equals("79161234567,79031234567", fake.sends()[2].dadr)
    end)
  end)

  describe("with a bad argument value", function()
    local cases = {
      { "a phone of letters", { "abc", "Hi" }, "phone" },
      { "a phone too short", { "123456789", "Hi" }, "phone" },
      { "a phone too long", { "7903123456789012", "Hi" }, "phone" },
      { "one bad phone among good ones", { { "79031234567", "12" }, "Hi" }, "phone" },
      { "an empty phone in a list", { "79031234567,", "Hi" }, "phone" },
      { "no recipient at all", { {}, "Hi" }, "recipient" },
      { "an empty text", { "79031234567", "" }, "empty" },
      { "a text with a NUL byte", { "79031234567", "a\0b" }, "NUL" },
      { "a text that is not UTF-8", { "79031234567", "\255\254" }, "UTF%-8" },
      -- ASCII is skipped eight bytes at a time: a bad byte after, inside or
      -- at the end of such a run, and after a good non-ASCII letter.
      { "a bad byte after a long ASCII run", { "79031234567", "Your code is \255" }, "UTF%-8" },
      { "a bad byte inside a word of ASCII", { "79031234567", "abc\128defghijk" }, "UTF%-8" },
      { "a sequence cut at the end of ASCII", { "79031234567", "abcdefgh\208" }, "UTF%-8" },
      { "a surrogate after Cyrillic", { "79031234567", "Код\237\160\128 ok" }, "UTF%-8" },
      { "an overlong letter after ASCII", { "79031234567", "abcdefghij\192\175" }, "UTF%-8" },
      { "a NUL byte after a long ASCII run", { "79031234567", "Your code is\0 1234" }, "NUL" },
      { "a NUL byte after a bad byte (NUL is named)", { "79031234567", "ab\255cd\0" }, "NUL" },
      { "a sender of 12 letters", { "79031234567", "Hi", { sender = "TwelveLetter" } }, "sender" },
      { "a sender of Cyrillic letters", { "79031234567", "Hi", { sender = "Магазин" } }, "sender" },
      { "a sender of 16 digits", { "79031234567", "Hi", { sender = "1234567890123456" } }, "sender" },
      { "an empty sender", { "79031234567", "Hi", { sender = "" } }, "sender" },
      { "a text too long for one request", { "79031234567", string.rep("Я", 400) }, "longer" },
      { "a misspelt option (sendr)", { "79031234567", "Hi", { sendr = "Other" } }, "sendr" },
      { "an option key that is not a string", { "79031234567", "Hi", { "Other" } }, "key" },
      { "a phone given as a number of 9 digits", { 903123456, "Hi" }, "phone" },
      { "a phone given as a negative number", { -79031234567, "Hi" }, "phone" },
    }
    for _, case in ipairs(cases) do
      it("answers invalid for " .. case[1] .. " and sends nothing", function()
        local args = case[2]
        assert_failure("invalid", case[3], client():send(args[1], args[2], args[3]))
        assert.same({}, fake.sends())
        assert.equals(0, fake.stats().requests)
      end)
    end

    it("answers invalid for a bad sender given to st.new", function()
      local ok, err, code = st.new{ user = "test", password = "secret", sender = "Bad!Sender" }
      assert_failure("invalid", "sender", ok, err, code)
    end)
  end)

  describe("with an argument of the wrong type", function()
    local c
    before_each(function() c = client() end)
    it("raises for a nil recipient", function()
      assert.has_error(function() c:send(nil, "Hi") end)
    end)
    it("raises for a number with a fraction as recipient, naming the method", function()
      local ok, err = pcall(c.send, c, 7903123456.5, "Hi")
      assert.is_false(ok)
      assert.matches("bad argument #1 to 'send'", err, 1, true)
      assert.matches("whole number", err, 1, true)
    end)
    it("raises for a number with a fraction inside the recipient list", function()
      assert.has_error(function() c:send({ "79031234567", 0.5 }, "Hi") end)
    end)
    it("raises for a text that is not a string", function()
      assert.has_error(function() c:send("79031234567", 42) end)
    end)
    it("raises for opts that are not a table", function()
      assert.has_error(function() c:send("79031234567", "Hi", "MyShop") end)
    end)
    it("raises for a sender that is not a string", function()
      assert.has_error(function() c:send("79031234567", "Hi", { sender = 5 }) end)
    end)
    it("sends nothing for any of them", function()
      pcall(c.send, c, nil, "Hi")
      assert.same({}, fake.sends())
    end)
  end)
end)
