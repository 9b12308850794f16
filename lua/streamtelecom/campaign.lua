--- The `campaign` and `campaign-status` commands of `bin/streamtelecom`
-- (docs/cli.md, Campaigns): their command line (argparse) and what each does. A
-- campaign sends one SMS per row of a CSV or JSON-lines file and keeps a
-- journal, so that a run stopped at any moment (Ctrl-C, kill -9, a power
-- loss) is resumed by running the same command again, nobody texted twice.
--
-- The work is done by streamtelecom.campaign.input (reading and checking
-- the rows), .journal (the campaign's file and its lock), .runner (the
-- sending and its stops) and .report (what is printed, exit codes).
-- @module streamtelecom.campaign
local argparse = require("argparse")
local st = require("streamtelecom")
local input = require("streamtelecom.campaign.input")
local journal_mod = require("streamtelecom.campaign.journal")
local runner = require("streamtelecom.campaign.runner")
local report = require("streamtelecom.campaign.report")

local EXIT = report.EXIT
local plural = report.plural

local M = {}

--- The usage text of each command, by name (`help campaign`).
M.HELP = {
  campaign = [==[
Usage: streamtelecom campaign FILE [--journal PATH] [--format csv|jsonl]
         [--delimiter C] [--concurrency N] [--rate R] [--skip-invalid]
         [--resend-unknown] [--resend-refused[=CODE,...]] [--stop-after N]
         [--progress] [--json]

Sends one SMS per row of FILE: CSV with a header naming the columns to,text
and optionally sender,callback_url,name (any order; RFC 4180 quoting; `,`,
`;` or tab, found from the header, or --delimiter C; UTF-8 with or without
a BOM), or JSON lines (a .jsonl FILE or --format jsonl) with the same keys.
`name` is the campaign name shown in the gateway's reports. Other CSV
columns are carried to campaign-status's report. Every row is checked
first; nothing is sent while any row is bad (--skip-invalid sends the good
ones and lists the bad). A row with the number, text and sender of an
earlier row is bad: it would text someone twice.

The journal (--journal, default FILE.journal; created mode 0600, never a
symlink, never another file) records each row on disk before its request
leaves and after its answer. One run at a time: a second one exits 5.
Ctrl-C (or SIGTERM) starts nothing more, lets the requests in flight finish
and exits 130 (143); a second Ctrl-C stops at once. Run the same command
again to resume: rows already answered are not sent again; rows whose
outcome is unknown (they may have reached the gateway) are listed and sent
again only with --resend-unknown; rows the gateway refused are sent again
only with --resend-refused (all codes, or the ones named).

A refusal for the account (auth, blocked) stops the run at once; so do
--stop-after refusals of one code in a row, each to another number (default
20, 0: never): the account cannot send; and as many failures of one code in
a row (connect, timeout, ...): the gateway cannot be reached. The rows not
sent stay pending and the next run sends them (and the rows refused for
auth or blocked, and those that never left).

  --concurrency N   requests in flight (default 8)
  --rate R          at most R requests a second
  --progress        the progress line even when stderr is not a terminal
  (--timeout S before the command: each request's limit, default 15 s)

Prints a summary (--json: a JSON object). Exit 0 when every row is sent,
1 when the gateway refused some (or the account), 2 bad input, 3 when some
failed before reaching the gateway (run again to send them) or the journal
cannot be written, 4 when some rows have an unknown outcome, 5 when another
run of this campaign is going on, 130/143 when stopped by SIGINT/SIGTERM.
]==],
  ["campaign-status"] = [[
Usage: streamtelecom campaign-status JOURNAL [--format csv|tsv|json] [--local]
         [--wait] [--for S] [--interval S] [--concurrency N] [--progress]
         [--json]

Without --format: a table of every row of the campaign's file, in row
order, its columns aligned: ROW TO OUTCOME ID STATE CODE/ERROR (--json: the
delivery state of every message id, an array of {"row":..,"to":..,"id":..,
"state":..,...}).

--format csv|tsv|json: one record per row of the campaign's file, in row
order, with the columns row,to,outcome,id,code,error,state,updated and then
the file's extra columns. outcome is sent, refused, invalid, failed (never
left: the next run sends it), unknown (may have reached the gateway) or
pending (never started). state and updated are the gateway's delivery state
of rows with an id; --local does not ask the gateway.

--wait polls every --interval seconds (default 5) until every message is
final or --for seconds (default 3600) pass (--timeout after the command is
the old spelling of --for). It may run while the campaign is being sent.
Exit 0, 1 (some ids refused), 3 (transport failure), 4 (--wait ended before
every message was final).
]],
}

