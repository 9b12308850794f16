-- balance()'s request through Lua-cURLv3 (module "lcurl"), the generic libcurl
-- binding, as its user would write it: one reused easy handle on one URL, the
-- answer's body gathered into a Lua string. For callgrind to count:
--   lua bench/lcurl_loop.lua URL N
-- make bench runs it for two N and takes the difference, as for the client.
-- Lua-cURLv3 is not a Debian package: make bench measures it when LUA_CPATH
-- finds a build of it, and says so when not.
local lcurl = require("lcurl")
local url, n = arg[1], tonumber(arg[2])
local chunks = {}
local easy = lcurl.easy()
easy:setopt_url(url)
easy:setopt_nosignal(true)
easy:setopt_writefunction(function(chunk) chunks[#chunks + 1] = chunk end)
for _ = 1, n do
  chunks = {}
  easy:perform()
  if easy:getinfo_response_code() ~= 200 or #table.concat(chunks) == 0 then
    error("request failed")
  end
end
easy:close()
