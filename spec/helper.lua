-- Loaded by busted before any spec (see .busted): shared test utilities.
local helper = {}

helper.LUA = os.getenv("STREAMTELECOM_LUA") or "lua5.4"

-- Every message a failing call returns goes through here, so each spec that
-- fails on purpose also proves the password stays out of it.
function helper.assert_no_secret(message, secret)
  assert(type(message) == "string", "want an error message, got " .. type(message))
  local encoded = secret:gsub("[^%w%-%._~]", function(c)
    return string.format("%%%02X", c:byte())
  end)
  assert(not message:find(secret, 1, true), "password leaked: " .. message)
  assert(not message:find(encoded, 1, true), "encoded password leaked: " .. message)
end

-- A string as one word for /bin/sh.
function helper.shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

package.loaded["spec.helper"] = helper
return helper
