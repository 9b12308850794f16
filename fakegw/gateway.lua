-- The local FAKE Stream Telecom HTTP GET gateway (runs inside nginx + lua).
--
-- One nginx worker, so all state lives in this module's tables.  Gateway
-- requests arrive on /get/, test control requests on /_fake/...  Control
-- requests never touch the gateway counters.

local cjson = require "cjson"

local M = {}

-- Error sentences, exactly as the gateway sends them.
local E = {
  auth = "Неправильный логин или пароль",
  blocked = "Ваш аккаунт заблокирован",
  closed = "Данное направление закрыто для Вас",
  no_sender = "Нет отправителя",
  no_text = "Нет текста сообщения",
  unknown_sender = "Такого отправителя нет",
  no_phone = "Укажите номер телефона",
  flood = "Flood SMS",
  not_found = "Сообщение с таким ID не принималось",
}
M.ERRORS = E

local PRICE = 150 -- kopecks per SMS part per recipient
local FIRST_ID = 1000000001
local OPEN_PREFIXES = { "7", "375", "380", "49", "44", "1" }

local config = { http_port = 8089, tls_port = 8090 }

-- Balances are kept in kopecks (integers) so that 1.50 * n stays exact.
local function seed_accounts()
  return {
    test = { pwd = "secret", balance = 10000,
             senders = { MyShop = true, Other = true, ["12345"] = true } },
    blocked = { pwd = "secret", blocked = true, balance = 10000,
                senders = { MyShop = true } },
    poor = { pwd = "secret", balance = 0, senders = { MyShop = true } },
    rich = { pwd = "p&ss=w%rd+?", balance = 100000000,
             senders = { MyShop = true } },
  }
end

-- Knob schema: kind of value and default.
local KNOBS = {
  latency = { "number", 0 },
  latency_count = { "count" },
  http_status = { "integer" },
  http_count = { "count" },
  drop = { "bool", false },
  drop_count = { "count" },
  body = { "string" },
  body_count = { "count" },
  oversize = { "integer" },
  oversize_count = { "count" },
  stall = { "number" },
  stall_count = { "count" },
  redirect = { "string" },
  redirect_count = { "count" },
  chunked = { "bool", false },
  ids_sep = { "string", "," },
  bom = { "bool", false },
  trailing_newline = { "bool", false },
  error_case = { "enum", nil, { as_is = true, lower = true, all_lower = true, upper = true } },
  error_dot = { "bool", false },
  balance_format = { "enum", nil,
                     { plain = true, comma = true, currency = true, comma_currency = true } },
  status_time = { "bool", false },
  flood_limit = { "integer", 3 },
  flood_window = { "number", 60 },
  auto_deliver = { "number" },
  auto_state = { "string", "deliver" },
}
local KNOB_ALIASES = { http_status_count = "http_count" }

local S -- all mutable state; see reset()

local function new_stats()
  return {
    requests = 0, send_requests = 0, status_requests = 0, balance_requests = 0,
    other_requests = 0,
    connections = 0, tls_requests = 0, tls_connections = 0, tls_sessions_reused = 0,
    messages = 0, in_flight = 0, max_in_flight = 0,
    dropped = 0, http_errors = 0, redirects = 0, lua_errors = 0,
    last_uri = cjson.null, last_user_agent = cjson.null,
  }
end

local function reset()
  local knobs = {}
  for name, spec in pairs(KNOBS) do knobs[name] = spec[2] end
  S = {
    generation = (S and S.generation or 0) + 1,
    accounts = seed_accounts(),
    knobs = knobs,
    messages = {},      -- id string -> message record
    next_id = FIRST_ID,
    flood = {},         -- user \0 number \0 text -> list of accept times
    sends = {},         -- every send request that passed auth, in order
    stats = new_stats(),
    seen_conn = {},     -- connection serials that carried gateway requests
  }
end
reset()

function M.configure(opts)
  for k, v in pairs(opts or {}) do config[k] = v end
end

-- Helpers -----------------------------------------------------------------

local function first(v)
  if type(v) == "table" then v = v[1] end
  if v == true then v = "" end
  return v
end

local function trim(s)
  return (s:gsub("^%s+", ""):gsub("%s+$", ""))
end

