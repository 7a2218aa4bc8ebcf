-- template.write in check mode, run by TestCheckModeWritesNothing.
local template, rec = require("template"), require("rec")

function TestCheckShowsDiffAndWritesNothing(t)
  local dir = t:tempdir()
  rec.take()
  if not template.write(dir, "motd", "hello {{ who }}\n", { who = "farm" }) then t:error("would-be change not reported") end
  local c = rec.take()[1]
  if c.status ~= "changed" or not string.find(c.diff, "+hello farm", 1, true) then t:error(c.status .. " " .. c.diff) end
  local f = io.open(dir .. "/motd")
  if f then f:close(); t:error("check mode wrote the file") end
end