-- ---- Command line ----------------------------------------------------------

local function parser_for(command)
  local p = argparse("streamtelecom " .. command):add_help(false)
  p:flag("-h --help")
  p:flag("--json")
  p:flag("--progress")
  p:option("--url")
  p:option("--sender")
  p:option("--timeout")
  p:option("--concurrency")
  p:option("--format")
  if command == "campaign" then
    p:argument("file"):args("?")
    p:option("--journal")
    p:option("--delimiter")
    p:option("--rate")
    p:option("--stop-after")
    p:flag("--skip-invalid")
    p:flag("--resend-unknown")
    p:option("--resend-refused"):args("?")
  else
    p:argument("journal"):args("?")
    p:flag("--wait")
    p:flag("--local")
    p:option("--interval")
    p:option("--for")
  end
  return p
end

local function parse(command, argv, ctx)
  for _, a in ipairs(argv) do
    local name = a:match("^%-%-([^=]*)")
    if name and (name:match("^pass") or name:match("^pwd") or name:match("^secret")) then
      ctx.usage_error("--password is refused: other users of this machine can read a "
                      .. "command line (ps, /proc); set the password in the environment")
    end
  end
  local ok, args = parser_for(command):pparse(argv)
  if not ok then
    -- argparse's words, without the value of an option it did not know.
    ctx.usage_error((tostring(args):gsub("'%-%-([^=']*)=[^']*'", "'--%1'")))
  end
  for k, v in pairs(ctx.options) do
    if args[k] == nil and k ~= "timeout" then args[k] = v end
  end
  return args
end

-- The client of a command. Its request limit is the --timeout given before
-- the command: parse leaves that out of args, as campaign-status's own
-- --timeout is the old spelling of --for.
local function client_of(args, ctx, extra)
  return ctx.new_client({ url = args.url, sender = args.sender, timeout = ctx.options.timeout },
                        extra)
end

local function number_option(ctx, args, name, min, integer)
  local v = args[(name:gsub("%-", "_"))]
  if v == nil then return nil end
  local n = tonumber(v)
  if not n or n ~= n or n < min or n == math.huge or (integer and n ~= math.floor(n)) then
    ctx.usage_error(("--%s wants a%s number >= %s"):format(name, integer and " whole" or "", min))
  end
  return n
end

local DELIMITERS = { [","] = ",", [";"] = ";", ["\t"] = "\t", ["\\t"] = "\t", tab = "\t" }

-- --resend-refused: nil, true (every code) or a set of codes. Written
-- before FILE without "=", it took FILE as its value: given back.
local function resend_refused(args)
  local v = args.resend_refused
  if v == nil then return nil end
  local value = v[1]
  if value and not value:match("^[%w_,]+$") and not args.file then
    args.file = value
    args.resend_refused = {}
    value = nil
  end
  if not value then return true end
  local set = {}
  for code in value:gmatch("[^,]+") do set[code] = true end
  return set
end

-- ---- campaign FILE ---------------------------------------------------------

local SECOND_STOP = "\nstreamtelecom: stopped at once by a second Ctrl-C: the rows in flight "
  .. "have an unknown outcome (they may have been sent; campaign-status --local --format csv "
  .. "JOURNAL lists them). Run the same command again to resume.\n"

-- Starts hashing the file with sha256sum, which runs beside the scan (on
-- another core, and for a big file as long as the scan itself); answers
-- the function that waits for its sha256 (nil when it failed).
local function start_sha256(path)
  local quoted = "'" .. path:gsub("'", "'\\''") .. "'"
  local p = io.popen("sha256sum -- " .. quoted .. " 2>/dev/null")
  return function()
    local out = p and p:read("*a") or ""
    if p then p:close() end
    return out:match("^(%x+)")
  end
end

local function absolute(path)
  if path:sub(1, 1) == "/" then return path end
  local cwd = os.getenv("PWD")
  if not cwd or cwd == "" then return path end
  return cwd .. "/" .. path:gsub("^%./", "")
end

