-- streamtelecom.campaign: the `campaign` and `campaign-status` commands of
-- bin/streamtelecom. A campaign sends one SMS per row of a CSV or JSON-lines
-- file and keeps a journal, so that a run killed at any moment can be resumed
-- by running the same command again without texting anybody twice.
--
-- Pure Lua 5.1-5.4 and LuaJIT; the sending is the C module's send_many.
--
-- The journal is JSON lines, one record per write(2), appended:
--   {"file":..,"rows":N,"sha256":..,"t":"campaign","v":1}   first record
--   {"row":N,"t":"started","to":..}   before row N's request can leave
--   {"msgs":[{"id":..,"to":..}],"row":N,"t":"done"}           after its answer
--   {"code":..,"err":..,"row":N,"t":"done"}                   or its failure
-- A "started" record is made durable (fdatasync) before the request leaves;
-- a row counts as sent once its "done" record is durable.

local M = {}

local EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_TRANSPORT, EXIT_UNSETTLED = 0, 1, 2, 3, 4

local KNOWN_COLUMN = { to = true, text = true, sender = true, callback_url = true, name = true }

------------------------------------------------------------------------------
-- Small helpers

local function shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- os.execute's success across Lua 5.1 (a number) and 5.2+ (true/nil).
local function succeeded(a, _, c)
  if type(a) == "number" then return a == 0 end
  return a == true and (c == nil or c == 0)
end

