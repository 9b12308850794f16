-- streamtelecom.campaign.journal: the campaign's own file, one JSON record a
-- line, only ever appended:
--   {"t":"campaign","v":1,"file":..,"sha256":..,"rows":N,...}   first record
--   {"t":"run","boot":..}    each run's first: the machine's boot id
--   {"t":"started","row":N,"to":..}     durable before row N's request can
--                            leave: written ahead for the rows about to start
--   {"t":"left","row":N}     the run's started rows up to row N are leaving:
--                            written (not synced) before any of their bytes
--   {"t":"done","row":N,"msgs":[{"to":..,"id":..}]}         after its answer
--   {"t":"done","row":N,"code":..,"err":..,"sent":false}    or its failure
--   {"t":"end"}              the run ended cleanly: its records are durable
-- A started row past its run's last "left" never left, when the file can
-- be believed about "left": the run ended cleanly, or it ran on this boot
-- (a write that returned is in the page cache, whatever killed the
-- process). After a power loss (another boot) such a row may have left: it
-- is unknown, as a started row of a journal without run records.
-- A run holds an exclusive flock on the journal's own descriptor from start
-- to end: one run at a time, and no other file.
local st = require("streamtelecom")
local cjson = require("cjson")

local M = {}

M.EXIT_BUSY = 5

-- Refusals that say the account cannot send at all: they stop a run, and
-- the rows they refused are sent again by the next one.
M.ACCOUNT_CODES = { auth = true, blocked = true }

local function open_error(path, err)
  if tostring(err):find("symbolic link", 1, true) then
    return "the journal " .. path .. " is a symbolic link: refusing to follow it"
  end
  return "cannot open the journal " .. path .. ": " .. tostring(err)
end

-- Opens the journal (created 0600 when absent, never through a symlink,
-- never truncated) and takes its lock, before anything else is done: the
-- journal is its own lock (the kernel drops it when the process ends, a
-- kill -9 included). Answers the open file, or nil, a sentence and the
-- exit code. Nothing is written: M.open decides whether the file is this
-- campaign's.
function M.lock(path)
  local f, err = st._append(path)
  if not f then return nil, open_error(path, err), 2 end
  local ok, why, pid = f:lock()
  if ok then return f end
  f:close()
  if why == "busy" then
    return nil, ("another run of this campaign is in progress (pid %s); wait for it to end, "
                 .. "or stop it first"):format(pid ~= 0 and string.format("%d", pid) or "unknown"),
           M.EXIT_BUSY
  end
  return nil, "cannot lock the journal " .. path .. ": " .. tostring(why), 2
end

-- This machine's boot id (nil where the kernel has none): a run's "left"
-- records can be believed on the boot that wrote them.
function M.boot_id()
  if M.boot == nil then
    local f = io.open("/proc/sys/kernel/random/boot_id", "rb")
    M.boot = f and f:read("*l") or false
    if f then f:close() end
  end
  return M.boot or nil
end

-- Whether a started record's request never left: it is past its run's
-- last "left", and that run's "left" records can be believed.
local function never_left(rec, here)
  local run = rec._run
  return run ~= nil and rec.row > run.left and (run.ended or (here ~= nil and run.boot == here))
end

-- A row's last record once the started records whose request never left
-- are taken back: the record before them (nil: pending).
local function settled(rec, here)
  while rec and rec.t == "started" and never_left(rec, here) do rec = rec._prev end
  return rec
end

-- The records of a journal's text: the header, and per row its last record
-- (started rows that never left taken back). A line that is not a whole
-- record (a torn last line: a crash mid-write) is skipped.
function M.parse(s)
  local j = { header = nil, last = {} }
  local last, run = j.last, nil
  for text in s:gmatch("[^\n]+") do
    local ok, rec = pcall(cjson.decode, text)
    if not ok or type(rec) ~= "table" then rec = {} end -- torn: matches nothing below
    if rec.t == "campaign" and not j.header then
      j.header = rec
    elseif rec.t == "run" then
      run = { boot = rec.boot, left = 0 }
    elseif rec.t == "end" and run then
      run.ended = true
    elseif rec.t == "left" and run and type(rec.row) == "number" then
      run.left = math.max(run.left, rec.row)
    elseif type(rec.row) == "number" then
      if rec.t == "started" and run then rec._run, rec._prev = run, last[rec.row] end
      last[rec.row] = rec
    end
  end
  local here = M.boot_id()
  for n, rec in pairs(last) do
    if rec.t == "started" then last[n] = settled(rec, here) end
  end
  j.ends_cleanly = s == "" or s:sub(-1) == "\n"
  return j
end

-- Reads a journal without taking anything (campaign-status, during a run
-- too). Answers it, or nil and a sentence that names the file.
function M.read(path)
  local f, err = io.open(path, "rb") -- err names path
  if not f then return nil, "cannot read the journal " .. tostring(err) end
  local s = f:read("*a")
  f:close()
  local j = M.parse(s or "")
  if not j.header then return nil, path .. " is not a campaign journal" end
  return j
end

-- Why a journal is not the one of the file header describes. Removing the
-- journal would send every row again, the ones it saw answered included:
-- never the advice.
function M.other_file(path, was, now)
  if was.file == now.file then
    return ("%s changed since its journal %s was written (sha256 %s then, %s now): the "
            .. "journal's row numbers no longer name the same rows; put the file back as it was "
            .. "to resume, and new or mended rows in a file of their own"):format(now.file, path,
                                                            tostring(was.sha256), now.sha256)
  end
  return ("journal %s belongs to another file (%s, sha256 %s), not to this one (sha256 %s); "
          .. "give this file a --journal of its own"):format(path, tostring(was.file),
                                                             tostring(was.sha256), now.sha256)
end

