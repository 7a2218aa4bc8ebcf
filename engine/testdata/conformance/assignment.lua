local a, b, c = 1, 2
print(a, b, c)
a, b = b, a
print(a, b)
local t = {}
local i = 1
i, t[i] = i + 1, 20
print(i, t[1], t[2])
local x, y = (function() return 1, 2, 3 end)()
print(x, y)
local p, q, r = 0, (function() return 1, 2 end)()
print(p, q, r)
local m, n = (function() return 1, 2 end)(), 10
print(m, n)
local u = { (function() return 1, 2 end)(), (function() return 3, 4 end)() }
print(#u, u[1], u[2], u[3])
local s = "x"; local s = s .. "y"
print(s)
local g = {}
g.a, g.b, g.a = 1, 2, 3
print(g.a, g.b)
