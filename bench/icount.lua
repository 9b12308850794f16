-- Makes N requests of one call on one client, for callgrind to count:
--   lua bench/icount.lua URL CALL N [CA_FILE]
-- CALL is balance, status or send. make bench runs it for two N and takes
-- the difference, so start-up and the first connection cancel out. Prints
-- the URL the call requests, for bench/curl_loop.c to fetch the same one.
local st = require("streamtelecom")
local url, call, n, ca_file = arg[1], arg[2], tonumber(arg[3]), arg[4]
local client = assert(st.new{ user = "bench", password = "bench-secret", url = url,
                              sender = "Bench", ca_file = ca_file })
local args = {
  balance = {},
  status = { "1000000001" },
  send = { "79031234567", "Your code is 1234" },
}
local method = client[call]
local a1, a2 = args[call][1], args[call][2]
for _ = 1, n do
  if not method(client, a1, a2) then error(call .. " failed") end
end
print(assert(client:url(call, a1, a2)))
client:close()
