-- Loaded by busted before any spec (see .busted): shared test utilities.
local helper = {}
-- luassert, as the specs see it: this file runs before busted gives them one.
local expect = require("luassert")

helper.LUA = os.getenv("STREAMTELECOM_LUA") or "lua5.4"

-- Every message a failing call returns goes through here, so each spec that
-- fails on purpose also proves the password stays out of it.
function helper.assert_no_secret(message, secret)
  assert(type(message) == "string", "want an error message, got " .. type(message))
  local encoded = secret:gsub("[^%w%-%._~]", function(c)
    return string.format("%%%02X", c:byte())
  end)
  assert(not message:find(secret, 1, true), "password leaked: " .. message)
  assert(not message:find(encoded, 1, true), "encoded password leaked: " .. message)
end

-- The repository's root, as busted runs from it ("." there), found from
-- this file's own path so that it holds from any directory.
local HELPER_SOURCE = debug.getinfo(1, "S").source
function helper.repo_root()
  if HELPER_SOURCE:sub(1, 1) == "@" then
    local dir = HELPER_SOURCE:sub(2):match("^(.*)[/\\]spec[/\\][^/\\]*$")
    if dir then return dir == "" and "." or dir end
  end
  return "."
end

-- Specs of servers with a Lua of their own (nginx's LuaJIT, HAProxy's Lua
-- 5.3) test the same thing whatever Lua runs busted: `make test-all` runs
-- them once, with the default Lua, not five times.
function helper.host_specs_here()
  return helper.LUA == "lua5.4"
end

-- A string as one word for /bin/sh.
function helper.shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- A new empty directory for a spec's files, and its removal with them.
function helper.temp_dir()
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir " .. helper.shell_quote(dir)))
  return dir
end

function helper.remove_dir(dir) os.execute("rm -rf " .. helper.shell_quote(dir)) end

-- A shell command run without the sanitizer preloads of `make asan` (nginx,
-- luarocks, gcc and sed are not ours to check, and LeakSanitizer would fail
-- them at exit) and without the variables of the `make` that started busted.
-- exec: the shell itself never reaches LeakSanitizer's at-exit check.
function helper.unsanitized(cmd)
  return "exec env -u LD_PRELOAD -u ASAN_OPTIONS -u LSAN_OPTIONS -u UBSAN_OPTIONS"
         .. " -u MAKEFLAGS -u MFLAGS -u MAKELEVEL " .. cmd
end

-- nginx's "user" line for a config started by this process: as root, its
-- workers keep root (as fakegw/fakegw and examples/openresty/run do) rather
-- than drop to nobody, who may not read a checkout in a private folder.
function helper.nginx_user_line()
  if helper.capture("id -u"):match("^%s*(%d+)") ~= "0" then
    return "# (not root: workers keep the caller's user)"
  end
  return ("user %s %s;"):format(helper.capture("id -un"):match("%S+"),
                                helper.capture("id -gn"):match("%S+"))
end

