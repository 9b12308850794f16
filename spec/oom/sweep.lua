-- The out-of-memory sweep, run by spec/oom/oomhost (see spec/oom_spec.lua):
--
--   oomhost spec/oom/sweep.lua URL [--user U] [--password P] [--only NAME]
--                                  [--every K] [--report N]
--   oomhost spec/oom/sweep.lua --list      the names of the calls swept
--
-- URL is the fake gateway's /get/ URL (default: $STREAMTELECOM_OOM_URL).
-- For every call of the API and every allocation point n = 1, 2, ... of
-- that call: oom.arm(n), make the call under pcall, oom.disarm(). Where the
-- failure fired, the call must have raised "not enough memory" or answered
-- (normally, or nil, message, code); then, with the allocator disarmed, the
-- same client must still work: the next call of the same kind succeeds (not
-- "busy", not stuck). A call's sweep ends at the first n at which nothing
-- failed, i.e. once n passes the allocations the call makes. The clients
-- have an on_request callback, so the glue that calls it is swept too.
--
-- Prints one line per call (allocation points swept, failures), one line
-- per failure (the first --report of each call, default 3), and returns 0
-- when nothing failed, 1 otherwise (oomhost turns that into its exit
-- status). --every K sweeps only every K-th point (for slow runs under
-- valgrind); --only NAME sweeps that one call (a name --list prints);
-- --callback off makes clients without on_request (to tell the callback
-- glue's faults from the others').
-- Leaks are not seen here: run the host under ASan or valgrind for those.

local st -- the module, loaded by main() (--list needs no module)

local opts = { user = "rich", password = "p&ss=w%rd+?", every = 1, report = 3 }
do
  local i = 1
  while arg[i] do
    local a = arg[i]
    local key = a:match("^%-%-(%a+)$")
    if key == "list" then
      opts.list = true
      i = i + 1
    elseif key then
      opts[key] = arg[i + 1]
      i = i + 2
    else
      opts.url = a
      i = i + 1
    end
  end
  opts.url = opts.url or os.getenv("STREAMTELECOM_OOM_URL")
  opts.every = tonumber(opts.every) or 1
  opts.report = tonumber(opts.report) or 3
  if not opts.url and not opts.list then
    io.stderr:write("usage: oomhost sweep.lua URL [--user U] [--password P]"
                    .. " [--only NAME] [--every K] [--report N] [--callback off]\n")
    return 2
  end
end

local NOMEM = "not enough memory"
-- The host fails the module's C heap (oomhost built with OOMHOST_C_HEAP):
-- each point then runs on a client made for it, since a warm client keeps
-- its C memory (slots, task, transfers) from call to call and would
-- allocate nothing; and out of memory in the core is never told as a
-- network failure or a bad argument.
local C_HEAP = oom.heap == "c"
local PHONE1, PHONE2, PHONE3 = "79031234567", "+7 916 123-45-67", "79261234567"

-- Every text differs, also from run to run, so the fake never answers
-- Flood SMS.
local run_id
do
  local f = io.open("/dev/urandom", "rb")
  local bytes = f and f:read(6) or ""
  if f then f:close() end
  run_id = string.format("%x", os.time()) .. bytes:gsub(".", function(ch)
    return string.format("%02x", ch:byte())
  end)
end
local seq = 0
local function text()
  seq = seq + 1
  return "oom sweep " .. run_id .. " " .. seq
end

-- The on_request callback allocates (a string, a table slot), so the
-- failure also lands inside it; its own errors are the binding's to catch.
local exchanges = { n = 0 }
local function on_request(info)
  exchanges.n = exchanges.n + 1
  exchanges[exchanges.n % 16 + 1] = info.call .. " " .. tostring(info.http_status)
                                    .. " " .. tostring(info.code)
end

local function client_options(extra)
  local o = {
    user = opts.user, password = opts.password, sender = "MyShop", url = opts.url,
    timeout = 10, connect_timeout = 5, verify = true,
    ca_file = "/etc/ssl/certs/ca-certificates.crt", ca_path = "/etc/ssl/certs",
    user_agent = "streamtelecom-oom-sweep", retries = 0, concurrency = 4,
    max_response = 65536, rate = 100000,
    on_request = opts.callback ~= "off" and on_request or nil,
  }
  for k, v in pairs(extra or {}) do o[k] = v end
  return o
end

local function new_client()
  local c, err, code = st.new(client_options())
  if not c then error("st.new failed unarmed: " .. tostring(err) .. " " .. tostring(code)) end
  return c
end

