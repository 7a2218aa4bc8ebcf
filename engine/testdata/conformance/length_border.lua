print(#{}, #{ 1, 2, 3 }, #{ n = 1 }, #"abc", #"")
local t = { 1, 2, 3 }
t[#t + 1] = 4
print(#t)
t[#t] = nil
print(#t)
local s = {}
for i = 1, 10 do s[i] = i end
for i = 10, 6, -1 do s[i] = nil end
print(#s)
local h = { [1] = "a", [2] = "b" }
print(#h)
