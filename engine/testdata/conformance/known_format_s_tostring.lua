-- Known difference: string.format("%s", v) formats any value with tostring
-- (as Lua 5.2 does); Lua 5.1 raises for anything but strings and numbers.
print(pcall(string.format, "%s", true))
print(pcall(string.format, "%s|%s", nil, setmetatable({}, { __tostring = function() return "meta" end })))
