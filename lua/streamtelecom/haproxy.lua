--- streamtelecom.haproxy: the client API of `streamtelecom` inside HAProxy.
--
--     local st = require "streamtelecom.haproxy"
--     local client = assert(st.new{ user =, password =, sender =, url = })
--     local msgs, err, code = client:send(to, text)   -- yields, never blocks
--
-- Same options, methods, shapes, error codes, retry rules and redaction as the
-- blocking client; every call yields: call it in actions, services and tasks
-- (HAProxy 2.6+, Lua 5.3). The engine in the C module decides everything
-- about an exchange and `streamtelecom.driver` runs the loop
-- (docs/DRIVERS.md); this file only moves the requests and tells the
-- engine how each one ended.
--
-- How (docs/haproxy.md):
--
-- * a bulk call (`send_many`, `status_many`, `wait`) runs up to `concurrency`
--   requests at once, each in a task of its own (core.register_task) that
--   only carries its bytes; the calling coroutine tells the engine every
--   outcome, so callbacks run where the blocking client runs them;
-- * a plain-HTTP URL to an IPv4 address (the local relay the docs configure)
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
local driver = require "streamtelecom.driver"

-- `core` is HAProxy's global.
local hap = core

local M = {
  _VERSION = st._VERSION,
  DEFAULT_URL = st.DEFAULT_URL,
  errors = st.errors,
  segments = st.segments,
  parse = st.parse,
}

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

local function clock()
  local t = hap.now()
  return t.sec + t.usec / 1e6
end

local function since(t0) return math.max(0, clock() - t0) end

-- ---- through core.httpclient ------------------------------------------------

local function header(res, name)
  local h = res.headers and res.headers[name]
  if type(h) == "table" then return h[0] or h[1] end
  return h
end

-- The URL of a request the engine framed: its target and Host line.
local function url_of(request, tls)
  local target, authority = request:match("^GET (%S+) HTTP/1%.1\r\nHost: ([^\r]+)\r\n")
  return target and (tls and "https://" or "http://") .. authority .. target
end

