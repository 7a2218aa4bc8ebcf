local Base = {}
Base.__index = Base
function Base.new(x) return setmetatable({ x = x }, Base) end
function Base:describe() return "Base(" .. self.x .. ")" end
function Base:kind() return "base" end
local Derived = setmetatable({}, { __index = Base })
Derived.__index = Derived
function Derived.new(x, y) local o = Base.new(x); o.y = y; return setmetatable(o, Derived) end
function Derived:describe() return "Derived(" .. self.x .. "," .. self.y .. ") < " .. Base.describe(self) end
local d = Derived.new(1, 2)
print(d:describe(), d:kind(), getmetatable(d) == Derived)
print(rawget(Derived, "kind"), Derived.kind == Base.kind)
local calls = 0
local lazy = setmetatable({}, { __index = function(t, k) calls = calls + 1; local v = k .. "!"; rawset(t, k, v); return v end })
print(lazy.a, lazy.a, lazy.b, calls)
local ro = setmetatable({}, { __index = { a = 1 }, __newindex = function(t, k, v) rawset(t, k, v * 2) end })
ro.b = 5
print(ro.a, ro.b)
local callable = setmetatable({}, { __call = function(self, a, b) return a + b, self ~= nil end })
print(callable(2, 3))
