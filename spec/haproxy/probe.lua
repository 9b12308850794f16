-- Loaded beside examples/haproxy/sms.lua by spec/haproxy_spec.lua: GET
-- /probe?op=send|status|balance|send_many|status_many|wait&client=relay|dead&...
-- runs one call of streamtelecom.haproxy inside an HAProxy service and answers
-- its three values and the client's stats as JSON.
-- Every sleep and log line of the module, counted (op=seen answers and
-- resets them): never a sleep below 1 ms, no log line per retry.
local seen
local function reset_seen() seen = { sleeps = 0, min_ms = 1e9, fractions = 0, logs = 0 } end
reset_seen()
local function slept(ms)
  seen.sleeps = seen.sleeps + 1
  if ms < seen.min_ms then seen.min_ms = ms end
  if ms % 1 ~= 0 then seen.fractions = seen.fractions + 1 end
end
local msleep, sleep = core.msleep, core.sleep
-- core's functions are wrapped on purpose:
-- luacheck: push ignore 122
core.msleep = function(ms) slept(ms) return msleep(ms) end
core.sleep = function(s) slept(s * 1000) return sleep(s) end
for _, name in ipairs({ "log", "Debug", "Info", "Warning", "Alert" }) do
  local f = core[name]
  core[name] = function(...) seen.logs = seen.logs + 1 return f(...) end
end
-- luacheck: pop

local st = require "streamtelecom.haproxy"
local cjson = require "cjson"

local function account(url, retries, concurrency, rate, timeout)
  return assert(st.new{
    user = os.getenv("STREAM_TELECOM_USER"),
    password = os.getenv("STREAM_TELECOM_PASSWORD"),
    sender = "MyShop", url = url, retries = retries, timeout = timeout or 15,
    concurrency = concurrency, rate = rate, max_response = 4096,
  })
end

local clients = {
  relay = account("http://" .. os.getenv("SMS_RELAY") .. "/get/"),
  -- A relay whose server refuses every connection.
  dead = account("http://" .. os.getenv("SPEC_DEAD_RELAY") .. "/get/", 0),
  -- A relay that gives the gateway half a second to answer.
  slow = account("http://" .. os.getenv("SPEC_SLOW_RELAY") .. "/get/"),
  -- A relay that cannot verify the gateway's certificate.
  badca = account("http://" .. os.getenv("SPEC_BADCA_RELAY") .. "/get/", 0),
  -- A gateway that cuts its answers short (spec/haproxy/cut_server.lua).
  cut_length = account("http://" .. os.getenv("SPEC_CUT") .. "/length/"),
  cut_chunked = account("http://" .. os.getenv("SPEC_CUT") .. "/chunked/"),
  -- 100 requests a second at most: the engine asks for rate waits.
  rated = account("http://" .. os.getenv("SMS_RELAY") .. "/get/", nil, 10, 100),
  -- A dead relay, retried: backoffs between the tries.
  dead_retry = account("http://" .. os.getenv("SPEC_DEAD_RELAY") .. "/get/", 2),
  -- The fake itself, no relay (core.tcp() straight to it), answering in
  -- half a second at most.
  direct = account(os.getenv("SPEC_FAKE_URL"), 2, nil, nil, 0.5),
  -- Nothing listens there.
  refused = account("http://127.0.0.1:" .. os.getenv("SPEC_CLOSED_PORT") .. "/get/", 2),
  -- The same behind a relay at [::1], through the httpclient (no IPv6
  -- loopback: nil).
  cut6 = os.getenv("SPEC_CUT6") and account("http://" .. os.getenv("SPEC_CUT6") .. "/length/"),
  -- 50 requests at once.
  wide = account("http://" .. os.getenv("SMS_RELAY") .. "/get/", nil, 50),
}

