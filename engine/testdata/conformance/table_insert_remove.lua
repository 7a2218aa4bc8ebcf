local t = {}
table.insert(t, "a"); table.insert(t, "c"); table.insert(t, 2, "b"); table.insert(t, 1, "z")
print(#t, table.concat(t, ","))
print(table.remove(t), #t, table.concat(t, ","))
print(table.remove(t, 1), #t, table.concat(t, ","))
print(table.remove({}), #t)
print(table.maxn({ 1, 2, [10] = 3 }), table.maxn({}))
local q = { 1, 2, 3, 4, 5 }
while #q > 0 do print(table.remove(q, 1), #q) end
print(table.getn and table.getn({ 1, 2 }))
local u = { n = 0 }
table.insert(u, "x")
print(u[1], u.n)
