--- The drive loop every event-loop driver shares (docs/DRIVERS.md).
--
-- The engine in the C module decides everything about an exchange; a driver
-- moves bytes. What is left between the two is the same for every host and
-- lives here, once: the `run:next_request()` loop (concurrency, waits rounded
-- up to whole milliseconds), the split of the options between the engine and
-- the host, the figures the transport needs (`timeout`, `connect_timeout`,
-- `max_response`, `concurrency`), the `user_agent` check, and the client's
-- methods. A host gives a table:
--
--     local driver = require "streamtelecom.driver"
--     local Client = driver.class{
--       name = "mydriver",                  -- tostring, messages
--       user_agent = "mydriver (1.0)",      -- the default User-Agent
--       exchange = function(client, run, job, request, host, port, tls) end,
--       sleep = function(seconds, ms) end,  -- whole milliseconds, 1 at least
--       -- optional:
--       options = { name = true | "why it is refused here" },
--       init = function(client, opts) end,  -- nil, or an error message: invalid
--       before = function(client, method) end, -- nil, or err, code
--       spawn = function(fn, ...) end,      -- runs fn(...) beside the caller
--       signal = function() end,            -- an object: :wait(seconds), :wake(n)
--       url = true,                         -- exchange(client, run, job, url) instead
--       carriers = true,                    -- spawned tasks only carry bytes (below)
--       raises = false,                     -- exchange never raises: no pcall on the caller
--     }
--     local client, err, code = Client.new(opts)
--
-- `exchange` sends `request` (the bytes the engine framed) to host:port
-- (with TLS when `tls`) and tells the run how it ended, once:
-- `run:answer_http(job, parser, seconds, new_connection)` or
-- `run:fail(job, code, message, sent, seconds, new_connection)`. A raise inside
-- it fails the job (`network`, sent) rather than leaving the run waiting.
-- With `url = true` (a host whose HTTP client takes URLs, as HAProxy's
-- httpclient) the loop asks `run:next()` and the exchange gets the URL
-- instead of framed bytes, and answers with `run:answer(job, status, body,
-- seconds, new_connection)`.
-- Without `spawn` and `signal` a call runs its requests one after another.
-- With `carriers = true` (a host whose spawned tasks cannot run the caller's
-- code: HAProxy's tasks are not the service's coroutine), a spawned task
-- only carries one exchange and hands back how it ended; the caller alone
-- asks and tells the engine, so every callback runs on the caller's
-- coroutine, as with the blocking client.
-- @module streamtelecom.driver
local st = require "streamtelecom"

local pcall, error, type, pairs, ipairs, tostring, setmetatable, math_ceil, math_max =
      pcall, error, type, pairs, ipairs, tostring, setmetatable, math.ceil, math.max

local M = {}

--- The engine's defaults that a transport needs (`timeout` and
-- `connect_timeout` in seconds, `max_response` in bytes, `concurrency`),
-- as the C module applies them (`st._DEFAULTS`): no figure is copied here.
M.DEFAULTS = st._DEFAULTS

--- A wait rounded up to whole milliseconds, 1 at least: answers seconds, ms.
-- No host sleeps less (nginx without the delayed-events patch logs a warning
-- for every sleep that rounds to 0 ms, and a loop of them floods its log).
function M.wait_time(seconds)
  local ms = math_max(1, math_ceil(seconds * 1000))
  return ms / 1000, ms
end

--- Checks a User-Agent: nil when good, else why not.
function M.check_user_agent(ua)
  if type(ua) ~= "string" or ua == "" or ua:find("[%c\127]") then
    return "want a string without control characters"
  end
end

-- Removes "file.lua:123: " prefixes: messages are the library's words, never
-- a path inside the host.
local function clean(message)
  return (tostring(message):gsub("[^%s:]*%.lua:%d+: ", ""))
end
M.clean = clean

