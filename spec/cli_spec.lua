-- bin/streamtelecom is run as a shell or cron user runs it: a child process
-- with its credentials in the environment, against the fake gateway.
local fake = require("spec.fake")
local helper = require("spec.helper")
local cjson = require("cjson")

-- A password no output could hold by chance; every run checks for it.
local USER, PASSWORD = "cliuser", "Cli-Pw&7=q%z"

local shell_quote = helper.shell_quote

local function tmpname()
  local name = os.tmpname()
  local f = assert(io.open(name, "w"))
  f:close()
  return name
end

local function slurp(name)
  local f = assert(io.open(name, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

-- run(args [, { stdin = "...", env = { NAME = value | false } }]) runs
-- bin/streamtelecom; answers stdout, stderr and the exit status.  The exit
-- status travels as the last line of stdout, so Lua 5.1 and 5.2+ read it alike.
local function run(args, opts)
  opts = opts or {}
  local env = {
    STREAM_TELECOM_URL = fake.url, STREAM_TELECOM_USER = USER,
    STREAM_TELECOM_PASSWORD = PASSWORD, STREAM_TELECOM_SENDER = "MyShop",
  }
  for k, v in pairs(opts.env or {}) do env[k] = v end
  local names = {}
  for k in pairs(env) do names[#names + 1] = k end
  table.sort(names)
  local words = { "env" }
  for _, k in ipairs(names) do
    if env[k] then
      words[#words + 1] = k .. "=" .. shell_quote(env[k])
    else
      table.insert(words, 2, "-u " .. k)
    end
  end
  local stdin, stderr = tmpname(), tmpname()
  if opts.stdin then
    local f = assert(io.open(stdin, "wb"))
    f:write(opts.stdin)
    f:close()
  end
  local cmd = ("%s %s bin/streamtelecom %s <%s 2>%s; echo \"exit=$?\""):format(
    table.concat(words, " "), helper.LUA, args, stdin, stderr)
  local out = helper.output(cmd)
  local err = slurp(stderr)
  os.remove(stdin)
  os.remove(stderr)
  local stdout, status = out:match("^(.-)exit=(%d+)\n?$")
  assert(status, "no exit status in: " .. out)
  helper.assert_no_secret(stdout, PASSWORD)
  helper.assert_no_secret(err, PASSWORD)
  return stdout, err, tonumber(status)
end

local function lines(s)
  local t = {}
  for line in s:gmatch("([^\n]*)\n") do t[#t + 1] = line end
  return t
end

describe("the streamtelecom command", function()
  lazy_setup(function() fake.start() end)
  before_each(function()
    fake.reset()
    fake.account{ user = USER, pwd = PASSWORD, balance = 100, senders = { "MyShop", "Other" } }
  end)

  describe("send", function()
    it("prints one line per recipient with its message id and exits 0", function()
      local out, err, status = run("send --to 79031234567,79161234567 'Hello there'")
      assert.equals(0, status)
      assert.equals("79031234567 1000000001\n79161234567 1000000002\n", out)
      assert.equals("", err)
      local sends = fake.sends()
      assert.equals(1, #sends)
      assert.equals("Hello there", sends[1].text)
      assert.equals("MyShop", sends[1].sadr)
      assert.equals(USER, sends[1].user)
    end)

    it("takes recipients as arguments, and --sender over the environment", function()
      local out, _, status = run("send 79031234567 '+7 916 123-45-67' Hi --sender Other")
      assert.equals(0, status)
      assert.equals("79031234567 1000000001\n79161234567 1000000002\n", out)
      assert.equals("Other", fake.sends()[1].sadr)
    end)

    it("reads recipients from stdin, one per line, blank lines ignored", function()
      local out, _, status = run("send - 'From stdin'",
        { stdin = "79031234567\n\n  \n79161234567\r\n" })
      assert.equals(0, status)
      assert.equals("79031234567 1000000001\n79161234567 1000000002\n", out)
      assert.equals("79031234567,79161234567", fake.sends()[1].dadr)
    end)

    it("reads the text from stdin with --text -", function()
      local out, _, status = run("send --to 79031234567 --text -",
        { stdin = "Two\nlines\n" })
      assert.equals(0, status)
      assert.equals("79031234567 1000000001\n", out)
      assert.equals("Two\nlines", fake.sends()[1].text)
    end)

    it("prints JSON records with --json", function()
      local out, _, status = run("--json send --to 79031234567,79161234567 Hi")
      assert.equals(0, status)
      assert.same({ { to = "79031234567", id = "1000000001" },
                    { to = "79161234567", id = "1000000002" } }, cjson.decode(out))
    end)

    it("exits 1 and says so when some recipients are refused", function()
      fake.set{ flood_limit = 1 }
      fake.account{ user = USER, pwd = PASSWORD, balance = 10000 } -- 301 SMS cost 451.50
      assert.equals(0, select(3, run("send 79031234567 again")))
      local numbers = {}
      for i = 1, 300 do numbers[i] = string.format("7916%07d", i) end
      numbers[301] = "79031234567" -- lands in the last request, which is refused
      local out, err, status = run("send - again", { stdin = table.concat(numbers, "\n") })
      assert.equals(1, status)
      local got = lines(out)
      assert.equals(301, #got)
      assert.equals("79160000001 1000000002", got[1])
      assert.equals("79031234567 refused flood: gateway refused: Flood SMS", got[301])
      assert.matches("^streamtelecom: send: %d+ of 301 recipients not accepted", err)
    end)

    it("exits 1 with the refusal on stderr, and as JSON on stdout with --json", function()
      for _ = 1, 3 do assert.equals(0, select(3, run("send 79031234567 same"))) end
      local out, err, status = run("send 79031234567 same")
      assert.equals(1, status)
      assert.equals("", out)
      assert.equals("streamtelecom: send failed (flood): gateway refused: Flood SMS\n", err)
      out, err, status = run("--json send 79031234567 same")
      assert.equals(1, status)
      assert.same({ code = "flood", err = "gateway refused: Flood SMS" }, cjson.decode(out))
      assert.matches("^streamtelecom: ", err)
    end)

    it("exits 1 for a gateway refusal of the account: wrong password", function()
      local out, err, status = run("balance", { env = { STREAM_TELECOM_PASSWORD = "Wr0ng-Pw&x" } })
      assert.equals(1, status)
      assert.equals("", out)
      assert.matches("^streamtelecom: balance failed %(auth%): gateway refused: ", err)
      helper.assert_no_secret(err, "Wr0ng-Pw&x")
    end)

    it("exits 2 for a bad phone number and sends nothing", function()
      local out, err, status = run("send 123 Hi")
      assert.equals(2, status)
      assert.equals("", out)
      assert.matches("^streamtelecom: send failed %(invalid%): invalid phone number", err)
      assert.equals(0, #fake.sends())
    end)

    it("exits 2 when there is no recipient or no text", function()
      assert.equals(2, select(3, run("send")))
      assert.equals(2, select(3, run("send Hi")))
      assert.equals(2, select(3, run("send - Hi", { stdin = "\n\n" })))
      assert.equals(2, select(3, run("send - --text -", { stdin = "79031234567\n" })))
      assert.equals(0, #fake.sends())
    end)
  end)

  describe("status and wait", function()
    it("status prints each id's state", function()
      run("send --to 79031234567,79161234567 Hi")
      fake.deliver("1000000001", "deliver")
      local out, err, status = run("status 1000000001 1000000002")
      assert.equals(0, status)
      assert.equals("", err)
      assert.equals("1000000001 delivered\n1000000002 sent\n", out)
    end)

    it("status --json prints an object keyed by id", function()
      run("send 79031234567 Hi")
      fake.deliver("1000000001", "deliver")
      local out, _, status = run("status --json 1000000001")
      assert.equals(0, status)
      local map = cjson.decode(out)
      assert.equals("delivered", map["1000000001"].state)
      assert.equals("deliver", map["1000000001"].raw)
      assert.is_true(map["1000000001"].final)
    end)

    it("status exits 1 for an id the gateway never accepted", function()
      local out, err, status = run("status 42")
      assert.equals(1, status)
      assert.matches("^42 refused not_found: gateway refused: ", out)
      assert.matches("^streamtelecom: 1 of 1 ids failed", err)
      local json, _, json_status = run("--json status 42")
      assert.equals(1, json_status)
      assert.equals("not_found", cjson.decode(json)["42"].code)
    end)

    it("status exits 2 for an id that is not a number", function()
      local _, err, status = run("status abc")
      assert.equals(2, status)
      assert.matches("^streamtelecom: status failed %(invalid%)", err)
    end)

    it("wait prints the final state and exits 0 once every message is final", function()
      run("send --to 79031234567,79161234567 Hi")
      fake.deliver("1000000001", "deliver")
      fake.deliver("1000000002", "not_deliver")
      local out, _, status = run("wait 1000000001 1000000002 --for 5 --interval 0.05")
      assert.equals(0, status)
      assert.equals("1000000001 delivered\n1000000002 undelivered\n", out)
    end)

    it("wait prints the last known state and exits 4 when time runs out", function()
      run("send 79031234567 Hi")
      local out, err, status = run("--json wait 1000000001 --for 0.2 --interval 0.05")
      assert.equals(4, status)
      local rec = cjson.decode(out)["1000000001"]
      assert.equals("sent", rec.state)
      assert.is_false(rec.final)
      assert.matches("not final", err)
    end)

    it("wait --for is the waiting time and --timeout before the command the request limit", function()
      run("send 79031234567 Hi")
      local out, err, status = run("--timeout 5 wait 1000000001 --for 0.2 --interval 0.05")
      assert.equals(4, status)
      assert.equals("1000000001 sent\n", out)
      assert.not_matches("deprecated", err)
    end)

    it("wait still takes --timeout after the command as the waiting time, with a deprecation note", function()
      run("send 79031234567 Hi")
      local out, err, status = run("wait 1000000001 --timeout 0.2 --interval 0.05")
      assert.equals(4, status)
      assert.equals("1000000001 sent\n", out)
      assert.matches("wait --timeout is deprecated: it means --for", err, 1, true)
    end)
  end)

  describe("balance and segments", function()
    it("balance prints the balance, and JSON with --json", function()
      local out, _, status = run("balance")
      assert.equals(0, status)
      assert.equals("100.00\n", out)
      out, _, status = run("balance --json")
      assert.equals(0, status)
      assert.same({ balance = 100, raw = "100.00" }, cjson.decode(out))
    end)

    it("segments needs no credentials and no network", function()
      local no_creds = { env = { STREAM_TELECOM_USER = false, STREAM_TELECOM_PASSWORD = false,
                                 STREAM_TELECOM_URL = "http://127.0.0.1:1/get/" } }
      local out, _, status = run("segments 'Привет'", no_creds)
      assert.equals(0, status)
      assert.equals("encoding=ucs2 parts=1 chars=6 per_part=70 remaining=64\n", out)
      out, _, status = run("--json segments --text -", { stdin = "hello\n", env = no_creds.env })
      assert.equals(0, status)
      assert.same({ encoding = "gsm7", parts = 1, chars = 5, per_part = 160, remaining = 155 },
                  cjson.decode(out))
    end)
  end)

  describe("exit codes", function()
    it("exits 3 when the gateway cannot be reached", function()
      local out, err, status = run("--url http://127.0.0.1:1/get/ balance")
      assert.equals(3, status)
      assert.equals("", out)
      assert.matches("^streamtelecom: balance failed %(connect%): ", err)
      local json, _, json_status = run("--json send 79031234567 Hi",
                           { env = { STREAM_TELECOM_URL = "http://127.0.0.1:1/get/" } })
      assert.equals(3, json_status)
      assert.equals("connect", cjson.decode(json).code)
    end)

    it("exits 3 when the gateway is too slow for --timeout", function()
      fake.set{ latency = 0.3 }
      local _, err, status = run("--timeout 0.05 balance")
      assert.equals(3, status)
      assert.matches("failed %(timeout%)", err)
    end)

    it("exits 3 for an answer that is not a result; JSON keeps its quotes and backslashes", function()
      fake.set{ body = 'odd "answer" with \\ in it' }
      local out, _, status = run("--json send 79031234567 Hi")
      assert.equals(3, status)
      local rec = cjson.decode(out)
      assert.equals("gateway", rec.code)
      assert.matches('odd "answer" with \\ in it', rec.err, 1, true)
    end)

    it("exits 2 for usage errors", function()
      assert.equals(2, select(3, run("")))
      assert.equals(2, select(3, run("frobnicate")))
      assert.equals(2, select(3, run("balance --bogus")))
      assert.equals(2, select(3, run("balance extra")))
      assert.equals(2, select(3, run("status --to 79031234567 1")))
      assert.equals(2, select(3, run("wait 1 --interval soon")))
    end)

    it("exits 2 without credentials in the environment, naming the missing variable", function()
      local _, err, status = run("balance", { env = { STREAM_TELECOM_PASSWORD = false } })
      assert.equals(2, status)
      assert.matches("STREAM_TELECOM_PASSWORD is not set", err, 1, true)
      _, err, status = run("balance", { env = { STREAM_TELECOM_USER = false } })
      assert.equals(2, status)
      assert.matches("STREAM_TELECOM_USER is not set", err, 1, true)
      assert.not_matches("PASSWORD", err, 1, true)
    end)

    it("exits 2 without a sender, saying how to set one, and sends nothing", function()
      local _, err, status = run("send 79031234567 Hi", { env = { STREAM_TELECOM_SENDER = false } })
      assert.equals(2, status)
      assert.matches("set STREAM_TELECOM_SENDER or pass --sender", err, 1, true)
      assert.equals(0, fake.stats().send_requests)
    end)

    it("exits 2 for an unquoted text, with a hint to quote it, and sends nothing", function()
      local _, err, status = run("send 79031234567 hello world")
      assert.equals(2, status)
      assert.matches("'hello' is not a phone number; quote a text of several words", err, 1, true)
      assert.equals(0, fake.stats().send_requests)
    end)
  end)

  describe("the password", function()
    it("is refused on the command line, saying why, and nothing is sent", function()
      for _, args in ipairs({ "send --password " .. shell_quote(PASSWORD) .. " 79031234567 Hi",
                              "--password=" .. shell_quote(PASSWORD) .. " balance",
                              "balance --passwd " .. shell_quote(PASSWORD) }) do
        local out, err, status = run(args)
        assert.equals(2, status)
        assert.equals("", out)
        assert.matches("^streamtelecom: %-%-password is refused: other users", err)
        assert.matches("STREAM_TELECOM_PASSWORD", err)
      end
      assert.equals(0, #fake.sends())
      local stats = fake.stats()
      assert.equals(0, stats.send_requests + stats.balance_requests)
    end)

    it("is not echoed when typed where a command belongs", function()
      local _, err, status = run(shell_quote(PASSWORD))
      assert.equals(2, status)
      assert.matches("unknown command", err)
    end)
  end)

  describe("the password file", function()
    -- A file holding the password, with these permissions.
    local function password_file(mode, content)
      local name = tmpname()
      local f = assert(io.open(name, "wb"))
      f:write(content or (PASSWORD .. "\n"))
      f:close()
      assert(os.execute("chmod " .. mode .. " " .. shell_quote(name)))
      return name
    end

    it("gives the password from STREAM_TELECOM_PASSWORD_FILE, for cron and systemd", function()
      local file = password_file("600")
      local out, err, status = run("balance", { env = { STREAM_TELECOM_PASSWORD = false,
                                                        STREAM_TELECOM_PASSWORD_FILE = file } })
      os.remove(file)
      assert.equals(0, status, err)
      assert.equals("100.00\n", out)
    end)

    it("is refused when group or others can read it, as ssh refuses a key", function()
      for _, mode in ipairs({ "640", "604" }) do
        local file = password_file(mode)
        local out, err, status = run("send 79031234567 Hi",
          { env = { STREAM_TELECOM_PASSWORD = false, STREAM_TELECOM_PASSWORD_FILE = file } })
        os.remove(file)
        assert.equals(2, status)
        assert.equals("", out)
        assert.matches("is open to group or others", err, 1, true)
        assert.matches("chmod 600", err, 1, true)
      end
      assert.equals(0, fake.stats().send_requests)
    end)

    it("is refused beside STREAM_TELECOM_PASSWORD, and when empty", function()
      local file = password_file("600")
      local _, err, status = run("balance", { env = { STREAM_TELECOM_PASSWORD_FILE = file } })
      assert.equals(2, status)
      assert.matches("not both", err, 1, true)
      os.remove(file)
      file = password_file("600", "\n")
      _, err, status = run("balance", { env = { STREAM_TELECOM_PASSWORD = false,
                                                STREAM_TELECOM_PASSWORD_FILE = file } })
      os.remove(file)
      assert.equals(2, status)
      assert.matches("holds no password", err, 1, true)
    end)
  end)

  describe("help", function()
    it("-V prints the module version", function()
      local out, _, status = run("-V")
      assert.equals(0, status)
      assert.matches("^streamtelecom %d+%.%d+%.%d+\n$", out)
    end)

    it("help COMMAND prints that command's usage, help alone the whole usage", function()
      for _, c in ipairs({ "send", "status", "wait", "balance", "segments" }) do
        local out, _, status = run("help " .. c)
        assert.equals(0, status)
        assert.matches("Usage: streamtelecom " .. c, out, 1, true)
      end
      local out, _, status = run("help")
      assert.equals(0, status)
      assert.matches("help [COMMAND]", out, 1, true)
      assert.equals(2, select(3, run("help frobnicate")))
    end)

    it("--help prints the usage and exits 0", function()
      local out, _, status = run("--help")
      assert.equals(0, status)
      assert.matches("Usage: streamtelecom", out, 1, true)
      assert.matches("STREAM_TELECOM_PASSWORD", out, 1, true)
    end)

    it("COMMAND --help prints that command's usage", function()
      for _, c in ipairs({ "send", "status", "wait", "balance", "segments" }) do
        local out, _, status = run(c .. " --help")
        assert.equals(0, status)
        assert.matches("Usage: streamtelecom " .. c, out, 1, true)
      end
    end)
  end)
end)
