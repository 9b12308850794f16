-- streamtelecom.campaign.report: what the campaign commands print: the
-- progress line, the summary, the report of every row (CSV, TSV, JSON),
-- and the exit codes both commands answer.
local st = require("streamtelecom")
local cjson = require("cjson")

local M = {}

M.EXIT = { OK = 0, REFUSED = 1, USAGE = 2, TRANSPORT = 3, UNSETTLED = 4, BUSY = 5,
           SIGINT = 130, SIGTERM = 143 }

function M.plural(n, word)
  return ("%d %s%s"):format(n, word, n == 1 and "" or "s")
end

-- cjson writes an empty table as {}: a list that may be empty goes through
-- M.list, which marks it empty with a word M.json turns into [].
M.EMPTY = "@@streamtelecom empty list@@"
function M.json(value)
  return (cjson.encode(value):gsub('"@@streamtelecom empty list@@"', "[]"))
end

function M.list(t)
  if #t == 0 then return M.EMPTY end
  return t
end

------------------------------------------------------------------------------
-- Progress: one self-updating line on a terminal, a line every few seconds
-- with --progress elsewhere, nothing otherwise.

local Progress = {}
Progress.__index = Progress

function M.progress_mode(wanted)
  if st._isatty(2) then return "tty" end
  if wanted then return "lines" end
  return "off"
end

-- describe() answers the rows done, the total, and the counts' text.
function M.progress(mode, describe)
  return setmetatable({ mode = mode, describe = describe, started = st._now(), last = 0,
                        done_here = 0, first_done = nil }, Progress)
end

local function clock_text(seconds)
  seconds = math.floor(seconds + 0.5)
  if seconds >= 3600 then
    return ("%d:%02d:%02d"):format(math.floor(seconds / 3600), math.floor(seconds / 60) % 60,
                                   seconds % 60)
  end
  return ("%d:%02d"):format(math.floor(seconds / 60), seconds % 60)
end

function Progress:line()
  local done, total, counts = self.describe()
  local elapsed = st._now() - self.started
  local rate = elapsed > 0 and self.done_here / elapsed or 0
  local eta = rate > 0 and clock_text((total - done) / rate) or "?"
  local pct = total > 0 and math.floor(done * 100 / total) or 100
  return ("%d/%d (%d%%)  %s  %.1f/s  ETA %s"):format(done, total, pct, counts, rate, eta)
end

function Progress:tick(n)
  self.done_here = self.done_here + (n or 0)
end

function Progress:update(force)
  if self.mode == "off" then return end
  local t = st._now()
  local every = self.mode == "tty" and 0.2 or 5
  if not force and t - self.last < every then return end
  self.last = t
  if self.mode == "tty" then
    io.stderr:write("\r", self:line(), "\27[K")
  else
    io.stderr:write("progress: ", self:line(), "\n")
  end
end

-- The end: the terminal's line is cleared (the summary that follows is the
-- last line, never a stale ETA); elsewhere one last line of counts.
function Progress:finish()
  if self.mode == "tty" then
    io.stderr:write("\r\27[K")
  elseif self.mode == "lines" then
    local done, total, counts = self.describe()
    io.stderr:write(("progress: %d/%d  %s\n"):format(done, total, counts))
  end
end

------------------------------------------------------------------------------
-- The summary of a run

local function codes_text(codes)
  local names = {}
  for k in pairs(codes) do names[#names + 1] = k end
  table.sort(names)
  for i, k in ipairs(names) do names[i] = k .. " " .. codes[k] end
  return table.concat(names, ", ")
end

function M.list_rows(list, limit)
  local parts = {}
  for i = 1, math.min(#list, limit) do
    parts[i] = ("%d (%s)"):format(list[i].row, tostring(list[i].to))
  end
  local s = table.concat(parts, ", ")
  if #list > limit then s = s .. (", and %d more"):format(#list - limit) end
  return s
end

function M.summary_line(s)
  local line = ("%s: %d rows: %d sent, %d refused, %d failed, %d unknown, %d invalid")
    :format(s.file, s.rows, s.sent, s.refused, s.failed, s.unknown, s.invalid)
  if s.pending > 0 then line = line .. (", %d pending"):format(s.pending) end
  if next(s.codes) then line = line .. " (" .. codes_text(s.codes) .. ")" end
  return line
end

------------------------------------------------------------------------------
-- The report of every row

M.COLUMNS = { "row", "to", "outcome", "id", "code", "error", "state", "updated" }

local function csv_field(v)
  v = v == nil and "" or tostring(v)
  if v:find('[,"\r\n]') or v:match("^%s") or v:match("%s$") then
    return '"' .. v:gsub('"', '""') .. '"'
  end
  return v
end

local function tsv_field(v)
  v = v == nil and "" or tostring(v)
  return (v:gsub("[\t\r\n]", " "))
end

-- Writes records (each { row =, to =, ..., extra = {values} }) with the
-- extra columns' names, in format "csv", "tsv" or "json", through out.
function M.write_rows(records, extras, format, out)
  if format == "json" then
    local list = {}
    for i, r in ipairs(records) do
      local rec = {}
      for _, k in ipairs(M.COLUMNS) do rec[k] = r[k] end
      if #extras > 0 then
        rec.extra = {}
        for j, name in ipairs(extras) do rec.extra[name] = r.extra[j] or "" end
      end
      list[i] = rec
    end
    out(M.json(M.list(list)))
    return
  end
  local field, sep, eol = csv_field, ",", "\r\n"
  if format == "tsv" then field, sep, eol = tsv_field, "\t", "\n" end
  local head = {}
  for i, k in ipairs(M.COLUMNS) do head[i] = field(k) end
  for _, name in ipairs(extras) do head[#head + 1] = field(name) end
  local lines = { table.concat(head, sep) }
  for _, r in ipairs(records) do
    local cells = {}
    for i, k in ipairs(M.COLUMNS) do cells[i] = field(r[k]) end
    for j = 1, #extras do cells[#cells + 1] = field(r.extra[j]) end
    lines[#lines + 1] = table.concat(cells, sep)
  end
  io.stdout:write(table.concat(lines, eol), eol)
end

-- The table campaign-status prints without --format: one line a row, the
-- columns aligned, "-" for an empty cell, the free text (code: error) last.
M.TABLE = { "ROW", "TO", "OUTCOME", "ID", "STATE", "CODE/ERROR" }

local function table_cells(r)
  local problem = r.code and (r.code .. (r.error and (": " .. r.error) or "")) or r.error
  local cells = { tostring(r.row), r.to, r.outcome, r.id and r.id:gsub(" ", ","),
                  r.state and r.state:gsub(" ", ","), problem }
  for i = 1, #M.TABLE do
    local v = cells[i]
    v = (v == nil or v == "") and "-" or tostring(v)
    cells[i] = v:gsub("[%c]", " ")
  end
  return cells
end

function M.write_table(records, write)
  local rows, width = { M.TABLE }, {}
  for _, r in ipairs(records) do rows[#rows + 1] = table_cells(r) end
  for _, cells in ipairs(rows) do
    for i = 1, #cells - 1 do width[i] = math.max(width[i] or 0, #cells[i]) end
  end
  local fmt = {}
  for i = 1, #M.TABLE - 1 do fmt[i] = "%-" .. width[i] .. "s" end
  fmt = table.concat(fmt, "  ") .. "  %s"
  local lines = {}
  for i, cells in ipairs(rows) do
    lines[i] = fmt:format((table.unpack or unpack)(cells)):gsub("%s+$", "")
  end
  write(table.concat(lines, "\n"))
end

return M
