-- Error values of every type travel through pcall unchanged, and the
-- closures around them keep sharing their locals.
local n = 0
local function bump() n = n + 1 end
local t = { code = 7 }
local values = { "s", 42, 1.5, true, false, t }
for i = 1, #values do
  local ok, e = pcall(function() bump(); error(values[i]) end)
  print(i, ok, type(e), e == values[i], n)
end
local ok, e = pcall(error)
print(ok, e, n)
local ok2, e2 = pcall(error, nil)
print(ok2, e2)
local ok3, e3 = pcall(function() error(t) end)
print(ok3, e3 == t, e3.code)
