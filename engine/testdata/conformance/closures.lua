local function counter(start)
  local n = start
  return { inc = function() n = n + 1; return n end, get = function() return n end }
end
local c1, c2 = counter(0), counter(100)
c1.inc(); c1.inc(); c2.inc()
print(c1.get(), c2.get())
local fns = {}
for i = 1, 3 do fns[i] = function() return i end end
print(fns[1](), fns[2](), fns[3]())
local acc = {}
local k = 1
while k <= 3 do local j = k; acc[k] = function() return j * 2 end; k = k + 1 end
print(acc[1](), acc[2](), acc[3]())
local function outer()
  local x = 1
  local function mid()
    local function inner() x = x + 10; return x end
    return inner
  end
  return mid(), function() return x end
end
local inner, get = outer()
inner(); inner()
print(get())
local function memo(f)
  local cache = {}
  return function(n) if cache[n] == nil then cache[n] = f(n) end return cache[n] end
end
local calls = 0
local sq = memo(function(n) calls = calls + 1; return n * n end)
print(sq(4), sq(4), sq(5), calls)
local a = {}
do local shared = 0; a.f = function() shared = shared + 1 return shared end; a.g = function() return shared end end
a.f(); a.f()
print(a.g())
