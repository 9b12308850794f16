-- A fuzzer for the run API drivers hold (docs/DRIVERS.md), on every Lua the
-- suite runs on (and under ASan and valgrind with it): random calls on
-- driven cores, driven by a random driver that answers, fails, repeats and
-- forgets jobs, closes the run or its core midway, while every callback
-- (on_request, on_start, on_result, before_send) attacks: it raises, calls
-- the run's own methods, closes the run or the core, begins another run,
-- yields, mutates the items, collects garbage. Properties, beyond "no
-- crash": a run's own method from its callbacks always raises the guard; a
-- job is handed out once until it ends; every item's on_result comes at
-- most once; the loop ends; result()
-- answers the call's shape or raises a callback's error; every string
-- holding a NUL byte is refused as invalid, nothing sent.
--
-- STREAMTELECOM_FUZZ_SEED=N replays one seed; STREAMTELECOM_FUZZ_RUNS=N
-- sets the number of scenarios (default 300). A failure names its seed.
local st = require("streamtelecom")

local RUNS = tonumber(os.getenv("STREAMTELECOM_FUZZ_RUNS")) or 300
local GUARD = "cannot be called from"
local URL = "http://127.0.0.1:9/get/" -- never connected: the fuzzer is the driver

-- Park-Miller: the same sequence on every Lua (exact in doubles and integers).
local function generator(seed)
  local state = seed % 2147483646 + 1
  return function(lo, hi)
    state = (state * 16807) % 2147483647
    return lo + state % (hi - lo + 1)
  end
end

local BODIES = {
  "1000000001", "1000000002,1000000003", '{"Code":1,"Desc":"Неверный логин или пароль"}',
  "12.5", "100,01 RUR", "", "garbage\0bytes", ("9"):rep(100000),
  '{"State":"deliver","TimeStampUtc":"/Date(1700000000000)/"}', "[]", "null",
  '{"Code":"x"}', "-1", "1e309",
}
local FAIL_CODES = { "network", "timeout", "connect", "tls", "too_large", "nonsense" }
local NUMBERS = { "79031234567", "+7 916 123-45-67", "7903\0123", "", "abc", "79161234567" }
local TEXTS = { "Hello", "Привет", "a\0b", ("x"):rep(2000), "" }