-- ---- the loop -------------------------------------------------------------
--
-- One drive is a table shared by its workers: the caller's coroutine is the
-- first worker; with `spawn`, a worker that starts a job while more could
-- start spawns another, up to `concurrency` in all. Each worker asks the
-- engine for the next step itself, so a finished exchange picks up the next
-- job at once: no list of threads in flight, nothing rebuilt per job. A
-- worker told to wait for an answer parks on the signal; a start wakes one
-- parked worker (there may be more to start), the end wakes them all. One
-- worker at a time sleeps a timed wait (a rate, a backoff); the others park.

local function exchange(d, run, job, request, host, port, tls)
  if d.unguarded and d.workers == 1 and run == d.run then
    -- A host whose exchange never raises, on the caller with no worker
    -- beside it (a carrier's run is a Told): no pcall, whose frame LuaJIT
    -- cannot trace a return into (the rest of the call would run in its
    -- interpreter).
    return d.exchange(d.client, run, job, request, host, port, tls)
  end
  local ok, err = pcall(d.exchange, d.client, run, job, request, host, port, tls)
  if not ok then
    -- A bug in the driver must not leave the run waiting for this job. If
    -- the job was reported before the raise, this fail raises "not
    -- running" inside its pcall, harmlessly.
    pcall(run.fail, run, job, "network", d.name .. ": " .. clean(err), true)
  end
end

local function park(d)
  d.parked = d.parked + 1
  d.signal:wait(60) -- woken by a start or the end; a timeout only asks again
  d.parked = d.parked - 1
end

-- Asks the engine for the next step. Unprotected while the caller is the
-- only worker (a raise then has no one to leave behind: the fast path of a
-- single call); protected as soon as there are others, whom the end must wake.
local function next_step(d, run, agent)
  local ask = d.ask
  if d.workers == 1 then return true, ask(run, agent) end
  return pcall(ask, run, agent)
end

-- Acts on one step of the engine (ok = false: asking it raised `what`).
local work
local function take(d, ok, what, a, b, c, e, f, full)
  if not ok then
    d.done, d.raised = true, what
  elseif what == "start" then
    d.busy = d.busy + 1
    if not full then
      if d.parked > 0 then
        d.signal:wake(1)
      elseif d.workers < d.concurrency and d.spawn then
        -- Parking needs the signal only once there are others to wake it.
        d.signal = d.signal or d.client.class.signal()
        d.workers = d.workers + 1
        if not d.spawn(work, d) then d.workers = d.workers - 1 end
      end
    end
    exchange(d, d.run, a, b, c, e, f)
    d.busy = d.busy - 1
  elseif what == "wait" then
    if a and not d.napping then
      d.napping = true
      d.sleep(M.wait_time(a))
      d.napping = false
    elseif d.signal and (d.busy > 0 or d.napping) then
      park(d)
    elseif a then
      d.sleep(M.wait_time(a))
    else
      d.done, d.raised = true, d.name .. ": the engine waits for an answer with nothing in flight"
    end
  else -- "done": run:next_request's last call brought the result
    if d.url then -- run:next's did not
      local got, ra, rb, rc = pcall(d.run.result, d.run)
      if got then a, b, c = ra, rb, rc else d.raised = ra end
    end
    d.done, d[1], d[2], d[3] = true, a, b, c
  end
end

-- A worker: steps until the run is done, then wakes those parked.
function work(d)
  local run, agent = d.run, d.agent
  while not d.done do take(d, next_step(d, run, agent)) end
  if d.parked > 0 then d.signal:wake(d.parked) end
end

-- The common call, without a loop (LuaJIT compiles a caller's loop through
-- it, where a loop inside would abort the trace): one start that nothing
-- else can join, then the end. Anything else goes on in work().
local function single(d)
  local run, agent = d.run, d.agent
  local what, a, b, c, e, f, full = d.ask(run, agent)
  if what == "start" and full then
    take(d, true, what, a, b, c, e, f, full)
    what, a, b, c, e, f, full = d.ask(run, agent)
  end
  take(d, true, what, a, b, c, e, f, full)
  if not d.done then work(d) end
end

-- ---- carriers ---------------------------------------------------------------
--
-- With `carriers`, the caller is the only one to ask and tell the engine. A
-- start runs on the caller when nothing is in flight and nothing else can
-- start before it ends (a single send, concurrency 1); any other start goes
-- to a carrier: a spawned task running the exchange against a Told, which
-- keeps how the job ended in the drive's `ended` list and wakes the caller.
-- The caller tells the run, in the order the jobs ended, before each step.

local Told = {}
Told.__index = Told

-- How a job ended, once (a second report raises, as the run's would).
local function tell(self, how)
  if self.told then error("job " .. tostring(how[2]) .. " is not running", 0) end
  self.told = true
  local d = self.d
  d.ended[#d.ended + 1] = how
  d.carrying = d.carrying - 1
  d.signal:wake(1)
end

function Told:answer_http(job, parser, seconds, new_connection)
  local keep = parser:keep()
  tell(self, { true, job, parser:status(), parser:body(), seconds, new_connection })
  parser:reset() -- as the run's answer_http leaves it: ready for the next answer
  return keep
end

function Told:answer(job, status, body, seconds, new_connection)
  tell(self, { true, job, status, body, seconds, new_connection })
end

function Told:fail(job, code, message, sent, seconds, new_connection)
  tell(self, { false, job, code, message, sent, seconds, new_connection })
end

-- Tells the run how the carried jobs ended, in the order they ended.
local function tell_run(d, run)
  local ended = d.ended
  local n = #ended
  if n == 0 then return end
  d.ended = {}
  for i = 1, n do
    local h = ended[i]
    if h[1] then
      run:answer(h[2], h[3], h[4], h[5], h[6])
    else
      run:fail(h[2], h[3], h[4], h[5], h[6], h[7])
    end
  end
end

-- Hands a start to a carrier. A host that cannot start one here raises in
-- spawn: the job ends unsent, the run is closed and the call raises, in
-- one clear sentence (never a silent fall back to one at a time).
local function launch(d, run, job, request, host, port, tls)
  d.signal = d.signal or d.client.class.signal()
  d.carrying = d.carrying + 1
  local ok, err = pcall(d.spawn, exchange, d, setmetatable({ d = d }, Told), job, request, host,
                        port, tls)
  if ok then return end
  d.carrying = d.carrying - 1
  pcall(run.fail, run, job, "network", d.name .. ": could not start a task", false)
  pcall(run.close, run)
  d.done, d.raised = true, d.name .. ": client:" .. tostring(d.method)
                           .. " cannot run its requests at once here: " .. clean(err)
end

local function carried(d)
  local run, agent, ask = d.run, d.agent, d.ask
  while not d.done do
    tell_run(d, run)
    local what, a, b, c, e, f, full = ask(run, agent)
    if what == "start" then
      if full and d.carrying == 0 then
        exchange(d, run, a, b, c, e, f)
      else
        launch(d, run, a, b, c, e, f)
      end
    elseif what == "wait" and #d.ended == 0 then -- else the loop's head tells the run first
      if d.carrying > 0 then
        d.signal:wait(a or 60) -- a timeout only asks again
      elseif a then
        d.sleep(M.wait_time(a))
      else
        d.done, d.raised = true, d.name .. ": the engine waits for an answer with nothing in flight"
      end
    elseif what == "done" then
      take(d, true, what, a, b, c, e, f, full)
    end
  end
end

--- Drives a run to its end on the calling coroutine (and, with `spawn`,
-- beside it); answers what the blocking method answers.
function M.drive(client, run, method)
  -- A client keeps the table of its last drive for the next: most calls
  -- are one at a time, and a drive's table is a dozen fields.
  local d = client.spare_drive
  if d then
    client.spare_drive = nil
    d.run, d.workers, d.busy, d.parked, d.napping, d.done, d.raised = run, 1, 0, 0, false, false, nil
    d.method = method
  else
    local class = client.class
    d = { run = run, client = client, agent = client.user_agent, name = class.name,
          url = class.url, ask = class.url and run.next or run.next_request,
          unguarded = class.raises == false,
          exchange = class.exchange, sleep = class.sleep, spawn = class.spawn,
          signal = nil, -- made at the first spawn
          concurrency = client.concurrency, method = method,
          carriers = class.carriers, carrying = 0, ended = {},
          workers = 1, busy = 0, parked = 0, napping = false, done = false }
  end
  if d.carriers then carried(d) else single(d) end
  -- Closed at once, the run's record serves the client's next run (else
  -- only once the garbage collector finds it: a fresh record, zeroed, per
  -- call). No worker of this drive touches the run once it is done.
  run:close()
  local raised, a, b, c = d.raised, d[1], d[2], d[3]
  d.run, d[1], d[2], d[3] = nil, nil, nil, nil
  -- Workers of this drive still parked wake to find it done, carriers
  -- still carrying end into it: only then may the table serve another drive.
  if d.parked == 0 and d.workers == 1 and d.carrying == 0 then client.spare_drive = d end
  if raised then error(raised, 0) end
  return a, b, c
end

-- ---- the client -------------------------------------------------------------

local function invalid(key, why)
  return nil, "invalid option '" .. key .. "': " .. why, "invalid"
end

-- A method: no method takes more than three arguments, and a fixed number
-- keeps LuaJIT's traces whole (it cannot record the return from a vararg
-- function to the frame below it: the call would leave the compiled code).
local function call(method)
  return function(self, a, b, c)
    local before = self.class.before
    if before then
      local err, code = before(self, method)
      if err then return nil, err, code end
    end
    local run, err, code = self.core:_begin(method, a, b, c)
    if not run then return nil, err, code end
    return M.drive(self, run, method)
  end
end

local METHODS = { "send", "status", "balance", "send_many", "status_many", "wait" }

--- Makes a client class for a host (see the module's description); answers
-- the class, whose `new(opts)` answers a client or nil, err, code.
function M.class(host)
  local methods = {}
  for _, name in ipairs(METHODS) do methods[name] = call(name) end
  function methods:stats() return self.core:stats() end
  function methods:close() return self.core:close() end
  local class = setmetatable({ __index = methods, __name = host.name }, { __index = host })
  class.__tostring = function(self)
    return (tostring(self.core):gsub("^streamtelecom%.client", host.name .. ".client"))
  end
  class.__close = function(self) self.core:close() end

  function class.new(opts)
    if type(opts) ~= "table" then
      error("bad argument #1 to 'new' (table expected, got " .. type(opts) .. ")", 2)
    end
    local own = host.options or {}
    local engine = {}
    for k, v in pairs(opts) do
      if type(own[k]) == "string" then return invalid(k, own[k]) end
      if not own[k] and k ~= "user_agent" then engine[k] = v end
    end
    local ua = opts.user_agent
    if ua == nil then ua = host.user_agent end
    local bad = M.check_user_agent(ua)
    if bad then return invalid("user_agent", bad) end
    local core, err, code = st._driven(engine)
    if not core then return nil, err, code end
    local D = M.DEFAULTS
    local self = setmetatable({
      class = class, core = core, user_agent = ua,
      timeout = engine.timeout or D.timeout,
      connect_timeout = engine.connect_timeout or D.connect_timeout,
      max_response = engine.max_response or D.max_response,
      concurrency = engine.concurrency or D.concurrency,
    }, class)
    if host.init then
      local why = host.init(self, opts)
      if why then
        core:close()
        return nil, why, "invalid"
      end
    end
    return self
  end
  return class
end

return M
