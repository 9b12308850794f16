--- streamtelecom.haproxy: the client API of `streamtelecom` inside HAProxy.
--
--     local st = require "streamtelecom.haproxy"
--     local client = assert(st.new{ user =, password =, sender =, url = })
--     local msgs, err, code = client:send(to, text)   -- yields, never blocks
--
-- Same options, methods, shapes, error codes, retry rules and redaction as the
-- blocking client; every call yields: call it in actions, services and tasks
-- (HAProxy 2.6+, Lua 5.3). The engine in the C module decides everything
-- about an exchange (docs/DRIVERS.md); this file only moves the requests and
-- tells the engine how each one ended.
--
-- How (docs/haproxy.md):
-- * a bulk call (`send_many`, `status_many`, `wait`) runs up to `concurrency`
--   requests at once, each in a task of its own (core.register_task); the
--   calling coroutine reports every outcome to the engine, so callbacks run
--   where the blocking client runs them;
-- * a plain-HTTP URL to an IP address (the local relay the docs configure)
--   goes over core.tcp(), read by the C module's HTTP framing, which tells a
--   body cut short from a whole one; any other URL through core.httpclient()
--   (core.tcp() resolves no names and verifies no certificates);
-- * TLS verification is HAProxy's (the relay's server line, or
--   `httpclient.ssl.verify` and `httpclient.ssl.ca-file` in `global`):
--   `verify = false`, `ca_file`, `ca_path` and `proxy` answer `invalid`, naming
--   the setting to use instead;
-- * HAProxy itself answers 503 when it cannot connect (after its own retries),
--   504 on a timeout and 502 on a broken answer, with its own error pages; those
--   are transport failures (`connect`, `timeout`, `network`), not gateway answers;
-- * the httpclient re-sends a request on a response timeout or an empty answer:
--   route requests through a local relay so a send can never leave twice.
--
-- A complete haproxy.cfg and the Lua it loads: [HAProxy](../topics/haproxy.md.html).
-- @module streamtelecom.haproxy

local st = require "streamtelecom"

-- `core` is HAProxy's global; `engine` is the driven core of the C module.
local hap = core

local M = {
  _VERSION = st._VERSION,
  DEFAULT_URL = st.DEFAULT_URL,
  errors = st.errors,
  segments = st.segments,
  parse = st.parse,
}

local DEFAULT_TIMEOUT = 15
local DEFAULT_MAX_RESPONSE = 65536
local USER_AGENT = "streamtelecom-haproxy"

-- HAProxy's own error pages (its built-in answers when no server answered),
-- told by their exact body, and through the httpclient by their missing Date
-- header too (a gateway answer always has one).
local SYNTHETIC = {
  [502] = { code = "network", sent = true,
            body = "<html><body><h1>502 Bad Gateway</h1>\nThe server returned an invalid"
                   .. " or incomplete response.\n</body></html>\n",
            message = "the gateway closed the connection without a valid answer"
                      .. " (HAProxy answered 502)" },
  -- Only after connection failures: the request never reached a server.
  [503] = { code = "connect", sent = false,
            body = "<html><body><h1>503 Service Unavailable</h1>\nNo server is available"
                   .. " to handle this request.\n</body></html>\n",
            message = "cannot connect to the gateway (HAProxy answered 503: no server"
                      .. " is available; refused, timed out or TLS verification failed)" },
  [504] = { code = "timeout", sent = true,
            body = "<html><body><h1>504 Gateway Time-out</h1>\nThe server didn't respond"
                   .. " in time.\n</body></html>\n",
            message = "the gateway did not answer in time (HAProxy answered 504)" },
}

-- Options the C core does not take: TLS and proxies are HAProxy's business.
local HOST_OPTIONS = {
  verify = "TLS verification is set in HAProxy's global section"
           .. " (httpclient.ssl.verify required); only verify = true is accepted",
  ca_file = "the CA file is set in HAProxy's global section (httpclient.ssl.ca-file)"
            .. " or on the relay's server line (ca-file)",
  ca_path = "the CA path is set in HAProxy's global section (httpclient.ssl.ca-file)"
            .. " or on the relay's server line (ca-file)",
  proxy = "core.httpclient cannot use a proxy; route the gateway through a backend"
          .. " of your configuration instead",
}

local function header(res, name)
  local h = res.headers and res.headers[name]
  if type(h) == "table" then return h[0] or h[1] end
  return h
end

-- HAProxy's own 502/503/504 (no server answered), or nil for a real answer.
local function synthetic(res)
  local s = SYNTHETIC[res.status]
  if s and res.body == s.body and (res.framed or header(res, "date") == nil) then return s end
  return nil
end

