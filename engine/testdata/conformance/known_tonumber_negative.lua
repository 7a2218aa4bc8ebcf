-- Known difference: tonumber with a base reads a minus sign as negative
-- (-255), as Lua 5.1's own test suite and Lua 5.2 expect; Debian's lua5.1
-- uses C's strtoul, which wraps it to 2^64-255 on a 64-bit machine.
print(tonumber("-ff", 16), tonumber("-10", 2))
