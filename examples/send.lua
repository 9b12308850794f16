-- Send one SMS:  lua5.4 examples/send.lua 79031234567 "Your code is 1234"
package.path = "examples/?.lua;" .. package.path
local config = require("config")

local to, text = arg[1] or "79031234567", arg[2] or "Hello from streamtelecom"
local client = config.client()

local msgs, err, code = client:send(to, text)
if not msgs then config.fail("send", err, code) end
for _, m in ipairs(msgs) do
  if m.id then
    print(("sent to %s: id %s"):format(m.to, m.id))
  else
    print(("not sent to %s: %s (%s)"):format(m.to, m.err, m.code))
  end
end
client:close()
