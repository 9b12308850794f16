-- The nginx side of spec/resty_spec.lua: locations that call resty.streamtelecom
-- as a user would and answer JSON.
--
--   POST /call  { opts = {...}, method = "send", args = {...}, record = true }
--     -> { res =, err =, code =, calls = <on_request infos>, stats =, name = }
--   POST /timer the same, run in ngx.timer.at(0); GET /timer_result?id= -> the answer
--   GET /ping   a fast answer, to see whether the event loop is free
local cjson = require "cjson.safe"
local st = require "resty.streamtelecom"

local M = {}

local function reply(status, value)
  ngx.status = status
  ngx.header.content_type = "application/json"
  ngx.print(cjson.encode(value))
end

local function read_payload()
  ngx.req.read_body()
  local p = cjson.decode(ngx.req.get_body_data() or "")
  if type(p) ~= "table" then return nil end
  return p
end

-- Runs one payload; answers the table to encode.
local function run(p)
  local calls = {}
  local opts = p.opts or {}
  if p.record then opts.on_request = function(info) calls[#calls + 1] = info end end
  local client, err, code = st.new(opts)
  if not client then return { err = err, code = code, new_failed = true } end
  local out = { name = tostring(client) }
  local method = p.method
  if method == "shared_rate" then
    -- Two clients (two cores), one shared timeline: items go out in parallel.
    local other = assert(st.new(opts))
    local a = ngx.thread.spawn(client.send_many, client, p.args[1])
    local b = ngx.thread.spawn(other.send_many, other, p.args[2])
    local _, ra = ngx.thread.wait(a)
    local _, rb = ngx.thread.wait(b)
    out.res = { ra, rb }
  elseif method == "concurrent" then
    -- args = { n, name }: n calls of one method at once on this one client.
    local threads, results = {}, {}
    for i = 1, p.args[1] do threads[i] = ngx.thread.spawn(client[p.args[2]], client) end
    for i, th in ipairs(threads) do
      local _, res, why, what = ngx.thread.wait(th)
      results[i] = { ok = res ~= nil, err = why, code = what }
    end
    out.res = results
  elseif method == "send_many_callbacks" then
    -- on_start/on_result as a user writes them; raise_at makes on_result raise.
    local events = {}
    local ok, res = pcall(client.send_many, client, p.args[1], {
      on_start = function(i) events[#events + 1] = "start " .. i end,
      on_result = function(i, r)
        events[#events + 1] = "result " .. i .. (r.code and (" " .. r.code) or "")
        if i == p.raise_at then error("stop at " .. i, 0) end
      end,
    })
    out.res, out.raised, out.events = ok and res or nil, not ok and res or nil, events
  elseif method then
    local args = p.args or {}
    if p.close_first then client:close() end
    out.res, out.err, out.code = client[method](client, unpack(args, 1, p.nargs or #args))
  end
  out.calls = calls
  out.stats = client:stats()
  client:close()
  return out
end

function M.call()
  local p = read_payload()
  if not p then return reply(400, { err = "want a JSON payload" }) end
  return reply(200, run(p))
end

function M.timer()
  local p = read_payload()
  if not p then return reply(400, { err = "want a JSON payload" }) end
  local id = tostring(ngx.now()) .. "-" .. math.random(1e9)
  local ok, err = ngx.timer.at(0, function(premature)
    if premature then return end
    local value = run(p)
    value.phase = ngx.get_phase()
    ngx.shared.results:set(id, cjson.encode(value))
  end)
  if not ok then return reply(500, { err = err }) end
  return reply(200, { id = id })
end

function M.timer_result()
  local v = ngx.shared.results:get(ngx.var.arg_id or "")
  if not v then return reply(404, { err = "not yet" }) end
  ngx.status = 200
  ngx.header.content_type = "application/json"
  ngx.print(v)
end

-- Calls balance where cosockets are not available; answers what came back.
function M.no_cosocket(phase_store)
  local client = assert(st.new{ user = "test", password = "secret", url = M.gateway })
  local ok, res, err, code = pcall(client.balance, client)
  client:close()
  phase_store(cjson.encode{ raised = not ok, res = res, err = ok and err or res, code = code })
end

-- Each worker waits for "go" (a rate) in the results dictionary, then sends
-- three messages with a client of its own on the shared rate: two workers,
-- one timeline. "done" counts the workers that finished.
local function send_when_told()
  local deadline = ngx.now() + 120
  while ngx.now() < deadline do
    local rate = ngx.shared.results:get("go")
    if rate then
      local client = assert(st.new{ user = "test", password = "secret", sender = "MyShop",
                                    url = M.gateway, rate = rate, concurrency = 3,
                                    shared_dict = "streamtelecom" })
      local id = ngx.worker.id()
      local items = {}
      for i = 1, 3 do items[i] = { to = ("7903%03d%04d"):format(id, i), text = "w" .. id .. "-" .. i } end
      client:send_many(items)
      client:close()
      ngx.shared.results:incr("done", 1, 0)
      return
    end
    ngx.sleep(0.01)
  end
end

function M.init_worker(gateway, arm)
  M.gateway = gateway
  -- The init_worker phase: no cosockets.
  M.no_cosocket(function(v) ngx.shared.results:set("init_worker", v) end)
  if arm then ngx.timer.at(0, send_when_told) end
end

function M.go()
  ngx.shared.results:set("go", tonumber(ngx.var.arg_rate))
  ngx.say("ok")
end

function M.header_filter()
  M.no_cosocket(function(v) ngx.header["X-Result"] = ngx.encode_base64(v) end)
end

function M.stored()
  local v = ngx.shared.results:get(ngx.var.arg_key or "")
  ngx.header.content_type = "application/json"
  ngx.print(v or "null")
end

return M