local Journal = {}
Journal.__index = Journal

local function refuse(f, why)
  f:close()
  return nil, why
end

-- The journal of the campaign header describes, in f (M.lock's file at
-- path): this campaign's journal, or a new one when f is empty; never
-- another file (it is refused untouched, f closed). Answers the journal
-- (its last: what earlier runs left, per row), or nil and why.
function M.open(f, path, header)
  local content, rerr = f:read()
  if not content then return refuse(f, "cannot read the journal " .. path .. ": " .. rerr) end
  local previous
  if content ~= "" then
    previous = M.parse(content)
    if not previous.header then
      return refuse(f, ("%s is not a campaign journal: refusing to touch it (give another "
                        .. "--journal)"):format(path))
    end
    if previous.header.sha256 ~= header.sha256 then
      return refuse(f, M.other_file(path, previous.header, header))
    end
  end
  -- last: what earlier runs left, per row (the records of this run go to
  -- the caller as they become durable).
  local self = setmetatable({ f = f, path = path, lines = {}, recs = {}, syncs = 0,
                              last = previous and previous.last or {} }, Journal)
  -- A torn last line (a crash mid-write) is ended, so that the next record
  -- starts on a line of its own.
  if previous and not previous.ends_cleanly then self.lines[1] = "" end
  if not previous then self:add(header) end
  -- Synced with this run's first record: what earlier runs wrote (their
  -- "left" records included) is durable before this run decides anything.
  self:add({ t = "run", boot = M.boot_id() })
  local ok, why = self:flush()
  if not ok then return refuse(f, why) end
  return self
end

-- Buffers a record's line: it reaches the file at the next write, and is
-- durable after the next flush.
local function buffer(self, line)
  self.lines[#self.lines + 1] = line
  self.dirty = true
end

function Journal:add(rec) buffer(self, cjson.encode(rec)) end

-- The two records of every row are written by st._journal_line when their
-- strings stand in JSON as they are (numbers and ids: nearly always), and
-- by cjson otherwise (4 times as long).
local journal_line = st._journal_line

-- Buffers row n's "started" record (to: its number).
function Journal:started(n, to)
  local line = journal_line(n, to)
  if not line then return self:add({ t = "started", row = n, to = to }) end
  buffer(self, line)
end

-- Buffers a "left" record: the run's started rows up to row n are leaving
-- (not a record to sync for).
function Journal:left(n)
  self.lines[#self.lines + 1] = '{"t":"left","row":' .. n .. "}"
end

-- Buffers row n's "done" record of a send_many result, and answers it: the
-- flush that makes it durable hands it back.
function Journal:done(n, result)
  local rec = M.done_record(n, result)
  local m = rec.msgs and #rec.msgs == 1 and rec.msgs[1]
  local line = m and m.code == nil and m.err == nil and m.id and journal_line(n, m.to, m.id)
  if line then buffer(self, line) else self:add(rec) end
  self.recs[#self.recs + 1] = rec
  -- And whether it is the common answer: one message, sent, with its id.
  return rec, line and true or false
end

local function broken(self, err)
  self.broken = "cannot write the journal " .. self.path .. ": " .. tostring(err)
  return nil, self.broken
end

-- Writes the buffered records in one write(2), without making them
-- durable (a crash keeps them, a power loss may not). Answers true, or nil
-- and why; after a failure the journal takes nothing more.
function Journal:write()
  if self.broken then return nil, self.broken end
  local lines = self.lines
  if #lines == 0 then return true end
  lines[#lines + 1] = ""
  local ok, err = self.f:write(table.concat(lines, "\n"))
  if not ok then return broken(self, err) end
  self.lines = {}
  return true
end

-- Writes the buffered records and makes them durable, with every record
-- written before. Answers the done records now durable, or nil and why.
function Journal:flush()
  local ok, err = self:write()
  if not ok then return nil, err end
  local recs = self.recs
  if not self.dirty then return recs end
  self.syncs = self.syncs + 1
  ok, err = self.f:sync()
  if not ok then return broken(self, err) end
  self.recs, self.dirty = {}, false
  return recs
end

-- Ends the run: its last records and an "end" (every "left" of the run
-- durable) synced, the file closed and its lock with it.
function Journal:close()
  if not self.broken then self:add({ t = "end" }) end
  local ok, why = self:flush()
  self.f:close()
  if not ok then return nil, why end
  return true
end

------------------------------------------------------------------------------
-- Outcomes

-- The code of a done record: its own, or its first recipient's failure.
local function code_of(rec)
  if rec.code then return rec.code end
  if rec.msgs then
    for _, m in ipairs(rec.msgs) do
      if not m.id and m.code then return m.code end
    end
  end
end

-- A row's outcome from its last record: "pending" (never started), "sent",
-- "refused" (the gateway said no), "failed" (the request provably never
-- left: sent again by the next run) or "unknown" (it may have reached the
-- gateway: never sent again unless asked); and its code.
-- is_refusal(code) says which codes are the gateway's refusals.
function M.outcome(rec, is_refusal)
  if not rec then return "pending" end
  if rec.t ~= "done" then return "unknown" end
  local code = code_of(rec)
  if not code then return "sent" end
  if is_refusal(code) then return "refused", code end
  if rec.sent == false then return "failed", code end
  -- Journals written before records said `sent`: connect was never-left.
  if rec.sent == nil and code == "connect" then return "failed", code end
  return "unknown", code
end

-- The done record of a send_many result.
function M.done_record(n, result)
  if result.code or result.err then
    return { t = "done", row = n, code = result.code, err = result.err, sent = result.sent }
  end
  -- send_many's list of messages is the record's as it is: each holds to
  -- and id, or to, code and err (API.md), nothing else.
  return { t = "done", row = n, msgs = result }
end

return M
