-- Known difference: runtime error messages. Lua 5.1 names the variable
-- ("attempt to index local 'x' (a nil value)"); gopher-lua words them its
-- own way. The position prefix is the same.
local function try(f) local ok, e = pcall(f); print(ok, e) end
try(function() local x = nil; return x.y end)
try(function() return undefined_global.field end)
try(function() local t = {}; return t.a.b end)
try(function() return 1 + nil end)
try(function() local s = "a"; return s + 1 end)
try(function() return {} .. "x" end)
try(function() local f; f() end)
try(function() return #nil end)
try(function() return {} < {} end)
try(function() return 1 < "2" end)
try(function() string.rep() end)
try(function() ("x"):rep({}) end)
try(function() return math.floor("a") end)
