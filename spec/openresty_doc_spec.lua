-- docs/openresty.md's setup as it stands in the page: the fenced blocks marked
-- <!-- paste: nginx.conf --> and <!-- paste: sms.lua --> are written to a
-- directory laid out as the page says (lua/, lib/, logs/, tmp/) and run in
-- Debian's nginx, started as the page starts it, against the fake gateway
-- (the account and STREAM_TELECOM_URL from the environment, as the page
-- reads them). Changed from the page: the listen port only (8080 may be
-- taken), and the module directory when NGINX_MODULES names another.
local fake = require("spec.fake")
local helper = require("spec.helper")
local socket = require("socket")
local cjson = require("cjson")

local shell_quote, capture, sh = helper.shell_quote, helper.capture, helper.unsanitized
local NGINX = os.getenv("NGINX") or "/usr/sbin/nginx"
local MODULES = os.getenv("NGINX_MODULES")

local function read_file(path) return assert(helper.slurp(path), "cannot read " .. path) end
local write_file = helper.write_file

-- The fenced block after <!-- paste: name --> in the Markdown.
local function pasted(markdown, name)
  local block = markdown:match("<!%-%- paste: " .. name:gsub("%p", "%%%0")
                               .. " %-%->\n```[%w]*\n(.-\n)```")
  return assert(block, "docs/openresty.md has no block marked 'paste: " .. name .. "'")
end

if not helper.host_specs_here() then
  describe("docs/openresty.md's setup", function()
    pending("nginx runs its own LuaJIT: tested once, under lua5.4")
  end)
  return
end

