-- tinycolinux.lua: a tinycolinux disk the seed's way: Tiny Core's core
-- extracted onto an ext3 disk, a /tce directory, extensions installed with
-- their dependencies, bootlocal.sh starting the services.
--
--   tinyfarm run playbooks/tinycolinux.lua -e disk=web.img \
--     -e extensions=dropbear,nginx -e mirror=http://repo.tinycorelinux.net
--
-- vars: disk (default tinycolinux.img), size (128M), fs (ext3),
-- hostname (box), extensions (comma list, default "dropbear"),
-- layout (scatter|frugal), mirror, version (15.x), arch (x86_64 or x86),
-- core (comma list of local files or release file names; default the
-- mirror's core for the arch: corepure64.gz on x86_64, core.gz on x86).
-- guest (a name: define, start and wait for a guest on the disk), driver
-- (ns|qemu), mem (128M), kernel and initrd (qemu), install (comma list of
-- extensions installed into the running guest over SSH).
--
-- With extensions=openssh the guest's sshd is started from bootlocal.sh
-- by Tiny Core's own `/usr/local/etc/init.d/openssh start`, serving the
-- host keys image.build placed and the guest pins.
local colinux, image, tcz = require("colinux"), require("image"), require("tcz")

local function list(s, default)
  local out = {}
  for w in string.gmatch(s or default, "[^,%s]+") do out[#out + 1] = w end
  return out
end

if vars.mirror or vars.arch or vars.version then
  tcz.mirror{ url = vars.mirror, version = vars.version or "15.x", arch = vars.arch or "x86_64" }
end

local exts = list(vars.extensions, "dropbear")
local bootlocal = {}
for _, e in ipairs(exts) do
  if e == "nginx" or e == "hello-site" then bootlocal[#bootlocal + 1] = "/usr/local/sbin/nginx" end
end

local disk
task("build " .. (vars.disk or "tinycolinux.img"), function()
  disk = image.build{
    path = vars.disk or "tinycolinux.img",
    size = vars.size or "128M",
    fs = vars.fs or "ext3",
    layout = vars.layout or "scatter",
    core = vars.core and list(vars.core) or nil,
    hostname = vars.hostname or "box",
    extensions = exts,
    bootlocal = bootlocal,
  }
  log(string.format("%s: %s disk, host key %s", disk.path, disk.layout, disk.host_key))
end)

if vars.guest then
  local g
  task("guest " .. vars.guest, function()
    g = colinux.guest{
      name = vars.guest, disk = disk, driver = vars.driver, mem = vars.mem or "128M",
      kernel = vars.kernel, initrd = vars.initrd,
    }
    g:start()
    g:wait_ready{ timeout = 90 }
  end)
  for _, e in ipairs(list(vars.install, "")) do
    task("install " .. e .. " on " .. vars.guest, function() tcz.install(g, e) end)
  end
end
