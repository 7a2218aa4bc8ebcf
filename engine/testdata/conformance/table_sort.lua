local function show(t) return table.concat(t, " ") end
local t = { 5, 2, 8, 1, 9, 3 }
table.sort(t); print(show(t))
table.sort(t, function(a, b) return a > b end); print(show(t))
local s = { "pear", "Apple", "banana", "apple", "Banana" }
table.sort(s); print(show(s))
table.sort(s, function(a, b) return a:lower() < b:lower() or (a:lower() == b:lower() and a < b) end); print(show(s))
local recs = { { n = "b", v = 2 }, { n = "a", v = 2 }, { n = "c", v = 1 } }
table.sort(recs, function(x, y) if x.v ~= y.v then return x.v < y.v end return x.n < y.n end)
for _, r in ipairs(recs) do print(r.n, r.v) end
local big = {}
for i = 1, 200 do big[i] = (i * 7919) % 211 end
table.sort(big)
local ok = true
for i = 2, #big do if big[i - 1] > big[i] then ok = false end end
print(ok, big[1], big[200])
local one = { 1 }; table.sort(one); print(show(one))
local empty = {}; table.sort(empty); print(#empty)
print(pcall(table.sort, { 1, "x" }))
local fl = { 1.5, -2, 0, 1e10, -1e-3 }
table.sort(fl); print(show(fl))
