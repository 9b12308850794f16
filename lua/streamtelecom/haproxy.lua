--- streamtelecom.haproxy: the client API of `streamtelecom` inside HAProxy.
--
--     local st = require "streamtelecom.haproxy"
--     local client = assert(st.new{ user =, password =, sender =, url = })
--     local msgs, err, code = client:send(to, text)   -- yields, never blocks
--
-- Same options, methods, shapes, error codes, retry rules and redaction as the
-- blocking client, on HAProxy's `core.httpclient()`, which yields: call it in
-- actions, services and tasks (HAProxy 2.6+, Lua 5.3). The engine in the C
-- module decides everything about an exchange (docs/DRIVERS.md); this file
-- only moves the requests through `core.httpclient` and tells the engine how
-- each one ended.
--
-- What HAProxy's httpclient imposes (docs/haproxy.md):
-- * one request at a time per call: `core.httpclient():get()` yields until its
--   answer, so `send_many`/`status_many` run their requests one after another
--   inside one action or service (different requests to HAProxy still run in
--   parallel, each in its own coroutine);
-- * TLS verification is global (`httpclient.ssl.verify`, `httpclient.ssl.ca-file`
--   in HAProxy's `global` section): `verify = false`, `ca_file`, `ca_path` and
--   `proxy` answer `invalid`, naming the setting to use instead;
-- * HAProxy itself answers 503 when it cannot connect (after its own retries),
--   504 on a timeout and 502 on a broken answer, with its own error pages; those
--   are transport failures (`connect`, `timeout`, `network`), not gateway answers;
-- * the httpclient re-sends a request on a response timeout or an empty answer:
--   route it through a local relay (examples/haproxy/haproxy.cfg) so a send can
--   never leave twice.

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

-- HAProxy's own error pages (its built-in answers when no server answered).
-- A gateway answer always comes with the gateway's own body and a Date header.
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

local function redact(s)
  return (tostring(s):gsub("([?&]pwd=)[^&%s\"]*", "%1***"))
end

local function header(res, name)
  local h = res.headers and res.headers[name]
  if type(h) == "table" then return h[0] or h[1] end
  return h
end

-- HAProxy's own 502/503/504 (no server answered), or nil for a real answer.
local function synthetic(res)
  local s = SYNTHETIC[res.status]
  if s and res.body == s.body and header(res, "date") == nil then return s end
  return nil
end

local function elapsed(t0)
  local t1 = hap.now()
  return math.max(0, (t1.sec - t0.sec) + (t1.usec - t0.usec) / 1e6)
end

local Client = {}
Client.__index = Client

--- One exchange through core.httpclient; tells the run how it ended.
local function exchange(self, run, job, url)
  local t0 = hap.now()
  local hc = hap.httpclient()
  local ok, res = pcall(hc.get, hc, { url = url, timeout = self.timeout_ms,
                                      headers = self.headers })
  local seconds = elapsed(t0)
  if not ok or type(res) ~= "table" or type(res.status) ~= "number" then
    -- Nobody can say whether the request left: never "not sent".
    return run:fail(job, "network", "HAProxy's httpclient failed: "
                    .. redact(ok and "no answer" or res), true, seconds, true)
  end
  local fake = synthetic(res)
  if fake then
    return run:fail(job, fake.code, fake.message, fake.sent, seconds, true)
  end
  local body = res.body or ""
  if #body > self.max_response then
    return run:fail(job, "too_large", ("the answer is longer than max_response (%d bytes)")
                    :format(self.max_response), true, seconds, true)
  end
  return run:answer(job, res.status, body, seconds, true)
end

-- The engine checks argument types; its messages name the method called,
-- raised again here at the caller's line.
local function begin(self, call, ...)
  local ok, run, err, code = pcall(self.engine._begin, self.engine, call, ...)
  if not ok then error(tostring(run), 4) end
  return run, err, code
end

-- Drives one call of the engine to its end; answers what the blocking method does.
local function drive(self, call, ...)
  local run, err, code = begin(self, call, ...)
  if not run then return nil, err, code end
  while true do
    local what, a, b = run:next()
    if what == "start" then
      exchange(self, run, a, b)
    elseif what == "wait" then
      -- Every job is answered before the next run:next(): a wait is only a
      -- rate limit or a retry's backoff.
      if not a then
        error("streamtelecom.haproxy: the engine waits for a request this driver"
              .. " does not have in flight", 2)
      end
      hap.msleep(math.max(1, math.ceil(a * 1000)))
    else
      break
    end
  end
  return run:result()
end

function Client:send(to, text, opts) return drive(self, "send", to, text, opts) end
function Client:status(id) return drive(self, "status", id) end
function Client:balance() return drive(self, "balance") end
function Client:send_many(items, opts) return drive(self, "send_many", items, opts) end
function Client:status_many(ids, opts) return drive(self, "status_many", ids, opts) end

--- Polls the statuses until every id is settled or timeout passes: the
-- engine's rounds (st_task_wait), core.msleep between them.
function Client:wait(ids, opts) return drive(self, "wait", ids, opts) end

-- The engine keeps the counters and knows whether it is closed: a closed
-- client answers nil, err, "closed" from every call, as the blocking one.
function Client:stats() return self.engine:stats() end

function Client:close() return self.engine:close() end

-- user@host and whether it is closed, as the engine says; never the password.
Client.__tostring = function(self)
  return "streamtelecom.haproxy: " .. (tostring(self.engine):gsub("^[^:]*:%s*", ""))
end
Client.__close = function(self) self:close() end
Client.__gc = Client.__close
Client.__name = "streamtelecom.haproxy"

--- A client: the options of st.new (docs/API.md), checked the same way.
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
    timeout_ms = math.max(1, math.ceil(timeout * 1000)),
    max_response = core_opts.max_response or DEFAULT_MAX_RESPONSE,
    headers = { ["user-agent"] = { ua or USER_AGENT } },
  }, Client)
  return self
end

return M
