-- Ask for the delivery status of a message:  lua5.4 examples/status.lua 1000000001
package.path = "examples/?.lua;" .. package.path
local config = require("config")

local id = assert(arg[1], "usage: status.lua MESSAGE_ID")
local client = config.client()

local s, err, code = client:status(id)
if not s then config.fail("status", err, code) end
print(("message %s: %s%s%s"):format(s.id, s.state, s.final and " (final)" or "",
  s.updated and (" at " .. s.updated) or ""))
client:close()