-- One exchange through core.httpclient (yields). An answer with a body
-- shorter than its Content-Length is a connection closed mid-answer: the
-- request may have arrived, so it is never an answer (a truncated id would
-- be taken for a real one).
local function exchange_httpclient(self, run, job, request, tls, t0)
  local url = url_of(request, tls)
  local hc = hap.httpclient()
  local ok, res = pcall(hc.get, hc, { url = url, timeout = self.timeout_ms,
                                      headers = self.headers })
  if not url or not ok or type(res) ~= "table" or type(res.status) ~= "number" then
    -- Nobody can say whether the request left: never "not sent".
    return run:fail(job, "network", "HAProxy's httpclient gave no answer", true, since(t0), true)
  end
  local fake = SYNTHETIC[res.status]
  local body = res.body or ""
  if fake and body == fake.body and header(res, "date") == nil then
    return run:fail(job, fake.code, fake.message, fake.sent, since(t0), true)
  end
  local announced = tonumber(header(res, "content-length"))
  if announced and #body < announced then
    return run:fail(job, "network", ("the gateway closed the connection after %d of the %d"
                                     .. " bytes it announced"):format(#body, announced),
                    true, since(t0), true)
  end
  if #body > self.max_response then
    return run:fail(job, "too_large", ("the answer is longer than max_response (%d bytes)")
                    :format(self.max_response), true, since(t0), true)
  end
  run:answer(job, res.status, body, since(t0), true)
end

-- ---- over core.tcp ------------------------------------------------------------

-- HAProxy's Socket:receive(n) answers up to n bytes, fewer once the peer
-- has closed; and nil, "connection closed." both at the close and when the
-- socket's timeout passed, which only the clock tells apart.
local READ_SIZE = 16384

-- Reads the answer into parser until it is whole (or the peer closed):
-- answers nil, or the code and message of the failure.
local function read_answer(self, sock, parser)
  while true do
    local t_read = clock()
    local data = sock:receive(READ_SIZE)
    local state, err, kind = parser:feed(data or "")
    if state == "more" and (not data or #data < READ_SIZE) then -- closed, or timed out
      if clock() - t_read >= self.timeout - 0.002 then
        return "timeout", "the gateway did not answer in time"
      end
      state, err, kind = parser:finish()
    end
    if state == "done" then return nil end
    -- A cut answer may follow a request that arrived: never "not sent".
    if not state then return kind == "too_large" and "too_large" or "network", err end
  end
end

-- One request per connection over core.tcp(): the answer ends at the
-- latest with it, and no connection outlives the call. HAProxy's
-- Socket:receive(n) returns only once it has n bytes or the peer closed,
-- so the request the engine framed for keep-alive asks for a close.
local KEEP_ALIVE = "Connection: keep-alive\r\n\r\n"
local CLOSE = "Connection: close\r\n\r\n"

local function exchange_tcp(self, run, job, request, host, port, t0)
  if request:sub(-#KEEP_ALIVE) == KEEP_ALIVE then
    request = request:sub(1, -#KEEP_ALIVE - 1) .. CLOSE
  end
  local sock = hap.tcp()
  sock:settimeout(self.timeout)
  if not sock:connect(host, port) then
    sock:close()
    return run:fail(job, "connect", ("cannot connect to %s port %d"):format(host, port), false,
                    since(t0), true)
  end
  if not sock:send(request) then
    sock:close()
    return run:fail(job, "network", "the connection closed while the request was sent", true,
                    since(t0), true)
  end
  local parser = st._http_response(self.max_response)
  local code, message = read_answer(self, sock, parser)
  sock:close()
  if code then return run:fail(job, code, message, true, since(t0), true) end
  local fake = SYNTHETIC[parser:status()]
  if fake and parser:body() == fake.body then
    return run:fail(job, fake.code, fake.message, fake.sent, since(t0), true)
  end
  run:answer_http(job, parser, since(t0), true)
end

-- A plain-HTTP request to an IPv4 address (the local relay) goes over
-- core.tcp(), whose answer the C module's HTTP framing reads: it tells a
-- body cut short (chunked or not) from a whole one, which HAProxy's
-- httpclient cannot. Host names (core.tcp does not resolve them), HTTPS
-- (core.tcp does not verify certificates) and IPv6 go through the httpclient.
local function exchange(self, run, job, request, host, port, tls)
  local t0 = clock()
  if not tls and host:match("^%d+%.%d+%.%d+%.%d+$") then
    return exchange_tcp(self, run, job, request, host, port, t0)
  end
  return exchange_httpclient(self, run, job, request, tls, t0)
end

-- ---- tasks, sleeps and the signal ----------------------------------------------

local function msleep(_, ms) hap.msleep(ms) end

-- An exchange in a task of its own. Where HAProxy starts no task the
-- driver ends the call with one clear error (never one at a time in silence).
local function spawn(fn, ...)
  local args = table.pack(...)
  local ok, err = pcall(hap.register_task, function() fn(table.unpack(args, 1, args.n)) end)
  if not ok then
    error("HAProxy refused to start a task (" .. driver.clean(err) .. "). Call it from an"
          .. " action, a service or a task, or give the client concurrency = 1", 0)
  end
end

-- HAProxy 2.6 offers no way for a task to wake a waiting coroutine, so the
-- caller looks: every 1 ms at first (never a shorter sleep), then less
-- often as the wait goes on, never more than an eighth of the time waited so
-- far and at most POLL_MAX_MS apart. An answer after 0.1 s is seen at most
-- 12 ms late, any answer at most 16 ms late, and a 0.2 s wait takes about 36
-- looks instead of 200 (HAProxy's CPU over a 5 s wait: 30 ms, not 130 ms).
local POLL_MAX_MS = 16

local Signal = {}
Signal.__index = Signal

function Signal:wake(n) self.posts = self.posts + n end

-- Waits until woken or `seconds` passed: answers whether woken.
function Signal:wait(seconds)
  local start = clock()
  local deadline = start + seconds
  while self.posts == 0 do
    local now = clock()
    if now >= deadline then return false end
    local ms = math.min(POLL_MAX_MS, math.floor((now - start) * 1000 / 8),
                        math.ceil((deadline - now) * 1000))
    hap.msleep(math.max(1, ms))
  end
  self.posts = self.posts - 1
  return true
end

-- ---- the client -----------------------------------------------------------------

local VERIFY = "TLS verification is set in HAProxy's global section"
               .. " (httpclient.ssl.verify required); only verify = true is accepted"
local CA = " is set in HAProxy's global section (httpclient.ssl.ca-file)"
           .. " or on the relay's server line (ca-file)"

local function init(self, opts)
  if opts.verify ~= nil and opts.verify ~= true then
    return "invalid option 'verify': " .. VERIFY
  end
  -- A positive timeout below 1 ms counts as 1 ms, never as "no limit".
  self.timeout_ms = math.max(1, math.ceil(self.timeout * 1000))
  self.headers = { ["user-agent"] = { self.user_agent } }
end

local Client = driver.class{
  name = "streamtelecom.haproxy",
  user_agent = "streamtelecom-haproxy",
  -- true: this host's own option; a string: refused here, and why.
  options = {
    verify = true,
    ca_file = "the CA file" .. CA,
    ca_path = "the CA path" .. CA,
    proxy = "core.httpclient cannot use a proxy; route the gateway through a backend"
            .. " of your configuration instead",
  },
  init = init,
  exchange = exchange,
  sleep = msleep,
  spawn = spawn,
  signal = function() return setmetatable({ posts = 0 }, Signal) end,
  carriers = true, -- tasks only carry: callbacks run on the caller
}

--- A client of `new`: the blocking client's methods, each yielding.
-- @type Client

--- Sends one text to one or more numbers, as the blocking `client:send`.
-- @function Client:send
-- @param to a number, or a list of them
-- @string text the text
-- @tparam[opt] table opts the send options of the blocking client
-- @return the list of `{ id =, to = }`, or nil, err, code

--- The state of one message, as the blocking `client:status`.
-- @function Client:status
-- @string id a message id
-- @return `{ id =, state =, raw =, final = }`, or nil, err, code

--- The account's balance, as the blocking `client:balance`.
-- @function Client:balance
-- @return `{ balance = }`, or nil, err, code

--- Many sends, up to `concurrency` at once (each in a task of its own but
-- when nothing else is in flight), as the blocking `client:send_many`.
-- Raises if HAProxy refuses to start a task, rather than sending one by one.
-- @function Client:send_many
-- @tab items a list of `{ to =, text = [, send options] }`
-- @tparam[opt] table opts `on_start`, `on_result`: run on the calling coroutine
-- @return the list of results, one per item

--- Many statuses, up to `concurrency` at once, as the blocking
-- `client:status_many`.
-- @function Client:status_many
-- @tab ids a list of message ids
-- @tparam[opt] table opts `on_result`
-- @return a table of results by id

--- Polls the statuses until every id is settled or timeout passes, as the
-- blocking `client:wait` (the engine's rounds, `core.msleep` between them).
-- @function Client:wait
-- @tab ids a list of message ids
-- @tparam[opt] table opts `timeout`, `interval` (seconds)
-- @return a table of statuses by id, or nil, err, code

--- The counters of the blocking client's `client:stats`. The engine keeps
-- them and knows whether the client is closed: a closed client answers
-- nil, err, "closed" from every call, as the blocking one.
-- @function Client:stats
-- @treturn table counters

--- Closes the client: calls after it answer nil, err, "closed".
-- @function Client:close

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
  return Client.new(opts)
end

return M
