-- handler / notify / flush_handlers, run by TestHandlersLua (no state dir:
-- the record across runs is tested in Go, TestHandlerPersistsAfterFailure).
local host = require("host")

local log = {}
handler("second", function() log[#log + 1] = "second" end)
handler("first", function()
  log[#log + 1] = "first"
  host.write(hdir .. "/first", tostring(#log)) -- a handler that changes something notifies too
  notify("third")
end)
handler("third", function() log[#log + 1] = "third" end)

function TestNotifiedHandlersRunOnceInDefinitionOrder(t)
  log = {}
  local dir = t:tempdir()
  hdir = dir
  task("change a", function() host.write(dir .. "/a", "1"); notify("first", "second") end)
  task("change b", function() host.write(dir .. "/b", "1"); notify("second") end)
  if #log ~= 0 then t:error("a handler ran before the flush") end
  flush_handlers()
  if table.concat(log, ",") ~= "second,first,third" then t:error("ran: " .. table.concat(log, ",")) end
  flush_handlers()
  if #log ~= 3 then t:error("a handler ran twice") end
end

function TestUnchangedTaskDoesNotNotify(t)
  log = {}
  local dir = t:tempdir()
  hdir = dir
  host.write(dir .. "/a", "same")
  task("no change", function() host.write(dir .. "/a", "same"); notify("first") end)
  flush_handlers()
  if #log ~= 0 then t:error("a task that changed nothing queued: " .. table.concat(log, ",")) end
end

function TestNotifyErrors(t)
  local ok, e = pcall(task, "typo", function() notify("frist") end)
  if ok or not string.find(e.msg, 'no handler "frist" (did you mean "first"?)', 1, true) then t:error(tostring(e)) end
  ok, e = pcall(notify, "first")
  if ok or not string.find(e.msg, "outside a task", 1, true) then t:error(tostring(e)) end
end

function TestFailingHandlerStaysQueued(t)
  local c = { n = 0 } -- a table: see retry_test.lua about shared locals
  handler("flaky", function() c.n = c.n + 1; if c.n == 1 then error("not yet") end end)
  local dir = t:tempdir()
  task("c", function() host.write(dir .. "/c", "1"); notify("flaky") end)
  local ok, e = pcall(flush_handlers)
  if ok or not string.find(e.msg, "not yet", 1, true) then t:error("handler failure hidden: " .. tostring(e)) end
  flush_handlers()
  if c.n ~= 2 then t:error("failed handler not kept queued, runs: " .. c.n) end
end
