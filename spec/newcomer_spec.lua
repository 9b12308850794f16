-- What a newcomer meets in a fresh clone: `make demo` on a busy machine or
-- with real credentials exported, nginx outside a normal user's PATH, and
-- missing packages explained per make target in words that work here.
local helper = require("spec.helper")
local socket = require("socket")

local shell_quote = helper.shell_quote

-- Runs a shell command with the sanitizer preloads kept (the demo loads the
-- module under test); answers its output, stderr included, and exit status.
-- The demo is a shell script: under make asan the preloads would fail its
-- shell at exit. The module itself is checked by every other spec.
local function demo_needs_no_sanitizer()
  if os.getenv("LD_PRELOAD") then pending("the demo script runs without sanitizers") end
end

local function run(cmd)
  local p = assert(io.popen("(" .. cmd .. ") 2>&1; echo \"exit=$?\""))
  local out = p:read("*a")
  p:close()
  local text, status = out:match("^(.-)exit=(%d+)\n?$")
  return text, tonumber(status)
end

-- A directory holding fake `id` (a normal user) and, when asked, `sudo`,
-- ahead of the rest of PATH.
local function fake_user_path(with_sudo)
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p " .. shell_quote(dir)))
  local function tool(name, body)
    local f = assert(io.open(dir .. "/" .. name, "w"))
    f:write("#!/bin/sh\n", body, "\n")
    f:close()
    os.execute("chmod +x " .. shell_quote(dir .. "/" .. name))
  end
  tool("id", "echo 1000")
  if with_sudo then tool("sudo", "exit 1") end
  return dir
end

