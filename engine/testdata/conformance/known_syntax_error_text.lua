-- Known difference: syntax error messages from load/loadstring. gopher-lua's
-- parser reports "<string> line:1(column:12) near 'error': parse error";
-- Lua 5.1 says "[string \"...\"]:1: '=' expected near 'error'". A playbook's
-- own syntax errors are reworded by tinyfarm to "file:line: syntax error
-- near 'x'".
print(loadstring("syntax error here"))
print(loadstring("x = ", "=chunk"))
print(loadstring("local function f() return ... end"))
