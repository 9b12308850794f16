-- Show the account balance:  lua5.4 examples/balance.lua
package.path = "examples/?.lua;" .. package.path
local config = require("config")

local client = config.client()
local b, err, code = client:balance()
if not b then config.fail("balance", err, code) end
print(("balance: %.2f%s"):format(b.balance, b.currency and (" " .. b.currency) or ""))
client:close()
