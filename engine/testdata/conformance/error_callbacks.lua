-- Errors raised from inside callbacks that built-ins call.
local n = 0
local function bump() n = n + 1 end
print(pcall(table.sort, { 3, 1, 2 }, function(a, b) bump(); error("cmp", 0) end))
print(pcall(string.gsub, "abc", "%w", function(c) bump(); error("cb " .. c, 0) end))
print(pcall(tostring, setmetatable({}, { __tostring = function() bump(); error("ts", 0) end })))
local function iter() bump(); error("iter", 0) end
print(pcall(function() for x in iter do end end))
print(pcall(function() local t = setmetatable({}, { __index = function() bump(); error("idx", 0) end }); return t.k end))
bump()
print(n)
local ok, e = pcall(function()
  local ok2, e2 = pcall(error, { tag = "inner" })
  e2.tag = e2.tag .. "+rethrown"
  error(e2)
end)
print(ok, e.tag)
local obj = {}
local ok3, e3 = pcall(function() local ok4, e4 = pcall(error, obj); error(e4) end)
print(ok3, e3 == obj)
