-- streamtelecom from nginx: the handlers of examples/openresty/nginx.conf.
--
--   /sms/blocking  client:send() on the worker's own client. Simple, one kept-alive
--                  connection per worker, but the whole worker (every other
--                  request it serves) waits for the gateway.
--   /sms/thread    the same send in a worker thread (ngx.run_worker_thread, see
--                  sms_thread.lua): the event loop stays free.
--   /sms/cosocket  bring your own transport: client:url() builds the request,
--                  an ngx.socket.tcp cosocket fetches it, st.parse() reads the
--                  answer. The event loop stays free, no threads needed.
--
-- Every handler answers JSON: {"ok":true,"messages":[{"to":..,"id":..},..]}
-- or {"ok":false,"err":..,"code":..} with a 4xx/5xx status.
local st = require("streamtelecom")
local cjson = require("cjson.safe")

local M = {}

local conf    -- st.new options, read from the environment once (init)
local client  -- this worker's client (init_worker)

-- The largest gateway answer the cosocket transport reads (as max_response).
local MAX_ANSWER = 65536

function M.init()
  conf = {
    url = os.getenv("STREAM_TELECOM_URL") or st.DEFAULT_URL,
    user = os.getenv("STREAM_TELECOM_USER"),
    password = os.getenv("STREAM_TELECOM_PASSWORD"),
    sender = os.getenv("STREAM_TELECOM_SENDER"),
    ca_file = os.getenv("STREAM_TELECOM_CA_FILE"),
    timeout = 10,
    connect_timeout = 3,
  }
  -- A bad option stops nginx at start, not at the first SMS.
  local c, err = st.new(conf)
  if not c then error("streamtelecom: " .. err, 0) end
  c:close()
end

function M.init_worker()
  client = assert(st.new(conf))
end

local function reply(status, value)
  ngx.status = status
  ngx.say(cjson.encode(value))
end

local HTTP_STATUS = { invalid = 400, busy = 503, timeout = 504 }

-- Answers what a send gave: the messages, or nil, err, code.
local function answer(msgs, err, code)
  if msgs then
    return reply(200, { ok = true, messages = msgs })
  end
  return reply(HTTP_STATUS[code] or 502, { ok = false, err = err, code = code })
end

-- to and text from the query string; nil where one is missing.
local function args()
  local a = ngx.req.get_uri_args(20)
  local to, text = a.to, a.text
  if type(to) ~= "string" or type(text) ~= "string" then
    answer(nil, "want ?to=<phone>&text=<text>", "invalid")
    return nil
  end
  return to, text
end

function M.blocking()
  local to, text = args()
  if not to then return end
  return answer(client:send(to, text))
end

function M.thread()
  local to, text = args()
  if not to then return end
  -- Only plain data crosses into the thread's Lua VM: conf, not the client.
  local ok, msgs, err, code = ngx.run_worker_thread("sms", "sms_thread", "send", conf, to, text)
  if not ok then
    -- msgs holds nginx's reason, e.g. "no available Lua vm" (pool exhausted).
    return answer(nil, "worker thread: " .. tostring(msgs), "busy")
  end
  return answer(msgs, err, code)
end

-- A small HTTP/1.1 GET over a cosocket, kept alive in nginx's connection pool.
-- Answers the body of a 2xx answer, or nil, err, code with the library's codes.
-- Nothing here names the URL: it holds the password.
local function fail(sock, what, e)
  if sock then sock:close() end
  local code = e == "timeout" and "timeout" or "network"
  return nil, what .. ": " .. tostring(e), code
end

