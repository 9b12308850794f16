-- luacheck: std +busted
-- The campaign's check of its file: client:_scan_rows (C) takes the plain
-- rows, input.lua's own loop the rest. Both ways must judge every file
-- alike: the same rows taken, the same errors with the same words, the
-- same twins. Nothing here is sent: a scan only builds requests' checks.
local st = require("streamtelecom")
local input = require("streamtelecom.campaign.input")
local helper = require("spec.helper")

local dir

local function client()
  return assert(st.new{ user = "u", password = "p", sender = "MyShop",
                        url = "http://127.0.0.1:9/get/" })
end

local function write(name, content)
  return helper.write_file(dir .. "/" .. name, content)
end

-- The scan of path both ways, keeping the first keep good rows' items for
-- the first send_many (default 0).
local function both(path, keep)
  local c = client()
  local fast, fast_why = input.scan(path, { keep = keep or 0 }, c)
  local slow, slow_why = input.scan(path, { keep = keep or 0, lua_only = true }, c)
  c:close()
  return fast, slow, fast_why, slow_why
end

local function same(fast, slow)
  assert.equals(slow.total, fast.total)
  assert.equals(slow.good, fast.good)
  assert.same(slow.errors, fast.errors)
  assert.same(slow.starts, fast.starts)
  assert.same(slow.extras, fast.extras)
  assert.same(slow.kept, fast.kept)
end

-- A C scan that took any row at all: the file exercised the fast way.
local function counting_scan_rows()
  local calls, taken = 0, 0
  local mt = getmetatable(client()).__index
  local real = mt._scan_rows
  mt._scan_rows = function(...)
    local pos, line, n, t = real(...)
    calls, taken = calls + 1, taken + t
    return pos, line, n, t
  end
  return function() return calls, taken end, function() mt._scan_rows = real end
end

-- Rows of every kind the file can hold, picked at random (seeded).
local KINDS = {
  function(i) return ("7903%07d,text %d,MyShop,id%d"):format(i, i, i) end,
  function(i) return ("7903%07d,text %d,,id%d"):format(i, i, i) end,
  function(i) return ("7903%07d,\"quoted, %d\",MyShop,id%d"):format(i, i, i) end,
  function(i) return ("+7 903 %07d,text %d,MyShop,id%d"):format(i, i, i) end,
  function(i) return ("07903%06d,leading zero %d,MyShop,x"):format(i, i) end,
  function(i) return ("7903%06d,nine digits %d,MyShop,x"):format(i % 100, i) end,
  function(i) return ("79030%011d,sixteen %d,MyShop,x"):format(i, i) end,
  function(i) return ("7903%07d,,MyShop,empty text"):format(i) end,
  function(i) return (",no number %d,MyShop,x"):format(i) end,
  function(i) return ("7903%07d,too few fields"):format(i) end,
  function(i) return ("7903%07d,too,many,fields,here"):format(i) end,
  function(i) return ("7903%07d,bad sender %d,Bad Sender!,x"):format(i, i) end,
  function(i) return ("7903%07d,unknown sender %d,Other,x"):format(i, i) end,
  function(i) return ("7903%07d,%s,MyShop,long"):format(i, ("y"):rep(3000)) end,
  function(i) return ("7903%07d,sender too long,%s,x"):format(i, ("S"):rep(600)) end,
  function(i) return ("7903%07d,nul\0byte,MyShop,x"):format(i) end,
  function() return "79030000001,twin text,MyShop,twin" end,
  function() return "79030000001,another text,MyShop,not a twin" end,
  function() return "79030000001,twin text,Other,other sender" end,
  function() return "" end,
  function(i) return ("7903%07d,crlf %d,MyShop,x\r"):format(i, i) end,
  function(i) return ("7903%07d,Привет %d,MyShop,кириллица"):format(i, i) end,
}

