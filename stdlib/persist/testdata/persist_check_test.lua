-- require("persist") in check mode: plans with diffs, writes nothing.
local persist = require("persist")
local host = require("host")
local rec = require("rec")

local function newroot(t)
  local d = t:tempdir()
  os.execute("mkdir -p " .. d .. "/opt " .. d .. "/tce")
  local f = io.open(d .. "/opt/bootlocal.sh", "w"); f:write("#!/bin/sh\necho user line\n"); f:close()
  rec.take()
  return d
end

function TestCheckModePlansAndWritesNothing(t)
  if not check_mode() then t:fatal("engine not in check mode") end
  local d = newroot(t)
  if not persist.bootlocal(d, { "/usr/local/sbin/nginx" }) then t:error("bootlocal: no would-change") end
  if not persist.onboot(d, { "nginx" }) then t:error("onboot: no would-change") end
  if not persist.filetool(d, { add = { "home" } }) then t:error("filetool: no would-change") end
  local c = rec.take()
  if #c ~= 3 then t:fatal("want 3 reports, got " .. #c) end
  for _, x in ipairs(c) do
    if x.status ~= "changed" then t:error(x.action .. " status " .. x.status) end
    if x.diff == "" then t:error(x.action .. " has no diff") end
  end
  if not string.find(c[1].diff, "+/usr/local/sbin/nginx", 1, true) then t:error(c[1].diff) end
  if host.read(d .. "/opt/bootlocal.sh") ~= "#!/bin/sh\necho user line\n" then t:error("bootlocal.sh written") end
  if host.read(d .. "/tce/onboot.lst") ~= nil then t:error("onboot.lst written") end
  if host.read(d .. "/opt/.filetool.lst") ~= nil then t:error(".filetool.lst written") end
  -- a second edit of the same file: may change (depends on the first)
  persist.bootlocal(d, { "/usr/local/sbin/nginx" }, { id = "other" })
  c = rec.take()
  if c[1].status ~= "may_change" then t:error("second edit of a pending file: " .. c[1].status) end
  local r = persist.backup(d)
  if host.read(d .. "/tce/mydata.tgz") ~= nil then t:error("backup written in check mode") end
end