local function http_get(url)
  local scheme, host, port, path = url:match("^(https?)://([^/:]+):?(%d*)(/.*)$")
  if not scheme then return nil, "gateway URL not understood", "invalid" end
  local tls = scheme == "https"
  port = tonumber(port) or (tls and 443 or 80)

  local sock = ngx.socket.tcp()
  local ms = conf.timeout * 1000
  sock:settimeouts(conf.connect_timeout * 1000, ms, ms)
  local ok, e = sock:connect(host, port, { pool = scheme .. ":" .. host .. ":" .. port })
  if not ok then
    return nil, "cannot connect to the gateway: " .. tostring(e),
           e == "timeout" and "timeout" or "connect"
  end
  if tls and sock:getreusedtimes() == 0 then
    ok, e = sock:sslhandshake(nil, host, true)
    if not ok then
      sock:close()
      return nil, "TLS with the gateway failed: " .. tostring(e), e == "timeout" and "timeout" or "tls"
    end
  end

  local default_port = (tls and port == 443) or (not tls and port == 80)
  ok, e = sock:send("GET " .. path .. " HTTP/1.1\r\nHost: " .. host
                    .. (default_port and "" or ":" .. port)
                    .. "\r\nUser-Agent: streamtelecom-openresty\r\nAccept: */*\r\n\r\n")
  if not ok then return fail(sock, "sending to the gateway failed", e) end

  local line
  line, e = sock:receive("*l")
  if not line then return fail(sock, "reading the gateway's answer failed", e) end
  local status = tonumber(line:match("^HTTP/1%.%d (%d%d%d)"))
  if not status then return fail(sock, "not an HTTP answer", "bad status line") end

  local length, chunked, close
  while true do
    line, e = sock:receive("*l")
    if not line then return fail(sock, "reading the gateway's answer failed", e) end
    if line == "" then break end
    local k, v = line:match("^([^:]+):%s*(.-)%s*$")
    k = k and k:lower()
    if k == "content-length" then length = tonumber(v)
    elseif k == "transfer-encoding" then chunked = v:lower():find("chunked", 1, true) ~= nil
    elseif k == "connection" then close = v:lower() == "close" end
  end

  local body
  if chunked then
    local parts, size = {}, 0
    while true do
      line, e = sock:receive("*l")
      if not line then return fail(sock, "reading the gateway's answer failed", e) end
      local n = tonumber(line:match("^%x+"), 16)
      if not n then return fail(sock, "bad chunked answer", "bad chunk size") end
      if n == 0 then
        repeat -- trailers up to the empty line
          line, e = sock:receive("*l")
          if not line then return fail(sock, "reading the gateway's answer failed", e) end
        until line == ""
        break
      end
      size = size + n
      if size > MAX_ANSWER then sock:close(); return nil, "gateway answer too large", "too_large" end
      local chunk
      chunk, e = sock:receive(n)
      if not chunk then return fail(sock, "reading the gateway's answer failed", e) end
      parts[#parts + 1] = chunk
      line, e = sock:receive("*l")
      if not line then return fail(sock, "reading the gateway's answer failed", e) end
    end
    body = table.concat(parts)
  elseif length then
    if length > MAX_ANSWER then sock:close(); return nil, "gateway answer too large", "too_large" end
    body, e = sock:receive(length)
    if not body then return fail(sock, "reading the gateway's answer failed", e) end
  else
    -- No length: the body runs to the end of the connection.
    body, e = sock:receive(MAX_ANSWER + 1)
    if not body and e ~= "closed" then return fail(sock, "reading the gateway's answer failed", e) end
    body = body or ""
    if #body > MAX_ANSWER then sock:close(); return nil, "gateway answer too large", "too_large" end
    close = true
  end

  if close then sock:close() else sock:setkeepalive(60000, 16) end
  if status < 200 or status > 299 then
    return nil, "gateway answered HTTP " .. status, "http"
  end
  return body
end

function M.cosocket()
  local to, text = args()
  if not to then return end
  local url, err, code = client:url("send", to, text)
  if not url then return answer(nil, err, code) end
  local body
  body, err, code = http_get(url)
  if not body then return answer(nil, err, code) end
  return answer(st.parse("send", body, to))
end

function M.stats()
  return reply(200, client:stats())
end

-- For the spec and your own checks.
M.http_get = http_get

return M
