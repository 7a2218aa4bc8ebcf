local count, seen = 0, {}
local function handler(e) count = count + 1; seen[#seen + 1] = tostring(e); return "handled " .. count end
local function try(f) return xpcall(f, handler) end
print(try(function() error("a", 0) end))
print(try(function() error({}) end) == false, count)
print(try(function() return 1, 2, 3 end))
print(count, table.concat(seen, ","):gsub("table: 0x%x+", "table"):gsub("table: %x+", "table"))
