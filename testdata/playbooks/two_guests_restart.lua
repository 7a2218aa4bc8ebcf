-- The guests issue's acceptance as a playbook: two namespace guests boot
-- from the mini release, nginx goes into both over SSH (tcz.install of
-- the package tree, bootlocal.sh starts it), both restart, and each comes
-- back serving its own page. playbooks/e2e_test.go runs it and fetches
-- each page from the host at the guest's own address.
--
-- vars: mirror (required), dir (disks), bridge, subnet
local colinux, image, tcz = require("colinux"), require("image"), require("tcz")
local nginx = require("lib.nginx")

tcz.mirror{ url = vars.mirror }
colinux.network{ bridge = vars.bridge or "tfaccept0", subnet = vars.subnet or "10.77.207.0/24" }

local guests = {}
for _, name in ipairs{ "one", "two" } do
  task("boot " .. name, function()
    local disk = image.build{ path = (vars.dir or ".") .. "/" .. name .. ".img", size = "96M",
                              hostname = name, extensions = { "dropbear" } }
    guests[name] = colinux.guest{ name = name, driver = "ns", disk = disk, mem = "96M" }
    guests[name]:start()
    guests[name]:wait_ready{ timeout = 60 }
  end)
  task("nginx on " .. name, function()
    nginx.install(guests[name], { page = "<h1>" .. name .. "</h1>\n" })
  end)
end

for _, name in ipairs{ "one", "two" } do
  task("restart " .. name, function()
    guests[name]:restart{ grace = 10 }
    guests[name]:wait_ready{ timeout = 60 }
  end)
end

for _, name in ipairs{ "one", "two" } do
  log(name .. " " .. guests[name].ip)
end
