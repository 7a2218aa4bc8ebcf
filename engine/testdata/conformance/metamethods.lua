local V = {}
V.__index = V
V.__add = function(a, b) return setmetatable({ x = a.x + b.x }, V) end
V.__sub = function(a, b) return setmetatable({ x = a.x - b.x }, V) end
V.__mul = function(a, b) if type(b) == "number" then return setmetatable({ x = a.x * b }, V) end return a.x * b.x end
V.__div = function(a, b) return a.x / b.x end
V.__mod = function(a, b) return a.x % b.x end
V.__pow = function(a, b) return a.x ^ b end
V.__unm = function(a) return setmetatable({ x = -a.x }, V) end
V.__eq = function(a, b) return a.x == b.x end
V.__lt = function(a, b) return a.x < b.x end
V.__le = function(a, b) return a.x <= b.x end
V.__concat = function(a, b)
  local function s(v) return type(v) == "table" and "V(" .. v.x .. ")" or tostring(v) end
  return s(a) .. s(b)
end
V.__tostring = function(a) return "V" .. a.x end
V.__len = function(a) return 99 end
V.__call = function(self, y) return self.x + y end
function V.new(x) return setmetatable({ x = x }, V) end
local a, b = V.new(3), V.new(5)
print(tostring(a + b), tostring(a - b), tostring(a * 2), a * b, b / a, b % a, a ^ 2, tostring(-a))
print(a == b, a == V.new(3), a < b, a <= b, a > b, a >= b, a ~= b)
print(a .. b, a .. "!", "!" .. b, 1 .. a)
print(a(10), rawget(a, "x"), rawget(a, "new"))
local defaults = setmetatable({}, { __index = { color = "red", size = 1 } })
defaults.size = 2
print(defaults.color, defaults.size, rawget(defaults, "color"))
local log = {}
local proxy = setmetatable({}, { __newindex = function(t, k, v) log[#log + 1] = k .. "=" .. tostring(v); rawset(t, k, v) end })
proxy.a = 1; proxy.a = 2; proxy.b = 3
print(table.concat(log, " "), proxy.a)
print(getmetatable("abc").__index == string, ("x"):rep(3))
local locked = setmetatable({}, { __metatable = "locked" })
print(getmetatable(locked), (pcall(setmetatable, locked, {})))
