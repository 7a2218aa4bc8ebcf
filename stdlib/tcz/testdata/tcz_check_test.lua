-- require("tcz") in check mode: plans, reports, writes nothing.
local tcz = require("tcz")
local host = require("host")
local rec = require("rec")

function TestCheckModeInstallWritesNothing(t)
  if not check_mode() then t:fatal("not in check mode") end
  local cache = t:tempdir() .. "/cache"
  tcz.mirror({ url = vars.mirror, kernel = vars.kernel, cache = cache })
  local root = t:tempdir()
  rec.take()
  local r = tcz.fetch("nginx")
  if not r.changed or #r.downloaded == 0 then t:error("fetch plan") end
  if host.read(cache .. "/optional/nginx.tcz") then t:error("fetch downloaded in check mode") end
  r = tcz.install(root, "nginx", { onboot = true })
  if not r.changed or #r.installed == 0 then t:error("install plan") end
  local c = rec.take()
  if c[2].status ~= "changed" or not string.find(c[2].diff, "+nginx.tcz", 1, true) then t:error("install report/diff") end
  if host.read(root .. "/tce/onboot.lst") or host.read(root .. "/usr/local/etc/nginx/nginx.conf") then
    t:error("install wrote in check mode")
  end
  local p = tcz.pack({ dir = root, name = "empty", out = root .. "/out" })
  if not p.changed or host.read(root .. "/out/empty.tcz") then t:error("pack wrote in check mode") end
end
