local s = "Ab1 _;\t\n.xZ9"
local classes = { "%a", "%d", "%l", "%s", "%u", "%w", "%x", "%p", "%c", "%A", "%D", "%S", "%W", "." }
for _, c in ipairs(classes) do
  local out = s:gsub(c, "#")
  print(c, (out:gsub("\t", "\\t"):gsub("\n", "\\n")))
end
print(("abc123"):gsub("[a-b2-3]", "_"))
print(("abc123"):gsub("[^%d]", "_"))
print(("a-b]c"):gsub("[%]%-]", "_"))
print(("a]b"):gsub("[]]", "_"))
print(("aaab"):match("a+b"), ("aaab"):match("a*b"), ("b"):match("a?b"), ("aab"):match("a-b"))
print(("x  y"):find("%s%s"), ("hello"):find("l%l"))
print(("caf\195\169"):gsub("[\128-\255]", "?"))
