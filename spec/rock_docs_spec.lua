-- What a user installs and reads: the rock's test section and docs, make
-- dist's install commands, and the LDoc pages of the Lua modules.
local helper = require("spec.helper")

local read = helper.read_repo

describe("the rock and the reference", function()
  it("has a busted test section and installs the docs", function()
    local env = {}
    local text = read("streamtelecom-0.1.0-1.rockspec")
    local chunk
    if setfenv then -- luacheck: ignore 113 (Lua 5.1, LuaJIT)
      chunk = assert(loadstring(text)) -- luacheck: ignore 113
      setfenv(chunk, env) -- luacheck: ignore 113
    else
      chunk = assert(load(text, "rockspec", "t", env))
    end
    chunk()
    assert.equals("3.0", env.rockspec_format)
    assert.equals("busted", env.test.type)
    assert.same({ "docs" }, env.build.copy_directories)
    assert.equals("lua/streamtelecom/driver.lua", env.build.modules["streamtelecom.driver"])
  end)

  it("make dist names the Lua version in every install command", function()
    local makefile = read("Makefile")
    local dist = makefile:match("\ndist:.-\n\n")
    for _, v in ipairs{ "5.4", "5.3", "5.1" } do
      assert.matches("luarocks --lua-version " .. v .. " install $(SRC_ROCK)", dist, 1, true)
    end
    assert.is_nil(dist:find("[^n] luarocks install"), "an install command without --lua-version")
  end)

  it("gives the Lua modules a page each", function()
    local config = read("config.ld")
    for module, file in pairs{ ["resty.streamtelecom"] = "lua/resty/streamtelecom.lua",
                               ["streamtelecom.haproxy"] = "lua/streamtelecom/haproxy.lua",
                               ["streamtelecom.driver"] = "lua/streamtelecom/driver.lua",
                               ["streamtelecom.campaign"] = "lua/streamtelecom/campaign.lua" } do
      assert.matches('"' .. file .. '"', config, 1, true)
      assert.matches("@module " .. module .. "\n", read(file), 1, true)
    end
  end)
end)
