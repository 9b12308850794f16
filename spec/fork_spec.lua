-- A client used in a forked child (issue 9). The child holds copies of the
-- parent's kept-alive connections: using one would cross replies with the
-- parent, and closing one cleanly (TLS close_notify) would break the
-- parent's. The library notices the new process id and opens the child's
-- own connections, never touching the inherited ones.
--
-- fork() comes from a tiny test module (spec/fork/forkmod.c) built here
-- against the Lua in use: Debian's lua-posix has no Lua 5.4 build.
local helper = require("spec.helper")
local fake = require("spec.fake")

local PASSWORD = "p&ss=w%rd+?"

local repo_root = require("spec.helper").repo_root

-- Builds forkmod.so for this Lua; answers the module, or nil and the log.
local function build_forkmod()
  local jit = rawget(_G, "jit") ~= nil
  local version = _VERSION:match("^Lua (5%.%d)$")
  local pc = jit and "luajit" or ("lua" .. version)
  local dir = repo_root() .. "/build/fork-" .. pc
  local cmd = "mkdir -p " .. helper.shell_quote(dir) .. " && cc -shared -fPIC -o "
              .. helper.shell_quote(dir .. "/forkmod.so") .. " "
              .. helper.shell_quote(repo_root() .. "/spec/fork/forkmod.c")
              .. " $(pkg-config --cflags " .. pc .. ") && echo built"
  local log = helper.capture("sh -c " .. helper.shell_quote(cmd))
  if not log:find("built") then return nil, log end
  return package.loadlib(dir .. "/forkmod.so", "luaopen_forkmod")()
end

describe("a client used in a forked child", function()
  local forkmod, log

  lazy_setup(function()
    fake.start()
    forkmod, log = build_forkmod()
    assert(forkmod, "could not build spec/fork/forkmod.c: " .. tostring(log))
  end)
  before_each(function() fake.reset() end)

  -- In the child: a balance over the child's own new connection; the
  -- exit status says how it went (0: as it should).
  local function child_uses(c)
    local pid = forkmod.fork()
    if pid == 0 then
      local before = c:stats().connections_opened
      local b = c:balance()
      local after = c:stats().connections_opened
      forkmod.exit(b and after == before + 1 and 0 or 1)
    end
    return forkmod.wait(pid)
  end

  for _, scheme in ipairs({ "http", "https" }) do
    it("opens its own connection over " .. scheme .. " and leaves the parent's working", function()
      local c = helper.client({ user = "rich", password = PASSWORD, ca_file = fake.ca_file,
                                url = scheme == "https" and fake.tls_url or fake.url })
      assert(c:balance())
      assert.equals(0, child_uses(c), "the child's balance over a new connection")
      assert(c:balance())
      assert(c:balance())
      local s = c:stats()
      assert.equals(1, s.connections_opened, "the parent kept its one connection")
      assert.equals(2, s.connections_reused)
      assert.equals(0, next(s.failures) and 1 or 0)
      c:close()
    end)
  end

  it("lets the child collect an inherited client without closing the parent's connection", function()
    local c = helper.client({ user = "rich", password = PASSWORD, ca_file = fake.ca_file,
                              url = fake.tls_url })
    assert(c:balance())
    local pid = forkmod.fork()
    if pid == 0 then
      c:close() -- what a child's garbage collector would do
      forkmod.exit(0)
    end
    assert.equals(0, forkmod.wait(pid))
    assert(c:balance())
    assert.equals(1, c:stats().connections_opened)
    c:close()
  end)
end)

describe("the fork check", function()
  lazy_setup(function() fake.start() end)

  -- A child of fork() is told by a pthread_atfork handler, not by asking
  -- the kernel for the process id before every request.
  it("makes no getpid() system call per request (strace)", function()
    local calls, summary = helper.count_syscalls([[
local st = require("streamtelecom")
local c = assert(st.new{ user = "rich", password = arg[2], url = arg[1] })
for _ = 1, 200 do assert(c:balance()) end
c:close()
]], { fake.url, helper.RICH_PASSWORD }, "getpid")
    assert.is_true(calls < 10, "getpid() calls for 200 requests: " .. calls .. "\n" .. summary)
    assert.is_true(fake.stats().requests >= 200)
  end)
end)
