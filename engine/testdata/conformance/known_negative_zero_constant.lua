-- Known difference: the constants 0 and -0 of one function share a slot of
-- its constant table in both interpreters (they are equal), so which one a
-- function sees depends on which the compiler registered first, and the two
-- compilers emit constants in different orders.
local n = 0
local function bump(d) n = n + d; return n end
print(pcall(function()
  if (-0 + bump(0)) < 0 then print("neg") else print("else", 0) end
end))
