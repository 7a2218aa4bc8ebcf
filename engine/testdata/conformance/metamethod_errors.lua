local function msg(ok, e) return tostring(ok) .. " " .. tostring(e) end
local mt = {}
mt.__index = function(t, k) error("no field " .. k, 0) end
mt.__newindex = function(t, k, v) error("read-only " .. k, 0) end
mt.__add = function(a, b) error("no add", 0) end
mt.__concat = function(a, b) error("no concat", 0) end
mt.__call = function(self, x) error("called with " .. tostring(x), 0) end
mt.__eq = function(a, b) error("no eq", 0) end
mt.__lt = function(a, b) error("no lt", 0) end
mt.__le = function(a, b) error("no le", 0) end
mt.__unm = function(a) error("no unm", 0) end
local a, b = setmetatable({}, mt), setmetatable({}, mt)
print(msg(pcall(function() return a.x end)))
print(msg(pcall(function() a.y = 1 end)))
print(msg(pcall(function() return a + 1 end)))
print(msg(pcall(function() return 1 + a end)))
print(msg(pcall(function() return a .. "s" end)))
print(msg(pcall(function() return a(5) end)))
print(msg(pcall(function() return a == b end)))
print(msg(pcall(function() return a < b end)))
print(msg(pcall(function() return a <= b end)))
print(msg(pcall(function() return -a end)))
print(rawequal(a, a), a == a)
local n = 0
local t = setmetatable({}, { __index = function(t, k) n = n + 1; if k == "bad" then error("bad key", 0) end; return k end })
print(t.one, pcall(function() return t.bad end), t.two, n)
