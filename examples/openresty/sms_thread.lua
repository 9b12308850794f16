-- The thread side of /sms/thread: ngx.run_worker_thread("sms", "sms_thread",
-- "send", conf, to, text) runs send() on a thread of the "sms" pool.
--
-- That Lua VM is a fresh state (package.path and package.cpath copied from the
-- worker's), kept by nginx and reused for later tasks, so the module and its
-- client are made once per VM and then keep their connection. Only booleans,
-- numbers, strings, nil and plain tables cross the boundary: the options go in,
-- the messages (or nil, err, code) come out; a client userdata never crosses.
-- No ngx.* networking here: the send is libcurl's plain blocking call, which
-- blocks this thread only.
local st = require("streamtelecom")

local M = {}

local client

function M.send(conf, to, text)
  if not client then
    local err, code
    client, err, code = st.new(conf)
    if not client then return nil, err, code end
  end
  return client:send(to, text)
end

return M
