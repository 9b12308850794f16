-- Streamed results (issue 13): send_many's on_start runs before an item's
-- request can leave the machine, on_result as soon as its answer is read;
-- status_many's on_result once per id. A callback that raises stops new
-- items, lets those in flight finish (their on_result runs), then raises.
local fake = require("spec.fake")
local helper = require("spec.helper")

local function client(opts)
  return helper.client({ user = "rich", password = "p&ss=w%rd+?", sender = "MyShop", url = fake.url },
                       opts)
end

local function phone(i) return string.format("7903%07d", i) end

local function items_of(n)
  local items = {}
  for i = 1, n do items[i] = { to = phone(i), text = "Hi " .. i } end
  return items
end

-- How many sends the gateway holds for a text.
local function sent_count(text)
  local n = 0
  for _, s in ipairs(fake.sends()) do
    if s.text == text then n = n + 1 end
  end
  return n
end

describe("send_many with on_start and on_result", function()
  lazy_setup(function() fake.start() end)
  before_each(function() fake.reset() end)

  it("calls on_start before the item reaches the gateway and on_result after, with results[i]", function()
    local seen, order = {}, {}
    local results = client({ concurrency = 1 }):send_many(items_of(5), {
      on_start = function(i, item)
        order[#order + 1] = "start " .. i
        assert.equals("Hi " .. i, item.text)
        assert.equals(0, sent_count("Hi " .. i), "nothing sent before on_start")
      end,
      on_result = function(i, result)
        order[#order + 1] = "result " .. i
        assert.equals(1, sent_count("Hi " .. i), "the answer came before on_result")
        seen[i] = result
      end,
    })
    assert.equals(5, #results)
    for i = 1, 5 do
      assert.equals(results[i], seen[i], "on_result got results[" .. i .. "] itself")
      assert.matches("^%d+$", results[i][1].id)
    end
    assert.same({ "start 1", "result 1", "start 2", "result 2", "start 3", "result 3",
                  "start 4", "result 4", "start 5", "result 5" }, order)
  end)

  -- Issue 11: of 10,000 items the first request is at the gateway before the
  -- 200th item starts, while the client waits in that item's on_start (by
  -- order, not by clock): it does not wait behind the other 199 connects,
  -- nor behind 10,000 URLs (each is built when its item starts).
  it("has the first request at the gateway before the 200th of 10,000 items starts", function()
    fake.set{ latency = 0.3 }
    local c = client({ concurrency = 200 })
    local seen
    local ok, err = pcall(c.send_many, c, items_of(10000), {
      on_start = function(i)
        if i == 200 then
          seen = fake.wait_for(function(st) return st.send_requests > 0 end, 5) ~= nil
          error("seen at the 200th")
        end
      end,
    })
    assert.is_false(ok)
    assert.matches("seen at the 200th", tostring(err))
    assert.is_true(seen, "the first request had not reached the gateway")
    c:close()
  end)

  it("streams refusals and bad outcomes too, once per item", function()
    local calls = {}
    local results = client():send_many({
      { to = phone(1), text = "ok" },
      { to = "8613912345678", text = "closed direction" },
      { to = phone(3), text = "unknown sender", sender = "Stranger" },
    }, { on_result = function(i, r) calls[i] = (calls[i] or 0) + 1; assert.equals(r, r) end })
    assert.same({ 1, 1, 1 }, calls)
    assert.equals("direction_closed", results[2].code)
    assert.equals("unknown_sender", results[3].code)
  end)

  it("lets the items in flight finish when on_result raises, then raises it", function()
    fake.set{ latency = 0.1 }
    local started, finished = 0, 0
    local ok, err = pcall(client({ concurrency = 4 }).send_many, client({ concurrency = 4 }),
      items_of(20), {
        on_start = function() started = started + 1 end,
        on_result = function()
          finished = finished + 1
          error("stop here")
        end,
      })
    assert.is_false(ok)
    assert.matches("stop here", tostring(err))
    assert.is_true(started < 20, "no new item after the raise")
    assert.equals(started, finished, "every started item got its on_result")
    assert.equals(started, #fake.sends())
  end)

  it("does not send the item whose on_start raises, nor any after it", function()
    local ok, err = pcall(client({ concurrency = 1 }).send_many, client({ concurrency = 1 }),
      items_of(5), { on_start = function(i) if i == 3 then error("not item 3") end end })
    assert.is_false(ok)
    assert.matches("not item 3", tostring(err))
    assert.equals(2, #fake.sends())
    assert.equals(0, sent_count("Hi 3"))
  end)

  it("answers closed for the items that never started when a callback closes the client", function()
    local c = client({ concurrency = 1 })
    local results = c:send_many(items_of(4), {
      on_result = function(i) if i == 2 then c:close() end end,
    })
    assert.matches("^%d+$", results[1][1].id)
    assert.matches("^%d+$", results[2][1].id)
    assert.equals("closed", results[3].code)
    assert.equals("closed", results[4].code)
    assert.equals(2, #fake.sends())
    assert.equals("closed", select(3, c:balance()))
  end)

  it("raises a yield from a callback as an error, and the client works afterwards", function()
    local c = client()
    local co = coroutine.create(function()
      return c:send_many(items_of(2), { on_result = function() coroutine.yield() end })
    end)
    local ok, err = coroutine.resume(co)
    assert.is_false(ok)
    assert.matches("yield", tostring(err))
    assert.is_table(c:balance())
  end)

  it("survives callbacks that collect garbage and rewrite the list", function()
    local items = items_of(6)
    local results = client({ concurrency = 2 }):send_many(items, {
      on_start = function(i) items[i] = nil; collectgarbage() end,
      on_result = function() for k in pairs(items) do items[k] = "junk" end; collectgarbage() end,
    })
    assert.equals(6, #results)
    assert.equals(6, #fake.sends())
  end)

  it("raises for callbacks that are not functions", function()
    local c = client()
    assert.has_error(function() c:send_many(items_of(1), { on_result = true }) end)
    assert.has_error(function() c:send_many(items_of(1), 42) end)
    assert.equals(0, #fake.sends())
  end)
end)

describe("status_many with on_result", function()
  lazy_setup(function() fake.start() end)
  before_each(function() fake.reset() end)

  it("calls on_result once per distinct id with the record the map holds", function()
    local c = client()
    local msgs = assert(c:send({ phone(1), phone(2) }, "Hi"))
    local a, b = msgs[1].id, msgs[2].id
    local got = {}
    local map = c:status_many({ a, b, a, "999" }, {
      on_result = function(id, record) got[#got + 1] = id; assert.equals(id, record.id or id) end,
    })
    table.sort(got)
    local want = { a, b, "999" }
    table.sort(want)
    assert.same(want, got)
    assert.equals("sent", map[a].state)
    assert.equals("not_found", map["999"].code)
  end)

  it("raises on_result's error after every status is in", function()
    local c = client()
    local msgs = assert(c:send({ phone(1), phone(2) }, "Hi"))
    local calls = 0
    local ok, err = pcall(c.status_many, c, { msgs[1].id, msgs[2].id }, {
      on_result = function() calls = calls + 1; error("boom") end,
    })
    assert.is_false(ok)
    assert.matches("boom", tostring(err))
    assert.equals(2, calls)
    assert.is_table(c:balance())
  end)
end)
