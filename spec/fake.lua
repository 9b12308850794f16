-- Test helper: the local FAKE Stream Telecom gateway (fakegw/fakegw) for busted.
--
--   local fake = require("spec.fake")
--   fake.start()                 -- idempotent; fake.url, fake.tls_url, fake.ca_file, ...
--   fake.reset()                 -- knobs and all state back to the seed
--   fake.set{ latency = 0.5 }    -- knobs; fake.set{ body = false } unsets one
--   fake.stats(), fake.sends(), fake.deliver(id, state [, time]), fake.message(id)
--
-- Runs on Lua 5.1-5.4 and LuaJIT; needs LuaSocket and lua-cjson.

local http = require("socket.http")
local socket = require("socket")
local ltn12 = require("ltn12")
local cjson = require("cjson")
local helper = require("spec.helper")

local fake = {}

-- busted reloads this module for every spec file (insulation restores
-- package.loaded), so the one gateway instance lives in the registry, shared
-- by every copy of the module: one nginx for the whole run.
local REGISTRY_KEY = "streamtelecom.spec.fake"
local registry = debug.getregistry()
local inst = registry[REGISTRY_KEY]
if type(inst) ~= "table" then
  inst = { running = false }
  registry[REGISTRY_KEY] = inst
end

local FIELDS = { "url", "tls_url", "ca_file", "dir", "pid", "port", "tls_port", "base" }

local function publish()
  for _, k in ipairs(FIELDS) do fake[k] = inst[k] end
end

local repo_root = require("spec.helper").repo_root

local FAKEGW = repo_root() .. "/fakegw/fakegw"

local shell_quote = helper.shell_quote

local sh, rand, urlencode = helper.unsanitized, helper.rand, helper.urlencode

