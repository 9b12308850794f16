-- Where the examples send: the bundled fake gateway unless the environment
-- says otherwise. For the real gateway set
--   STREAM_TELECOM_URL=https://gateway.api.sc/get/
--   STREAM_TELECOM_USER=... STREAM_TELECOM_PASSWORD=... STREAM_TELECOM_SENDER=...
-- The password comes from the environment, never from the command line,
-- where other users of the machine could read it.
local st = require("streamtelecom")

local config = {}

function config.client()
  local client, err = st.new{
    url = os.getenv("STREAM_TELECOM_URL") or "http://127.0.0.1:8089/get/",
    user = os.getenv("STREAM_TELECOM_USER") or "test",
    password = os.getenv("STREAM_TELECOM_PASSWORD") or "secret",
    sender = os.getenv("STREAM_TELECOM_SENDER") or "MyShop",
  }
  if not client then
    io.stderr:write("cannot make a client: ", err, "\n")
    os.exit(2)
  end
  return client
end

-- Prints the failure and leaves with a code that tells refusal from trouble.
function config.fail(what, err, code)
  io.stderr:write(what, " failed (", code, "): ", err, "\n")
  os.exit(1)
end

return config
