-- Lua tests of the colinux operations that need no running guest:
-- g:share / g:unshare, g:clone of a stopped guest, g:checkpoint of an ns
-- guest (unsupported here), colinux.restore of a bad file.
local colinux = require("colinux")

local function guest()
  return colinux.guest({ name = "src", driver = "ns", disk = { path = vars.disk, host_key = vars.host_key }, mem = "64M" })
end

function TestShare(t)
  local g = guest()
  local dir = t:tempdir()
  if not g:share({ host = dir, guest = "/srv/data", ro = true }) then t:error("first share: not changed") end
  if g:share({ host = dir, guest = "/srv/data", ro = true }) then t:error("same share again: changed") end
  if not g:share({ host = dir, guest = "/srv/data" }) then t:error("ro -> rw: not changed") end
  local ok, e = pcall(function() g:share({ host = "rel/dir", guest = "/x" }) end)
  if ok or e.kind ~= "invalid" then t:error("relative host path: " .. tostring(e)) end
  ok, e = pcall(function() g:share({ host = dir, guest = "/x", bogus = 1 }) end)
  if ok then t:error("unknown option accepted") end
  if not g:unshare("/srv/data") then t:error("unshare: not changed") end
  if g:unshare("/srv/data") then t:error("unshare again: changed") end
end

function TestCloneStopped(t)
  local g = guest()
  local c = g:clone({ name = "dup", hostname = "dup-host" })
  if c.name ~= "dup" or c.ip == g.ip or c.host_key == g.host_key or c.host_key == "" then
    t:error("clone identity: " .. tostring(c) .. " key " .. c.host_key)
  end
  local ok, e = pcall(function() g:clone({ name = "dup" }) end)
  if ok or not string.find(tostring(e), "already exists") then t:error("clone onto an existing name: " .. tostring(e)) end
  c:destroy({ disk = true })
end

function TestCheckpointUnsupportedAndBadRestore(t)
  local g = guest()
  local ok, e = pcall(function() g:checkpoint(t:tempdir() .. "/x.ckpt") end)
  if ok or e.kind ~= "unsupported" then t:error("ns checkpoint: " .. tostring(e)) end
  local bad = t:tempdir() .. "/bad.ckpt"
  local f = io.open(bad, "w"); f:write("{\"format\":\"something-else\"}"); f:close()
  ok, e = pcall(function() colinux.restore(bad) end)
  if ok or e.kind ~= "invalid" or not string.find(tostring(e), "not a tinyfarm checkpoint") then
    t:error("restore of a foreign file: " .. tostring(e))
  end
  if colinux.get("something-else") then t:error("bad restore defined a guest") end
end

function TestUnify(t)
  local g = guest()
  local c = g:clone({ name = "twin" })
  local r = colinux.unify({ guests = { g, "twin" }, exclude = { "usr/local/" }, dry_run = true })
  if r.files == 0 or r.bytes_shared == 0 or r.bytes_freed ~= 0 or not r.dry_run or #r.guests ~= 2 then
    t:error("dry run: files " .. r.files .. " shared " .. r.bytes_shared .. " freed " .. r.bytes_freed)
  end
  if r.supported then
    -- the temp dir shares extents (btrfs/xfs): a real run saves, a second one not
    local r1 = colinux.unify({ guests = { "src", "twin" } })
    local r2 = colinux.unify({ guests = { "src", "twin" } })
    if r1.bytes_shared == 0 or r2.bytes_shared ~= 0 then t:error("unify twice: " .. r1.bytes_shared .. ", " .. r2.bytes_shared) end
  else
    local ok, e = pcall(function() colinux.unify({ guests = { "src", "twin" } }) end)
    if ok or e.kind ~= "unsupported" or not string.find(tostring(e), "btrfs") then
      t:error("unify where unsupported: " .. tostring(e))
    end
  end
  local ok, e = pcall(function() colinux.unify({ guests = { "src" }, exlude = {} }) end)
  if ok or not string.find(tostring(e), "exclude") then t:error("misspelt option: " .. tostring(e)) end
  c:destroy({ disk = true })
end
