-- A driver for the streamtelecom engine over LuaSocket (docs/DRIVERS.md):
-- the engine decides (concurrency, rate, retries, parsing, stats, redaction);
-- this file only moves bytes, one request at a time, over one kept-alive
-- plain-HTTP connection. A model for drivers of other loops (cqueues, luv,
-- copas): replace connect/send/receive with the loop's own.
--
--   local driver = require "examples.driver.luasocket"
--   local client = assert(driver.new{ user = "test", password = "secret",
--                                     url = "http://127.0.0.1:8089/get/" })
--   local msgs, err, code = client:send("79031234567", "Hello")
local st = require("streamtelecom")
local socket = require("socket")

local Driver = {}
Driver.__index = Driver

-- Connects to host:port, or reuses the kept connection.
local function connection(self, host, port, timeout)
  local key = host .. ":" .. port
  if self.sock and self.key == key then return self.sock, false end
  if self.sock then self.sock:close() end
  self.sock, self.key = nil, nil
  local sock = socket.tcp()
  sock:settimeout(timeout)
  local ok, err = sock:connect(host, port)
  if not ok then
    sock:close()
    return nil, err
  end
  self.sock, self.key = sock, key
  return sock, true
end

local function drop(self)
  if self.sock then self.sock:close() end
  self.sock, self.key = nil, nil
end

-- Reads one response into the C parser, taking whatever bytes have come
-- (a kept-alive server does not close): "done" or nil, err, kind.
local function receive(sock, parser, timeout)
  local deadline = socket.gettime() + timeout
  sock:settimeout(0)
  while true do
    local data, err, partial = sock:receive(8192)
    data = data or partial
    if data and #data > 0 then
      local state, perr, kind = parser:feed(data)
      if state ~= "more" then return state, perr, kind end
    end
    if err == "closed" then return parser:finish() end
    if err ~= "timeout" then return nil, err, "network" end
    local left = deadline - socket.gettime()
    if left <= 0 then return nil, "no answer in time", "timeout" end
    socket.select({ sock }, nil, left)
  end
end

-- One exchange: the job's answer or failure, told to the run. The engine
-- framed the request (run:next_request); the answer goes to a C parser.
local function exchange(self, run, job, request, host, port, tls)
  local t0 = socket.gettime()
  if tls then
    return run:fail(job, "tls", "this example driver speaks plain HTTP only", false, 0)
  end
  local sock, fresh = connection(self, host, port, self.timeout)
  if not sock then
    return run:fail(job, "connect", "could not connect: " .. tostring(fresh), false,
                    socket.gettime() - t0, true)
  end
  sock:settimeout(self.timeout)
  local sent, serr = sock:send(request)
  if not sent then
    drop(self)
    -- Some bytes may have gone out: say so, and a send is never repeated.
    return run:fail(job, "network", "network failure: " .. tostring(serr), true,
                    socket.gettime() - t0, fresh)
  end
  local parser = st._http_response(self.max_response)
  local state, err, kind = receive(sock, parser, self.timeout)
  local seconds = socket.gettime() - t0
  if state ~= "done" then
    drop(self)
    local code = kind == "too_large" and "too_large" or kind == "timeout" and "timeout" or "network"
    return run:fail(job, code, (code == "timeout" and "timeout: " or "network failure: ") .. tostring(err),
                    true, seconds, fresh)
  end
  if not run:answer_http(job, parser, seconds, fresh) then drop(self) end
end

-- Drives a run to its end, one request at a time.
local function drive(self, run)
  while true do
    local what, a, b, c, d, e = run:next_request()
    if what == "start" then
      exchange(self, run, a, b, c, d, e)
    elseif what == "wait" then
      -- Nothing in flight: a rate, a backoff, or wait's pause between rounds.
      if a then socket.sleep(a) end
    else
      return run:result()
    end
  end
end

local function call(name)
  return function(self, ...)
    local run, err, code = self.core:_begin(name, ...)
    if not run then return nil, err, code end
    return drive(self, run)
  end
end

Driver.send = call("send")
Driver.status = call("status")
Driver.balance = call("balance")
Driver.send_many = call("send_many")
Driver.status_many = call("status_many")
Driver.wait = call("wait")

function Driver:stats() return self.core:stats() end

function Driver:close()
  drop(self)
  return self.core:close()
end

local M = {}

-- Same options as st.new; the engine checks them.
function M.new(options)
  local core, err, code = st._driven(options)
  if not core then return nil, err, code end
  return setmetatable({ core = core, timeout = options.timeout or 15,
                        max_response = options.max_response or 65536 }, Driver)
end

return M
