-- Out of memory in every call (issue 9): a capped-allocator host
-- (spec/oom/oomhost.c) runs spec/oom/sweep.lua, which fails each allocation
-- point of each call once and checks that the call raised "not enough
-- memory" or answered, and that the same client still works afterwards.
--
-- The host is built with cc against the Lua in use (STREAMTELECOM_LUA) and
-- runs one process per call, so a report names the call it belongs to.
-- Under `make asan` (libasan in LD_PRELOAD) the host is built with
-- -fsanitize=address,undefined and LeakSanitizer checks each process at
-- exit: a C buffer lost to a raise shows as a leak there. Under
-- `make valgrind` each process runs under valgrind memcheck (about 1 s
-- a call). Plain `make test` sees no leaks, only wrong answers and clients
-- left unusable.
local helper = require("spec.helper")
local fake = require("spec.fake")

-- Every call the sweep knows, with the fewest allocation points its sweep
-- must cover (a sweep that covers none tests nothing). close allocates
-- nothing from Lua; tostring and url(balance) build one string, which Lua
-- 5.1 interns (the warm-up call already made an equal one).
local CALLS = {
  { "st.new", 1 },
  { "send(one)", 3 }, { "send(list, opts)", 3 }, { "send(comma string)", 3 },
  { "send_many", 3 }, { "send_many(callbacks)", 3 },
  { "status", 2 }, { "status_many", 3 }, { "status_many(on_result)", 3 }, { "wait", 3 }, { "balance", 2 },
  { "driven(balance)", 3 }, { "driven(send_many)", 3 }, { "driven(send_many, attacked)", 3 },
  { "driven(status_many)", 3 },
  { "driven(wait)", 3 }, { "driven(next_request)", 3 },
  { "url(send)", 1 }, { "url(status)", 1 }, { "url(balance)", 0 },
  { "_scan_rows (a campaign's rows, kept items)", 3 }, { "st._csv_items", 3 },
  { "st._journal_line", 1 },
  { "st.parse(send)", 3 }, { "st.parse(send, no extra)", 3 },
  { "st.parse(status)", 1 }, { "st.parse(balance)", 1 }, { "st.segments", 1 },
  { "stats", 1 }, { "tostring", 0 }, { "close", 0 },
}

local repo_root = require("spec.helper").repo_root

local ROOT = repo_root()
local q = helper.shell_quote
local preload = os.getenv("LD_PRELOAD") or ""
local UNDER_ASAN = preload:find("libasan", 1, true) ~= nil
local UNDER_VALGRIND = preload:find("vgpreload", 1, true) ~= nil

-- A command's output and exit status, run without the sanitizer preloads.
local function run(cmd)
  local out = helper.capture("sh -c " .. q(cmd .. "; echo \"oom-exit=$?\""))
  local status = tonumber(out:match("oom%-exit=(%d+)%s*$"))
  return out:gsub("oom%-exit=%d+%s*$", ""), status
end