local function clock()
  local t = hap.now()
  return t.sec + t.usec / 1e6
end

-- How one exchange ended, as the arguments of run:answer or run:fail after
-- the job: { "answer", status, body, seconds, true } or
-- { "fail", code, message, sent, seconds, true }.
local function failure(code, message, sent, t0)
  return { "fail", code, message, sent, math.max(0, clock() - t0), true }
end

-- An answer HAProxy's httpclient gives whole, or a failure. A body shorter
-- than the Content-Length announced is a connection closed mid-answer: the
-- request may have arrived, so it is never an answer (a truncated id would
-- be taken for a real one).
local function judge(self, res, t0)
  local fake = synthetic(res)
  if fake then return failure(fake.code, fake.message, fake.sent, t0) end
  local body = res.body or ""
  local announced = tonumber(header(res, "content-length"))
  if announced and #body < announced then
    return failure("network", ("the gateway closed the connection after %d of the %d bytes"
                               .. " it announced"):format(#body, announced), true, t0)
  end
  if #body > self.max_response then
    return failure("too_large", ("the answer is longer than max_response (%d bytes)")
                   :format(self.max_response), true, t0)
  end
  return { "answer", res.status, body, math.max(0, clock() - t0), true }
end

-- One exchange through core.httpclient (yields); answers how it ended.
-- The engine redacts every message it is given (pwd= values included).
local function carry_httpclient(self, url)
  local t0 = clock()
  local hc = hap.httpclient()
  local ok, res = pcall(hc.get, hc, { url = url, timeout = self.timeout_ms,
                                      headers = self.headers })
  if not ok or type(res) ~= "table" or type(res.status) ~= "number" then
    -- Nobody can say whether the request left: never "not sent".
    return failure("network", "HAProxy's httpclient gave no answer", true, t0)
  end
  return judge(self, res, t0)
end

-- A plain-HTTP URL to an IPv4 address (the local relay): core.tcp() can
-- carry it, and the C module's HTTP framing then reads the answer, which
-- tells a body cut short (chunked or not) from a whole one; HAProxy's
-- httpclient cannot. Host names (core.tcp does not resolve them), HTTPS
-- (core.tcp does not verify certificates) and IPv6 go through the httpclient.
local function over_tcp(target)
  return target and not target.tls and target.host:match("^%d+%.%d+%.%d+%.%d+$") ~= nil
end

-- HAProxy's Socket:receive(n) answers up to n bytes, fewer once the peer
-- has closed; and nil, "connection closed." both at the close and when the
-- socket's timeout passed, which only the clock tells apart.
local READ_SIZE = 16384

-- Reads the answer into parser until it is whole (or the peer closed):
-- answers nil, or how the exchange failed.
local function read_answer(self, sock, parser, t0)
  while true do
    local t_read = clock()
    local data = sock:receive(READ_SIZE)
    local state, err, kind = parser:feed(data or "")
    if state == "more" and (not data or #data < READ_SIZE) then -- closed, or timed out
      if clock() - t_read >= self.timeout - 0.002 then
        return failure("timeout", "the gateway did not answer in time", true, t0)
      end
      state, err, kind = parser:finish()
    end
    if state == "done" then return nil end
    if not state then
      -- A cut answer may follow a request that arrived: never "not sent".
      return failure(kind == "too_large" and "too_large" or "network", err, true, t0)
    end
  end
end

local function carry_tcp(self, host, port, request)
  local t0 = clock()
  local sock = hap.tcp()
  sock:settimeout(self.timeout)
  if not sock:connect(host, port) then
    sock:close()
    return failure("connect", ("cannot connect to %s port %d"):format(host, port), false, t0)
  end
  if not sock:send(request) then
    sock:close()
    return failure("network", "the connection closed while the request was sent", true, t0)
  end
  local parser = st._http_response(self.max_response)
  local failed = read_answer(self, sock, parser, t0)
  sock:close()
  if failed then return failed end
  return judge(self, { status = parser:status(), body = parser:body(), framed = true }, t0)
end

local function carry(self, url)
  -- One request per connection: the answer ends at the latest with it.
  local target, request = st._http_request(url, self.user_agent, false)
  if over_tcp(target) then return carry_tcp(self, target.host, target.port, request) end
  return carry_httpclient(self, url)
end

-- Tells the run how a job ended. Only the driving coroutine calls this, so
-- the engine and the callbacks it runs (on_request, on_result) always run on
-- the caller's coroutine, never in a task.
local function report(run, job, how)
  if how[1] == "answer" then
    return run:answer(job, how[2], how[3], how[4], how[5])
  end
  return run:fail(job, how[2], how[3], how[4], how[5], how[6])
end

-- Up to `concurrency` exchanges of one call run at once, each in a task of
-- its own (core.register_task): the task only moves the bytes and leaves how
-- the exchange ended in `flight.ended`; the driving coroutine reports it.
-- HAProxy 2.6 offers no way for a task to wake a waiting coroutine, so the
-- driver looks: every 1 ms at first (never a shorter sleep), then less
-- often as the wait goes on, never more than an eighth of the time waited so
-- far and at most POLL_MAX_MS apart. An answer after 0.1 s is seen at most
-- 12 ms late, any answer at most 16 ms late, and a 0.2 s wait takes about 36
-- looks instead of 200 (HAProxy's CPU over a 5 s wait: 30 ms, not 130 ms).
local POLL_MAX_MS = 16

local function new_flight(method) return { n = 0, ended = {}, method = method } end

-- carry, which never raises: whatever HAProxy raises (its messages may
-- name its internals) ends the job as `network`, possibly sent.
local function carry_safely(self, url)
  local ok, how = pcall(carry, self, url)
  if ok then return how end
  return { "fail", "network", "streamtelecom.haproxy could not carry the request", true, 0, true }
end

local function task_body(self, flight, job, url)
  return function()
    local how = carry_safely(self, url)
    flight.ended[#flight.ended + 1] = { job, how }
    flight.n = flight.n - 1
  end
end

local function tasks_refused(method, why)
  return ("streamtelecom.haproxy: client:%s cannot run its requests at once here: HAProxy"
          .. " refused to start a task (%s). Call it from an action, a service or a task,"
          .. " or give the client concurrency = 1"):format(method, why)
end

-- Starts the job in a task. Where HAProxy starts no task, the job ends
-- unsent and the call raises: never a silent fall back to one at a time.
local function launch(self, run, flight, job, url)
  local ok, err = pcall(hap.register_task, task_body(self, flight, job, url))
  if ok then
    flight.n = flight.n + 1
    return
  end
  local why = tostring(err):gsub("^[^\n]-:%d+: ", "")
  pcall(run.fail, run, job, "network", "HAProxy refused to start a task", false)
  run:close()
  error(tasks_refused(flight.method, why), 0)
end

-- Reports what the tasks left, in the order they ended.
local function report_ended(run, flight)
  local ended = flight.ended
  if #ended == 0 then return end
  flight.ended = {}
  for i = 1, #ended do report(run, ended[i][1], ended[i][2]) end
end

-- Waits until a task ends, or at most `seconds` (a rate or a retry's
-- backoff; nil: no limit).
local function wait_for_task(flight, seconds)
  local start = clock()
  local deadline = seconds and start + seconds
  while #flight.ended == 0 do
    local now = clock()
    if deadline and now >= deadline then return end
    local ms = math.min(POLL_MAX_MS, math.floor((now - start) * 1000 / 8))
    if deadline then ms = math.min(ms, math.ceil((deadline - now) * 1000)) end
    hap.msleep(math.max(1, ms))
  end
end

-- The engine checks argument types; its messages name the method called,
-- raised again here at the caller's line.
local function begin(self, call, ...)
  local ok, run, err, code = pcall(self.engine._begin, self.engine, call, ...)
  if not ok then error(tostring(run), 4) end
  return run, err, code
end

-- Drives one call of the engine to its end; answers what the blocking method does.
--
-- A start is held back until the next step says what comes after it: when
-- nothing else can start before it ends ("wait" without a time, no task in
-- flight: a single send, status or balance, or concurrency 1), it runs right
-- here on the caller's coroutine, without a task; otherwise in a task.
local function drive(self, call, ...)
  local run, err, code = begin(self, call, ...)
  if not run then return nil, err, code end
  local flight, held, held_url = new_flight(call), nil, nil
  while true do
    local what, a, b = run:next()
    if what == "start" then
      if held then launch(self, run, flight, held, held_url) end
      held, held_url = a, b
    elseif what == "wait" then
      if held then
        if flight.n == 0 and #flight.ended == 0 and not a then
          report(run, held, carry_safely(self, held_url))
        else
          launch(self, run, flight, held, held_url)
        end
        held = nil
      elseif flight.n > 0 or #flight.ended > 0 then
        wait_for_task(flight, a or nil)
        report_ended(run, flight)
      elseif a then
        hap.msleep(math.max(1, math.ceil(a * 1000)))
      else
        error("streamtelecom.haproxy: the engine waits for a request this driver"
              .. " does not have in flight", 2)
      end
    else
      break
    end
  end
  return run:result()
end

local Client = {}
Client.__index = Client

--- A client of `new`: the blocking client's methods, each yielding.
-- @type Client

--- Sends one text to one or more numbers, as the blocking `client:send`.
-- @param to a number, or a list of them
-- @string text the text
-- @tparam[opt] table opts the send options of the blocking client
-- @return the list of `{ id =, to = }`, or nil, err, code
function Client:send(to, text, opts) return drive(self, "send", to, text, opts) end

--- The state of one message, as the blocking `client:status`.
-- @string id a message id
-- @return `{ id =, state =, raw =, final = }`, or nil, err, code
function Client:status(id) return drive(self, "status", id) end

--- The account's balance, as the blocking `client:balance`.
-- @return `{ balance = }`, or nil, err, code
function Client:balance() return drive(self, "balance") end

--- Many sends, up to `concurrency` at once (each beyond the first in a task
-- of its own), as the blocking `client:send_many`. Raises if HAProxy refuses
-- to start a task, rather than sending one by one.
-- @tab items a list of `{ to =, text = [, send options] }`
-- @tparam[opt] table opts `on_start`, `on_result`: run on the calling coroutine
-- @return the list of results, one per item
function Client:send_many(items, opts) return drive(self, "send_many", items, opts) end

--- Many statuses, up to `concurrency` at once, as the blocking
-- `client:status_many`.
-- @tab ids a list of message ids
-- @tparam[opt] table opts `on_result`
-- @return a table of results by id
function Client:status_many(ids, opts) return drive(self, "status_many", ids, opts) end

--- Polls the statuses until every id is settled or timeout passes, as the
-- blocking `client:wait` (the engine's rounds, `core.msleep` between them).
-- @tab ids a list of message ids
-- @tparam[opt] table opts `timeout`, `interval` (seconds)
-- @return a table of statuses by id, or nil, err, code
function Client:wait(ids, opts) return drive(self, "wait", ids, opts) end

--- The counters of the blocking client's `client:stats`. The engine keeps
-- them and knows whether the client is closed: a closed client answers
-- nil, err, "closed" from every call, as the blocking one.
-- @treturn table counters
function Client:stats() return self.engine:stats() end

--- Closes the client: calls after it answer nil, err, "closed".
function Client:close() return self.engine:close() end

-- user@host and whether it is closed, as the engine says; never the password.
Client.__tostring = function(self)
  return "streamtelecom.haproxy: " .. (tostring(self.engine):gsub("^[^:]*:%s*", ""))
end
Client.__close = function(self) self:close() end
Client.__gc = Client.__close
Client.__name = "streamtelecom.haproxy"

--- Functions.
-- @section functions

--- Makes a client; opens no connection (make it once, in the `lua-load` body).
-- Its options are the blocking `new`'s, checked the same way, except
-- `verify = false`, `ca_file`, `ca_path` and `proxy`: TLS and proxies are
-- HAProxy's, so these answer `invalid`, naming the setting to use.
-- @tab opts the options of the blocking `new`
-- @return a `Client`, or nil, err, "invalid"
function M.new(opts)
  if type(hap) ~= "table" or type(hap.httpclient) ~= "function" then
    error("streamtelecom.haproxy runs inside HAProxy 2.6 or later (it needs core.httpclient);"
          .. " elsewhere use require \"streamtelecom\"", 2)
  end
  if type(opts) ~= "table" then
    error("bad argument #1 to 'streamtelecom.haproxy.new' (table expected, got "
          .. type(opts) .. ")", 2)
  end
  local core_opts = {}
  for k, v in pairs(opts) do core_opts[k] = v end
  for key, why in pairs(HOST_OPTIONS) do
    local v = core_opts[key]
    core_opts[key] = nil
    if v ~= nil and not (key == "verify" and v == true) then
      return nil, ("invalid option '%s': %s"):format(key, why), "invalid"
    end
  end
  local ua = core_opts.user_agent
  core_opts.user_agent = nil
  if ua ~= nil and (type(ua) ~= "string" or ua == "" or ua:find("[%c\127]")) then
    return nil, "invalid option 'user_agent': want a string without control characters",
           "invalid"
  end
  local engine, err, code = st._driven(core_opts)
  if not engine then return nil, err, code end
  local timeout = core_opts.timeout or DEFAULT_TIMEOUT
  local self = setmetatable({
    engine = engine,
    -- A positive timeout below 1 ms counts as 1 ms, never as "no limit".
    timeout = timeout,
    timeout_ms = math.max(1, math.ceil(timeout * 1000)),
    user_agent = ua or USER_AGENT,
    max_response = core_opts.max_response or DEFAULT_MAX_RESPONSE,
    headers = { ["user-agent"] = { ua or USER_AGENT } },
  }, Client)
  return self
end

return M
