-- A built-in called directly by pcall (no Lua function in between) has no
-- Lua caller to name, so its error has no position, as in Lua 5.1.
print(pcall(pcall))
print(pcall(string.rep))
print(pcall(assert, false))
print(pcall(assert, nil, "assert msg"))
print(pcall(setmetatable, setmetatable({}, { __metatable = 1 }), {}))
local w = coroutine.wrap(function() end)
w()
print(pcall(w))
