-- Lua-side tests of the engine's globals and the lx conventions, run by
-- engine_test.go through luatest.
local host = require("host")

function TestRaiseCarriesPlaybookPosition(t)
  local ok, e = pcall(host.write, "/nonexistent-dir/x", "y")
  if ok then t:fatal("write into a missing directory succeeded") end
  if not string.find(e.msg, "^engine_test.lua:%d+:") then t:error("msg lacks file:line: " .. e.msg) end
  if e.kind ~= "not_found" then t:error("kind = " .. tostring(e.kind)) end
  if tostring(e) ~= e.msg then t:error("tostring differs from msg") end
end

function TestUnknownOptionNamesKeyAndValidOnes(t)
  local ok, e = pcall(host.write, t:tempdir() .. "/f", "x", { mdoe = "0644" })
  if ok then t:fatal("unknown option accepted") end
  for _, want in ipairs({ 'unknown option "mdoe"', 'did you mean "mode"', "valid: mode" }) do
    if not string.find(e.msg, want, 1, true) then t:error("missing " .. want .. " in: " .. e.msg) end
  end
  if e.kind ~= "invalid" then t:error("kind = " .. e.kind) end
end

function TestWrongOptionType(t)
  local ok, e = pcall(host.run, "true", { timeout = true })
  if ok then t:fatal("bad type accepted") end
  if not string.find(e.msg, "option timeout: want duration, got boolean", 1, true) then t:error(e.msg) end
end

function TestTaskReturnsValuesAndFailuresPropagate(t)
  local a, b = task("returns", function() return 1, "two" end)
  if a ~= 1 or b ~= "two" then t:error("task results lost") end
  local ok, e = pcall(task, "fails", function() error("boom") end)
  if ok then t:fatal("failing task did not raise") end
  if not string.find(tostring(e), "engine_test.lua:%d+: boom") then t:error(tostring(e)) end
end

function TestParallelKeepsOrderAndOverlaps(t)
  local out = parallel({ 3, 1, 2 }, function(x, i) host.sleep(0.01 * x); return x * 10 + i end)
  if #out ~= 3 or out[1] ~= 31 or out[2] ~= 12 or out[3] ~= 23 then
    t:error("results out of order: " .. table.concat(out, ","))
  end
end

function TestParallelRaisesEveryFailure(t)
  local ran = 0
  local ok, e = pcall(parallel, { 1, 2, 3, 4 }, function(x)
    ran = ran + 1
    if x % 2 == 0 then error("item " .. x .. " broke") end
  end, { forks = 2 })
  if ok then t:fatal("parallel hid failures") end
  if ran ~= 4 then t:error("not every item ran: " .. ran) end
  if not string.find(e.msg, "2 of 4 items failed", 1, true) then t:error(e.msg) end
  if not (string.find(e.msg, "item 2 broke") and string.find(e.msg, "item 4 broke")) then t:error(e.msg) end
end

function TestSkip(t)
  local r = task("skipped", function() skip("not today"); error("unreachable") end)
  if r ~= nil then t:error("skip returned a value") end
end

function TestVarsAndCheckMode(t)
  if vars.name ~= "web1" then t:error("vars.name = " .. tostring(vars.name)) end
  if vars.nested.n ~= 3 then t:error("nested vars lost") end
  if check_mode() then t:error("check_mode() true in a normal run") end
end

function TestHostRunResult(t)
  local r = host.run("printf out; printf err >&2; exit 3", { check = false })
  if r.code ~= 3 or r.stdout ~= "out" or r.stderr ~= "err" then
    t:error(string.format("got code=%s stdout=%q stderr=%q", r.code, r.stdout, r.stderr))
  end
  local ok, e = pcall(host.run, { "sh", "-c", "echo nope >&2; exit 4" })
  if ok then t:fatal("non-zero exit did not raise") end
  if not string.find(e.msg, "exit status 4: nope", 1, true) then t:error(e.msg) end
  local r2 = host.run("cat", { stdin = "fed", readonly = true })
  if r2.stdout ~= "fed" then t:error("stdin not fed: " .. r2.stdout) end
end

function TestHostWriteIdempotentWithMode(t)
  local p = t:tempdir() .. "/motd"
  if not host.write(p, "hi\n", { mode = "0600" }) then t:error("first write reported unchanged") end
  if host.write(p, "hi\n", { mode = "0600" }) then t:error("second write reported changed") end
  if host.read(p) ~= "hi\n" then t:error("content") end
  if not host.write(p, "hi\n", { mode = 644 }) then t:error("mode change not reported") end
  if host.read(p .. ".missing") ~= nil then t:error("read of missing file not nil") end
end
