-- Locals shared between a coroutine's body and closures survive errors.
local total = 0
local function add(n) total = total + n end
local co = coroutine.create(function()
  local mine = 100
  local function peek() return mine end
  add(1)
  coroutine.yield(peek)
  mine = 200
  add(2)
  pcall(error, "ignored")
  add(3)
  coroutine.yield(peek)
  error("dies", 0)
end)
local _, p1 = coroutine.resume(co)
print(total, p1())
local _, p2 = coroutine.resume(co)
print(total, p2(), p1 == p2)
print(coroutine.resume(co))
add(10)
print(total, p1(), coroutine.status(co))
