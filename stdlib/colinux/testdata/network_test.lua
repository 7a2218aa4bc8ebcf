-- colinux.network: the farm's bridge and subnet, kept in the state dir.
local colinux = require("colinux")

function TestNetwork(t)
  local n = colinux.network()
  if n.bridge ~= "tfbr0" or n.subnet ~= "10.77.0.0/24" or n.changed then
    t:error("default network: " .. n.bridge .. " " .. n.subnet)
  end
  n = colinux.network({ bridge = "tflua0", subnet = "10.77.211.0/24" })
  if not n.changed or n.bridge ~= "tflua0" then t:error("set: not changed") end
  if colinux.network({ subnet = "10.77.211.0/24" }).changed then t:error("same subnet again: changed") end
  local ok, e = pcall(function() colinux.network({ subnet = "10.77.211.0/33" }) end)
  if ok or e.kind ~= "invalid" then t:error("bad subnet: " .. tostring(e)) end
  ok, e = pcall(function() colinux.network({ bridge = "x", mask = 24 }) end)
  if ok or not string.find(tostring(e), "mask") then t:error("unknown option: " .. tostring(e)) end
  local disk = t:tempdir() .. "/d.img"
  require("host").write(disk, "")
  local g = colinux.guest({ name = "n1", driver = "ns", disk = { path = disk }, mem = "64M" })
  if g.ip ~= "10.77.211.2" then t:error("guest address " .. tostring(g.ip)) end
end

-- net_raw = true keeps CAP_NET_RAW in an ns guest; it is strictly a
-- boolean, and only for ns guests.
function TestNetRawOption(t)
  local disk = { path = t:tempdir() .. "/d.img" }
  require("host").write(disk.path, "")
  colinux.guest({ name = "raw1", driver = "ns", disk = disk, mem = "64M", net_raw = true }):destroy()
  local ok, e = pcall(function() colinux.guest({ name = "raw2", driver = "ns", disk = disk, mem = "64M", net_raw = "yes" }) end)
  if ok or not string.find(tostring(e), "net_raw") then t:error("net_raw = \"yes\": " .. tostring(e)) end
  ok, e = pcall(function()
    colinux.guest({ name = "raw3", driver = "qemu", kernel = "/k", disk = disk, mem = "64M", net_raw = true })
  end)
  if ok or e.kind ~= "invalid" or not string.find(tostring(e), "net_raw is for ns guests") then
    t:error("net_raw on a qemu guest: " .. tostring(e))
  end
end
