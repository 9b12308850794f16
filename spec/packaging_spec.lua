-- The rock as a user gets it: one source list shared with the Makefile, no
-- placeholder host, a licence, and a build without libcurl's headers that says
-- what to install instead of failing on a missing file.
local helper = require("spec.helper")

local ROCKSPEC = "streamtelecom-0.1.0-1.rockspec"
local shell_quote = helper.shell_quote

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

local function rockspec()
  local env = {}
  local chunk = _VERSION == "Lua 5.1" and setfenv(assert(loadstring(read(ROCKSPEC))), env)
                or assert(load(read(ROCKSPEC), ROCKSPEC, "t", env))
  chunk()
  return env
end

local function sh(cmd)
  local out = helper.capture("sh -c " .. shell_quote("(" .. cmd .. ") 2>&1; echo \"exit=$?\""))
  local text, status = out:match("^(.-)exit=(%d+)\n?$")
  return text or out, tonumber(status) or -1
end

describe("the rock", function()
  it("lists exactly the C files of src/, the header check first", function()
    local listed = rockspec().build.modules.streamtelecom.sources
    assert.equals("src/check_curl_headers.c", listed[1])
    local sorted = {}
    for i, f in ipairs(listed) do sorted[i] = f end
    table.sort(sorted)
    local present = {}
    for f in sh("ls src/*.c"):gmatch("%S+") do present[#present + 1] = f end
    assert.same(present, sorted)
  end)

  it("builds from the same files as the Makefile", function()
    local out = helper.capture("make -n -B LUA_VERSION=5.4 BUILD=build/srclist all 2>/dev/null")
    local built = {}
    for f in out:gmatch("%-c (src/[%w_]+%.c)") do built[#built + 1] = f end
    table.sort(built)
    local listed = rockspec().build.modules.streamtelecom.sources
    local sorted = {}
    for i, f in ipairs(listed) do sorted[i] = f end
    table.sort(sorted)
    assert.same(sorted, built)
  end)

  it("installs every Lua module under lua/", function()
    local modules = rockspec().build.modules
    for file in sh("find lua -name '*.lua' 2>/dev/null"):gmatch("%S+") do
      local name = file:gsub("^lua/", ""):gsub("%.lua$", ""):gsub("/", ".")
      assert.equals(file, modules[name], "the rockspec does not install " .. file)
    end
  end)

  it("names no placeholder host and comes with its MIT licence", function()
    local spec = rockspec()
    assert.not_matches("example%.", spec.source.url)
    assert.not_matches("%.invalid", spec.source.url)
    assert.equals("MIT", spec.description.license)
    assert.matches("MIT License", read("LICENSE"), 1, true)
    assert.matches("the streamtelecom authors", read("LICENSE"), 1, true)
    assert.matches("LICENSE", read("README.md"), 1, true)
  end)

  it("is built by the README's LuaRocks command for the Lua the README names", function()
    local readme = read("README.md")
    assert.matches("luarocks --lua-version 5.4 --local make", readme, 1, true)
    assert.not_matches("\nluarocks make streamtelecom", readme, 1, true)
  end)

  it("stops a build without libcurl's headers with what to install", function()
    local _, status = sh("command -v luarocks && unshare -rm true")
    if status ~= 0 then pending("needs luarocks and unshare -rm (user namespaces)") end
    -- Hide every curl/ include directory in a private mount namespace.
    local dirs = {}
    local multiarch = sh("gcc -print-multiarch"):gsub("%s", "")
    for _, d in ipairs({ "/usr/include/curl", "/usr/local/include/curl",
                         "/usr/include/" .. multiarch .. "/curl" }) do
      if select(2, sh("test -d " .. d)) == 0 then
        dirs[#dirs + 1] = "mount -t tmpfs none " .. d
      end
    end
    local tmp = os.tmpname()
    os.remove(tmp)
    local copy = "mkdir -p " .. tmp .. " && tar -cf - --exclude=./build --exclude=./.git "
                 .. "--exclude=./dist . | tar -xf - -C " .. tmp
    assert.equals(0, select(2, sh(copy)))
    local inner = table.concat(dirs, " && ") .. (#dirs > 0 and " && " or "")
                  .. "cd " .. tmp .. " && luarocks --lua-version 5.4 --tree " .. tmp
                  .. "/tree make --deps-mode=none " .. ROCKSPEC
    local out, status2 = sh("unshare -rm sh -c " .. shell_quote(inner))
    os.execute("rm -rf " .. shell_quote(tmp))
    assert.not_equals(0, status2)
    assert.matches("install libcurl's headers (Debian: libcurl4-openssl-dev", out, 1, true)
    assert.not_matches("No such file or directory", out, 1, true)
  end)
end)
