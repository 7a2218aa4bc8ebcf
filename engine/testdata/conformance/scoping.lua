local x = 1
do local x = 2; print(x) end
print(x)
local function f() local x = 3; return x end
print(f(), x)
if true then local x = 4 end
print(x)
local y = y
print(y)
z = "global"
local z = "local"
print(z, _G.z)
for x = 5, 5 do print(x) end
print(x)
local function shadow(x) x = x + 1; return x end
print(shadow(10), x)
local t = { x = "field" }
do local t = { x = "inner" }; print(t.x) end
print(t.x)