-- The counts of the good rows, moved as records become durable: they are
-- always the journal's. Per row only its outcome and code are kept.
local function new_tally(idx, last, is_refusal)
  -- outcome[n] nil: pending, so that a new journal's rows cost nothing.
  local t = { sent = 0, refused = 0, failed = 0, unknown = 0, pending = 0, codes = {},
              answered = 0, total = idx.good, outcome = {}, code = {}, done = {} }
  local function count(n, step)
    local outcome, code = t.outcome[n] or "pending", t.code[n]
    t[outcome] = t[outcome] + step
    if code then
      t.codes[code] = (t.codes[code] or 0) + step
      if t.codes[code] == 0 then t.codes[code] = nil end
    end
    if t.done[n] then t.answered = t.answered + step end
  end
  local function set(n, rec)
    local outcome
    outcome, t.code[n] = journal_mod.outcome(rec, is_refusal)
    t.outcome[n] = outcome ~= "pending" and outcome or nil
    t.done[n] = rec ~= nil and rec.t == "done" or nil
    count(n, 1)
  end
  t.pending = idx.good
  for n in pairs(last) do
    if idx.starts[n] then
      t.pending = t.pending - 1
      set(n, last[n])
    end
  end
  -- Records come only for the rows being sent: good rows. Two a row: the
  -- common case (a new outcome, no code either side) is kept short.
  local outcomes, done_rows = t.outcome, t.done
  function t.move(rec)
    local n = rec.row
    -- The common answer, made short: ids for a row that was unknown.
    local m = rec.msgs
    if m and #m == 1 and m[1].id and not rec.code and outcomes[n] == "unknown" and not t.code[n]
        and not done_rows[n] and rec.t == "done" then
      t.unknown, t.sent, t.answered = t.unknown - 1, t.sent + 1, t.answered + 1
      outcomes[n], done_rows[n] = "sent", true
      return
    end
    if t.code[n] then
      count(n, -1)
      set(n, rec)
      return
    end
    local old = t.outcome[n] or "pending"
    local outcome, code = journal_mod.outcome(rec, is_refusal)
    t[old] = t[old] - 1
    t[outcome] = t[outcome] + 1
    if code then
      t.code[n] = code
      t.codes[code] = (t.codes[code] or 0) + 1
    end
    local done = rec.t == "done"
    if done and not t.done[n] then t.answered = t.answered + 1 end
    if not done and t.done[n] then t.answered = t.answered - 1 end
    t.outcome[n], t.done[n] = outcome, done or nil
  end
  -- Row n's request is leaving: from pending (nearly always) to unknown.
  function t.left(n)
    if outcomes[n] == nil and not done_rows[n] then
      t.pending, t.unknown = t.pending - 1, t.unknown + 1
      outcomes[n] = "unknown"
    else
      t.move({ t = "started", row = n })
    end
  end
  function t.unknown_rows()
    local list = {}
    for n, outcome in pairs(t.outcome) do
      if outcome == "unknown" then
        list[#list + 1] = { row = n, to = idx:row(n).fields.to, code = t.code[n] }
      end
    end
    table.sort(list, function(a, b) return a.row < b.row end)
    return list
  end
  return t
end

-- The rows this run sends: never started, failed (never left), refused for
-- the account, and those the operator asked for again.
local function plan(idx, last, args, is_refusal)
  local todo, refused_codes = {}, resend_refused(args)
  local starts = idx.starts
  for n = 1, idx.total do
    local rec, again = last[n], true -- no record: pending, asked of no one
    if rec then
      local outcome, code = journal_mod.outcome(rec, is_refusal)
      again = outcome == "pending" or outcome == "failed"
        or (outcome == "unknown" and args.resend_unknown)
        or (outcome == "refused" and (journal_mod.ACCOUNT_CODES[code] or refused_codes == true
                                      or (refused_codes and refused_codes[code])))
    end
    if again and starts[n] then todo[#todo + 1] = n end
  end
  return todo
end

local function summary_of(tally, ctx_info, invalid, earlier, stop)
  local unknown_rows = tally.unknown_rows()
  local bad = {}
  for i, e in ipairs(invalid) do
    bad[i] = { row = e.n, line = e.line, column = e.column, err = e.message }
  end
  return { file = ctx_info.file, journal = ctx_info.journal, rows = ctx_info.rows,
           sent = tally.sent, refused = tally.refused, failed = tally.failed,
           unknown = tally.unknown, pending = tally.pending, invalid = #invalid,
           codes = tally.codes, unknown_rows = report.list(unknown_rows),
           invalid_rows = report.list(bad), earlier = earlier,
           stopped = stop and (stop.signal or stop.kind) or nil }
end

local function say_stop(stop, summary, ctx)
  if not stop then return end
  local pending = plural(summary.pending, "row")
  if stop.kind == "signal" then
    ctx.warn(("stopped by %s: nothing more was started, the requests in flight were answered "
              .. "and journaled; %s not sent yet. Run the same command again to resume.")
             :format(stop.signal, pending))
  elseif stop.kind == "account" then
    ctx.warn(("campaign stopped: the gateway refused the account (%s: %s); %s not sent. "
              .. "Fix it, then run the same command again: it sends them, and the rows "
              .. "refused for %s, once.")
             :format(stop.code, tostring(stop.err), pending, stop.code))
  elseif stop.kind == "streak" then
    ctx.warn(("campaign stopped: %d rows in a row refused %s, each to another number (%s): "
              .. "the account looks unable to send (its balance? a closed direction?); %s not "
              .. "sent. Run the same command again to resume; --resend-refused=%s sends the "
              .. "refused ones again; --stop-after N changes this rule.")
             :format(stop.n, stop.code, tostring(stop.err), pending, stop.code))
  elseif stop.kind == "failing" then
    ctx.warn(("campaign stopped: %d rows in a row failed with %s, each to another number (%s): "
              .. "the gateway cannot be reached or does not answer in time; %s not sent. Run "
              .. "the same command again to resume: it sends those rows and the ones that never "
              .. "left; --stop-after N changes this rule.")
             :format(stop.n, stop.code, tostring(stop.err), pending))
  elseif stop.kind == "journal" then
    ctx.warn("campaign stopped: " .. tostring(stop.err) .. "; nothing more was started. "
             .. "Free the space, then run the same command again to resume.")
  else
    -- Never a source path: the operator gets the sentence only.
    local err = tostring(stop.err):gsub("[^%s:]*%.lua:%d+: ", "")
    ctx.warn("campaign stopped (" .. tostring(stop.code or "error") .. "): " .. err
             .. "; run the same command again to resume")
  end
end

local function exit_status(summary, stop, ctx)
  if stop then
    if stop.kind == "signal" then return stop.signal == "SIGINT" and EXIT.SIGINT or EXIT.SIGTERM end
    if stop.kind == "journal" then return EXIT.TRANSPORT end
    if stop.kind == "account" or stop.kind == "streak" then return EXIT.REFUSED end
    if stop.kind == "failing" then
      return summary.unknown > 0 and EXIT.UNSETTLED or EXIT.TRANSPORT
    end
    if stop.code then return math.max(ctx.exit_code_for(stop.code), EXIT.TRANSPORT) end
    return EXIT.TRANSPORT
  end
  if summary.unknown > 0 then return EXIT.UNSETTLED end
  if summary.failed > 0 then return EXIT.TRANSPORT end
  if summary.refused > 0 then return EXIT.REFUSED end
  return EXIT.OK
end

local function print_summary(summary, args, ctx)
  if args.json then ctx.out(report.json(summary)) else ctx.out(report.summary_line(summary)) end
  if summary.unknown > 0 then
    local rows = summary.unknown_rows == report.EMPTY and {} or summary.unknown_rows
    ctx.warn(("%s with an unknown outcome (sent or not: check them, then run again with "
              .. "--resend-unknown to send them again): rows %s")
             :format(plural(summary.unknown, "row"), report.list_rows(rows, 20)))
  end
  if summary.failed > 0 then
    ctx.warn(plural(summary.failed, "row") .. " failed before reaching the gateway: "
             .. "run the same command again to send them")
  end
end

local function campaign_options(args, ctx)
  local o = { path = args.file }
  o.format = args.format or (o.path:lower():match("%.jsonl$") and "jsonl" or "csv")
  if o.format ~= "csv" and o.format ~= "jsonl" then ctx.usage_error("--format is csv or jsonl") end
  if args.delimiter then
    o.delimiter = DELIMITERS[args.delimiter]
    if not o.delimiter then ctx.usage_error("--delimiter is one of , ; tab") end
  end
  o.concurrency = number_option(ctx, args, "concurrency", 1, true) or 8
  o.rate = number_option(ctx, args, "rate", 0.001)
  o.streak = number_option(ctx, args, "stop-after", 0, true) or runner.STREAK
  o.journal = args.journal or (o.path .. ".journal")
  return o
end

local function refuse_bad_rows(args, o, rows_total, invalid, ctx)
  ctx.warn(("%s of %d bad: nothing sent (--skip-invalid sends the others)")
           :format(plural(#invalid, "row"), rows_total))
  if args.json then
    local t = new_tally({ total = 0, good = 0, starts = {} }, {}, function() return false end)
    ctx.out(report.json(summary_of(t, { file = o.path, journal = o.journal, rows = rows_total },
                                   invalid, 0)))
  end
  return EXIT.USAGE
end

-- Sends, with the progress line; answers the stop (nil: all answered).
local function send_todo(client, idx, todo, journal, tally, args, o, is_refusal)
  local progress = report.progress(report.progress_mode(args.progress), function()
    return tally.answered, tally.total,
           ("sent %d  refused %d  failed %d  unknown %d"):format(
             tally.sent, tally.refused, tally.failed, tally.unknown)
  end)
  progress:update(true)
  local stop = runner.send({
    client = client, concurrency = o.concurrency, todo = todo, journal = journal,
    is_refusal = is_refusal,
    items = function(rows, first, last) return idx:items(rows, first, last) end,
    streak = o.streak,
    on_left = tally.left,
    on_durable = function(rec)
      tally.move(rec)
      progress:tick(1)
    end,
    on_progress = progress.mode ~= "off" and function() progress:update(false) end or nil,
  })
  progress:finish()
  return stop
end

--- `campaign FILE ...`: sends the file's rows; answers the exit code.
-- @tparam {string,...} argv the words after the command
-- @tparam table ctx the script's helpers (see `main`)
-- @treturn int the exit code
function M.campaign(argv, ctx)
  -- First of all: a Ctrl-C from here on is the campaign's to handle.
  st._signals(SECOND_STOP)
  local args = parse("campaign", argv, ctx)
  if args.help then io.stdout:write(M.HELP.campaign); return EXIT.OK end
  if not args.file and not (args.resend_refused and args.resend_refused[1]) then
    ctx.usage_error("campaign needs one FILE")
  end
  resend_refused(args)
  local o = campaign_options(args, ctx)
  -- Reading and checking a file make garbage several times the size of
  -- its rows: collected as it comes, the peak stays near what lives.
  collectgarbage("setpause", 110)
  local is_refusal = function(code) return ctx.exit_code_for(code) == EXIT.REFUSED end

  -- One run at a time, told at once: before the file is even read. The
  -- lock is the journal's own (an empty journal when the file is refused).
  local journal_file, why, code = journal_mod.lock(o.journal)
  if not journal_file then ctx.warn(why); return code end
  local client = client_of(args, ctx, { concurrency = o.concurrency, rate = o.rate })
  -- Every row is read and checked before anything is sent; what stays is
  -- where each good row starts in the file's text.
  local sha256 = start_sha256(o.path)
  -- The first send_many call's items are kept as the scan reads them.
  o.keep = runner.chunk_size(o.concurrency)
  local idx, why_bad = input.scan(o.path, o, client)
  local sha = sha256()
  -- Sending makes short-lived garbage beside a heap that stays: Lua's
  -- default pause, or each row pays for marking that heap again.
  collectgarbage("setpause", 200)
  if not idx then ctx.warn(why_bad); client:close(); journal_file:close(); return EXIT.USAGE end
  local invalid, extras, rows_total = idx.errors, idx.extras, idx.total
  for _, e in ipairs(invalid) do ctx.warn(input.error_text(e)) end
  if #invalid > 0 and not args.skip_invalid then
    client:close()
    journal_file:close()
    return refuse_bad_rows(args, o, rows_total, invalid, ctx)
  end

  if not sha then
    ctx.warn("cannot hash " .. o.path .. " (sha256sum)")
    client:close()
    journal_file:close()
    return EXIT.USAGE
  end
  local bad = {}
  for i, e in ipairs(invalid) do
    bad[i] = { row = e.n, line = e.line, column = e.column, err = e.message }
  end
  local journal, why_not = journal_mod.open(journal_file, o.journal, {
    t = "campaign", v = 1, file = absolute(o.path), sha256 = sha, rows = rows_total,
    format = o.format, delimiter = o.delimiter, extras = extras, invalid = bad })
  if not journal then ctx.warn(why_not); client:close(); return EXIT.USAGE end

  local tally = new_tally(idx, journal.last, is_refusal)
  local todo = plan(idx, journal.last, args, is_refusal)
  -- The kept items are the first good rows': a run that skips some of them
  -- reads its rows again as the others.
  if #todo < idx.good then idx:forget_kept() end
  journal.last = {} -- the tally has what it needs from earlier runs
  local earlier = idx.good - #todo
  local kept = tally.unknown_rows()
  if #kept > 0 and not args.resend_unknown then
    ctx.warn(("not sending %s with an unknown outcome from an earlier run (rows %s); "
              .. "--resend-unknown sends them again")
             :format(plural(#kept, "row"), report.list_rows(kept, 20)))
  end

  local stop
  if st._signal() then
    stop = { kind = "signal", signal = st._signal() }
  elseif #todo > 0 then
    stop = send_todo(client, idx, todo, journal, tally, args, o, is_refusal)
  end
  local closed, close_why = journal:close() -- and the lock with it
  if not closed and not stop then stop = { kind = "journal", err = close_why } end
  client:close()
  local summary = summary_of(tally, { file = o.path, journal = o.journal, rows = rows_total },
                             invalid, earlier, stop)
  -- The journal's fdatasync calls of this run (make bench shows them a row).
  summary.syncs = journal.syncs
  print_summary(summary, args, ctx)
  say_stop(stop, summary, ctx)
  return exit_status(summary, stop, ctx)
end

-- ---- campaign-status JOURNAL -----------------------------------------------

local function journal_ids(j)
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

local function poll_states(client, ids, map, progress)
  local pending = {}
  for _, id in ipairs(ids) do
    local rec = map[id]
    if not (rec and rec.final) then pending[#pending + 1] = id end
  end
  if #pending == 0 then return 0 end
  local res = client:status_many(pending, { on_result = function(id, rec)
    map[id] = rec
    progress:tick(1)
    progress:update(false)
  end })
  if not res then return #pending end
  local still = 0
  for _, id in ipairs(pending) do
    if not (map[id] and map[id].final) then still = still + 1 end
  end
  return still
end

local function print_states(ids, where, map, unknown, args, ctx)
  local status, pending, list = EXIT.OK, 0, {}
  for _, id in ipairs(ids) do
    local rec = map[id] or { err = "no answer for this id", code = "gateway" }
    local w = where[id]
    if rec.state then
      if not rec.final then pending = pending + 1 end
    else
      local c = ctx.exit_code_for(rec.code)
      if c > status then status = c end
    end
    if args.json then
      list[#list + 1] = { row = w.row, to = w.to, id = id, state = rec.state, raw = rec.raw,
                          final = rec.final, updated = rec.updated, err = rec.err,
                          code = rec.code }
    end
  end
  if args.json and not args.format then ctx.out(report.json(report.list(list))) end
  if unknown > 0 then
    ctx.warn(plural(unknown, "row") .. " of the journal have an unknown outcome: no id to follow")
  end
  if pending > 0 then
    ctx.warn(plural(pending, "message") .. " not final yet")
    if args.wait and status == EXIT.OK then status = EXIT.UNSETTLED end
  end
  return status
end

-- The campaign's rows as the run read them, to report every row with its
-- extra columns: nil when the file is gone or changed.
local function campaign_rows(header, ctx)
  local sha256 = start_sha256(tostring(header.file))
  local idx = input.scan(tostring(header.file),
                         { format = header.format, delimiter = header.delimiter })
  if sha256() ~= header.sha256 or not idx then
    ctx.warn(("cannot read the campaign's file %s as it was sent: rows without a journal "
              .. "record have no number, extra columns are empty"):format(tostring(header.file)))
    return {}, type(header.extras) == "table" and header.extras or {}
  end
  local by_n = {}
  for _, row in ipairs(idx:rows()) do by_n[row.n] = row end
  return by_n, idx.extras
end

local function row_records(j, by_n, map, ctx)
  local is_refusal = function(code) return ctx.exit_code_for(code) == EXIT.REFUSED end
  local invalid = {}
  for _, e in ipairs(type(j.header.invalid) == "table" and j.header.invalid or {}) do
    invalid[e.row] = e
  end
  local records = {}
  for n = 1, tonumber(j.header.rows) or 0 do
    local row, rec = by_n[n], j.last[n]
    local r = { row = n, to = row and row.fields.to or (rec and rec.to),
                extra = row and row.extra or {} }
    if invalid[n] then
      r.outcome, r.code, r.error = "invalid", "invalid", invalid[n].err
    else
      r.outcome, r.code = journal_mod.outcome(rec, is_refusal)
      r.error = rec and rec.err
      if rec and rec.msgs then
        local ids, states, times = {}, {}, {}
        for _, m in ipairs(rec.msgs) do
          r.error = r.error or m.err
          if m.id then
            ids[#ids + 1] = m.id
            local s = map[m.id]
            if s and s.state then states[#states + 1] = s.state end
            if s and s.updated then times[#times + 1] = s.updated end
          end
        end
        r.id = table.concat(ids, " ")
        r.state, r.updated = table.concat(states, " "), table.concat(times, " ")
      end
    end
    records[n] = r
  end
  return records
end

local function status_options(args, ctx)
  local o = {}
  o.concurrency = number_option(ctx, args, "concurrency", 1, true) or 8
  o.interval = math.max(1, number_option(ctx, args, "interval", 0) or 5)
  o.wait_for = number_option(ctx, args, "for", 0)
  if args.timeout then
    ctx.warn("campaign-status --timeout is deprecated: it means --for (the waiting time); "
             .. "--timeout before the command is the HTTP request limit")
    o.wait_for = o.wait_for or number_option(ctx, args, "timeout", 0)
  end
  o.wait_for = o.wait_for or 3600
  if args.format and args.format ~= "csv" and args.format ~= "tsv" and args.format ~= "json" then
    ctx.usage_error("--format is csv, tsv or json")
  end
  return o
end

--- `campaign-status JOURNAL ...`: the report of every row; answers the exit code.
-- @tparam {string,...} argv the words after the command
-- @tparam table ctx the script's helpers (see `main`)
-- @treturn int the exit code
function M.status(argv, ctx)
  local args = parse("campaign-status", argv, ctx)
  if args.help then io.stdout:write(M.HELP["campaign-status"]); return EXIT.OK end
  if not args.journal then ctx.usage_error("campaign-status needs one JOURNAL") end
  local o = status_options(args, ctx)
  if args["local"] and args.json and not args.format then
    ctx.usage_error("--local is for the report of every row (the table, or --format)")
  end
  local j, err = journal_mod.read(args.journal)
  if not j then
    ctx.warn(err)
    return EXIT.USAGE
  end
  local ids, where, unknown = journal_ids(j)
  local map = {}
  local status = EXIT.OK
  if not args["local"] then
    local client = client_of(args, ctx, { concurrency = o.concurrency })
    local progress = report.progress(report.progress_mode(args.progress), function()
      local final = 0
      for _, id in ipairs(ids) do
        if map[id] and map[id].final then final = final + 1 end
      end
      return final, #ids, ("final %d  not final %d"):format(final, #ids - final)
    end)
    local deadline = st._now() + o.wait_for
    local still = poll_states(client, ids, map, progress)
    while args.wait and still > 0 and st._now() + o.interval <= deadline do
      progress:update(true)
      st._sleep(o.interval)
      still = poll_states(client, ids, map, progress)
    end
    progress:finish()
    client:close()
    status = print_states(ids, where, map, unknown, args, ctx)
  end
  if args.format then
    local by_n, extras = campaign_rows(j.header, ctx)
    report.write_rows(row_records(j, by_n, map, ctx), extras, args.format, ctx.out)
  elseif not args.json then
    report.write_table(row_records(j, campaign_rows(j.header, ctx), map, ctx), ctx.out)
  end
  return status
end

--- bin/streamtelecom's entry.
-- @tparam string command "campaign" or "campaign-status"
-- @tparam {string,...} argv the words after it
-- @tparam table ctx the script's helpers (`out`, `warn`, `usage_error`,
-- `exit_code_for`, `new_client`) and `options`, those given before the command
-- @treturn int the exit code
function M.main(command, argv, ctx)
  -- A usage error points at this command's own help.
  local own = setmetatable({ usage_error = function(msg) ctx.usage_error(msg, command) end },
                          { __index = ctx })
  if command == "campaign" then return M.campaign(argv, own) end
  return M.status(argv, own)
end

return M