-- Runs a shell command as this process would (make asan's preloads kept:
-- for the module's own processes); answers its standard output.
function helper.output(cmd)
  local p = assert(io.popen(cmd))
  local out = p:read("*a")
  p:close()
  return out
end

-- Runs an unsanitized command; answers its output, stderr included.
function helper.capture(cmd)
  return helper.output(helper.unsanitized(cmd) .. " 2>&1")
end

-- How many times a Lua script (source, run with args) made system call
-- `name`, by strace -c; and strace's table, to show when a spec fails.
-- strace itself runs unsanitized; the traced Lua keeps `make asan`'s
-- preloads, which the module's sanitized build needs.
function helper.count_syscalls(source, args, name)
  local script, out = os.tmpname(), os.tmpname()
  helper.write_file(script, source)
  local keep = {}
  for _, var in ipairs{ "LD_PRELOAD", "ASAN_OPTIONS", "LSAN_OPTIONS", "UBSAN_OPTIONS" } do
    local v = os.getenv(var)
    -- LeakSanitizer cannot run under ptrace: the leak checks are the suite's.
    if v and var == "ASAN_OPTIONS" then v = v .. ":detect_leaks=0" end
    if v then keep[#keep + 1] = "-E " .. helper.shell_quote(var .. "=" .. v) end
  end
  local quoted = {}
  for i, a in ipairs(args) do quoted[i] = helper.shell_quote(a) end
  local log = helper.capture("sh -c " .. helper.shell_quote(
    "strace -f -c -e trace=" .. name .. " " .. table.concat(keep, " ") .. " -o "
    .. helper.shell_quote(out) .. " " .. helper.LUA .. " " .. helper.shell_quote(script) .. " "
    .. table.concat(quoted, " ") .. "; echo status=$?"))
  os.remove(script)
  local summary = helper.slurp(out) or ""
  os.remove(out)
  assert(log:match("status=0"), log)
  -- strace -c's columns: % time, seconds, usecs/call, calls, [errors,] syscall.
  local calls = 0
  for line in summary:gmatch("[^\n]+") do
    if line:match("%s" .. name .. "%s*$") then
      calls = tonumber(line:match("^%s*[%d.]+%s+[%d.]+%s+%d+%s+(%d+)")) or 0
    end
  end
  return calls, summary
end

-- A private random stream, so that busted's own math.random seed is untouched.
local rand_state
function helper.rand(lo, hi)
  if not rand_state then
    local addr = tonumber(tostring({}):match("0x(%x+)") or "0", 16) or 0
    rand_state = (os.time() + math.floor(os.clock() * 1e6) + addr) % 2147483647
    if rand_state == 0 then rand_state = 1 end
  end
  rand_state = (rand_state * 16807) % 2147483647
  return lo + rand_state % (hi - lo + 1)
end

-- The kernel's range of ports for outgoing connections (Linux's default
-- when /proc does not say).
local function ephemeral_range()
  local f = io.open("/proc/sys/net/ipv4/ip_local_port_range")
  if not f then return 32768, 60999 end
  local lo, hi = f:read("*n", "*n")
  f:close()
  return lo or 32768, hi or 60999
end

-- A random first port for `span` listeners in a row, outside the ports the
-- kernel gives outgoing connections: the suite's own requests leave thousands
-- of those in TIME_WAIT, and Linux refuses a listener on such a port even
-- with SO_REUSEADDR (CI once lost five HAProxy starts in a row to it).
function helper.listen_port(span)
  span = span or 1
  local lo, hi = ephemeral_range()
  if lo - span >= 11000 then return helper.rand(10000, lo - span) end
  if hi + span <= 64535 then return helper.rand(hi + 1, 65536 - span) end
  return helper.rand(1024, 65536 - span)
end

function helper.urlencode(s)
  return (tostring(s):gsub("[^%w%-%._~]", function(c)
    return string.format("%%%02X", string.byte(c))
  end))
end

-- A client made from defaults with some options changed.
function helper.client(defaults, opts)
  local o = {}
  for k, v in pairs(defaults) do o[k] = v end
  for k, v in pairs(opts or {}) do o[k] = v end
  return assert(require("streamtelecom").new(o))
end

-- The password of the fake's `rich` account: & = % + ? in it, so a leak into
-- a message shows up raw or percent-encoded.
helper.RICH_PASSWORD = "p&ss=w%rd+?"

-- A client for the `rich` account on the fake gateway (over HTTP unless opts
-- names another url), with some options changed.
function helper.rich_client(opts)
  local fake = require("spec.fake")
  return helper.client({ user = "rich", password = helper.RICH_PASSWORD, sender = "MyShop",
                         url = fake.url }, opts)
end

-- Waits until the fake has finished every gateway request: one the client
-- gave up on may still be sleeping in the fake's latency or stall. Polls the
-- fake's counters, never a fixed sleep. Answers the last stats (nil on timeout).
function helper.settle()
  local fake = require("spec.fake")
  return fake.wait_for(function(s) return s.in_flight == 0 end)
end

-- Records every on_request call: answers the list and the callback.
function helper.recorder()
  local calls = {}
  return calls, function(info) calls[#calls + 1] = info end
end

-- A failed call: nil, a helpful English sentence (`word` in it) that keeps
-- `secret` to itself, and the expected code.
function helper.assert_fails(secret, code, word, ok, err, got)
  expect.is_nil(ok, "expected a failure")
  expect.equals(code, got, err)
  expect.is_string(err)
  expect.matches(word, err)
  helper.assert_no_secret(err, secret)
end

-- The words that run bin/streamtelecom with exactly these environment
-- variables changed (a value of false unsets one), for /bin/sh.
-- A call that answered the closed client's error.
function helper.assert_closed(ok, err, code)
  expect.is_nil(ok)
  expect.equals("client is closed", err)
  expect.equals("closed", code)
end

function helper.cli_command(env, args)
  local names = {}
  for k in pairs(env) do names[#names + 1] = k end
  table.sort(names)
  local words = { "env" }
  for _, k in ipairs(names) do
    if env[k] then
      words[#words + 1] = k .. "=" .. helper.shell_quote(env[k])
    else
      table.insert(words, 2, "-u " .. k)
    end
  end
  return table.concat(words, " ") .. " " .. helper.LUA .. " bin/streamtelecom " .. args
end

-- A whole file's bytes, or nil when it cannot be opened.
-- Runs the command line (helper.cli_command) to its end, stdin empty and
-- stderr into err_path (with prefix, e.g. strace, before it); answers
-- stdout, stderr and the exit status, after checking that neither shows
-- secret.
function helper.run_cli(env, args, err_path, secret, prefix)
  local p = assert(io.popen((prefix or "") .. helper.cli_command(env, args)
                            .. " </dev/null 2>" .. helper.shell_quote(err_path)
                            .. "; echo \"exit=$?\""))
  local out = p:read("*a")
  p:close()
  local stderr = helper.slurp(err_path) or ""
  local stdout, status = out:match("^(.-)exit=(%d+)\n?$")
  assert(status, "no exit status in: " .. out)
  helper.assert_no_secret(stdout, secret)
  helper.assert_no_secret(stderr, secret)
  return stdout, stderr, tonumber(status)
end

function helper.slurp(name)
  local f = io.open(name, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

-- Writes content to name (bytes as they are) and answers name.
function helper.write_file(name, content)
  local f = assert(io.open(name, "wb"))
  f:write(content)
  f:close()
  return name
end

-- A file of the repository, whole (raises when it is missing).
function helper.read_repo(path)
  return assert(helper.slurp(helper.repo_root() .. "/" .. path), "cannot read " .. path)
end

-- Campaign specs: the number of row i, a CSV of n rows written at path
-- (each row to its own number, with its own text), and a journal's last
-- record for each row.
function helper.campaign_phone(i) return string.format("7903%07d", i) end

function helper.campaign_csv(path, n)
  local lines = { "to,text" }
  for i = 1, n do lines[#lines + 1] = helper.campaign_phone(i) .. ",Campaign row " .. i end
  return helper.write_file(path, table.concat(lines, "\n") .. "\n")
end

-- The journal's last record per row, as a run reading it sees it.
function helper.journal_rows(path)
  local cjson = require("cjson")
  local boot = (helper.slurp("/proc/sys/kernel/random/boot_id") or ""):match("[^\n]+")
  local last, run = {}, nil
  for line in (helper.slurp(path) or ""):gmatch("[^\n]+") do
    local ok, rec = pcall(cjson.decode, line)
    if ok and type(rec) == "table" then
      if rec.t == "run" then
        run = { boot = rec.boot, left = 0 }
      elseif rec.t == "left" then
        run.left = math.max(run.left, rec.row)
      elseif rec.t == "end" then
        run.ended = true
      elseif rec.row then
        if rec.t == "started" and run then rec.run_, rec.before_ = run, last[rec.row] end
        last[rec.row] = rec
      end
    end
  end
  -- A started row past its run's last "left" never left (the journal says
  -- so for a run that ended, or ran on this boot): what was before counts.
  for n, rec in pairs(last) do
    while rec and rec.t == "started" and rec.run_ and n > rec.run_.left
          and (rec.run_.ended or rec.run_.boot == boot) do
      rec = rec.before_
    end
    last[n] = rec
  end
  return last
end

package.loaded["spec.helper"] = helper
return helper
