-- Many caught errors interleaved with closure updates.
local counts = { ok = 0, err = 0 }
local total = 0
local history = {}
local function record(s) history[#history + 1] = s end
local function step(i)
  total = total + i
  if i % 3 == 0 then error("multiple of three: " .. i, 0) end
  return i
end
for i = 1, 12 do
  local ok, v = pcall(step, i)
  if ok then counts.ok = counts.ok + 1 else counts.err = counts.err + 1; record(v) end
end
print(total, counts.ok, counts.err, #history, history[#history])
local function make()
  local state = 0
  local function set(v) state = v end
  local function get() return state end
  return set, get
end
local set, get = make()
for i = 1, 4 do pcall(function() set(i); error("x") end) end
print(get())
local outer = 0
local function level3() outer = outer + 100; error("3") end
local function level2() outer = outer + 10; pcall(level3); outer = outer + 10 end
local function level1() outer = outer + 1; level2(); error("1") end
pcall(level1)
print(outer)