-- A driven client (made once) and a driver that answers every job from a
-- canned body: a send gets one id per recipient, a status "deliver".
local driven_core
local function driven()
  if not driven_core then
    driven_core = assert(st._driven(client_options()))
  end
  return driven_core
end

local function canned(url)
  if url:find("&smsid=", 1, true) then return "deliver" end
  if url:find("&balance=1", 1, true) then return "100.5" end
  local dadr = url:match("&dadr=([^&]*)") or ""
  local ids = { "1000000001" }
  for _ in dadr:gmatch("%%2C") do ids[#ids + 1] = "100000000" .. (#ids + 1) end
  return table.concat(ids, ",")
end

-- The same, with the framing in C: next_request's bytes, answer_http's parser.
local function drive_framed(run, err, code)
  if not run then return nil, err, code end
  local parser = st._http_response(1000)
  while true do
    local what, job, request = run:next_request("oom")
    if what == "start" then
      local body = canned(request)
      parser:reset()
      assert(parser:feed("HTTP/1.1 200 OK\r\nContent-Length: " .. #body .. "\r\n\r\n" .. body)
             == "done")
      run:answer_http(job, parser)
    elseif what == "wait" and not job then
      error("the canned driver has nothing in flight to wait for")
    elseif what == "done" then
      return run:result()
    end
  end
end

local function drive(run, err, code)
  if not run then return nil, err, code end
  while true do
    local what, job, url = run:next()
    if what == "start" then
      run:answer(job, 200, canned(url))
    elseif what == "wait" and not job then -- answers all come at once
      error("the canned driver has nothing in flight to wait for")
    elseif what == "done" then
      return run:result()
    end -- else a wait for the rate (10 us here): ask again
  end
end

-- ---- what a normal answer looks like ------------------------------------

local function is_send(r, n)
  if type(r) ~= "table" or #r ~= n then return false end
  for i = 1, n do
    if type(r[i]) ~= "table" or type(r[i].to) ~= "string" or type(r[i].id) ~= "string" then
      return false
    end
  end
  return true
end

local function is_status(r)
  return type(r) == "table" and type(r.state) == "string" and type(r.raw) == "string"
         and type(r.final) == "boolean"
end

local function is_map(r, ids, final)
  if type(r) ~= "table" then return false end
  for _, id in ipairs(ids) do
    if not is_status(r[id]) then return false end
    if final and not r[id].final then return false end
  end
  return true
end

local function is_string(r) return type(r) == "string" and #r > 0 end

-- ---- the calls ------------------------------------------------------------
-- name; prep() builds the arguments before arming (nothing of the sweep's
-- own allocates inside the armed window but the call); run(client, args);
-- ok(results...) says whether an answer is the normal one. Arguments differ
-- from call to call where they can, so that a result string is never one
-- the warm-up call already made (Lua 5.1 interns every string: an equal
-- string would take no allocation).
-- fresh: a new client for every point (close); client = false: no client.

local final_ids -- ids the fake already reports as final (set up in main)

local CALLS = {
  { name = "st.new", client = false,
    prep = function()
      return client_options{ proxy = "http://127.0.0.1:9/", rate = 50 }
    end,
    run = function(_, o)
      local c, e, code = st.new(o)
      if c then c:close() end
      return c ~= nil and "client" or nil, e, code
    end,
    ok = function(r) return r == "client" end },
  { name = "send(one)",
    prep = function() return { PHONE1, text() } end,
    run = function(c, a) return c:send(a[1], a[2]) end,
    ok = function(r) return is_send(r, 1) end },
  { name = "send(list, opts)",
    prep = function()
      return { { PHONE1, PHONE2, PHONE3 }, text(),
               { sender = "MyShop", callback_url = "https://example.com/cb?a=1",
                 name = "oom" } }
    end,
    run = function(c, a) return c:send(a[1], a[2], a[3]) end,
    ok = function(r) return is_send(r, 3) end },
  { name = "send(comma string)",
    prep = function() return { PHONE1 .. "," .. PHONE3, text() } end,
    run = function(c, a) return c:send(a[1], a[2]) end,
    ok = function(r) return is_send(r, 2) end },
  { name = "send_many",
    prep = function()
      return { { to = PHONE1, text = text() },
               { to = { PHONE2, PHONE3 }, text = text(), sender = "MyShop" },
               { to = PHONE3, text = text(), callback_url = "https://example.com/cb",
                 name = "oom" } }
    end,
    run = function(c, items) return c:send_many(items) end,
    ok = function(r)
      return type(r) == "table" and is_send(r[1], 1) and is_send(r[2], 2)
             and is_send(r[3], 1)
    end },
  { name = "send_many(callbacks)",
    prep = function()
      return { { to = PHONE1, text = text() }, { to = { PHONE2, PHONE3 }, text = text() } }
    end,
    run = function(c, items)
      local seen = {}
      return c:send_many(items, {
        on_start = function(i, item) seen[i] = item; return #seen end,
        on_result = function(i, r) seen[i] = r; return #seen end,
      })
    end,
    ok = function(r)
      return type(r) == "table" and is_send(r[1], 1) and is_send(r[2], 2)
    end },
  { name = "status",
    prep = function() return final_ids[1] end,
    run = function(c, id) return c:status(id) end,
    ok = function(r) return is_status(r) and type(r.id) == "string" end },
  { name = "status_many",
    prep = function() return { final_ids[1], final_ids[2], final_ids[3] } end,
    run = function(c, ids) return c:status_many(ids) end,
    ok = function(r) return is_map(r, final_ids, false) end },
  { name = "status_many(on_result)",
    prep = function() return { final_ids[1], final_ids[2], final_ids[3] } end,
    run = function(c, ids)
      local seen = {}
      return c:status_many(ids, { on_result = function(id, r) seen[id] = r; return next(seen) end })
    end,
    ok = function(r) return is_map(r, final_ids, false) end },
  { name = "wait",
    prep = function()
      return { { final_ids[1], final_ids[2], final_ids[3] }, { timeout = 5, interval = 0 } }
    end,
    run = function(c, a) return c:wait(a[1], a[2]) end,
    ok = function(r) return is_map(r, final_ids, true) end },
  { name = "balance",
    run = function(c) return c:balance() end,
    ok = function(r) return type(r) == "table" and type(r.balance) == "number" end },
  -- The driver interface (docs/DRIVERS.md), driven by canned answers: no
  -- network, only the module's own paths.
  { name = "driven(balance)",
    run = function() return drive(driven():_begin("balance")) end,
    ok = function(r) return type(r) == "table" and r.balance == 100.5 end },
  { name = "driven(send_many)",
    prep = function()
      return { { to = PHONE1, text = text() }, { to = { PHONE2, PHONE3 }, text = text() } }
    end,
    run = function(_, items)
      local seen = {}
      return drive(driven():_begin("send_many", items, {
        on_result = function(i, r) seen[i] = r; return #seen end }))
    end,
    ok = function(r) return type(r) == "table" and is_send(r[1], 1) and is_send(r[2], 2) end },
  -- Its callbacks attack the run (its own next and close: refused) and
  -- close its core, at every allocation point: the core is freed once the
  -- run ends, nothing under the engine's feet.
  { name = "driven(send_many, attacked)",
    prep = function() return { { to = PHONE1, text = text() }, { to = PHONE2, text = text() } } end,
    run = function(_, items)
      local core = assert(st._driven(client_options()))
      local run
      local function attack()
        pcall(run.next, run)
        pcall(run.close, run)
      end
      local err, code
      run, err, code = core:_begin("send_many", items, {
        on_start = attack,
        on_result = function() attack(); core:close() end })
      return drive(run, err, code)
    end,
    ok = function(r)
      return type(r) == "table" and is_send(r[1], 1)
             and (is_send(r[2], 1) or (type(r[2]) == "table" and r[2].code == "closed"))
    end },
  { name = "driven(status_many)",
    prep = function() return { "1000000001", "1000000002" } end,
    run = function(_, ids) return drive(driven():_begin("status_many", ids)) end,
    ok = function(r)
      return type(r) == "table" and type(r["1000000001"]) == "table"
             and r["1000000001"].state == "delivered"
    end },
  { name = "driven(wait)",
    prep = function() return { "1000000001", "1000000002" } end,
    run = function(_, ids) return drive(driven():_begin("wait", ids, { timeout = 5 })) end,
    ok = function(r)
      return type(r) == "table" and type(r["1000000002"]) == "table"
             and r["1000000002"].final == true
    end },
  { name = "driven(next_request)",
    prep = function() return { "1000000001" } end,
    run = function(_, ids) return drive_framed(driven():_begin("status_many", ids)) end,
    ok = function(r)
      return type(r) == "table" and type(r["1000000001"]) == "table"
             and r["1000000001"].state == "delivered"
    end },
  { name = "url(send)",
    prep = function() return { { PHONE1, PHONE2 }, "Привет, " .. text(), { name = "oom" } } end,
    run = function(c, a) return c:url("send", a[1], a[2], a[3]) end,
    ok = is_string },
  { name = "url(status)",
    prep = function() text(); return tostring(1000000000 + seq) end,
    run = function(c, id) return c:url("status", id) end,
    ok = is_string },
  { name = "url(balance)",
    run = function(c) return c:url("balance") end,
    ok = is_string },
  { name = "_scan_rows (a campaign's rows, kept items)",
    prep = function()
      return table.concat({ "79031234567,a\n", "79261234567,б\n", "79161234567,c\n" })
    end,
    run = function(c, s)
      local starts, first_of, kept = {}, {}, {}
      local _, _, n = c:_scan_rows(s, 1, 2, 0, ",", #s + 1, { 2, 1, 2, 0, 0, 0 }, starts,
                                   first_of, kept, 2)
      return n == 3 and kept[2].text == "б" and not kept[3] and starts[3] == 30 and first_of
    end,
    ok = function(r) return type(r) == "table" end },
  { name = "st._csv_items", client = false,
    prep = function() return "79031234567,a\n79261234567,б\n" end,
    run = function(_, s)
      local items = {}
      local made = st._csv_items(s, ",", { 2, 1, 2, 0, 0, 0 }, { 1, 15 }, { 2, 1 }, 1, 2, items)
      return made == 2 and items[1].text == "б" and items
    end,
    ok = function(r) return type(r) == "table" end },
  { name = "st._journal_line", client = false,
    prep = function() text(); return tostring(79030000000 + seq) end, -- a new string each
    run = function(_, to) return st._journal_line(7, to, "1000000001") end,
    ok = is_string },
  { name = "st.parse(send)", client = false,
    prep = function() return { "1000000001,1000000002\r\n", { PHONE1, PHONE2 } } end,
    run = function(_, a) return st.parse("send", a[1], a[2]) end,
    ok = function(r) return is_send(r, 2) end },
  { name = "st.parse(send, no extra)", client = false,
    run = function() return st.parse("send", "1000000001, 1000000002, 1000000003") end,
    ok = function(r)
      return type(r) == "table" and #r == 3 and type(r[3]) == "table" and r[3].id == "1000000003"
    end },
  { name = "st.parse(status)", client = false,
    run = function() return st.parse("status", "deliver 2026-01-01 10:00:00", "1000000001") end,
    ok = function(r) return is_status(r) and r.final == true end },
  { name = "st.parse(balance)", client = false,
    run = function() return st.parse("balance", "100,01 RUR") end,
    ok = function(r) return type(r) == "table" and r.currency == "RUR" end },
  { name = "st.segments", client = false,
    run = function() return st.segments("Привет, мир! Hello {world}") end,
    ok = function(r) return type(r) == "table" and r.encoding == "ucs2" end },
  { name = "stats",
    run = function(c) return c:stats() end,
    ok = function(r) return type(r) == "table" and type(r.failures) == "table" end },
  { name = "tostring",
    run = function(c) return tostring(c) end,
    ok = function(r) return is_string(r) and r:find("streamtelecom.client", 1, true) ~= nil end },
  { name = "close", fresh = true,
    run = function(c) return c:close() end,
    ok = function(r) return r == true end },
}

-- ---- the sweep ------------------------------------------------------------

local function describe(ok, a, b, c)
  if not ok then return "raised " .. string.format("%q", tostring(a)) end
  if a == nil then
    return string.format("answered nil, %q, %q", tostring(b), tostring(c))
  end
  if type(a) == "table" then -- a map or list of records: the first odd one
    for k, v in pairs(a) do
      if type(v) == "table" and v.code then
        return "answered a table with " .. tostring(k) .. " = { err = " .. tostring(v.err)
               .. ", code = " .. tostring(v.code) .. " }"
      end
    end
  end
  return "answered " .. tostring(a)
end

-- Runs f with the n-th allocation failing; answers fired, count, ok,
-- results. The collector is stopped from just before warm() until f has
-- run: warm() (a call of the same kind, unarmed) first brings Lua's own
-- call frames and stack back to the size the call needs (a collection
-- shrinks them), so that the allocations counted are those of the call and
-- of the module, in the same order from one n to the next. Lua's emergency
-- collection on a failed allocation still runs.
local function window(n, f)
  if n then oom.arm(n) end
  local ok, a, b, c = pcall(f)
  oom.disarm()
  return ok, a, b, c
end

local function armed(n, f, warm)
  collectgarbage()
  collectgarbage("stop")
  if warm then pcall(window, nil, warm) end -- at the depth of the armed call
  local hok, ok, a, b, c = pcall(window, n, f)
  oom.disarm()
  collectgarbage("restart")
  if not hok then ok, a = false, ok end -- it hit the sweep's own frame
  return oom.failed(), oom.count(), ok, a, b, c
end

local function sweep(call)
  local client = call.client ~= false and not call.fresh and new_client() or nil
  local points, failures, lines = 0, 0, {}
  local function fail(n, what)
    failures = failures + 1
    if #lines < opts.report then
      lines[#lines + 1] = string.format("FAIL %s, allocation %d: %s", call.name, n, what)
    end
  end
  local function subject()
    if call.fresh then return new_client() end
    return client
  end
  local function once(n)
    local c = subject()
    local args = call.prep and call.prep() or nil
    local calls_before = exchanges.n
    local wc = (call.fresh or C_HEAP and call.client ~= false) and new_client() or c
    local wargs = call.prep and call.prep() or nil
    local fired, count, ok, a, b, e = armed(n, function() return call.run(c, args) end,
                                            function() return call.run(wc, wargs) end)
    return fired, count, ok, a, b, e, c, exchanges.n - calls_before
  end

  -- Unarmed: the call works, and how many allocations it makes.
  local fired, total, ok, a, b, e, _, hooked = once(math.huge)
  if fired or not ok or not call.ok(a, b, e) then
    fail(0, "unarmed call " .. describe(ok, a, b, e))
    return { name = call.name, points = 0, failures = failures, lines = lines, total = total }
  end
  if opts.callback ~= "off" and call.client ~= false and not call.fresh
     and call.name:find("^send") and hooked == 0 then
    fail(0, "on_request was not called")
  end

  local limit = total * 3 + 100
  local n = 1
  while n <= limit do
    local c
    if C_HEAP and client then
      client:close()
      client = new_client()
    end
    fired, _, ok, a, b, e, c = once(n)
    if not fired then break end -- n passed the call's allocations
    points = points + 1
    local answered = ok and (call.ok(a, b, e) or (a == nil and type(b) == "string"
                                                    and type(e) == "string"))
    if not (answered or (not ok and a == NOMEM)) then
      fail(n, describe(ok, a, b, e))
    elseif C_HEAP and answered and (e == "network" or e == "invalid") then
      fail(n, "out of memory told as " .. e .. ": " .. describe(ok, a, b, e))
    end
    -- The same client, disarmed: the next call of the same kind works.
    local c2 = call.fresh and c or client
    local args = call.prep and call.prep() or nil
    local ok2, a2, b2, e2 = pcall(call.run, c2, args)
    if call.fresh then
      -- after close: closed for good, and a second close is harmless
      local okb, rb, eb, codeb = pcall(c2.balance, c2)
      if not (okb and rb == nil and codeb == "closed") then
        fail(n, "after close, balance " .. describe(okb, rb, eb, codeb))
      end
    elseif not (ok2 and call.ok(a2, b2, e2)) then
      fail(n, "the call " .. describe(ok, a, b, e) .. "; then, disarmed, the next call "
              .. describe(ok2, a2, b2, e2))
      -- That client is broken: go on with a new one to sweep the rest.
      if client then client = new_client() end
    end
    n = n + opts.every
  end
  if n > limit then fail(n, "the sweep did not end: the call allocates without end") end
  if client then client:close() end
  return { name = call.name, points = points, failures = failures, lines = lines, total = total }
end

local function main()
  if opts.list then
    for _, call in ipairs(CALLS) do print(call.name) end
    return 0
  end
  st = require("streamtelecom")
  -- Three messages the fake already reports as final (spec: auto_deliver = 0).
  local c = new_client()
  local sent, err, code = c:send({ PHONE1, PHONE2, PHONE3 }, text())
  if not sent then error("setup send failed: " .. tostring(err) .. " " .. tostring(code)) end
  final_ids = { sent[1].id, sent[2].id, sent[3].id }
  local m = assert(c:status_many(final_ids))
  for _, id in ipairs(final_ids) do
    if not (m[id] and m[id].final) then
      io.stderr:write("warning: message " .. id .. " is not final at the gateway;"
                      .. " start the fake with auto_deliver = 0\n")
      break
    end
  end
  c:close()

  local total_failures, total_points = 0, 0
  for _, call in ipairs(CALLS) do
    if not opts.only or call.name == opts.only then
      local r = sweep(call)
      print(string.format("sweep %-26s %4d allocation points, %d failures",
                          r.name, r.points, r.failures))
      for _, line in ipairs(r.lines) do print("  " .. line) end
      if r.failures > #r.lines then
        print(string.format("  ... and %d more", r.failures - #r.lines))
      end
      total_failures = total_failures + r.failures
      total_points = total_points + r.points
      io.stdout:flush()
    end
  end
  print(string.format("oom sweep (%s): %d allocation points, %d failures",
                      _VERSION, total_points, total_failures))
  return total_failures == 0 and 0 or 1
end

return main()