-- The last second formatted: os.date stats /etc/localtime at each call
-- (glibc, TZ unset), a system call every send under load.
local last_second, last_text
local function fmt_time(t)
  local second = math.floor(t)
  if second ~= last_second then
    last_second, last_text = second, os.date("%Y-%m-%d %H:%M:%S", second)
  end
  return last_text
end

local function fmt_money(kop)
  return string.format("%.2f", kop / 100)
end

-- Sleeps that long, unless it is under a millisecond: that would be
-- ngx.sleep(0), whose warning writes the request line, password and all, to
-- the error log.
local function pause(seconds)
  if seconds >= 0.001 then ngx.sleep(seconds) end
end

-- Knob with an optional "<name>_count": true if it applies to this request
-- (and uses up one of the counted requests).
local function consume(name)
  local k = S.knobs
  local v = k[name]
  if v == nil or v == false then return false end
  local count_name = name == "http_status" and "http_count" or name .. "_count"
  local c = k[count_name]
  if c == nil then return true end
  if c <= 0 then return false end
  k[count_name] = c - 1
  return true
end

local UPPER_TO_LOWER, LOWER_TO_UPPER = {}, {}
do
  local function utf8char(cp)
    return string.char(0xC0 + math.floor(cp / 64), 0x80 + cp % 64)
  end
  for cp = 0x410, 0x42F do
    UPPER_TO_LOWER[utf8char(cp)] = utf8char(cp + 0x20)
    LOWER_TO_UPPER[utf8char(cp + 0x20)] = utf8char(cp)
  end
  UPPER_TO_LOWER[utf8char(0x401)] = utf8char(0x451)
  LOWER_TO_UPPER[utf8char(0x451)] = utf8char(0x401)
end

local function cyr_lower(s)
  return (s:lower():gsub("[\208\209][\128-\191]", UPPER_TO_LOWER))
end

local function cyr_upper(s)
  return (s:upper():gsub("[\208\209][\128-\191]", LOWER_TO_UPPER))
end

-- 160/153 chars for ASCII, else 70/67 UTF-8 code points (approximation).
local function count_parts(text)
  local n, single, multi
  if not text:find("[\128-\255]") then
    n, single, multi = #text, 160, 153
  else
    local _, cps = text:gsub("[^\128-\191]", "")
    n, single, multi = cps, 70, 67
  end
  if n <= single then return 1 end
  return math.ceil(n / multi)
end

