-- docs/API.md is the reference users read, so it must stay true: every
-- function, method, option and error code it names exists in the module, and
-- the module has none it leaves out.
local st = require("streamtelecom")
local fake = require("spec.fake")

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

local API = read("docs/API.md")

-- The part of the page under a "## " heading, up to the next one.
local function section(title)
  local start = API:find("\n## " .. title .. "\n", 1, true)
  assert(start, "docs/API.md has no section " .. title)
  local stop = API:find("\n## ", start + 1, true) or #API
  return API:sub(start, stop)
end

-- The names in the first column of a section's table.
local function table_names(title)
  local names = {}
  for name in section(title):gmatch("<tr><td><code>([%w_]+)</code></td>") do
    names[name] = true
  end
  return names
end

local function headings(pattern)
  local names = {}
  for name in API:gmatch("\n### `" .. pattern) do names[name] = true end
  return names
end

local function keys(t)
  local set = {}
  for k in pairs(t) do set[k] = true end
  return set
end

-- Answers whether st.new knows the option (whatever it thinks of the value).
local function known_option(name)
  local opts = { user = "u", password = "p" }
  opts[name] = opts[name] or true
  local _, err = st.new(opts)
  return not (err and err:find("unknown option", 1, true))
end

-- Every identifier-like string literal of the bindings: the option names
-- are among them, whatever else is.
local function binding_words()
  local words = {}
  local p = assert(io.popen("ls src/lua_*.c"))
  for file in p:lines() do
    for word in read(file):gmatch('"([%l_][%l_%d]*)"') do words[word] = true end
  end
  p:close()
  return words
end

describe("docs/API.md", function()
  it("documents every function and field of the module, and only those", function()
    local public = keys(st)
    for k in pairs(public) do -- _fdatasync and the like serve the command line
      if k:sub(1, 1) == "_" and k ~= "_VERSION" then public[k] = nil end
    end
    assert.same(public, headings("st%.([%w_]+)"))
  end)

  it("documents every method of a client, and only those", function()
    local client = assert(st.new{ user = "u", password = "p" })
    local methods = keys(getmetatable(client).__index)
    client:close()
    methods._begin = nil -- the driver interface: docs/DRIVERS.md
    methods._scan_rows = nil -- the command line's campaigns (src/lua_rows.c)
    assert.same(methods, headings("client:([%w_]+)%("))
  end)

  it("names only options st.new knows", function()
    local documented = table_names("Options of st.new")
    assert.is_true(documented.user and documented.password and true)
    for name in pairs(documented) do
      assert.is_true(known_option(name), "st.new does not know the documented option " .. name)
    end
  end)

  it("names every option st.new knows", function()
    local documented = table_names("Options of st.new")
    for word in pairs(binding_words()) do
      if known_option(word) then
        assert.is_true(documented[word], "st.new takes the undocumented option " .. word)
      end
    end
  end)

  it("lists exactly the error codes of st.errors", function()
    assert.same(keys(st.errors), table_names("Error codes"))
  end)

  it("says what the name send option does", function()
    assert.matches("`name`: a campaign name. It travels as `name_deliver`", API, 1, true)
  end)

  it("is the reference the README points to", function()
    local readme = read("README.md")
    assert.matches("(docs/API.md)", readme, 1, true)
    assert.not_matches("API.md` of the project docs", readme, 1, true)
  end)

  it("is built into the LDoc reference with the guides", function()
    local config = read("config.ld")
    for _, topic in ipairs({ "docs/API.md", "docs/cli.md", "docs/openresty.md",
                             "docs/haproxy.md" }) do
      assert.matches('"' .. topic .. '"', config, 1, true)
      assert.is_string(read(topic))
    end
  end)
end)

describe("the README's send example", function()
  lazy_setup(function() fake.start() end)
  before_each(function() fake.reset() end)

  it("is what happens: one flooded number refuses the whole two-number send", function()
    local client = assert(st.new{ user = "test", password = "secret", sender = "MyShop",
                                  url = fake.url })
    for _ = 1, 3 do assert(client:send("79161234567", "Hello")) end
    local msgs, err, code = client:send({ "79031234567", "79161234567" }, "Hello")
    client:close()
    assert.is_nil(msgs)
    assert.equals("gateway refused: Flood SMS", err)
    assert.equals("flood", code)
    -- The gateway gave ids to the three earlier sends only.
    local ids = 0
    for _, rec in ipairs(fake.sends()) do
      if tostring(rec.answer):match("^%d+") then ids = ids + 1 end
    end
    assert.equals(3, ids)
  end)
end)
