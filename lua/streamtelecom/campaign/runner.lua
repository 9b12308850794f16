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

-- Rows a send_many call gets at most (STREAMTELECOM_CAMPAIGN_CHUNK: the
-- specs cross chunk boundaries with small ones).
M.CHUNK = math.max(1, tonumber(os.getenv("STREAMTELECOM_CAMPAIGN_CHUNK")) or 5000)

-- The error a done record holds: its own, or its first recipient's.
local function err_of(rec) return rec.err or (rec.msgs and rec.msgs[1].err) end

-- The stop a streak of each outcome makes.
local STREAK_STOP = { refused = "streak", failed = "failing", unknown = "failing" }

local STOP = setmetatable({}, { __tostring = function() return "campaign stopped" end })

-- run: { client, todo (row numbers), item(n) (row n's send_many item),
--        journal, is_refusal(code), streak (n), on_durable(rec) (counts
--        move), on_progress() }
-- Answers nil when every row was answered, else the stop:
-- { kind = "signal"|"account"|"streak"|"failing"|"journal"|"error", signal,
--   code, n, err }
function M.send(run)
  local todo, journal = run.todo, run.journal
  local base = 0 -- the rows before the chunk being sent
  local items -- the chunk's rows as send_many items, read again from the file
  local stopping
  local function stop(why)
    if stopping then return end
    stopping = why
    error(STOP, 0)
  end
  local function flush()
    local recs, why = journal:flush()
    if not recs then stop({ kind = "journal", err = why }) end
    for _, rec in ipairs(recs) do run.on_durable(rec) end
  end
  local function check_signal()
    local sig = st._signal()
    if sig then stop({ kind = "signal", signal = sig }) end
  end

  -- A streak: rows in a row that came back with one outcome and code (a
  -- refusal, or a failure: the gateway down, or not answering in time).
  local streak = { key = nil, n = 0, seen = {} }
  local last_flush = st._now()
  local function watch_streaks(to, rec)
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

  local hooks = {
    -- One fdatasync for the group of started rows about to leave: each
    -- row's "started" is durable before any byte of its request is sent.
    before_send = function()
      flush()
      last_flush = st._now()
    end,
    on_start = function(i, item)
      if stopping then error(STOP, 0) end
      check_signal()
      journal:add({ t = "started", row = todo[base + i], to = item.to })
    end,
    on_result = function(i, result)
      local rec = journal_mod.done_record(todo[base + i], result)
      journal:add(rec)
      -- Answers are made durable with the next group's starts, or here
      -- when none came for a while (the tail of the run).
      local now = st._now()
      if not stopping and now - last_flush > 0.5 then
        last_flush = now
        flush()
      end
      run.on_progress()
      if not stopping then
        check_signal()
        watch_streaks(items[i].to, rec)
      end
    end,
  }
  -- Chunks of rows, so that rows and send_many's results (tables) never
  -- pile up for the whole file.
  while base < #todo and not stopping do
    items = {}
    for i = 1, math.min(M.CHUNK, #todo - base) do
      items[i] = run.item(todo[base + i])
    end
    local ok, results, err, code = pcall(run.client.send_many, run.client, items, hooks)
    -- Whatever happened, what was answered is made durable now.
    local recs, why = journal:flush()
    if recs then
      for _, rec in ipairs(recs) do run.on_durable(rec) end
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
