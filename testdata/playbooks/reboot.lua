-- A farm that comes back after a host reboot: guests "a1" (autostart,
-- priority 10, then 1 s) and "a2" (autostart) serve their pages through
-- the proxy daemon; "n1" (no autostart) serves one too. playbooks/
-- reboot_test.go runs it, kills everything, and runs `tinyfarm boot`.
--
-- vars: mirror (required), dir (disks), bridge, subnet, listen
local colinux, image, tcz, proxy = require("colinux"), require("image"), require("tcz"), require("proxy")
local nginx = require("lib.nginx")

tcz.mirror{ url = vars.mirror }
colinux.network{ bridge = vars.bridge, subnet = vars.subnet }

local guests = {
  { name = "a1", autostart = true, autostart_priority = 10, autostart_delay = "1s" },
  { name = "a2", autostart = true },
  { name = "n1" },
}
parallel(guests, function(o)
  task("guest " .. o.name, function()
    local disk = image.build{ path = vars.dir .. "/" .. o.name .. ".img", size = "96M",
                              hostname = o.name, extensions = { "dropbear" } }
    local g = colinux.guest{ name = o.name, disk = disk, mem = "64M", autostart = o.autostart,
                             autostart_priority = o.autostart_priority, autostart_delay = o.autostart_delay }
    g:start()
    g:wait_ready{ timeout = 60 }
    nginx.install(g, { page = "<h1>" .. o.name .. "</h1>\n" })
    proxy.vhost{ host = o.name .. ".boot.test", to = g, port = 80 }
  end)
end)
task("proxy", function() proxy.daemon{ listen = vars.listen } end)
