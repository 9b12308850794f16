-- The HTTP/1.1 framing of src/st_http_request.c (request bytes) and
-- src/st_http_response.c (the incremental response parser the socket
-- drivers use) has plain-C unit tests in
-- spec/http/test_http.c; this spec builds and runs them with cc, once plain
-- and once with AddressSanitizer and UndefinedBehaviorSanitizer.
local helper = require("spec.helper")

local repo_root = require("spec.helper").repo_root

local ROOT = repo_root()
local q = helper.shell_quote
local OUT = ROOT .. "/build/spec-http"
local SOURCES = { "spec/http/test_http.c", "src/st_http_request.c", "src/st_http_response.c",
                  "src/st_buf.c" }
local FLAGS = "-std=c99 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -Werror -g -I src"
local SANITIZE = "-fsanitize=address,undefined -fno-sanitize-recover=undefined"

-- A command's output and exit status (helper.capture answers only the
-- output, so the status is echoed after it).
local function run(cmd)
  local out = helper.capture("sh -c " .. q("cd " .. q(ROOT) .. " && " .. cmd
                                         .. "; echo \"http-exit=$?\""))
  local status = tonumber(out:match("http%-exit=(%d+)%s*$"))
  return out:gsub("http%-exit=%d+%s*$", ""), status
end

local function build(name, flags)
  local bin = OUT .. "/" .. name
  local out, status = run("mkdir -p " .. q(OUT) .. " && cc " .. FLAGS .. " " .. flags
                          .. " " .. table.concat(SOURCES, " ") .. " -o " .. q(bin))
  return bin, out, status
end

-- The C compiler can build and run a sanitized program here.
local function sanitizers_work()
  local probe = OUT .. "/probe"
  local _, status = run("mkdir -p " .. q(OUT) .. " && printf 'int main(void){return 0;}\\n' > "
                        .. q(probe .. ".c") .. " && cc " .. SANITIZE .. " " .. q(probe .. ".c")
                        .. " -o " .. q(probe) .. " && " .. q(probe))
  return status == 0
end

describe("the HTTP framing core (st_http_request.c, st_http_response.c)", function()
  it("passes its C unit tests, built warning-free with cc", function()
    local bin, build_out, build_status = build("test_http", "-O2")
    assert.are.equal(0, build_status, "the build failed:\n" .. build_out)
    local out, status = run(q(bin))
    assert.are.equal(0, status, "test_http failed:\n" .. out)
    assert.truthy(out:find("%d+ checks, 0 failed"), out)
  end)

  it("passes them under AddressSanitizer and UndefinedBehaviorSanitizer", function()
    if not sanitizers_work() then
      pending("cc cannot build sanitized programs here")
      return
    end
    local bin, build_out, build_status = build("test_http_asan", "-O1 " .. SANITIZE)
    assert.are.equal(0, build_status, "the sanitized build failed:\n" .. build_out)
    local out, status = run("ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 "
                            .. q(bin))
    assert.are.equal(0, status, "test_http failed under the sanitizers:\n" .. out)
    assert.truthy(out:find("%d+ checks, 0 failed"), out)
    assert.falsy(out:find("runtime error", 1, true), out)
  end)
end)
