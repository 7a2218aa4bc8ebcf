-- Tags and --limit, run by TestSelect with --tags web,always-less and
-- --limit 'web*,!web3'.

local function ran(name, opts)
  local did = false
  task(name, opts, function() did = true end)
  return did
end

function TestTwoArgumentFormStillRuns(t)
  -- untagged tasks do not run under --tags web...
  local did = false
  task("untagged", function() did = true end)
  if did then t:error("an untagged task ran under --tags web") end
end

function TestTagsSelect(t)
  if not ran("tagged web", { tags = { "web" } }) then t:error("a task tagged web did not run") end
  if ran("tagged db", { tags = { "db" } }) then t:error("a task tagged db ran under --tags web") end
  if not ran("tagged always", { tags = { "always" } }) then t:error("an always task did not run") end
  if ran("tagged web and slow", { tags = { "web", "slow" } }) then t:error("--skip-tags slow did not skip") end
end

function TestNestedTasksInheritTags(t)
  local inner = false
  task("outer", { tags = "web" }, function()
    task("inner", function() inner = true end)
  end)
  if not inner then t:error("a task inside a task tagged web did not run") end
end

function TestLimitSkipsTasksOnGuestsOutside(t)
  if not ran("on web1", { tags = "web", on = "web1" }) then t:error("web1 is inside web*,!web3") end
  if ran("on web3", { tags = "web", on = "web3" }) then t:error("web3 is excluded") end
  if ran("on db1", { tags = "web", on = { name = "db1" } }) then t:error("db1 is outside web*") end
  if not ran("on both", { tags = "web", on = { "db1", "web2" } }) then t:error("a task with one target inside did not run") end
end

function TestParallelHonoursLimit(t)
  local seen = {}
  local out = parallel({ "web1", "web3", "db1", "web2", { name = "web4" }, 7 }, function(x, i)
    seen[#seen + 1] = i
    return i
  end)
  table.sort(seen)
  if table.concat(seen, ",") ~= "1,4,5,6" then t:error("items run: " .. table.concat(seen, ",")) end
  if table.concat(out, ",") ~= "1,4,5,6" then t:error("results: " .. table.concat(out, ",")) end
  local all = parallel({ "web3", "db1" }, function(x) return x end, { limit = false })
  if #all ~= 2 then t:error("limit = false still filtered") end
end

function TestBadOnAndOptions(t)
  local ok, e = pcall(task, "bad", { on = 42 }, function() end)
  if ok or not string.find(e.msg, "task bad: on: want a guest", 1, true) then t:error(tostring(e)) end
  ok, e = pcall(task, "typo", { tag = "x" }, function() end)
  if ok or not string.find(e.msg, 'unknown option "tag" (did you mean "tags"?', 1, true) then t:error(tostring(e)) end
end
