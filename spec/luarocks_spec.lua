-- The rockspec, built by Debian's luarocks into a throwaway tree, installs the
-- module and the streamtelecom command, and both work from that tree alone.
-- One install per run, shared by the tests below; the build happens in a copy
-- of the working tree so that luarocks' objects never land in src/.
local fake = require("spec.fake")
local helper = require("spec.helper")

local ROCKSPEC = "streamtelecom-0.1.0-1.rockspec"

-- The Lua luarocks must target: the one running the specs (LuaJIT: ABI 5.1,
-- with luarocks told to use luajit and its headers).
local LUA_ABI = jit and "5.1" or _VERSION:match("%d+%.%d+")

local shell_quote = helper.shell_quote

-- Runs a shell command (see helper.unsanitized); answers its output, stderr
-- included, and its exit status.
local function sh(cmd)
  local out = helper.capture("sh -c " .. shell_quote("(" .. cmd .. ") 2>&1; echo \"exit=$?\""))
  local text, status = out:match("^(.-)exit=(%d+)\n?$")
  return text or out, tonumber(status) or -1
end

local function exists(path)
  local f = io.open(path, "r")
  if f then f:close() end
  return f ~= nil
end

local install = { done = false }

local function luarocks_cmd()
  local cmd = "luarocks --lua-version " .. LUA_ABI
  -- The config says the command line's dependencies are Debian's packages
  -- (and, for LuaJIT, where LuaJIT is).
  return "LUAROCKS_CONFIG=" .. shell_quote(install.dir .. "/config.lua") .. " " .. cmd
end

-- Builds and installs once; answers the tree, or nil and why it cannot run
-- here (then the tests are pending), or raises when the build itself fails.
local function tree()
  if install.done then
    if install.failed then error(install.failed, 2) end
    return install.tree, install.why
  end
  install.done = true

  local _, status = sh("command -v luarocks")
  if status ~= 0 then
    install.why = "luarocks is not installed (apt-get install luarocks)"
    return nil, install.why
  end
  install.dir = os.tmpname()
  os.remove(install.dir)
  assert(os.execute("mkdir -p " .. shell_quote(install.dir .. "/src")))
  local config = assert(io.open(install.dir .. "/config.lua", "w"))
  config:write('rocks_provided = { argparse = "0.7.1-1", ["lua-cjson"] = "2.1.0-1" }\n')
  config:close()
  if jit then
    -- Debian's luarocks picks lua5.1 for 5.1; a config file points it at
    -- luajit, its directory and its headers instead.
    local bin = sh("command -v luajit"):match("^%s*(.-)/luajit%s*$")
    local inc = sh("pkg-config --variable=includedir luajit"):match("^%s*(.-)%s*$")
    if not bin or not exists(inc .. "/lua.h") then
      install.why = "luarocks cannot target LuaJIT here: luajit or its headers "
                    .. "(libluajit2-5.1-dev) not found"
      return nil, install.why
    end
    local f = assert(io.open(install.dir .. "/config.lua", "a"))
    f:write('lua_interpreter = "luajit"\n',
            ("variables = { LUA_DIR = %q, LUA_BINDIR = %q, LUA_INCDIR = %q }\n")
              :format(bin:gsub("/bin$", ""), bin, inc))
    f:close()
  end
  local interp, istatus = sh(luarocks_cmd() .. " config lua_interpreter")
  local bindir = sh(luarocks_cmd() .. " config variables.LUA_BINDIR")
  interp, bindir = interp:match("^%s*(.-)%s*$"), bindir:match("^%s*(.-)%s*$")
  if istatus ~= 0 or not exists(bindir .. "/" .. interp) then
    install.why = ("luarocks cannot target Lua %s here (interpreter %s/%s not found)")
                  :format(LUA_ABI, bindir, interp)
    return nil, install.why
  end

  -- The README's command, --local with a throwaway HOME: the tree a normal
  -- user gets, ~/.luarocks.
  install.tree = install.dir .. "/.luarocks"
  local out
  out, status = sh("tar -cf - --exclude=./build --exclude=./.git --exclude=./dist "
    .. "--exclude='*.o' --exclude='*.so' . | tar -xf - -C " .. shell_quote(install.dir .. "/src")
    .. " && cd " .. shell_quote(install.dir .. "/src") .. " && HOME=" .. shell_quote(install.dir)
    .. " " .. luarocks_cmd() .. " --local make")
  if status ~= 0 then
    install.failed = "luarocks make failed:\n" .. out
    error(install.failed, 2)
  end
  return install.tree
