local function f(...) return select("#", ...), ... end
print(pcall(f))
print(pcall(f, nil))
print(pcall(f, 1, nil, nil))
local function g(...) local a, b = ...; if not a then error("no a", 0) end return a, b end
print(pcall(g))
print(pcall(g, "x", "y", "z"))
local function wrap(...) return pcall(g, ...) end
print(wrap(1, 2))
print(select("#", pcall(error)))
print(xpcall(function(...) return ... end, print))
