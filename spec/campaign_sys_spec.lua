-- luacheck: std +busted
-- The module's private system functions the campaign commands stand on:
-- st._now, _sleep, _append (the journal file, and its lock), _signals, _signal,
-- _isatty, _utf8_prefix.
local st = require("streamtelecom")
local helper = require("spec.helper")

local shell_quote = helper.shell_quote
local dir

local function path(name) return dir .. "/" .. name end

local slurp = helper.slurp

local function mode_of(name)
  return helper.capture("stat -c %a " .. shell_quote(name)):match("%d+")
end

describe("campaign system functions", function()
  before_each(function()
    dir = helper.temp_dir()
  end)
  after_each(function() helper.remove_dir(dir) end)

  it("_now is a monotonic clock and _sleep sleeps at least its time", function()
    local t0 = st._now()
    assert.is_number(t0)
    st._sleep(0.02)
    assert.is_true(st._now() - t0 >= 0.019)
    st._sleep(0)
    st._sleep(-1)
    st._sleep(0 / 0)
  end)

  it("raises for arguments of the wrong type or a path holding a NUL byte", function()
    assert.has_error(function() st._sleep("1") end,
                     "bad argument #1 to 'st._sleep' (number expected, got string)")
    for _, name in ipairs({ "_append" }) do
      assert.has_error(function() st[name](nil) end,
                       "bad argument #1 to 'st." .. name .. "' (string expected, got nil)")
      assert.has_error(function() st[name](42) end,
                       "bad argument #1 to 'st." .. name .. "' (string expected, got number)")
      assert.has_error(function() st[name](path("a\0b")) end,
                       "bad argument #1 to 'st." .. name .. "' (path holds a NUL byte)")
    end
    assert.is_nil(slurp(path("a")), "nothing made under the cut name")
    assert.has_error(function() st._signals({}) end,
                     "bad argument #1 to 'st._signals' (string expected, got table)")
    local f = assert(st._append(path("j")))
    assert.has_error(function() f:write(1) end,
                     "bad argument #1 to 'write' (string expected, got number)")
    assert.has_error(function() f.write({}, "x") end)
    f:close()
  end)

  it("_isatty tells a terminal from a file, and raises for anything but 0, 1 or 2", function()
    -- The module's own process (make asan's preload kept), its stderr a file.
    local output = helper.output
    local probe = ("%s -e 'io.write(tostring(require(\"streamtelecom\")._isatty(2)))' 2>%s")
    assert.equals("false", output(probe:format(helper.LUA, shell_quote(path("err")))))
    -- In a pseudo-terminal (script, itself run without the preload).
    local inside = probe:format(helper.LUA, "/dev/tty")
    local preload = os.getenv("LD_PRELOAD")
    if preload then inside = "env LD_PRELOAD=" .. shell_quote(preload) .. " " .. inside end
    local in_terminal = output(("env -u LD_PRELOAD script -qfec %s /dev/null")
                                 :format(shell_quote(inside)))
    assert.matches("true", in_terminal)
    for _, bad in ipairs({ -1, 3, 1.5, 0 / 0, 2 ^ 40 }) do
      assert.has_error(function() st._isatty(bad) end,
                       "bad argument #1 to 'st._isatty' (want 0, 1 or 2)")
    end
    assert.has_error(function() st._isatty("2") end,
                     "bad argument #1 to 'st._isatty' (number expected, got string)")
    assert.has_error(function() st._isatty() end,
                     "bad argument #1 to 'st._isatty' (number expected, got no value)")
  end)

  it("_journal_line writes a row's record only for strings JSON takes as they are", function()
    assert.equals('{"t":"started","row":7,"to":"79030000001"}',
                  st._journal_line(7, "79030000001"))
    assert.equals('{"t":"done","row":7,"msgs":[{"to":"79030000001","id":"1000000001"}]}',
                  st._journal_line(7, "79030000001", "1000000001"))
    for _, bad in ipairs({ 'a"b', "a\\b", "a\0b", "\31", "\127", "Привет" }) do
      assert.is_nil(st._journal_line(7, bad), bad)
      assert.is_nil(st._journal_line(7, "79030000001", bad), bad)
    end
    -- Anything but an integer row and strings: the journal's cjson writes it.
    assert.is_nil(st._journal_line(7.5, "1"))
    assert.is_nil(st._journal_line("7", "1"))
    assert.is_nil(st._journal_line(7, 79030000001))
    assert.is_nil(st._journal_line(7, "1", 1000000001))
    assert.is_nil(st._journal_line(7, {}))
    assert.is_nil(st._journal_line())
  end)

  it("_utf8_prefix counts the leading bytes that are UTF-8, NUL bytes included", function()
    assert.equals(0, st._utf8_prefix(""))
    assert.equals(3, st._utf8_prefix("a\0b"))
    assert.equals(12, st._utf8_prefix("Привет"))
    assert.equals(2, st._utf8_prefix("ab\255c"))
    assert.equals(8, st._utf8_prefix("Прив\208"), "a sequence cut short")
    assert.equals(0, st._utf8_prefix("\192\128"), "an overlong form")
    assert.equals(1, st._utf8_prefix("a\237\160\128"), "a surrogate")
    local long = string.rep("x", 100000) .. "\255"
    assert.equals(100000, st._utf8_prefix(long))
    assert.has_error(function() st._utf8_prefix(nil) end,
                     "bad argument #1 to 'st._utf8_prefix' (string expected, got nil)")
    assert.has_error(function() st._utf8_prefix({}) end,
                     "bad argument #1 to 'st._utf8_prefix' (string expected, got table)")
  end)

  describe("_append", function()
    it("creates the file 0600 and appends, never truncating", function()
      local name = path("journal")
      local f = assert(st._append(name))
      assert.equals("0600", "0" .. mode_of(name))
      assert.is_true(f:write("one\n"))
      assert.is_true(f:sync())
      f:close()
      f = assert(st._append(name))
      assert.equals("one\n", f:read())
      assert.is_true(f:write("two\0\n"))
      assert.equals("one\ntwo\0\n", f:read())
      f:close()
      assert.equals("one\ntwo\0\n", slurp(name))
    end)

    it("reads a file larger than its buffer whole", function()
      local big = string.rep("0123456789abcdef", 40000)
      local f = assert(st._append(path("big")))
      assert(f:write(big))
      assert.equals(big, f:read())
      f:close()
    end)

    it("refuses a symlink, a directory, and a place it cannot write", function()
      local target = path("target")
      local t = assert(io.open(target, "wb")); t:write("keep"); t:close()
      assert(os.execute("ln -s " .. shell_quote(target) .. " " .. shell_quote(path("link"))))
      local f, err = st._append(path("link"))
      assert.is_nil(f)
      assert.matches("symbolic links", err)
      assert.equals("keep", slurp(target))
      f, err = st._append(dir)
      assert.is_nil(f)
      assert.is_string(err)
      f, err = st._append(path("no/such/dir"))
      assert.is_nil(f)
      assert.matches("No such file", err)
    end)

    it("answers nil, 'closed' after close; a second close is harmless", function()
      local f = assert(st._append(path("j")))
      assert.is_true(f:close())
      assert.is_true(f:close())
      for _, method in ipairs({ "write", "sync", "read" }) do
        local ok, err = f[method](f, "x")
        assert.is_nil(ok)
        assert.equals("closed", err)
      end
      assert.matches("closed", tostring(f))
    end)

    it("says why a write fails: past the file size limit, EFBIG, not a signal", function()
      local p = assert(io.popen("ulimit -f 1; " .. helper.LUA .. " -e " .. shell_quote([[
        local st = require("streamtelecom")
        st._signals("")
        local f = assert(st._append(]] .. ("%q"):format(path("small")) .. [[))
        print(f:write(string.rep("x", 4096)))
      ]]) .. " 2>&1"))
      local out = p:read("*a")
      p:close()
      assert.matches("nil\tFile too large", out)
    end)
  end)

  describe("file:lock", function()
    -- A child that opens name, locks it, says its pid once it holds it, and
    -- keeps it until the file go exists (or it is killed).
    local function holder(name, go)
      local p = assert(io.popen("echo $$; exec " .. helper.LUA .. " -e " .. shell_quote([[
        local st = require("streamtelecom")
        local f = assert(st._append(]] .. ("%q"):format(name) .. [[))
        assert(f:lock())
        io.write("held\n"); io.flush()
        while not io.open(]] .. ("%q"):format(go) .. [[) do st._sleep(0.005) end
        f:close()
      ]])))
      local pid = tonumber(p:read("*l"))
      assert.equals("held", p:read("*l"))
      return p, pid
    end

    it("locks the file itself, one holder at a time, says who, writes nothing", function()
      local name, go = path("journal"), path("go")
      local p, pid = holder(name, go)
      local f = assert(st._append(name))
      local ok, err, who = f:lock()
      assert.is_nil(ok)
      assert.equals("busy", err)
      assert.equals(pid, who)
      f:close()
      assert(io.open(go, "w")):close()
      p:read("*a")
      p:close()
      f = assert(st._append(name))
      assert.is_true(f:lock())
      -- Another open of the same file is another holder, even in this process.
      local g = assert(st._append(name))
      assert.equals("busy", select(2, g:lock()))
      g:close()
      assert.is_true(f:close())
      assert.same({ nil, "closed" }, { f:lock() })
      assert.equals("", slurp(name))
      assert.is_nil(slurp(name .. ".lock"))
    end)

    it("is released when its holder is killed with SIGKILL", function()
      local name = path("journal")
      local p, pid = holder(name, path("never"))
      local f = assert(st._append(name))
      assert.equals("busy", select(2, f:lock()))
      os.execute("kill -9 " .. pid)
      p:read("*a")
      p:close()
      assert.is_true(f:lock())
      f:close()
    end)
  end)

  it("_signals turns SIGTERM and SIGINT into a flag; a second SIGINT ends at once", function()
    local err = path("stderr")
    local p = assert(io.popen("sh -c " .. shell_quote("echo $$; exec " .. helper.LUA .. " -e "
                                                      .. shell_quote([[
      local st = require("streamtelecom")
      st._signals("stopped at once\n")
      io.write(tostring(st._signal()), "\n"); io.flush()
      while not st._signal() do st._sleep(0.005) end
      io.write(st._signal(), "\n"); io.flush()
      while true do st._sleep(0.005) end
    ]])) .. " 2>" .. shell_quote(err) .. "; echo \"exit=$?\""))
    local pid = tonumber(p:read("*l"))
    assert.equals("nil", p:read("*l"))
    os.execute("kill -TERM " .. pid)
    assert.equals("SIGTERM", p:read("*l"))
    os.execute("kill -TERM " .. pid) -- a second SIGTERM changes nothing
    os.execute("kill -INT " .. pid)
    assert.equals("exit=130", p:read("*l"))
    p:close()
    assert.equals("stopped at once\n", slurp(err))
  end)
