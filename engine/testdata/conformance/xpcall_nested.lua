local trace = {}
local function h(tag) return function(e) trace[#trace + 1] = tag .. ":" .. tostring(e); return tag end end
print(xpcall(function()
  print(xpcall(function() error("inner", 0) end, h("H1")))
  error("outer", 0)
end, h("H2")))
print(table.concat(trace, " "))
print(xpcall(function() return xpcall(function() return "ok" end, h("H3")) end, h("H4")))
local n = 0
local function count(e) n = n + 1; return e end
for i = 1, 5 do xpcall(function() if i % 2 == 1 then error(i, 0) end end, count) end
print(n)
print(xpcall(function() error({ v = 1 }) end, function(e) return e.v + 1 end))
