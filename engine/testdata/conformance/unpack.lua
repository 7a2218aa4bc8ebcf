print(unpack({ 1, 2, 3 }))
print(unpack({ 1, 2, 3 }, 2))
print(unpack({ 1, 2, 3 }, 2, 3))
print(unpack({ 1, 2, 3 }, 3, 2))
print(unpack({ 1, nil, 3 }, 1, 3))
print(unpack({}, 1, 2))
print(select("#", unpack({})))
print(unpack({ "a", "b" }, -1, 1))
local t = { unpack({ 10, 20, 30 }) }
print(#t, t[3])
local function f(...) return select("#", ...) end
print(f(unpack({ 1, 2, nil, 4 }, 1, 4)))
print(string.char(unpack({ 72, 105 })))
