-- streamtelecom.campaign.input: the rows of a campaign file, CSV (RFC 4180,
-- `,` `;` or tab, detected from the header) or JSON lines, each checked as
-- a send would check it before anything is sent.
--
-- A row is { n = row number, line = its first line, fields = { to =, text =,
-- sender =, callback_url =, name = }, extra = { value per extra column } }.
local cjson = require("cjson")

local M = {}

-- The columns a send reads; any other column is carried to the report.
M.KNOWN = { to = true, text = true, sender = true, callback_url = true, name = true }

local BOM = "\239\187\191"

local function plural(n, word)
  return n .. " " .. word .. (n == 1 and "" or "s")
end

------------------------------------------------------------------------------
-- UTF-8

local function valid_utf8(s)
  if not s:find("[\128-\255]") then return true end
  local i, n = 1, #s
  while i <= n do
    local c = s:byte(i)
    if c < 0x80 then
      i = i + 1
    else
      local len
      if c >= 0xC2 and c <= 0xDF then len = 2
      elseif c >= 0xE0 and c <= 0xEF then len = 3
      elseif c >= 0xF0 and c <= 0xF4 then len = 4
      else return false end
      for k = 1, len - 1 do
        local b = s:byte(i + k)
        if not b or b < 0x80 or b > 0xBF then return false end
      end
      local b2 = s:byte(i + 1)
      -- overlong forms, surrogates, past U+10FFFF
      if (c == 0xE0 and b2 < 0xA0) or (c == 0xED and b2 > 0x9F)
         or (c == 0xF0 and b2 < 0x90) or (c == 0xF4 and b2 > 0x8F) then
        return false
      end
      i = i + len
    end
  end
  return true
end
M.valid_utf8 = valid_utf8

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

-- Answers rows, row errors and the extra columns' names, or nil and why the
-- whole file is refused. delim: ",", ";", "\t", or nil to detect it.
function M.read_csv(s, delim)
  local pos, line = 1, 1
  if s:sub(1, 3) == BOM then pos = 4 end
  delim = delim or detect_delimiter(s, pos)
  local rows, errors, header, extras = {}, {}, nil, nil
  while pos <= #s do
    local start = line
    local fields, p, l = csv_record(s, pos, line, delim)
    if not fields then return nil, p end
    local blank = s:sub(pos, p - 1):match("^\r?\n?$")
    pos, line = p, l
    if not blank then
      if not header then
        header, extras = csv_header(fields)
        if not header then return nil, "line " .. start .. ": " .. extras end
        if not valid_utf8(table.concat(fields)) then return nil, not_utf8("the header") end
      else
        local n = #rows + #errors + 1
        local row = { n = n, line = start, fields = {}, extra = {} }
        if not valid_utf8(table.concat(fields)) then
          return nil, not_utf8(("row %d (line %d)"):format(n, start))
        end
        if #fields ~= #header then
          errors[#errors + 1] = { n = n, line = start,
            message = plural(#fields, "field") .. ", the header has " .. #header }
        else
          for i, name in ipairs(header) do
            if name then
              if fields[i] ~= "" then row.fields[name] = fields[i] end
            else
              row.extra[#row.extra + 1] = fields[i]
            end
          end
          rows[#rows + 1] = row
        end
      end
    end
  end
  if not header then return nil, "the file is empty: want a header naming to,text" end
  return rows, errors, extras
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

function M.read_jsonl(s)
  local rows, errors, line = {}, {}, 0
  if s:sub(1, 3) == BOM then s = s:sub(4) end
  for text in (s .. "\n"):gmatch("([^\n]*)\n") do
    line = line + 1
    if text:find("%S") then
      local n = #rows + #errors + 1
      if not valid_utf8(text) then
        return nil, not_utf8(("row %d (line %d)"):format(n, line))
      end
      local row = { n = n, line = line, fields = {}, extra = {} }
      local ok, obj = pcall(cjson.decode, text)
      local why
      if not ok then
        why = tostring(obj)
      elseif type(obj) ~= "table" or not text:match("^%s*{") then
        why = "want one JSON object per line"
      else
        why = jsonl_row(obj, row)
      end
      if why then
        errors[#errors + 1] = { n = n, line = line, message = why }
      else
        rows[#rows + 1] = row
      end
    end
  end
  return rows, errors, {}
end

------------------------------------------------------------------------------
-- The file

local function read_file(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, err end
  local s = f:read("*a")
  f:close()
  return s
end
M.read_file = read_file

-- FILE as rows: rows, row errors, extra column names; or nil and why.
-- opts.format: "csv" or "jsonl" (default: by extension); opts.delimiter.
function M.load(path, opts)
  local content, err = read_file(path)
  if not content then return nil, "cannot read " .. path .. ": " .. tostring(err) end
  local format = opts.format or (path:lower():match("%.jsonl$") and "jsonl" or "csv")
  local rows, errors, extras
  if format == "jsonl" then
    rows, errors, extras = M.read_jsonl(content)
  else
    rows, errors, extras = M.read_csv(content, opts.delimiter)
  end
  if not rows then return nil, path .. ": " .. errors end
  return rows, errors, extras, content
end

------------------------------------------------------------------------------
-- Checking: each column as a send would check it (client:url builds the
-- request without sending), then the whole row (one request at most).

local PROBE_TO, PROBE_TEXT = "79000000000", "x"

local function check_row(client, f)
  local function try(column, to, text, opts)
    local url, err = client:url("send", to, text, opts)
    if not url then return column, err end
  end
  -- Most rows are good: one request built for the whole row; only a bad
  -- row is probed column by column to name the culprit.
  if f.to and f.text and client:url("send", f.to, f.text, f) then return end
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

-- Moves the rows a send would refuse into errors (sorted by row); answers
-- the good ones.
function M.check(client, rows, errors)
  local good = {}
  for _, row in ipairs(rows) do
    local column, message = check_row(client, row.fields)
    if column then
      errors[#errors + 1] = { n = row.n, line = row.line, column = column, message = message }
    else
      good[#good + 1] = row
    end
  end
  table.sort(errors, function(a, b) return a.n < b.n end)
  return good
end

function M.error_text(e)
  local where = "row " .. e.n .. " (line " .. e.line .. ")"
  if e.column then where = where .. ", column " .. e.column end
  return where .. ": " .. e.message
end

return M
