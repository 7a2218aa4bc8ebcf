-- Issue 13: locals shared with closures stay shared after a caught error.
local tried, failed = 0, 0
local function try(f) tried = tried + 1; if not pcall(f) then failed = failed + 1 end end
try(function() error("x") end)
try(function() error("y") end)
try(function() end)
print(tried, failed)