-- The packages scripts/deps is asked to check for `make TARGET`: the target
-- must depend on check-deps-TARGET (read from the Makefile: `make -n` would
-- still run test-all's recursive loop), which checks that target's list.
local function checked_packages(target)
  local makefile = assert(io.open("Makefile")):read("*a")
  local quoted = target:gsub("%p", "%%%0")
  assert.matches("\n" .. quoted .. ":[^\n]*check%-deps%-" .. quoted .. "[%s\n]", makefile)
  -- LUA_VERSION fixed: under make test-all the caller's one is in the environment.
  local out = helper.capture("make -n LUA_VERSION=5.4 check-deps-" .. target .. " 2>/dev/null")
  local list = out:match("scripts/deps %-%-check %-%-target [%w-]+ ([^\n]*)")
  assert(list, "make -n check-deps-" .. target .. " checks no packages:\n" .. out)
  local set = {}
  for pkg in list:gmatch("%S+") do set[pkg] = true end
  return set
end

describe("a newcomer", function()
  describe("running make demo", function()

    it("gets the fake's own account even with real credentials exported", function()
      demo_needs_no_sanitizer()
      local out, status = run("STREAM_TELECOM_USER=login STREAM_TELECOM_PASSWORD=real "
                              .. "STREAM_TELECOM_SENDER=Elsewhere STREAMTELECOM_LUA="
                              .. helper.LUA .. " scripts/demo")
      assert.equals(0, status, out)
      assert.matches("balance: 98.50", out, 1, true)
    end)

    it("gets another port when 8089 is taken", function()
      demo_needs_no_sanitizer()
      -- Held by this spec, or by something else already: busy either way.
      local holder = socket.bind("127.0.0.1", 8089)
      local out, status = run("env -u STREAM_TELECOM_DEMO_PORT STREAMTELECOM_LUA="
                              .. helper.LUA .. " scripts/demo")
      if holder then holder:close() end
      assert.equals(0, status, out)
      assert.not_matches("127.0.0.1:8089/", out, 1, true)
      assert.matches("balance: 98.50", out, 1, true)
    end)

    it("is told the variable to set when the port it chose is taken", function()
      demo_needs_no_sanitizer()
      local holder = assert(socket.bind("127.0.0.1", 0))
      local _, port = holder:getsockname()
      local out, status = run("STREAM_TELECOM_DEMO_PORT=" .. port .. " STREAMTELECOM_LUA="
                              .. helper.LUA .. " scripts/demo")
      holder:close()
      assert.not_equals(0, status)
      assert.matches("make demo STREAM_TELECOM_DEMO_PORT=N", out, 1, true)
    end)
  end)

  describe("running the command from a checkout", function()
    it("gets from make a wrapper with the Lua and the module just built", function()
      local dir = package.cpath:match("([^;]*/build/[^;/]+)/%?%.so")
      if not dir then pending("the module under test is not a build of this checkout") end
      local f = assert(io.open(dir .. "/streamtelecom"))
      local wrapper = f:read("*a")
      f:close()
      assert.matches("exec " .. helper.LUA .. " ", wrapper, 1, true)
      -- Without LUA_CPATH: the wrapper itself must lead to the module.
      local out, status = run("env -u LUA_CPATH -u LUA_CPATH_5_2 -u LUA_CPATH_5_3 "
                              .. "-u LUA_CPATH_5_4 " .. shell_quote(dir .. "/streamtelecom")
                              .. " segments Hello")
      assert.equals(0, status, out)
      assert.equals("encoding=gsm7 parts=1 chars=5 per_part=160 remaining=155\n", out)
    end)
  end)

  describe("without /usr/sbin on the PATH", function()
    it("still finds nginx for the fake gateway", function()
      local nginx = helper.capture("scripts/which-sbin nginx")
      if nginx == "" then pending("nginx is not installed") end
      local found = helper.capture("env PATH=/usr/bin:/bin scripts/which-sbin nginx")
      assert.equals(nginx, found)
      assert.matches("^/", found)
    end)
  end)

  describe("missing a package", function()
    it("is told how to install it as root, with sudo where sudo exists", function()
      local dir = fake_user_path(true)
      local out = helper.capture("env PATH=" .. shell_quote(dir) .. ":/usr/bin:/bin "
                                 .. "scripts/deps --check --target docs no-such-package-x")
      os.execute("rm -rf " .. shell_quote(dir))
      assert.matches("make docs needs these Debian packages: no-such-package-x", out, 1, true)
      assert.matches("as root with: make deps-docs", out, 1, true)
      assert.matches("apt-get install no-such-package-x", out, 1, true)
      assert.matches("sudo make deps-docs", out, 1, true)
    end)

    it("is told to use su where there is no sudo", function()
      local dir = fake_user_path(false)
      local out = helper.capture("env PATH=" .. shell_quote(dir) .. ":/usr/bin:/bin "
                                 .. "scripts/deps --check --target demo no-such-package-x")
      os.execute("rm -rf " .. shell_quote(dir))
      assert.not_matches("sudo make", out, 1, true)
      assert.matches("su -c 'make deps-demo'", out, 1, true)
    end)

    it("is asked by make demo only for what the demo uses", function()
      local demo = checked_packages("demo")
      for _, pkg in ipairs({ "nginx", "libnginx-mod-http-lua", "libcurl4-openssl-dev" }) do
        assert.is_true(demo[pkg], pkg)
      end
      for _, pkg in ipairs({ "valgrind", "lua-busted", "libluajit2-5.1-dev", "lua-ldoc" }) do
        assert.is_nil(demo[pkg], pkg)
      end
    end)

    it("gets from make deps the packages of every target, and each its own", function()
      local all = helper.capture("make -n LUA_VERSION=5.4 deps 2>/dev/null")
      for _, target in ipairs({ "demo", "test", "test-all", "docs", "bench", "rock",
                                "dist", "lint", "valgrind", "fuzz" }) do
        local own = helper.capture("make -n LUA_VERSION=5.4 deps-" .. target .. " 2>/dev/null")
        assert.matches("--target " .. target .. " ", own, 1, true)
        for pkg in pairs(checked_packages(target)) do
          assert.matches(" " .. pkg:gsub("%p", "%%%0") .. "[ \n]", all, nil, false)
          assert.matches(" " .. pkg:gsub("%p", "%%%0") .. "[ \n]", own, nil, false)
        end
      end
    end)
  end)
end)
