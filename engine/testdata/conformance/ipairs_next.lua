local t = { "a", "b", nil, "d" }
for i, v in ipairs(t) do print(i, v) end
local keys = {}
for k in pairs({ x = 1, y = 2, z = 3, 10, 20 }) do keys[#keys + 1] = tostring(k) end
table.sort(keys)
print(table.concat(keys, " "))
print(next({}), next({ 5 }))
local seen = 0
local h = { a = 1, b = 2, c = 3 }
for k, v in next, h do seen = seen + v end
print(seen)
local arr = { 10, 20, 30 }
local sum = 0
for k, v in pairs(arr) do sum = sum + k * v end
print(sum)
local f, s, var = ipairs({ 7 })
print(type(f), var, f(s, var))
local del = { a = 1, b = 2, c = 3, d = 4 }
for k in pairs(del) do del[k] = nil end
print(next(del))
