-- resty.streamtelecom: the streamtelecom client for OpenResty / nginx + the lua
-- module, over nginx's cosockets. It never blocks the worker.
--
--   local st = require "resty.streamtelecom"
--   local client, err, code = st.new{ user =, password =, sender =, ...,
--     pool_size = 30, keepalive_timeout = 60, shared_dict = "streamtelecom" }
--   local msgs, err, code = client:send(to, text [, opts])
--
-- Same options, methods, return shapes, error codes, retry rules and redaction
-- as the blocking client (API.md): all of that is the engine of the C module
-- (st._driven, docs/DRIVERS.md), built for LuaJIT. This file only moves bytes:
-- one ngx.thread per request in flight, each on a pooled cosocket.
--
-- Where it differs from the blocking client, on purpose:
--   * TLS is nginx's: the gateway is verified against lua_ssl_trusted_certificate
--     (ca_file/ca_path/proxy are not options here). Without a trusted CA a call
--     answers the "tls" code with a message naming that directive.
--   * nginx resolves host names only with its `resolver` directive; the name
--     "localhost" is connected to as 127.0.0.1 (nginx's resolver does not read
--     /etc/hosts), while SNI and certificate checks still use "localhost".
--   * Cosockets do not exist in the init, init_worker, set, header/body filter
--     and log phases: a call there answers nil, err, "network" (the message says
--     to use ngx.timer.at) rather than raising, as for any runtime condition.
--     A client may be *made* in any phase; it opens nothing until a call.
--   * shared_dict = "name" (a lua_shared_dict): `rate` holds for all workers
--     together, not per worker; see take_slot below.
--   * sent = false (a send may be retried) after a failed connect or a failed
--     TLS handshake: in both cases no byte of the request has left. After that
--     a send is never repeated, as with libcurl.
--   * keepalive_timeout = 0 turns keep-alive off; pool_size is the size of
--     nginx's cosocket pool for the gateway (per worker).
local st = require "streamtelecom"

local ngx = ngx
local spawn, wait_thread, kill_thread = ngx.thread.spawn, ngx.thread.wait, ngx.thread.kill
local sleep, now, update_time = ngx.sleep, ngx.now, ngx.update_time
local tcp = ngx.socket.tcp
local http_response = st._http_response
local unpack = unpack or table.unpack -- luacheck: ignore 143
local pairs, type, tostring, pcall, error, setmetatable, math_max, math_min =
      pairs, type, tostring, pcall, error, setmetatable, math.max, math.min

local M = {
  _VERSION = st._VERSION,
  DEFAULT_URL = st.DEFAULT_URL,
  errors = st.errors,
  parse = st.parse,
}

-- The blocking client's defaults (API.md), given to the engine explicitly so
-- that the engine and this transport use the same figures.
local DEFAULTS = { timeout = 15, connect_timeout = 5, max_response = 65536 }
local USER_AGENT = "resty.streamtelecom (" .. st._VERSION .. ")"

