-- The gateway's front ends answer in several styles; every one must read the
-- same. Each variant is served by the fake over real HTTP.
local st = require("streamtelecom")
local fake = require("spec.fake")
local helper = require("spec.helper")

local function client(user)
  return assert(st.new{ user = user or "test", password = "secret", sender = "MyShop",
                        url = fake.url })
end

describe("answers in every variant", function()
  lazy_setup(function() fake.start() end)
  before_each(function() fake.reset() end)

  local separators = { [","] = "commas", ["\n"] = "line breaks", [", "] = "comma and space",
                       [" "] = "spaces", ["\r\n"] = "CRLF" }
  for sep, name in pairs(separators) do
    it("reads ids separated by " .. name, function()
      fake.set{ ids_sep = sep }
      local msgs = assert(client():send("79031234567,79161234567,79261234567", "Hi"))
      assert.same({ "1000000001", "1000000002", "1000000003" },
        { msgs[1].id, msgs[2].id, msgs[3].id })
    end)
  end

  it("ignores a UTF-8 BOM and trailing new lines on every call", function()
    fake.set{ bom = true, trailing_newline = true }
    local c = client()
    local id = assert(c:send("79031234567", "Hi"))[1].id
    assert.equals("1000000001", id)
    assert.same({ id = id, state = "sent", raw = "send", final = false }, assert(c:status(id)))
    assert.same({ balance = 98.5, raw = "98.50" }, assert(c:balance()))
  end)

  it("recognises refusals in lower case and with a full stop", function()
    fake.set{ error_case = "lower", error_dot = true, bom = true, trailing_newline = true }
    local _, err, code = client("poor"):send("79031234567", "Hi")
    assert.equals("direction_closed", code)
    assert.matches("для вас", err)
  end)

  it("recognises refusals written all in lower or upper case", function()
    for _, case in ipairs({ "all_lower", "upper" }) do
      fake.set{ error_case = case }
      local c = assert(st.new{ user = "test", password = "nope", url = fake.url })
      local _, _, code = c:balance()
      assert.equals("auth", code)
    end
  end)

  it("reports a wrong number of ids as a gateway error", function()
    fake.set{ body = "1000000001" }
    local ok, err, code = client():send("79031234567,79161234567", "Hi")
    assert.is_nil(ok)
    assert.equals("gateway", code)
    assert.matches("1 message ids for 2 recipients", err)
  end)
end)

describe("st.parse", function()
  it("gives what the real call gives for a send answer", function()
    assert.same({ { to = "79031234567", id = "11" }, { to = "79161234567", id = "12" } },
      st.parse("send", "\239\187\191 11,\n12\r\n", { "79031234567", "+7 916 123-45-67" }))
    assert.same({ { id = "11" }, { id = "12" } }, st.parse("send", "11 12"))
  end)

  it("answers the same error codes as the real calls", function()
    local cases = {
      { "send", "Неправильный логин или пароль", "auth" },
      { "send", "ваш аккаунт заблокирован.", "blocked" },
      { "send", "Данное направление закрыто для вас", "direction_closed" },
      { "send", "Нет отправителя", "no_sender" },
      { "send", "НЕТ ТЕКСТА СООБЩЕНИЯ", "no_text" },
      { "send", "Такого отправителя нет", "unknown_sender" },
      { "send", "Укажите номер телефона", "no_phone" },
      { "send", "flood sms", "flood" },
      { "status", "Сообщение с таким ID не принималось.", "not_found" },
      { "status", "", "gateway" },
      { "balance", "<html>", "gateway" },
      { "send", "12,abc", "gateway" },
    }
    for _, case in ipairs(cases) do
      local ok, err, code = st.parse(case[1], case[2])
      assert.is_nil(ok, case[2])
      assert.equals(case[3], code, case[2])
      assert.is_string(err)
    end
  end)

  it("reads status words with and without a time", function()
    assert.same({ id = "7", state = "delivered", raw = "deliver", final = true },
      st.parse("status", "deliver\n", "7"))
    assert.same({ state = "unknown", raw = "moderation", final = false, updated = "12:00" },
      st.parse("status", "moderation 12:00"))
  end)

  it("reads balances in every style", function()
    assert.same({ balance = 1024.5, raw = "1024.50" }, st.parse("balance", "1024.50"))
    assert.same({ balance = 100.01, raw = "100,01", }, st.parse("balance", "100,01"))
    assert.same({ balance = 100.01, currency = "RUR", raw = "100.01 RUR" },
      st.parse("balance", "100.01 RUR\n"))
    assert.same({ balance = -3, raw = "-3" }, st.parse("balance", "-3"))
  end)

  it("quotes at most 200 bytes of an unreadable answer, on one line", function()
    local _, err = st.parse("balance", string.rep("x", 150) .. "\n" .. string.rep("y", 500))
    assert.is_true(#err < 300)
    assert.is_nil(err:find("\n", 1, true))
  end)

  it("raises for a call it does not know or a body that is not a string", function()
    assert.has_error(function() st.parse("sms", "1") end)
    assert.has_error(function() st.parse("send", nil) end)
  end)
end)

describe("client:url", function()
  local c
  before_each(function()
    c = assert(st.new{ user = "u s", password = "p&w", sender = "MyShop",
                       url = "http://127.0.0.1:9/get/" })
  end)

  it("builds the exact request URL of each call, every value percent-encoded", function()
    assert.equals("http://127.0.0.1:9/get/?user=u%20s&pwd=p%26w&balance=1", c:url("balance"))
    assert.equals("http://127.0.0.1:9/get/?user=u%20s&pwd=p%26w&smsid=42", c:url("status", "42"))
    assert.equals("http://127.0.0.1:9/get/?user=u%20s&pwd=p%26w&sadr=MyShop"
      .. "&dadr=79031234567%2C79161234567&text=a%26b%3Dc%0A&callback_url=x&name_deliver=n%2B1",
      c:url("send", { "79031234567", "+7 916 123 45 67" }, "a&b=c\n",
            { callback_url = "x", name = "n+1" }))
  end)

  it("answers invalid where a send would need more than one request", function()
    local to = {}
    for i = 1, 300 do to[i] = string.format("7903%07d", i) end
    local ok, err, code = c:url("send", to, "Hi")
    assert.is_nil(ok)
    assert.equals("invalid", code)
    assert.matches("requests", err)
  end)

  it("validates like the real call", function()
    local _, _, code = c:url("send", "abc", "Hi")
    assert.equals("invalid", code)
    _, _, code = c:url("status", "x")
    assert.equals("invalid", code)
  end)
end)

describe("an answer that echoes the password", function()
  local secret = "p&ss=w%rd+?"
  lazy_setup(function() fake.start() end)
  before_each(function() fake.reset() end)

  local function rich()
    return assert(st.new{ user = "rich", password = secret, sender = "MyShop", url = fake.url })
  end

  it("never shows it, even where the 200-byte quote would cut it in two", function()
    for cut = 190, 200 do
      fake.set{ body = string.rep("x", cut) .. secret .. string.rep("y", 20) }
      local _, err, code = rich():balance()
      assert.equals("gateway", code)
      helper.assert_no_secret(err, secret)
      assert.is_nil(err:find("p&ss", 1, true), err)
    end
  end)

  it("does not take the text after a status word for a time", function()
    fake.set{ body = "bad request from rich with pwd=" .. secret }
    local ok, err, code = rich():status("1")
    assert.is_nil(ok)
    assert.equals("gateway", code)
    helper.assert_no_secret(err, secret)
  end)
end)
