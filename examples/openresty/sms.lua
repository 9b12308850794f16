-- streamtelecom from nginx: the handlers of examples/openresty/nginx.conf.
--
--   /sms/blocking  client:send() on the worker's own client. Simple, one kept-alive
--                  connection per worker, but the whole worker (every other
--                  request it serves) waits for the gateway.
--   /sms/thread    the same send in a worker thread (ngx.run_worker_thread, see
--                  sms_thread.lua): the event loop stays free.
--   /sms/resty     resty.streamtelecom: the same client API over nginx's
--                  cosockets (lua/resty/streamtelecom.lua). The event loop stays
--                  free, no threads needed, connections kept in nginx's pool.
--
-- Every handler answers JSON: {"ok":true,"messages":[{"to":..,"id":..},..]}
-- or {"ok":false,"err":..,"code":..} with a 4xx/5xx status.
local st = require("streamtelecom")
local resty_st = require("resty.streamtelecom")
local cjson = require("cjson.safe")

local M = {}

local conf    -- st.new options, read from the environment once (init)
local client  -- this worker's client (init_worker)
local resty_conf    -- the same options for resty.streamtelecom (TLS is nginx's)
local resty_client  -- this worker's resty.streamtelecom client (init_worker)

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
  -- resty.streamtelecom verifies TLS with nginx's lua_ssl_trusted_certificate
  -- (nginx.conf), so ca_file is not one of its options.
  resty_conf = {}
  for k, v in pairs(conf) do resty_conf[k] = v end
  resty_conf.ca_file = nil
  -- A bad option stops nginx at start, not at the first SMS.
  local c, err = st.new(conf)
  if not c then error("streamtelecom: " .. err, 0) end
  c:close()
  c, err = resty_st.new(resty_conf)
  if not c then error("resty.streamtelecom: " .. err, 0) end
  c:close()
end

function M.init_worker()
  client = assert(st.new(conf))
  -- Opens nothing yet: cosockets exist only from the first request on.
  resty_client = assert(resty_st.new(resty_conf))
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

function M.resty()
  local to, text = args()
  if not to then return end
  return answer(resty_client:send(to, text))
end

function M.stats()
  return reply(200, client:stats())
end

function M.resty_stats()
  return reply(200, resty_client:stats())
end

return M
