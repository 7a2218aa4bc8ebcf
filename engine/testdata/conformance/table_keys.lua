local t = {}
t[1] = "int"; t[1.0] = "float one"
print(t[1])
t["1"] = "string one"
print(t[1], t["1"])
t[2^53] = "big"
print(t[2^53])
t[-0] = "negzero"
print(t[0])
t[true] = "bool"
print(t[true], t[false])
local k = {}
t[k] = "table key"
print(t[k], t[{}])
print(pcall(function() t[nil] = 1 end) == false)
print(t[nil])
local u = { [1] = "a", [2] = "b", x = 1, ["y z"] = 2, [1.5] = "c" }
print(u[1], u[2], u.x, u["y z"], u[1.5], #u)
local d = { 1, 2, [2] = "dup", 3 }
print(d[2], d[3])
