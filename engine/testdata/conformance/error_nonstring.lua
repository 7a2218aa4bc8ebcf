local function show(ok, e)
  local t = type(e)
  if t == "table" then return tostring(ok) .. " table " .. tostring(e.code) end
  return tostring(ok) .. " " .. t .. " " .. tostring(e)
end
print(show(pcall(error, 42)))
print(show(pcall(error, 4.25)))
print(show(pcall(error, true)))
print(show(pcall(error, { code = 9 })))
print(show(pcall(error)))
print(show(pcall(function() error(setmetatable({}, { __tostring = function() return "custom" end })) end)))
local ok, e = pcall(function() error(setmetatable({}, { __tostring = function() return "custom" end })) end)
print(tostring(e))
-- error with a number gets position info only for strings
print(pcall(function() error(12) end))
print(pcall(function() error("12") end))
