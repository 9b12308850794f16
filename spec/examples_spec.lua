-- The examples are run as a user would run them, so they cannot rot.
local fake = require("spec.fake")
local helper = require("spec.helper")

local function run(script, args)
  local cmd = ("STREAM_TELECOM_URL=%q %s examples/%s %s 2>&1"):format(
    fake.url, helper.LUA, script, args or "")
  local p = assert(io.popen(cmd))
  local out = p:read("*a")
  local ok, _, status = p:close()
  if _VERSION == "Lua 5.1" and not jit then status = ok == 0 and 0 or 1 end
  if type(ok) == "number" then status = ok end
  return out, status
end

describe("the examples", function()
  lazy_setup(function() fake.start() end)
  before_each(function() fake.reset() end)

  it("send.lua sends an SMS and prints its id", function()
    local out = run("send.lua", "79031234567 'Hello there'")
    -- Ids count on from the fake's reset; a request still in flight from an
    -- earlier spec may have taken the first, so any id will do.
    assert.matches("sent to 79031234567: id %d+", out)
    local texts = {}
    for _, rec in ipairs(fake.sends()) do texts[rec.text] = true end
    assert.is_true(texts["Hello there"])
  end)

  it("status.lua prints the delivery state", function()
    local sent = run("send.lua", "79031234567 Hi")
    local id = sent:match("id (%d+)")
    assert(id, "send.lua printed no id: " .. sent)
    fake.deliver(id, "deliver")
    local out = run("status.lua", id)
    assert.matches("message " .. id .. ": delivered (final)", out, 1, true)
  end)

  it("balance.lua prints the balance", function()
    assert.matches("balance: %d+%.%d%d\n", run("balance.lua"))
  end)

  it("demo.lua sends, reads the status and the balance", function()
    local out = run("demo.lua")
    local id = out:match("sent to 79031234567: id (%d+)")
    assert(id, "demo.lua printed no id: " .. out)
    assert.matches("status of " .. id .. ": sent", out, 1, true)
    assert.matches("balance: %d+%.%d%d\n", out)
  end)

  it("say why and fail when the gateway refuses", function()
    local out, status = run("status.lua", "42")
    assert.matches("not_found", out, 1, true)
    assert.is_not.equal(0, status)
  end)
end)
