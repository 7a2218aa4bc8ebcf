-- The VServer/OpenVZ tour as a user drives it, checked the way a user
-- checks it. The Go side (TestTour) defined two guests in this farm
-- ("web": a namespace guest in the default mode, its disk on btrfs;
-- "vm": a qemu guest on the bridge) and made a far tinyfarm host in a
-- network namespace whose farm has the same subnet.
local colinux = require("colinux")

local counter_loop = "mkdir -p /run/tf && mount -t tmpfs tmpfs /run/tf && " ..
  "(i=0; while :; do i=$((i+1)); echo $i > /run/tf/n.new; mv /run/tf/n.new /run/tf/n; sleep 0.05; done) </dev/null >/dev/null 2>&1 &"

local function exists(path)
  local f = io.open(path, "r")
  if f then f:close() return true end
  return false
end

function TestTour(t)
  colinux.network({ bridge = vars.bridge, subnet = vars.subnet })

  -- A share in the default (user namespace) mode.
  local web = colinux.get("web")
  web:share({ host = vars.share, guest = "/srv/www", ro = true })
  web:start()
  web:wait_ready({ timeout = 30 })
  local st = web:status()
  if not string.find(st.isolation, "userns", 1, true) then t:error("web isolation: " .. st.isolation) end
  if web:exec("cat /srv/www/index.html").stdout ~= "tour\n" then t:error("the share in web") end

  -- A clone of the running guest: its own name and address, its disk a
  -- reflink beside web's, kept by destroy.
  local web2 = web:clone({ name = "web2" })
  local st2 = web2:status()
  if not st2.disk_placed or st2.disk ~= vars.btrfs .. "/web2.img" then
    t:error("clone disk: " .. tostring(st2.disk) .. " placed " .. tostring(st2.disk_placed))
  end
  web2:start()
  web2:wait_ready({ timeout = 30 }) -- an SSH handshake at its own address, its own pinned key
  if web2:exec("hostname").stdout ~= "web2\n" then t:error("web2 hostname") end
  if web2:status().ip == st.ip then t:error("the clone has web's address") end

  -- Unify the stopped guests: the reflinked clone shares everything already.
  web:stop()
  web2:stop()
  local u = colinux.unify({ guests = { web, web2 } })
  t:log("unify: " .. u.files .. " files, " .. u.already_shared .. " bytes already shared, " ..
    u.bytes_shared .. " newly shared, " .. u.bytes_freed .. " freed")
  if not u.supported or u.already_shared == 0 or u.bytes_shared ~= 0 then t:error("unify of a clone and its source") end

  -- Checkpoint a VM on the bridge, restore it under a new name.
  local vm = colinux.get("vm")
  vm:start()
  vm:wait_ready({ timeout = 120 })
  vm:exec(counter_loop)
  local ip = vm:status().ip
  local ck = vm:checkpoint(vars.work .. "/vm.ckpt")
  local ok, e = pcall(function() colinux.restore(ck.file, { name = "vm2" }) end)
  if ok or e.kind ~= "unsupported" then t:error("restore as vm2 while vm holds its address: " .. tostring(e)) end
  vm:destroy()
  if not exists(vars.vm_disk) then t:error("destroy removed vm's disk") end
  local vm2 = colinux.restore(ck.file, { name = "vm2" })
  if vm2:status().ip ~= ip then t:error("vm2 address " .. vm2:status().ip .. ", want " .. ip) end
  local n1 = tonumber(vm2:exec("cat /run/tf/n").stdout)
  if not n1 or n1 < 1 then t:fatal("vm2's counter did not survive the restore") end

  -- Live migration on the bridge: same address there, this farm's key gone.
  local m = vm2:migrate({ to = vars.far, live = true, timeout = "120s" })
  t:log("live migration: down " .. m.downtime .. " s, there at " .. m.ip)
  if m.state ~= "running" or m.ip ~= ip or not m.key_revoked then
    t:error("live migration: state " .. m.state .. " ip " .. m.ip .. " key revoked " .. tostring(m.key_revoked))
  end
  local f = io.open(vars.work .. "/counter", "w"); f:write(tostring(n1)); f:close()

  -- Destroy: the disks stay.
  web2:destroy()
  web:destroy()
  for _, d in ipairs({ vars.btrfs .. "/web.img", vars.btrfs .. "/web2.img", vars.state .. "/disks/vm2.img" }) do
    if not exists(d) then t:error("disk gone after destroy: " .. d) end
  end
end