local function unescape(s)
  return (s:gsub("+", " "):gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

local CALLS = {
  send = function(c, a) return c:send(a.to, a.text) end,
  status = function(c, a) return c:status(a.id) end,
  balance = function(c) return c:balance() end,
  send_many = function(c, a)
    local items = {}
    for to in a.to:gmatch("[^,]+") do items[#items + 1] = { to = to, text = a.text } end
    return c:send_many(items)
  end,
  -- n sends to one number, each text its own ("Bulk 1".."Bulk n").
  send_n = function(c, a)
    local items = {}
    for i = 1, tonumber(a.n) do items[i] = { to = a.to, text = a.text .. " " .. i } end
    return c:send_many(items)
  end,
  status_many = function(c, a)
    local ids = {}
    for id in a.id:gmatch("[^,]+") do ids[#ids + 1] = id end
    return c:status_many(ids)
  end,
  wait = function(c, a)
    local ids = {}
    for id in a.id:gmatch("[^,]+") do ids[#ids + 1] = id end
    return c:wait(ids, { timeout = tonumber(a.timeout), interval = 1 })
  end,
}

-- send_n where HAProxy refuses every task (as a context that cannot start
-- them would): answers whether it raised, and what.
CALLS.no_tasks = function(c, a)
  local register_task = core.register_task
  core.register_task = function() error("no tasks here") end -- luacheck: ignore 122
  local ok, err = pcall(CALLS.send_n, c, a)
  core.register_task = register_task -- luacheck: ignore 122
  return { raised = not ok, err = tostring(err) }
end

CALLS.seen = function()
  local out = seen
  reset_seen()
  return out
end

-- op=in_task&inner=OP...: runs OP in a task of its own (core.register_task)
-- and answers what it gave: the same call from a task.
CALLS.in_task = function(c, a)
  local out
  core.register_task(function()
    a.op = a.inner
    out = table.pack(pcall(CALLS[a.inner], c, a))
  end)
  while not out do core.msleep(5) end
  if not out[1] then error(out[2], 0) end
  return out[2], out[3], out[4]
end

-- Options HAProxy takes care of, bad values, and a closed client.
CALLS.misc = function()
  local out = {}
  local base = { user = "rich", password = os.getenv("STREAM_TELECOM_PASSWORD"),
                 url = "http://" .. os.getenv("SMS_RELAY") .. "/get/" }
  local function with(k, v)
    local o = {}
    for key, val in pairs(base) do o[key] = val end
    o[k] = v
    return o
  end
  for _, case in ipairs({ { "verify", false }, { "ca_file", "/tmp/ca.pem" },
                          { "timeout", "5" }, { "retries", -1 }, { "sendr", "x" },
                          { "user_agent", "a\nb" } }) do
    local c, err, code = st.new(with(case[1], case[2]))
    out[case[1]] = { ok = c ~= nil, err = err, code = code }
  end
  out.verify_true = st.new(with("verify", true)) ~= nil
  out.raises = not pcall(st.new, "opts")
  local c = assert(st.new(base))
  local function raised(f, ...)
    local ok, err = pcall(f, c, ...)
    return not ok and tostring(err) or nil
  end
  out.type_errors = { send = raised(c.send, nil, "x"), status = raised(c.status, {}),
                      send_many = raised(c.send_many, 5), wait = raised(c.wait, "1") }
  local _, werr, wcode = c:wait({ "1" }, { interval = -1 })
  out.wait = { err = werr, code = wcode }
  out.close = c:close()
  local r, err, code = c:send("79031234567", "after close")
  out.after_close = { ok = r ~= nil, err = err, code = code }
  _, _, out.balance_after_close = c:balance()
  out.tostring = tostring(c)
  return out
end

core.register_service("probe", "http", function(applet)
  local a = {}
  for k, v in (applet.qs or ""):gmatch("([^&=]+)=([^&]*)") do a[unescape(k)] = unescape(v) end
  local c = clients[a.client or "relay"]
  local t0 = core.now()
  local r, err, code = CALLS[a.op](c, a)
  local t1 = core.now()
  local body = cjson.encode{ r = r or cjson.null, err = err, code = code, stats = c:stats(),
                             seconds = (t1.sec - t0.sec) + (t1.usec - t0.usec) / 1e6,
                             tostring = tostring(c) }
  applet:set_status(200)
  applet:add_header("content-type", "application/json")
  applet:add_header("content-length", tostring(#body))
  applet:start_response()
  applet:send(body)
end)
