-- colinux.list{limit = true} under --limit 'web*,!web2', run by
-- TestLuaListLimit. No guest is started (so they may share one disk,
-- read-only).
local colinux = require("colinux")

function TestListLimit(t)
  for _, n in ipairs({ "web1", "web2", "db1" }) do
    colinux.guest({ name = n, driver = "ns", disk = { path = vars.disk, host_key = vars.host_key }, mem = "64M",
                    disk_ro = true })
  end
  local names = {}
  for _, g in ipairs(colinux.list{ limit = true }) do names[#names + 1] = g.name end
  if table.concat(names, ",") ~= "web1" then t:error("list{limit=true}: " .. table.concat(names, ",")) end
  if #colinux.list() ~= 3 then t:error("list() without limit filtered") end
  local ran = {}
  parallel({ colinux.get("web1"), colinux.get("web2"), colinux.get("db1") }, function(g) ran[#ran + 1] = g.name end)
  if table.concat(ran, ",") ~= "web1" then t:error("parallel over guests: " .. table.concat(ran, ",")) end
end