local function pick(rand, list) return list[rand(1, #list)] end

-- The arguments of a random call for core:_begin.
local function random_call(rand, opts)
  local kind = pick(rand, { "send", "status", "balance", "send_many", "status_many", "wait" })
  if kind == "send" then
    return kind, { pick(rand, NUMBERS), pick(rand, TEXTS) }
  elseif kind == "status" then
    return kind, { pick(rand, { "1000000001", "1234\0abc", "", "x" }) }
  elseif kind == "balance" then
    return kind, {}
  elseif kind == "send_many" then
    local items = {}
    for i = 1, rand(0, 5) do
      items[i] = { to = pick(rand, NUMBERS), text = pick(rand, TEXTS) }
    end
    return kind, { items, opts }, items
  elseif kind == "status_many" then
    local ids = {}
    for i = 1, rand(0, 4) do ids[i] = pick(rand, { "1000000001", "1000000002", "1\0", "" }) end
    return kind, { ids, { on_result = opts.on_result } }, ids
  end
  return kind, { { "1000000001", "1000000002" }, { timeout = 0.05, interval = 0 } }
end

local function new_scenario(seed)
  local rand = generator(seed)
  local s = { rand = rand, seed = seed, guard_misses = {}, results_seen = {}, starts = {},
              raised = {}, steps = 0 }
  -- A callback's attack, chosen at random each time it runs.
  local attacks = {
    function() end,
    function() error("callback raised " .. seed, 0) end,
    function() error({ "a table" }) end,
    function()
      if not s.run then return end
      for _, m in ipairs{ "next", "next_request", "result", "close" } do
        local ok, err = pcall(s.run[m], s.run)
        if ok or not tostring(err):find(GUARD, 1, true) then
          s.guard_misses[#s.guard_misses + 1] = m .. ": " .. tostring(err)
        end
      end
      local ok, err = pcall(s.run.answer, s.run, 1, 200, "1")
      if ok or not tostring(err):find(GUARD, 1, true) then
        s.guard_misses[#s.guard_misses + 1] = "answer: " .. tostring(err)
      end
    end,
    function() if s.core then s.core:close() end end,
    function()
      if not s.core then return end
      local other = s.core:_begin("balance")
      if other then other:close() end
    end,
    function() coroutine.yield("from a callback") end,
    function() if s.items then s.items[1] = nil; s.items[2] = { to = 5 } end end,
    function() collectgarbage("collect") end,
  }
  function s.attack() return attacks[rand(1, #attacks)]() end
  return s
end

-- Runs the scenario's driver loop on a coroutine (so that a callback's
-- yield has somewhere to go, and is refused there).
local function drive(s)
  local rand, run = s.rand, s.run
  local pending = {} -- job -> true: handed out, not yet ended
  local function resolve(job)
    local roll = rand(1, 10)
    local ok, err
    if roll <= 5 then
      ok, err = pcall(run.answer, run, job, pick(rand, { 200, 200, 200, 500, 404 }),
                      pick(rand, BODIES), rand(0, 3) / 10, rand(0, 1) == 1)
    else
      ok, err = pcall(run.fail, run, job, pick(rand, FAIL_CODES), "driver says no",
                      rand(0, 1) == 1, 0.01)
    end
    if ok then pending[job] = nil end -- a refused argument ends nothing
    return ok, err
  end
  for _ = 1, 400 do
    s.steps = s.steps + 1
    local roll = rand(1, 20)
    if roll == 1 then -- close the run midway: every later step must refuse
      run:close()
      assert(not pcall(run.next, run), "next after close")
      return "closed"
    elseif roll == 2 and s.core then
      s.core:close()
    elseif roll == 3 then -- a job that is not running: refused, nothing changes
      assert(not pcall(run.answer, run, 97, 200, "1"), "answer for a job never handed out")
    end
    local ok, what, job = pcall(run.next, run)
    if not ok then return "raised: " .. tostring(what) end
    if what == "done" then return "done" end
    if what == "start" then
      assert(not pending[job], "job " .. tostring(job) .. " handed out twice")
      pending[job] = true
      s.starts[#s.starts + 1] = job
    end
    local open = {}
    for j in pairs(pending) do open[#open + 1] = j end
    table.sort(open)
    if #open > 0 and (what == "wait" or rand(1, 3) == 1) then
      local j = open[rand(1, #open)]
      local rok, rerr = resolve(j)
      if rok and rand(1, 8) == 1 then -- told twice: refused
        assert(not pcall(run.answer, run, j, 200, "1"),
               "a job answered twice (the first: " .. tostring(rok) .. " " .. tostring(rerr) .. ")")
      end
    elseif what == "wait" and job then
      -- A timed wait (a retry's backoff, wait's pause): short, to keep on.
      local t0 = os.clock()
      while os.clock() - t0 < math.min(job, 0.06) do end
    end
  end
  error("seed " .. s.seed .. ": the run never ended in 400 steps")
end

local function shape_ok(kind, a, b, c)
  if a == nil then return type(b) == "string" and type(c) == "string" end
  if kind == "send_many" or kind == "status_many" or kind == "send" or kind == "wait" then
    return type(a) == "table"
  end
  return type(a) == "table"
end

local function scenario(seed)
  local s = new_scenario(seed)
  local rand = s.rand
  local callbacks = {
    on_start = function(i) s.attack(); return i end,
    on_result = function(i)
      if s.results_seen[i] then error("seed " .. seed .. ": on_result twice for " .. tostring(i)) end
      s.results_seen[i] = true
      s.attack()
    end,
    before_send = function() s.attack() end,
  }
  local core = st._driven{ user = "rich", password = "p&ss=w%rd+?", sender = "MyShop", url = URL,
                           retries = rand(0, 2), concurrency = rand(1, 4),
                           on_request = function() s.attack() end }
  s.core = core
  local kind, args, items = random_call(rand, callbacks)
  s.items = items
  local co = coroutine.create(function()
    local run, err, code = core:_begin(kind, (table.unpack or unpack)(args, 1, 2))
    if not run then
      assert(code == "invalid" or code == "closed", tostring(err))
      return "refused"
    end
    s.run = run
    local ended = drive(s)
    if ended == "done" then
      local ok, a, b, c = pcall(run.result, run)
      if ok then
        assert(shape_ok(kind, a, b, c), "seed " .. seed .. ": result of " .. kind)
        if kind == "send_many" and type(a) == "table" and items then
          for i = 1, #a do
            local r = a[i]
            if type(r) == "table" and r.sent == false then
              assert(r.code ~= nil, "seed " .. seed .. ": a never-sent item without a code")
            end
          end
        end
      end
      run:close()
    end
    return ended
  end)
  local ok, ended = coroutine.resume(co)
  while ok and coroutine.status(co) == "suspended" do
    -- A callback's yield is refused inside the engine; a yield that got
    -- out would be a hole in the guard.
    error("seed " .. seed .. ": a callback's yield escaped the engine")
  end
  assert(ok, "seed " .. seed .. ": " .. tostring(ended))
  assert(#s.guard_misses == 0, "seed " .. seed .. ": " .. table.concat(s.guard_misses, "; "))
  core:close()
  -- Strings with a NUL byte are invalid everywhere: such a call never starts.
  return ended
end

describe("the run API under a random driver and hostile callbacks", function()
  it("holds its properties over " .. RUNS .. " random scenarios", function()
    local seed0 = tonumber(os.getenv("STREAMTELECOM_FUZZ_SEED"))
    local first = seed0 or (os.time() % 100000) * 1000
    local outcomes = {}
    for n = 0, (seed0 and 0 or RUNS - 1) do
      local seed = first + n
      local ok, ended = pcall(scenario, seed)
      assert(ok, "seed " .. seed .. " (STREAMTELECOM_FUZZ_SEED=" .. seed .. "): " .. tostring(ended))
      outcomes[ended] = (outcomes[ended] or 0) + 1
      collectgarbage("collect")
    end
    -- The scenarios reached every ending (not a fuzzer stuck in one path).
    if not seed0 then
      assert.is_truthy(outcomes.done, "no run ended done")
      assert.is_truthy(outcomes.closed, "no run was closed midway")
      assert.is_truthy(outcomes.refused, "no call was refused")
    end
  end)

  it("refuses every string with a NUL byte as invalid, for each call", function()
    local core = st._driven{ user = "rich", password = "p", url = URL }
    local cases = {
      { "send", "7903\0" .. "1234567", "hi" }, { "send", "79031234567", "h\0i" },
      { "status", "1234\0abc" }, { "status_many", { "1000000001", "1\0" } },
      { "wait", { "1\0" } },
      { "send_many", { { to = "79031234567", text = "a\0" } } },
      { "send", "79031234567", "hi", { sender = "My\0Shop" } },
    }
    for _, case in ipairs(cases) do
      local run, err, code = core:_begin((table.unpack or unpack)(case))
      assert.is_nil(run, case[1])
      assert.equals("invalid", code, case[1] .. ": " .. tostring(err))
    end
    core:close()
  end)
end)
