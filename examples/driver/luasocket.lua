-- A driver for the streamtelecom engine over LuaSocket (docs/DRIVERS.md): the
-- engine decides (concurrency, rate, retries, parsing, stats, redaction),
-- streamtelecom.driver runs the loop; this file only moves bytes, one request
-- at a time, over one kept-alive plain-HTTP connection. A model for drivers of
-- other loops (cqueues, luv, copas): replace connect/send/receive and sleep.
--
--   local driver = require "examples.driver.luasocket"
--   local client = assert(driver.new{ user = "test", password = "secret",
--                                     url = "http://127.0.0.1:8089/get/" })
--   local msgs, err, code = client:send("79031234567", "Hello")
local st = require("streamtelecom")
local driver = require("streamtelecom.driver")
local socket = require("socket")

-- The kept connection to host:port, or a new one (second answer: new).
local function connection(self, host, port)
  if self.sock and self.key == host .. ":" .. port then return self.sock, false end
  if self.sock then self.sock:close() end
  local sock = socket.tcp()
  sock:settimeout(self.connect_timeout)
  local ok, err = sock:connect(host, port)
  if not ok then sock:close(); return nil, err end
  self.sock, self.key = sock, host .. ":" .. port
  return sock, true
end

-- Reads one answer into the C parser: "done", or nil, err, kind. Takes
-- whatever bytes have come (receive(n) alone would wait for all n).
local function receive(sock, parser, deadline)
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

-- One exchange, told to the run: the engine framed the request.
local function exchange(self, run, job, request, host, port, tls)
  local t0 = socket.gettime()
  if tls then return run:fail(job, "tls", "this example driver speaks plain HTTP only", false, 0) end
  local sock, new = connection(self, host, port)
  if not sock then return run:fail(job, "connect", "could not connect: " .. new, false, 0, true) end
  sock:settimeout(self.timeout)
  local parser = st._http_response(self.max_response)
  local state, err, kind
  if sock:send(request) then -- else some bytes may have left: never repeated
    state, err, kind = receive(sock, parser, t0 + self.timeout)
  end
  local seconds = socket.gettime() - t0
  if state == "done" and run:answer_http(job, parser, seconds, new) then return end
  sock:close()
  self.sock = nil
  if state == "done" then return end
  local code = (kind == "too_large" or kind == "timeout") and kind or "network"
  run:fail(job, code, code .. ": " .. tostring(err or "sending failed"), true, seconds, new)
end

return driver.class{
  name = "luasocket",
  user_agent = "streamtelecom-luasocket",
  exchange = exchange,
  sleep = socket.sleep,
}
