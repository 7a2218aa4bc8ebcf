local nan = 0/0
print(nan ~= nan, nan == nan)
print(tostring(0/0))
print(tostring(-(0/0)))
print(math.huge - math.huge)
print(math.sqrt(-1))
local t = {}
print(pcall(function() t[0/0] = 1 end))
print(type(nan), nan < 1, nan > 1)
