-- send_many's before_send hook: the engine calls it once for each group of
-- requests about to leave, after their items' on_start and before any byte
-- of them is written (a journal makes its "started" records durable there,
-- one fdatasync a group). Checked against the fake gateway: what it had
-- received at each call, and what a refusing hook leaves unsent.
local fake = require("spec.fake")
local helper = require("spec.helper")


local function items(n)
  local list = {}
  for i = 1, n do list[i] = { to = string.format("7903%07d", i), text = "m" .. i } end
  return list
end

describe("send_many's before_send", function()
  lazy_setup(function() fake.start() end)
  before_each(function() fake.reset() end)
  after_each(function() helper.settle() end)

  for _, concurrency in ipairs{ 1, 8, 20 } do
    it("lets no request leave before the call that follows its on_start (concurrency "
       .. concurrency .. ")", function()
      local c = helper.rich_client{ concurrency = concurrency }
      local started, flushed, calls = 0, 0, 0
      local res = c:send_many(items(50), {
        on_start = function() started = started + 1 end,
        before_send = function()
          calls = calls + 1
          -- What the gateway has can only come from groups let go before.
          local arrived = fake.stats().send_requests
          assert(arrived <= flushed, arrived .. " arrived, " .. flushed .. " let go")
          flushed = started
        end })
      c:close()
      for i = 1, 50 do assert.matches("^%d+$", res[i][1].id) end
      assert.equals(50, flushed)
      assert.equals(50, fake.stats().send_requests)
      if concurrency > 1 then
        assert.is_true(calls < 50, calls .. " calls for 50 items")
      end
    end)
  end

  it("sends nothing of a group it refuses: those items end closed, sent = false", function()
    local c = helper.rich_client{ concurrency = 4 }
    local calls, results = 0, {}
    local ok, err = pcall(c.send_many, c, items(12), {
      before_send = function()
        calls = calls + 1
        if calls == 2 then error("disk full") end
      end,
      on_result = function(i, r) results[i] = r end })
    c:close()
    assert.is_false(ok)
    assert.matches("disk full", err)
    local sent, refused = 0, 0
    for _, r in pairs(results) do
      if r.code == "closed" then
        refused = refused + 1
        assert.is_false(r.sent)
      else
        sent = sent + 1
      end
    end
    assert.equals(sent, fake.stats().send_requests)
    assert.is_true(refused > 0)
    assert.equals(2, calls)
  end)

  it("is not called by the other calls, and a wrong type is refused", function()
    local c = helper.rich_client()
    assert.has_error(function() c:send_many(items(1), { before_send = 1 }) end,
                     "bad argument #2 to 'send_many' ('before_send' must be a function)")
    assert.equals(0, fake.stats().requests)
    c:close()
  end)
end)
