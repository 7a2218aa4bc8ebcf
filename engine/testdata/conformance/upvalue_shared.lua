-- Two closures over one local see each other's writes, before and after errors.
local function pair()
  local x = 0
  return function() x = x + 1; return x end, function() return x end
end
local inc, get = pair()
inc()
pcall(function() inc(); error("e") end)
print(get())
local ok = pcall(function()
  local y = 5
  local g = function() return y end
  y = 6
  error(g())
end)
print(ok)
local ok2, v = pcall(function()
  local y = 5
  local g = function() return y end
  y = 6
  error(g(), 0)
end)
print(ok2, v)
local function counter()
  local c = 0
  return function() c = c + 1; if c % 2 == 0 then error("even", 0) end; return c end
end
local cnt = counter()
for i = 1, 5 do print(pcall(cnt)) end
