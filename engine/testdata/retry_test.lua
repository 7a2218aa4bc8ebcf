-- retry{...}(fn), run by TestRetryLua. Counters live in tables: until
-- gopher-lua's upvalue closing on errors is fixed (issue 13), a local
-- shared with a closure stops being shared after a caught error.

function TestRetrySucceedsAfterFailures(t)
  local c = { n = 0 }
  local v = retry{ times = 4, delay = 0 }(function(a)
    c.n = c.n + 1
    if c.n < 3 then error("flaky " .. c.n) end
    return a .. c.n
  end, "try")
  if v ~= "try3" or c.n ~= 3 then t:error("got " .. tostring(v) .. " after " .. c.n) end
end

function TestRetryUntil(t)
  local n = 0
  local v = retry{ times = 5, delay = "1ms", backoff = 2, ["until"] = function(r) return r >= 2 end }(function()
    n = n + 1
    return n
  end)
  if v ~= 2 then t:error("until ignored: " .. v) end
end

function TestRetryRaisesLastErrorWithAttempts(t)
  local c = { n = 0 }
  local ok, e = pcall(retry{ times = 3, delay = 0 }, function()
    c.n = c.n + 1
    error("still down " .. c.n)
  end)
  if ok then t:fatal("retry hid the failure") end
  if c.n ~= 3 then t:error("attempts: " .. c.n) end
  if not string.find(e.msg, "retry: failed 3 attempts, the last with: retry_test.lua:%d+: still down 3") then t:error(e.msg) end
  if not string.find(e.msg, "^retry_test.lua:%d+:") then t:error("no position: " .. e.msg) end
end

function TestRetryKeepsKind(t)
  local ok, e = pcall(retry{ times = 2, delay = 0 }, function() return require("host").run("exit 3") end)
  if ok then t:fatal("no failure") end
  if e.kind ~= "error" then t:error("kind " .. e.kind) end
  ok, e = pcall(retry, { times = 0 })
  if ok or not string.find(e.msg, "times must be at least 1", 1, true) then t:error(tostring(e)) end
  ok, e = pcall(retry, { tmies = 2 })
  if ok or not string.find(e.msg, 'did you mean "times"', 1, true) then t:error(tostring(e)) end
end
