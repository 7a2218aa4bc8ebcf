-- require("image") in check mode: plans, writes nothing.
local image = require("image")
local tcz = require("tcz")
local persist = require("persist")
local host = require("host")
local rec = require("rec")

function TestCheckModeBuildEditPack(t)
  tcz.mirror({ url = vars.mirror, kernel = vars.kernel, cache = t:tempdir() .. "/cache" })
  rec.take()
  local path = t:tempdir() .. "/web1.img"
  local disk = image.build({ path = path, core = vars.core, hostname = "web1", extensions = { "dropbear" } })
  if not disk.changed or disk.path ~= path then t:error("build plan") end
  local c = rec.take()
  if c[1].status ~= "changed" then t:error("build status " .. c[1].status) end
  if host.read(path) or host.read(path .. ".tinyfarm.json") then t:error("check mode wrote the image") end
  -- the disk would be new: edit cannot look inside; may change
  local called = false
  image.edit(path, function() called = true end)
  c = rec.take()
  if called or c[1].status ~= "may_change" then t:error("edit of a disk to be built") end
  local dir = t:tempdir()
  image.unpack(vars.core, dir .. "/root")
  if host.read(dir .. "/root/etc/passwd") then t:error("unpack wrote in check mode") end
  if not image.pack(dir, dir .. "/out.gz") or host.read(dir .. "/out.gz") then t:error("pack in check mode") end
end
