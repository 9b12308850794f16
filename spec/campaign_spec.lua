-- luacheck: std +busted
-- `streamtelecom campaign FILE` and `campaign-status JOURNAL`, run as an
-- operator runs them: a child process against the fake gateway, killed with
-- SIGKILL and started again.
local fake = require("spec.fake")
local helper = require("spec.helper")
local cjson = require("cjson")
local socket = require("socket")

local USER, PASSWORD = "campaigner", "Camp-Pw&7=q%z"
local shell_quote = helper.shell_quote

local dir -- a fresh directory per spec

local function path(name) return dir .. "/" .. name end

local function write(name, content) return helper.write_file(path(name), content) end

local slurp = helper.slurp

-- Chunks of 300 rows per send_many: the specs cross chunk boundaries.
local function env()
  return { STREAM_TELECOM_URL = fake.url, STREAM_TELECOM_USER = USER,
           STREAM_TELECOM_PASSWORD = PASSWORD, STREAM_TELECOM_SENDER = "MyShop",
           STREAMTELECOM_CAMPAIGN_CHUNK = "300" }
end

-- Runs the command to its end; answers stdout, stderr and the exit status.
local function run(args)
  return helper.run_cli(env(), args, path("stderr"), PASSWORD)
end

local phone = helper.campaign_phone

local function csv_of(n, name) return helper.campaign_csv(path(name or "rows.csv"), n) end

-- How many times the gateway got each number.
local function sends_by_number()
  local count = {}
  for _, s in ipairs(fake.sends()) do
    for n in s.dadr:gmatch("[^,]+") do count[n] = (count[n] or 0) + 1 end
  end
  return count
end

-- The journal's last record per row.
local journal_rows = helper.journal_rows

local function unknown_rows(last)
  local set, n = {}, 0
  for row, rec in pairs(last) do
    if rec.t == "started" then set[row] = true; n = n + 1 end
  end
  return set, n
end