local function query(params)
  local keys = {}
  for k in pairs(params) do keys[#keys + 1] = k end
  table.sort(keys)
  local out = {}
  for _, k in ipairs(keys) do
    out[#out + 1] = urlencode(k) .. "=" .. urlencode(params[k])
  end
  return table.concat(out, "&")
end

-- One control request; answers the decoded JSON (or raises: the fake is test
-- infrastructure, a failure here is a broken test setup).
local function control(path, params, allow_404)
  if not inst.running then error("fake gateway is not running: call fake.start() first", 3) end
  local url = inst.base .. "/_fake/" .. path
  if params and next(params) then url = url .. "?" .. query(params) end
  local chunks = {}
  local ok, code = http.request{ url = url, sink = ltn12.sink.table(chunks), redirect = false }
  if not ok then error("fake gateway control " .. path .. " failed: " .. tostring(code), 3) end
  local body = table.concat(chunks)
  if code == 404 and allow_404 then return nil end
  if code ~= 200 then
    error("fake gateway control " .. path .. ": HTTP " .. tostring(code) .. " " .. body, 3)
  end
  return cjson.decode(body)
end

local function try_start(port)
  local dir = (os.getenv("TMPDIR") or "/tmp") .. "/streamtelecom-fakegw-spec-"
              .. port .. "-" .. rand(100000, 999999)
  local p = io.popen(sh(shell_quote(FAKEGW) .. " start --port " .. port .. " --dir "
                        .. shell_quote(dir) .. " 2>&1"))
  local out = p:read("*a")
  p:close()
  local info = {}
  for line in out:gmatch("[^\n]+") do
    local k, v = line:match("^(%l[%l_]*)=(.*)$")
    if k then info[k] = v end
  end
  if info.url and info.pid and info.dir then return info end
  -- Whatever happened, leave no daemon behind.
  os.execute(sh(shell_quote(FAKEGW) .. " stop --dir " .. shell_quote(dir) .. " >/dev/null 2>&1"))
  os.execute(sh("rm -rf " .. shell_quote(dir)))
  return nil, out
end

function fake.start()
  if inst.running then
    publish()
    return fake
  end
  local last
  for _ = 1, 10 do
    local port = helper.listen_port(2)
    local info, err = try_start(port)
    if info then
      inst.running = true
      inst.url, inst.tls_url, inst.ca_file = info.url, info.tls_url, info.ca_file
      inst.dir, inst.pid = info.dir, tonumber(info.pid)
      inst.port, inst.tls_port = port, port + 1
      inst.base = "http://127.0.0.1:" .. port
      publish()
      return fake
    end
    last = err
  end
  error("could not start the fake gateway (10 tries): " .. tostring(last), 2)
end

local function stop_instance()
  if not inst.running then return end
  inst.running = false
  local dir = inst.dir
  os.execute(sh(shell_quote(FAKEGW) .. " stop --dir " .. shell_quote(dir) .. " >/dev/null 2>&1"))
  if not os.getenv("FAKEGW_KEEP") then
    os.execute(sh("rm -rf " .. shell_quote(dir)))
  end
  for _, k in ipairs(FIELDS) do inst[k] = nil end
end

function fake.stop()
  stop_instance()
  publish()
end

function fake.running() return inst.running end

function fake.reset() control("reset") end

-- Counters only (stats back to 0, connections forgotten); state and knobs stay.
function fake.reset_stats() control("reset", { what = "stats" }) end

-- Creates or changes an account: fake.account{ user = "u", pwd = "p",
-- balance = 10, blocked = false, senders = { "MyShop" } }.  Answers its record.
function fake.account(a)
  assert(type(a) == "table" and type(a.user) == "string", "fake.account expects { user = ... }")
  local params = { user = a.user, pwd = a.pwd }
  if a.balance ~= nil then params.balance = tostring(a.balance) end
  if a.blocked ~= nil then params.blocked = a.blocked and "1" or "0" end
  if a.senders ~= nil then params.senders = table.concat(a.senders, ",") end
  return control("account", params)
end

-- fake.set{ name = value, ... }: true/false for switches, numbers, strings.
-- A value of false unsets the knob (back to its default).
function fake.set(knobs)
  assert(type(knobs) == "table", "fake.set expects a table")
  local set, unset = {}, {}
  for k, v in pairs(knobs) do
    if v == false then
      unset[k] = ""
    elseif v == true then
      set[k] = "1"
    else
      set[k] = tostring(v)
    end
  end
  local result
  if next(unset) then result = control("unset", unset) end
  if next(set) then result = control("set", set) end
  return result or control("knobs")
end

function fake.knobs() return control("knobs") end

function fake.stats() return control("stats") end

function fake.sends() return control("sends") end

-- Sets a message's state (default "deliver"); time is the text shown after the
-- word with status_time on (default: now).  Answers the message record.
function fake.deliver(id, state, time)
  return control("deliver", { id = tostring(id), state = state or "deliver", time = time }, true)
end

-- The message record ({ id, user, to, sadr, text, parts, cost, state, updated, ... }),
-- or nil for an unknown id.
function fake.message(id)
  return control("message", { id = tostring(id) }, true)
end

-- fake.balance(user) reads, fake.balance(user, 12.5) sets; answers the number.
function fake.balance(user, value)
  local r = control("balance", { user = user, value = value and tostring(value) or nil }, true)
  return r and r.balance
end

function fake.ping() return control("ping") end

-- Polls fn(fake.stats()) until it answers true (or timeout seconds pass):
-- specs wait on counters, never on a fixed sleep.  Answers the last stats.
function fake.wait_for(fn, timeout)
  local deadline = socket.gettime() + (timeout or 5)
  while true do
    local st = fake.stats()
    if fn(st) then return st end
    if socket.gettime() > deadline then return nil, st end
    socket.sleep(0.01)
  end
end

-- Stop at the end of a busted run, and as a last resort when the Lua state
-- closes (the sentinel lives in the registry).  Done once per Lua state.
if not inst.hooked then
  inst.hooked = true
  local ok, busted = pcall(require, "busted")
  if ok and type(busted) == "table" then
    local ok2, subscribe = pcall(function() return busted.subscribe end)
    if ok2 and type(subscribe) == "function" then
      subscribe({ "suite", "end" }, function()
        stop_instance()
        return nil, true
      end)
    end
  end
  local sentinel
  if newproxy then
    sentinel = newproxy(true)
    getmetatable(sentinel).__gc = stop_instance
  else
    sentinel = setmetatable({}, { __gc = stop_instance })
  end
  inst.sentinel = sentinel
end

if inst.running then publish() end

return fake