local function random_file(name, rows, seed, delim)
  math.randomseed(seed)
  local lines = { ("to,text,sender,customer"):gsub(",", delim) }
  for i = 1, rows do
    local kind = KINDS[math.random(#KINDS)]
    if math.random() < 0.6 then kind = KINDS[1] end
    local line = kind(i)
    if delim ~= "," then line = line:gsub(",", delim) end
    lines[#lines + 1] = line
  end
  return write(name, table.concat(lines, "\n") .. "\n")
end

describe("a campaign's scan of its file", function()
  before_each(function()
    dir = helper.temp_dir()
  end)
  after_each(function() helper.remove_dir(dir) end)

  it("takes the same rows and names the same errors in C as in Lua, whatever the rows",
     function()
    local counts, restore = counting_scan_rows()
    local ok, err = pcall(function()
      for seed = 1, 12 do
        local delim = ({ ",", ";", "\t" })[seed % 3 + 1]
        local path = random_file("r" .. seed .. ".csv", 400, seed, delim)
        -- Items kept for the first send_many: none, some rows', every row's.
        local keep = ({ 0, 37, 1000 })[math.floor(seed / 3) % 3 + 1]
        local fast, slow, fast_why, slow_why = both(path, keep)
        assert.equals(slow_why, fast_why)
        assert.truthy(fast, fast_why)
        same(fast, slow)
        assert.truthy(#fast.errors > 0, "the file has bad rows")
      end
    end)
    restore()
    assert(ok, err)
    local calls, taken = counts()
    assert.truthy(taken > 12 * 400 * 0.4, "C took the plain good rows: " .. taken)
    assert.truthy(calls > 12 * 50, "and gave the others back to Lua: " .. calls)
  end)

  it("makes a chunk's items in C as Index:item reads them, kept ones first", function()
    for seed = 1, 6 do
      local delim = ({ ",", ";", "\t" })[seed % 3 + 1]
      local path = random_file("i" .. seed .. ".csv", 400, seed, delim)
      local fast, slow = both(path, 25)
      -- The good rows in order, and a chunk from the middle of them.
      local rows = {}
      for n = 1, slow.total do
        if slow.starts[n] then rows[#rows + 1] = n end
      end
      local want = {}
      for i, n in ipairs(rows) do want[i] = slow:item(n) end
      assert.same(want, fast:items(rows, 1, #rows))
      local a, b = 7, math.min(#rows, 150)
      local part = {}
      for i = a, b do part[#part + 1] = want[i] end
      assert.same(part, fast:items(rows, a, b))
    end
  end)

  it("finds a twin of a row C took, and C leaves no twin untold", function()
    local path = write("t.csv", "to,text\n79030000001,hi\n79030000002,hi\n79030000001,hi\n"
                                .. "79030000001,other\n")
    local fast, slow = both(path)
    same(fast, slow)
    assert.equals(1, #fast.errors)
    assert.equals(4, fast.errors[1].line)
    assert.matches("the same number, text and sender as row 1", fast.errors[1].message)
  end)

  it("refuses a file that stops being UTF-8 at the same row either way", function()
    local rows = { "to,text" }
    for i = 1, 50 do rows[#rows + 1] = ("7903%07d,row %d"):format(i, i) end
    rows[#rows + 1] = "79030000099,\255cp1251"
    for i = 51, 60 do rows[#rows + 1] = ("7903%07d,row %d"):format(i, i) end
    local fast, slow, fast_why, slow_why = both(write("u.csv", table.concat(rows, "\n")))
    assert.is_nil(fast)
    assert.is_nil(slow)
    assert.equals(slow_why, fast_why)
    assert.matches("row 51 %(line 52%) is not UTF%-8", fast_why)
  end)

  it("reads a file without a final new line, and CRLF, alike", function()
    for _, text in ipairs({ "to,text\r\n79030000001,a\r\n79030000002,b",
                            "to,text\n79030000001,a\n\n\r\n79030000002,b\r" }) do
      local fast, slow = both(write("n.csv", text))
      same(fast, slow)
      assert.equals(2, fast.good)
    end
  end)

  describe("client:_scan_rows, held by any Lua code", function()
    local COLS = { 2, 1, 2, 0, 0, 0 }

    it("refuses wrong arguments with a clear error", function()
      local c = client()
      local s = "79030000001,a\n"
      assert.has_error(function() c:_scan_rows(s, 1, 1, 0, ",,", 99, COLS, {}, {}) end,
                       "bad argument #5 to '_scan_rows' (one byte expected)")
      assert.has_error(function() c:_scan_rows(s, 1, 1, 0, ",", 99, "cols", {}, {}) end)
      assert.has_error(function() c:_scan_rows(nil, 1, 1, 0, ",", 99, COLS, {}, {}) end)
      assert.has_error(function() c:_scan_rows(s, 1, 1, 0, ",", 99, COLS, {}, nil) end)
      assert.has_error(function() c._scan_rows({}, s, 1, 1, 0, ",", 99, COLS, {}, {}) end)
      c:close()
    end)

    it("takes nothing from a closed client, and stops at a NUL byte or a limit", function()
      local c = client()
      local s = "79030000001,a\n79030000002,b\0c\n79030000003,c\n"
      local starts, first_of = {}, {}
      local pos, line, n, taken = c:_scan_rows(s, 1, 2, 0, ",", #s + 1, COLS, starts, first_of)
      assert.same({ 15, 3, 1, 1 }, { pos, line, n, taken })
      assert.same({ 1 }, starts)
      assert.equals(1, first_of[79030000001])
      -- The limit: the first byte that is not UTF-8, inside the first row.
      pos, line, n, taken = c:_scan_rows(s, 1, 2, 0, ",", 5, COLS, {}, {})
      assert.same({ 1, 2, 0, 0 }, { pos, line, n, taken })
      c:close()
      pos, line, n, taken = c:_scan_rows(s, 1, 2, 0, ",", #s + 1, COLS, {}, {})
      assert.same({ 1, 2, 0, 0 }, { pos, line, n, taken })
    end)

    it("writes its tables raw: their metamethods never run", function()
      local c = client()
      local called = false
      local trap = setmetatable({}, { __newindex = function() called = true end,
                                      __index = function() called = true end })
      local s = "79030000001,a\n79030000002,b\n"
      local _, _, n = c:_scan_rows(s, 1, 2, 0, ",", #s + 1, COLS, trap, trap)
      assert.equals(2, n)
      assert.is_false(called)
      assert.equals(1, rawget(trap, 79030000001))
      c:close()
    end)

    it("st._csv_items makes only what it can read, and refuses wrong arguments", function()
      local s = "79030000001,a\n\"790300000002\",b\n79030000003,c\0d\n79030000004,d\n"
      -- Row 5 starts nowhere, row 6 past the end, row 7 at a fraction.
      local starts = { 1, 15, 33, 49, nil, #s + 5, 2.5 }
      local rows = { 1, 2, 3, 4, 5, 6, 7 }
      local items = { nil, nil, nil, "kept" }
      assert.equals(1, st._csv_items(s, ",", COLS, starts, rows, 1, 7, items))
      assert.same({ to = "79030000001", text = "a" }, items[1])
      assert.is_nil(items[2], "a quoted line is Index:item's")
      assert.is_nil(items[3], "a NUL byte too")
      assert.equals("kept", items[4], "a filled slot is left alone")
      assert.is_nil(items[5])
      assert.is_nil(items[6])
      assert.is_nil(items[7])
      assert.has_error(function() st._csv_items(s, ",,", COLS, starts, rows, 1, 7, {}) end,
                       "bad argument #2 to '_csv_items' (one byte expected)")
      assert.has_error(function() st._csv_items(s, ",", COLS, starts, rows, 1, 7) end)
      assert.has_error(function() st._csv_items(s, ",", COLS, starts, nil, 1, 7, {}) end)
      assert.has_error(function() st._csv_items(nil, ",", COLS, starts, rows, 1, 7, {}) end)
      assert.equals(0, st._csv_items(s, ",", COLS, starts, rows, 5, 4, {}))
    end)

    it("survives a collector's finaliser closing its client mid-scan", function()
      local rows = {}
      for i = 1, 3000 do rows[i] = ("7903%07d,row %d\n"):format(i, i) end
      local s = table.concat(rows)
      for _ = 1, 20 do
        local c = client()
        -- Garbage with a finaliser that closes the client: the scan's
        -- table writes allocate, and the collector may run it then.
        for _ = 1, 50 do setmetatable({}, { __gc = function() c:close() end }) end
        local _, _, n = c:_scan_rows(s, 1, 1, 0, ",", #s + 1, COLS, {}, {})
        assert.truthy(n >= 0 and n <= 3000)
        c:close()
      end
    end)
  end)
end)
