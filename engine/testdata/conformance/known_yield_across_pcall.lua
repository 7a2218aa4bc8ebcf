-- Lua 5.1 cannot yield across pcall: the attempt is an error.
local co = coroutine.create(function()
  local ok, e = pcall(coroutine.yield, "from pcall")
  return "returned", ok
end)
local r = { coroutine.resume(co) }
print(#r, r[1])
print(coroutine.status(co))
-- Yielding outside pcall, between protected calls, works.
local co2 = coroutine.create(function()
  local ok1 = pcall(error, "a")
  coroutine.yield(ok1)
  local ok2 = pcall(function() return 1 end)
  coroutine.yield(ok2)
end)
print(coroutine.resume(co2))
print(coroutine.resume(co2))
print(coroutine.resume(co2))
print(coroutine.status(co2))
print(pcall(coroutine.yield, 1))
