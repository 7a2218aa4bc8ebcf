local i = 0
while true do i = i + 1; if i >= 5 then break end end
print(i)
local j = 0
repeat local k = j; j = j + 1 until k >= 3
print(j)
local r = {}
for _, v in ipairs({ 1, 2, 3, 4, 5, 6 }) do
  if v % 2 == 0 then r[#r + 1] = v end
  if v == 5 then break end
end
print(table.concat(r, ","))
local nested = 0
for a = 1, 3 do for b = 1, 3 do if b > a then break end nested = nested + 1 end end
print(nested)
local w = 10
while w > 0 do w = w - 3 end
print(w)
repeat until true
print("done")
