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
--   stat     its memory.stat; kmem: its kernel memory file (v1, or none)
--   limit    its limit in bytes
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

-- unreclaimable is what the cgroup holds that reclaim cannot take back:
-- anonymous memory and kernel memory (no swap here). Page cache is not in
-- it: the kernel drops it under pressure (and reads it back when needed).
local function unreclaimable()
  local st = host.read(vars.stat) or ""
  local anon = tonumber(st:match("\ntotal_rss (%d+)")) or tonumber(st:match("\nanon (%d+)")) or tonumber(st:match("^anon (%d+)")) or 0
  local shmem = tonumber(st:match("\ntotal_shmem (%d+)")) or tonumber(st:match("\nshmem (%d+)")) or 0
  local kernel = tonumber(st:match("\nkernel (%d+)")) or 0
  if vars.kmem and vars.kmem ~= "" then kernel = tonumber(host.read(vars.kmem)) or 0 end
  return anon + shmem + kernel
end
local limit = tonumber(vars.limit)
-- Room kept for the page cache the guests work from (their binaries and
-- libraries): below it the guests thrash.
local cache_room = 48 * 2^20

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
  local used = unreclaimable()
  local per = used / i
  if limit and used + per + cache_room > limit then
    why = string.format("the next guest would not fit: %.0f MiB unreclaimable after %d guests (%.1f MiB each), %.0f MiB limit, %.0f MiB kept for the page cache",
      used / 2^20, i, per / 2^20, limit / 2^20, cache_room / 2^20)
    break
  end
  if i == 1 then proxy.daemon{ listen = vars.listen } end
end
log("DENSITY started " .. started .. " stop: " .. why)