-- Phases without cosockets (lua-nginx-module's documentation).
local NO_COSOCKETS = {
  init = true, init_worker = true, set = true, log = true, header_filter = true,
  body_filter = true, balancer = true, exit_worker = true, ssl_session_store = true,
}

local mt = { __index = {} }
local client = mt.__index

local function fclock()
  update_time()
  return now()
end

-- ---- the shared rate -------------------------------------------------------
--
-- With shared_dict, every worker's requests to one account take their start
-- times from one "next free slot" in the dictionary: slot = max(now, next),
-- next = slot + 1/rate. The get-and-set runs under a lock made with
-- dict:add (atomic across workers; it expires after 0.1 s should a worker die
-- holding it), and nothing yields between the add and the delete, so the lock
-- is held for microseconds. The engine's own rate is then left off: it counts
-- this worker only, and on top of the shared slots it would add delay without
-- adding any guarantee. Retries take a slot of their own, as a new request.
local function take_slot(self)
  local dict, key, lock = self.dict, self.slot_key, self.lock_key
  local interval = 1 / self.rate
  local spins = 0
  while not dict:add(lock, true, 0.1) do
    spins = spins + 1
    if spins > 2000 then break end -- a stuck lock: go on rather than hang
    sleep(0.001)
  end
  local t = fclock()
  local slot = math_max(t, dict:get(key) or 0)
  -- Forgotten after a minute of no use: slot times are absolute.
  dict:set(key, slot + interval, 60 + interval)
  dict:delete(lock)
  if slot > t then sleep(slot - t) end
end

-- ---- one exchange -----------------------------------------------------------

local function connect_failure(err)
  local msg = "could not connect to the gateway: " .. tostring(err)
  if tostring(err):find("no resolver defined", 1, true) then
    msg = msg .. " (nginx resolves host names only with its 'resolver' directive)"
  end
  return msg
end

-- Milliseconds left until a deadline, at least 1 (0 would mean no limit).
-- The event loop's cached clock is close enough for a deadline; the clock
-- is read afresh only where a duration is reported.
local function ms(until_) return math_max(1, (until_ - now()) * 1000) end

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

-- A response parser: one kept per client for reuse (its buffers too); a
-- parser that saw a failure is dropped.
local function take_parser(self)
  local parser = self.spare_parser
  if parser then
    self.spare_parser = nil
    return parser
  end
  return http_response(self.max_response)
end

-- The exchange failed: its socket is dropped and the run told, once.
local function failed(run, job, sock, started, code, message, sent, new_conn)
  pcall(sock.close, sock) -- after a raising sslhandshake the socket may be odd
  run:fail(job, code, message, sent, fclock() - started, new_conn)
end

local function handshake(self, run, job, sock, started, host, t)
  sock:settimeouts(t, t, t)
  -- lua-resty-core 0.1.25 may raise "assertion failed!" instead of
  -- answering nil, err when verification fails at once (HOSTS.md).
  local called, session, herr = pcall(sock.sslhandshake, sock, nil, host, self.verify)
  if called and session then return true end
  herr = called and herr or session
  if herr == "timeout" then
    failed(run, job, sock, started, "timeout",
           "timeout: TLS handshake with the gateway took over the connect timeout", false, true)
  else
    failed(run, job, sock, started, "tls",
           "TLS handshake with the gateway " .. host .. " failed: " .. tostring(herr)
           .. (self.verify and " (verify = true: the CA that signed the gateway's"
               .. " certificate must be in the file named by nginx's"
               .. " lua_ssl_trusted_certificate directive)" or ""), false, true)
  end
  return false
end

-- Reads the answer into parser: true once whole, else the run was told.
local function receive(self, run, job, sock, started, deadline, parser, new_conn)
  local got, perr, kind
  local received = 0
  repeat
    if received > 0 then -- the first read has the timeout set at connect
      local left = deadline - now()
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
             .. " failed: " .. tostring(rerr), true, new_conn)
      return false
    end
  until got ~= "more"
  if got == "done" then return true end
  if kind == "too_large" then
    failed(run, job, sock, started, "too_large", "gateway answer is larger than"
           .. " max_response (" .. self.max_response .. " bytes)", true, new_conn)
  else
    failed(run, job, sock, started, "network", "the gateway's answer is not valid"
           .. " HTTP: " .. tostring(perr), true, new_conn)
  end
  return false
end

-- One request, framed by the core (run:next_request), on a pooled cosocket.
local function exchange(self, run, job, request, host, port, tls)
  if self.dict then take_slot(self) end
  local started = fclock()
  local deadline = started + self.timeout
  local connect_deadline = started + math_min(self.connect_timeout, self.timeout)

  local sock = tcp()
  local t = ms(deadline)
  sock:settimeouts(ms(connect_deadline), t, t) -- send and read: see receive
  local ok, err = sock:connect(host == "localhost" and "127.0.0.1" or host, port,
                               connect_options(self, host, port, tls))
  if not ok then
    return failed(run, job, sock, started, err == "timeout" and "timeout" or "connect",
                  connect_failure(err), false, true)
  end
  local new_conn = (sock:getreusedtimes() or 0) == 0
  if tls and new_conn
     and not handshake(self, run, job, sock, started, host,
                       ms(math_min(connect_deadline, deadline))) then
    return
  end
  if new_conn then -- connecting took time; a pooled connection took none
    t = ms(deadline)
    sock:settimeouts(t, t, t)
  end
  local sent
  sent, err = sock:send(request)
  if not sent then
    -- Part of the request may have left: a send is never repeated.
    return failed(run, job, sock, started, err == "timeout" and "timeout" or "network",
                  (err == "timeout" and "timeout: " or "")
                  .. "sending the request to the gateway failed: " .. tostring(err), true, new_conn)
  end

  local parser = take_parser(self)
  if not receive(self, run, job, sock, started, deadline, parser, new_conn) then
    return -- the parser is dropped with its failure
  end
  local keep = run:answer_http(job, parser, fclock() - started, new_conn)
  self.spare_parser = parser -- answer_http made it ready for the next answer
  -- keepalive_timeout = 0 means no keep-alive (setkeepalive's 0 would keep
  -- the connection for ever).
  if keep and self.keepalive_ms > 0 then
    sock:setkeepalive(self.keepalive_ms, self.pool_size)
  else
    sock:close()
  end
