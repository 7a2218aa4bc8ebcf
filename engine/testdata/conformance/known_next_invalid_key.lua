-- Known difference: next() with a key the table does not hold returns nil
-- in gopher-lua; Lua 5.1 raises "invalid key to 'next'".
print(pcall(next, {}, "nokey"))
