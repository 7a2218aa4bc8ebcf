-- Known difference: malformed patterns. gopher-lua's pattern compiler words
-- its errors differently, and accepts a trailing "%" as matching nothing.
-- Lua 5.1's %f frontier pattern (undocumented in 5.1) is not supported.
print(pcall(string.find, "abc", "[a"))
print(pcall(string.find, "abc", "%"))
print(pcall(string.match, "THE (quick) fox", "%f[%a]%a+"))
