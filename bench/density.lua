-- bench/density.lua: how many ns guests, each running init + dropbear +
-- nginx serving its own page, fit in this tinyfarm's memory cgroup.
-- Run by bench/density.sh, which puts tinyfarm in a cgroup of 1 GiB and
-- measures what each part takes; see there.
--
-- vars:
--   shared   "1": every guest's root is the one base image under a layer
--            of its own (colinux.guest{base}); "0": each guest has its own
--            copy of the image (cp --sparse), as before issue #21
--   mem      each guest's memory quota (default 16M)
--   max      stop after this many guests (default 400)
--   oom      the bench cgroup's file with an "oom_kill N" line
--   dir      where the disks go
--   mirror   the Tiny Core mirror (file:// of the mini release)
--   listen   the proxy's address
local colinux, image, tcz, proxy, host = require("colinux"), require("image"), require("tcz"), require("proxy"), require("host")
local nginx = require("lib.nginx")

tcz.mirror{ url = vars.mirror }
colinux.network{ bridge = "tfdens0", subnet = "10.79.0.0/20" }
local shared = vars.shared ~= "0"
local max = tonumber(vars.max) or 400
local mem = vars.mem or "16M"

local base = image.build{
  path = vars.dir .. "/base.img", size = "64M", extensions = { "dropbear", "nginx" },
  bootlocal = { "/usr/local/sbin/nginx" },
}

local function ooms()
  local t = host.read(vars.oom) or ""
  return tonumber(t:match("oom_kill (%d+)")) or 0
end

local started, why = 0, "reached max = " .. max
for i = 1, max do
  local name = "d" .. i
  local ok, err = pcall(function()
    local g
    if shared then
      g = colinux.guest{ name = name, base = base, disk = vars.dir .. "/" .. name .. ".layer.img", mem = mem }
    else
      local img = vars.dir .. "/" .. name .. ".img"
      host.run("cp --sparse=always " .. base.path .. " " .. img)
      g = colinux.guest{ name = name, disk = { path = img, host_key = base.host_key, layout = "scatter" }, mem = mem }
    end
    g:start()
    g:wait_ready{ timeout = 30 }
    g:exec("echo 'page of " .. name .. "' > /usr/local/share/nginx/html/index.html")
    -- The nginx bootlocal.sh starts is sometimes gone by now (seen in
    -- about half the guests, with or without a shared base; cause not
    -- found yet): start it as lib.nginx does after an install.
    nginx.ensure_running(g)
    proxy.vhost{ host = name .. ".density.test", to = g, port = 80 }
  end)
  if not ok then
    why = "guest " .. i .. " did not start: " .. tostring(err)
    break
  end
  if ooms() > 0 then
    why = "OOM kill in the cgroup after guest " .. i
    started = i
    break
  end
  started = i
  if i == 1 then proxy.daemon{ listen = vars.listen } end
end
log("DENSITY started " .. started .. " stop: " .. why)
