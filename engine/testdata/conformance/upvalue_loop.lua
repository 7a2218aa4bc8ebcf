-- Each iteration of a loop has a fresh local; errors do not merge them.
local fs = {}
for i = 1, 3 do
  local v = i * 10
  fs[i] = function(d) v = v + d; return v end
  pcall(error, "iteration " .. i)
end
print(fs[1](1), fs[2](2), fs[3](3))
print(fs[1](1), fs[2](2), fs[3](3))
local j = 0
while j < 3 do
  j = j + 1
  local ok = pcall(function() if j == 2 then error("two") end end)
  print(j, ok)
end
