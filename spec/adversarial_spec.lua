-- Issue 9, walked systematically: every table argument of every method meets
-- every kind of misbehaving Lua code that can run while the bindings read it,
-- and so do the on_request callback and the finalizers of unrelated garbage.
-- boundary_spec.lua has the issue's cases one by one.
--
-- The contract (API.md, issue 9):
-- * Fields (send opts, client:url send opts, send_many items, wait opts) are
--   read with ordinary access: a field given only through __index counts.
--   Lists (send's `to`, the send_many list, the id lists of status_many and
--   wait, st.parse's recipients) are read raw, and st.new's options are
--   iterated raw: their __index, __len and __pairs are never consulted.
-- * A metamethod that closes the client: the call answers closed and sends
--   nothing. One that raises: the call raises that error, sends nothing, and
--   the client still works. One that yields: the call raises an error about
--   the yield. One that mutates its table or list: no crash, either a normal
--   result for what was read or invalid, and nothing unchecked is sent. One
--   that hands out freshly made strings and collects garbage: exactly those
--   values are used.
--
-- How today's bindings (before the fix) fail this file, verified in child
-- processes: the "closes the client" cases of send opts, client:url opts and
-- send_many items crash (segfault); the "fresh strings" cases of send opts and
-- send_many items send freed bytes (wrong sender, "holds a NUL byte"; ASan:
-- heap-use-after-free); the "mutates" cases of send/url opts pass NULL to
-- memchr (UBSan) and of wait opts crash (a `true` id reaches strlen); the
-- raising and yielding send_many items leak (LeakSanitizer under `make asan`);
-- on_request putting true or {} into wait's list crashes, appending to it
-- writes past the id array (abort). LuaJIT also crashes at exit after the
-- fresh-string rows. The raw-list rows, the on_request close/raise/yield/
-- nested/collect rows, the status_many list rows, "empties wait's list" (the
-- use after free shows in boundary_spec B4) and the finalizer rows pass
-- today: they pin down behaviour the rewrite must keep.

local st = require("streamtelecom")
local fake = require("spec.fake")
local helper = require("spec.helper")

local PASSWORD = "p&ss=w%rd+?"
local PHONE = "79031234567"
local unpack = table.unpack or unpack

local client = helper.rich_client

local function assert_fails(...) return helper.assert_fails(PASSWORD, ...) end

local assert_closed = helper.assert_closed

local function requests() return fake.stats().requests end

local function assert_works(c)
  assert.is_number(assert(c:balance()).balance)
end

local function sorted_keys(map)
  local out = {}
  for k in pairs(map) do out[#out + 1] = tostring(k) end
  table.sort(out)
  return out
end

-- The decoded query parameters of a URL.
local function query_of(url)
  local q = {}
  for k, v in (url:match("%?(.*)$") or ""):gmatch("([^&=]+)=([^&]*)") do
    q[k] = v:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end)
  end
  return q
end

-- Values made at run time on every call of their function, new in each test:
-- no literal of this file spells them, so only the call under test holds one
-- once it is handed over, and a collection frees it if the bindings let go.
local seq = 0
local function values()
  seq = seq + 1
  local n = seq
  return {
    to = function() return string.format("%d", 79031200000 + n) end,
    to2 = function() return string.format("%d", 79161200000 + n) end,
    text = function() return ("Text %d, made at run time and longer than forty bytes"):format(n) end,
    sender = function() return table.concat{ "Ot", "her" } end,
    callback_url = function() return ("https://shop.example/cb/%d/long-enough-to-be-long"):format(n) end,
    name = function() return ("campaign%d"):format(n) end,
    timeout = function() return 2 end,
    interval = function() return 1 end,
  }
end

-- A table whose `fields` come only through __index, which calls hook(key)
-- first; values are made fresh on every read.
local function via_index(fields, v, hook)
  local wanted = {}
  for _, k in ipairs(fields) do wanted[k] = true end
  return setmetatable({}, { __index = function(_, k)
    hook(k)
    return wanted[k] and v[k]() or nil
  end })
end

-- A list with raw contents whose metamethods would add `extra` (and call
-- hook): read raw, it is exactly `raw`.
local function raw_list(raw, extra, hook)
  return setmetatable(raw, {
    __index = function(_, k) hook(k) return extra end,
    __len = function() hook("#") return #raw + 1 end,
    __pairs = function(t) hook("pairs") return next, t, nil end,
  })
end

local function sent_with(dadr)
  for _, s in ipairs(fake.sends()) do
    if s.dadr == dadr then return s end
  end
end

-- Every number a request carried has 10 or more digits, every text is
-- free of the invalid byte the mutations plant.
local function assert_only_checked_values_sent()
  for _, s in ipairs(fake.sends()) do
    for number in ((s.dadr or "") .. ","):gmatch("([^,]*),") do
      assert.matches("^%d%d%d%d%d%d%d%d%d%d+$", number)
    end
    assert.is_nil((s.text or ""):find("\255", 1, true))
  end
end

-- A normal answer or invalid (with nothing sent) after a mutation.
local function assert_normal_or_invalid(ok, err, code, normal)
  if ok then
    normal(ok)
    assert_only_checked_values_sent()
  else
    assert_fails("invalid", "", ok, err, code)
    assert.equals(0, requests())
  end
end

-- A message that stays "send" (not final), or a delivered one.
local function message_id(c, v, delivered)
  local id = assert(c:send(v.to(), v.text()))[1].id
  if delivered then fake.deliver(id) end
  return id
end

-- The table arguments. make(v, hook, ctx) builds the argument (ctx.c is the
-- client); run(c, arg, v, ctx) makes the call; normal(v, ctx, ...) checks a
-- normal answer; mutate(ctx, arg) is what a mutating metamethod does and
-- mutated(v, ctx, ...) checks the answer after it. `raw` targets are read
-- without metamethods.
local send_fields = { "sender", "callback_url", "name" }
local function send_setup(_, v, ctx) ctx.to = { v.to(), v.to2() } end
local function mutate_to(ctx)
  ctx.to[1] = true
  ctx.to[2] = ""
  collectgarbage()
end
local function send_normal(v, _, msgs)
  assert.equals(2, #msgs)
  local s = assert(sent_with(v.to() .. "," .. v.to2()))
  assert.equals(v.text(), s.text)
  assert.equals(v.sender(), s.sadr)
  assert.equals(v.callback_url(), s.callback_url)
  assert.equals(v.name(), s.name_deliver)
end

local TARGETS = {
  {
    name = "send opts",
    setup = send_setup,
    make = function(v, hook) return via_index(send_fields, v, hook) end,
    run = function(c, arg, v, ctx) return c:send(ctx.to, v.text(), arg) end,
    normal = send_normal,
    mutate = mutate_to,
    mutated = function(_, _, ok, err, code)
      assert_normal_or_invalid(ok, err, code, function() end)
    end,
  },
  {
    name = "client:url send opts",
    setup = send_setup,
    make = function(v, hook) return via_index(send_fields, v, hook) end,
    run = function(c, arg, v, ctx) return c:url("send", ctx.to, v.text(), arg) end,
    normal = function(v, _, url)
      local q = query_of(url)
      assert.equals(v.to() .. "," .. v.to2(), q.dadr)
      assert.equals(v.text(), q.text)
      assert.equals(v.sender(), q.sadr)
      assert.equals(v.callback_url(), q.callback_url)
      assert.equals(v.name(), q.name_deliver)
    end,
    mutate = mutate_to,
    mutated = function(_, _, url, err, code)
      if url then
        for number in (query_of(url).dadr .. ","):gmatch("([^,]*),") do
          assert.matches("^%d%d%d%d%d%d%d%d%d%d+$", number)
        end
      else
        assert_fails("invalid", "", url, err, code)
      end
    end,
    requests = 0,
  },
  {
    name = "a send_many item",
    make = function(v, hook, ctx)
      local item = via_index({ "to", "text", "sender", "callback_url", "name" }, v, hook)
      ctx.list = { item, { to = v.to2(), text = "The second item" } }
      return ctx.list
    end,
    run = function(c, list) return c:send_many(list) end,
    normal = function(v, _, results)
      assert.equals(2, #results)
      assert.is_string(results[1][1].id)
      assert.is_string(results[2][1].id)
      local s = assert(sent_with(v.to()))
      assert.equals(v.text(), s.text)
      assert.equals(v.sender(), s.sadr)
      assert.equals(v.callback_url(), s.callback_url)
      assert.equals(v.name(), s.name_deliver)
    end,
    mutate = function(ctx)
      ctx.list[2] = { to = "", text = "\255 is not UTF-8" }
      ctx.list[1] = { to = "", text = "" }
      collectgarbage()
    end,
    mutated = function(_, _, ok, err, code)
      assert_normal_or_invalid(ok, err, code, function() end)
    end,
  },
  {
    name = "wait opts",
    setup = function(c, v, ctx) ctx.id = message_id(c, v, true) ctx.ids = { ctx.id } end,
    make = function(v, hook) return via_index({ "timeout", "interval" }, v, hook) end,
    run = function(c, arg, _, ctx) return c:wait(ctx.ids, arg) end,
    normal = function(_, ctx, map)
      assert.same({ ctx.id }, sorted_keys(map))
      assert.equals("delivered", map[ctx.id].state)
    end,
    mutate = function(ctx)
      ctx.ids[1] = true
      ctx.ids[2] = {}
      collectgarbage()
    end,
    mutated = function(_, ctx, map, err, code)
      if map then
        for k in pairs(map) do assert.equals(ctx.id, k) end
      else
        assert_fails("invalid", "", map, err, code)
      end
    end,
  },
  {
    name = "the send_many list", raw = true,
    make = function(v, hook)
      return raw_list({ { to = v.to(), text = v.text() } }, { to = v.to2(), text = "extra" }, hook)
    end,
    run = function(c, list) return c:send_many(list) end,
    normal = function(v, _, results)
      assert.equals(1, #results)
      assert.is_string(results[1][1].id)
      assert.equals(1, #fake.sends())
      assert.equals(v.to(), fake.sends()[1].dadr)
    end,
  },
  {
    name = "send's `to` list", raw = true,
    make = function(v, hook) return raw_list({ v.to() }, v.to2(), hook) end,
    run = function(c, to, v) return c:send(to, v.text()) end,
    normal = function(v, _, msgs)
      assert.equals(1, #msgs)
      assert.equals(v.to(), msgs[1].to)
      assert.equals(v.to(), fake.sends()[1].dadr)
    end,
  },
  {
    name = "the status_many id list", raw = true,
    setup = function(c, v, ctx) ctx.id = message_id(c, v) end,
    make = function(_, hook, ctx) return raw_list({ ctx.id }, "1000009999", hook) end,
    run = function(c, ids) return c:status_many(ids) end,
    normal = function(_, ctx, map)
      assert.same({ ctx.id }, sorted_keys(map))
      assert.equals("sent", map[ctx.id].state)
    end,
  },
  {
    name = "the wait id list", raw = true,
    setup = function(c, v, ctx) ctx.id = message_id(c, v, true) end,
    make = function(_, hook, ctx) return raw_list({ ctx.id }, "1000009999", hook) end,
    run = function(c, ids) return c:wait(ids, { timeout = 2 }) end,
    normal = function(_, ctx, map)
      assert.same({ ctx.id }, sorted_keys(map))
      assert.equals("delivered", map[ctx.id].state)
    end,
  },
  {
    name = "st.new's options", raw = true,
    make = function(_, hook)
      return setmetatable({ user = "rich", password = PASSWORD, url = fake.url }, {
        __index = function(_, k) hook(k) return k == "timeout" and "not a number" or nil end,
        __pairs = function() hook("pairs") return next, { colour = "red" }, nil end,
        __len = function() hook("#") return 1 end,
      })
    end,
    run = function(_, options) return st.new(options) end,
    normal = function(_, _, made)
      assert.equals("userdata", type(made))
      assert_works(made)
      made:close()
    end,
    requests = 1,
  },
  {
    name = "st.parse's recipient list", raw = true,
    make = function(v, hook) return raw_list({ v.to() }, v.to2(), hook) end,
    run = function(_, to) return st.parse("send", "1000000001", to) end,
    normal = function(v, _, msgs)
      assert.same({ { to = v.to(), id = "1000000001" } }, msgs)
    end,
    requests = 0,
  },
}

local MISBEHAVIOURS = {
  { name = "closes the client", act = function(ctx) ctx.c:close() end },
  { name = "raises", act = function() error("raised by a metamethod") end, rounds = 200 },
  { name = "yields", act = function() coroutine.yield("yielded") end, rounds = 200 },
  { name = "mutates its table's list", act = function(ctx, target) target.mutate(ctx) end },
  { name = "hands out fresh strings after collectgarbage()", act = function() collectgarbage() end },
  -- url() reuses the client's call box as send() does: a nested call
  -- finds it held and takes another, leaving the outer call's intact.
  { name = "asks the client for a URL itself",
    act = function(ctx)
      local url = ctx.c:url("send", "79030000009", "nested", { sender = "MyShop" })
      assert(url:find("dadr=79030000009", 1, true), url)
    end },
}

-- Runs fn in a protected call (inside a coroutine when it may yield);
-- answers pcall's results packed.
local function pack(...) return { n = select("#", ...), ... } end
local function protected(in_coroutine, fn)
  if not in_coroutine then return pack(pcall(fn)) end
  local co = coroutine.create(function() return pcall(fn) end)
  local res = pack(coroutine.resume(co))
  assert.is_true(res[1], tostring(res[2]))
  assert.equals("dead", coroutine.status(co))
  return pack(unpack(res, 2, res.n))
end

describe("adversarial arguments", function()
  lazy_setup(function() fake.start() end)
  before_each(function()
    fake.reset()
    fake.account{ user = "rich", senders = { "MyShop", table.concat{ "Ot", "her" } } }
  end)
  after_each(function() fake.wait_for(function(s) return s.in_flight == 0 end) end)

  for _, target in ipairs(TARGETS) do
    describe(target.name, function()
      for _, mis in ipairs(MISBEHAVIOURS) do
        local what = target.raw and "is never consulted when its metamethod " .. mis.name
                     or "behaves when a metamethod " .. mis.name
        it(what, function()
          local c, v, ctx, calls = client(), values(), {}, 0
          ctx.c = c
          if target.setup then target.setup(c, v, ctx) end
          fake.reset_stats()
          local arg = target.make(v, function()
            calls = calls + 1
            mis.act(ctx, target)
          end, ctx)
          local res
          for _ = 1, (target.raw and 1 or mis.rounds or 1) do
            res = protected(mis.name == "yields", function() return target.run(c, arg, v, ctx) end)
            if mis.rounds and not target.raw then
              assert.is_false(res[1])
              assert.matches(mis.name == "yields" and "yield" or "raised by a metamethod", tostring(res[2]))
            end
          end
          if target.raw or not mis.rounds then assert.is_true(res[1], tostring(res[2])) end
          collectgarbage()
          if target.raw then
            assert.equals(0, calls)
            target.normal(v, ctx, unpack(res, 2, 4))
            if target.requests then assert.equals(target.requests, requests()) end
            assert_works(c)
          elseif mis.name == "closes the client" then
            assert_closed(unpack(res, 2, 4))
            assert.equals(0, requests())
            assert_closed(c:balance())
          elseif mis.rounds then
            assert.equals(0, requests())
            assert_works(c)
          elseif mis.name == "mutates its table's list" then
            target.mutated(v, ctx, unpack(res, 2, 4))
            assert_works(c)
          else
            assert.is_true(calls > 0)
            target.normal(v, ctx, unpack(res, 2, 4))
            if target.requests then assert.equals(target.requests, requests()) end
            assert_works(c)
          end
        end)
      end
    end)
  end
end)

-- The methods as on_request sees them: prepare(c, p) makes what the call
-- needs, run(c, p) makes it, normal(p, result) checks its answer.
local METHODS = {
  { name = "send",
    run = function(c, p) return c:send(p.v.to(), p.v.text()) end,
    normal = function(_, msgs) assert.is_string(msgs[1].id) end },
  { name = "status",
    prepare = function(c, p) p.id = message_id(c, p.v) end,
    run = function(c, p) return c:status(p.id) end,
    normal = function(_, s) assert.equals("sent", s.state) end },
  { name = "balance",
    run = function(c) return c:balance() end,
    normal = function(_, b) assert.is_number(b.balance) end },
  { name = "send_many",
    run = function(c, p)
      return c:send_many({ { to = p.v.to(), text = "First" }, { to = p.v.to2(), text = "Second" } })
    end,
    normal = function(_, r)
      assert.equals(2, #r)
      assert.is_string(r[1][1].id)
      assert.is_string(r[2][1].id)
    end },
  { name = "status_many",
    prepare = function(c, p) p.id = message_id(c, p.v) end,
    run = function(c, p) return c:status_many({ p.id, "1000009999" }) end,
    normal = function(p, map)
      local want = { "1000009999", p.id }
      table.sort(want)
      assert.same(want, sorted_keys(map))
      assert.equals("sent", map[p.id].state)
      assert.equals("not_found", map["1000009999"].code)
    end },
  { name = "wait",
    prepare = function(c, p) p.id = message_id(c, p.v, true) end,
    run = function(c, p) return c:wait({ p.id }, { timeout = 2 }) end,
    normal = function(p, map) assert.equals("delivered", map[p.id].state) end },
}

local CALLBACKS = {
  { name = "closes the client", fn = function(c) c:close() end, closes = true },
  { name = "raises", fn = function() error("raised by on_request") end },
  { name = "yields", fn = function() coroutine.yield("from on_request") end },
  { name = "collects garbage", fn = function() collectgarbage() collectgarbage() end },
  { name = "calls another method of its client",
    fn = function(c, seen) seen[#seen + 1] = { pcall(c.balance, c) } end, nested = true },
}

describe("an on_request callback", function()
  lazy_setup(function() fake.start() end)
  before_each(function() fake.reset() end)
  after_each(function() fake.wait_for(function(s) return s.in_flight == 0 end) end)

  for _, method in ipairs(METHODS) do
    for _, cb in ipairs(CALLBACKS) do
      it("that " .. cb.name .. " leaves " .. method.name .. "'s answer alone", function()
        local armed, seen, c = false, {}, nil
        c = client{ on_request = function()
          if armed then cb.fn(c, seen) end
        end }
        local p = { v = values() }
        if method.prepare then method.prepare(c, p) end
        armed = true
        local res = protected(cb.name == "yields", function() return method.run(c, p) end)
        armed = false
        assert.is_true(res[1], tostring(res[2]))
        assert.is_truthy(res[2], tostring(res[3]))
        method.normal(p, res[2])
        if cb.closes then
          assert_closed(c:balance())
          assert_closed(method.run(c, p))
        else
          assert_works(c)
        end
        if cb.nested then
          assert.is_true(#seen >= 1)
          for _, r in ipairs(seen) do
            assert.is_false(r[1])
            assert.matches("busy", tostring(r[2]))
          end
        end
      end)
    end
  end

  -- Changes to the list that wait / status_many poll: both copy it first.
  local CHANGES = {
    { "appends ids to", function(ids) for n = 1, 20 do ids[#ids + 1] = string.format("%d", 1000009000 + n) end end },
    { "empties", function(ids) for i = #ids, 1, -1 do ids[i] = nil end end },
    { "puts true into", function(ids) ids[1] = true ids[#ids + 1] = true end },
    { "puts a table into", function(ids) ids[1] = {} ids[#ids + 1] = {} end },
  }
  for _, name in ipairs({ "status_many", "wait" }) do
    for _, change in ipairs(CHANGES) do
      it("that " .. change[1] .. " the list " .. name .. " polls, then collects garbage, gets the ids given",
         function()
        local ids
        local c = client{ on_request = function()
          if ids then
            change[2](ids)
            collectgarbage()
          end
        end }
        local v = values()
        local numbers = { tonumber(message_id(c, v)), 1000009999 }
        ids = { string.format("%d", numbers[1]), string.format("%d", numbers[2]) }
        local map
        if name == "wait" then
          map = assert(c:wait(ids, { timeout = 1.5, interval = 1 }))
        else
          map = assert(c:status_many(ids))
        end
        ids = nil
        collectgarbage()
        local want = { string.format("%d", numbers[1]), string.format("%d", numbers[2]) }
        table.sort(want)
        assert.same(want, sorted_keys(map))
        assert.equals("sent", map[string.format("%d", numbers[1])].state)
        assert.equals("not_found", map["1000009999"].code)
      end)
    end
  end
end)

-- An object with a finalizer: a table on Lua 5.2+, a newproxy on 5.1/LuaJIT.
local function finalizable(fn)
  if newproxy then
    local p = newproxy(true)
    getmetatable(p).__gc = fn
    return p
  end
  return setmetatable({}, { __gc = fn })
end

-- Calls fn(round) while finalizers of unrelated garbage run, the collector
-- set to step on (almost) every allocation, each finalizer doing action().
-- Whether one runs during the call is up to the collector: up to 20 rounds,
-- until one did. Answers pcall's results and whether one did.
local function under_finalizers(action, fn)
  local inside, fired, res = false, 0, nil
  for round = 1, 20 do
    for _ = 1, 200 do
      finalizable(function()
        if inside then
          fired = fired + 1
          action()
        end
      end)
    end
    local pause = collectgarbage("setpause", 0)
    local stepmul = collectgarbage("setstepmul", 400)
    if _VERSION == "Lua 5.4" then collectgarbage("incremental", 0, 0, 1) end
    inside = true
    res = pack(pcall(fn, round))
    inside = false
    collectgarbage("setpause", pause)
    collectgarbage("setstepmul", stepmul)
    if _VERSION == "Lua 5.4" then collectgarbage("incremental", 0, 0, 13) end
    if fired > 0 or (res[1] and res[2] == nil and res[4] == "closed") then break end
  end
  collectgarbage()
  return res, fired > 0
end

describe("a finalizer of unrelated garbage that runs during a call", function()
  lazy_setup(function() fake.start() end)
  before_each(function() fake.reset() end)
  after_each(function() fake.wait_for(function(s) return s.in_flight == 0 end) end)

  local CALLS = {
    { "send", function(c, l, round) return c:send(l, "Hello, round " .. round) end, "to" },
    { "client:url", function(c, l) return c:url("send", l, "Hello") end, "to" },
    { "send_many", function(c, l) return c:send_many(l) end, "items" },
    { "status_many", function(c, l) return c:status_many(l) end, "ids" },
    { "wait", function(c, l) return c:wait(l, { timeout = 1.5, interval = 1 }) end, "ids" },
    { "balance", function(c) return c:balance() end, "ids" },
  }
  local function list_of(kind)
    if kind == "to" then return { PHONE, "79161234567", "79261234567" } end
    if kind == "items" then
      return { { to = PHONE, text = "One" }, { to = "79161234567", text = "Two" } }
    end
    return { "1000000001", "1000000002", "1000000003" }
  end

  for _, call in ipairs(CALLS) do
    it("that closes the client: " .. call[1] .. " does not crash, later calls answer closed once it ran", function()
      local c = client()
      local res, fired = under_finalizers(function() c:close() end, function(round)
        return call[2](c, list_of(call[3]), round)
      end)
      assert.is_true(res[1], tostring(res[2]))
      if res[2] == nil then helper.assert_no_secret(res[3], PASSWORD) end
      if fired then
        assert_closed(c:balance())
      else
        assert_works(c)
      end
    end)

    it("that mutates the list: " .. call[1] .. " does not crash, later calls work", function()
      local c = client()
      local list = list_of(call[3])
      local res = under_finalizers(function()
        list[1] = true
        list[#list] = nil
        list[#list + 1] = {}
      end, function(round) return call[2](c, list, round) end)
      if res[1] and res[2] == nil then
        helper.assert_no_secret(res[3], PASSWORD)
      end
      assert_only_checked_values_sent()
      assert_works(c)
    end)
  end
end)
