-- Known difference: gopher-lua honours __len on tables (as Lua 5.2 does);
-- Lua 5.1 uses it only for userdata, so # of a table is its border.
local t = setmetatable({ 1, 2, 3 }, { __len = function() return 99 end })
print(#t)
print(#setmetatable({}, { __len = function() return 1 end }))