-- The lines of a sweep's output worth a failure message: the sweep's own
-- lines, and the leak reports of ASan or valgrind down to our frames.
local function condensed(out)
  local keep = {}
  for line in out:gmatch("[^\n]+") do
    if line:find("^sweep ") or line:find("FAIL ") or line:find("^  %.%.%. and")
       or line:find("SUMMARY") or line:find("leak of") or line:find("definitely lost")
       or line:find("oomhost:") or line:find("ERROR")
       or line:find("[%w_]+%.c:%d+") and (line:find("src/") or line:find("streamtelecom%.c")
                                          or line:find("st_[%w_]+%.c")) then
      keep[#keep + 1] = line
    end
  end
  local text = table.concat(keep, "\n")
  if #text > 8000 then text = text:sub(1, 8000) .. "\n..." end
  return text
end

-- Builds the capped-allocator host against lua<version> with extra cc
-- flags: true, or false and the compiler's output.
local function build_host(host, version, flags)
  local out, status = run("mkdir -p " .. q(ROOT .. "/build/oom") .. " && cc -std=c99 -O1 -g -Wall -Wextra "
                          .. flags .. " " .. q(ROOT .. "/spec/oom/oomhost.c")
                          .. " $(pkg-config --cflags --libs lua" .. version .. ")"
                          .. " -Wl,-E -o " .. q(host))
  return status == 0, out
end

describe("out of memory (capped-allocator host)", function()
  -- The Lua running busted is the one the module in LUA_CPATH was built for.
  local version = _VERSION:match("^Lua (5%.%d)$")
  if rawget(_G, "jit") or helper.LUA:find("jit", 1, true) or not version then
    pending("out-of-memory sweep skipped for " .. helper.LUA .. ": LuaJIT's 64-bit "
            .. "allocator cannot be replaced (lua_newstate is unsupported there), so "
            .. "there is no capped-allocator host")
    return
  end

  local host = ROOT .. "/build/oom/oomhost-lua" .. version .. (UNDER_ASAN and "-asan" or "")
  local built, build_log

  lazy_setup(function()
    fake.start()
    built, build_log = build_host(host, version, UNDER_ASAN
      and "-fno-omit-frame-pointer -fsanitize=address,undefined" or "")
  end)

  before_each(function()
    fake.reset()
    fake.set{ auto_deliver = 0 } -- every message is final at once: wait ends
  end)

  lazy_teardown(function() fake.reset() end)

  local function sweep(args)
    local cmd = q(host) .. " " .. q(ROOT .. "/spec/oom/sweep.lua") .. " " .. args
    if UNDER_ASAN then
      cmd = "env ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:exitcode=97"
            .. " LSAN_OPTIONS=suppressions=" .. q(ROOT .. "/spec/lsan.supp")
            .. ":print_suppressions=0"
            .. " UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 " .. cmd
    elseif UNDER_VALGRIND then
      cmd = "valgrind --quiet --leak-check=full --errors-for-leak-kinds=definite"
            .. " --show-leak-kinds=definite --error-exitcode=99"
            .. " --suppressions=" .. q(ROOT .. "/spec/valgrind.supp") .. " " .. cmd
    end
    return run("timeout 300 " .. cmd)
  end

  it("builds the host against lua" .. version, function()
    assert(built, "cc failed:\n" .. tostring(build_log))
  end)

  it("sweeps every call the sweep knows", function()
    assert(built, "the host did not build")
    local out, status = sweep("--list")
    assert.equals(0, status, out)
    local names = {}
    for name in out:gmatch("[^\n]+") do names[#names + 1] = name end
    local want = {}
    for i, c in ipairs(CALLS) do want[i] = c[1] end
    assert.same(want, names)
  end)

  for _, c in ipairs(CALLS) do
    local name, min_points = c[1], c[2]
    it("survives an allocation failure anywhere in " .. name, function()
      assert(built, "the host did not build")
      local out, status = sweep(q(fake.url) .. " --only " .. q(name) .. " --report 5")
      local points = tonumber(out:match("sweep " .. name:gsub("%p", "%%%0")
                                  .. "%s+(%d+) allocation points"))
      assert(status == 0, "the sweep of " .. name .. " failed (exit " .. tostring(status)
                          .. "):\n" .. condensed(out))
      assert(points and points >= min_points,
             name .. ": want at least " .. min_points .. " allocation points swept:\n" .. out)
    end)
  end
end)

describe("out of memory in the core's C heap (malloc failing in the module)", function()
  local version = _VERSION:match("^Lua (5%.%d)$")
  if rawget(_G, "jit") or helper.LUA:find("jit", 1, true) or not version then
    pending("the C-heap sweep runs in the capped-allocator host, which LuaJIT cannot have")
    return
  end
  if UNDER_ASAN or UNDER_VALGRIND then
    pending("the C-heap sweep replaces malloc, as ASan and valgrind do: it runs in plain `make test`")
    return
  end

  local host = ROOT .. "/build/oom/oomhost-c-lua" .. version
  local built, build_log

  lazy_setup(function()
    fake.start()
    built, build_log = build_host(host, version, "-DOOMHOST_C_HEAP")
  end)

  before_each(function()
    fake.reset()
    fake.set{ auto_deliver = 0 }
  end)

  lazy_teardown(function() fake.reset() end)

  it("fails each C allocation of the module once: a memory error or a true answer, never network", function()
    assert(built, "cc failed:\n" .. tostring(build_log))
    local out, status = run("timeout 600 " .. q(host) .. " " .. q(ROOT .. "/spec/oom/sweep.lua")
                            .. " " .. q(fake.url) .. " --report 5")
    assert(status == 0, "the C-heap sweep failed (exit " .. tostring(status) .. "):\n" .. condensed(out))
    local total = tonumber(out:match("oom sweep %(Lua 5%.%d%): (%d+) allocation points"))
    -- A fresh client's calls allocate their slots, task, transfer and
    -- buffers in C: far more than one point in all.
    assert(total and total >= 30, "want at least 30 C allocation points swept:\n" .. out)
  end)
end)
