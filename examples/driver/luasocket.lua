-- A driver over LuaSocket (docs/DRIVERS.md): one request at a time on one
-- kept-alive plain-HTTP connection. For another loop, replace the socket calls.
--   local client = assert(require("examples.driver.luasocket").new{ user =, password =, url = })
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

-- Feeds the C parser whatever bytes come: "done", or nil, err, kind.
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

-- One exchange of bytes the engine framed, told to the run once.
local function exchange(self, run, job, request, host, port, tls)
  local t0 = socket.gettime()
  if tls then return run:fail(job, "tls", "this example driver speaks plain HTTP only", false, 0) end
  local sock, new = connection(self, host, port)
  if not sock then return run:fail(job, "connect", "could not connect: " .. new, false, 0, true) end
  local parser, state, err, kind = st._http_response(self.max_response)
  sock:settimeout(self.timeout)
  if sock:send(request) then -- else some bytes may have left: never repeated
    state, err, kind = receive(sock, parser, t0 + self.timeout)
  end
  local seconds = socket.gettime() - t0
  if state == "done" and run:answer_http(job, parser, seconds, new) then return end
  sock:close()
  self.sock = nil
  if state == "done" then return end -- answered; the connection may not be reused
  local code = (kind == "too_large" or kind == "timeout") and kind or "network"
  run:fail(job, code, code .. ": " .. tostring(err or "sending failed"), true, seconds, new)
end

return driver.class{ name = "luasocket", user_agent = "streamtelecom-luasocket",
                     exchange = exchange, sleep = socket.sleep }
