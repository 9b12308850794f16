--- The streamtelecom client for OpenResty / nginx + the lua module, over
-- nginx's cosockets. It never blocks the worker.
--
--     local st = require "resty.streamtelecom"
--     local client, err, code = st.new{ user =, password =, sender =, ...,
--       pool_size = 30, keepalive_timeout = 60, shared_dict = "streamtelecom" }
--     local msgs, err, code = client:send(to, text [, opts])
--
-- Same options, methods, return shapes, error codes, retry rules and redaction
-- as the blocking client (API.md): all of that is the engine of the C module
-- (docs/DRIVERS.md), built for LuaJIT, and the drive loop is
-- `streamtelecom.driver`'s. This file only moves bytes: one request on a
-- pooled cosocket (`exchange`), sleeps with `ngx.sleep`, and runs up to
-- `concurrency` requests at once in `ngx.thread`s that pull jobs.
--
-- Where it differs from the blocking client, on purpose:
--
-- * TLS is nginx's: the gateway is verified against `lua_ssl_trusted_certificate`
--   (`ca_file`/`ca_path`/`proxy` are not options here). A failed verification
--   answers the `tls` code with a message naming that directive and
--   `lua_ssl_verify_depth`.
-- * nginx resolves host names only with its `resolver` directive; the name
--   "localhost" is connected to as 127.0.0.1 (nginx's resolver does not read
--   /etc/hosts), while SNI and certificate checks still use "localhost".
-- * Cosockets do not exist in the init, init_worker, set, header/body filter
--   and log phases: a call there answers nil, err, "network" (the message says
--   to use `ngx.timer.at`) rather than raising, as for any runtime condition.
--   A client may be *made* in any phase; it opens nothing until a call.
-- * `shared_dict = "name"` (a `lua_shared_dict`): `rate` holds for all workers
--   together, not per worker; see slot_taker below.
-- * sent = false (a send may be retried) after a failed connect or a failed
--   TLS handshake: in both cases no byte of the request has left. After that
--   a send is never repeated, as with libcurl.
-- * `keepalive_timeout` (seconds; 0 turns keep-alive off, over an hour is
--   refused as a unit mistake) and `pool_size` (nginx's cosocket pool for the
--   gateway, per worker).
-- * No sleep is shorter than 1 ms (Debian's nginx logs a warning for each).
-- @module resty.streamtelecom
local st = require "streamtelecom"
local driver = require "streamtelecom.driver"

local ngx = ngx
local sleep, now, update_time = ngx.sleep, ngx.now, ngx.update_time
local tcp = ngx.socket.tcp
local http_response = st._http_response
local clean = driver.clean
local type, tostring, pcall, pairs, setmetatable, error, math_max, math_min =
      type, tostring, pcall, pairs, setmetatable, error, math.max, math.min

local M = {
  _VERSION = st._VERSION,
  DEFAULT_URL = st.DEFAULT_URL,
  errors = st.errors,
  parse = st.parse,
}

local USER_AGENT = "resty.streamtelecom (" .. st._VERSION .. ")"

-- Phases without cosockets (lua-nginx-module's documentation).
local NO_COSOCKETS = {
  init = true, init_worker = true, set = true, log = true, header_filter = true,
  body_filter = true, balancer = true, exit_worker = true, ssl_session_store = true,
}

-- The wall clock, fresh: slot times in the shared dictionary, which all
-- workers read.
local function wall_clock()
  update_time()
  return now()
end

-- The clock of an exchange's deadlines and durations: CLOCK_MONOTONIC
-- through LuaJIT's FFI, which costs a vDSO call where ngx.update_time also
-- formats nginx's cached time strings, twice per request.
local ffi = require "ffi"
-- In pcalls: another module (or a second load of this one) may have
-- declared them already; the cast makes the call ours whatever its
-- declaration said.
pcall(ffi.cdef, "typedef struct { long tv_sec; long tv_nsec; } streamtelecom_timespec;")
pcall(ffi.cdef, "int clock_gettime(int clock, void *tp);")
local CLOCK_MONOTONIC = 1
local clock_gettime = ffi.cast("int (*)(int, streamtelecom_timespec *)", ffi.C.clock_gettime)
local timespec = ffi.new("streamtelecom_timespec")
local function fclock()
  clock_gettime(CLOCK_MONOTONIC, timespec)
  return tonumber(timespec.tv_sec) + tonumber(timespec.tv_nsec) * 1e-9
end

-- ngx.sleep truncates to whole milliseconds: half a millisecond more keeps
-- the driver's whole number.
local function nap(_, ms) sleep((ms + 0.5) / 1000) end

-- ---- the shared rate -------------------------------------------------------
--
-- With shared_dict, every worker's requests to one account take their start
-- times from one "next free slot" in the dictionary: slot = max(now, next),
-- next = slot + 1/rate. The engine keeps its rate and asks this hook
-- (st._driven's rate_slot) for each slot it needs, then waits the time
-- answered as any rate wait. The hook must not yield: the get-and-set runs
-- under a lock made with dict:add (atomic across workers; it expires after
-- 0.1 s should a worker die holding it), taken by spinning, since nothing
-- yields between the add and the delete and the lock is held for
-- microseconds; a lock still taken after LOCK_SPINS tries (a dead holder)
-- is passed rather than waited for. Retries take a slot of their own, as a
-- new request.
local LOCK_SPINS = 10000

local function slot_taker(dict, key)
  local lock = key .. ":lock"
  return function(interval)
    local locked = false
    for _ = 1, LOCK_SPINS do
      if dict:add(lock, true, 0.1) then
        locked = true
        break
      end
    end
    local t = wall_clock()
    local slot = math_max(t, dict:get(key) or 0)
    -- Forgotten after a minute of no use: slot times are absolute.
    dict:set(key, slot + interval, 60 + interval)
    if locked then dict:delete(lock) end
    return slot - t
  end
end

-- ---- one exchange -----------------------------------------------------------

local function connect_failure(err)
  local msg = "could not connect to the gateway: " .. clean(err)
  if tostring(err):find("no resolver defined", 1, true) then
    msg = msg .. " (nginx resolves host names only with its 'resolver' directive)"
  end
  return msg
end

-- Milliseconds left until a deadline, at least 1 (0 would mean no limit).
-- The event loop's cached clock is close enough for a deadline; the clock
-- is read afresh only where a duration is reported.
local function ms(until_) return math_max(1, (until_ - fclock()) * 1000) end

-- The connect options for a gateway: one pool per client's gateway (its
-- url is fixed), made once.
local function connect_options(self, host, port, tls)
  local opts = self.connect_opts
  if not opts or self.pool_host ~= host then
    opts = { pool = (tls and "https" or "http") .. ":" .. host .. ":" .. port
                    .. (tls and not self.verify and ":unverified" or ""),
             pool_size = self.pool_size }
    self.connect_opts, self.pool_host = opts, host
  end
  return opts
end

-- Response parsers: a client keeps those of its finished exchanges for the
-- next (their buffers too), as many as ran at once; a parser that saw a
-- failure is dropped.
local function take_parser(self)
  local spares = self.spare_parsers
  local n = #spares
  if n > 0 then
    local parser = spares[n]
    spares[n] = nil
    return parser
  end
  return http_response(self.max_response)
end

-- The exchange failed: its socket is dropped and the run told, once.
local function failed(run, job, sock, started, code, message, sent, new_conn)
  pcall(sock.close, sock) -- after a raising sslhandshake the socket may be odd
  run:fail(job, code, message, sent, fclock() - started, new_conn)
end

-- Why a handshake failed, in words a user can act on. lua-resty-core 0.1.25
-- may raise "assertion failed!" instead of answering nil, err when
-- verification fails at once (HOSTS.md): that raise is a failed verification.
local function tls_failure(self, host, raised, err)
  local why = raised and "the certificate was refused" or clean(err)
  local msg = "TLS handshake with the gateway " .. host .. " failed: " .. why
  if self.verify then
    msg = msg .. " (verify = true: the CA that signed the gateway's certificate must be in"
          .. " the file named by nginx's lua_ssl_trusted_certificate directive, and"
          .. " lua_ssl_verify_depth must cover its chain)"
  end
  return msg
end

local function handshake(self, run, job, sock, started, host, t)
  sock:settimeouts(t, t, t)
  local called, session, herr = pcall(sock.sslhandshake, sock, nil, host, self.verify)
  if called and session then return true end
  if called and herr == "timeout" then
    failed(run, job, sock, started, "timeout",
           "timeout: TLS handshake with the gateway took over the connect timeout", false, true)
  else
    failed(run, job, sock, started, "tls",
           tls_failure(self, host, not called, called and herr or session), false, true)
  end
  return false
end

-- Reads the answer into parser: true once whole, else the run was told.
local function receive(self, run, job, sock, started, deadline, parser, new_conn)
  local got, perr, kind
  local received = 0
  repeat
    if received > 0 then -- the first read has the timeout set at connect
      local left = deadline - fclock()
      if left <= 0 then
        failed(run, job, sock, started, "timeout", "timeout: no complete answer from"
               .. " the gateway within " .. self.timeout .. " s", true, new_conn)
        return false
      end
      local t = math_max(1, left * 1000)
      sock:settimeouts(t, t, t)
    end
    local data, rerr = sock:receiveany(8192)
    if data then
      received = received + #data
      got, perr, kind = parser:feed(data)
    elseif rerr == "closed" and received == 0 then
      failed(run, job, sock, started, "network", "the gateway closed the connection"
             .. " without an answer (the request had been sent)", true, new_conn)
      return false
    elseif rerr == "closed" then
      got, perr, kind = parser:finish()
      if got == "more" then got, perr, kind = nil, "the answer ended early", "malformed" end
    elseif rerr == "timeout" then
      failed(run, job, sock, started, "timeout", "timeout: no complete answer from"
             .. " the gateway within " .. self.timeout .. " s", true, new_conn)
      return false
    else
      failed(run, job, sock, started, "network", "reading the gateway's answer"
             .. " failed: " .. clean(rerr), true, new_conn)
      return false
    end
  until got ~= "more"
  if got == "done" then return true end
  if kind == "too_large" then
    failed(run, job, sock, started, "too_large", "gateway answer is larger than"
           .. " max_response (" .. self.max_response .. " bytes)", true, new_conn)
  else
    failed(run, job, sock, started, "network", "the gateway's answer is not valid"
           .. " HTTP: " .. clean(perr), true, new_conn)
  end
  return false
end

-- One request, framed by the core (run:next_request), on a pooled cosocket.
local function exchange(self, run, job, request, host, port, tls)
  local started = fclock()
  local deadline = started + self.timeout

  local sock = tcp()
  -- The whole budget is left at the start: the client's own figures (send
  -- and read: see receive).
  sock:settimeouts(self.connect_ms, self.timeout_ms, self.timeout_ms)
  local ok, err = sock:connect(host == "localhost" and "127.0.0.1" or host, port,
                               connect_options(self, host, port, tls))
  if not ok then
    return failed(run, job, sock, started, err == "timeout" and "timeout" or "connect",
                  connect_failure(err), false, true)
  end
  local new_conn = (sock:getreusedtimes() or 0) == 0
  if tls and new_conn
     and not handshake(self, run, job, sock, started, host,
                       ms(started + math_min(self.connect_timeout, self.timeout))) then
    return
  end
  if new_conn then -- connecting took time; a pooled connection took none
    local t = ms(deadline)
    sock:settimeouts(t, t, t)
  end
  local sent
  sent, err = sock:send(request)
  if not sent then
    -- Part of the request may have left: a send is never repeated.
    return failed(run, job, sock, started, err == "timeout" and "timeout" or "network",
                  (err == "timeout" and "timeout: " or "")
                  .. "sending the request to the gateway failed: " .. clean(err), true, new_conn)
  end

  local parser = take_parser(self)
  if not receive(self, run, job, sock, started, deadline, parser, new_conn) then
    return -- the parser is dropped with its failure
  end
  local keep = run:answer_http(job, parser, fclock() - started, new_conn)
  local spares = self.spare_parsers -- answer_http made it ready for the next answer
  spares[#spares + 1] = parser
  -- keepalive_timeout = 0 means no keep-alive (setkeepalive's 0 would keep
  -- the connection for ever).
  if keep and self.keepalive_ms > 0 then
    sock:setkeepalive(self.keepalive_ms, self.pool_size)
  else
    sock:close()
  end
end

-- ---- the client --------------------------------------------------------------

local function phase_error(_, method)
  local phase = ngx.get_phase()
  if NO_COSOCKETS[phase] then
    return "client:" .. method .. " cannot run in the " .. phase .. " phase (cosockets are not"
           .. " available there): use ngx.timer.at, or call it from a content, access,"
           .. " rewrite or timer handler", "network"
  end
end

-- ngx.semaphore as the driver's signal: parked workers wait on it.
local semaphore = require "ngx.semaphore"
local Signal = {}
Signal.__index = Signal
function Signal:wait(seconds) return self.sema:wait(seconds) end
function Signal:wake(n) return self.sema:post(n) end

local TLS_IS_NGINX = "TLS is nginx's here: name the CA bundle with nginx's"
                     .. " lua_ssl_trusted_certificate directive"

-- Keep-alive longer than this is a unit mistake (milliseconds for seconds).
local HOUR = 3600

-- The options of this host, checked once the engine has checked its own.
local function init(self, opts)
  local verify = opts.verify
  if verify == nil then verify = true end
  if type(verify) ~= "boolean" then return "invalid option 'verify': want a boolean" end
  local pool_size = opts.pool_size or 30
  if type(pool_size) ~= "number" or pool_size < 1 or pool_size % 1 ~= 0 then
    return "invalid option 'pool_size': want a whole number, 1 or more"
  end
  local keepalive = opts.keepalive_timeout or 60
  if type(keepalive) ~= "number" or keepalive ~= keepalive or keepalive < 0
     or keepalive == math.huge then
    return "invalid option 'keepalive_timeout': want a finite number of seconds, 0 or more"
  end
  if keepalive > HOUR then
    return "invalid option 'keepalive_timeout': " .. keepalive .. " seconds is over an hour;"
           .. " it is in seconds (60 is a minute), not milliseconds"
  end
  self.verify, self.pool_size, self.keepalive_ms = verify, pool_size, keepalive * 1000
  self.timeout_ms = math_max(1, self.timeout * 1000)
  self.connect_ms = math_max(1, math_min(self.connect_timeout, self.timeout) * 1000)
  self.spare_parsers = {}
  if opts.shared_dict ~= nil then
    if type(opts.shared_dict) ~= "string" then return "invalid option 'shared_dict': want a string" end
    if not ngx.shared[opts.shared_dict] then
      return "invalid option 'shared_dict': no lua_shared_dict named '" .. opts.shared_dict
             .. "' in nginx.conf"
    end
  end
end

local Client = driver.class{
  name = "resty.streamtelecom",
  user_agent = USER_AGENT,
  -- true: this host's own option; a string: refused here, and why.
  options = { pool_size = true, keepalive_timeout = true, shared_dict = true, verify = true,
              ca_file = TLS_IS_NGINX, ca_path = TLS_IS_NGINX,
              proxy = "cosockets connect directly: a proxy is not supported by"
                      .. " resty.streamtelecom" },
  init = init,
  before = phase_error,
  exchange = exchange,
  raises = false, -- every failure is told to the run (sslhandshake's raise too)
  sleep = nap,
  spawn = ngx.thread.spawn,
  signal = function() return setmetatable({ sema = semaphore.new(0) }, Signal) end,
}

--- A client: the options of the blocking `new` (docs/API.md) and this
-- host's (`pool_size`, `keepalive_timeout` in seconds, `shared_dict`,
-- `verify`). Answers the client, or nil, err, "invalid".
function M.new(opts)
  if type(opts) ~= "table" then
    error("bad argument #1 to 'new' (table expected, got " .. type(opts) .. ")", 2)
  end
  -- With a shared rate the engine takes its slots from the dictionary: one
  -- timeline per account and gateway, whatever client or worker sends. A
  -- bad rate or shared_dict is still refused by the engine or by init.
  local dict = type(opts.shared_dict) == "string" and ngx.shared[opts.shared_dict]
  if dict and opts.rate ~= nil then
    local shared = {}
    for k, v in pairs(opts) do shared[k] = v end
    shared.rate_slot = slot_taker(dict, "streamtelecom:rate:" .. tostring(opts.user) .. "@"
                                        .. tostring(opts.url or st.DEFAULT_URL))
    opts = shared
  end
  return Client.new(opts)
end

return M