local function direction_open(number)
  if not number:match("^%d+$") or #number < 10 or #number > 15 then
    return false
  end
  for _, p in ipairs(OPEN_PREFIXES) do
    if number:sub(1, #p) == p then return true end
  end
  return false
end

local function advance(m)
  local after = S.knobs.auto_deliver
  if after and m.state == "send" and not m.manual and ngx.now() - m.created >= after then
    m.state = S.knobs.auto_state or "deliver"
    m.updated = fmt_time(m.created + after)
  end
  return m
end

-- Answers: { kind = "ids"|"balance"|"state"|"error", ... } ----------------

local function render(a)
  local k = S.knobs
  local text
  if a.kind == "ids" then
    text = table.concat(a.ids, k.ids_sep or ",")
  elseif a.kind == "balance" then
    text = fmt_money(a.kop)
    local f = k.balance_format
    if f == "comma" or f == "comma_currency" then text = text:gsub("%.", ",") end
    if f == "currency" or f == "comma_currency" then text = text .. " RUR" end
  elseif a.kind == "state" then
    text = a.state
    if k.status_time then text = text .. " " .. a.updated end
  else
    text = a.text
    local c = k.error_case
    if c == "lower" then
      text = text:gsub("для Вас", "для вас")
    elseif c == "all_lower" then
      text = cyr_lower(text)
    elseif c == "upper" then
      text = cyr_upper(text)
    end
    if k.error_dot then text = text .. "." end
  end
  if k.bom then text = "\239\187\191" .. text end
  if k.trailing_newline then text = text .. "\r\n\r\n" end
  return text
end

-- The plain, variant-free form of an answer (what the sends log records).
local function canonical(a)
  if a.kind == "ids" then return table.concat(a.ids, ",") end
  if a.kind == "balance" then return fmt_money(a.kop) end
  if a.kind == "state" then return a.state end
  return a.text
end

local function err(name) return { kind = "error", text = E[name], code = name } end

local function do_send(acct, user, args)
  local dadr, sadr, text = args.dadr, args.sadr, args.text
  if not dadr or dadr == "" then return err("no_phone") end
  if not sadr or sadr == "" then return err("no_sender") end
  if not acct.senders[sadr] then return err("unknown_sender") end
  if not text or text == "" then return err("no_text") end

  local numbers = {}
  for item in (dadr .. ","):gmatch("([^,]*),") do
    item = trim(item)
    if item ~= "" then numbers[#numbers + 1] = item end
  end
  if #numbers == 0 then return err("no_phone") end
  for _, n in ipairs(numbers) do
    if not direction_open(n) then return err("closed") end
  end

  local parts = count_parts(text)
  local cost = parts * PRICE
  if acct.balance < cost * #numbers then return err("closed") end

  local now = ngx.now()
  local limit, window = S.knobs.flood_limit, S.knobs.flood_window or 60
  if limit and limit > 0 then
    for _, n in ipairs(numbers) do
      local hist = S.flood[user .. "\0" .. n .. "\0" .. text]
      if hist then
        local recent = {}
        for _, t in ipairs(hist) do
          if now - t < window then recent[#recent + 1] = t end
        end
        S.flood[user .. "\0" .. n .. "\0" .. text] = recent
        if #recent >= limit then return err("flood") end
      end
    end
  end

  acct.balance = acct.balance - cost * #numbers
  local ids = {}
  for _, n in ipairs(numbers) do
    local id = string.format("%d", S.next_id)
    S.next_id = S.next_id + 1
    S.messages[id] = {
      id = id, user = user, to = n, sadr = sadr, text = text, parts = parts,
      cost = cost / 100, state = "send", created = now, updated = fmt_time(now),
      callback_url = args.callback_url, name_deliver = args.name_deliver,
    }
    S.stats.messages = S.stats.messages + 1
    local key = user .. "\0" .. n .. "\0" .. text
    local hist = S.flood[key] or {}
    hist[#hist + 1] = now
    S.flood[key] = hist
    ids[#ids + 1] = id
  end
  return { kind = "ids", ids = ids }
end

local function process(args, call)
  local user, pwd = args.user, args.pwd
  local acct = user and S.accounts[user]
  if not acct or pwd == nil or acct.pwd ~= pwd then return err("auth") end
  if acct.blocked then return err("blocked") end

  if call == "balance" then
    return { kind = "balance", kop = acct.balance }
  end

  if call == "status" then
    local m = S.messages[args.smsid or ""]
    if not m or m.user ~= user then return err("not_found") end
    advance(m)
    return { kind = "state", state = m.state, updated = m.updated }
  end

  local rec = {
    user = user, sadr = args.sadr, dadr = args.dadr, text = args.text,
    callback_url = args.callback_url, name_deliver = args.name_deliver,
    time = ngx.now(),
    -- When the request reached nginx, before any latency: make bench
    -- measures the time from send_many() to the first send with it.
    arrived = ngx.req.start_time(),
  }
  S.sends[#S.sends + 1] = rec
  local answer = do_send(acct, user, args)
  rec.answer = canonical(answer)
  rec.accepted = answer.kind == "ids"
  answer.record = rec
  return answer
end

-- Gateway entry point -------------------------------------------------------

local function emit(status, body)
  ngx.status = status
  ngx.header.content_type = "text/plain; charset=utf-8"
  if not S.knobs.chunked then ngx.header.content_length = #body end
  if consume("stall") then
    local half = math.floor(#body / 2)
    ngx.print(body:sub(1, half))
    ngx.flush(true)
    pause(S.knobs.stall)
    ngx.print(body:sub(half + 1))
  else
    ngx.print(body)
  end
end

local function handle_gateway()
  local st = S.stats
  local var = ngx.var
  ngx.ctx.generation = S.generation
  st.requests = st.requests + 1
  st.in_flight = st.in_flight + 1
  if st.in_flight > st.max_in_flight then st.max_in_flight = st.in_flight end
  st.last_uri = var.request_uri
  st.last_user_agent = var.http_user_agent or cjson.null

  local tls = var.https == "on"
  if tls then st.tls_requests = st.tls_requests + 1 end
  local conn = var.connection
  if not S.seen_conn[conn] then
    S.seen_conn[conn] = true
    st.connections = st.connections + 1
    if tls then
      st.tls_connections = st.tls_connections + 1
      if var.ssl_session_reused == "r" then
        st.tls_sessions_reused = st.tls_sessions_reused + 1
      end
    end
  end

  local raw = ngx.req.get_uri_args(1000)
  local args = {}
  for k, v in pairs(raw) do args[k] = first(v) end
  local call
  if args.balance ~= nil then call = "balance"
  elseif args.smsid ~= nil then call = "status"
  else call = "send" end
  st[call .. "_requests"] = st[call .. "_requests"] + 1

  if consume("latency") and S.knobs.latency > 0 then
    -- Counted from the request's arrival, as a remote gateway's would be:
    -- 200 requests read in one burst by this one worker must not each add
    -- the time it took to get to them (the rig's cost, not the gateway's).
    ngx.update_time()
    pause(S.knobs.latency - (ngx.now() - ngx.req.start_time()))
  end

  if consume("redirect") then
    st.redirects = st.redirects + 1
    local target = S.knobs.redirect
    if not target:match("^https?://") then
      target = "http://127.0.0.1:" .. config.http_port .. var.request_uri
    end
    return ngx.redirect(target, 302)
  end

  local answer = process(args, call)
  local rec = answer.record
  -- nginx's connection number: a kept-alive connection's sends share it
  -- (and how long a client took to send again on one).
  if rec then rec.conn = tonumber(conn) end

  if consume("drop") then
    st.dropped = st.dropped + 1
    if rec then rec.http_status = 444 end
    return ngx.exit(444)
  end
  if consume("http_status") then
    local status = S.knobs.http_status
    st.http_errors = st.http_errors + 1
    if rec then rec.http_status = status end
    return emit(status, "fake gateway: HTTP " .. status .. "\n")
  end
  if rec then rec.http_status = 200 end
  local body
  if consume("body") then
    body = S.knobs.body
  elseif consume("oversize") then
    body = string.rep("1", S.knobs.oversize)
  else
    body = render(answer)
  end
  return emit(200, body)
end

-- A Lua error must not reach nginx's error log: nginx appends the request
-- line (with pwd=) to every message it logs for a request.
local function record_error(e)
  local msg = tostring(e):gsub("([?&]pwd=)[^&%s\"]*", "%1***")
  if config.dir then
    local f = io.open(config.dir .. "/lua-errors.log", "a")
    if f then
      f:write(os.date("%Y-%m-%d %H:%M:%S "), msg, "\n")
      f:close()
    end
  end
  S.stats.lua_errors = S.stats.lua_errors + 1
end

function M.gateway()
  local ok, e = xpcall(handle_gateway, debug.traceback)
  if not ok then
    record_error(e)
    if not ngx.headers_sent then
      ngx.status = 500
      ngx.header.content_type = "text/plain"
      ngx.print("fake gateway: internal error (see lua-errors.log)\n")
    end
  end
end

function M.log()
  local ctx = ngx.ctx
  if ctx.generation == S.generation then
    S.stats.in_flight = S.stats.in_flight - 1
  end
end

-- Control endpoints ---------------------------------------------------------

local function json(status, value)
  ngx.status = status
  local body = cjson.encode(value)
  ngx.header.content_type = "application/json"
  ngx.header.content_length = #body
  ngx.print(body)
end

local function json_array(list)
  if #list == 0 then
    ngx.header.content_type = "application/json"
    ngx.header.content_length = 2
    return ngx.print("[]")
  end
  return json(200, list)
end

local function parse_knob(name, value)
  local spec = KNOBS[name]
  if not spec then return nil, "unknown knob: " .. name end
  local kind = spec[1]
  if value == "" then return spec[2], nil, true end -- back to the default
  if kind == "bool" then
    if value == "1" or value == "true" or value == "on" or value == "yes" then return true end
    if value == "0" or value == "false" or value == "off" or value == "no" then return false end
    return nil, name .. ": expected 1/0/true/false"
  elseif kind == "number" or kind == "integer" or kind == "count" then
    local n = tonumber(value)
    if not n or n < 0 or ((kind ~= "number") and n % 1 ~= 0) then
      return nil, name .. ": expected a non-negative " .. (kind == "number" and "number" or "integer")
    end
    return n
  elseif kind == "enum" then
    if not spec[3][value] then return nil, name .. ": unknown value " .. value end
    if value == "as_is" or value == "plain" then return nil end
    return value
  end
  return value -- string
end

local function knobs_json()
  local out = {}
  for name in pairs(KNOBS) do
    local v = S.knobs[name]
    if v ~= nil then out[name] = v end
  end
  return out
end

local function message_json(m)
  local out = {}
  for k, v in pairs(m) do out[k] = v end
  out.manual = nil
  return out
end

local control = {}

function control.ping() json(200, { ok = true }) end

-- /_fake/reset: everything; /_fake/reset?what=stats: counters only.
function control.reset(args)
  if first(args.what) == "stats" then
    S.stats = new_stats()
    S.seen_conn = {}
    S.generation = S.generation + 1 -- requests in flight now are not counted down
  else
    reset()
  end
  json(200, { ok = true })
end

-- /_fake/account?user=&pwd=&balance=&blocked=&senders=a,b  creates or changes one.
function control.account(args)
  local user = first(args.user)
  if not user or user == "" then return json(400, { error = "user: required" }) end
  local acct = S.accounts[user]
  if not acct then
    acct = { pwd = "", balance = 0, senders = {} }
    S.accounts[user] = acct
  end
  local pwd = first(args.pwd)
  if pwd then acct.pwd = pwd end
  local balance = first(args.balance)
  if balance and balance ~= "" then
    local n = tonumber((balance:gsub(",", ".")))
    if not n then return json(400, { error = "balance: expected a number" }) end
    acct.balance = math.floor(n * 100 + 0.5)
  end
  local blocked = first(args.blocked)
  if blocked then acct.blocked = blocked == "1" or blocked == "true" or nil end
  local senders = first(args.senders)
  if senders then
    acct.senders = {}
    for name in senders:gmatch("[^,]+") do acct.senders[name] = true end
  end
  local list = {}
  for name in pairs(acct.senders) do list[#list + 1] = name end
  table.sort(list)
  json(200, { user = user, balance = acct.balance / 100, blocked = acct.blocked == true,
              senders = list })
end

function control.set(args)
  local pending = {}
  for name, value in pairs(args) do
    name = KNOB_ALIASES[name] or name
    if value == true then value = "1" end
    if type(value) == "table" then value = value[#value] end
    local v, e = parse_knob(name, value)
    if e then return json(400, { error = e }) end
    pending[name] = { v }
  end
  -- Values "" in body and ids_sep are meaningful (empty body, no separator).
  for name, box in pairs(pending) do
    local v = box[1]
    local raw = args[name]
    if (name == "body" or name == "ids_sep") and raw == "" then v = "" end
    S.knobs[name] = v
  end
  json(200, knobs_json())
end

function control.unset(args)
  for name in pairs(args) do
    name = KNOB_ALIASES[name] or name
    if not KNOBS[name] then return json(400, { error = "unknown knob: " .. name }) end
    S.knobs[name] = KNOBS[name][2]
  end
  json(200, knobs_json())
end

function control.knobs() json(200, knobs_json()) end

function control.stats() json(200, S.stats) end

function control.sends() json_array(S.sends) end

function control.message(args)
  local m = S.messages[first(args.id) or ""]
  if not m then return json(404, { error = "no such message" }) end
  json(200, message_json(advance(m)))
end

function control.deliver(args)
  local m = S.messages[first(args.id) or ""]
  if not m then return json(404, { error = "no such message" }) end
  local state = first(args.state)
  if not state or state == "" then state = "deliver" end
  m.state = state
  m.manual = true
  local t = first(args.time)
  m.updated = (t and t ~= "") and t or fmt_time(ngx.now())
  json(200, message_json(m))
end

function control.balance(args)
  local user = first(args.user)
  local acct = user and S.accounts[user]
  if not acct then return json(404, { error = "no such user" }) end
  local value = first(args.value)
  if value and value ~= "" then
    local n = tonumber((value:gsub(",", ".")))
    if not n then return json(400, { error = "value: expected a number" }) end
    acct.balance = math.floor(n * 100 + 0.5)
  end
  json(200, { user = user, balance = acct.balance / 100 })
end

function M.control()
  local name = ngx.var.uri:match("^/_fake/([%w_]+)$")
  local handler = name and control[name]
  if not handler then return json(404, { error = "unknown control endpoint" }) end
  local ok, e = xpcall(handler, debug.traceback, ngx.req.get_uri_args(1000))
  if not ok then
    record_error(e)
    if not ngx.headers_sent then json(500, { error = "internal error (see lua-errors.log)" }) end
  end
end

return M