end

local function need_tree()
  local t, why = tree()
  if not t then pending(why) end
  return t
end

-- The environment of a program run from the tree: the fake gateway, the test
-- account, and LUA_CPATH pointing at the tree only (";;" keeps the system's
-- own modules reachable).
local function tree_env(t)
  return ("env -u LUA_CPATH_5_2 -u LUA_CPATH_5_3 -u LUA_CPATH_5_4 LUA_CPATH=%s "
          .. "STREAM_TELECOM_URL=%s STREAM_TELECOM_USER=test STREAM_TELECOM_PASSWORD=secret "
          .. "STREAM_TELECOM_SENDER=MyShop"):format(
    shell_quote(t .. "/lib/lua/" .. LUA_ABI .. "/?.so;;"), shell_quote(fake.url))
end

describe("luarocks --lua-version " .. LUA_ABI .. " --local make", function()
  lazy_setup(function() fake.start() end)
  before_each(function() fake.reset() end)
  lazy_teardown(function()
    if install.dir then os.execute("rm -rf " .. shell_quote(install.dir)) end
  end)

  it("passes luarocks lint", function()
    local _, status = sh("command -v luarocks")
    if status ~= 0 then pending("luarocks is not installed (apt-get install luarocks)") end
    local out
    out, status = sh("luarocks lint " .. ROCKSPEC)
    assert.equals(0, status, out)
  end)

  it("installs the module and the streamtelecom command into the tree", function()
    local t = need_tree()
    assert.is_true(exists(t .. "/lib/lua/" .. LUA_ABI .. "/streamtelecom.so"))
    assert.is_true(exists(t .. "/bin/streamtelecom"))
    local _, status = sh("test -x " .. shell_quote(t .. "/bin/streamtelecom"))
    assert.equals(0, status)
  end)

  it("runs examples/balance.lua with the module from the tree", function()
    local t = need_tree()
    local find = "for p in package.cpath:gmatch('[^;]+') do "
                 .. "local f = p:gsub('%?', 'streamtelecom') local h = io.open(f) "
                 .. "if h then h:close() io.write(f) break end end"
    local found = sh(tree_env(t) .. " " .. helper.LUA .. " -e " .. shell_quote(find))
    assert.equals(t .. "/lib/lua/" .. LUA_ABI .. "/streamtelecom.so", found)
    local out, status = sh(tree_env(t) .. " " .. helper.LUA .. " examples/balance.lua")
    assert.equals(0, status, out)
    assert.equals("balance: 100.00\n", out)
  end)

  it("runs the installed streamtelecom command from the tree", function()
    local t = need_tree()
    local out, status = sh(tree_env(t) .. " " .. shell_quote(t .. "/bin/streamtelecom") .. " balance")
    assert.equals(0, status, out)
    assert.equals("100.00\n", out)
    out, status = sh(tree_env(t) .. " " .. shell_quote(t .. "/bin/streamtelecom")
                     .. " send 79031234567 'From the rock'")
    assert.equals(0, status, out)
    assert.equals("79031234567 1000000001\n", out)
    assert.equals("From the rock", fake.sends()[1].text)
  end)

  it("wraps the command for the Lua it was built for", function()
    local t = need_tree()
    local f = assert(io.open(t .. "/bin/streamtelecom"))
    local wrapper = f:read("*a")
    f:close()
    local interp = sh(luarocks_cmd() .. " config lua_interpreter"):match("^%s*(.-)%s*$")
    assert.matches("/" .. interp .. "'", wrapper, 1, true)
    -- The tree is on the wrapper's paths (luarocks leaves them out when it
    -- installs with --deps-mode=none).
    assert.matches(t .. "/lib/lua/", wrapper, 1, true)
  end)
end)
