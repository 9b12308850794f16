-- The password stays secret on every failing path.  A child process (the same
-- Lua, the same module through the inherited LUA_CPATH) provokes every error
-- code with a distinctive password and writes what the library gave it to
-- stdout: each message, tostring(client) and every on_request info.  This
-- spec then looks for the password in all of it, raw and percent-encoded, and
-- checks that the library wrote nothing at all to stderr.

local fake = require("spec.fake")
local helper = require("spec.helper")

-- Distinctive, and with characters that need percent-encoding.
local SECRET = "Zq9-UNIQUE-p@ss/w&rd=%+?"
local MARKER = "UNIQUE-p@ss" -- no library text could hold this by chance

local CODES = {
  "auth", "blocked", "direction_closed", "no_sender", "no_text", "unknown_sender",
  "no_phone", "flood", "not_found", "gateway", "invalid", "timeout", "connect",
  "tls", "http", "too_large", "network", "closed",
}

local shell_quote = helper.shell_quote

local function encode(s, hex)
  return (s:gsub("[^%w%-%._~]", function(c) return string.format(hex, c:byte()) end))
end

-- Every form the password could take in a message, URL or log line.
local FORMS = {
  { "raw", SECRET },
  { "percent-encoded", encode(SECRET, "%%%02X") },
  { "percent-encoded (lower case)", encode(SECRET, "%%%02x") },
  { "its distinctive part", MARKER },
  { "its distinctive part, encoded", encode(MARKER, "%%%02X") },
}

local function assert_secret_kept(text, where)
  assert(type(text) == "string", where .. ": want a string, got " .. type(text))
  helper.assert_no_secret(text, SECRET)
  for _, form in ipairs(FORMS) do
    assert(not text:find(form[2], 1, true),
           "password leaked (" .. form[1] .. ") in " .. where .. ": " .. text)
  end
end

