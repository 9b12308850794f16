-- fakegw/fakegw --help: every knob of the fake (gateway.lua's KNOBS) with an
-- example curl, on stdout with status 0; the README's fake section names them.
local helper = require("spec.helper")

local read = helper.read_repo

local function knobs()
  local block = read("fakegw/gateway.lua"):match("\nlocal KNOBS = (%b{})")
  local names = {}
  for name in block:gmatch("\n  ([%w_]+) = {") do names[#names + 1] = name end
  assert.is_true(#names > 10)
  return names
end

describe("fakegw --help", function()
  it("exits 0 with everything on stdout, every knob and example curls", function()
    local dir = os.tmpname()
    local cmd = helper.shell_quote(helper.repo_root() .. "/fakegw/fakegw") .. " --help >"
                .. dir .. ".out 2>" .. dir .. ".err"
    local ok, _, status = os.execute(helper.unsanitized(cmd))
    local out, err = io.open(dir .. ".out"):read("*a"), io.open(dir .. ".err"):read("*a")
    os.remove(dir .. ".out")
    os.remove(dir .. ".err")
    os.remove(dir)
    assert.is_true(ok == true or ok == 0, "status " .. tostring(status))
    assert.equals("", err)
    for _, name in ipairs(knobs()) do
      assert.matches("%f[%w_]" .. name .. "=", out)
    end
    assert.matches("curl -s 'http://127.0.0.1:8089/_fake/set?latency=", out, 1, true)
    assert.matches("/_fake/balance?user=test&value=", out, 1, true)
  end)

  it("is what the README's fake section names", function()
    local section = read("README.md"):match("\n## The fake gateway\n(.-)\n## ")
    for _, name in ipairs(knobs()) do
      assert.matches("`" .. name .. "`", section, 1, true)
    end
    assert.matches("fakegw/fakegw --help", section, 1, true)
  end)
end)
