-- streamtelecom.campaign.runner: sends a campaign's rows through send_many,
-- journaling each row durably before its request can leave and after its
-- answer, and stops cleanly: on SIGINT/SIGTERM, on a refusal that concerns
-- the account, on a run of refusals that says the account cannot send, on a
-- run of failures that says the gateway cannot be reached, and on a journal
-- that can no longer be written.
local st = require("streamtelecom")
local journal_mod = require("streamtelecom.campaign.journal")

local M = {}

-- The default of --stop-after: this many refusals (or failures) of one code
-- in a row, each to another number, stop the run (0: never).
M.STREAK = 20

-- Rows a send_many call gets at most. The places drain at the end of each
-- call: 100 rounds of --concurrency a call keep that under 1 %. The specs
-- cross chunk boundaries with small ones (STREAMTELECOM_CAMPAIGN_CHUNK).
local CHUNK_GIVEN = tonumber(os.getenv("STREAMTELECOM_CAMPAIGN_CHUNK"))
function M.chunk_size(concurrency)
  if CHUNK_GIVEN then return math.max(1, CHUNK_GIVEN) end
  return math.max(5000, 100 * (concurrency or 1))
end

-- The error a done record holds: its own, or its first recipient's.
local function err_of(rec) return rec.err or (rec.msgs and rec.msgs[1].err) end

-- The stop a streak of each outcome makes.
local STREAK_STOP = { refused = "streak", failed = "failing", unknown = "failing" }

-- How many rows a sync of "started" records covers beyond the group
-- about to leave: about AHEAD_SECONDS of rows at the run's pace so far
-- (doubling at most each time, up to AHEAD_MAX), so that syncs stay a few
-- a second at any pace (each one holds up every request about to leave),
-- and a power loss leaves at most that many rows that never left said
-- unknown.
local AHEAD_SECONDS, AHEAD_MAX = 0.25, 1024

local function new_ahead()
  return {
    upto = 0, -- the chunk's rows up to this one have a durable "started"
    rows = 1, started = 0, since = nil,
    size = function(self, now)
      self.since = self.since or now
      local pace = self.started / math.max(now - self.since, 0.01)
      self.rows = math.max(1, math.min(math.floor(pace * AHEAD_SECONDS), 2 * self.rows,
                                       AHEAD_MAX))
      return self.rows
    end,
  }
end

local STOP = setmetatable({}, { __tostring = function() return "campaign stopped" end })

