print(xpcall(function() error("boom", 0) end, function(m) return "H:" .. m end))
print(xpcall(function() return "fine", 2 end, function(m) return "never" end))
print(xpcall(function() error({ 1, 2, 3 }) end, function(m) return #m end))
print(xpcall(function() local t = nil; t.x = 1 end, function(m) return type(m) end))
local calls = 0
print(xpcall(function() error("x", 0) end, function(m) calls = calls + 1; return m .. calls end))
print(xpcall(function() error("y", 0) end, function(m) calls = calls + 1; return m .. calls end))
print(calls)
print(xpcall(function() pcall(error, "inner"); error("outer", 0) end, function(m) return "got " .. m end))