-- The child.  arg: secret-free values only; the secret arrives in the
-- environment, as a careful application would pass it.
local CHILD = [==[
local st = require("streamtelecom")
local http = require("socket.http")
local socket = require("socket")

local SECRET = assert(os.getenv("ZQ_SECRET"))
local base, url, tls_url, tls_port, ca_file, other_name = arg[1], arg[2], arg[3], arg[4], arg[5], arg[6]
local PHONE = "79031234567"

local function out(s) io.stdout:write(s) end

local function control(path, params)
  local q = {}
  for k, v in pairs(params or {}) do
    q[#q + 1] = k .. "=" .. tostring(v):gsub("[^%w%-%._~]", function(c)
      return string.format("%%%02X", c:byte())
    end)
  end
  local body, code = http.request(base .. "/_fake/" .. path .. (#q > 0 and "?" .. table.concat(q, "&") or ""))
  assert(code == 200, "fake control " .. path .. ": " .. tostring(code) .. " " .. tostring(body))
end
local function set(knobs) control("set", knobs) end
local function reset_knobs()
  control("unset", { latency = "", http_status = "", drop = "", body = "", oversize = "",
                     redirect = "", stall = "" })
end

local function wait_idle()
  local deadline = socket.gettime() + 10
  repeat
    local body = http.request(base .. "/_fake/stats")
    if body and body:find('"in_flight":0', 1, true) then return end
    socket.sleep(0.01)
  until socket.gettime() > deadline
end

local function record(kind, path, fields)
  out("{ kind = " .. string.format("%q", kind) .. ", path = " .. string.format("%q", path))
  for k, v in pairs(fields) do
    out(", " .. k .. " = " .. (type(v) == "string" and string.format("%q", v) or tostring(v)))
  end
  out(" },\n")
end

-- A client whose every on_request info and tostring() are recorded.
local function client(path, opts)
  local o = { user = "zq_user", password = SECRET, sender = "MyShop", url = url,
              retries = 1, timeout = 5 }
  for k, v in pairs(opts or {}) do
    if v == false then o[k] = nil else o[k] = v end
  end
  o.on_request = function(info)
    local fields = {}
    for k, v in pairs(info) do fields[k] = type(v) == "string" and v or tostring(v) end
    record("info", path, fields)
  end
  local c, err, code = st.new(o)
  if not c then error(path .. ": st.new failed: " .. tostring(err) .. " " .. tostring(code)) end
  record("tostring", path, { shown = tostring(c) })
  return c
end

-- One failing call: its message and code (and the per-recipient records).
local function try(path, c, method, ...)
  local ok, err, code = c[method](c, ...)
  record("result", path, { ok = ok == nil and "nil" or "value", err = err, code = code })
  if type(ok) == "table" then
    for _, m in ipairs(ok) do
      if m.err then record("result", path .. " (record)", { err = m.err, code = m.code }) end
    end
  end
end

local function each_call(path, opts)
  local c = client(path, opts)
  try(path .. ": send", c, "send", PHONE, "Code 1234")
  try(path .. ": status", c, "status", "1000000001")
  try(path .. ": balance", c, "balance")
  wait_idle()
  c:close()
  record("tostring", path .. " (closed)", { shown = tostring(c) })
end

-- Gateway refusals.
each_call("auth", { user = "rich" })
each_call("blocked", { user = "zq_blocked" })
local c = client("direction_closed")
try("direction_closed", c, "send", "99031234567", "Hi")
try("direction_closed (money)", client("money", { user = "zq_poor" }), "send", PHONE, "Hi")
try("no_sender", client("no_sender", { sender = false }), "send", PHONE, "Hi")
try("unknown_sender", client("unknown_sender", { sender = "Stranger" }), "send", PHONE, "Hi")
c = client("flood")
for _ = 1, 3 do c:send(PHONE, "Same text") end
try("flood", c, "send", PHONE, "Same text")
try("not_found", client("not_found"), "status", "42")
set{ body = "Нет текста сообщения" }
try("no_text", client("no_text"), "send", PHONE, "Hi")
set{ body = "Укажите номер телефона" }
try("no_phone", client("no_phone"), "send", PHONE, "Hi")
reset_knobs()

-- Answers that are no result; some echo the request, password and all.
local echoes = {
  { "gateway: garbage", "<html>oops</html>" },
  { "gateway: echoes the raw password", "Bad request from zq_user with pwd=" .. SECRET },
  { "gateway: echoes the request line",
    "400 Bad Request: GET /get/?user=zq_user&pwd=" .. SECRET:gsub("[^%w%-%._~]", function(ch)
      return string.format("%%%02X", ch:byte())
    end) .. "&dadr=" .. PHONE },
}
for _, e in ipairs(echoes) do
  set{ body = e[2] }
  each_call(e[1])
end
reset_knobs()

-- Bad arguments and options.
c = client("invalid")
try("invalid: phone", c, "send", "abc", "Hi")
try("invalid: text", c, "send", PHONE, "bad\0text")
try("invalid: id", c, "status", "12ab")
try("invalid: url", c, "url", "send", "abc", "Hi")
local function new_fails(path, opts)
  local ok, err, code = st.new(opts)
  record("result", path, { ok = ok == nil and "nil" or "value", err = err, code = code })
end
new_fails("invalid: typo'd option holding the password", { user = "zq_user", password = SECRET, pasword = SECRET })
new_fails("invalid: option of the wrong type", { user = "zq_user", password = SECRET, timeout = "5" })
new_fails("invalid: empty user", { user = "", password = SECRET })
new_fails("invalid: bad url", { user = "zq_user", password = SECRET, url = "ftp://" .. SECRET })

-- Transport failures.
set{ latency = 0.3 }
each_call("timeout", { timeout = 0.1 })
reset_knobs()
each_call("connect: refused", { url = "http://127.0.0.1:1/get/" })
each_call("connect: unresolvable", { url = "http://no-such-host.invalid/get/", retries = 0 })
each_call("tls: untrusted certificate", { url = tls_url })
if other_name ~= "" then
  each_call("tls: another host name", { url = "https://" .. other_name .. ":" .. tls_port .. "/get/",
                                        ca_file = ca_file })
end
each_call("tls: https to a plain HTTP port", { url = url:gsub("^http:", "https:") })
set{ http_status = 503 }
each_call("http: 503")
set{ http_status = 404 }
each_call("http: 404")
reset_knobs()
set{ redirect = "1" }
each_call("http: redirect")
reset_knobs()
set{ oversize = 100000 }
each_call("too_large")
reset_knobs()
set{ drop = "1" }
each_call("network: dropped")
reset_knobs()

-- After close.
c = client("closed")
c:close()
try("closed: send", c, "send", PHONE, "Hi")
try("closed: status", c, "status", "1000000001")
try("closed: balance", c, "balance")
try("closed: stats", c, "stats")
try("closed: url", c, "url", "balance")
record("tostring", "closed", { shown = tostring(c) })
c = nil -- luacheck: ignore
collectgarbage()
collectgarbage()
out("{ kind = \"done\", path = \"end\" },\n")
]==]

local function load_chunk(src, name)
  if _VERSION == "Lua 5.1" then
    local f = assert(loadstring(src, name))
    return setfenv(f, {})
  end
  return assert(load(src, name, "t", {}))
end

local function read_file(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

-- A name of this machine for 127.0.0.1 that the fake's certificate lacks.
local function other_name()
  local socket = require("socket")
  local names = { socket.dns.gethostname() }
  local f = io.open("/etc/hosts")
  if f then
    for line in f:lines() do
      local rest = line:match("^%s*127%.0%.0%.1%s+([^#]*)")
      if rest then for name in rest:gmatch("%S+") do names[#names + 1] = name end end
    end
    f:close()
  end
  for _, name in ipairs(names) do
    if name ~= "localhost" and not name:find("^localhost%.")
       and socket.dns.toip(name) == "127.0.0.1" then
      return name
    end
  end
  return ""
end

describe("the password", function()
  local stdout, stderr, records, ok_exit

  lazy_setup(function()
    fake.start()
    fake.reset()
    fake.account{ user = "zq_user", pwd = SECRET, balance = 100, senders = { "MyShop" } }
    fake.account{ user = "zq_blocked", pwd = SECRET, balance = 100, blocked = true,
                  senders = { "MyShop" } }
    fake.account{ user = "zq_poor", pwd = SECRET, balance = 0, senders = { "MyShop" } }
    local script, out_path, err_path = os.tmpname(), os.tmpname(), os.tmpname()
    local f = assert(io.open(script, "w"))
    f:write(CHILD)
    f:close()
    local cmd = "ZQ_SECRET=" .. shell_quote(SECRET) .. " " .. helper.LUA .. " " .. shell_quote(script)
    for _, a in ipairs{ fake.base, fake.url, fake.tls_url, fake.tls_port, fake.ca_file, other_name() } do
      cmd = cmd .. " " .. shell_quote(a)
    end
    local a, b, c = os.execute(cmd .. " >" .. shell_quote(out_path) .. " 2>" .. shell_quote(err_path))
    ok_exit = a == 0 or (a == true and b == "exit" and c == 0)
    stdout, stderr = read_file(out_path), read_file(err_path)
    os.remove(script)
    os.remove(out_path)
    os.remove(err_path)
    local loaded = pcall(function()
      records = load_chunk("return {\n" .. stdout .. "}", "=child")()
    end)
    if not loaded then records = {} end
  end)

  lazy_teardown(function() fake.reset() end)

  it("is provoked on every failing path by a child that runs to the end", function()
    assert.is_true(ok_exit, "the child failed; its stderr:\n" .. stderr)
    assert.truthy(#records > 0, "unreadable child output:\n" .. stdout)
    assert.equals("done", records[#records].kind, "the child stopped early:\n" .. stderr)
  end)

  it("reaches every error code of the API", function()
    local seen = {}
    for _, r in ipairs(records) do
      if r.kind == "result" and r.code then seen[r.code] = true end
    end
    for _, code in ipairs(CODES) do
      assert.truthy(seen[code], "no failing path answered " .. code)
    end
  end)

  it("appears in no returned message", function()
    local n = 0
    for _, r in ipairs(records) do
      if r.kind == "result" then
        if r.ok then assert.equals("nil", r.ok, r.path) end
        assert.is_string(r.err, r.path)
        assert.is_string(r.code, r.path)
        assert_secret_kept(r.err, r.path)
        n = n + 1
      end
    end
    assert.is_true(n >= 40, n .. " messages only")
  end)

  it("appears in no tostring(client), open or closed", function()
    local n = 0
    for _, r in ipairs(records) do
      if r.kind == "tostring" then
        assert.matches("^streamtelecom%.client: ", r.shown)
        assert_secret_kept(r.shown, "tostring of " .. r.path)
        n = n + 1
      end
    end
    assert.is_true(n >= 20, n .. " tostring()s only")
  end)

  it("appears in no on_request info field, and the url shows pwd=***", function()
    local n = 0
    for _, r in ipairs(records) do
      if r.kind == "info" then
        for k, v in pairs(r) do
          assert_secret_kept(v, "on_request " .. k .. " of " .. r.path)
        end
        assert.truthy(r.url:find("pwd=***", 1, true), r.url)
        n = n + 1
      end
    end
    assert.is_true(n >= 40, n .. " on_request calls only")
  end)

  it("appears nowhere in the child's output, and nothing was written to stderr", function()
    assert_secret_kept(stdout, "the child's stdout")
    assert.equals("", stderr)
  end)
end)
