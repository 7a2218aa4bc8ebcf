local function range(n)
  return coroutine.wrap(function() for i = 1, n do coroutine.yield(i) end end)
end
local s = 0
for v in range(10) do s = s + v end
print(s)
local gen = coroutine.wrap(function(a) local b = coroutine.yield(a * 2); local c = coroutine.yield(b + 1); return "end", c end)
print(gen(5), gen(10), gen("c"))
local producer = coroutine.create(function() for _, w in ipairs({ "x", "y", "z" }) do coroutine.yield(w) end return nil end)
local got = {}
while true do
  local ok, v = coroutine.resume(producer)
  if not v then break end
  got[#got + 1] = v
end
print(table.concat(got), coroutine.status(producer))
local bad = coroutine.wrap(function() error({ code = 3 }) end)
local ok, e = pcall(bad)
print(ok, type(e), e.code)
print(select("#", coroutine.wrap(function() return end)()))
