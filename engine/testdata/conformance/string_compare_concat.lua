print("a" < "b", "a" < "B", "abc" < "ab", "" == "", "10" < "9", "a\0b" < "a\0c")
print(1 .. "", 1.25 .. "|", -1 .. "", 2^60 .. "")
print(("x"):rep(3, ","))
print("con" .. "cat" .. 1 + 2)
print(pcall(function() return "a" .. nil end) == false)
print(pcall(function() return "a" < 1 end) == false)
print(#("a" .. "bc" .. "def"))
local parts = {}
for i = 1, 5 do parts[i] = i / 2 end
print(table.concat(parts, " "))
