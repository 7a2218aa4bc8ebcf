local out = {}
for i = 1, 5 do out[#out + 1] = i end
print(table.concat(out, " "))
out = {}
for i = 10, 1, -3 do out[#out + 1] = i end
print(table.concat(out, " "))
out = {}
for i = 0, 1, 0.25 do out[#out + 1] = i end
print(table.concat(out, " "))
out = {}
for i = 1, 0 do out[#out + 1] = i end
print(#out)
for i = 1, 3 do local i = i * 2; out[#out + 1] = i end
print(table.concat(out, " "))
local n = 0
for i = 1, 3 do n = n + i; i = 100 end
print(n)
print(pcall(function() for i = 1, 10, 0 do error("ran") end end))
for i = 1.5, 3 do print(i) end
for i = -1, -3, -1 do print(i) end
print(pcall(function() for i = "a", 2 do end end))
