-- docs-tables.lua PAGE: puts the tables of docs/API.md into the module page
-- LDoc made from the C comments (make docs runs it), so the page shows the
-- options of new, the send options and the error codes as tables kept in
-- one place. Each table follows a <!-- ldoc:NAME --> marker in docs/API.md.
local page_file = assert(arg[1], "usage: docs-tables.lua build/docs/index.html")

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

local api = read("docs/API.md")

local function api_table(name)
  local found = api:match("<!%-%- ldoc:" .. name:gsub("%-", "%%-") .. " %-%->%s*(<table>.-</table>)")
  return assert(found, "docs/API.md has no table marked ldoc:" .. name)
end

-- Puts html after the first `after` (plain text) that follows the anchor.
local function insert_after(page, anchor, after, html)
  local a = assert(page:find(anchor, 1, true), "no " .. anchor .. " in " .. page_file)
  local _, e = assert(page:find(after, a, true))
  return page:sub(1, e) .. html .. page:sub(e + 1)
end

local page = read(page_file)
page = insert_after(page, '<a name = "new"></a>', "</ul>",
  "\n<h3>Options:</h3>\n" .. api_table("new-options"))
page = insert_after(page, '<a name = "client:send"></a>', "</ul>",
  "\n<h3>Send options:</h3>\n" .. api_table("send-options"))
local at = assert(page:find('<h2><a href="#Functions">', 1, true))
page = page:sub(1, at - 1) .. "<h2>Error codes</h2>\n<p>The third value of every failure; "
  .. "<code>errors</code> maps each to itself.</p>\n" .. api_table("error-codes")
  .. "\n" .. page:sub(at)
local f = assert(io.open(page_file, "wb"))
f:write(page)
f:close()