local function read_file(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, err end
  local s = f:read("*a")
  f:close()
  return s
end

-- A wall clock with sub-second resolution: LuaSocket when present, else
-- Linux's /proc/uptime, else whole seconds.
local now
do
  local ok, socket = pcall(require, "socket")
  if ok and type(socket) == "table" and socket.gettime then
    now = socket.gettime
  elseif io.open("/proc/uptime") then
    now = function()
      local f = io.open("/proc/uptime")
      local t = f and f:read("*n")
      if f then f:close() end
      return t or os.time()
    end
  else
    now = os.time
  end
end

local function sleep(seconds)
  local ok, socket = pcall(require, "socket")
  if ok and type(socket) == "table" and socket.sleep then return socket.sleep(seconds) end
  os.execute("sleep " .. string.format("%.3f", seconds))
end

local function plural(n, word)
  return n .. " " .. word .. (n == 1 and "" or "s")
end

------------------------------------------------------------------------------
-- JSON: enough for flat records and the JSON-lines input.

local ARRAY = {}
M.ARRAY = ARRAY

local ESCAPES = {
  ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f",
  ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t",
}

local function json_string(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    return ESCAPES[c] or string.format("\\u%04x", c:byte())
  end) .. '"'
end

local encode

local function encode_table(t)
  if getmetatable(t) == ARRAY or t[1] ~= nil then
    local parts = {}
    for i = 1, #t do parts[i] = encode(t[i]) end
    return "[" .. table.concat(parts, ",") .. "]"
  end
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = tostring(k) end
  table.sort(keys)
  local parts = {}
  for i, k in ipairs(keys) do parts[i] = json_string(k) .. ":" .. encode(t[k]) end
  return "{" .. table.concat(parts, ",") .. "}"
end

function encode(v)
  local tv = type(v)
  if tv == "string" then return json_string(v) end
  if tv == "number" then
    if v ~= v or v == math.huge or v == -math.huge then return "null" end
    if math.floor(v) == v and math.abs(v) < 2 ^ 53 then return string.format("%d", v) end
    return string.format("%.17g", v)
  end
  if tv == "boolean" then return tostring(v) end
  if tv == "table" then return encode_table(v) end
  return "null"
end
M.encode = encode

local function utf8_char(cp)
  if cp < 0x80 then return string.char(cp) end
  if cp < 0x800 then
    return string.char(0xC0 + math.floor(cp / 0x40), 0x80 + cp % 0x40)
  end
  if cp < 0x10000 then
    return string.char(0xE0 + math.floor(cp / 0x1000), 0x80 + math.floor(cp / 0x40) % 0x40,
                       0x80 + cp % 0x40)
  end
  return string.char(0xF0 + math.floor(cp / 0x40000), 0x80 + math.floor(cp / 0x1000) % 0x40,
                     0x80 + math.floor(cp / 0x40) % 0x40, 0x80 + cp % 0x40)
end

local decode_value

local function skip_space(s, pos)
  return s:find("[^ \t\r\n]", pos) or #s + 1
end

local function decode_string(s, pos)
  local parts, i = {}, pos + 1
  while true do
    local j = s:find('["\\%c]', i)
    if not j then error("unterminated string", 0) end
    parts[#parts + 1] = s:sub(i, j - 1)
    local c = s:sub(j, j)
    if c == '"' then return table.concat(parts), j + 1 end
    if c ~= "\\" then error("control character in a string", 0) end
    local e = s:sub(j + 1, j + 1)
    local simple = ({ ['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b", f = "\f",
                      n = "\n", r = "\r", t = "\t" })[e]
    if simple then
      parts[#parts + 1] = simple
      i = j + 2
    elseif e == "u" then
      local hex = s:match("^%x%x%x%x", j + 2)
      if not hex then error("bad \\u escape", 0) end
      local cp = tonumber(hex, 16)
      i = j + 6
      if cp >= 0xD800 and cp <= 0xDBFF then
        local low = s:match("^\\u(%x%x%x%x)", i)
        low = low and tonumber(low, 16)
        if not low or low < 0xDC00 or low > 0xDFFF then error("lone surrogate", 0) end
        cp = 0x10000 + (cp - 0xD800) * 0x400 + (low - 0xDC00)
        i = i + 6
      elseif cp >= 0xDC00 and cp <= 0xDFFF then
        error("lone surrogate", 0)
      end
      parts[#parts + 1] = utf8_char(cp)
    else
      error("bad escape", 0)
    end
  end
end

local function decode_container(s, pos, close, on_item)
  pos = skip_space(s, pos + 1)
  if s:sub(pos, pos) == close then return pos + 1 end
  while true do
    pos = skip_space(s, on_item(pos))
    local c = s:sub(pos, pos)
    if c == close then return pos + 1 end
    if c ~= "," then error("want ',' or '" .. close .. "' at byte " .. pos, 0) end
    pos = skip_space(s, pos + 1)
  end
end

local LITERALS = { ["true"] = true, ["false"] = false }

function decode_value(s, pos)
  pos = skip_space(s, pos)
  local c = s:sub(pos, pos)
  if c == "{" then
    local obj = {}
    local after = decode_container(s, pos, "}", function(p)
      if s:sub(p, p) ~= '"' then error("want a key at byte " .. p, 0) end
      local key, q = decode_string(s, p)
      q = skip_space(s, q)
      if s:sub(q, q) ~= ":" then error("want ':' at byte " .. q, 0) end
      local v
      v, q = decode_value(s, q + 1)
      obj[key] = v
      return q
    end)
    return obj, after
  elseif c == "[" then
    local arr = setmetatable({}, ARRAY)
    local after = decode_container(s, pos, "]", function(p)
      local v, q = decode_value(s, p)
      arr[#arr + 1] = v
      return q
    end)
    return arr, after
  elseif c == '"' then
    return decode_string(s, pos)
  end
  local num = s:match("^-?%d+%.?%d*[eE]?[-+]?%d*", pos)
  if num and tonumber(num) then return tonumber(num), pos + #num end
  for word, v in pairs(LITERALS) do
    if s:sub(pos, pos + #word - 1) == word then return v, pos + #word end
  end
  if s:sub(pos, pos + 3) == "null" then return nil, pos + 4 end
  error("unexpected " .. (c == "" and "end" or ("'" .. c .. "'")) .. " at byte " .. pos, 0)
end

-- Answers the value, or nil and why.
local function decode(s)
  local ok, v, pos = pcall(decode_value, s, 1)
  if not ok then return nil, v end
  if skip_space(s, pos) <= #s then return nil, "text after the value at byte " .. pos end
  return v
end
M.decode = decode

------------------------------------------------------------------------------
-- Input: CSV (RFC 4180) and JSON lines. Both answer a list of rows
-- { n = row number, line = first line, fields = { to =, text =, ... } }
-- and a list of row errors; a broken file answers nil, why.

local function count_newlines(s)
  local _, n = s:gsub("\n", "")
  return n
end

-- One CSV record from pos: its fields, the next position and line.
local function csv_record(s, pos, line)
  local fields, n = {}, #s
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
      if c ~= "," and c ~= "\n" and c ~= "" and s:sub(pos, pos + 1) ~= "\r\n" then
        return nil, "line " .. line .. ": text after a closing quote"
      end
    else
      local q = s:find('[,\n"]', pos) or n + 1
      if s:sub(q, q) == '"' then
        return nil, "line " .. line .. ": a quote inside an unquoted field (quote the whole field)"
      end
      field = s:sub(pos, q - 1)
      if s:sub(q, q) ~= "," then field = field:gsub("\r$", "") end
      pos = q
    end
    fields[#fields + 1] = field
    local c = s:sub(pos, pos)
    if c == "," then
      pos = pos + 1
    else
      if c == "\r" then pos = pos + 1 end
      if s:sub(pos, pos) == "\n" then pos = pos + 1; line = line + 1 end
      return fields, pos, line
    end
  end
end

local function csv_header(fields)
  local names, seen = {}, {}
  for i, raw in ipairs(fields) do
    local name = raw:gsub("^%s+", ""):gsub("%s+$", ""):lower()
    if not KNOWN_COLUMN[name] then
      return nil, ("unknown column '%s' in the header (columns: to, text, and optionally "
                   .. "sender, callback_url, name)"):format(raw)
    end
    if seen[name] then return nil, "column '" .. name .. "' appears twice in the header" end
    seen[name] = true
    names[i] = name
  end
  for _, need in ipairs({ "to", "text" }) do
    if not seen[need] then return nil, "the header has no '" .. need .. "' column" end
  end
  return names
end

function M.read_csv(s)
  local pos, line = 1, 1
  if s:sub(1, 3) == "\239\187\191" then pos = 4 end
  local rows, errors, header = {}, {}, nil
  while pos <= #s do
    local start = line
    local fields, p, l = csv_record(s, pos, line)
    if not fields then return nil, p end
    local blank = s:sub(pos, p - 1):match("^\r?\n?$")
    pos, line = p, l
    if not blank then
      if not header then
        local why
        header, why = csv_header(fields)
        if not header then return nil, "line " .. start .. ": " .. why end
      else
        local row = { n = #rows + #errors + 1, line = start, fields = {} }
        if #fields ~= #header then
          errors[#errors + 1] = { n = row.n, line = start,
            message = plural(#fields, "field") .. ", the header has " .. #header }
        else
          for i, name in ipairs(header) do
            if fields[i] ~= "" then row.fields[name] = fields[i] end
          end
          rows[#rows + 1] = row
        end
      end
    end
  end
  if not header then return nil, "the file is empty: want a header naming to,text" end
  return rows, errors
end

local function jsonl_row(obj, row)
  if type(obj) ~= "table" or getmetatable(obj) == ARRAY then
    return "want one JSON object per line"
  end
  for k, v in pairs(obj) do
    if not KNOWN_COLUMN[k] then
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
  if s:sub(1, 3) == "\239\187\191" then s = s:sub(4) end
  for text in (s .. "\n"):gmatch("([^\n]*)\n") do
    line = line + 1
    if text:find("%S") then
      local row = { n = #rows + #errors + 1, line = line, fields = {} }
      local obj, why = decode(text)
      if why == nil then why = jsonl_row(obj, row) end
      if why then
        errors[#errors + 1] = { n = row.n, line = line, message = why }
      else
        rows[#rows + 1] = row
      end
    end
  end
  return rows, errors
end

------------------------------------------------------------------------------
-- Validation: each column as a send would check it (client:url builds the
-- request without sending), then the whole row (one request at most).

local PROBE_TO, PROBE_TEXT = "79000000000", "x"

local function check_row(client, f)
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

local function row_error_text(e)
  local where = "row " .. e.n .. " (line " .. e.line .. ")"
  if e.column then where = where .. ", column " .. e.column end
  return where .. ": " .. e.message
end

------------------------------------------------------------------------------
-- The journal

local function file_sha256(path)
  local p = io.popen("sha256sum " .. shell_quote(path) .. " 2>/dev/null")
  local out = p and p:read("*a") or ""
  if p then p:close() end
  return out:match("^(%x+)")
end

-- How a journal makes what it wrote durable: the module's st._fdatasync,
-- else fdatasync through LuaJIT's FFI, else coreutils `sync --data` (one
-- process per call: the caller batches).
-- STREAMTELECOM_JOURNAL_SYNC=command forces the latter, =none skips syncing
-- (only to measure what syncing costs: a crash of the machine may then lose
-- records).
local function make_syncer(path, how, file)
  if how == "none" then return function() return true end, "none" end
  local st_ok, st = pcall(require, "streamtelecom")
  if how ~= "command" and st_ok and st._fdatasync then
    return function() return st._fdatasync(file) == true end, "fdatasync"
  end
  if how ~= "command" then
    local ok, ffi = pcall(require, "ffi")
    if ok then
      pcall(ffi.cdef, "int open(const char *, int, ...); int fdatasync(int); int close(int);")
      local fd = ffi.C.open(path, 1) -- O_WRONLY: only for fdatasync
      if fd >= 0 then
        return function() return ffi.C.fdatasync(fd) == 0 end, "fdatasync"
      end
    end
  end
  local cmd = "sync --data " .. shell_quote(path)
  return function() return succeeded(os.execute(cmd)) end, "sync --data"
end

local Journal = {}
Journal.__index = Journal

-- Reads an existing journal: the header and, per row, its last record.
local function read_journal(path)
  local s = read_file(path)
  if not s or s == "" then return nil end
  local j = { header = nil, last = {}, torn = 0, records = 0 }
  for text in s:gmatch("([^\n]*)\n?") do
    if text ~= "" then
      local rec = decode(text)
      if type(rec) ~= "table" then
        j.torn = j.torn + 1
      elseif rec.t == "campaign" and not j.header then
        j.header = rec
      elseif type(rec.row) == "number" then
        j.records = j.records + 1
        j.last[rec.row] = rec
      end
    end
  end
  j.ends_cleanly = s:sub(-1) == "\n"
  return j
end
M.read_journal = read_journal

function Journal.open(path, header, existing, sync_how)
  local f, err = io.open(path, existing and "ab" or "wb")
  if not f then return nil, err end
  f:setvbuf("no")
  local self = setmetatable({ f = f, path = path, dirty = false }, Journal)
  self.sync_now, self.sync_how = make_syncer(path, sync_how, f)
  self.syncs = 0
  if existing and not existing.ends_cleanly then f:write("\n") end
  if not (existing and existing.header) then self:write(header) end
  local ok, why = self:sync()
  if not ok then return nil, why end
  return self
end

-- One record, one write(2): a kill between two records never splits one.
function Journal:write(rec)
  local ok, err = self.f:write(encode(rec) .. "\n")
  if not ok then error("cannot write the journal " .. self.path .. ": " .. tostring(err), 0) end
  self.dirty = true
end

function Journal:sync()
  if not self.dirty then return true end
  self.syncs = self.syncs + 1
  if not self.sync_now() then
    return nil, "cannot sync the journal " .. self.path .. " to disk"
  end
  self.dirty = false
  return true
end

function Journal:close()
  local ok, err = self:sync()
  self.f:close()
  return ok, err
end

------------------------------------------------------------------------------
-- Outcomes

-- A done record's outcome: "sent", "refused", "failed" (a transport failure
-- before the request reached the gateway: sent again by the next run) or
-- "unknown" (a transport failure after it may have arrived), and its code.
local function outcome_of(rec, exit_code_for)
  local code = rec.code
  if rec.msgs then
    for _, m in ipairs(rec.msgs) do
      if not m.id then code = code or m.code end
    end
  end
  if not code then return "sent" end
  local exit = exit_code_for(code)
  if exit == EXIT_REFUSED then return "refused", code end
  if code == "connect" then return "failed", code end
  return "unknown", code
end

local function done_record(n, result)
  if result.code or result.err then
    return { t = "done", row = n, code = result.code, err = result.err }
  end
  local msgs = setmetatable({}, ARRAY)
  for i, m in ipairs(result) do
    msgs[i] = { to = m.to, id = m.id, code = m.code, err = m.err }
  end
  return { t = "done", row = n, msgs = msgs }
end

------------------------------------------------------------------------------
-- Progress: one self-updating line on a terminal, plain lines with
-- --progress elsewhere, nothing otherwise.

local function stderr_is_tty()
  return succeeded(os.execute("test -t 2"))
end

local Progress = {}
Progress.__index = Progress

function Progress.new(mode, describe)
  local self = setmetatable({ mode = mode, describe = describe, started = now(),
                              last = 0, done_here = 0 }, Progress)
  return self
end

local function clock_text(seconds)
  seconds = math.floor(seconds + 0.5)
  if seconds >= 3600 then
    return ("%d:%02d:%02d"):format(math.floor(seconds / 3600), math.floor(seconds / 60) % 60,
                                   seconds % 60)
  end
  return ("%d:%02d"):format(math.floor(seconds / 60), seconds % 60)
end

function Progress:line(remaining)
  local elapsed = now() - self.started
  local rate = elapsed > 0 and self.done_here / elapsed or 0
  local eta = rate > 0 and clock_text(remaining / rate) or "?"
  return ("%s  remaining %d  %.1f/s  ETA %s"):format(self.describe(), remaining, rate, eta)
end

function Progress:update(remaining, force)
  if self.mode == "off" then return end
  local t = now()
  local every = self.mode == "tty" and 0.2 or 1
  if not force and t - self.last < every then return end
  self.last = t
  if self.mode == "tty" then
    io.stderr:write("\r", self:line(remaining), "\27[K")
  else
    io.stderr:write("progress: ", self:line(remaining), "\n")
  end
end

function Progress:finish(remaining)
  if self.mode == "off" then return end
  self:update(remaining, true)
  if self.mode == "tty" then io.stderr:write("\n") end
end

local function progress_mode(opts)
  if stderr_is_tty() then return "tty" end
  if opts.progress then return "lines" end
  return "off"
end

------------------------------------------------------------------------------
-- Command line of the two commands

M.HELP = {
  campaign = [[
Usage: streamtelecom campaign FILE [--journal PATH] [--format csv|jsonl]
         [--concurrency N] [--rate R] [--skip-invalid] [--resend-unknown]
         [--progress] [--json]

Sends one SMS per row of FILE: CSV with a header naming the columns to,text
and optionally sender,callback_url,name (any order; RFC 4180 quoting), or JSON
lines (a .jsonl FILE or --format jsonl) with the same keys. Every row is
checked first; nothing is sent while any row is bad (--skip-invalid sends
the good ones and lists the bad).

The journal (--journal, default FILE.journal) records each row before its
request leaves and after its answer, on disk. Run the same command again to
resume: rows already answered are not sent again; rows whose outcome is
unknown (the run was killed while they were in flight, or the request timed
out after it left) are listed and sent again only with --resend-unknown. A
journal written for another file is refused.

  --concurrency N   requests in flight (default 8)
  --rate R          at most R requests a second
  --progress        the progress line even when stderr is not a terminal

Prints a summary (--json: a JSON object). Exit 0 when every row is sent,
1 when the gateway refused some, 2 bad input, 3 when some failed before
reaching the gateway (run again to send them), 4 when some rows have an
unknown outcome.
]],
  ["campaign-status"] = [[
Usage: streamtelecom campaign-status JOURNAL [--wait] [--timeout S]
         [--interval S] [--concurrency N] [--progress] [--json]

Prints the delivery state of every message id the journal holds, one line
per id in row order:  ROW TO ID STATE [TIME]
--wait polls every --interval seconds (default 5) until every message is
final or --timeout seconds (default 3600) pass. --json prints an array of
{"row":..,"to":..,"id":..,"state":..,...} records.
Exit 0, 1 (some ids refused), 3 (transport failure), 4 (--wait ended before
every message was final).
]],
}

local VALUE = { journal = true, format = true, concurrency = true, rate = true,
                url = true, sender = true, timeout = true, interval = true }
local FLAG = { ["skip-invalid"] = true, ["resend-unknown"] = true, progress = true,
               json = true, help = true, wait = true }
local ONLY = {
  campaign = { journal = true, format = true, rate = true, ["skip-invalid"] = true,
               ["resend-unknown"] = true },
  ["campaign-status"] = { wait = true, interval = true },
}

local function parse(command, argv, ctx)
  local opts, positional, i = {}, {}, 1
  while i <= #argv do
    local a = argv[i]
    if a == "-h" then a = "--help" end
    if a:sub(1, 2) == "--" and #a > 2 then
      local name, value = a:match("^%-%-([^=]*)=(.*)$")
      name = name or a:sub(3)
      if name:match("^pass") or name:match("^pwd") or name:match("^secret") then
        ctx.usage_error("--password is refused: other users of this machine can read a "
                        .. "command line (ps, /proc); set the password in the environment")
      end
      local only = false
      for cmd, set in pairs(ONLY) do
        if set[name] and cmd ~= command then only = cmd end
      end
      if only then ctx.usage_error("--" .. name .. " is only for " .. only) end
      if FLAG[name] then
        if value then ctx.usage_error("--" .. name .. " takes no value") end
        opts[name] = true
      elseif VALUE[name] then
        if not value then
          i = i + 1
          value = argv[i]
          if value == nil then ctx.usage_error("--" .. name .. " needs a value") end
        end
        opts[name] = value
      else
        ctx.usage_error("unknown option --" .. name)
      end
    elseif a:sub(1, 1) == "-" and a ~= "-" then
      ctx.usage_error("unknown option " .. a:sub(1, 2))
    else
      positional[#positional + 1] = a
    end
    i = i + 1
  end
  return opts, positional
end

local function number_option(ctx, opts, name, min, integer)
  local v = opts[name]
  if v == nil then return nil end
  local n = tonumber(v)
  if not n or n ~= n or n < min or n == math.huge or (integer and n ~= math.floor(n)) then
    ctx.usage_error(("--%s wants a%s number >= %s"):format(name, integer and " whole" or "", min))
  end
  return n
end

------------------------------------------------------------------------------
-- campaign FILE

local function load_rows(path, format, ctx)
  local content, err = read_file(path)
  if not content then
    ctx.warn("cannot read " .. path .. ": " .. tostring(err))
    os.exit(EXIT_USAGE)
  end
  local rows, errors
  if format == "jsonl" then
    rows, errors = M.read_jsonl(content)
  else
    rows, errors = M.read_csv(content)
  end
  if not rows then
    ctx.warn(path .. ": " .. errors)
    os.exit(EXIT_USAGE)
  end
  return rows, errors
end

local function validate_rows(client, rows, errors)
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

-- The journal of a previous run of this file, or exit 2 when it is another's.
local function previous_journal(path, sha, ctx)
  local j = read_journal(path)
  if not j then return nil end
  if not j.header then
    if j.records == 0 then return nil end
    ctx.warn("journal " .. path .. " has no campaign record: not a journal of this "
             .. "command, refusing to touch it")
    os.exit(EXIT_USAGE)
  end
  if j.header.sha256 ~= sha then
    ctx.warn(("journal %s belongs to another file (%s, sha256 %s), not to this one "
              .. "(sha256 %s); give another --journal, or remove it to start over")
             :format(path, tostring(j.header.file), tostring(j.header.sha256), sha))
    os.exit(EXIT_USAGE)
  end
  return j
end

-- Sorts the good rows into those to send now and those settled before.
local function plan(rows, journal, resend_unknown, ctx)
  local todo, state = {}, { sent = 0, refused = 0, failed = 0, unknown = 0, codes = {},
                            unknown_rows = {}, earlier = 0 }
  for _, row in ipairs(rows) do
    local rec = journal and journal.last[row.n]
    local outcome, code
    if rec and rec.t == "done" then
      outcome, code = outcome_of(rec, ctx.exit_code_for)
    elseif rec then
      outcome = "unknown"
    end
    if outcome == nil or outcome == "failed" or (outcome == "unknown" and resend_unknown) then
      todo[#todo + 1] = row
    else
      state.earlier = state.earlier + 1
      state[outcome] = state[outcome] + 1
      if code then state.codes[code] = (state.codes[code] or 0) + 1 end
      if outcome == "unknown" then
        state.unknown_rows[#state.unknown_rows + 1] = { row = row.n, to = row.fields.to,
                                                        code = code }
      end
    end
  end
  return todo, state
end

local function list_rows(list, limit)
  local parts = {}
  for i = 1, math.min(#list, limit) do
    parts[i] = list[i].row .. " (" .. list[i].to .. ")"
  end
  local s = table.concat(parts, ", ")
  if #list > limit then s = s .. (", and %d more"):format(#list - limit) end
  return s
end

local function codes_text(codes)
  local names = {}
  for k in pairs(codes) do names[#names + 1] = k end
  table.sort(names)
  for i, k in ipairs(names) do names[i] = k .. " " .. codes[k] end
  return table.concat(names, ", ")
end

-- The send: journal records around each request, durable at the right times.
local function send_rows(client, todo, journal, state, progress, concurrency, per_request_sync)
  local items = {}
  for i, row in ipairs(todo) do
    local f = row.fields
    items[i] = { to = f.to, text = f.text, sender = f.sender, callback_url = f.callback_url,
                 name = f.name }
  end
  local in_flight, pending, remaining = 0, {}, #todo
  -- Counts move only once the records behind them are on disk.
  local function settle()
    local ok, why = journal:sync()
    if not ok then error(why, 0) end
    for _, p in ipairs(pending) do
      state[p.outcome] = state[p.outcome] + 1
      if p.code then state.codes[p.code] = (state.codes[p.code] or 0) + 1 end
      if p.outcome == "unknown" then
        state.unknown_rows[#state.unknown_rows + 1] = { row = p.row, to = p.to, code = p.code }
      end
    end
    pending = {}
  end
  local hooks = {
    on_start = function(i, item)
      journal:write({ t = "started", row = todo[i].n, to = item.to })
      in_flight = in_flight + 1
      -- The engine fills every free slot before any of those requests can
      -- leave: one sync after the last start of a round covers them all.
      if per_request_sync or in_flight >= concurrency or i == #items then settle() end
    end,
    on_result = function(i, result)
      local rec = done_record(todo[i].n, result)
      journal:write(rec)
      in_flight, remaining = in_flight - 1, remaining - 1
      local outcome, code = outcome_of(rec, state.exit_code_for)
      pending[#pending + 1] = { row = todo[i].n, to = todo[i].fields.to, outcome = outcome,
                                code = code }
      progress.done_here = progress.done_here + 1
      progress:update(remaining)
    end,
  }
  local ok, results, err, code = pcall(client.send_many, client, items, hooks)
  local synced, why = pcall(settle)
  if not ok then return nil, results, "journal" end
  if not results then return nil, err, code end
  if not synced then return nil, why, "journal" end
  return true
end

local function summary_of(state, path, journal_path, rows_total, invalid)
  local unknown_rows = setmetatable({}, ARRAY)
  for i, u in ipairs(state.unknown_rows) do unknown_rows[i] = u end
  local bad = setmetatable({}, ARRAY)
  for i, e in ipairs(invalid) do
    bad[i] = { row = e.n, line = e.line, column = e.column, err = e.message }
  end
  return { file = path, journal = journal_path, rows = rows_total, sent = state.sent,
           refused = state.refused, failed = state.failed, unknown = state.unknown,
           invalid = #invalid, codes = state.codes, unknown_rows = unknown_rows,
           invalid_rows = bad, earlier = state.earlier }
end

local function report(summary, opts, ctx)
  if opts.json then
    ctx.out(encode(summary))
  else
    ctx.out(("%s: %d rows: %d sent, %d refused, %d failed, %d unknown, %d invalid%s")
      :format(summary.file, summary.rows, summary.sent, summary.refused, summary.failed,
              summary.unknown, summary.invalid,
              next(summary.codes) and (" (" .. codes_text(summary.codes) .. ")") or ""))
  end
  if summary.unknown > 0 then
    ctx.warn(("%s with an unknown outcome (sent or not: check them, then run again with "
              .. "--resend-unknown to send them again): rows %s")
             :format(plural(summary.unknown, "row"), list_rows(summary.unknown_rows, 20)))
  end
  if summary.failed > 0 then
    ctx.warn(plural(summary.failed, "row") .. " failed before reaching the gateway: "
             .. "run the same command again to send them")
  end
  if summary.unknown > 0 then return EXIT_UNSETTLED end
  if summary.failed > 0 then return EXIT_TRANSPORT end
  if summary.refused > 0 then return EXIT_REFUSED end
  return EXIT_OK
end

function M.campaign(argv, ctx)
  local opts, positional = parse("campaign", argv, ctx)
  if opts.help then io.stdout:write(M.HELP.campaign); return EXIT_OK end
  if #positional ~= 1 then ctx.usage_error("campaign needs one FILE") end
  local path = positional[1]
  local format = opts.format or (path:lower():match("%.jsonl$") and "jsonl" or "csv")
  if format ~= "csv" and format ~= "jsonl" then ctx.usage_error("--format is csv or jsonl") end
  local concurrency = number_option(ctx, opts, "concurrency", 1, true) or 8
  local rate = number_option(ctx, opts, "rate", 0.001)
  local journal_path = opts.journal or (path .. ".journal")
  for k, v in pairs(ctx.options) do if opts[k] == nil then opts[k] = v end end

  local rows, invalid = load_rows(path, format, ctx)
  local rows_total = #rows + #invalid
  local client = ctx.new_client(opts, { concurrency = concurrency, rate = rate })
  rows = validate_rows(client, rows, invalid)
  for _, e in ipairs(invalid) do ctx.warn(row_error_text(e)) end
  if #invalid > 0 and not opts["skip-invalid"] then
    ctx.warn(("%s of %d bad: nothing sent (--skip-invalid sends the others)")
             :format(plural(#invalid, "row"), rows_total))
    if opts.json then
      ctx.out(encode(summary_of({ sent = 0, refused = 0, failed = 0, unknown = 0, codes = {},
                                  unknown_rows = {}, earlier = 0 },
                                path, journal_path, rows_total, invalid)))
    end
    client:close()
    return EXIT_USAGE
  end

  local sha = file_sha256(path)
  if not sha then ctx.warn("cannot hash " .. path .. " (sha256sum)"); os.exit(EXIT_USAGE) end
  local previous = previous_journal(journal_path, sha, ctx)
  local todo, state = plan(rows, previous, opts["resend-unknown"], ctx)
  state.exit_code_for = ctx.exit_code_for
  local journal, err = Journal.open(journal_path, { t = "campaign", v = 1, file = path,
                                                     sha256 = sha, rows = rows_total },
                                    previous, os.getenv("STREAMTELECOM_JOURNAL_SYNC"))
  if not journal then
    ctx.warn("cannot open the journal " .. journal_path .. ": " .. tostring(err))
    client:close()
    return EXIT_USAGE
  end
  if state.unknown > 0 then
    ctx.warn(("not sending %s with an unknown outcome from an earlier run (rows %s); "
              .. "--resend-unknown sends them again")
             :format(plural(state.unknown, "row"), list_rows(state.unknown_rows, 20)))
  end

  local progress = Progress.new(progress_mode(opts), function()
    return ("sent %d  refused %d  failed %d  unknown %d"):format(
      state.sent, state.refused, state.failed, state.unknown)
  end)
  local sent, why, code = true, nil, nil
  if #todo > 0 then
    progress:update(#todo, true)
    sent, why, code = send_rows(client, todo, journal, state, progress, concurrency, rate ~= nil)
  end
  progress:finish(0)
  journal:close()
  client:close()
  if not sent then
    ctx.warn("campaign stopped (" .. tostring(code) .. "): " .. tostring(why))
  end
  local status = report(summary_of(state, path, journal_path, rows_total, invalid), opts, ctx)
  if not sent and status < EXIT_TRANSPORT then status = EXIT_TRANSPORT end
  return status
end

------------------------------------------------------------------------------
-- campaign-status JOURNAL

local function journal_ids(path, ctx)
  local j = read_journal(path)
  if not j or not j.header then
    ctx.warn(path .. " is not a campaign journal")
    os.exit(EXIT_USAGE)
  end
  local rows = {}
  for n in pairs(j.last) do rows[#rows + 1] = n end
  table.sort(rows)
  local ids, where, unknown = {}, {}, 0
  for _, n in ipairs(rows) do
    local rec = j.last[n]
    if rec.t == "done" and rec.msgs then
      for _, m in ipairs(rec.msgs) do
        if m.id then
          ids[#ids + 1] = m.id
          where[m.id] = { row = n, to = m.to }
        end
      end
    elseif rec.t ~= "done" then
      unknown = unknown + 1
    end
  end
  return ids, where, unknown
end

local function state_line(id, w, rec, ctx)
  local head = w.row .. " " .. tostring(w.to) .. " " .. id .. " "
  if rec.state then return head .. rec.state .. (rec.updated and (" " .. rec.updated) or "") end
  local verdict = ctx.exit_code_for(rec.code) == EXIT_REFUSED and "refused" or "failed"
  return head .. verdict .. " " .. tostring(rec.code) .. ": " .. tostring(rec.err)
end

local function poll_states(client, ids, map, progress)
  local pending = {}
  for _, id in ipairs(ids) do
    local rec = map[id]
    if not (rec and rec.final) then pending[#pending + 1] = id end
  end
  if #pending == 0 then return 0 end
  local left = #pending
  local res = client:status_many(pending, { on_result = function(id, rec)
    map[id] = rec
    left = left - 1
    progress.done_here = progress.done_here + 1
    progress:update(left)
  end })
  if not res then return #pending end
  local still = 0
  for _, id in ipairs(pending) do
    if not (map[id] and map[id].final) then still = still + 1 end
  end
  return still
end

function M.status(argv, ctx)
  local opts, positional = parse("campaign-status", argv, ctx)
  if opts.help then io.stdout:write(M.HELP["campaign-status"]); return EXIT_OK end
  if #positional ~= 1 then ctx.usage_error("campaign-status needs one JOURNAL") end
  local concurrency = number_option(ctx, opts, "concurrency", 1, true) or 8
  local interval = math.max(1, number_option(ctx, opts, "interval", 0) or 5)
  local wait_for = number_option(ctx, opts, "timeout", 0) or 3600
  -- As for wait: --timeout after the command is the waiting time.
  opts.timeout = ctx.options.timeout
  for k, v in pairs(ctx.options) do if opts[k] == nil then opts[k] = v end end
  local ids, where, unknown = journal_ids(positional[1], ctx)
  local client = ctx.new_client(opts, { concurrency = concurrency })
  local map = {}
  local progress = Progress.new(progress_mode(opts), function()
    local counts = { final = 0, pending = 0, failed = 0 }
    for _, id in ipairs(ids) do
      local rec = map[id]
      if rec and rec.final then counts.final = counts.final + 1
      elseif rec and rec.code then counts.failed = counts.failed + 1
      else counts.pending = counts.pending + 1 end
    end
    return ("final %d  not final %d  failed %d"):format(counts.final, counts.pending,
                                                       counts.failed)
  end)
  local deadline = now() + wait_for
  local still = poll_states(client, ids, map, progress)
  while opts.wait and still > 0 and now() + interval <= deadline do
    progress:update(still, true)
    sleep(interval)
    still = poll_states(client, ids, map, progress)
  end
  progress:finish(0)
  client:close()
  return M.print_states(ids, where, map, unknown, opts, ctx)
end

function M.print_states(ids, where, map, unknown, opts, ctx)
  local status, pending, list = EXIT_OK, 0, setmetatable({}, ARRAY)
  for _, id in ipairs(ids) do
    local rec = map[id] or { err = "no answer for this id", code = "gateway" }
    local w = where[id]
    if rec.state then
      if not rec.final then pending = pending + 1 end
    else
      local c = ctx.exit_code_for(rec.code)
      if c > status then status = c end
    end
    if opts.json then
      list[#list + 1] = { row = w.row, to = w.to, id = id, state = rec.state, raw = rec.raw,
                          final = rec.final, updated = rec.updated, err = rec.err,
                          code = rec.code }
    else
      ctx.out(state_line(id, w, rec, ctx))
    end
  end
  if opts.json then ctx.out(encode(list)) end
  if unknown > 0 then
    ctx.warn(plural(unknown, "row") .. " of the journal have an unknown outcome: no id to follow")
  end
  if pending > 0 then
    ctx.warn(plural(pending, "message") .. " not final yet")
    if opts.wait and status == EXIT_OK then status = EXIT_UNSETTLED end
  end
  return status
end

-- bin/streamtelecom's entry: command is "campaign" or "campaign-status",
-- argv the words after it; ctx carries the script's helpers and the options
-- given before the command.
function M.main(command, argv, ctx)
  if command == "campaign" then return M.campaign(argv, ctx) end
  return M.status(argv, ctx)
end

return M
