local function count(...) return select("#", ...) end
print(count(), count(nil), count(nil, nil), count(1, nil, 3, nil))
local function pass(...) return ... end
print(pass(1, 2, 3))
print((pass(1, 2, 3)))
print(pass(1, 2, 3), "end")
local function tail(...) return select(2, ...) end
print(tail("a", "b", "c"))
local function pack(...) return { n = select("#", ...), ... } end
local p = pack(1, nil, 3)
print(p.n, p[1], p[2], p[3])
local function sum(...)
  local s = 0
  for i = 1, select("#", ...) do s = s + (select(i, ...) or 0) end
  return s
end
print(sum(1, 2, 3, nil, 5))
local function f(a, b, ...) return a, b, select("#", ...) end
print(f(1))
print(f(1, 2, 3, 4))
local t = { pass(1, 2), pass(3, 4) }
print(#t, t[1], t[2], t[3])
print(#{ ... }, select("#", ...))
local function va(...) local a = ... ; return a end
print(va(9, 8))
