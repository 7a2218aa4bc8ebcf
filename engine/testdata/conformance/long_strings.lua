local a = [[
first line
second "quoted" \n not escaped]]
print(a)
print(#a)
local b = [==[
contains ]] and [[ inside]==]
print(b)
print([[]] == "", [[x]] == "x")
local c = [=[
]=]
print(#c)
local d = [[line1
line2
]]
print(#d, (d:gsub("\n", "|")))
--[[ a long
comment ]] print("after long comment")
--[==[ another ]] still comment ]==] print("after level-2 comment")
print("esc: \65\066\0671 \x41 \z")