describe("docs/openresty.md's setup, pasted", function()
  local dir, port, root

  local function request(method, path, body, content_type)
    local s = assert(socket.tcp())
    s:settimeout(20)
    assert(s:connect("127.0.0.1", port))
    body = body or ""
    assert(s:send(method .. " " .. path .. " HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: "
                  .. (content_type or "application/x-www-form-urlencoded")
                  .. "\r\nContent-Length: " .. #body .. "\r\n\r\n" .. body))
    local data, err, partial = s:receive("*a")
    s:close()
    data = data or partial
    assert(data and data ~= "", "no answer from nginx: " .. tostring(err))
    local status = tonumber(data:match("^HTTP/1%.%d (%d%d%d)"))
    return status, cjson.decode(data:match("\r\n\r\n(.*)$"))
  end

  local function stop()
    local pf = dir and io.open(dir .. "/logs/nginx.pid")
    if pf then
      local pid = pf:read("*n")
      pf:close()
      if pid then os.execute("kill " .. pid .. " 2>/dev/null") end
    end
    if dir and not os.getenv("RESTY_SPEC_KEEP") then
      socket.sleep(0.2) -- sh() execs: one command each
      os.execute(sh("rm -rf " .. shell_quote(dir)))
    end
  end

  lazy_setup(function()
    fake.start()
    local p = assert(io.popen("cd " .. shell_quote(helper.repo_root()) .. " && pwd -P"))
    root = p:read("*l")
    p:close()
    local so = root .. "/build/luajit/streamtelecom.so"
    if not io.open(so) then
      local log = capture("make -s -C " .. shell_quote(root) .. " LUA_VERSION=jit all")
      assert(io.open(so), "make LUA_VERSION=jit failed: " .. log)
    end
    local markdown = read_file(root .. "/docs/openresty.md")
    local conf, app = pasted(markdown, "nginx.conf"), pasted(markdown, "sms.lua")
    for _ = 1, 5 do
      port = helper.listen_port(1)
      -- A folder of this run's own (mktemp): named after the port, it could
      -- be one another user's run left behind (Permission denied).
      dir = helper.capture("mktemp -d " .. shell_quote((os.getenv("TMPDIR") or "/tmp")
                                                    .. "/streamtelecom-doc-spec-XXXXXX")):match("%S+")
      -- The page's layout: mkdir, then the cp lines.
      local d = shell_quote(dir)
      -- (readable by all, as mkdir makes it: the page's nginx.conf, started
      -- as root, has its workers run as nobody)
      os.execute(sh("sh -c " .. shell_quote("chmod 755 " .. d .. " && mkdir -p " .. d .. "/logs "
                    .. d .. "/tmp " .. d .. "/lua " .. d .. "/lib && cp " .. shell_quote(so) .. " "
                    .. d .. "/lib/ && cp -r " .. shell_quote(root .. "/lua/resty") .. " "
                    .. shell_quote(root .. "/lua/streamtelecom") .. " " .. d .. "/lua/")))
      local here, n = conf:gsub("listen 127%.0%.0%.1:8080;", "listen 127.0.0.1:" .. port .. ";")
      assert.equals(1, n)
      if MODULES then here = here:gsub("/usr/lib/nginx/modules/", MODULES .. "/") end
      write_file(dir .. "/nginx.conf", here)
      write_file(dir .. "/lua/sms.lua", app)
      local out = capture("env -u LUA_PATH -u LUA_CPATH -u LUA_INIT STREAM_TELECOM_USER=test"
                          .. " STREAM_TELECOM_PASSWORD=secret STREAM_TELECOM_SENDER=MyShop"
                          .. " STREAM_TELECOM_URL=" .. shell_quote(fake.url) .. " "
                          .. shell_quote(NGINX) .. " -p " .. shell_quote(dir .. "/")
                          .. " -c nginx.conf -e logs/error.log")
      for _ = 1, 50 do
        local s = socket.tcp()
        s:settimeout(0.2)
        local ok = s:connect("127.0.0.1", port)
        s:close()
        if ok then return end
        socket.sleep(0.05)
      end
      stop()
      io.stderr:write("nginx did not start: ", out, "\n")
    end
    error("could not start nginx with docs/openresty.md's configuration")
  end)
  lazy_teardown(function()
    stop()
    fake.stop()
  end)
  before_each(function() fake.reset() end)

  it("sends from the content handler", function()
    local status, msgs = request("POST", "/sms", "to=79031234567&text=Hello")
    assert.equals(200, status)
    local sends = fake.sends()
    assert.equals(1, #sends)
    assert.equals(sends[1].answer, msgs[1].id)
    assert.equals("79031234567", msgs[1].to)
  end)

  it("answers a bad number as the caller's mistake, nothing sent", function()
    local status, r = request("POST", "/sms", "to=abc&text=Hello")
    assert.equals(400, status)
    assert.equals("invalid", r.code)
    assert.equals(0, #fake.sends())
  end)

  it("sends a bulk list, one result per item", function()
    local status, r = request("POST", "/sms/bulk", cjson.encode{
      { to = "79031234567", text = "A" }, { to = "99031234567", text = "B" },
      { to = "79161234567", text = "C" } }, "application/json")
    assert.equals(200, status)
    assert.equals(3, #r)
    assert.is_string(r[1][1].id)
    assert.equals("direction_closed", r[2].code)
    assert.is_string(r[3][1].id)
    assert.equals(3, fake.stats().send_requests) -- the gateway refused the second
  end)

  it("sends from a timer, answering at once", function()
    local status = request("POST", "/sms/later", "to=79031234567&text=Later")
    assert.equals(202, status)
    assert.is_truthy(fake.wait_for(function(s) return s.send_requests == 1 end))
  end)

  it("reads the balance in a timer", function()
    local balance
    for _ = 1, 100 do
      local _, r = request("GET", "/balance")
      balance = r.balance
      if balance then break end
      socket.sleep(0.02)
    end
    assert.is_number(balance)
  end)

  it("leaves nothing above notice in error.log", function()
    helper.settle()
    local lines = {}
    for line in read_file(dir .. "/logs/error.log"):gmatch("[^\n]+") do
      if not line:match("^%S+ %S+ %[notice%]") and not line:match("^%S+ %S+ %[info%]") then
        lines[#lines + 1] = line
      end
    end
    assert.same({}, lines)
  end)
end)
