-- The nginx side of bench/resty.lua: each location times a loop inside the
-- worker and answers the seconds it took.
--   /resty?url=&n=   n sequential client:balance() on one resty.streamtelecom client
--   /bare?url=&n=    n keep-alive GETs on a bare cosocket, no library at all
--   /blocking?url=&n= n sequential balance() on the blocking client (libcurl)
--   /many?url=&n=&c= one send_many of n items at concurrency c
local st = require "resty.streamtelecom"

local M = {}

local function clock()
  ngx.update_time()
  return ngx.now()
end

local function arg(name) return ngx.var["arg_" .. name] end

function M.resty()
  local n = tonumber(arg("n"))
  local client = assert(st.new{ user = "bench", password = "bench-secret", url = ngx.unescape_uri(arg("url")) })
  assert(client:balance()) -- the connection is made before the clock starts
  local t0 = clock()
  for _ = 1, n do assert(client:balance()) end
  ngx.say(clock() - t0)
end

-- The blocking client (libcurl) in the same worker: it holds the worker
-- for each request, but how long does one take?
function M.blocking()
  local n = tonumber(arg("n"))
  local client = assert(require("streamtelecom").new{ user = "bench", password = "bench-secret",
                                                      url = ngx.unescape_uri(arg("url")) })
  assert(client:balance())
  local t0 = clock()
  for _ = 1, n do assert(client:balance()) end
  ngx.say(clock() - t0)
  client:close()
end

-- What any cosocket client must do at least: the same request line and
-- headers, the status line, the headers, a Content-Length body, keep-alive.
function M.bare()
  local n = tonumber(arg("n"))
  local host, port, path = ngx.unescape_uri(arg("url")):match("^http://([^/:]+):(%d+)(/.*)$")
  local request = "GET " .. path .. "?user=bench&pwd=bench-secret&balance=1 HTTP/1.1\r\nHost: "
                  .. host .. ":" .. port .. "\r\nUser-Agent: bare\r\nConnection: keep-alive\r\n\r\n"
  local function once()
    local sock = ngx.socket.tcp()
    sock:settimeouts(5000, 15000, 15000)
    assert(sock:connect(host, tonumber(port)))
    assert(sock:send(request))
    local line = assert(sock:receive("*l"))
    assert(line:find(" 200 ", 1, true))
    local length
    repeat
      line = assert(sock:receive("*l"))
      local v = line:match("^[Cc]ontent%-[Ll]ength:%s*(%d+)")
      if v then length = tonumber(v) end
    until line == ""
    assert(sock:receive(length))
    sock:setkeepalive(60000, 30)
  end
  once()
  local t0 = clock()
  for _ = 1, n do once() end
  ngx.say(clock() - t0)
end

function M.many()
  local n, c = tonumber(arg("n")), tonumber(arg("c"))
  -- The fake's "rich" account: 200 sends would empty the "test" balance.
  local client = assert(st.new{ user = "rich", password = "p&ss=w%rd+?", sender = "MyShop",
                                url = ngx.unescape_uri(arg("url")), concurrency = c })
  local items = {}
  for i = 1, n do items[i] = { to = ("7903%07d"):format(i), text = "Bench " .. i } end
  local t0 = clock()
  local res = client:send_many(items)
  local elapsed = clock() - t0
  for i = 1, n do
    assert(res[i][1] and res[i][1].id, "item " .. i .. " failed: " .. tostring(res[i].err))
  end
  ngx.say(elapsed)
end

return M
