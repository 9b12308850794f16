-- streamtelecom.campaign.input: the rows of a campaign file, CSV (RFC 4180,
-- `,` `;` or tab, detected from the header) or JSON lines, each checked as
-- a send would check it before anything is sent.
--
-- A row is { n = row number, line = its first line, fields = { to =, text =,
-- sender =, callback_url =, name = }, extra = { value per extra column } }.
local cjson = require("cjson")
local st = require("streamtelecom")

local M = {}

-- The columns a send reads; any other column is carried to the report.
M.KNOWN = { to = true, text = true, sender = true, callback_url = true, name = true }

local BOM = "\239\187\191"

local function plural(n, word)
  return n .. " " .. word .. (n == 1 and "" or "s")
end

------------------------------------------------------------------------------
-- UTF-8

-- Where s stops being UTF-8 (a byte position), or nil when it is all
-- UTF-8: the whole file in one pass in C, before any row is read.
local function first_bad_byte(s)
  local valid = st._utf8_prefix(s)
  if valid < #s then return valid + 1 end
end

local function not_utf8(where)
  return where .. " is not UTF-8 text; convert the file first, e.g. "
         .. "iconv -f cp1251 -t utf-8 FILE > FILE.utf8 (cp1251: Windows Cyrillic; "
         .. "use the file's own encoding)"
end

------------------------------------------------------------------------------
-- CSV

local function count_newlines(s)
  local _, n = s:gsub("\n", "")
  return n
end

-- The delimiter of the header line: the most frequent of , ; and tab outside
-- quotes (a comma when none is there: a one-column file).
local function detect_delimiter(s, pos)
  local header = s:match("^[^\n]*", pos):gsub('"[^"]*"', "")
  local best, most = ",", 0
  for _, d in ipairs({ ",", ";", "\t" }) do
    local _, n = header:gsub(d, "")
    if n > most then best, most = d, n end
  end
  return best
end
M.detect_delimiter = detect_delimiter

