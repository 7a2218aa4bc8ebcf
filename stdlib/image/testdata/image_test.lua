-- Lua tests of require("image") against the mini Tiny Core release.
local image = require("image")
local tcz = require("tcz")
local persist = require("persist")
local host = require("host")
local rec = require("rec")

local function setup(t)
  if not vars.root then t:skip("image.build and image.edit need root") end
  tcz.mirror({ url = vars.mirror, kernel = vars.kernel, cache = t:tempdir() .. "/cache" })
  rec.take()
end

function TestBuildEditIdempotent(t)
  setup(t)
  local path = t:tempdir() .. "/web1.img"
  local spec = {
    path = path, size = "64M", core = vars.core, hostname = "web1",
    authorized_keys = { "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOy8wqKmJ0uO4o7vEuTPvtnOy0ZbhQmP7M5mBp8Un0Dq farm" },
    extensions = { "dropbear" }, files = { ["/etc/motd"] = "hi\n" }, bootlocal = { "echo booted" },
  }
  local disk = image.build(spec)
  if disk.path ~= path or disk.layout ~= "scatter" or disk.fs ~= "ext3" or disk.size ~= 64 * 1024 * 1024 then t:error("disk table") end
  if not string.find(disk.host_key, "^ssh%-ed25519 ") then t:error("host_key " .. disk.host_key) end
  if disk.bootcodes.host ~= "web1" or disk.extensions[#disk.extensions] ~= "dropbear" then t:error("bootcodes/extensions") end
  local c = rec.take()
  if c[1].status ~= "changed" or c[1].subject ~= "image:" .. path or c[1].detail ~= "new image" then t:error("build report") end
  local again = image.build(spec)
  c = rec.take()
  if again.changed or c[1].status ~= "ok" or again.host_key ~= disk.host_key then t:error("second build changed") end

  -- edit: the callback's target works with tcz and persist, reports are per file
  local r1, r2 = image.edit(path, function(tg)
    if tostring(tg) ~= "image:" .. path then t:error("tostring " .. tostring(tg)) end
    persist.bootlocal(tg, { "/usr/local/sbin/nginx" }, { id = "web" })
    tcz.install(tg, "nginx")
    local inst = tcz.installed(tg)
    return #inst, "done"
  end)
  if r1 < 5 or r2 ~= "done" then t:error("edit results " .. tostring(r1) .. " " .. tostring(r2)) end
  c = rec.take()
  if #c ~= 2 or c[1].status ~= "changed" or c[1].subject ~= "image:" .. path .. "/opt/bootlocal.sh" then t:error("edit reports") end
  if not string.find(c[1].diff, "+/usr/local/sbin/nginx", 1, true) then t:error("no diff") end
  -- second edit: all ok, zero changed; build still ok (edits are kept)
  image.edit(path, function(tg)
    persist.bootlocal(tg, { "/usr/local/sbin/nginx" }, { id = "web" })
    tcz.install(tg, "nginx")
  end)
  image.build(spec)
  c = rec.take()
  for _, x in ipairs(c) do
    if x.status ~= "ok" then t:error("second pass: " .. x.module .. "." .. x.action .. " " .. x.status .. " " .. x.detail) end
  end
  -- errors in the callback propagate, and the disk is unmounted
  local ok, e = pcall(image.edit, path, function(tg) error("boom") end)
  if ok or not string.find(tostring(e), "boom", 1, true) then t:error("callback error lost: " .. tostring(e)) end
  local saved
  image.edit(path, function(tg) saved = tg end)
  ok, e = pcall(persist.bootlocal, saved, { "x" })
  if ok then t:error("target usable after edit returned") end
  -- strict options
  ok, e = pcall(image.build, { path = path, hostnme = "x" })
  if ok or not string.find(e.msg, 'did you mean "hostname"', 1, true) then t:error(tostring(e)) end
  ok, e = pcall(image.build, { path = path, core = vars.core, fs = "xfs" })
  if ok or e.kind ~= "invalid" then t:error("bad fs: " .. tostring(e)) end
  ok, e = pcall(image.edit, t:tempdir() .. "/none.img", function() end)
  if ok or e.kind ~= "not_found" then t:error("missing disk: " .. tostring(e)) end
end

function TestBuildFrugalFromMirrorCore(t)
  setup(t)
  local disk = image.build({ path = t:tempdir() .. "/f.img", layout = "frugal", extensions = { "dropbear" } })
  if disk.layout ~= "frugal" or not string.find(disk.bootcodes.tce, "^UUID=") then t:error("frugal disk") end
end

function TestUnpackPackRoundTrip(t)
  local dir = t:tempdir() .. "/root"
  local r = image.unpack(vars.core, dir)
  if r.entries < 100 or r.archives ~= 2 then t:error("unpack " .. r.entries) end
  if not host.read(dir .. "/etc/passwd") then t:fatal("no etc/passwd") end
  local out = t:tempdir() .. "/core.gz"
  if not image.pack(dir, out, { mtime = 1700000000 }) then t:error("first pack unchanged") end
  if image.pack(dir, out, { mtime = 1700000000 }) then t:error("second pack changed") end
  local dir2 = t:tempdir() .. "/again"
  image.unpack(out, dir2)
  if host.read(dir2 .. "/etc/passwd") ~= host.read(dir .. "/etc/passwd") then t:error("round trip") end
  local ok, e = pcall(image.pack, dir, out, { mtiem = 1 })
  if ok or not string.find(e.msg, 'did you mean "mtime"', 1, true) then t:error(tostring(e)) end
  ok, e = pcall(image.unpack, dir .. "/etc/passwd", t:tempdir())
  if ok or e.kind ~= "invalid" then t:error("non-cpio accepted: " .. tostring(e)) end
end
