local function risky(n) if n > 2 then error("too big: " .. n, 2) end return n end
local function wrapper(n) return risky(n) end
print(pcall(wrapper, 1))
print(pcall(wrapper, 3))
local ok, e = pcall(function() local ok, e = pcall(wrapper, 5); error(e, 0) end)
print(ok, e)
local ok2, e2 = pcall(function() local ok, e = pcall(wrapper, 6); error(e) end)
print(ok2, e2)
local ok3, e3 = pcall(function() error("lvl3", 3) end)
print(ok3, e3)
local function deep(n) if n == 0 then error("deep error") end deep(n - 1) end
print(pcall(deep, 5))
