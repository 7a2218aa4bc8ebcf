local function f() return x end
x = "global x"
print(f())
setfenv(f, { x = "env x" })
print(f(), x)
print(getfenv(f).x, getfenv(0) == _G, getfenv() == _G, getfenv(1) == _G)
local env = setmetatable({}, { __index = _G })
local function g() y = 5; return y, print ~= nil end
setfenv(g, env)
print(g())
print(y, env.y)
local function level2() setfenv(2, { print = print, marker = "L2" }); end
local function caller() level2(); return marker end
print(caller())
print(pcall(setfenv, 100, {}))
print(type(getfenv(print)))
local chunk = loadstring("return who")
setfenv(chunk, { who = "chunk env" })
print(chunk())
print(setfenv(f, _G) == f)
