-- examples/haproxy/sms.lua: GET /sms?to=79031234567&text=Hi sends one SMS
-- through streamtelecom.haproxy and answers JSON:
--   200 { "ok": true, "messages": [{ "to": "...", "id": "..." }] }
--   400 (invalid input) or 502 { "ok": false, "err": "...", "code": "..." }
--
-- Loaded by haproxy.cfg (lua-load). One client for the process: it opens no
-- connection of its own, and each request to /sms drives its own run.
-- Never the blocking `require "streamtelecom"` client here: a blocking call
-- holds HAProxy's Lua lock and its watchdog kills the process.

local st = require "streamtelecom.haproxy"

local client = assert(st.new{
  user = os.getenv("STREAM_TELECOM_USER"),
  password = os.getenv("STREAM_TELECOM_PASSWORD"),
  sender = os.getenv("STREAM_TELECOM_SENDER") or "MyShop",
  -- The local relay of haproxy.cfg, which forwards to the gateway.
  url = "http://" .. assert(os.getenv("SMS_RELAY")) .. "/get/",
  timeout = 15,
})

-- Just enough JSON for flat records and lists of them.
local function json(v)
  local t = type(v)
  if t == "table" then
    local out = {}
    if #v > 0 or next(v) == nil then
      for i = 1, #v do out[i] = json(v[i]) end
      return "[" .. table.concat(out, ",") .. "]"
    end
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = k end
    table.sort(keys)
    for i, k in ipairs(keys) do out[i] = json(tostring(k)) .. ":" .. json(v[k]) end
    return "{" .. table.concat(out, ",") .. "}"
  elseif t == "string" then
    return '"' .. v:gsub('[%c"\\]', function(c)
      return string.format("\\u%04x", c:byte())
    end) .. '"'
  end
  return tostring(v)
end

local function unescape(s)
  return (s:gsub("+", " "):gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

local function query(qs)
  local args = {}
  for k, v in (qs or ""):gmatch("([^&=]+)=([^&]*)") do args[unescape(k)] = unescape(v) end
  return args
end

local function reply(applet, status, value)
  local body = json(value) .. "\n"
  applet:set_status(status)
  applet:add_header("content-type", "application/json")
  applet:add_header("content-length", tostring(#body))
  applet:start_response()
  applet:send(body)
end

core.register_service("sms", "http", function(applet)
  local args = query(applet.qs)
  if not args.to or not args.text then
    return reply(applet, 400, { ok = false, err = "want ?to=...&text=...", code = "invalid" })
  end
  local msgs, err, code = client:send(args.to, args.text)
  if not msgs then
    return reply(applet, code == "invalid" and 400 or 502, { ok = false, err = err, code = code })
  end
  reply(applet, 200, { ok = true, messages = msgs })
end)
