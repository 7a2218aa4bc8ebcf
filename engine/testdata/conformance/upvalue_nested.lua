local log = {}
local function add(s) log[#log + 1] = s end
local depth = 0
local function nest(n)
  depth = depth + 1
  if n == 0 then error("bottom") end
  local ok, e = pcall(nest, n - 1)
  add(n .. ":" .. tostring(ok))
  if n % 2 == 0 then error("even " .. n, 0) end
  return n
end
print(pcall(nest, 4))
print(depth, table.concat(log, " "))
local a = 0
local inc = function() a = a + 1 end
pcall(function() inc(); pcall(function() inc(); error("in") end); inc(); error("out") end)
inc()
print(a)