end

local SLEPT = {}

local function sleeper(seconds)
  sleep(seconds)
  return SLEPT
end

-- The thread body: whatever happens, the job is reported once. Nothing
-- after a report yields, so a job that raised after its report cannot have
-- been handed out again: the fallback fail then raises "not running",
-- harmlessly, inside its pcall.
local function exchange_thread(self, run, job, request, host, port, tls)
  local ok, err = pcall(exchange, self, run, job, request, host, port, tls)
  if not ok then
    -- A bug here must not leave the run waiting for this job for ever. The
    -- message is ours (never the request); the engine redacts it anyway.
    pcall(run.fail, run, job, "network", "resty.streamtelecom: " .. tostring(err), true)
  end
  return job
end

local function launch(self, run, in_flight, job, request, host, port, tls)
  local th, err = spawn(exchange_thread, self, run, job, request, host, port, tls)
  if not th then
    run:fail(job, "network", "could not start an ngx.thread: " .. tostring(err), false)
    return 0
  end
  in_flight[job] = th
  return 1
end

-- Waits for the first of the threads in flight (or the timer, after
-- `seconds`); answers how many threads ended (0 or 1).
local function wait_any(in_flight, seconds)
  local list = {}
  for _, th in pairs(in_flight) do list[#list + 1] = th end
  local timer = seconds and spawn(sleeper, seconds)
  if timer then list[#list + 1] = timer end
  local ok, which = wait_thread(unpack(list))
  if timer and which ~= SLEPT then kill_thread(timer) end
  if not ok then error(which, 0) end
  if which == SLEPT then return 0 end
  in_flight[which] = nil
  return 1
end

-- Drives a run to its end on the calling coroutine; answers what the
-- blocking method would (run:next_request's last step carries it).
--
-- Each request runs in an ngx.thread of its own, so that up to `concurrency`
-- are in flight at once. One case needs no thread: a start that is the only
-- request of the moment, when the engine says nothing else can start before
-- it ends (`full`: a single send, status or balance, or a bulk call at
-- concurrency 1). That one runs on this coroutine, which saves a thread
-- spawn and wait per call.
local function drive(self, run)
  local in_flight, n = nil, 0 -- made at the first thread
  local agent = self.user_agent
  while true do
    local what, a, b, c, d, e, full = run:next_request(agent)
    if what == "start" then
      if full and n == 0 then
        exchange_thread(self, run, a, b, c, d, e)
      else
        in_flight = in_flight or {}
        n = n + launch(self, run, in_flight, a, b, c, d, e)
      end
    elseif what == "wait" then
      if n > 0 then
        n = n - wait_any(in_flight, a or nil)
      elseif a then
        sleep(a)
      else
        error("resty.streamtelecom: the engine waits with nothing in flight", 0)
      end
    else -- "done": the call that ended the run brought its result
      return a, b, c
    end
  end
end

local function phase_error(method)
  local phase = ngx.get_phase()
  if NO_COSOCKETS[phase] then
    return "client:" .. method .. " cannot run in the " .. phase .. " phase (cosockets are not"
           .. " available there): use ngx.timer.at, or call it from a content, access,"
           .. " rewrite or timer handler"
  end
end

local function call(self, method, ...)
  local perr = phase_error(method)
  if perr then return nil, perr, "network" end
  local run, err, code = self.core:_begin(method, ...)
  if not run then return nil, err, code end
  return drive(self, run)
end

function client:send(...) return call(self, "send", ...) end
function client:status(...) return call(self, "status", ...) end
function client:balance() return call(self, "balance") end
function client:send_many(...) return call(self, "send_many", ...) end
function client:status_many(...) return call(self, "status_many", ...) end

-- wait: the engine's rounds of status requests (st_task_wait), the pauses
-- between them slept with ngx.sleep by drive.
function client:wait(...) return call(self, "wait", ...) end

function client:stats() return self.core:stats() end

function client:close()
  return self.core:close()
end

mt.__tostring = function(self)
  return (tostring(self.core):gsub("^streamtelecom%.client", "resty.streamtelecom.client"))
end

-- ---- new -------------------------------------------------------------------

local OWN = { pool_size = true, keepalive_timeout = true, shared_dict = true, verify = true,
              user_agent = true }
local NOT_HERE = {
  ca_file = "TLS is nginx's here: name the CA bundle with nginx's lua_ssl_trusted_certificate"
            .. " directive",
  ca_path = "TLS is nginx's here: name the CA bundle with nginx's lua_ssl_trusted_certificate"
            .. " directive",
  proxy = "cosockets connect directly: a proxy is not supported by resty.streamtelecom",
}

local function invalid(msg) return nil, "invalid option " .. msg, "invalid" end

function M.new(opts)
  if type(opts) ~= "table" then
    error("bad argument #1 to 'new' (table expected, got " .. type(opts) .. ")", 2)
  end
  local engine_opts = {}
  for k, v in pairs(opts) do
    if NOT_HERE[k] ~= nil then return invalid("'" .. k .. "': " .. NOT_HERE[k]) end
    if not OWN[k] then engine_opts[k] = v end
  end
  for k, v in pairs(DEFAULTS) do
    if engine_opts[k] == nil then engine_opts[k] = v end
  end

  local verify = opts.verify
  if verify == nil then verify = true end
  if type(verify) ~= "boolean" then return invalid("'verify': want a boolean") end
  local pool_size = opts.pool_size or 30
  if type(pool_size) ~= "number" or pool_size < 1 or pool_size % 1 ~= 0 then
    return invalid("'pool_size': want a whole number, 1 or more")
  end
  local keepalive = opts.keepalive_timeout or 60
  if type(keepalive) ~= "number" or keepalive ~= keepalive or keepalive < 0
     or keepalive == math.huge then
    return invalid("'keepalive_timeout': want a finite number of seconds, 0 or more")
  end
  local user_agent = opts.user_agent or USER_AGENT
  if type(user_agent) ~= "string" or user_agent:find("[%c]") then
    return invalid("'user_agent': want a string without control characters")
  end
  local dict
  if opts.shared_dict ~= nil then
    if type(opts.shared_dict) ~= "string" then return invalid("'shared_dict': want a string") end
    dict = ngx.shared[opts.shared_dict]
    if not dict then
      return invalid("'shared_dict': no lua_shared_dict named '" .. opts.shared_dict
                     .. "' in nginx.conf")
    end
    -- The shared slots replace the engine's per-worker rate (see take_slot);
    -- a bad rate is left to the engine to refuse.
    local r = opts.rate
    if type(r) == "number" and r > 0 and r < math.huge then engine_opts.rate = nil end
  end

  local core, err, code = st._driven(engine_opts)
  if not core then return nil, err, code end

  local rate = dict and engine_opts.rate == nil and opts.rate or nil
  local self = {
    core = core,
    verify = verify,
    pool_size = pool_size,
    keepalive_ms = keepalive * 1000,
    user_agent = user_agent,
    timeout = engine_opts.timeout,
    connect_timeout = engine_opts.connect_timeout,
    max_response = engine_opts.max_response,
    dict = rate and dict or nil,
    rate = rate,
  }
  if rate then
    -- One timeline per account and gateway, whatever client or worker sends.
    local key = "streamtelecom:rate:" .. tostring(opts.user) .. "@" .. tostring(opts.url or st.DEFAULT_URL)
    self.slot_key, self.lock_key = key, key .. ":lock"
  end
  return setmetatable(self, mt)
end

return M
