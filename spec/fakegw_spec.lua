-- The fake gateway itself: it must behave like Stream Telecom's HTTP GET
-- gateway, and its knobs and counters must do what the client specs rely on.
-- Requests are built by hand here (LuaSocket), never through the client.

local helper = require("spec.helper")
local fake = require("spec.fake")
local socket = require("socket")
local http = require("socket.http")
local ltn12 = require("ltn12")

local E = {
  auth = "Неправильный логин или пароль",
  blocked = "Ваш аккаунт заблокирован",
  closed = "Данное направление закрыто для Вас",
  no_sender = "Нет отправителя",
  no_text = "Нет текста сообщения",
  unknown_sender = "Такого отправителя нет",
  no_phone = "Укажите номер телефона",
  flood = "Flood SMS",
  not_found = "Сообщение с таким ID не принималось",
}

local function enc(s)
  return (tostring(s):gsub("[^%w%-%._~]", function(c)
    return string.format("%%%02X", string.byte(c))
  end))
end

-- Query string from a table; keys sorted so last_uri is predictable.
local function qs(params)
  local keys = {}
  for k in pairs(params) do keys[#keys + 1] = k end
  table.sort(keys)
  local out = {}
  for _, k in ipairs(keys) do out[#out + 1] = enc(k) .. "=" .. enc(params[k]) end
  return table.concat(out, "&")
end

-- GET the gateway; params is a table or a ready query string.
-- Answers body, HTTP status, headers (body nil and an error on a transport failure).
local function get(params, path)
  local q = type(params) == "string" and params or qs(params)
  local url = "http://127.0.0.1:" .. fake.port .. (path or "/get/") .. (q ~= "" and "?" .. q or "")
  local chunks = {}
  local ok, code, headers = http.request{
    url = url, sink = ltn12.sink.table(chunks), redirect = false,
    headers = { ["user-agent"] = "fakegw-spec/1" },
  }
  if not ok then return nil, code end
  return table.concat(chunks), code, headers
end

local function with(base, extra)
  local t = {}
  for k, v in pairs(base) do t[k] = v end
  for k, v in pairs(extra or {}) do t[k] = v end
  return t
end

local function send(extra)
  return get(with({ user = "test", pwd = "secret", sadr = "MyShop",
                    dadr = "79031234567", text = "hello" }, extra))
end
local function balance(user, pwd)
  return get{ user = user or "test", pwd = pwd or "secret", balance = 1 }
end
local function status(id, user)
  return get{ user = user or "test", pwd = "secret", smsid = id }
end

local function split_ids(body)
  local ids = {}
  for id in body:gmatch("%d+") do ids[#ids + 1] = id end
  return ids
end

-- Raw HTTP/1.1 over a LuaSocket TCP socket (keep-alive stays under our control).
local function connect()
  local sock = assert(socket.tcp())
  sock:settimeout(5)
  assert(sock:connect("127.0.0.1", fake.port))
  return sock
end

local function write_request(sock, query, path)
  assert(sock:send("GET " .. (path or "/get/") .. "?" .. query .. " HTTP/1.1\r\n"
                   .. "Host: 127.0.0.1\r\nUser-Agent: raw-socket\r\n\r\n"))
end

local function read_response(sock)
  local status_line, err = sock:receive("*l")
  if not status_line then return nil, err end
  local headers = {}
  while true do
    local line = assert(sock:receive("*l"))
    if line == "" then break end
    local k, v = line:match("^([^:]+):%s*(.*)$")
    headers[k:lower()] = v
  end
  local body = assert(sock:receive(tonumber(headers["content-length"])))
  return tonumber(status_line:match("^HTTP/1%.1 (%d+)")), headers, body
end

-- Shell commands run free of sanitizer preloads (make asan sets LD_PRELOAD).
local function sh(cmd)
  return "exec env -u LD_PRELOAD -u ASAN_OPTIONS -u LSAN_OPTIONS -u UBSAN_OPTIONS sh -c '"
         .. cmd:gsub("'", "'\\''") .. "'"
end

local function curl(args)
  local p = io.popen(sh("curl -s -S --max-time 5 " .. args .. " 2>&1; echo \"rc=$?\""))
  local out = p:read("*a")
  p:close()
  local body, rc = out:match("^(.-)rc=(%d+)%s*$")
  return body, tonumber(rc)
end

describe("the fake gateway", function()
  lazy_setup(function()
    fake.start()
  end)

  before_each(function()
    fake.reset()
  end)

  it("prints where it listens", function()
    assert.matches("^http://127%.0%.0%.1:%d+/get/$", fake.url)
    assert.matches("^https://localhost:%d+/get/$", fake.tls_url)
    assert.matches("cert%.pem$", fake.ca_file)
    assert.truthy(io.open(fake.ca_file, "r")):close()
  end)

  describe("accounts", function()
    it("answers the balance of the seeded account with two decimals", function()
      assert.equal("100.00", (balance()))
    end)

    it("refuses a wrong, missing or unknown login or password", function()
      assert.equal(E.auth, (balance("test", "wrong")))
      assert.equal(E.auth, (balance("nobody", "secret")))
      assert.equal(E.auth, (get{ user = "test", balance = 1 }))
      assert.equal(E.auth, (get{ pwd = "secret", balance = 1 }))
      assert.equal(E.auth, (get("")))
    end)

    it("answers errors with HTTP 200", function()
      local body, code = balance("test", "wrong")
      assert.equal(E.auth, body)
      assert.equal(200, code)
    end)

    it("accepts a password that needs percent-encoding", function()
      assert.equal("1000000.00", (balance("rich", "p&ss=w%rd+?")))
      assert.equal(E.auth, (get("user=rich&pwd=p&ss=w%rd+?&balance=1")))
    end)

    it("refuses a blocked account for every call", function()
      assert.equal(E.blocked, (balance("blocked")))
      assert.equal(E.blocked, (send{ user = "blocked" }))
      assert.equal(E.blocked, (status("1000000001", "blocked")))
    end)

    it("accounts can be added and changed", function()
      local a = fake.account{ user = "new", pwd = "Пароль 1", balance = 3, senders = { "Shop2" } }
      assert.same({ "Shop2" }, a.senders)
      assert.equal("3.00", (balance("new", "Пароль 1")))
      assert.matches("^%d+$", (send{ user = "new", pwd = "Пароль 1", sadr = "Shop2" }))
      assert.equal(E.unknown_sender, (send{ user = "new", pwd = "Пароль 1" }))
      fake.account{ user = "new", blocked = true }
      assert.equal(E.blocked, (balance("new", "Пароль 1")))
      fake.reset()
      assert.equal(E.auth, (balance("new", "Пароль 1")))
    end)

    it("checks the password before the blocked flag", function()
      assert.equal(E.auth, (balance("blocked", "nope")))
    end)
  end)

  describe("send", function()
    it("answers one id per recipient, in recipient order", function()
      local body = send{ dadr = "79031234567,375291234567,4915112345678" }
      assert.equal("1000000001,1000000002,1000000003", body)
      assert.equal("79031234567", fake.message("1000000001").to)
      assert.equal("375291234567", fake.message("1000000002").to)
      assert.equal("4915112345678", fake.message("1000000003").to)
      assert.equal("1000000004", (send{ text = "next" }))
    end)

    it("refuses a missing or empty phone number", function()
      assert.equal(E.no_phone, (send{ dadr = "" }))
      assert.equal(E.no_phone, (send{ dadr = "," }))
      assert.equal(E.no_phone, (get{ user = "test", pwd = "secret", sadr = "MyShop", text = "x" }))
    end)

    it("refuses a missing or empty sender", function()
      assert.equal(E.no_sender, (send{ sadr = "" }))
      assert.equal(E.no_sender, (get{ user = "test", pwd = "secret", dadr = "79031234567", text = "x" }))
    end)

    it("refuses a sender not registered for the account", function()
      assert.equal(E.unknown_sender, (send{ sadr = "Stranger" }))
      assert.equal(E.unknown_sender, (send{ user = "poor", sadr = "Other" }))
      assert.matches("^%d+$", (send{ sadr = "Other" }))
      assert.matches("^%d+$", (send{ sadr = "12345" }))
    end)

    it("refuses a missing or empty text", function()
      assert.equal(E.no_text, (send{ text = "" }))
      assert.equal(E.no_text, (get{ user = "test", pwd = "secret", sadr = "MyShop", dadr = "79031234567" }))
    end)

    it("checks phone, sender, registration and text in that order", function()
      assert.equal(E.no_phone, (get{ user = "test", pwd = "secret" }))
      assert.equal(E.no_sender, (get{ user = "test", pwd = "secret", dadr = "79031234567" }))
      assert.equal(E.unknown_sender, (get{ user = "test", pwd = "secret", dadr = "7903", sadr = "X" }))
    end)

    it("refuses the whole request when any recipient is in a closed direction", function()
      assert.equal(E.closed, (send{ dadr = "99031234567" }))
      assert.equal(E.closed, (send{ dadr = "79031234567,99031234567" }))
      assert.equal(E.closed, (send{ dadr = "7903123" }))              -- too short
      assert.equal(E.closed, (send{ dadr = "7903123456789012" }))     -- too long
      assert.equal(E.closed, (send{ dadr = "+79031234567" }))         -- not digits
      assert.equal("100.00", (balance()))
      assert.is_nil(fake.message("1000000001"))
      assert.equal(0, fake.stats().messages)
    end)

    it("opens the directions 7, 375, 380, 49, 44 and 1", function()
      local body = send{ dadr = "79031234567,375291234567,380501234567,4915112345678,447700900123,12025550123" }
      assert.equal(6, #split_ids(body))
    end)

    it("answers a closed direction when the balance does not cover the send", function()
      assert.equal(E.closed, (send{ user = "poor" }))
      fake.balance("test", 2.99)
      assert.equal(E.closed, (send{ dadr = "79031234567,79161234567" })) -- needs 3.00
      assert.equal("2.99", (balance()))
      assert.matches("^%d+$", (send{}))                                 -- 1.50 fits
      assert.equal("1.49", (balance()))
    end)

    it("charges 1.50 per part per recipient", function()
      send{ dadr = "79031234567,79161234567" }
      assert.equal("97.00", (balance()))
      send{ text = string.rep("a", 160) }                  -- 1 part
      assert.equal("95.50", (balance()))
      send{ text = string.rep("a", 161) }                  -- 2 parts
      assert.equal("92.50", (balance()))
      send{ text = string.rep("a", 307) }                  -- 3 parts (153 each)
      assert.equal("88.00", (balance()))
      send{ text = string.rep("ж", 70) }                   -- 1 UCS-2 part
      assert.equal("86.50", (balance()))
      send{ text = string.rep("ж", 71) }                   -- 2 parts (67 each)
      assert.equal("83.50", (balance()))
      assert.equal(2, fake.message("1000000007").parts)
    end)

    it("answers Flood SMS after the same text to the same number 3 times", function()
      for _ = 1, 3 do assert.matches("^%d+$", (send{})) end
      assert.equal(E.flood, (send{}))
      assert.matches("^%d+$", (send{ text = "other text" }))
      assert.matches("^%d+$", (send{ dadr = "79161234567" }))
      assert.equal(E.flood, (send{ dadr = "79161234567,79031234567" }))
      assert.equal(5, fake.stats().messages)
    end)

    it("forgets flood history after the window", function()
      fake.set{ flood_limit = 1, flood_window = 0.2 }
      assert.matches("^%d+$", (send{}))
      assert.equal(E.flood, (send{}))
      local deadline = socket.gettime() + 3
      local body
      repeat body = send{} until body ~= E.flood or socket.gettime() > deadline
      assert.matches("^%d+$", body)
    end)

    it("turns flood detection off with flood_limit = 0", function()
      fake.set{ flood_limit = 0 }
      for _ = 1, 5 do assert.matches("^%d+$", (send{})) end
    end)

    it("records every send that passed the login, refused or not", function()
      send{ text = "Привет & pwd=x", callback_url = "https://example.org/cb?a=1", name_deliver = "promo" }
      send{ dadr = "99031234567" }
      send{ user = "test", pwd = "wrong" }  -- refused at login: not recorded
      balance()
      local sends = fake.sends()
      assert.equal(2, #sends)
      assert.same({ "test", "MyShop", "79031234567", "Привет & pwd=x",
                    "https://example.org/cb?a=1", "promo", "1000000001", true },
                  { sends[1].user, sends[1].sadr, sends[1].dadr, sends[1].text,
                    sends[1].callback_url, sends[1].name_deliver, sends[1].answer, sends[1].accepted })
      assert.equal(E.closed, sends[2].answer)
      assert.is_false(sends[2].accepted)
      assert.equal("https://example.org/cb?a=1", fake.message("1000000001").callback_url)
    end)
  end)

  describe("status", function()
    it("answers send, then the final state set on command", function()
      local id = send{}
      assert.equal("send", (status(id)))
      for _, state in ipairs{ "deliver", "not_deliver", "expired", "partly_deliver", "read", "weird_word" } do
        assert.equal(state, fake.deliver(id, state).state)
        assert.equal(state, (status(id)))
      end
    end)

    it("answers the unknown-id sentence for an id never accepted", function()
      assert.equal(E.not_found, (status("1000000001")))
      assert.equal(E.not_found, (status("")))
      assert.equal(E.not_found, (status("abc")))
      assert.is_nil(fake.deliver("1000000001", "deliver"))
      assert.is_nil(fake.message("42"))
    end)

    it("does not show one account's message to another", function()
      local id = send{}
      assert.equal(E.not_found, (get{ user = "rich", pwd = "p&ss=w%rd+?", smsid = id }))
    end)

    it("appends the update time with status_time", function()
      local id = send{}
      fake.set{ status_time = true }
      assert.matches("^send %d%d%d%d%-%d%d%-%d%d %d%d:%d%d:%d%d$", (status(id)))
      fake.deliver(id, "deliver", "2024-01-02 03:04:05")
      assert.equal("deliver 2024-01-02 03:04:05", (status(id)))
    end)

    it("moves to auto_state after auto_deliver seconds", function()
      fake.set{ auto_deliver = 0.1, auto_state = "expired" }
      local id = send{}
      local deadline, body = socket.gettime() + 3
      repeat body = status(id) until body ~= "send" or socket.gettime() > deadline
      assert.equal("expired", body)
      assert.equal("expired", fake.message(id).state)
    end)

    it("keeps messages in send without auto_deliver", function()
      local id = send{}
      assert.equal("send", fake.message(id).state)
      assert.equal("send", (status(id)))
    end)
  end)

  describe("knobs", function()
    it("latency delays every gateway answer", function()
      fake.set{ latency = 0.15 }
      local t0 = socket.gettime()
      assert.equal("100.00", (balance()))
      assert.is_true(socket.gettime() - t0 >= 0.14)
    end)

    it("logs when a send arrived, before its latency, and when it was answered", function()
      fake.set{ latency = 0.15 }
      send{}
      local rec = fake.sends()[1]
      -- The latency lies between arrival and answer. (Compared with this
      -- process's clock no bound holds: nginx reads its cached time.)
      assert.is_number(rec.arrived)
      assert.is_true(rec.time - rec.arrived >= 0.14)
    end)

    it("logs each send's connection: a kept-alive connection's sends share one", function()
      send{}
      send{ dadr = "79031234568" } -- LuaSocket: a connection each
      local c = helper.rich_client()
      assert(c:send("79031234569", "one"))
      assert(c:send("79031234570", "two"))
      c:close()
      local s = fake.sends()
      assert.equal(4, #s)
      for _, rec in ipairs(s) do assert.is_number(rec.conn) end
      assert.not_equal(s[1].conn, s[2].conn)
      assert.not_equal(s[2].conn, s[3].conn)
      assert.equal(s[3].conn, s[4].conn)
    end)

    it("http_status answers that status for the next http_count requests", function()
      fake.set{ http_status = 503, http_count = 1 }
      local body, code = send{}
      assert.equal(503, code)
      assert.not_equal("1000000001", body)
      local _, code2 = balance()
      assert.equal(200, code2)
      local sends = fake.sends()
      assert.equal(1, #sends)                 -- the gateway acted before the 5xx
      assert.equal(503, sends[1].http_status)
    end)

    it("http_status without a count lasts until reset", function()
      fake.set{ http_status = 500 }
      assert.equal(500, select(2, balance()))
      assert.equal(500, select(2, balance()))
      fake.reset()
      assert.equal(200, select(2, balance()))
    end)

    it("drop closes the connection without an answer, after recording the send", function()
      fake.set{ drop = true, drop_count = 1 }
      local body, err = send{}
      assert.is_nil(body)
      assert.equal("closed", err)
      assert.equal("98.50", (balance()))      -- only one request dropped; it was acted on
      local sends = fake.sends()
      assert.equal(1, #sends)
      assert.equal(444, sends[1].http_status)
      assert.equal(0, fake.stats().in_flight)
      assert.equal(1, fake.stats().dropped)
    end)

    it("body answers exactly that raw body for body_count requests", function()
      fake.set{ body = "garbage\n<html>", body_count = 2 }
      assert.equal("garbage\n<html>", (balance()))
      assert.equal("garbage\n<html>", (send{}))
      assert.equal("98.50", (balance()))      -- the gateway acted on the send
      assert.equal(1, #fake.sends())
    end)

    it("body may be empty", function()
      fake.set{ body = "" }
      local body, code = balance()
      assert.equal("", body)
      assert.equal(200, code)
    end)

    it("oversize answers that many bytes", function()
      fake.set{ oversize = 100000 }
      local body = balance()
      assert.equal(100000, #body)
      assert.equal(string.rep("1", 100000), body)
    end)

    it("stall sends half the answer, pauses, then the rest", function()
      fake.set{ stall = 0.3 }
      local sock = connect()
      write_request(sock, qs{ user = "test", pwd = "secret", balance = 1 })
      sock:settimeout(0.15)
      local got, err, partial = sock:receive("*a")
      assert.is_nil(got)
      assert.equal("timeout", err)
      assert.matches("\r\n\r\n100$", partial)  -- headers and "100" of "100.00"
      sock:settimeout(3)
      local rest = sock:receive(3)
      assert.equal(".00", rest)
      sock:close()
    end)

    it("redirect answers 302 to the same query and records nothing", function()
      fake.set{ redirect = true, redirect_count = 1 }
      local query = qs{ user = "test", pwd = "secret", sadr = "MyShop", dadr = "79031234567", text = "hi" }
      local _, code, headers = get(query)
      assert.equal(302, code)
      assert.equal("http://127.0.0.1:" .. fake.port .. "/get/?" .. query, headers.location)
      assert.equal(0, #fake.sends())
      assert.equal(1, fake.stats().requests)
      assert.equal("100.00", (balance()))
    end)

    it("ids_sep puts that text between ids", function()
      for _, sep in ipairs{ "\n", ", ", " ", "\r\n" } do
        fake.reset()
        fake.set{ ids_sep = sep }
        assert.equal("1000000001" .. sep .. "1000000002", (send{ dadr = "79031234567,79161234567" }))
      end
    end)

    it("bom prefixes a UTF-8 BOM to every answer", function()
      fake.set{ bom = true }
      assert.equal("\239\187\191100.00", (balance()))
      assert.equal("\239\187\191" .. E.auth, (balance("test", "x")))
      assert.equal("\239\187\1911000000001", (send{}))
    end)

    it("trailing_newline appends CR LF CR LF", function()
      fake.set{ trailing_newline = true }
      assert.equal("100.00\r\n\r\n", (balance()))
      assert.equal(E.flood .. "\r\n\r\n", (function()
        send{}; send{}; send{}; return send{}
      end)())
    end)

    it("error_case = lower writes для вас", function()
      fake.set{ error_case = "lower" }
      assert.equal("Данное направление закрыто для вас", (send{ dadr = "99031234567" }))
      assert.equal(E.auth, (balance("test", "x")))
    end)

    it("error_case = all_lower and upper change the whole sentence", function()
      fake.set{ error_case = "all_lower" }
      assert.equal("данное направление закрыто для вас", (send{ dadr = "99031234567" }))
      fake.set{ error_case = "upper" }
      assert.equal("НЕПРАВИЛЬНЫЙ ЛОГИН ИЛИ ПАРОЛЬ", (balance("test", "x")))
    end)

    it("error_dot appends a full stop to every error sentence only", function()
      fake.set{ error_dot = true, error_case = "lower" }
      assert.equal("Данное направление закрыто для вас.", (send{ dadr = "99031234567" }))
      assert.equal(E.not_found .. ".", (status("1")))
      assert.equal("100.00", (balance()))
    end)

    it("balance_format changes the balance answer", function()
      fake.balance("test", 100.01)
      fake.set{ balance_format = "comma_currency" }
      assert.equal("100,01 RUR", (balance()))
      fake.set{ balance_format = "comma" }
      assert.equal("100,01", (balance()))
      fake.set{ balance_format = "currency" }
      assert.equal("100.01 RUR", (balance()))
      fake.set{ balance_format = false }
      assert.equal("100.01", (balance()))
    end)

    it("variants combine", function()
      fake.set{ bom = true, trailing_newline = true, ids_sep = "\n" }
      assert.equal("\239\187\1911000000001\n1000000002\r\n\r\n", (send{ dadr = "79031234567,79161234567" }))
    end)

    it("chunked answers without Content-Length", function()
      fake.set{ chunked = true }
      local body, _, headers = balance()
      assert.equal("100.00", body)
      assert.is_nil(headers["content-length"])
      assert.equal("chunked", headers["transfer-encoding"])
    end)

    it("refuses an unknown knob or a bad value", function()
      assert.has_error(function() fake.set{ no_such_knob = 1 } end)
      assert.has_error(function() fake.set{ latency = "soon" } end)
      assert.has_error(function() fake.set{ error_case = "shouting" } end)
    end)

    it("reset restores knobs, balances, messages, flood history and ids", function()
      fake.set{ bom = true, latency = 0.01 }
      send{}; send{}; send{}
      fake.balance("poor", 50)
      fake.reset()
      local k = fake.knobs()
      assert.is_false(k.bom)
      assert.equal(0, k.latency)
      assert.equal(",", k.ids_sep)
      assert.equal("100.00", (balance()))
      assert.equal("0.00", (balance("poor")))
      assert.is_nil(fake.message("1000000001"))
      assert.equal("1000000001", (send{}))
      assert.equal(1, #fake.sends())
    end)
  end)

  describe("counters", function()
    it("count gateway requests by call, never control requests", function()
      send{}; send{ dadr = "1" }; balance(); status("1000000001"); status("5")
      fake.stats(); fake.sends(); fake.knobs(); fake.ping()
      local st = fake.stats()
      assert.equal(5, st.requests)
      assert.equal(2, st.send_requests)
      assert.equal(2, st.status_requests)
      assert.equal(1, st.balance_requests)
      assert.equal(1, st.messages)
      assert.equal(0, st.in_flight)
    end)

    it("count one connection for two requests on one keep-alive connection", function()
      local sock = connect()
      write_request(sock, qs{ user = "test", pwd = "secret", balance = 1 })
      local code, headers, body = read_response(sock)
      assert.equal(200, code)
      assert.equal("100.00", body)
      assert.not_equal("close", headers.connection)
      write_request(sock, qs{ user = "test", pwd = "secret", smsid = "1" })
      local _, _, body2 = read_response(sock)
      assert.equal(E.not_found, body2)
      sock:close()
      local st = fake.stats()
      assert.equal(2, st.requests)
      assert.equal(1, st.connections)
    end)

    it("count each new connection", function()
      balance(); balance()                    -- LuaSocket's http closes each time
      assert.equal(2, fake.stats().connections)
    end)

    it("count a connection once even if a control request came first on it", function()
      local sock = connect()
      write_request(sock, "", "/_fake/ping")
      read_response(sock)
      write_request(sock, qs{ user = "test", pwd = "secret", balance = 1 })
      read_response(sock)
      write_request(sock, qs{ user = "test", pwd = "secret", balance = 1 })
      read_response(sock)
      sock:close()
      local st = fake.stats()
      assert.equal(2, st.requests)
      assert.equal(1, st.connections)
    end)

    it("track requests in flight and the maximum", function()
      fake.set{ latency = 0.25 }
      local a, b = connect(), connect()
      write_request(a, qs{ user = "test", pwd = "secret", balance = 1 })
      write_request(b, qs{ user = "test", pwd = "secret", balance = 1 })
      assert.truthy(fake.wait_for(function(st) return st.in_flight == 2 end, 3))
      assert.equal("100.00", select(3, read_response(a)))
      assert.equal("100.00", select(3, read_response(b)))
      a:close(); b:close()
      local st = fake.wait_for(function(s) return s.in_flight == 0 end, 3)
      assert.truthy(st)
      assert.equal(2, st.max_in_flight)
    end)

    it("bring in_flight back to 0 after drops, errors and redirects", function()
      fake.set{ drop = true, drop_count = 1 }
      send{}
      fake.set{ http_status = 500, http_count = 1 }
      send{}
      fake.set{ redirect = true, redirect_count = 1 }
      send{}
      local st = fake.wait_for(function(s) return s.in_flight == 0 end, 3)
      assert.truthy(st)
      assert.equal(3, st.requests)
      assert.equal(2, #fake.sends())
    end)

    it("reset_stats zeroes the counters and keeps state and knobs", function()
      local id = send{}
      fake.set{ bom = true }
      fake.reset_stats()
      local st = fake.stats()
      assert.equal(0, st.requests)
      assert.equal(0, st.connections)
      assert.equal(0, st.messages)
      assert.equal("\239\187\191send", (status(id)))
      assert.equal(1, fake.stats().requests)
    end)

    it("remember the raw URI and User-Agent of the last gateway request", function()
      get("user=test&pwd=secret&sadr=MyShop&dadr=79031234567&text=a%20b+c")
      fake.ping()
      local st = fake.stats()
      assert.equal("/get/?user=test&pwd=secret&sadr=MyShop&dadr=79031234567&text=a%20b+c", st.last_uri)
      assert.equal("fakegw-spec/1", st.last_user_agent)
      assert.equal("a b c", fake.sends()[1].text)
    end)
  end)

  describe("TLS listener", function()
    it("answers over HTTPS with the printed CA file", function()
      local body, rc = curl("--cacert '" .. fake.ca_file .. "' '" .. fake.tls_url
                            .. "?user=test&pwd=secret&balance=1'")
      assert.equal(0, rc)
      assert.equal("100.00", body)
      local st = fake.stats()
      assert.equal(1, st.tls_requests)
      assert.equal(1, st.tls_connections)
    end)

    it("is refused by a client without the CA file", function()
      local _, rc = curl("'" .. fake.tls_url .. "?user=test&pwd=secret&balance=1'")
      assert.equal(60, rc)  -- CURLE_PEER_FAILED_VERIFICATION
    end)

    it("certificate also names 127.0.0.1", function()
      local body, rc = curl("--cacert '" .. fake.ca_file .. "' 'https://127.0.0.1:"
                            .. fake.tls_port .. "/get/?user=test&pwd=secret&balance=1'")
      assert.equal(0, rc)
      assert.equal("100.00", body)
    end)
  end)

  describe("other paths", function()
    it("answer 404 outside /get/ and /_fake/", function()
      assert.equal(404, select(2, get("", "/")))
      assert.equal(404, select(2, get("user=test&pwd=secret&balance=1", "/send/")))
      assert.equal(0, fake.stats().requests)
    end)

    it("never write the password to a log file", function()
      balance("rich", "p&ss=w%rd+?")
      send{}
      -- Latency left under a millisecond: nginx warns of ngx.sleep(0) with
      -- the request line, so the fake must not sleep it.
      fake.set{ latency = 0.0004 }
      send{ text = "quick" }
      fake.set{ latency = false, stall = 0.0004 }
      send{ text = "short stall" }
      fake.set{ stall = false }
      fake.set{ drop = true }
      send{ text = "dropped" }
      local p = io.popen(sh("grep -rl -e 'pwd=' -e secret '" .. fake.dir .. "' 2>/dev/null"))
      local hits = p:read("*a")
      p:close()
      assert.equal("", hits)
    end)
  end)
end)

describe("fakegw/fakegw", function()
  it("refuses a port in use with a clear message", function()
    fake.start()
    local p = io.popen(sh("fakegw/fakegw start --port " .. fake.port .. " --dir '"
                          .. fake.dir .. "-again' 2>&1; echo rc=$?"))
    local out = p:read("*a")
    p:close()
    os.execute(sh("rm -rf '" .. fake.dir .. "-again'"))
    assert.matches("port already in use", out)
    assert.matches("rc=1", out)
  end)

  it("refuses a second start in the same dir", function()
    fake.start()
    local p = io.popen(sh("fakegw/fakegw start --port " .. (fake.port + 2) .. " --dir '"
                          .. fake.dir .. "' 2>&1; echo rc=$?"))
    local out = p:read("*a")
    p:close()
    assert.matches("already running", out)
    assert.matches("rc=1", out)
  end)

  it("starts, prints five lines, and stops on its own port and dir", function()
    local dir = os.tmpname()
    os.remove(dir)
    dir = dir .. " with space"
    finally(function()
      os.execute(sh("fakegw/fakegw stop --dir '" .. dir .. "' >/dev/null 2>&1; rm -rf '" .. dir .. "'"))
    end)
    local port
    local out
    for _ = 1, 10 do
      port = helper.listen_port(2)
      local p = io.popen(sh("fakegw/fakegw start --port " .. port .. " --dir '" .. dir .. "' 2>&1"))
      out = p:read("*a")
      p:close()
      if out:match("url=") then break end
    end
    local lines = {}
    for line in out:gmatch("[^\n]+") do lines[#lines + 1] = line end
    assert.same({
      "url=http://127.0.0.1:" .. port .. "/get/",
      "tls_url=https://localhost:" .. (port + 1) .. "/get/",
      "ca_file=" .. dir .. "/cert.pem",
      "dir=" .. dir,
    }, { lines[1], lines[2], lines[3], lines[4] })
    local pid = assert(tonumber(lines[5]:match("^pid=(%d+)$")))
    assert.equal(0, select(2, curl("'http://127.0.0.1:" .. port .. "/_fake/ping'")))
    local ok = os.execute(sh("fakegw/fakegw stop --dir '" .. dir .. "'"))
    assert.truthy(ok == true or ok == 0)
    assert.is_not.equal(0, select(2, curl("'http://127.0.0.1:" .. port .. "/_fake/ping'")))
    -- The shell's own kill: a bare Debian has no /bin/kill (procps).
    local p = io.popen("kill -0 " .. pid .. " 2>/dev/null && awk '{print $3}' /proc/" .. pid .. "/stat")
    local state = p:read("*a")
    p:close()
    assert.truthy(state == "" or state:match("Z"))
  end)
end)
