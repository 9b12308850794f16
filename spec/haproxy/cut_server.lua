-- A gateway that breaks its answers off, for spec/haproxy_spec.lua:
--   lua cut_server.lua PORT LOG
-- A request whose path starts with /chunked/ gets a chunked body without its
-- last chunk; any other a body shorter than its Content-Length (10 bytes
-- announced, 3 sent). Then the connection closes. Each request line is
-- appended to LOG, one a line.
local socket = require("socket")
local port, log_path = tonumber(arg[1]), arg[2]
local server = assert(socket.bind("127.0.0.1", port))
while true do
  local c = server:accept()
  c:settimeout(5)
  local first = c:receive("*l")
  repeat local line = c:receive("*l") until not line or line == ""
  local log = io.open(log_path, "a")
  log:write(tostring(first), "\n")
  log:close()
  if first and first:find("^GET /chunked/") then
    c:send("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n100\r\n")
  else
    c:send("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n100")
  end
  c:close()
end