-- One CSV record from pos: its fields, the next position and line.
local function csv_record(s, pos, line, delim)
  local fields, n = {}, #s
  local stop = "[" .. (delim == "\t" and "\t" or delim) .. '\n"]'
  while true do
    local field
    if s:sub(pos, pos) == '"' then
      local parts, p = {}, pos + 1
      while true do
        local q = s:find('"', p, true)
        if not q then return nil, "line " .. line .. ": a quoted field is never closed" end
        parts[#parts + 1] = s:sub(p, q - 1)
        if s:sub(q + 1, q + 1) == '"' then
          parts[#parts + 1] = '"'
          p = q + 2
        else
          p = q + 1
          break
        end
      end
      field = table.concat(parts)
      line = line + count_newlines(field)
      pos = p
      local c = s:sub(pos, pos)
      if c ~= delim and c ~= "\n" and c ~= "" and s:sub(pos, pos + 1) ~= "\r\n" then
        return nil, "line " .. line .. ": text after a closing quote"
      end
    else
      local q = s:find(stop, pos) or n + 1
      if s:sub(q, q) == '"' then
        return nil, "line " .. line .. ": a quote inside an unquoted field (quote the whole field)"
      end
      field = s:sub(pos, q - 1)
      if s:sub(q, q) ~= delim then field = field:gsub("\r$", "") end
      pos = q
    end
    fields[#fields + 1] = field
    local c = s:sub(pos, pos)
    if c == delim then
      pos = pos + 1
    else
      if c == "\r" then pos = pos + 1 end
      if s:sub(pos, pos) == "\n" then pos = pos + 1; line = line + 1 end
      return fields, pos, line
    end
  end
end

-- The header: per field, a known column's name or false for an extra
-- column, and the extra columns' names in order.
local function csv_header(fields)
  local names, seen, extras = {}, {}, {}
  for i, raw in ipairs(fields) do
    local name = raw:gsub("^%s+", ""):gsub("%s+$", "")
    local lower = name:lower()
    if M.KNOWN[lower] then
      if seen[lower] then return nil, "column '" .. lower .. "' appears twice in the header" end
      seen[lower] = true
      names[i] = lower
    else
      names[i] = false
      extras[#extras + 1] = name ~= "" and name or ("column " .. i)
    end
  end
  for _, need in ipairs({ "to", "text" }) do
    if not seen[need] then
      return nil, ("the header has no '%s' column (columns: to, text, and optionally sender, "
                   .. "callback_url, name; others are carried to the report)"):format(need)
    end
  end
  return names, extras
end

-- A record without a quote on its line, split by delim into buf (reused):
-- the field count and the next position; nil when the line has a quote
-- (csv_record reads it). The fast path of nearly every row.
local find, sub, byte = string.find, string.sub, string.byte

local function plain_record(s, pos, delim, buf)
  local nl = find(s, "\n", pos, true)
  local after = nl and nl + 1 or #s + 1
  local stop = nl or #s + 1
  if stop > pos and byte(s, stop - 1) == 13 then stop = stop - 1 end
  local line = sub(s, pos, stop - 1)
  if find(line, '"', 1, true) then return nil end
  local count, from = 0, 1
  while true do
    local d = find(line, delim, from, true)
    count = count + 1
    if not d then
      buf[count] = sub(line, from)
      return count, after, buf
    end
    buf[count] = sub(line, from, d - 1)
    from = d + 1
  end
end

-- The record at pos: its fields (a new table), the next position and line.
local function record_at(s, pos, line, delim)
  local count, after, fields = plain_record(s, pos, delim, {})
  if count then return fields, after, line + 1 end
  return csv_record(s, pos, line, delim)
end

------------------------------------------------------------------------------
-- JSON lines

local function jsonl_row(obj, row)
  for k, v in pairs(obj) do
    if not M.KNOWN[k] then
      return ("column %s: unknown key (keys: to, text, sender, callback_url, name)"):format(k)
    end
    if type(v) == "number" and k == "to" and v == math.floor(v) and v >= 0 and v < 2 ^ 53 then
      v = string.format("%d", v)
    end
    if type(v) ~= "string" then return "column " .. k .. ": want a string" end
    if v ~= "" then row.fields[k] = v end
  end
end

-- A JSON line's row, or nil and why.
local function jsonl_line(text)
  local row = { fields = {}, extra = {} }
  local ok, obj = pcall(cjson.decode, text)
  if not ok then return nil, tostring(obj) end
  if type(obj) ~= "table" or not text:match("^%s*{") then
    return nil, "want one JSON object per line"
  end
  local why = jsonl_row(obj, row)
  if why then return nil, why end
  return row
end

------------------------------------------------------------------------------
-- The file, indexed: one pass reads and checks every row and keeps only
-- where each good row starts; a row is read again from the file's text when
-- it is sent. No table per row lives across the run.

local function read_file(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, err end
  local s = f:read("*a")
  f:close()
  return s
end
M.read_file = read_file

local Index = {}
Index.__index = Index

-- Row n's fields as a send_many item ({ to =, text =, ... }), or nil when
-- row n is bad: what a row costs while it is sent (no extra columns).
function Index:item(n)
  local pos = self.starts[n]
  if not pos then return nil end
  local kept = self.kept[n]
  if kept then
    self.kept[n] = nil -- given once: send_many's chunk holds it from here
    return kept
  end
  local s = self.content
  if self.format == "jsonl" then
    return jsonl_line(sub(s, pos, (find(s, "\n", pos, true) or #s + 1) - 1)).fields
  end
  local fields = record_at(s, pos, 0, self.delimiter)
  local item = {}
  for i, name in ipairs(self.header) do
    if name and fields[i] ~= "" then item[name] = fields[i] end
  end
  return item
end

-- The items of rows[first..last] (row numbers), as Index:item gives them:
-- a CSV's plain lines made in C (st._csv_items), the others read here.
function Index:items(rows, first, last)
  local items, kept = {}, self.kept
  for i = first, last do
    local n = rows[i]
    local item = kept[n]
    if item then
      kept[n] = nil -- given once, as Index:item does
      items[i - first + 1] = item
    end
  end
  if self.format == "csv" and self.cols then
    st._csv_items(self.content, self.delimiter, self.cols, self.starts, rows, first, last, items)
  end
  for i = first, last do
    local k = i - first + 1
    if items[k] == nil then items[k] = self:item(rows[i]) end
  end
  return items
end

-- Drops the items the scan kept (a run that does not begin with them).
function Index:forget_kept() self.kept = {} end

-- Row n as { n =, fields = { to =, text =, ... }, extra = { values } }, or
-- nil when row n is bad.
function Index:row(n)
  local pos = self.starts[n]
  if not pos then return nil end
  local s = self.content
  if self.format == "jsonl" then
    local row = jsonl_line(sub(s, pos, (find(s, "\n", pos, true) or #s + 1) - 1))
    row.n = n
    return row
  end
  local fields = record_at(s, pos, 0, self.delimiter)
  local row = { n = n, fields = {}, extra = {} }
  for i, name in ipairs(self.header) do
    if name then
      if fields[i] ~= "" then row.fields[name] = fields[i] end
    else
      row.extra[#row.extra + 1] = fields[i]
    end
  end
  return row
end

-- Every row, a table each: for campaign-status's report.
function Index:rows()
  local rows = {}
  for n = 1, self.total do
    local row = self:row(n)
    if row then rows[#rows + 1] = row end
  end
  return rows
end

local check_row

local function twin_key(f) return (f.text or "") .. "\0" .. (f.sender or "") end

-- The earlier good row with the same number, text and sender as row n
-- (fields f), if any: sending both would text someone twice. Only the
-- numbers' first rows are kept; a number seen again (rare) gets the set of
-- its texts, the first read again from the file.
local function earlier_twin(idx, n, f)
  local to = f.to
  if find(to, "%D") then to = to:gsub("%D", "") end
  -- A number as a number: no string per row kept for the scan's length
  -- (not with a leading 0, which a number would drop).
  if #to <= 15 and byte(to) ~= 48 then to = tonumber(to) or to end
  local first = idx.first_of[to]
  if not first then
    idx.first_of[to] = n
    return nil
  end
  local texts = idx.texts_of[to]
  if not texts then
    texts = { [twin_key(idx:item(first))] = first }
    idx.texts_of[to] = texts
  end
  local key = twin_key(f)
  if texts[key] then return texts[key] end
  texts[key] = n
end

-- A copy of fields f as a send_many item (f is the scan's, reused).
local function item_of(f)
  return { to = f.to, text = f.text, sender = f.sender, callback_url = f.callback_url,
           name = f.name }
end

-- Counts row n (at pos, line) whose fields f are named; checks it when a
-- client is given. A bad row goes to errors, a good one to starts.
local function take(idx, n, line, pos, f, client)
  local column, message
  -- Most rows are good: one request built for the whole row; only a bad
  -- row is probed column by column (check_row) to name the culprit.
  if client and not (f.to and f.text and client:url("send", f.to, f.text, f)) then
    column, message = check_row(client, f)
  end
  local twin = client and not column and f.to and earlier_twin(idx, n, f)
  if twin then
    column, message = "to", ("the same number, text and sender as row %d: it would text them "
                             .. "twice"):format(twin)
  end
  if column then
    idx.errors[#idx.errors + 1] = { n = n, line = line, column = column, message = message }
  else
    idx.starts[n] = pos
    idx.good = idx.good + 1
    if idx.good <= idx.keep then idx.kept[n] = item_of(f) end
  end
end

local OPTIONAL = { "sender", "callback_url", "name" }

local function scan_csv(idx, delim, client)
  local s = idx.content
  local pos, line = 1, 1
  if sub(s, 1, 3) == BOM then pos = 4 end
  delim = delim or detect_delimiter(s, pos)
  idx.delimiter = delim
  local bad = first_bad_byte(s)
  local header, width
  local buf, f, n = {}, {}, 0
  local at = {} -- the field index of each known column
  local optional = {} -- the optional columns the header has
  local len = #s
  local cols -- for client:_scan_rows, once the header is read
  while pos <= len do
    -- The plain rows in C, as this loop would take them; it stops at the
    -- first row it leaves to this loop.
    if cols then
      local taken
      pos, line, n, taken = client:_scan_rows(s, pos, line, n, delim, bad or len + 1, cols,
                                              idx.starts, idx.first_of, idx.kept,
                                              idx.keep - idx.good)
      idx.good = idx.good + taken
      if pos > len then break end
    end
    local start = line
    local count, p, fields = plain_record(s, pos, delim, buf)
    local l
    if count then
      l = line + 1
    else
      fields, p, l = csv_record(s, pos, line, delim)
      if not fields then return p end
      count = #fields
    end
    local blank = count == 1 and fields[1] == ""
    if blank and p - pos > 2 then blank = false end
    if not blank then
      local record_ok = not bad or bad >= p -- bad is in no record before this one
      if not header then
        local hfields = {}
        for i = 1, count do hfields[i] = fields[i] end
        local extras
        header, extras = csv_header(hfields)
        if not header then return "line " .. start .. ": " .. extras end
        if not record_ok then return not_utf8("the header") end
        idx.header, idx.extras, width = header, extras, #header
        for i, name in ipairs(header) do
          if name then at[name] = i end
        end
        for _, name in ipairs(OPTIONAL) do
          if at[name] then optional[#optional + 1] = name end
        end
        if not idx.lua_only then
          idx.cols = { width, at.to, at.text, at.sender or 0, at.callback_url or 0, at.name or 0 }
          cols = client and idx.cols
        end
      else
        n = n + 1
        if not record_ok then return not_utf8(("row %d (line %d)"):format(n, start)) end
        if count ~= width then
          idx.errors[#idx.errors + 1] = { n = n, line = start,
            message = plural(count, "field") .. ", the header has " .. width }
        else
          f.to, f.text = fields[at.to], fields[at.text]
          if f.to == "" then f.to = nil end
          if f.text == "" then f.text = nil end
          for i = 1, #optional do
            local name = optional[i]
            local v = fields[at[name]]
            f[name] = v ~= "" and v or nil
          end
          take(idx, n, start, pos, f, client)
        end
      end
    end
    pos, line = p, l
  end
  if not header then return "the file is empty: want a header naming to,text" end
  idx.total = n
end

local function scan_jsonl(idx, client)
  local s = idx.content
  local pos, line, n, len = 1, 0, 0, #s
  if sub(s, 1, 3) == BOM then pos = 4 end
  local bad = first_bad_byte(s)
  idx.extras = {}
  while pos <= len do
    local nl = find(s, "\n", pos, true) or len + 1
    local text = sub(s, pos, nl - 1)
    line = line + 1
    if find(text, "%S") then
      n = n + 1
      if bad and bad <= nl then return not_utf8(("row %d (line %d)"):format(n, line)) end
      local row, why = jsonl_line(text)
      if row then
        take(idx, n, line, pos, row.fields, client)
      else
        idx.errors[#idx.errors + 1] = { n = n, line = line, message = why }
      end
    end
    pos = nl + 1
  end
  idx.total = n
end

-- FILE indexed: { total = rows, good = good rows, errors = { {n, line,
-- column, message} } in row order, extras = extra column names, ... } with
-- idx:row(n); or nil and why the whole file is refused. opts.format: "csv"
-- or "jsonl" (default: by extension); opts.delimiter. With client, each row
-- is checked as a send would check it (bad ones join errors). opts.keep:
-- the first good rows whose items idx:item gives without reading them again
-- (the first send_many call's: it starts sooner).
function M.scan(path, opts, client)
  local content, err = read_file(path)
  if not content then return nil, "cannot read " .. tostring(err) end -- err names path
  local format = opts.format or (path:lower():match("%.jsonl$") and "jsonl" or "csv")
  local idx = setmetatable({ path = path, format = format, content = content, starts = {},
                             lua_only = opts.lua_only,
                             first_of = {}, texts_of = {}, keep = opts.keep or 0, kept = {},
                             errors = {}, extras = {}, total = 0, good = 0 }, Index)
  local why
  if format == "jsonl" then why = scan_jsonl(idx, client) else why = scan_csv(idx, opts.delimiter, client) end
  idx.first_of, idx.texts_of = nil, nil -- the scan's alone
  if why then return nil, path .. ": " .. why end
  return idx
end

------------------------------------------------------------------------------
-- Checking: each column as a send would check it (client:url builds the
-- request without sending), then the whole row (one request at most).

local PROBE_TO, PROBE_TEXT = "79000000000", "x"

function check_row(client, f)
  local function try(column, to, text, opts)
    local url, err = client:url("send", to, text, opts)
    if not url then return column, err end
  end
  local column, err = try("to", f.to or "", PROBE_TEXT)
  if column then return column, err end
  column, err = try("text", PROBE_TO, f.text or "")
  if column then return column, err end
  for _, name in ipairs({ "sender", "callback_url", "name" }) do
    if f[name] then
      column, err = try(name, PROBE_TO, PROBE_TEXT, { [name] = f[name] })
      if column then return column, err end
    end
  end
  return try("to", f.to, f.text, { sender = f.sender, callback_url = f.callback_url,
                                   name = f.name })
end

function M.error_text(e)
  local where = "row " .. e.n .. " (line " .. e.line .. ")"
  if e.column then where = where .. ", column " .. e.column end
  return where .. ": " .. e.message
end

return M