end)

describe("campaign journal records", function()
  local journal_mod = require("streamtelecom.campaign.journal")

  before_each(function()
    dir = helper.temp_dir()
  end)
  after_each(function() helper.remove_dir(dir) end)

  -- Numbers and ids take a path of their own (written without cjson): every
  -- string, a number's look-alikes included, reads back as it was written.
  it("read back every number and id as written, whatever its bytes", function()
    local values = { "79030000001", "+7 903 000-00-01", "1e5", "0x1F", " 12", "12 ", "12\n",
                     "12\0x", 'a"b', "a\\b", "\1", "Привет", "-3.5", "", "inf", "nan",
                     "\127", "a\tb", "~}{", "/" }
    local name = path("j")
    local j = assert(journal_mod.open(assert(journal_mod.lock(name)), name,
                                      { t = "campaign", v = 1, sha256 = "x" }))
    for n, v in ipairs(values) do
      j:started(n, v)
      j:done(n, { { to = v, id = v } })
    end
    assert(j:flush())
    assert(j:close())
    local back = assert(journal_mod.read(name))
    for n, v in ipairs(values) do
      local rec = back.last[n]
      assert.equals("done", rec.t)
      assert.equals(v, rec.msgs[1].to, "row " .. n)
      assert.equals(v, rec.msgs[1].id, "row " .. n)
    end
  end)
end)
