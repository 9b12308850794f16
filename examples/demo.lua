-- The whole job in one go: send an SMS, read its status, read the balance.
package.path = "examples/?.lua;" .. package.path
local config = require("config")

local client = config.client()
print("client: " .. tostring(client))

local msgs, err, code = client:send("+7 903 123-45-67", "Hello from streamtelecom!")
if not msgs then config.fail("send", err, code) end
local id = msgs[1].id
print(("sent to %s: id %s"):format(msgs[1].to, id))

local s
s, err, code = client:status(id)
if not s then config.fail("status", err, code) end
print(("status of %s: %s (gateway said '%s')"):format(id, s.state, s.raw))

local b
b, err, code = client:balance()
if not b then config.fail("balance", err, code) end
print(("balance: %.2f"):format(b.balance))
client:close()