-- run: { client, todo (row numbers), items(rows, first, last) (the send_many
--        items of rows[first..last]),
--        concurrency, journal, is_refusal(code), streak (n), on_left(n) (row n's request
--        is leaving), on_durable(rec) (row rec.row's answer is durable),
--        on_progress() (nil: no progress shown) }
-- Answers nil when every row was answered, else the stop:
-- { kind = "signal"|"account"|"streak"|"failing"|"journal"|"error", signal,
--   code, n, err }
function M.send(run)
  local todo, journal = run.todo, run.journal
  local base = 0 -- the rows before the chunk being sent
  local items -- the chunk's rows as send_many items, read again from the file
  local stopping
  -- Raises, whether or not the run was stopping already (the first reason
  -- stays): a group whose journal records failed must never leave.
  local function stop(why)
    stopping = stopping or why
    error(STOP, 0)
  end
  local function answered(recs)
    for _, rec in ipairs(recs) do run.on_durable(rec) end
  end
  local function flush()
    local recs, why = journal:flush()
    if not recs then stop({ kind = "journal", err = why }) end
    answered(recs)
  end
  local function check_signal()
    local sig = st._signal()
    if sig then stop({ kind = "signal", signal = sig }) end
  end

  -- A streak: rows in a row that came back with one outcome and code (a
  -- refusal, or a failure: the gateway down, or not answering in time).
  local streak = { key = nil, n = 0, seen = {} }
  local last_flush = st._now()
  local function watch_streaks(to, rec, sent)
    if sent then -- the common answer (journal:done said so): no streak
      if streak.n > 0 then streak = { key = nil, n = 0, seen = {} } end
      return
    end
    local outcome, code = journal_mod.outcome(rec, run.is_refusal)
    if outcome == "refused" and journal_mod.ACCOUNT_CODES[code] then
      stop({ kind = "account", code = code, err = err_of(rec) })
    end
    if not STREAK_STOP[outcome] then
      if streak.n > 0 then streak = { key = nil, n = 0, seen = {} } end
      return
    end
    local key = outcome .. " " .. tostring(code)
    if streak.key ~= key then streak = { key = key, n = 0, seen = {} } end
    if not streak.seen[to] then
      streak.seen[to] = true
      streak.n = streak.n + 1
    end
    if run.streak > 0 and streak.n >= run.streak then
      stop({ kind = STREAK_STOP[outcome], code = code, n = streak.n, err = err_of(rec) })
    end
  end

  -- The rows of the chunk started since the last group left (their
  -- on_start ran), and how far the chunk's durable "started" records reach.
  local group, ahead = {}, new_ahead()
  local function leave()
    if #group == 0 then return end
    local last_i = group[#group]
    if last_i > ahead.upto then
      -- One fdatasync covers the group and the rows likely to start next:
      -- the chunk's first covers its first round, which starts at once.
      local upto = math.min(#items, math.max(last_i, ahead.upto + ahead:size(st._now()),
                                             run.concurrency))
      for i = ahead.upto + 1, upto do
        journal:started(todo[base + i], items[i].to)
      end
      ahead.upto = upto
      flush()
      last_flush = st._now()
    end
    -- Before any byte of theirs, and after their "started" are durable.
    journal:left(todo[base + last_i])
    local ok, why = journal:write()
    if not ok then stop({ kind = "journal", err = why }) end
    for k = 1, #group do
      run.on_left(todo[base + group[k]])
      group[k] = nil
    end
  end

  local hooks = {
    -- The group of started rows about to leave: each row's "started" is
    -- durable and its "left" written before any byte of its request.
    before_send = leave,
    on_start = function(i)
      if stopping then error(STOP, 0) end
      check_signal()
      group[#group + 1] = i
      ahead.started = ahead.started + 1
    end,
    on_result = function(i, result)
      local rec, sent = journal:done(todo[base + i], result)
      -- Answers are made durable with the next sync, or here when none
      -- came for a while (the tail of the run).
      local now = st._now()
      if not stopping and now - last_flush > 0.5 then
        last_flush = now
        flush()
      end
      if run.on_progress then run.on_progress() end
      if not stopping then
        check_signal()
        watch_streaks(items[i].to, rec, sent)
      end
    end,
  }
  -- Chunks of rows, so that rows and send_many's results (tables) never
  -- pile up for the whole file.
  while base < #todo and not stopping do
    ahead.upto = 0
    -- Indices of the last call's rows mean nothing in this one (the engine
    -- lets every started row leave, so none should be left anyway).
    for k = #group, 1, -1 do group[k] = nil end
    local count = math.min(M.chunk_size(run.concurrency), #todo - base)
    items = run.items(todo, base + 1, base + count)
    local ok, results, err, code = pcall(run.client.send_many, run.client, items, hooks)
    -- Whatever happened, what was answered is made durable now.
    local recs, why = journal:flush()
    if recs then
      answered(recs)
    elseif not stopping then
      stopping = { kind = "journal", err = why }
    end
    if not stopping and not ok and results ~= STOP then
      stopping = { kind = "error", err = tostring(results) }
    elseif not stopping and ok and not results then
      stopping = { kind = "error", err = err, code = code }
    end
    base = base + #items
    if not stopping and st._signal() then stopping = { kind = "signal", signal = st._signal() } end
  end
  return stopping
end

return M
