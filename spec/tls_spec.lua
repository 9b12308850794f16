-- HTTPS against the fake gateway's TLS port, whose certificate is self-signed
-- (made when the fake started; fake.ca_file holds it).  Verification is on by
-- default, so only a client told about that certificate, or one that turns
-- verification off on purpose, gets through.

local fake = require("spec.fake")
local helper = require("spec.helper")

local PASSWORD = helper.RICH_PASSWORD
local PHONE = "79031234567"

local function client(opts)
  return helper.client({ user = "rich", password = PASSWORD, sender = "MyShop", url = fake.tls_url },
                       opts)
end

local function assert_fails(...) return helper.assert_fails(PASSWORD, ...) end

describe("HTTPS", function()
  lazy_setup(function() fake.start() end)
  before_each(function() fake.reset() end)

  it("is refused by the default client, which verifies the certificate", function()
    local calls = {}
    local c = client{ on_request = function(info) calls[#calls + 1] = info end }
    assert_fails("tls", "certificate", c:balance())
    assert.equals(0, fake.stats().requests)
    assert.equals(0, c:stats().retries)
    assert.equals(1, #calls)
    assert.equals("tls", calls[1].code)
    assert.equals(0, calls[1].http_status)
    helper.assert_no_secret(calls[1].url, PASSWORD)
    c:close()
  end)

  it("sends nothing when the certificate is not trusted", function()
    local c = client()
    assert_fails("tls", "certificate", c:send(PHONE, "Hello"))
    assert.equals(0, fake.stats().requests)
    assert.equals(0, #fake.sends())
    c:close()
  end)

  it("works with the fake's certificate given as ca_file", function()
    local c = client{ ca_file = fake.ca_file }
    local b, err, code = c:balance()
    assert.is_nil(err, code)
    assert.same({ balance = 1000000, raw = "1000000.00" }, b)
    local msgs = assert(c:send(PHONE, "Hello over TLS"))
    assert.matches("^%d+$", msgs[1].id)
    assert.equals(1, #fake.sends())
    local gw = fake.stats()
    assert.equals(2, gw.tls_requests)
    c:close()
  end)

  it("works with ca_file when the url names the address 127.0.0.1", function()
    local url = fake.tls_url:gsub("//localhost:", "//127.0.0.1:")
    local c = client{ url = url, ca_file = fake.ca_file }
    local b, err, code = c:balance()
    assert.is_nil(err, code)
    assert.equals(1000000, b.balance)
    c:close()
  end)

  it("answers tls, naming the file, when the CA bundle cannot be read, and sends nothing", function()
    local c = client{ ca_file = "/nonexistent/streamtelecom-ca.pem" }
    assert_fails("tls", "/nonexistent/streamtelecom%-ca%.pem", c:balance())
    assert_fails("tls", "CA certificates", c:send(PHONE, "Hello"))
    assert.equals(0, fake.stats().requests)
    c:close()
  end)

  -- RSS means nothing under ASan or valgrind: their allocators hold memory.
  local preload = os.getenv("LD_PRELOAD") or ""
  local sanitized = preload:find("libasan", 1, true) or preload:find("vgpreload", 1, true)
  local it_unsanitized = sanitized and pending or it

  it_unsanitized("parses a CA bundle once for all its clients, not once a client", function()
    -- The system's bundle (about 140 certificates) with the fake's added:
    -- each client parsing it again would hold some 900 KiB more.
    local dir = fake.ca_file:match("^(.*)/[^/]*$")
    local bundle = dir .. "/spec-bundle.pem"
    assert(os.execute("cat /etc/ssl/certs/ca-certificates.crt " .. helper.shell_quote(fake.ca_file)
                      .. " > " .. helper.shell_quote(bundle)))
    local out = helper.capture("STREAM_TELECOM_PASSWORD=" .. helper.shell_quote(PASSWORD) .. " "
                               .. helper.shell_quote(os.getenv("STREAMTELECOM_LUA") or "lua5.4")
                               .. " bench/castore.lua " .. helper.shell_quote(fake.tls_url) .. " "
                               .. helper.shell_quote(bundle) .. " 12 rich")
    local kib = tonumber(out:match("kib=(%S+)"))
    assert(kib, "bench/castore.lua: " .. out)
    assert.is_true(kib < 300, ("%s KiB a client"):format(kib))
    assert.equals(12, fake.stats().tls_requests)
  end)

  it("works with verify = false", function()
    local c = client{ verify = false }
    local b, err, code = c:balance()
    assert.is_nil(err, code)
    assert.equals(1000000, b.balance)
    assert.equals(1, fake.stats().tls_requests)
    c:close()
  end)

  it("makes 10 calls over one TLS connection", function()
    local c = client{ ca_file = fake.ca_file }
    for _ = 1, 10 do assert(c:balance()) end
    local gw = fake.stats()
    assert.equals(10, gw.tls_requests)
    assert.equals(1, gw.tls_connections)
    assert.equals(1, gw.connections)
    local s = c:stats()
    assert.equals(1, s.connections_opened)
    assert.equals(9, s.connections_reused)
    c:close()
  end)

  it("answers tls when an https url points at a plain HTTP port", function()
    local c = client{ url = "https://127.0.0.1:" .. fake.port .. "/get/", retries = 2 }
    assert_fails("tls", "TLS", c:balance())
    assert.equals(0, fake.stats().requests)
    assert.equals(0, c:stats().retries)
    c:close()
  end)
end)