describe("streamtelecom campaign", function()
  lazy_setup(function() fake.start() end)
  before_each(function()
    fake.reset()
    fake.account{ user = USER, pwd = PASSWORD, balance = 1000000, senders = { "MyShop", "Other" } }
    dir = helper.temp_dir()
  end)
  after_each(function() helper.remove_dir(dir) end)

  describe("reads CSV", function()
    it("with quotes, commas, new lines, \"\" escapes, a BOM, CRLF and empty lines", function()
      local file = write("edge.csv", "\239\187\191sender,text,to\r\n"
        .. "Other,\"Hello, \"\"Ann\"\"\r\nsee you\",+7 903 000-00-01\r\n"
        .. "\r\n"
        .. ",Привет,79030000002\r\n"
        .. "\n"
        .. "MyShop,\"\",79030000003\r\n")
      local _, err, status = run("campaign " .. shell_quote(file))
      assert.equals(2, status)
      assert.matches("row 3 %(line 7%), column text: invalid text: it is empty", err)
      assert.equals(0, #fake.sends(), "nothing sent while a row is bad")

      file = write("edge.csv", "\239\187\191sender,text,to\r\n"
        .. "Other,\"Hello, \"\"Ann\"\"\r\nsee you\",+7 903 000-00-01\r\n"
        .. "\r\n"
        .. ",Привет,79030000002\r\n"
        .. "\n")
      local out
      out, err, status = run("campaign " .. shell_quote(file))
      assert.equals(0, status, err)
      assert.matches("2 rows: 2 sent, 0 refused, 0 failed, 0 unknown, 0 invalid", out)
      local sends = fake.sends()
      assert.equals(2, #sends)
      assert.equals("Hello, \"Ann\"\r\nsee you", sends[1].text)
      assert.equals("Other", sends[1].sadr)
      assert.equals("79030000001", sends[1].dadr)
      assert.equals("Привет", sends[2].text)
      assert.equals("MyShop", sends[2].sadr, "an empty sender field takes the default")
    end)

    it("refuses a header without a column it needs", function()
      local _, err, status = run("campaign " .. shell_quote(write("a.csv", "to\n79030000001\n")))
      assert.equals(2, status)
      assert.matches("the header has no 'text' column", err)
      _, err, status = run("campaign " .. shell_quote(write("b.csv", "to,text,TO\n1,2,3\n")))
      assert.equals(2, status)
      assert.matches("column 'to' appears twice in the header", err)
      assert.equals(0, #fake.sends())
    end)

    it("names a file it cannot read once, and sends nothing", function()
      local missing = path("missing.csv")
      local _, err, status = run("campaign " .. shell_quote(missing))
      assert.equals(2, status)
      assert.equals("streamtelecom: cannot read " .. missing .. ": No such file or directory\n", err)
      assert.equals(0, #fake.sends())
    end)

    it("says it cannot hash the file without sha256sum, sends nothing, and frees the lock",
       function()
      -- A PATH that has the Lua interpreter and nothing else.
      local bin = path("bin")
      assert(os.execute("mkdir " .. shell_quote(bin) .. " && ln -s \"$(command -v "
                        .. helper.LUA .. ")\" " .. shell_quote(bin)))
      local file = csv_of(3)
      local e = env()
      e.PATH = bin
      local _, err, status = helper.run_cli(e, "campaign " .. shell_quote(file), path("stderr"),
                                            PASSWORD)
      assert.equals(2, status)
      assert.equals("streamtelecom: cannot hash " .. file .. " (sha256sum)\n", err)
      assert.equals(0, #fake.sends())
      local _, _, again = run("campaign " .. shell_quote(file))
      assert.equals(0, again, "the lock was released")
      assert.equals(3, #fake.sends())
    end)

    it("names every row that misses a field, and sends nothing", function()
      local _, err, status = run("campaign " .. shell_quote(write("m.csv",
        "to,text\n79030000001,Hi\n79030000002\n79030000003,Hi,extra\n")))
      assert.equals(2, status)
      assert.matches("row 2 %(line 3%): 1 field, the header has 2", err)
      assert.matches("row 3 %(line 4%): 3 fields, the header has 2", err)
      assert.equals(0, #fake.sends())
    end)

    it("names a bad phone at row 1,234 by its row and column, and sends nothing", function()
      local lines = { "to,text" }
      for i = 1, 2000 do lines[#lines + 1] = phone(i) .. ",Hi " .. i end
      lines[1235] = "12-34,Hi 1234"
      lines[1601] = phone(1600) .. ",\"bad \0 text\""
      local file = write("bad.csv", table.concat(lines, "\n"))
      local out, err, status = run("--json campaign " .. shell_quote(file))
      assert.equals(2, status)
      assert.matches("row 1234 %(line 1235%), column to: invalid phone number '12%-34'", err)
      assert.matches("row 1600 %(line 1601%), column text: invalid text: it holds a NUL byte", err)
      assert.matches("2 rows of 2000 bad: nothing sent", err)
      local summary = cjson.decode(out)
      assert.equals(2, summary.invalid)
      assert.equals(1234, summary.invalid_rows[1].row)
      assert.equals("to", summary.invalid_rows[1].column)
      assert.equals(0, #fake.sends())
      -- The journal is the run's lock: made (empty) before the file is read.
      assert.equals("", slurp(file .. ".journal"), "nothing journaled before anything is sent")
    end)

    it("refuses a row that would text someone twice (number, text and sender of an earlier "
       .. "row); --skip-invalid sends the first", function()
      local file = write("twins.csv", "to,text,sender\n+7 (903) 000-00-01,Hi,\n79030000002,Hi,\n"
                         .. "79030000001,Hi,\n79030000001,Bye,\n79030000001,Hi,Other\n"
                         .. "79030000001,Bye,\n0079030000001,Hi,\n")
      local _, err, status = run("campaign " .. shell_quote(file))
      assert.equals(2, status)
      assert.matches("row 3 %(line 4%), column to: the same number, text and sender as row 1: "
                     .. "it would text them twice", err)
      assert.matches("row 6 %(line 7%), column to: the same number, text and sender as row 4", err)
      assert.matches("2 rows of 7 bad: nothing sent", err)
      assert.equals(0, #fake.sends())
      local out
      out, err, status = run("campaign " .. shell_quote(file) .. " --skip-invalid")
      -- 00 before a number is another number (a leading 0 is kept): sent,
      -- and the fake refuses it (direction_closed).
      assert.equals(1, status, err)
      assert.matches("7 rows: 4 sent, 1 refused, 0 failed, 0 unknown, 2 invalid", out)
      local texts = {}
      for _, send in ipairs(fake.sends()) do
        texts[#texts + 1] = send.dadr .. " " .. send.text .. " " .. send.sadr
      end
      table.sort(texts)
      assert.same({ "0079030000001 Hi MyShop", "79030000001 Bye MyShop", "79030000001 Hi MyShop",
                    "79030000001 Hi Other", "79030000002 Hi MyShop" }, texts)
    end)

    it("sends the good rows with --skip-invalid and lists the bad ones", function()
      local file = write("s.csv", "to,text,sender\n79030000001,Hi,\n123,Hi,\n79030000003,Hi,Way too long sender\n")
      local out, err, status = run("campaign " .. shell_quote(file) .. " --skip-invalid")
      assert.equals(0, status, err)
      assert.matches("row 2 %(line 3%), column to: invalid phone number", err)
      assert.matches("row 3 %(line 4%), column sender: invalid sender", err)
      assert.matches("3 rows: 1 sent, 0 refused, 0 failed, 0 unknown, 2 invalid", out)
      assert.equals(1, #fake.sends())
    end)
  end)

  it("has its usage under help campaign and help campaign-status", function()
    for _, command in ipairs({ "campaign", "campaign-status" }) do
      local out, _, status = run("help " .. command)
      assert.equals(0, status)
      assert.matches("^Usage: streamtelecom " .. command:gsub("%-", "%%-") .. " ", out)
    end
  end)

  it("points a usage error at the command's own help, and sends nothing", function()
    local file = csv_of(2)
    local _, err, status = run("campaign " .. shell_quote(file) .. " --concurrency 0")
    assert.equals(2, status)
    assert.equals("streamtelecom: --concurrency wants a whole number >= 1\n"
                  .. "Try 'streamtelecom help campaign'.\n", err)
    _, err, status = run("campaign-status --bogus")
    assert.equals(2, status)
    assert.matches("Try 'streamtelecom help campaign%-status'.\n$", err)
    assert.equals(0, #fake.sends())
  end)

  it("reads JSON lines, by extension or --format jsonl", function()
    local rows = '{"to":"79030000001","text":"Hi \\"JSON\\" \\u00e9\\ud83d\\ude00","name":"n1"}\n\n'
                 .. '{"text":"Second","to":79030000002,"sender":"Other"}\n'
    local out, err, status = run("campaign " .. shell_quote(write("r.jsonl", rows)))
    assert.equals(0, status, err)
    assert.matches("2 rows: 2 sent", out)
    local sends = fake.sends()
    assert.equals("Hi \"JSON\" é😀", sends[1].text)
    assert.equals("n1", sends[1].name_deliver)
    assert.equals("79030000002", sends[2].dadr)
    assert.equals("Other", sends[2].sadr)
    err, status = select(2, run("campaign --format jsonl " .. shell_quote(write("r.txt",
      '{"to":"79030000003","text":"x","colour":"red"}\n[1]\n{"to":\n'))))
    assert.equals(2, status)
    assert.matches("row 1 %(line 1%): column colour: unknown key", err)
    assert.matches("row 2 %(line 2%): want one JSON object per line", err)
    assert.matches("row 3 %(line 3%): ", err)
  end)

  it("counts refusals by code, exits 1, and never sends a refused row again", function()
    local file = write("r.csv", "to,text,sender\n79030000001,Hi,\n79030000002,Hi,Stranger\n"
                                .. "8613912345678,Hi,\n")
    local out, err, status = run("--json campaign " .. shell_quote(file))
    assert.equals(1, status, err)
    local summary = cjson.decode(out)
    assert.equals(1, summary.sent)
    assert.equals(2, summary.refused)
    assert.same({ unknown_sender = 1, direction_closed = 1 }, summary.codes)
    out, err, status = run("--json campaign " .. shell_quote(file))
    assert.equals(1, status, err)
    assert.equals(3, #fake.sends(), "the second run sent nothing")
    assert.equals(3, cjson.decode(out).earlier)
    -- --resend-refused=CODE sends the rows refused with that code once more;
    -- without codes, every refused row (before FILE, it does not take FILE).
    assert.equals(1, select(3, run("campaign --resend-refused=unknown_sender " .. shell_quote(file))))
    assert.equals(4, #fake.sends())
    assert.equals("Stranger", fake.sends()[4].sadr)
    assert.equals(1, select(3, run("campaign --resend-refused " .. shell_quote(file))))
    assert.equals(6, #fake.sends())
  end)

  it("refuses a journal that belongs to another file, and sends nothing", function()
    local one, other = csv_of(3, "one.csv"), csv_of(4, "other.csv")
    assert.equals(0, select(3, run("campaign " .. shell_quote(one))))
    local _, err, status = run("campaign " .. shell_quote(other) .. " --journal " .. shell_quote(one .. ".journal"))
    assert.equals(2, status)
    assert.matches("journal .*one%.csv%.journal belongs to another file %(.*one%.csv, sha256 %x+%)", err)
    assert.not_matches("remove", err)
    assert.equals(3, #fake.sends())
    -- The same file, changed: never "remove the journal" (every row again).
    write("one.csv", "to,text\n" .. phone(1) .. ",Changed\n")
    _, err, status = run("campaign " .. shell_quote(one))
    assert.equals(2, status)
    assert.matches("one%.csv changed since its journal .*one%.csv%.journal was written %(sha256 %x+ "
                   .. "then, %x+ now%).*put the file back as it was to resume", err)
    assert.not_matches("remove", err)
    assert.equals(3, #fake.sends())
  end)

  it("shows a self-updating progress line on a terminal, and none in a pipe", function()
    fake.set{ latency = 0.002 }
    local file = csv_of(300)
    local cmd = helper.cli_command(env(), "campaign " .. shell_quote(file) .. " --concurrency 4")
    -- Under make asan only the command is sanitized, not script(1) itself
    -- (whose own leaks LeakSanitizer would print).
    local preload = os.getenv("LD_PRELOAD")
    if preload then cmd = "env LD_PRELOAD=" .. shell_quote(preload) .. " " .. cmd end
    local p = assert(io.popen("env -u LD_PRELOAD script -qfec " .. shell_quote(cmd)
                              .. " /dev/null </dev/null"))
    local tty = p:read("*a")
    p:close()
    assert.matches("\r%d+/300 %(%d+%%%)  sent %d+  refused 0  failed 0  unknown %d+  [%d.]+/s  "
                   .. "ETA [%d:?]+", tty)
    -- The line is cleared at the end: the summary is the last line.
    assert.matches("\r\27%[K[^\r]*300 rows: 300 sent, 0 refused, 0 failed, 0 unknown, 0 invalid\r?\n$",
                   tty)
    helper.assert_no_secret(tty, PASSWORD)

    local out, err, status = run("campaign " .. shell_quote(csv_of(10, "b.csv")))
    assert.equals(0, status)
    assert.equals("", err)
    assert.not_matches("remaining", out)
    err = select(2, run("campaign " .. shell_quote(csv_of(12, "c.csv")) .. " --progress"))
    assert.matches("progress: 12/12  sent 12  refused 0  failed 0  unknown 0\n$", err)
  end)

  it("survives SIGKILL, SIGTERM and SIGINT at random moments: every row once, unknown ones "
     .. "never resent", function()
    local N, CONCURRENCY = 2000, 8
    fake.set{ latency = 0.01 }
    local file = csv_of(N)
    local journal = file .. ".journal"
    local args = "campaign " .. shell_quote(file) .. " --concurrency " .. CONCURRENCY
    local out, err_out = path("bg.out"), path("bg.err")
    local kills, runs, unknown_before = 0, 0, 0
    local stops = { KILL = 0, TERM = 0, INT = 0 }
    local started = socket.gettime()
    while true do
      runs = runs + 1
      assert(runs < 200, "the campaign never finished")
      os.remove(out)
      local p = assert(io.popen("sh -c " .. shell_quote(helper.cli_command(env(), args)
        .. " >" .. shell_quote(out) .. " 2>" .. shell_quote(err_out) .. " </dev/null & echo $!")))
      local pid = tonumber(p:read("*l"))
      p:close()
      -- Kill after a random number of further sends (0: while it starts up,
      -- with SIGKILL; else SIGKILL, SIGTERM or SIGINT).
      local further = helper.rand(0, 120)
      local target = fake.stats().send_requests + further
      local signal = further == 0 and "KILL" or ({ "KILL", "TERM", "INT" })[helper.rand(1, 3)]
      local finished = false
      local deadline = socket.gettime() + 60
      while true do
        if (slurp(out) or "") ~= "" then finished = true; break end
        if fake.stats().send_requests >= target then break end
        -- A run that ended without its summary, or stands still, is a
        -- failure, never a wait.
        local stat = slurp("/proc/" .. pid .. "/stat")
        local ended = not stat or stat:match("^%d+ %b() Z")
        if (ended or socket.gettime() > deadline) and (slurp(out) or "") == "" then
          os.execute("kill -KILL " .. pid .. " 2>/dev/null")
          error(("run %d %s without a summary (process: %s); its stderr: %s")
                :format(runs, ended and "ended" or "stood still for 60 s", tostring(stat),
                        slurp(err_out) or "(none)"))
        end
        socket.sleep(0.001)
      end
      if finished then break end
      os.execute("kill -" .. signal .. " " .. pid .. " 2>/dev/null")
      kills = kills + 1
      stops[signal] = stops[signal] + 1
      -- Dead (gone or a zombie) before the next run starts.
      while true do
        local stat = slurp("/proc/" .. pid .. "/stat")
        if not stat or stat:match("^%d+ %b() Z") then break end
        socket.sleep(0.001)
      end
      local _, unknown_now = unknown_rows(journal_rows(journal))
      -- A clean stop lets the requests in flight finish: none unknown.
      local limit = signal == "KILL" and CONCURRENCY or 0
      assert.is_true(unknown_now - unknown_before <= limit,
        ("SIG%s %d left %d rows unknown"):format(signal, kills, unknown_now - unknown_before))
      unknown_before = unknown_now
    end
    assert.is_true(kills >= 20, "only " .. kills .. " kills")

    local last = journal_rows(journal)
    local unknown, n_unknown = unknown_rows(last)
    local count = sends_by_number()
    for i = 1, N do
      if unknown[i] then
        assert.is_true((count[phone(i)] or 0) <= 1, "unknown row " .. i .. " sent twice")
      else
        assert.equals(1, count[phone(i)], "row " .. i)
        assert.equals("done", last[i].t)
      end
    end
    local summary = slurp(out)
    assert.matches(("%d rows: %d sent, 0 refused, 0 failed, %d unknown"):format(
      N, N - n_unknown, n_unknown), summary)

    -- Running again changes nothing; --resend-unknown is the explicit choice.
    local _, err, status = run(args)
    assert.equals(n_unknown > 0 and 4 or 0, status, err)
    if n_unknown > 0 then assert.matches("unknown outcome", err) end
    assert.same(count, sends_by_number())
    _, err, status = run(args .. " --resend-unknown")
    assert.equals(0, status, err)
    local after = sends_by_number()
    for i = 1, N do
      if unknown[i] then
        assert.equals((count[phone(i)] or 0) + 1, after[phone(i)])
      else
        assert.equals(1, after[phone(i)])
      end
    end
    print(("\n  %d stops (%d SIGKILL, %d SIGTERM, %d SIGINT), %d runs, %d rows unknown, %.1f s")
      :format(kills, stops.KILL, stops.TERM, stops.INT, runs, n_unknown,
              socket.gettime() - started))
  end)

  describe("campaign-status", function()
    it("prints the state of every id the journal holds, in row order", function()
      local file = csv_of(3)
      -- One at a time: the ids follow the rows.
      assert.equals(0, select(3, run("campaign " .. shell_quote(file) .. " --concurrency 1")))
      fake.deliver("1000000002")
      local out, err, status = run("--json campaign-status " .. shell_quote(file .. ".journal"))
      assert.equals(0, status)
      assert.equals("", (err:gsub("streamtelecom: 2 messages not final yet\n", "")))
      local list = cjson.decode(out)
      assert.equals(3, #list)
      assert.same({ row = 2, to = "79030000002", id = "1000000002", state = "delivered",
                    raw = "deliver", final = true }, list[2])
    end)

    it("without --format prints a table of every row of the file, in row order", function()
      -- Row 1 sent, 2 invalid, 3 refused, 4 never started (the run stopped
      -- on the account's refusal), 5 with a carried extra column.
      local file = write("t.csv", "to,text,sender,customer\n79030000001,Hi,,c1\n123,Hi,,c2\n"
                                  .. "79030000003,Hi,Stranger,c3\n79030000004,Hi,,c4\n")
      local _, err, status = run("campaign " .. shell_quote(file) .. " --skip-invalid "
                                   .. "--concurrency 1")
      assert.equals(1, status, err)
      fake.deliver("1000000001")
      local out
      out, err, status = run("campaign-status " .. shell_quote(file .. ".journal"))
      assert.equals(0, status, err)
      local lines = {}
      for line in out:gmatch("[^\n]+") do lines[#lines + 1] = line end
      assert.equals(5, #lines, out)
      assert.matches("^ROW +TO +OUTCOME +ID +STATE +CODE/ERROR$", lines[1])
      assert.matches("^1 +79030000001 +sent +1000000001 +delivered +%-$", lines[2])
      assert.matches("^2 +123 +invalid +%- +%- +invalid: invalid phone number", lines[3])
      assert.matches("^3 +79030000003 +refused +%- +%- +unknown_sender: %S", lines[4])
      assert.matches("^4 +79030000004 +sent +1000000002 +sent +%-$", lines[5])
      -- The columns line up: each cell starts where its header does.
      for _, column in ipairs({ "TO", "OUTCOME", "ID", "STATE", "CODE/ERROR" }) do
        local at = lines[1]:find(column, 1, true)
        for i = 2, 5 do assert.matches("^ %S", lines[i]:sub(at - 1), lines[i]) end
      end
      -- --local: the journal alone, no state asked of the gateway.
      local asked = fake.stats().status_requests
      out, err, status = run("campaign-status --local " .. shell_quote(file .. ".journal"))
      assert.equals(0, status, err)
      assert.matches("\n1 +79030000001 +sent +1000000001 +%- +%-\n", out)
      assert.equals(asked, fake.stats().status_requests)
    end)

    it("lists the rows a stopped run never started as pending", function()
      fake.account{ user = USER, pwd = PASSWORD, balance = 1000000, senders = { "MyShop" },
                    blocked = true }
      local file = csv_of(2)
      assert.equals(1, select(3, run("campaign " .. shell_quote(file) .. " --concurrency 1")))
      local out, err, status = run("campaign-status --local " .. shell_quote(file .. ".journal"))
      assert.equals(0, status, err)
      assert.matches("\n1 +79030000001 +refused +%- +%- +blocked: %S[^\n]*\n"
                     .. "2 +79030000002 +pending +%- +%- +%-\n$", out)
    end)

    it("with --wait polls until every message is final, with the progress line", function()
      local file = csv_of(5)
      assert.equals(0, select(3, run("campaign " .. shell_quote(file))))
      fake.set{ auto_deliver = 1.2 }
      local out, err, status = run("campaign-status --wait --interval 1 --progress "
                                   .. shell_quote(file .. ".journal"))
      assert.equals(0, status, err)
      assert.matches("progress: 0/5 %(0%%%)  final 0  not final 5", err)
      assert.matches("progress: 5/5  final 5  not final 0", err)
      assert.equals(5, select(2, out:gsub("delivered", "")))
    end)

    it("says which journal it cannot read, or that a file is not one", function()
      local missing = path("missing.journal")
      local _, err, status = run("campaign-status " .. shell_quote(missing))
      assert.equals(2, status)
      assert.equals("streamtelecom: cannot read the journal " .. missing
                    .. ": No such file or directory\n", err)
      local notes = write("notes.txt", "my notes\n")
      _, err, status = run("campaign-status " .. shell_quote(notes))
      assert.equals(2, status)
      assert.equals("streamtelecom: " .. notes .. " is not a campaign journal\n", err)
    end)

    it("with --wait exits 4 when time runs out", function()
      local file = csv_of(2)
      assert.equals(0, select(3, run("campaign " .. shell_quote(file))))
      local _, err, status = run("campaign-status --wait --timeout 0 " .. shell_quote(file .. ".journal"))
      assert.equals(4, status)
      assert.matches("2 messages not final yet", err)
    end)
  end)
end)
