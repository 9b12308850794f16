-- streamtelecom.driver, the drive loop every event-loop host shares, with a
-- driver of its own made here (LuaSocket, one request at a time) and the
-- LuaSocket example, against the fake gateway.
local driver = require("streamtelecom.driver")
local st = require("streamtelecom")
local fake = require("spec.fake")
local helper = require("spec.helper")

local read = helper.read_repo

describe("streamtelecom.driver", function()
  lazy_setup(function() fake.start() end)
  before_each(function() fake.reset() end)

  it("never asks a host to sleep less than 1 ms, and rounds up to whole ms", function()
    for _, case in ipairs{ { 0, 1 }, { 0.0000001, 1 }, { 0.0004, 1 }, { 0.001, 1 },
                           { 0.0011, 2 }, { 0.25, 250 }, { 2, 2000 } } do
      local seconds, ms = driver.wait_time(case[1])
      assert.equals(case[2], ms)
      assert.equals(case[2] / 1000, seconds)
    end
  end)

  it("takes the defaults a transport needs from the module when it exports them", function()
    local d = driver.DEFAULTS
    if st._DEFAULTS then assert.equals(st._DEFAULTS, d) end
    for _, k in ipairs{ "timeout", "connect_timeout", "max_response", "concurrency" } do
      assert.is_number(d[k])
    end
  end)

  describe("a host's class", function()
    local slept = {}
    local Client = driver.class{
      name = "spec.host", user_agent = "spec-host",
      options = { only_here = true, not_here = "use the host's own setting" },
      exchange = function(client, run, job)
        client.exchanges = (client.exchanges or 0) + 1
        if client.raise then error("oops in the exchange") end
        run:fail(job, "connect", "nothing listens", false, 0, true)
      end,
      sleep = function(seconds, ms)
        slept[#slept + 1] = { seconds, ms }
        require("socket").sleep(seconds)
      end,
      init = function(client, opts) client.only_here = opts.only_here end,
    }
    local base = { user = "test", password = "secret", url = "http://127.0.0.1:1/get/" }
    local function options(extra)
      local o = {}
      for k, v in pairs(base) do o[k] = v end
      for k, v in pairs(extra or {}) do o[k] = v end
      return o
    end

    it("splits the options: the engine checks its own, the host keeps its own", function()
      local c = assert(Client.new(options{ only_here = 7, timeout = 3 }))
      assert.equals(7, c.only_here)
      assert.equals(3, c.timeout)
      assert.equals(driver.DEFAULTS.connect_timeout, c.connect_timeout)
      assert.matches("^spec%.host%.client", tostring(c))
      c:close()
      local ok, err, code = Client.new(options{ not_here = 1 })
      assert.is_nil(ok)
      assert.equals("invalid", code)
      assert.matches("use the host's own setting", err, 1, true)
      ok, err, code = Client.new(options{ timeout = -1 })
      assert.is_nil(ok)
      assert.equals("invalid", code)
      assert.matches("timeout", err, 1, true)
      ok, err, code = Client.new(options{ user_agent = "a\r\nX-Evil: 1" })
      assert.is_nil(ok)
      assert.equals("invalid", code)
      assert.matches("user_agent", err, 1, true)
    end)

    it("sleeps each retry's backoff once, in whole milliseconds", function()
      for i = #slept, 1, -1 do slept[i] = nil end
      local c = assert(Client.new(options{ retries = 2 }))
      local res, _, code = c:balance()
      assert.is_nil(res)
      assert.equals("connect", code)
      assert.equals(3, c.exchanges)
      assert.equals(2, #slept)
      for _, s in ipairs(slept) do
        assert.is_true(s[2] >= 1 and s[2] % 1 == 0, "slept " .. s[2] .. " ms")
      end
      c:close()
    end)

    it("fails a job whose exchange raised, in the library's words, without a file path", function()
      local c = assert(Client.new(options{ retries = 0 }))
      c.raise = true
      local res, err, code = c:balance()
      assert.is_nil(res)
      assert.equals("network", code)
      assert.matches("oops in the exchange", err, 1, true)
      assert.is_nil(err:find("%.lua:%d"), err)
      c:close()
    end)
  end)

  it("runs a lone exchange without a pcall for a host that says it never raises", function()
    local Client = driver.class{
      name = "spec.trusted", user_agent = "spec-trusted", raises = false,
      exchange = function(client, run, job)
        if client.raise then error("a bug in the host") end
        run:fail(job, "connect", "nothing listens", false, 0, true)
      end,
      sleep = function() end,
    }
    local c = assert(Client.new{ user = "test", password = "secret", retries = 0,
                                 url = "http://127.0.0.1:1/get/" })
    c.raise = true
    -- A bug in such a host raises from the call (no job is left waiting:
    -- nothing runs beside the caller)...
    assert.has_error(function() c:balance() end)
    -- ...and the client goes on working.
    c.raise = false
    local res, _, code = c:balance()
    assert.is_nil(res)
    assert.equals("connect", code)
    c:close()
  end)

  it("drives a host whose HTTP client takes URLs (url = true: run:next, run:answer)", function()
    local http, socket = require("socket.http"), require("socket")
    local Client = driver.class{
      name = "spec.url", user_agent = "spec-url", url = true,
      exchange = function(_, run, job, url)
        local t0 = socket.gettime()
        local body, status = http.request(url)
        if not body then return run:fail(job, "connect", tostring(status), false, 0, true) end
        run:answer(job, status, body, socket.gettime() - t0, true)
      end,
      sleep = socket.sleep,
    }
    local c = assert(Client.new{ user = "test", password = "secret", sender = "MyShop",
                                 url = fake.url })
    local msgs = assert(c:send("79031234567", "Hello"))
    assert.equals(fake.sends()[1].answer, msgs[1].id)
    assert.equals("number", type(assert(c:balance()).balance))
    local many = assert(c:send_many{ { to = "79031234567", text = "a" },
                                     { to = "99031234567", text = "b" } })
    assert.is_string(many[1][1].id)
    assert.equals("direction_closed", many[2].code)
    c:close()
  end)

  describe("a host whose tasks only carry (carriers = true)", function()
    local socket, http = require("socket"), require("socket.http")
    -- A scheduler of its own: spawned tasks wait in a queue and run while
    -- the caller waits on the signal, so several are in flight at once.
    local queue = {}
    local function spawn(fn, ...)
      if queue.refuse then error("no tasks in this context") end
      queue[#queue + 1] = { coroutine.create(fn), { n = select("#", ...), ... } }
    end
    local Signal = {}
    Signal.__index = Signal
    function Signal:wake(n) self.posts = self.posts + n end
    function Signal:wait()
      queue.max = math.max(queue.max or 0, #queue)
      while self.posts == 0 and #queue > 0 do
        local t = table.remove(queue, 1)
        assert(coroutine.resume(t[1], (table.unpack or unpack)(t[2], 1, t[2].n)))
      end
      if self.posts == 0 then return false end
      self.posts = self.posts - 1
      return true
    end
    local caller
    local Client = driver.class{
      name = "spec.carriers", user_agent = "spec-carriers", carriers = true,
      exchange = function(client, run, job, request)
        client.carried = (client.carried or 0) + (coroutine.running() == caller and 0 or 1)
        local target = request:match("^GET (%S+)")
        local t0 = socket.gettime()
        local body, status = http.request(fake.url:match("^(https?://[^/]+)") .. target)
        if not body then return run:fail(job, "connect", tostring(status), false, 0, true) end
        run:answer(job, status, body, socket.gettime() - t0, true)
      end,
      sleep = socket.sleep, spawn = spawn,
      signal = function() return setmetatable({ posts = 0 }, Signal) end,
    }
    local function new(concurrency)
      return assert(Client.new{ user = "test", password = "secret", sender = "MyShop",
                                url = fake.url, concurrency = concurrency })
    end

    it("runs a bulk call's requests in tasks, and every callback on the caller", function()
      local c = new(4)
      local items, on_caller = {}, 0
      for i = 1, 6 do items[i] = { to = "79031234567", text = "Carried " .. i } end
      local results
      caller = coroutine.create(function()
        results = c:send_many(items, { on_result = function()
          if coroutine.running() == caller then on_caller = on_caller + 1 end
        end })
      end)
      assert(coroutine.resume(caller))
      assert.equals(6, #results)
      for i = 1, 6 do assert.is_string(results[i][1].id, "item " .. i) end
      assert.equals(6, on_caller)
      assert.equals(6, c.carried)
      assert.is_true(queue.max > 1, "one task at a time")
      assert.equals(6, fake.stats().send_requests)
      -- A single send starts no task.
      caller = coroutine.running()
      assert(c:send("79031234567", "Alone"))
      assert.equals(6, c.carried)
      c:close()
    end)

    it("raises one clear error where no task can start, and sends nothing", function()
      local c = new(4)
      queue.refuse = true
      local ok, err = pcall(c.send_many, c, { { to = "79031234567", text = "a" },
                                              { to = "79031234567", text = "b" } })
      queue.refuse = nil
      assert.is_false(ok)
      assert.equals("spec.carriers: client:send_many cannot run its requests at once here:"
                    .. " no tasks in this context", err)
      assert.equals(0, fake.stats().requests)
      assert(c:send("79031234567", "Afterwards"))
      c:close()
    end)
  end)

  it("is enough for a whole driver in under 60 lines, shown in DRIVERS.md", function()
    local example = read("examples/driver/luasocket.lua")
    local lines = select(2, example:gsub("\n", ""))
    assert.is_true(lines < 60, lines .. " lines")
    assert.matches(example, read("docs/DRIVERS.md"), 1, true)
    local c = assert(require("examples.driver.luasocket").new{
      user = "test", password = "secret", sender = "MyShop", url = fake.url })
    local msgs = assert(c:send("79031234567", "Hello"))
    assert.equals(fake.sends()[1].answer, msgs[1].id)
    assert.equals("streamtelecom-luasocket", fake.stats().last_user_agent)
    c:close()
  end)
end)
