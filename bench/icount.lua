-- Makes N requests of one call on one client, for callgrind to count:
--   lua bench/icount.lua URL CALL N
-- CALL is balance, status or send. make bench runs it for two N and takes
-- the difference, so start-up and the first connection cancel out.
local st = require("streamtelecom")
local url, call, n = arg[1], arg[2], tonumber(arg[3])
local client = assert(st.new{ user = "bench", password = "bench-secret", url = url,
                              sender = "Bench" })
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
client:close()
