local words = {}
for w in ("one two  three"):gmatch("%a+") do words[#words + 1] = w end
print(#words, table.concat(words, ","))
for k, v in ("a=1, b=2, c=3"):gmatch("(%w+)=(%w+)") do print(k, v) end
local n = 0
for _ in ("aaa"):gmatch("") do n = n + 1 end
print(n)
for pos in ("abc"):gmatch("()") do n = n + pos end
print(n)
for a, b in ("xy"):gmatch("(x)(y)") do print(a .. b) end
local it = ("1 2 3"):gmatch("%d")
print(it(), it(), it(), it())
for d in ("a1b22c333"):gmatch("%d+") do print(d, #d) end
